"""The set a node reconciles: one (timestamp, id) item per record it holds, of every kind.

Rows of `sync_items` are written by the record tables' own transactions (storage.catalogue,
storage.membership); this module only reads them, and backfills a store made before they existed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.holdings import KIND_HOLDINGS, KIND_POLICY
from protocol.membership import (
    KIND_CERTIFICATE,
    KIND_REVOCATION,
    decode_certificate,
    decode_revocation,
)
from protocol.reconcile import SortedItems
from protocol.records import KIND_CATALOGUE, decode_envelope
from protocol.status import KIND_STATUS
from storage.database import Database, translate_errors
from storage.membership import membership_ref

__all__ = ["NewItem", "SyncIndex"]

MAX_IDS_PER_QUERY = 500  # SQLite's bound-parameter limit is 32,766; batches stay well under it
REBUILD_SHARE = 10.0  # a stale-tolerant snapshot may be this many rebuild times old


@dataclass(frozen=True)
class NewItem:
    seq: int
    id: bytes
    ts: int
    kind: str


def _batches(items: Sequence[bytes]) -> list[Sequence[bytes]]:
    return [items[i : i + MAX_IDS_PER_QUERY] for i in range(0, len(items), MAX_IDS_PER_QUERY)]


class SyncIndex:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._snapshot: tuple[int, SortedItems] | None = None
        self._building: asyncio.Lock = asyncio.Lock()
        self._built = 0.0  # monotonic time the snapshot was last checked against the database
        self._build_seconds = 0.0  # how long the last rebuild took

    @translate_errors
    async def version(self) -> int:
        """The highest seq: it changes whenever the set does, since every change inserts a row
        (a replacement deletes one and inserts one in the same transaction) and AUTOINCREMENT
        never reuses a seq. One index probe, where count(*) cost 110 ms at a million items."""
        async with self.db.conn.execute(
            "SELECT seq FROM sync_items ORDER BY seq DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def snapshot(self, stale_ok_s: float = 0.0) -> SortedItems:
        """The whole set, sorted with prefix sums, for one reconciliation. Rebuilt only when the
        set changed since the last call (a responder answering many messages of one peer's
        session, or of many peers, reads the database once), and, with `stale_ok_s`, at most
        that often: a responder may answer from a set a few seconds old (the peer's next round
        sees the rest), where rebuilding for every message of a busy node would cost seconds
        each at a million records."""
        async with self._building:
            now = time.monotonic()
            # A caller that accepts a stale set also accepts one as old as ten rebuilds take:
            # at a million items a rebuild costs seconds of CPU, and a node taking in a large
            # catalogue while a peer reconciles with it every few seconds would otherwise spend
            # most of its time rebuilding (measured: the initial sync slowed as the set grew).
            if stale_ok_s > 0:
                stale_ok_s = max(stale_ok_s, REBUILD_SHARE * self._build_seconds)
            if self._snapshot is not None and now - self._built < stale_ok_s:
                return self._snapshot[1]
            version = await self.version()
            if self._snapshot is None or self._snapshot[0] != version:
                keys = await self._all_keys()
                self._snapshot = (version, await asyncio.to_thread(SortedItems.of_keys, keys))
                self._build_seconds = time.monotonic() - now
            self._built = now
            return self._snapshot[1]

    @translate_errors
    async def _all_keys(self) -> list[tuple[int, bytes]]:
        async with self.db.conn.execute("SELECT ts, id FROM sync_items") as cur:
            rows: list[tuple[int, bytes]] = list(await cur.fetchall())  # type: ignore[arg-type]
            return rows

    @translate_errors
    async def have(self, ids: Sequence[bytes]) -> set[bytes]:
        out: set[bytes] = set()
        for batch in _batches(ids):
            async with self.db.conn.execute(
                f"SELECT id FROM sync_items WHERE id IN ({','.join('?' * len(batch))})", batch
            ) as cur:
                out.update(bytes(r[0]) for r in await cur.fetchall())
        return out

    @translate_errors
    async def envelopes(self, ids: Sequence[bytes], max_bytes: int) -> list[bytes]:
        """The signed envelopes of the held records among `ids`, in the order asked, stopping
        before `max_bytes` would be exceeded (at least one is returned if any is held)."""
        where: dict[bytes, tuple[str, str]] = {}
        for batch in _batches(ids):
            async with self.db.conn.execute(
                f"SELECT id, kind, ref FROM sync_items WHERE id IN ({','.join('?' * len(batch))})",
                batch,
            ) as cur:
                where.update({bytes(i): (str(k), str(r)) for i, k, r in await cur.fetchall()})
        # Sizes first: only the envelopes that fit within max_bytes are read (a request naming
        # 4,096 large records must not load them all to send a few).
        sizes: dict[str, int] = {}
        pids = [ref for kind, ref in where.values() if kind == KIND_CATALOGUE]
        for start in range(0, len(pids), MAX_IDS_PER_QUERY):
            pid_batch = pids[start : start + MAX_IDS_PER_QUERY]
            async with self.db.conn.execute(
                "SELECT pid, length(envelope) FROM records"
                f" WHERE pid IN ({','.join('?' * len(pid_batch))})",
                pid_batch,
            ) as cur:
                sizes.update({str(p): int(n) for p, n in await cur.fetchall()})
        chosen: list[str] = []
        budget = max_bytes
        for id_ in ids:
            kind, ref = where.get(id_, ("", ""))
            if kind == KIND_CATALOGUE and ref in sizes:
                if chosen and sizes[ref] > budget:
                    break
                chosen.append(ref)
                budget -= sizes[ref]
        by_ref: dict[tuple[str, str], bytes] = {}
        for start in range(0, len(chosen), MAX_IDS_PER_QUERY):
            pid_batch = chosen[start : start + MAX_IDS_PER_QUERY]
            async with self.db.conn.execute(
                "SELECT pid, envelope FROM records"
                f" WHERE pid IN ({','.join('?' * len(pid_batch))})",
                pid_batch,
            ) as cur:
                by_ref.update({(KIND_CATALOGUE, str(p)): bytes(e) for p, e in await cur.fetchall()})
        for kind, ref in where.values():
            # Other kinds are few per message and small (membership, policy) or bounded by
            # their page size (holdings): read one by one.
            if kind == KIND_CATALOGUE:
                continue
            if kind == KIND_HOLDINGS:
                _, holder, page = ref.split("/")
                query = "SELECT envelope FROM holding_pages WHERE holder = ? AND page = ?"
                args: tuple[object, ...] = (bytes.fromhex(holder), int(page))
            elif kind == KIND_POLICY:
                query, args = "SELECT envelope FROM policy WHERE id = 1", ()
            elif kind == KIND_STATUS:
                query = "SELECT envelope FROM node_status WHERE node = ?"
                args = (bytes.fromhex(ref.split("/")[1]),)
            else:
                _, subject, signer = ref.split("/")
                query = (
                    "SELECT envelope FROM membership WHERE kind = ? AND subject = ? AND signer = ?"
                )
                args = (kind, bytes.fromhex(subject), bytes.fromhex(signer))
            async with self.db.conn.execute(query, args) as cur:
                row = await cur.fetchone()
            if row is not None:
                by_ref[(kind, ref)] = bytes(row[0])
        out: list[bytes] = []
        size = 0
        for id_ in ids:
            envelope = by_ref.get(where.get(id_, ("", "")))
            # The id is re-derived: a row whose record changed without its item is not served.
            if envelope is None or hashlib.sha256(envelope).digest() != id_:
                continue
            if out and size + len(envelope) > max_bytes:
                break
            out.append(envelope)
            size += len(envelope)
        return out

    @translate_errors
    async def since(self, seq: int, limit: int) -> list[NewItem]:
        """Items written here (not received) after `seq`, oldest first: what is new to tell
        neighbours about."""
        async with self.db.conn.execute(
            "SELECT seq, id, ts, kind FROM sync_items WHERE seq > ? AND local = 1"
            " ORDER BY seq LIMIT ?",
            (seq, limit),
        ) as cur:
            return [
                NewItem(int(s), bytes(i), int(t), str(k)) for s, i, t, k in await cur.fetchall()
            ]

    @translate_errors
    async def counts(self) -> dict[str, int]:
        rows = await self.db.reads.execute_fetchall(
            "SELECT kind, count(*) FROM sync_items GROUP BY kind"
        )
        return {str(k): int(n) for k, n in rows}

    @translate_errors
    async def backfill(self) -> int:
        """Give every record stored before migration 0003 its item (a no-op once done)."""
        async with self.db.conn.execute(
            "SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM membership)"
            " + (SELECT count(*) FROM holding_pages) + (SELECT count(*) FROM policy)"
            " + (SELECT count(*) FROM node_status),"
            " (SELECT count(*) FROM sync_items)"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        if row[0] == row[1]:
            return 0
        rows: list[tuple[bytes, int, str, str, int]] = []
        async with self.db.conn.execute(
            "SELECT pid, hlc_wall, envelope FROM records"
            " WHERE pid NOT IN (SELECT ref FROM sync_items WHERE kind = ?)",
            (KIND_CATALOGUE,),
        ) as cur:
            for pid, wall, envelope in await cur.fetchall():
                rows.append((hashlib.sha256(envelope).digest(), wall, KIND_CATALOGUE, pid, 0))
        async with self.db.conn.execute(
            "SELECT kind, subject, signer, envelope FROM membership"
        ) as cur:
            members = await cur.fetchall()
        for kind, subject, signer, envelope in members:
            signed = decode_envelope(bytes(envelope))
            if kind == KIND_CERTIFICATE:
                ts = decode_certificate(signed).not_before_ms
            elif kind == KIND_REVOCATION:
                ts = decode_revocation(signed).revoked_ms
            else:
                continue
            ref = membership_ref(kind, bytes(subject), bytes(signer))
            rows.append((hashlib.sha256(envelope).digest(), ts, kind, ref, 0))
        async with self.db.transaction() as conn:
            cursor = await conn.executemany(
                "INSERT OR IGNORE INTO sync_items (id, ts, kind, ref, local)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        return max(cursor.rowcount, 0)  # rows inserted (items already there are ignored)
