"""The catalogue: signed records kept as verified, indexed for search, newest version wins."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocol.hlc import MAX_WALL_MS, Hlc, tick
from protocol.holdings import content_key, pid_key
from protocol.records import (
    KIND_CATALOGUE,
    CatalogueRecord,
    SignedRecord,
    decode_catalogue,
    encode_envelope,
)
from storage.database import Database, translate_errors
from storage.errors import DatabaseError
from storage.keys import key_int
from storage.textindex import index_text, match_expression

__all__ = [
    "BM25_WEIGHTS",
    "Catalogue",
    "CatalogueCounts",
    "Outcome",
    "SearchHit",
    "SearchPage",
    "StoredRecord",
]

# Relative weight of a match in title, creator, subject, description.
BM25_WEIGHTS = (10.0, 5.0, 3.0, 1.0)
MAX_PAGE_SIZE = 100
# A query matching more than RANK_WINDOW records is ranked among its RANK_WINDOW most recently
# stored matches (and its total reported as a lower bound): bm25 costs ~3 µs a match, and a
# one-character Chinese query can match most of a catalogue (书 matched 83 % of the 100,000
# records of the benchmark: 330 ms to rank them all, 9 ms to rank the newest 2,000). Narrower
# queries are ranked in full. Paging reaches as far as the window.
RANK_WINDOW = 2_000
MAX_OFFSET = RANK_WINDOW - MAX_PAGE_SIZE
_RANKING = "bm25({})".format(", ".join(str(w) for w in BM25_WEIGHTS))


@dataclass(frozen=True)
class StoredRecord:
    """A record to store, already verified (from `decode_catalogue` or `sign_catalogue`)."""

    signed: SignedRecord
    record: CatalogueRecord
    fingerprint: bytes | None = None  # ingest input fingerprint, remembered for re-ingest
    source_key: bytes | None = None  # the input's identity: same key, new version
    # Whether this node holds the record's content: True for its own ingest (every chunk is
    # durable before the record is stored); False for a record learned from the network.
    held: bool = True


@dataclass(frozen=True)
class Outcome:
    pid: str
    applied: bool  # False: an equal or newer version was already held


@dataclass(frozen=True)
class SearchHit:
    pid: str
    score: float
    summary: dict[str, object]

    def texts(self, element: str) -> list[str]:
        """The values of a DC element kept in the hit's summary (title, creator, date, type)."""
        values = self.summary.get(element)
        if not isinstance(values, list):
            return []
        return [str(v["value"]) for v in values if isinstance(v, dict) and "value" in v]


@dataclass(frozen=True)
class SearchPage:
    query: str
    total: int
    offset: int
    hits: list[SearchHit]
    total_is_lower_bound: bool = False  # more matches than RANK_WINDOW


@dataclass(frozen=True)
class CatalogueCounts:
    records: int
    deleted: int
    files: int
    content_bytes: int
    chunks: int
    chunk_bytes: int


