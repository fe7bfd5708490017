"""The chunk store as the transfer engine sees it (sync.transfer's ChunkSink): every call runs in
a worker thread, so hashing and file I/O stay off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from storage.chunks import ChunkStore
from storage.errors import ChunkNotFoundError, IntegrityError

__all__ = ["StoreChunkSink"]


class StoreChunkSink:
    def __init__(self, chunks: ChunkStore) -> None:
        self._chunks = chunks

    async def missing(self, digests: Sequence[bytes], *, verify: bool) -> list[bytes]:
        return await asyncio.to_thread(self._missing, list(digests), verify)

    def _missing(self, digests: list[bytes], verify: bool) -> list[bytes]:
        out = []
        for digest in digests:
            if not verify:
                if not self._chunks.has(digest):
                    out.append(digest)
                    continue
            else:
                try:
                    # `get` re-hashes, and quarantines a damaged chunk so that a fresh copy
                    # can take its place.
                    self._chunks.get(digest)
                except (ChunkNotFoundError, IntegrityError):
                    out.append(digest)
                    continue
            # Present, and a transfer counts on it: the orphan sweep must not take it before
            # the copy is committed (it spares files touched within its grace).
            self._chunks.touch(digest)
        return out

    async def put(self, chunks: Sequence[tuple[bytes, bytes]]) -> None:
        await asyncio.to_thread(self._chunks.put_many, list(chunks))

    async def flush(self) -> None:
        await asyncio.to_thread(self._chunks.flush)

    async def read(self, digest: bytes) -> bytes:
        """A held chunk's verified bytes (IntegrityError if damaged)."""
        return await asyncio.to_thread(self._chunks.get, digest)
