"""The ingest pipeline in-process: quota, early metadata checks, results per resource."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import storage.catalogue
from node.ingest.pipeline import Ingester, IngestOptions, IngestResult, discover_all
from node.keys import Identity, create_identity
from storage.store import Store, StoreSettings


@pytest.fixture
def identity(tmp_path: Path) -> Identity:
    return create_identity(tmp_path / "keys" / "node.key")


async def _store(tmp_path: Path, quota: int) -> Store:
    return await Store.open(StoreSettings(tmp_path / "store", quota))


async def _ingest(
    store: Store, identity: Identity, *paths: Path, options: IngestOptions | None = None
) -> list[IngestResult]:
    ingester = Ingester(store, identity, "99999", "620982", options or IngestOptions())
    return [r async for r in ingester.run(discover_all(list(paths)))]


def _chunk_files(store_root: Path) -> list[Path]:
    chunks = store_root / "chunks"
    return [p for p in chunks.glob("[0-9a-f][0-9a-f]/*/*") if p.is_file()]


async def test_quota_refuses_new_bytes_but_not_stored_ones(
    tmp_path: Path, identity: Identity
) -> None:
    store = await _store(tmp_path, quota=1_000_000)
    try:
        small = tmp_path / "small.bin"
        small.write_bytes(os.urandom(600_000))
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(3_000_000))
        assert [r.status for r in await _ingest(store, identity, small)] == ["added"]
        # Re-ingesting what is stored needs no room: it is reported unchanged.
        assert [r.status for r in await _ingest(store, identity, small)] == ["unchanged"]
        (failed,) = await _ingest(store, identity, big)
        assert failed.status == "failed" and "quota" in failed.message
        assert await store.bytes_used() == 600_000
        assert len(_chunk_files(tmp_path / "store")) == 1
    finally:
        await store.close()


async def test_bad_metadata_is_refused_before_any_byte_is_copied(
    tmp_path: Path, identity: Identity
) -> None:
    store = await _store(tmp_path, quota=1 << 30)
    try:
        folder = tmp_path / "item"
        folder.mkdir()
        (folder / "scan.bin").write_bytes(os.urandom(2_000_000))
        (folder / "metadata.json").write_text('{"title": "X", "collection": "Local History"}')
        (result,) = await _ingest(store, identity, folder)
        assert result.status == "failed" and "collection" in result.message
        assert _chunk_files(tmp_path / "store") == []
    finally:
        await store.close()


async def test_results_cover_every_resource_of_a_large_catalogue_only_csv(
    tmp_path: Path, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = ["identifier,title@zh,title@en"] + [f"ID-{i},第{i}卷,Volume {i}" for i in range(2500)]
    rows.insert(1200, "ID-bad,,")  # no title: that row alone fails
    csv = tmp_path / "c.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    store = await _store(tmp_path, quota=1 << 30)
    try:
        results = await _ingest(store, identity, csv)
        assert len(results) == 2501
        assert sum(r.status == "added" for r in results) == 2500
        (bad,) = [r for r in results if r.status == "failed"]
        assert bad.label.endswith("c.csv:1201")
        assert len({r.pid for r in results if r.pid}) == 2500
        assert (await store.catalogue.counts()).records == 2500
        page = await store.catalogue.search("第12卷", limit=5)
        assert page.total == 1 and not page.total_is_lower_bound
        # Past the counting bound the total is a lower bound, said as such.
        monkeypatch.setattr(storage.catalogue, "RANK_WINDOW", 1000)
        page = await store.catalogue.search("卷", limit=5)
        assert (page.total, page.total_is_lower_bound) == (1000, True)
        assert len(page.hits) == 5
        # A broad query is ranked among its newest RANK_WINDOW matches only.
        newest = await store.catalogue.search("第2499卷", limit=1)
        oldest = await store.catalogue.search("第0卷", limit=1)
        assert newest.hits and oldest.hits
        window = await store.catalogue.search("卷", limit=100, offset=900)
        assert oldest.hits[0].pid not in {h.pid for h in window.hits}
    finally:
        await store.close()
