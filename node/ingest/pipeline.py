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
from itertools import islice
from pathlib import Path

import msgpack

from node.errors import IngestError
from node.ingest.sources import SourceResource, discover
from node.keys import Identity
from protocol import ark
from protocol.errors import ProtocolError
from protocol.hlc import Hlc
from protocol.records import (
    CatalogueRecord,
    FileEntry,
    LangString,
    Rights,
    sign_catalogue,
)
from storage.catalogue import StoredRecord
from storage.errors import StorageError
from storage.importer import import_file, new_bytes
from storage.store import Store

__all__ = ["IngestOptions", "IngestResult", "IngestSummary", "Ingester", "discover_all"]

# Records committed per transaction, and resources prepared ahead of the committer.
BATCH_RECORDS = 1000
MAX_IN_FLIGHT = 2000
# A batch is committed when full, or this long after its first resource was ready.
BATCH_SECONDS = 0.5
# Versions reserved from the node's clock at a time.
VERSION_RESERVE = 4 * BATCH_RECORDS
# Resources parsed from the input per hop to the parsing thread.
SOURCE_READ_AHEAD = 256
# Threads copying files in. Far more than the cores: each spends most of its time waiting for
# fsync, and the disk writes faster with many requests queued (measured here, 1 MiB
# write+fsync: 1 thread 222 MiB/s, 2 threads 405, 4 threads 477; whole ingest of 300 × 1 MiB:
# 8 threads median 274 MB/s, 16 threads 303). Each holds one 1 MiB buffer.
IMPORT_WORKERS = 16


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


