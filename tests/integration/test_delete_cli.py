"""`siku delete` end to end: a library withdraws its own record with a signed tombstone; it
cannot withdraw another library's, nor a record it does not hold, and a refusal changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import cli
from node.config import load_config
from protocol import ark
from protocol.hlc import Hlc
from protocol.identity import public_key_bytes
from protocol.records import (
    CatalogueRecord,
    ChunkRef,
    FileEntry,
    LangString,
    sign_catalogue,
)
from storage.catalogue import StoredRecord
from storage.store import Store
from tests.conftest import SikuRunner

EX_DATAERR = 65


def _results(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _ingest(siku: SikuRunner, home: Path, path: Path) -> dict[str, object]:
    (result,) = _results(siku("ingest", "--json", "--home", str(home), str(path)).stdout)
    return result


def _search(siku: SikuRunner, home: Path, query: str) -> list[str]:
    page = json.loads(siku("search", "--json", "--home", str(home), query).stdout)
    return [str(hit["pid"]) for hit in page["results"]]


def _state(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """Everything a deletion could change: records, the reconciled set, chunk references,
    ingest memory and the node's clock."""
    return {
        table: _query(home, f"SELECT * FROM {table} ORDER BY 1")
        for table in ("records", "sync_items", "chunks", "ingest_sources", "clock")
    }


def _query(home: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{home / 'store' / 'catalogue.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _put_foreign_record(home: Path) -> tuple[str, str]:
    """A record of another library, learned from the network (its content not held here), under
    this network's NAAN. Returns (pid, its file's path)."""
    config = load_config(home)
    key = Ed25519PrivateKey.generate()
    pid = str(ark.mint(config.ark_naan, "bz", secrets.token_bytes(8)))
    digest = hashlib.sha256(b"elsewhere").digest()
    record = CatalogueRecord(
        pid=pid,
        origin=public_key_bytes(key),
        version=Hlc(1_700_000_000_000),
        dc={"title": (LangString("Foreign almanac", "en"),)},
        files=(FileEntry("scan.pdf", 9, "application/pdf", digest, (ChunkRef(digest, 9),)),),
    )

    async def put() -> None:
        store = await Store.open(config.store)
        try:
            (outcome,) = await store.catalogue.put(
                [StoredRecord(sign_catalogue(record, key), record, held=False)]
            )
            assert outcome.applied
        finally:
            await store.close()

    asyncio.run(put())
    return pid, "scan.pdf"


def test_delete_withdraws_a_record_everywhere_here(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    source = tmp_path / "in" / "Dunhuang gazetteer draft.txt"
    source.parent.mkdir()
    source.write_text("敦煌县志稿\n" * 100, encoding="utf-8")
    first = _ingest(siku, home, source)
    pid = str(first["pid"])
    assert first["status"] == "added"
    assert _search(siku, home, "gazetteer") == [pid]

    out = siku("delete", "--home", str(home), pid).stdout
    assert out.startswith(f"deleted {pid}")

    shown = json.loads(siku("get", "--json", "--home", str(home), pid).stdout)
    assert shown["deleted"] is True and shown["files"] == []
    assert _search(siku, home, "gazetteer") == []
    assert _query(home, "SELECT pid, deleted, held FROM records") == [(pid, 1, 1)]
    assert _query(home, "SELECT count(*) FROM chunks WHERE refs > 0") == [(0,)], (
        "a withdrawn record's content is released"
    )
    ((envelope,),) = _query(home, "SELECT envelope FROM records")
    ((item,),) = _query(home, "SELECT id FROM sync_items")
    assert isinstance(envelope, bytes)
    assert item == hashlib.sha256(envelope).digest(), "the item is the tombstone's"

    # The same input again is a new resource: the deleted one is not "already ingested".
    again = _ingest(siku, home, source)
    assert again["status"] == "added" and again["pid"] != pid
    assert _search(siku, home, "gazetteer") == [again["pid"]]

    before = _state(home)
    twice = siku("delete", "--home", str(home), pid)
    assert twice.returncode == 0 and "already deleted" in twice.stdout
    assert _state(home) == before


def test_delete_refuses_records_it_may_not_delete_and_changes_nothing(
    tmp_path: Path, home: Path, siku: SikuRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "kept.txt"
    source.write_text("kept\n", encoding="utf-8")
    kept = str(_ingest(siku, home, source)["pid"])
    foreign, foreign_file = _put_foreign_record(home)
    config = load_config(home)
    unknown = str(ark.mint(config.ark_naan, config.code, secrets.token_bytes(8)))
    typo = kept[:-3] + ("b" if kept[-3] != "b" else "c") + kept[-2:]
    before = _state(home)
    cases = {
        unknown: "no such record",
        "not-a-pid": "",
        typo: "",
        foreign: "another library",
    }
    # One refusal through a real process, the rest in this one (the same `main`, faster).
    proc = siku("delete", "--home", str(home), foreign, check=False)
    assert proc.returncode == EX_DATAERR, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("siku: ") and "another library" in proc.stderr
    for pid, words in cases.items():
        code = cli.main(["delete", "--home", str(home), pid])
        err = capsys.readouterr().err
        assert code == EX_DATAERR, (pid, err)
        assert err.startswith("siku: ") and words in err, (pid, err)
    assert _state(home) == before

    # The foreign record is shown, but its content is its library's to serve.
    shown = json.loads(siku("get", "--json", "--home", str(home), foreign).stdout)
    assert shown["deleted"] is False and shown["files"][0]["path"] == foreign_file
    proc = siku("get", "--home", str(home), foreign, "--file", foreign_file, check=False)
    assert proc.returncode != 0 and "held by its library" in proc.stderr
    assert _state(home) == before
