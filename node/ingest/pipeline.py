"""`siku ingest`: sources → chunks (two worker threads) → signed records, committed in batches.

Order of durability, which is what makes a kill -9 at any moment safe: every chunk of a batch
is written temp → fsync → rename, then the chunk directories are fsynced (`flush`), and only
then is the batch's records committed in one SQLite transaction. A resource is visible exactly
when its record is committed, and by then all of its bytes are on disk. A crash before the
commit leaves only unreferenced chunks (harmless, reused by the next ingest) and temp files
(removed when the store is next opened).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from node.errors import IngestError
from node.ingest.sources import SourceResource, discover
from node.keys import Identity
from protocol import ark
from protocol.errors import ProtocolError
from protocol.records import (
    CatalogueRecord,
    FileEntry,
    LangString,
    Rights,
    sign_catalogue,
)
from storage.catalogue import StoredRecord
from storage.errors import StorageError
from storage.importer import import_file
from storage.store import Store

__all__ = ["IngestOptions", "IngestResult", "IngestSummary", "Ingester", "discover_all"]

# Records committed per transaction, and resources prepared ahead of the committer.
BATCH_RECORDS = 500
MAX_IN_FLIGHT = 64


@dataclass(frozen=True)
class IngestOptions:
    """Defaults from the command line for what a source does not say itself."""

    collection: str | None = None
    access: str | None = None
    embargo_until: dt.date | None = None
    rights: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class IngestResult:
    label: str
    status: str  # added | updated | unchanged | failed
    pid: str | None = None
    message: str = ""
    files: int = 0
    size: int = 0


@dataclass
class IngestSummary:
    counts: dict[str, int] = field(
        default_factory=lambda: {"added": 0, "updated": 0, "unchanged": 0, "failed": 0}
    )

    def add(self, result: IngestResult) -> None:
        self.counts[result.status] += 1

    @property
    def ok(self) -> bool:
        return self.counts["failed"] == 0


@dataclass(frozen=True)
class _Prepared:
    source: SourceResource
    files: tuple[FileEntry, ...]


def discover_all(paths: Iterable[Path]) -> Iterator[SourceResource | IngestError]:
    """Every resource of every input; an input that is unusable as a whole (invalid bag,
    unreadable CSV) becomes one failed item, and the other inputs still go ahead."""
    for path in paths:
        try:
            yield from discover(path)
        except IngestError as e:
            yield e


def _fingerprint(
    source: SourceResource, rights: Rights, collection: str, files: Iterable[FileEntry]
) -> bytes:
    # What makes two ingests "the same input": metadata, rights and every file's digest.
    body = msgpack.packb(
        [
            [[k, [[v.value, v.lang] for v in vs]] for k, vs in sorted(source.dc.items())],
            collection,
            [rights.access, str(rights.embargo_until or ""), rights.statement, rights.license],
            [[f.path, f.media_type, f.sha256] for f in files],
        ],
        use_bin_type=True,
    )
    return hashlib.sha256(b"siku/ingest-fingerprint/v1\x00" + body).digest()


def _content_key(files: tuple[FileEntry, ...]) -> bytes | None:
    if not files:
        return None
    body = msgpack.packb(sorted([f.path, f.sha256] for f in files), use_bin_type=True)
    return hashlib.sha256(b"siku/ingest-content/v1\x00" + body).digest()


class Ingester:
    """Runs one ingest. Results stream out in completion order through `run()`."""

    def __init__(
        self,
        store: Store,
        identity: Identity,
        naan: str,
        code: str,
        options: IngestOptions,
        *,
        workers: int = 2,
        on_bytes: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.identity = identity
        self.naan = naan
        self.code = code
        self.options = options
        self.workers = workers
        self.on_bytes = on_bytes
        self.clock = clock
        self._claimed_bytes = 0

    async def run(
        self, sources: Iterable[SourceResource | IngestError]
    ) -> AsyncIterator[IngestResult]:
        queue: asyncio.Queue[_Prepared | IngestResult | None] = asyncio.Queue(MAX_IN_FLIGHT)
        results: asyncio.Queue[IngestResult | None] = asyncio.Queue()
        self._claimed_bytes = await self.store.bytes_used()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="ingest") as pool:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._produce(sources, pool, queue))
                tg.create_task(self._commit_loop(queue, results))
                while (result := await results.get()) is not None:
                    yield result

    async def _produce(
        self,
        sources: Iterable[SourceResource | IngestError],
        pool: ThreadPoolExecutor,
        queue: asyncio.Queue[_Prepared | IngestResult | None],
    ) -> None:
        # Files of up to 2×workers resources are imported at once; the queue bounds the rest.
        slots = asyncio.Semaphore(self.workers * 2)
        async with asyncio.TaskGroup() as tg:
            for source in sources:
                if isinstance(source, IngestError):
                    await queue.put(IngestResult(source.source, "failed", message=source.detail))
                    continue
                if not source.files:
                    await queue.put(_Prepared(source, ()))
                    continue
                await slots.acquire()
                tg.create_task(self._prepare(source, pool, queue, slots))
        await queue.put(None)

    async def _prepare(
        self,
        source: SourceResource,
        pool: ThreadPoolExecutor,
        queue: asyncio.Queue[_Prepared | IngestResult | None],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            size = sum(f.size for f in source.files)
            quota = self.store.settings.quota_bytes
            if self._claimed_bytes + size > quota:
                raise IngestError(
                    source.label,
                    f"storing {size} bytes would pass the node's quota of {quota} bytes",
                )
            self._claimed_bytes += size
            loop = asyncio.get_running_loop()
            entries = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        pool,
                        import_file,
                        self.store.chunks,
                        f.source,
                        f.path,
                        f.media_type,
                        f.expected,
                        self.on_bytes,
                    )
                    for f in source.files
                )
            )
            await queue.put(_Prepared(source, tuple(entries)))
        except (IngestError, StorageError, ProtocolError) as e:
            await queue.put(IngestResult(source.label, "failed", message=_message(e)))
        finally:
            slots.release()

    async def _commit_loop(
        self,
        queue: asyncio.Queue[_Prepared | IngestResult | None],
        results: asyncio.Queue[IngestResult | None],
    ) -> None:
        done = False
        while not done:
            batch: list[_Prepared] = []
            item = await queue.get()
            while True:
                if item is None:
                    done = True
                    break
                if isinstance(item, IngestResult):
                    await results.put(item)
                else:
                    batch.append(item)
                if len(batch) >= BATCH_RECORDS or queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                for result in await self._commit(batch):
                    await results.put(result)
        await results.put(None)

    async def _commit(self, batch: list[_Prepared]) -> list[IngestResult]:
        if any(p.files for p in batch):
            await asyncio.to_thread(self.store.chunks.flush)
        drafts: list[tuple[_Prepared, Rights, str, bytes, bytes | None]] = []
        results: list[IngestResult] = []
        for p in batch:
            try:
                rights, collection = self._rights(p.source)
            except (IngestError, ProtocolError) as e:
                results.append(IngestResult(p.source.label, "failed", message=_message(e)))
                continue
            fp = _fingerprint(p.source, rights, collection, p.files)
            drafts.append((p, rights, collection, fp, _content_key(p.files)))
        catalogue = self.store.catalogue
        by_fp, by_ck = await catalogue.ingested(
            [d[3] for d in drafts], [d[4] for d in drafts if d[4] is not None]
        )
        versions = iter(await catalogue.reserve_versions(int(self.clock() * 1000), len(drafts)))
        fresh = iter(
            await self._mint(
                sum(1 for d in drafts if d[3] not in by_fp and by_ck.get(d[4] or b"") is None)
            )
        )
        records: list[tuple[StoredRecord, IngestResult]] = []
        for p, rights, collection, fp, ck in drafts:
            label = p.source.label
            size = sum(f.size for f in p.files)
            if fp in by_fp:
                results.append(
                    IngestResult(label, "unchanged", by_fp[fp], files=len(p.files), size=size)
                )
                continue
            pid = by_ck.get(ck) if ck is not None else None
            status = "updated" if pid else "added"
            if pid is None:
                pid = next(fresh)
            try:
                record = CatalogueRecord(
                    pid=pid,
                    origin=self.identity.public_key,
                    version=next(versions),
                    dc={
                        k: tuple(LangString(v.value, v.lang) for v in vs)
                        for k, vs in p.source.dc.items()
                    },
                    collection=collection,
                    rights=rights,
                    files=p.files,
                )
            except ProtocolError as e:
                results.append(IngestResult(label, "failed", message=_message(e)))
                continue
            by_fp[fp] = pid  # the same input twice in one run is stored once
            signed = sign_catalogue(record, self.identity.key)
            records.append(
                (
                    StoredRecord(signed, record, fingerprint=fp, content_key=ck),
                    IngestResult(label, status, pid, files=len(p.files), size=size),
                )
            )
        await catalogue.put([r for r, _ in records])
        return results + [r for _, r in records]

    def _rights(self, source: SourceResource) -> tuple[Rights, str]:
        o = self.options
        access = source.access or o.access or "open"
        embargo = (
            source.embargo_until if source.access else (source.embargo_until or o.embargo_until)
        )
        rights = Rights(
            access=access,
            embargo_until=embargo if access == "embargoed" else None,
            statement=source.rights or o.rights or "",
            license=source.license or o.license or "",
        )
        if access == "embargoed" and embargo is None:
            raise IngestError(source.label, "access is 'embargoed' but no embargo date is given")
        return rights, source.collection or o.collection or ""

    async def _mint(self, n: int) -> list[str]:
        """`n` new pids, none of which this store has ever held (tombstones included)."""
        pids: set[str] = set()
        while len(pids) < n:
            while len(pids) < n:
                pids.add(str(ark.mint(self.naan, self.code, os.urandom(ark.ENTROPY_BYTES))))
            pids -= await self.store.catalogue.existing_pids(list(pids))
        return sorted(pids)


def _message(error: Exception) -> str:
    if isinstance(error, IngestError):
        return error.detail
    return getattr(error, "message", str(error))
