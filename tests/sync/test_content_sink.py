"""sync.content.StoreChunkSink over a real FileChunkStore: `missing` finds what is absent or
damaged, and marks what a transfer will count on as needed now (the orphan sweep spares it)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from storage.chunks import FileChunkStore
from sync.content import StoreChunkSink


def _age(chunks: FileChunkStore, digest: bytes, seconds: float) -> None:
    h = digest.hex()
    then = time.time() - seconds
    os.utime(f"{chunks.root}/{h[:2]}/{h[2:4]}/{h}", (then, then))


def _damage(chunks: FileChunkStore, digest: bytes) -> None:
    h = digest.hex()
    Path(f"{chunks.root}/{h[:2]}/{h[2:4]}/{h}").write_bytes(b"Xamaged")  # same size, other bytes


async def test_missing_lists_the_absent_and_damaged_and_touches_the_rest(tmp_path: Path) -> None:
    chunks = FileChunkStore(tmp_path / "chunks")
    blobs = [b"kept", b"damaged", b"old"]
    digests = [hashlib.sha256(b).digest() for b in blobs]
    for d, b in zip(digests, blobs, strict=True):
        chunks.put(d, b)
        _age(chunks, d, 7200)
    _damage(chunks, digests[1])
    absent = hashlib.sha256(b"absent").digest()
    sink = StoreChunkSink(chunks)
    assert await sink.missing([*digests, absent], verify=True) == [digests[1], absent]
    hour_ago = time.time() - 3600
    # The present ones were touched: not among the files older than an hour any more.
    old = {d for top in range(256) for d in chunks.digests_under(top, hour_ago)}
    assert old.isdisjoint({digests[0], digests[2]})
    _age(chunks, digests[2], 7200)
    assert await sink.missing([digests[2]], verify=False) == []
    assert digests[2] not in {d for top in range(256) for d in chunks.digests_under(top, hour_ago)}
    chunks.close()
