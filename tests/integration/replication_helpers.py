"""Helpers for the content-replication integration tests: content files, ingest through the real
CLI, node.toml edits before a start, read-only audits of a store (records, copies, chunk files),
the admin replication state, and one daemon run inside the test process (the misbehaving peer)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import hashlib
import json
import logging
import random
import re
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import load_config
from node.daemon import Daemon
from node.keys import load_identity
from protocol.holdings import pid_key
from protocol.records import CatalogueRecord, decode_catalogue, sign_catalogue
from storage.catalogue import StoredRecord
from storage.store import Store
from sync.placement import Member, Policy, Resource, place
from tests.conftest import siku_command, siku_env
from tests.integration.sync_helpers import Node

__all__ = [
    "InProcessDaemon",
    "StoredResource",
    "bad_chunk_files",
    "chunk_files",
    "chunk_path",
    "copies",
    "delete_records",
    "download",
    "edit_toml",
    "holders_known",
    "holds_intact",
    "ingest_csv",
    "log_tail",
    "members",
    "patched",
    "random_file",
    "replication",
    "resources",
    "sparse_zero_file",
    "target_of",
    "try_replication",
]

CSV_HEADER = ("title", "creator", "collection", "access", "files")


# --- content and ingest -------------------------------------------------------------------------


def random_file(path: Path, size: int, seed: int) -> bytes:
    """`size` seeded pseudo-random bytes (incompressible, no chunk shared with another seed)."""
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def sparse_zero_file(path: Path, size: int) -> None:
    """A file of `size` zero bytes that takes no disk space: every 1 MiB chunk of it is the same
    chunk, so a resource made of it weighs `size` against a quota but moves one chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


def ingest_csv(home: Path, csv_path: Path, rows: Sequence[Sequence[str]]) -> list[str]:
    """Write a CSV of `rows` (CSV_HEADER columns) and ingest it with `siku ingest --json`;
    the pids, in row order."""
    with csv_path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
    proc = subprocess.run(
        siku_command("ingest", "--home", str(home), "--json", str(csv_path)),
        capture_output=True,
        text=True,
        env=siku_env(),
        timeout=180,
    )
    assert proc.returncode == 0, f"siku ingest failed:\n{proc.stdout}\n{proc.stderr}"
    by_line: dict[int, str] = {}
    for line in proc.stdout.splitlines():
        result = json.loads(line)
        assert result["status"] == "added", result
        by_line[int(str(result["label"]).rsplit(":", 1)[1])] = str(result["pid"])
    assert sorted(by_line) == list(range(2, len(rows) + 2)), proc.stdout
    return [by_line[i + 2] for i in range(len(rows))]


