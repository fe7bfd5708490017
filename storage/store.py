"""A node's store: the record database and the chunk store, opened and closed together."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from protocol.records import CHUNK_SIZE, FileEntry
from storage.catalogue import Catalogue
from storage.chunks import ChunkStore, FileChunkStore
from storage.database import Database
from storage.errors import IntegrityError, StorageError
from storage.holdings import HoldingsStore
from storage.membership import MembershipStore
from storage.syncindex import SyncIndex

__all__ = ["Store", "StoreSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreSettings:
    root: Path  # holds catalogue.db and chunks/
    quota_bytes: int


class Store:
    def __init__(self, settings: StoreSettings, db: Database, chunks: ChunkStore) -> None:
        self.settings = settings
        self.db = db
        self.catalogue = Catalogue(db)
        self.membership = MembershipStore(db)
        self.sync = SyncIndex(db)
        self.holdings = HoldingsStore(db)
        self.chunks = chunks

    @classmethod
    async def open(cls, settings: StoreSettings) -> Store:
        settings.root.mkdir(mode=0o750, parents=True, exist_ok=True)
        # Opening the chunk store removes temp files a crash left behind.
        chunks = await asyncio.to_thread(FileChunkStore, settings.root / "chunks")
        db = await Database.open(settings.root / "catalogue.db")
        store = cls(settings, db, chunks)
        try:
            added = await store.sync.backfill()
            keyed = await store.holdings.backfill_keys()
        except BaseException:
            await store.close()
            raise
        if added:
            log.info("indexed %d records stored before catalogue sync", added)
        if keyed:
            log.info("keyed %d records stored before replication", keyed)
        return store

    async def close(self) -> None:
        try:
            await self.db.close()
        finally:
            await asyncio.to_thread(self.chunks.close)

    @asynccontextmanager
    async def exclusive(
        self, name: str, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold an advisory lock shared by every process using this store (flock on
        `root/NAME.lock`) while the block runs; `on_wait` is called if another holder must
        finish first. Ingest takes it so that two ingests of one input cannot both add it."""
        fd = os.open(self.settings.root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @asynccontextmanager
    async def try_exclusive(self, name: str) -> AsyncIterator[bool]:
        """`exclusive` without waiting: the block runs with True if the lock was free (and is
        held meanwhile), with False if another holder has it."""
        try:
            fd = os.open(self.settings.root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as e:
            raise StorageError(f"cannot open the {name} lock: {e.strerror}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    async def iter_range(self, entry: FileEntry, start: int, stop: int) -> AsyncIterator[bytes]:
        """Verified bytes [start, stop) of a file, one slice per chunk, read in a worker thread.

        Every chunk is hashed before any of its bytes are yielded; a mismatch raises
        IntegrityError (the chunk store quarantines the chunk), so damage is never served."""
        if not (0 <= start <= stop <= entry.size):
            raise ValueError(f"range {start}-{stop} outside a file of {entry.size} bytes")
        first = start // CHUNK_SIZE
        for index in range(first, len(entry.chunks)):
            offset = index * CHUNK_SIZE
            if offset >= stop:
                break
            ref = entry.chunks[index]
            data = await asyncio.to_thread(self.chunks.get, ref.digest)
            yield data[max(start - offset, 0) : min(stop - offset, ref.size)]

    async def verify_file(self, entry: FileEntry) -> None:
        """Re-hash every chunk of a file and the whole file against the manifest."""
        whole = hashlib.sha256()
        async for piece in self.iter_range(entry, 0, entry.size):
            whole.update(piece)
        if whole.digest() != entry.sha256:
            raise IntegrityError(f"{entry.path}: whole-file SHA-256 does not match its manifest")

    async def bytes_used(self) -> int:
        """Bytes of content held for live records (each shared chunk counted once)."""
        return (await self.catalogue.counts()).chunk_bytes