def _summary(record: CatalogueRecord) -> str:
    def first(element: str) -> list[dict[str, str]]:
        return [{"value": v.value, "lang": v.lang} for v in record.values(element)][:8]

    return json.dumps(
        {
            "title": first("title"),
            "creator": first("creator"),
            "date": first("date"),
            "type": first("type"),
            "collection": record.collection,
            "access": record.rights.access,
            "embargo_until": (
                record.rights.embargo_until.isoformat() if record.rights.embargo_until else None
            ),
            "files": len(record.files),
            "size": record.content_size,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _fts_columns(record: CatalogueRecord) -> tuple[str, str, str, str]:
    def text(element: str) -> str:
        return index_text(" \n ".join(v.value for v in record.values(element)))

    return text("title"), text("creator"), text("subject"), text("description")


# Which version of a pid is kept: a deletion first (a withdrawn pid stays withdrawn), then the
# newest HLC version, then origin and record id, so two different records never tie and every
# node keeps the same one (sync.records.catalogue_order is the same order).
CatalogueOrder = tuple[int, int, int, bytes, bytes]


def _order(record: CatalogueRecord, envelope: bytes) -> CatalogueOrder:
    return (
        int(record.deleted),
        record.version.wall_ms,
        record.version.counter,
        record.origin,
        hashlib.sha256(envelope).digest(),
    )


def _item_order(item: StoredRecord) -> CatalogueOrder:
    return _order(item.record, encode_envelope(item.signed))


def _batches(items: list[Any], size: int = 500) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _record_row(item: StoredRecord, now_ms: int) -> tuple[object, ...]:
    r = item.record
    return (
        r.pid,
        item.signed.kind,
        r.origin,
        r.version.wall_ms,
        r.version.counter,
        int(r.deleted),
        r.collection,
        r.rights.access,
        r.rights.embargo_until.isoformat() if r.rights.embargo_until else None,
        r.title,
        _summary(r),
        r.content_size,
        len(r.files),
        encode_envelope(item.signed),
        now_ms,
        int(item.held),
        key_int(pid_key(r.pid)),
        key_int(content_key(r.files)),
    )


def chunk_counts(record: CatalogueRecord) -> dict[bytes, int]:
    """The distinct chunks of a held record, each counted once (digest → size)."""
    # Each distinct chunk of a record counts once toward its reference count.
    return {c.digest: c.size for f in record.files for c in f.chunks}


# A version from elsewhere moves this node's clock at most this far past its own wall clock: a
# record dated far ahead (a peer's broken clock, or malice) must not drag every later version of
# this node along with it.
MAX_CLOCK_LEAD_MS = 3_600_000


async def _observe(conn: Any, seen: Hlc) -> None:
    ceiling = Hlc(min(int(time.time() * 1000) + MAX_CLOCK_LEAD_MS, MAX_WALL_MS))
    seen = min(seen, ceiling)
    async with conn.execute("SELECT wall_ms, counter FROM clock WHERE id = 1") as cur:
        row = await cur.fetchone()
    if row is None or Hlc(row[0], row[1]) < seen:
        await conn.execute(
            "UPDATE clock SET wall_ms = ?, counter = ? WHERE id = 1", (seen.wall_ms, seen.counter)
        )


class Catalogue:
    def __init__(self, db: Database) -> None:
        self.db = db

    @translate_errors
    async def put(self, items: Sequence[StoredRecord]) -> list[Outcome]:
        """Store a batch in one transaction; a record replaces only an older version of itself.

        The caller guarantees every item was verified; for ingest, also that every chunk the
        records refer to is already durable in the chunk store. Statements are batched
        (executemany) because each call crosses to the database thread."""
        newest: dict[str, StoredRecord] = {}
        for item in items:
            held = newest.get(item.record.pid)
            if held is None or _item_order(item) > _item_order(held):
                newest[item.record.pid] = item
        # Written here (ingest, deletion), as opposed to received: catalogue sync tells its
        # neighbours about these itself (`SyncIndex.since`).
        local = {item.record.pid for item in newest.values() if item.held}
        async with self.db.transaction() as conn:
            existing = await self._existing(list(newest))
            apply: list[StoredRecord] = []
            replaced_ids: list[int] = []
            released: list[bytes] = []
            no_longer_held: list[str] = []
            for pid, item in newest.items():
                old = existing.get(pid)
                if old is not None:
                    old_id, old_order, old_envelope, old_held = old
                    if old_order >= _item_order(item):
                        continue
                    replaced_ids.append(old_id)
                    if old_held:
                        _, old_record = decode_catalogue(old_envelope, delegated=True)
                        released.extend(chunk_counts(old_record))
                        if not item.held and chunk_counts(old_record) == chunk_counts(item.record):
                            # A newer version from elsewhere of a record whose content is here
                            # (same chunks): the content is still held.
                            item = dataclasses.replace(item, held=True)
                        if not item.held:
                            no_longer_held.append(pid)
                apply.append(item)
            if replaced_ids:
                await conn.executemany(
                    "DELETE FROM search_fts WHERE rowid = ?", [(i,) for i in replaced_ids]
                )
                await conn.executemany(
                    "DELETE FROM records WHERE id = ?", [(i,) for i in replaced_ids]
                )
            await conn.executemany(
                "DELETE FROM sync_items WHERE kind = ? AND ref = ?",
                [(KIND_CATALOGUE, item.record.pid) for item in apply],
            )
            now_ms = int(time.time() * 1000)
            await conn.executemany(
                "INSERT INTO records (pid, kind, origin, hlc_wall, hlc_counter, deleted,"
                " collection, access, embargo_until, title, summary, content_size, file_count,"
                " envelope, stored_at, held, pid_key, content_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_record_row(item, now_ms) for item in apply],
            )
            await conn.executemany(
                "INSERT INTO sync_items (id, ts, kind, ref, local) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        hashlib.sha256(encode_envelope(item.signed)).digest(),
                        item.record.version.wall_ms,
                        KIND_CATALOGUE,
                        item.record.pid,
                        int(item.record.pid in local),
                    )
                    for item in apply
                ],
            )
            ids = await self._ids([item.record.pid for item in apply])
            await conn.executemany(
                "INSERT INTO search_fts (rowid, title, creator, subject, description)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (ids[item.record.pid], *_fts_columns(item.record))
                    for item in apply
                    if not item.record.deleted
                ],
            )
            # Each distinct chunk of a held record adds one reference; a replaced version drops
            # its. Records whose content is elsewhere count nothing here.
            await conn.executemany(
                "INSERT INTO chunks (digest, size, refs) VALUES (?, ?, 1)"
                " ON CONFLICT (digest) DO UPDATE SET refs = refs + 1",
                [pair for item in apply if item.held for pair in chunk_counts(item.record).items()],
            )
            await conn.executemany(
                "UPDATE chunks SET refs = refs - 1 WHERE digest = ?", [(d,) for d in released]
            )
            # A copy kept for the network whose record changed content (or was withdrawn) is a
            # copy no more; either way this node's published holdings must be told.
            await conn.executemany(
                "DELETE FROM copies WHERE pid = ?", [(pid,) for pid in no_longer_held]
            )
            await conn.executemany(
                "INSERT OR IGNORE INTO holdings_dirty (pid_key) VALUES (?)",
                [
                    (key_int(pid_key(item.record.pid)),)
                    for item in apply
                    if item.held or item.record.pid in no_longer_held
                ],
            )
            await conn.executemany(
                "INSERT OR REPLACE INTO ingest_sources (fingerprint, pid, source_key)"
                " VALUES (?, ?, ?)",
                [
                    (item.fingerprint, item.record.pid, item.source_key)
                    for item in apply
                    if item.fingerprint is not None
                ],
            )
            # A withdrawn record is forgotten by ingest: the same input again makes a new one.
            await conn.executemany(
                "DELETE FROM ingest_sources WHERE pid = ?",
                [(item.record.pid,) for item in apply if item.record.deleted],
            )
            # Versions learned from elsewhere move this node's clock past them, so its next own
            # version of any record is newer than every version it has seen (HLC receive).
            foreign = [item.record.version for item in apply if item.record.pid not in local]
            if foreign:
                await _observe(conn, max(foreign))
        written = {item.signed.signature for item in apply}
        return [Outcome(item.record.pid, item.signed.signature in written) for item in items]

    async def _existing(
        self, pids: list[str]
    ) -> dict[str, tuple[int, CatalogueOrder, bytes, bool]]:
        out = {}
        for batch in _batches(pids):
            async with self.db.conn.execute(
                "SELECT pid, id, deleted, hlc_wall, hlc_counter, origin, envelope, held"
                f" FROM records WHERE pid IN ({','.join('?' * len(batch))})",
                batch,
            ) as cur:
                for pid, id_, deleted, wall, counter, origin, env, held in await cur.fetchall():
                    envelope = bytes(env)
                    order = (
                        int(deleted),
                        int(wall),
                        int(counter),
                        bytes(origin),
                        hashlib.sha256(envelope).digest(),
                    )
                    out[pid] = (id_, order, envelope, bool(held))
        return out

    @translate_errors
    async def versions(self, pids: Sequence[str]) -> dict[str, CatalogueOrder]:
        """pid → order (deleted, wall, counter, origin, record id) of the records held."""
        return {pid: row[1] for pid, row in (await self._existing(list(pids))).items()}

    @translate_errors
    async def is_held(self, pid: str) -> bool:
        """Whether this node holds the content of `pid` (False also when the pid is unknown)."""
        async with self.db.conn.execute("SELECT held FROM records WHERE pid = ?", (pid,)) as cur:
            row = await cur.fetchone()
        return bool(row and row[0])

    async def _ids(self, pids: list[str]) -> dict[str, int]:
        out = {}
        for batch in _batches(pids):
            async with self.db.conn.execute(
                f"SELECT pid, id FROM records WHERE pid IN ({','.join('?' * len(batch))})", batch
            ) as cur:
                out.update({str(p): int(i) for p, i in await cur.fetchall()})
        return out

    @translate_errors
    async def existing_pids(self, pids: Sequence[str]) -> set[str]:
        return set(await self._ids(list(pids)))

    @translate_errors
    async def ingested(
        self, fingerprints: Sequence[bytes], source_keys: Sequence[bytes]
    ) -> tuple[dict[bytes, str], dict[bytes, str]]:
        """What earlier ingests left: fingerprint → pid, and source key → live pid."""
        by_fp: dict[bytes, str] = {}
        by_key: dict[bytes, str] = {}
        for batch in _batches(list(fingerprints)):
            async with self.db.conn.execute(
                "SELECT fingerprint, pid FROM ingest_sources"
                f" WHERE fingerprint IN ({','.join('?' * len(batch))})",
                batch,
            ) as cur:
                by_fp.update({bytes(f): str(p) for f, p in await cur.fetchall()})
        for batch in _batches(list(source_keys)):
            async with self.db.conn.execute(
                "SELECT s.source_key, s.pid FROM ingest_sources s JOIN records r ON r.pid = s.pid"
                f" WHERE r.deleted = 0 AND s.source_key IN ({','.join('?' * len(batch))})"
                " ORDER BY r.hlc_wall, r.hlc_counter",
                batch,
            ) as cur:
                by_key.update({bytes(k): str(p) for k, p in await cur.fetchall()})
        return by_fp, by_key

    @translate_errors
    async def next_version(self, now_ms: int) -> Hlc:
        """Advance the node's clock (persisted, so versions rise across processes/restarts)."""
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT wall_ms, counter FROM clock WHERE id = 1") as cur:
                row = await cur.fetchone()
            last = Hlc(row[0], row[1]) if row else Hlc(0, 0)
            version = tick(last, now_ms)
            await conn.execute(
                "UPDATE clock SET wall_ms = ?, counter = ? WHERE id = 1",
                (version.wall_ms, version.counter),
            )
        return version

    @translate_errors
    async def reserve_versions(self, now_ms: int, n: int) -> list[Hlc]:
        """`n` consecutive versions in one transaction, for batched ingest."""
        out: list[Hlc] = []
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT wall_ms, counter FROM clock WHERE id = 1") as cur:
                row = await cur.fetchone()
            last = Hlc(row[0], row[1]) if row else Hlc(0, 0)
            for _ in range(n):
                last = tick(last, now_ms)
                out.append(last)
            await conn.execute(
                "UPDATE clock SET wall_ms = ?, counter = ? WHERE id = 1",
                (last.wall_ms, last.counter),
            )
        return out

    @translate_errors
    async def get(self, pid: str) -> tuple[SignedRecord, CatalogueRecord] | None:
        async with self.db.conn.execute(
            "SELECT envelope FROM records WHERE pid = ?", (pid,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        # Re-verified on every read: a damaged or tampered database row is never served. (Who
        # may sign for the origin was judged before the record was stored.)
        return decode_catalogue(bytes(row[0]), delegated=True)

    async def search(self, query: str, *, limit: int = 20, offset: int = 0) -> SearchPage:
        """Ranked full-text search; raises ValueError for a query over the bounds."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        offset = max(0, min(offset, MAX_OFFSET))
        expression = match_expression(query)
        if expression is None:
            return SearchPage(query, 0, offset, [])
        c = self.db.reads
        try:
            # One pass over the newest matches gives both the total (counting stops past the
            # window, where paging stops too) and the oldest rowid the ranking will consider.
            async with c.execute(
                "SELECT rowid FROM search_fts WHERE search_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
                (expression, RANK_WINDOW + 1),
            ) as cur:
                newest = [int(r[0]) for r in await cur.fetchall()]
            total = len(newest)
            floor = newest[RANK_WINDOW - 1] if total > RANK_WINDOW else 0
            # `ORDER BY rank` with the ranking given by `rank MATCH` lets FTS5 rank inside its
            # own sorter: ~10x faster than ordering by a bm25() result column (measured at
            # 100,000 records: 15 ms vs 112 ms for a one-character query matching 5,000). The
            # join to `records` is made for the page only.
            async with c.execute(
                "SELECT r.pid, r.summary, f.rank FROM ("
                "  SELECT rowid, rank FROM search_fts"
                "  WHERE search_fts MATCH ? AND rank MATCH ? AND rowid >= ?"
                "  ORDER BY rank LIMIT ? OFFSET ?"
                ") AS f JOIN records r ON r.id = f.rowid ORDER BY f.rank",
                (expression, _RANKING, floor, limit, offset),
            ) as cur:
                rows = await cur.fetchall()
        except sqlite3.Error as e:
            raise DatabaseError(f"search failed: {e}") from e
        hits = [SearchHit(str(p), -float(s), json.loads(summ)) for p, summ, s in rows]
        return SearchPage(query, min(total, RANK_WINDOW), offset, hits, total > RANK_WINDOW)

    @translate_errors
    async def counts(self) -> CatalogueCounts:
        # One statement, one trip to the reader's thread: the status page asks this on every
        # console poll, and each trip waits its turn on a busy event loop.
        rows = await self.db.reads.execute_fetchall(
            "SELECT * FROM (SELECT coalesce(sum(deleted = 0), 0), coalesce(sum(deleted), 0),"
            " coalesce(sum(file_count), 0), coalesce(sum(content_size), 0) FROM records),"
            " (SELECT count(*), coalesce(sum(size), 0) FROM chunks WHERE refs > 0)"
        )
        r = next(iter(rows))
        return CatalogueCounts(*(int(v) for v in r))