def edit_toml(home: Path, table: str, key: str, value: str) -> None:
    """Set `key = value` (TOML text) in [table] of the node's node.toml, in place."""
    path = home / "node.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    current = ""
    for i, line in enumerate(lines):
        header = re.fullmatch(r"\[(\w+)\]", line.strip())
        if header:
            current = header.group(1)
        elif current == table and re.match(rf"{key}\s*=", line):
            lines[i] = f"{key} = {value}"
            break
    else:
        raise AssertionError(f"no {key} in [{table}] of {path}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_config(home)  # still a valid configuration


# --- the store, read-only -----------------------------------------------------------------------


def _read_only(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA query_only = 1")
    return conn


@dataclass(frozen=True)
class StoredResource:
    """A live record with content, as one node's store holds it."""

    pid: str
    record: CatalogueRecord
    held: bool

    @property
    def access(self) -> str:
        return self.record.rights.access

    @property
    def digests(self) -> frozenset[bytes]:
        return frozenset(c.digest for f in self.record.files for c in f.chunks)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.record.files)


def resources(db: Path) -> dict[str, StoredResource]:
    """pid → live record with content (signature verified) and whether this node holds it."""
    with _read_only(db) as conn:
        rows = conn.execute(
            "SELECT pid, envelope, held FROM records WHERE deleted = 0 AND content_size > 0"
        ).fetchall()
    out: dict[str, StoredResource] = {}
    for pid, envelope, held in rows:
        _, record = decode_catalogue(bytes(envelope), delegated=True)
        out[str(pid)] = StoredResource(str(pid), record, bool(held))
    return out


def copies(db: Path) -> dict[str, tuple[str, bool]]:
    """pid → (class, dark) of the copies this node keeps for the network."""
    with _read_only(db) as conn:
        rows = conn.execute("SELECT pid, class, dark FROM copies").fetchall()
    return {str(p): (str(k), bool(d)) for p, k, d in rows}


def holders_known(db: Path, pid: str) -> set[bytes]:
    """Holders of `pid` per the holdings pages this node has received."""
    key = int.from_bytes(pid_key(pid), "big", signed=True)
    with _read_only(db) as conn:
        rows = conn.execute("SELECT holder FROM holdings WHERE pid_key = ?", (key,)).fetchall()
    return {bytes(r[0]) for r in rows}


def chunk_path(home: Path, digest: bytes) -> Path:
    h = digest.hex()
    return home / "store" / "chunks" / h[:2] / h[2:4] / h


def chunk_files(home: Path) -> list[Path]:
    """Every file under its final name in the chunk store (not tmp/ or quarantine/)."""
    root = home / "store" / "chunks"
    return [p for p in root.glob("??/??/*") if p.is_file()]


def bad_chunk_files(home: Path) -> list[str]:
    """Chunk files whose SHA-256 is not their name: must always be empty."""
    bad = []
    for path in chunk_files(home):
        if hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
            bad.append(str(path))
    return bad


def holds_intact(home: Path, res: StoredResource) -> bool:
    """Every chunk of the resource is present under its name with the right bytes."""
    for f in res.record.files:
        for c in f.chunks:
            path = chunk_path(home, c.digest)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return False
            if len(data) != c.size or hashlib.sha256(data).digest() != c.digest:
                return False
    return True


# --- placement, as every node computes it -------------------------------------------------------


def members(nodes: dict[str, Node], public_keys: dict[str, bytes]) -> list[Member]:
    """The network's members as placement sees them (issuer chain parent first)."""
    out = []
    for key, node in nodes.items():
        chain: list[str] = []
        parent = node.spec.parent
        while parent is not None:
            chain.append(nodes[parent].node_id)
            parent = nodes[parent].spec.parent
        out.append(Member(node.node_id, public_keys[key], node.spec.tier, node.spec.region,
                          tuple(chain)))  # fmt: skip
    return out


def target_of(
    pid: str, origin: str, size: int, access: str, member_list: Sequence[Member]
) -> tuple[str, ...]:
    """Where the default policy places a resource held only by its origin."""
    resource = Resource(pid, pid_key(pid), origin, b"\0" * 8, size, "", access)
    placed = place(resource, member_list, {pid: frozenset({origin})}, Policy(), dt.date.today())
    return placed.target


# --- HTTP -------------------------------------------------------------------------------------


def replication(node: Node) -> dict[str, Any]:
    return node.admin_json("/admin/api/v1/replication")


def try_replication(node: Node) -> dict[str, Any] | None:
    try:
        return replication(node)
    except OSError:
        return None


def download(node: Node, pid: str, path: str, timeout: float = 60) -> tuple[int, bytes]:
    """(status, body) of a GET of a file from the node's public content API."""
    url = f"{node.spec.url}/api/v1/content/{pid}/{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def log_tail(node: Node, lines: int = 30) -> str:
    try:
        text = node.log()
    except FileNotFoundError:
        return f"(no log for {node.key})"
    return f"--- {node.key} daemon.log (last {lines} lines) ---\n" + "\n".join(
        text.splitlines()[-lines:]
    )


# --- a daemon inside the test process -----------------------------------------------------------


class InProcessDaemon:
    """`node.daemon.Daemon` run on its own event loop in a thread of the test process, its log
    appended to HOME/daemon.log. It is the same daemon `siku run` starts; being in-process lets
    a test patch what it does (here: what it serves)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.config = load_config(home)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._daemon: Daemon | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._handler: logging.Handler | None = None

    def start(self) -> None:
        handler = logging.FileHandler(self.home / "daemon.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        self._handler = handler
        ready = threading.Event()

        def main() -> None:
            async def go() -> None:
                self._loop = asyncio.get_running_loop()
                self._daemon = Daemon(self.config)
                ready.set()
                await self._daemon.run()

            try:
                asyncio.run(go())
            except BaseException as e:  # reported by check_alive
                self.error = e
                ready.set()

        self._thread = threading.Thread(target=main, name=f"daemon {self.home.name}", daemon=True)
        self._thread.start()
        ready.wait(30)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"the in-process daemon of {self.home} stopped: {self.error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._daemon is not None and self.alive():
            self._loop.call_soon_threadsafe(self._daemon.stop)
        if self._thread is not None:
            self._thread.join(30)
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Callable[..., Any]) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def delete_records(home: Path, pids: Sequence[str]) -> None:
    """Withdraw some of this (stopped) node's records, as `siku delete` does, in one store
    session: candidates a test ingested but does not use."""

    config = load_config(home)
    identity = load_identity(config.key_file)

    async def go() -> None:
        store = await Store.open(config.store)
        try:
            for pid in pids:
                version = await store.catalogue.next_version(int(time.time() * 1000))
                tombstone = CatalogueRecord(pid, identity.public_key, version, deleted=True)
                signed = sign_catalogue(tombstone, identity.key)
                (outcome,) = await store.catalogue.put([StoredRecord(signed, tombstone)])
                assert outcome.applied, pid
        finally:
            await store.close()

    asyncio.run(go())
