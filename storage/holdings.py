"""Holdings on disk: every node's signed holdings pages and their entries, the replication policy,
and the copies this node keeps for the network. Records arrive here already verified.

Chunk accounting follows `records.held`: a held record's distinct chunks each count one
reference in `chunks` (storage.catalogue). Committing a copy sets `held` and adds its
references in one transaction with the `copies` row; dropping one does the reverse. Chunks
whose count falls to zero are garbage, removed by `collect_garbage` (never a chunk that a
transfer in progress has written but not committed: those have no row at all).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocol.holdings import KIND_HOLDINGS, KIND_POLICY, Holding, content_key, pid_key
from protocol.records import decode_catalogue
from protocol.status import KIND_STATUS
from storage.catalogue import chunk_counts
from storage.chunks import ChunkStore
from storage.database import Database, translate_errors
from storage.errors import StorageError
from storage.keys import int_key, key_int

__all__ = [
    "COPY_CLASSES",
    "POLICY_REF",
    "CopyRow",
    "HoldingsStore",
    "ResourceRow",
    "holdings_ref",
    "status_ref",
]

COPY_CLASSES = ("preservation", "subscription", "cache")
POLICY_REF = "policy"  # the policy's place: one per network
_BATCH = 500


def status_ref(node: bytes) -> str:
    """A node status record's place, as `sync_items.ref` names it."""
    return f"{KIND_STATUS}/{node.hex()}"


def holdings_ref(holder: bytes, page: int) -> str:
    """A holdings page's place, as `sync_items.ref` names it (sync.records.holdings_ref)."""
    return f"{KIND_HOLDINGS}/{holder.hex()}/{page}"


@dataclass(frozen=True)
class ResourceRow:
    """A live catalogue record with content, as the planner sees it."""

    pid: str
    pid_key: bytes
    origin: bytes
    content_key: bytes
    size: int
    collection: str
    access: str
    embargo_until: str | None
    held: bool


@dataclass(frozen=True)
class CopyRow:
    pid: str
    klass: str
    dark: bool
    size: int
    verified_ms: int
    stored_ms: int
    last_used_ms: int


class HoldingsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- records from the network (and this node's own pages) ------------------------------

    @translate_errors
    async def put_pages(
        self, pages: Sequence[tuple[bytes, bytes, int, int, int, Sequence[Holding]]], *, local: bool
    ) -> None:
        """Keep verified pages (envelope, holder, page, hlc wall, hlc counter, entries), each
        replacing the one held for its (holder, page), with its entries, in one transaction.
        The caller has checked each is newer than the one held."""
        async with self.db.transaction() as conn:
            for envelope, holder, page, wall, counter, entries in pages:
                ref = holdings_ref(holder, page)
                await conn.execute(
                    "INSERT OR REPLACE INTO holding_pages"
                    " (holder, page, hlc_wall, hlc_counter, envelope) VALUES (?, ?, ?, ?, ?)",
                    (holder, page, wall, counter, envelope),
                )
                await conn.execute(
                    "DELETE FROM holdings WHERE holder = ? AND page = ?", (holder, page)
                )
                await conn.executemany(
                    "INSERT OR REPLACE INTO holdings"
                    " (pid_key, holder, content_key, verified_s, page) VALUES (?, ?, ?, ?, ?)",
                    [
                        (key_int(h.pid_key), holder, key_int(h.content_key), h.verified_s, page)
                        for h in entries
                    ],
                )
                await conn.execute(
                    "DELETE FROM sync_items WHERE kind = ? AND ref = ?", (KIND_HOLDINGS, ref)
                )
                await conn.execute(
                    "INSERT INTO sync_items (id, ts, kind, ref, local) VALUES (?, ?, ?, ?, ?)",
                    (hashlib.sha256(envelope).digest(), wall, KIND_HOLDINGS, ref, int(local)),
                )

    @translate_errors
    async def page_envelope(self, holder: bytes, page: int) -> bytes | None:
        async with self.db.conn.execute(
            "SELECT envelope FROM holding_pages WHERE holder = ? AND page = ?", (holder, page)
        ) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    @translate_errors
    async def put_policy(self, envelope: bytes, wall_ms: int, *, local: bool) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO policy (id, envelope) VALUES (1, ?)", (envelope,)
            )
            await conn.execute(
                "DELETE FROM sync_items WHERE kind = ? AND ref = ?", (KIND_POLICY, POLICY_REF)
            )
            await conn.execute(
                "INSERT INTO sync_items (id, ts, kind, ref, local) VALUES (?, ?, ?, ?, ?)",
                (hashlib.sha256(envelope).digest(), wall_ms, KIND_POLICY, POLICY_REF, int(local)),
            )

    @translate_errors
    async def policy_envelope(self) -> bytes | None:
        async with self.db.conn.execute("SELECT envelope FROM policy WHERE id = 1") as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    @translate_errors
    async def put_status(
        self, envelope: bytes, node: bytes, wall: int, counter: int, full: bool, *, local: bool
    ) -> None:
        ref = status_ref(node)
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO node_status (node, hlc_wall, hlc_counter, full, envelope)"
                " VALUES (?, ?, ?, ?, ?)",
                (node, wall, counter, int(full), envelope),
            )
            await conn.execute(
                "DELETE FROM sync_items WHERE kind = ? AND ref = ?", (KIND_STATUS, ref)
            )
            await conn.execute(
                "INSERT INTO sync_items (id, ts, kind, ref, local) VALUES (?, ?, ?, ?, ?)",
                (hashlib.sha256(envelope).digest(), wall, KIND_STATUS, ref, int(local)),
            )

    @translate_errors
    async def status_envelope(self, node: bytes) -> bytes | None:
        async with self.db.conn.execute(
            "SELECT envelope FROM node_status WHERE node = ?", (node,)
        ) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    @translate_errors
    async def status_envelopes(self) -> list[bytes]:
        async with self.db.reads.execute("SELECT envelope FROM node_status") as cur:
            return [bytes(e) for (e,) in await cur.fetchall()]

    @translate_errors
    async def node_states(self) -> dict[bytes, tuple[int, bool]]:
        """node → (time of its newest status, ms; whether it says it is full)."""
        async with self.db.conn.execute("SELECT node, hlc_wall, full FROM node_status") as cur:
            return {bytes(n): (int(w), bool(f)) for n, w, f in await cur.fetchall()}

    # --- what the planner reads -------------------------------------------------------------

    @translate_errors
    async def resources(self) -> list[ResourceRow]:
        """Every live catalogue record with content."""
        async with self.db.conn.execute(
            "SELECT pid, pid_key, origin, content_key, content_size, collection, access,"
            " embargo_until, held FROM records"
            " WHERE deleted = 0 AND content_size > 0 AND pid_key IS NOT NULL"
        ) as cur:
            rows = await cur.fetchall()
        return [
            ResourceRow(
                str(pid),
                int_key(pk),
                bytes(origin),
                int_key(ck),
                int(size),
                str(coll),
                str(access),
                emb,
                bool(held),
            )
            for pid, pk, origin, ck, size, coll, access, emb, held in rows
        ]

    @translate_errors
    async def holders(self) -> dict[bytes, list[tuple[bytes, bytes, int]]]:
        """pid key → [(holder, content key, verified_s)] over every page held."""
        out: dict[bytes, list[tuple[bytes, bytes, int]]] = {}
        async with self.db.conn.execute(
            "SELECT pid_key, holder, content_key, verified_s FROM holdings"
        ) as cur:
            for pk, holder, ck, verified in await cur.fetchall():
                out.setdefault(int_key(pk), []).append((bytes(holder), int_key(ck), int(verified)))
        return out

    @translate_errors
    async def holders_of(self, pid: str) -> list[tuple[bytes, bytes, int]]:
        async with self.db.reads.execute(
            "SELECT holder, content_key, verified_s FROM holdings WHERE pid_key = ?",
            (key_int(pid_key(pid)),),
        ) as cur:
            return [(bytes(h), int_key(ck), int(v)) for h, ck, v in await cur.fetchall()]

    @translate_errors
    async def copies(self) -> list[CopyRow]:
        async with self.db.conn.execute(
            "SELECT pid, class, dark, bytes, verified_ms, stored_ms, last_used_ms FROM copies"
        ) as cur:
            return [
                CopyRow(str(p), str(c), bool(d), int(b), int(v), int(s), int(u))
                for p, c, d, b, v, s, u in await cur.fetchall()
            ]

    @translate_errors
    async def copy_totals(self) -> dict[str, tuple[int, int]]:
        """class → (copies, bytes) of this node's copies, from the last commit."""
        rows = await self.db.reads.execute_fetchall(
            "SELECT class, count(*), coalesce(sum(bytes), 0) FROM copies GROUP BY class"
        )
        return {str(k): (int(n), int(b)) for k, n, b in rows}

    @translate_errors
    async def copy(self, pid: str) -> CopyRow | None:
        async with self.db.conn.execute(
            "SELECT pid, class, dark, bytes, verified_ms, stored_ms, last_used_ms FROM copies"
            " WHERE pid = ?",
            (pid,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        p, c, d, b, v, s, u = row
        return CopyRow(str(p), str(c), bool(d), int(b), int(v), int(s), int(u))

    # --- this node's copies -----------------------------------------------------------------

    @translate_errors
    async def commit_copy(
        self, pid: str, klass: str, *, dark: bool, expected_content: bytes, chunks: ChunkStore
    ) -> bool:
        """Record that this node now holds `pid`'s content (every chunk verified and durable:
        the transfer engine's promise). False, changing nothing, if the record changed content,
        was withdrawn, is already held, or a chunk is missing (collected meanwhile)."""
        if klass not in COPY_CLASSES:
            raise ValueError(f"copy class {klass!r}")
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT envelope, held, deleted FROM records WHERE pid = ?", (pid,)
            ) as cur:
                row = await cur.fetchone()
            if row is None or row[1] or row[2]:
                return False
            _, record = decode_catalogue(bytes(row[0]), delegated=True)
            if content_key(record.files) != expected_content:
                return False
            counts = chunk_counts(record)
            present = await asyncio.to_thread(lambda: all(chunks.has(d) for d in counts))
            if not present:
                return False
            now = int(time.time() * 1000)
            await conn.execute("UPDATE records SET held = 1 WHERE pid = ?", (pid,))
            await conn.executemany(
                "INSERT INTO chunks (digest, size, refs) VALUES (?, ?, 1)"
                " ON CONFLICT (digest) DO UPDATE SET refs = refs + 1",
                list(counts.items()),
            )
            await conn.execute(
                "INSERT OR REPLACE INTO copies"
                " (pid, class, dark, bytes, verified_ms, stored_ms, last_used_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pid, klass, int(dark), record.content_size, now, now, now),
            )
            await conn.execute(
                "INSERT OR IGNORE INTO holdings_dirty (pid_key) VALUES (?)",
                (key_int(pid_key(pid)),),
            )
        return True

    @translate_errors
    async def reclassify(self, pid: str, klass: str, *, dark: bool) -> None:
        if klass not in COPY_CLASSES:
            raise ValueError(f"copy class {klass!r}")
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE copies SET class = ?, dark = ? WHERE pid = ?", (klass, int(dark), pid)
            )

    @translate_errors
    async def touch(self, used: dict[str, int]) -> None:
        """Readers used these copies (pid → ms): cache eviction is least recently used first.
        Batched by the caller: a reader's download does not wait for the write lock."""
        async with self.db.transaction() as conn:
            await conn.executemany(
                "UPDATE copies SET last_used_ms = max(last_used_ms, ?) WHERE pid = ?",
                [(ms, pid) for pid, ms in used.items()],
            )

    @translate_errors
    async def drop_copy(self, pid: str) -> bool:
        """Stop holding a copy kept for the network (never the library's own content)."""
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT r.envelope FROM records r JOIN copies c ON c.pid = r.pid"
                " WHERE r.pid = ? AND r.held = 1",
                (pid,),
            ) as cur:
                row = await cur.fetchone()
            await conn.execute("DELETE FROM copies WHERE pid = ?", (pid,))
            if row is None:
                return False
            _, record = decode_catalogue(bytes(row[0]), delegated=True)
            await conn.execute("UPDATE records SET held = 0 WHERE pid = ?", (pid,))
            await conn.executemany(
                "UPDATE chunks SET refs = refs - 1 WHERE digest = ?",
                [(d,) for d in chunk_counts(record)],
            )
            await conn.execute(
                "INSERT OR IGNORE INTO holdings_dirty (pid_key) VALUES (?)",
                (key_int(pid_key(pid)),),
            )
        return True

    @translate_errors
    async def collect_garbage(
        self, chunks: ChunkStore, protected: Iterable[bytes] = (), limit: int = 10_000
    ) -> tuple[int, int]:
        """Delete up to `limit` chunks no held record refers to: (chunks, bytes) freed. Chunks in
        `protected` (a transfer in progress needs them) stay. The caller keeps ingest out
        meanwhile (Store.exclusive("ingest")): an ingest finding a doomed file still in place
        would not write it again, and then refer to it."""
        keep = set(protected)
        async with self.db.conn.execute(
            "SELECT digest FROM chunks WHERE refs <= 0 LIMIT ?", (limit + len(keep),)
        ) as cur:
            candidates = [bytes(d) for (d,) in await cur.fetchall() if bytes(d) not in keep]
        if not candidates:
            return 0, 0
        # Rows first, and only rows still unreferenced inside the transaction (a record may
        # have taken a chunk up again since the read): a crash between the two leaves an
        # unreferenced file (harmless), never a row whose file is gone.
        doomed: list[bytes] = []
        size = 0
        async with self.db.transaction() as conn:
            for digest in candidates[:limit]:
                async with conn.execute(
                    "DELETE FROM chunks WHERE digest = ? AND refs <= 0 RETURNING size", (digest,)
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    doomed.append(digest)
                    size += int(row[0])
        removed = await asyncio.to_thread(_remove_chunks, chunks, doomed)
        return removed, size

    @translate_errors
    async def sweep_orphans(
        self, chunks: ChunkStore, top: int, protected: Iterable[bytes], older_than: float
    ) -> tuple[int, int]:
        """Delete chunk files in fan-out folder `top` that have no row at all (written by a
        transfer that was cancelled or failed, so never committed), last written before
        `older_than` and not `protected`: (files, bytes) removed. The caller keeps commits and
        ingest out meanwhile (Replication's lock, Store.exclusive("ingest")): a commit checks
        a chunk's file, then adds its row, and must not lose the file in between."""
        keep = set(protected)
        found = await asyncio.to_thread(chunks.digests_under, top, older_than)
        known: set[bytes] = set()
        for i in range(0, len(found), _BATCH):
            part = found[i : i + _BATCH]
            rows = await self.db.conn.execute_fetchall(
                f"SELECT digest FROM chunks WHERE digest IN ({','.join('?' * len(part))})", part
            )
            known.update(bytes(d) for (d,) in rows)
        orphans = [d for d in found if d not in known and d not in keep]
        if not orphans:
            return 0, 0
        return await asyncio.to_thread(_remove_sized, chunks, orphans)

    # --- this node's own pages ----------------------------------------------------------------

    @translate_errors
    async def dirty_keys(self, limit: int = 100_000) -> list[bytes]:
        async with self.db.conn.execute(
            "SELECT pid_key FROM holdings_dirty LIMIT ?", (limit,)
        ) as cur:
            return [int_key(k) for (k,) in await cur.fetchall()]

    @translate_errors
    async def clear_dirty(self, keys: Sequence[bytes]) -> None:
        async with self.db.transaction() as conn:
            await conn.executemany(
                "DELETE FROM holdings_dirty WHERE pid_key = ?", [(key_int(k),) for k in keys]
            )

    @translate_errors
    async def own_entries(self, pages: int, page: int) -> list[Holding]:
        """This node's holdings filed in `page` of `pages`: its live held records with content.
        Pages are ranges of the signed key space in the key's unsigned order."""
        lo, hi = _page_range(pages, page)
        async with self.db.conn.execute(
            "SELECT r.pid_key, r.content_key, coalesce(c.verified_ms, r.stored_at)"
            " FROM records r LEFT JOIN copies c ON c.pid = r.pid"
            " WHERE r.held = 1 AND r.deleted = 0 AND r.content_size > 0"
            " AND r.pid_key >= ? AND r.pid_key <= ?",
            (lo, hi),
        ) as cur:
            rows = await cur.fetchall()
        return [Holding(int_key(pk), int_key(ck), int(v) // 1000) for pk, ck, v in rows]

    @translate_errors
    async def own_pages(self, holder: bytes) -> dict[int, tuple[int, int, bytes]]:
        """page → (hlc wall, counter, envelope) of the pages this node has published."""
        async with self.db.conn.execute(
            "SELECT page, hlc_wall, hlc_counter, envelope FROM holding_pages WHERE holder = ?",
            (holder,),
        ) as cur:
            return {int(p): (int(w), int(c), bytes(e)) for p, w, c, e in await cur.fetchall()}

    # --- upgrade ------------------------------------------------------------------------------

    @translate_errors
    async def backfill_keys(self) -> int:
        """Give records stored before migration 0004 their pid and content keys."""
        filled = 0
        while True:
            async with self.db.conn.execute(
                "SELECT id, envelope FROM records WHERE pid_key IS NULL LIMIT ?", (_BATCH,)
            ) as cur:
                rows = await cur.fetchall()
            if not rows:
                return filled
            updates = []
            for id_, envelope in rows:
                _, record = decode_catalogue(bytes(envelope), delegated=True)
                updates.append(
                    (key_int(pid_key(record.pid)), key_int(content_key(record.files)), id_)
                )
            async with self.db.transaction() as conn:
                await conn.executemany(
                    "UPDATE records SET pid_key = ?, content_key = ? WHERE id = ?", updates
                )
                await conn.executemany(
                    "INSERT OR IGNORE INTO holdings_dirty (pid_key) VALUES (?)",
                    [(u[0],) for u in updates],
                )
            filled += len(updates)


def _page_range(pages: int, page: int) -> tuple[int, int]:
    """Inclusive bounds, as stored (signed), of the keys in `page`: the unsigned range
    [page × 2^64/pages, (page + 1) × 2^64/pages), which never straddles 2^63 (pages ≥ 2)."""
    span = (1 << 64) // pages
    lo = page * span
    if lo >= 1 << 63:
        lo -= 1 << 64
    return lo, lo + span - 1


def _remove_sized(chunks: ChunkStore, digests: Sequence[bytes]) -> tuple[int, int]:
    removed = size = 0
    for digest in digests:
        try:
            n = chunks.size(digest)
            if chunks.remove(digest):
                removed += 1
                size += n
        except StorageError:
            continue  # gone meanwhile, or left for the next sweep
    return removed, size


def _remove_chunks(chunks: ChunkStore, digests: Sequence[bytes]) -> int:
    removed = 0
    for digest in digests:
        try:
            if chunks.remove(digest):
                removed += 1
        except StorageError:
            continue  # left for the next collection
    return removed