def _source_key(source: SourceResource) -> bytes | None:
    """Which earlier resource an input is a new version of: the one ingested with the same
    dc:identifier (a library's own shelf or accession number), else from the same path. A CSV
    row without an identifier has no identity beyond its content, so it never updates."""
    identifiers = source.dc.get("identifier", ())
    if identifiers:
        key = "identifier:" + identifiers[0].value
    elif source.origin_kind != "csv":
        key = "path:" + source.label
    else:
        return None
    return hashlib.sha256(b"siku/ingest-source/v1\x00" + key.encode("utf-8")).digest()


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
        workers: int = IMPORT_WORKERS,
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
        self._seen_fp: dict[bytes, str] = {}
        self._minted: set[str] = set()
        self._version_pool: list[Hlc] = []

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
        # Input is parsed in a thread, a slice at a time, so the loop keeps committing.
        # Files of up to `workers` resources are imported at once; the queue bounds the rest.
        slots = asyncio.Semaphore(self.workers)
        it = iter(sources)
        async with asyncio.TaskGroup() as tg:
            while items := await asyncio.to_thread(lambda: list(islice(it, SOURCE_READ_AHEAD))):
                for source in items:
                    if isinstance(source, IngestError):
                        await queue.put(
                            IngestResult(source.source, "failed", message=source.detail)
                        )
                    elif not source.files:
                        await queue.put(_Prepared(source, ()))
                    else:
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
            # Metadata is checked before any byte is copied: a bad row costs no disk.
            self._check_draft(source)
            loop = asyncio.get_running_loop()
            size = sum(f.size for f in source.files)
            quota = self.store.settings.quota_bytes
            if self._claimed_bytes + size > quota:
                # Near the quota, count exactly: content already stored costs nothing.
                size = sum(
                    await asyncio.gather(
                        *(
                            loop.run_in_executor(pool, new_bytes, self.store.chunks, f.source)
                            for f in source.files
                        )
                    )
                )
                if self._claimed_bytes + size > quota:
                    raise IngestError(
                        source.label,
                        f"storing {size} new bytes would pass the node's quota of {quota} bytes",
                    )
            self._claimed_bytes += size
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
        """Batches prepared resources and commits them. Batch N+1 is built (signed, CPU) while
        batch N is written (database thread), and written only after N has committed."""
        loop = asyncio.get_running_loop()
        writing: asyncio.Task[list[IngestResult]] | None = None
        async with asyncio.TaskGroup() as tg:
            done = False
            while not done:
                batch: list[_Prepared] = []
                item = await queue.get()
                deadline = loop.time() + BATCH_SECONDS
                while True:
                    if item is None:
                        done = True
                        break
                    if isinstance(item, IngestResult):
                        await results.put(item)
                    else:
                        batch.append(item)
                    if len(batch) >= BATCH_RECORDS:
                        break
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        try:
                            async with asyncio.timeout_at(deadline):
                                item = await queue.get()
                        except TimeoutError:
                            break
                if not batch:
                    continue
                if any(p.files for p in batch):
                    # Chunks durable before any record that refers to them is committed.
                    await asyncio.to_thread(self.store.chunks.flush)
                records, early = await self._build(batch)
                for result in early:
                    await results.put(result)
                if writing is not None:
                    for result in await writing:
                        await results.put(result)
                writing = tg.create_task(self._write(records))
            if writing is not None:
                for result in await writing:
                    await results.put(result)
        await results.put(None)

    async def _write(self, records: list[tuple[StoredRecord, IngestResult]]) -> list[IngestResult]:
        await self.store.catalogue.put([r for r, _ in records])
        return [r for _, r in records]

    async def _build(
        self, batch: list[_Prepared]
    ) -> tuple[list[tuple[StoredRecord, IngestResult]], list[IngestResult]]:
        """Signed records for a batch, and the results already known (failed, unchanged)."""
        drafts: list[tuple[_Prepared, Rights, str, bytes, bytes | None]] = []
        results: list[IngestResult] = []
        for p in batch:
            try:
                rights, collection = self._rights(p.source)
            except (IngestError, ProtocolError) as e:
                results.append(IngestResult(p.source.label, "failed", message=_message(e)))
                continue
            fp = _fingerprint(p.source, rights, collection, p.files)
            drafts.append((p, rights, collection, fp, _source_key(p.source)))
        catalogue = self.store.catalogue
        by_fp, by_key = await catalogue.ingested(
            [d[3] for d in drafts], [d[4] for d in drafts if d[4] is not None]
        )
        # The same input twice in one run is stored once (its batch may not be committed yet);
        # an update is always of a resource from an earlier run.
        by_fp.update(self._seen_fp)
        by_key = {k: pid for k, pid in by_key.items() if pid not in self._minted}
        versions = iter(await self._versions(len(drafts)))
        fresh = iter(
            await self._mint(
                sum(1 for d in drafts if d[3] not in by_fp and by_key.get(d[4] or b"") is None)
            )
        )
        records: list[tuple[StoredRecord, IngestResult]] = []
        for p, rights, collection, fp, key in drafts:
            label = p.source.label
            size = sum(f.size for f in p.files)
            if fp in by_fp:
                results.append(
                    IngestResult(label, "unchanged", by_fp[fp], files=len(p.files), size=size)
                )
                continue
            pid = by_key.get(key) if key is not None else None
            status = "updated" if pid else "added"
            if pid is None:
                pid = next(fresh)
            else:
                rights, collection = await self._kept_rights(pid, p.source, rights, collection)
            try:
                record = CatalogueRecord(
                    pid=pid,
                    origin=self.identity.public_key,
                    version=next(versions),
                    dc=_dc(p.source),
                    collection=collection,
                    rights=rights,
                    files=p.files,
                )
            except ProtocolError as e:
                results.append(IngestResult(label, "failed", message=_message(e)))
                continue
            by_fp[fp] = self._seen_fp[fp] = pid
            signed = sign_catalogue(record, self.identity.key)
            records.append(
                (
                    StoredRecord(signed, record, fingerprint=fp, source_key=key),
                    IngestResult(label, status, pid, files=len(p.files), size=size),
                )
            )
        return records, results

    def _check_draft(self, source: SourceResource) -> None:
        """Raise what building this resource's record would raise, files aside."""
        rights, collection = self._rights(source)
        CatalogueRecord(
            pid=_PLACEHOLDER_PID,
            origin=self.identity.public_key,
            version=Hlc(0),
            dc=_dc(source),
            collection=collection,
            rights=rights,
        )

    async def _kept_rights(
        self, pid: str, source: SourceResource, rights: Rights, collection: str
    ) -> tuple[Rights, str]:
        """An update changes rights and collection only where the input says so: a new
        version never opens a restricted resource by default."""
        held = await self.store.catalogue.get(pid)
        if held is None:
            return rights, collection
        old = held[1]
        if source.access is None and self.options.access is None:
            statement = source.rights or self.options.rights or old.rights.statement
            license_ = source.license or self.options.license or old.rights.license
            rights = Rights(old.rights.access, old.rights.embargo_until, statement, license_)
        if source.collection is None and self.options.collection is None:
            collection = old.collection
        return rights, collection

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

    async def _versions(self, n: int) -> list[Hlc]:
        """`n` fresh versions from a pool reserved in advance, so that building a batch does
        not wait for the previous batch's write transaction to end."""
        if len(self._version_pool) < n:
            self._version_pool.extend(
                await self.store.catalogue.reserve_versions(
                    int(self.clock() * 1000), max(n, VERSION_RESERVE)
                )
            )
        taken, self._version_pool = self._version_pool[:n], self._version_pool[n:]
        return taken

    async def _mint(self, n: int) -> list[str]:
        """`n` new pids, none of which this store has ever held (tombstones included)."""
        pids: set[str] = set()
        while len(pids) < n:
            want = n - len(pids)
            entropy = os.urandom(want * ark.ENTROPY_BYTES)
            for i in range(want):
                e = entropy[i * ark.ENTROPY_BYTES : (i + 1) * ark.ENTROPY_BYTES]
                pid = str(ark.mint(self.naan, self.code, e))
                if pid not in self._minted:
                    pids.add(pid)
            pids -= await self.store.catalogue.existing_pids(list(pids))
        self._minted |= pids
        return sorted(pids)


_PLACEHOLDER_PID = str(ark.mint("99999", "00", bytes(ark.ENTROPY_BYTES)))


def _dc(source: SourceResource) -> dict[str, tuple[LangString, ...]]:
    return {k: tuple(LangString(v.value, v.lang) for v in vs) for k, vs in source.dc.items()}


def _message(error: Exception) -> str:
    if isinstance(error, IngestError):
        return error.detail
    return getattr(error, "message", str(error))
