"""Membership records and the peer table on disk. Records arrive here already verified."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from storage.database import Database, translate_errors

__all__ = ["MembershipStore", "PeerRow"]


@dataclass(frozen=True)
class PeerRow:
    url: str
    node_id: str | None
    name: str | None
    tier: str | None
    region: str | None
    source: str
    state: str
    last_seen_ms: int | None
    rtt_ms: float | None
    failures: int
    last_error: str | None
    address: bytes | None


def membership_ref(kind: str, subject: bytes, signer: bytes) -> str:
    """A membership record's place, as `sync_items.ref` names it."""
    return f"{kind}/{subject.hex()}/{signer.hex()}"


class MembershipStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @translate_errors
    async def put(
        self,
        kind: str,
        subject: bytes,
        signer: bytes,
        envelope: bytes,
        ts_ms: int,
        *,
        local: bool = True,
    ) -> bool:
        """Keep a verified record, replacing the one held for (kind, subject, signer); False if
        exactly this record was already held. `ts_ms` is the record's own time (a certificate's
        not_before, a revocation's revoked_ms): its place in the reconciled set. `local`: made
        or imported here, rather than received by catalogue sync."""
        ref = membership_ref(kind, subject, signer)
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT envelope FROM membership WHERE kind = ? AND subject = ? AND signer = ?",
                (kind, subject, signer),
            )
            row = await cur.fetchone()
            if row is not None and bytes(row[0]) == envelope:
                return False
            await conn.execute(
                "INSERT OR REPLACE INTO membership (kind, subject, signer, envelope, stored_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, subject, signer, envelope, int(time.time() * 1000)),
            )
            await conn.execute("DELETE FROM sync_items WHERE kind = ? AND ref = ?", (kind, ref))
            await conn.execute(
                "INSERT INTO sync_items (id, ts, kind, ref, local) VALUES (?, ?, ?, ?, ?)",
                (hashlib.sha256(envelope).digest(), ts_ms, kind, ref, int(local)),
            )
            return True

    @translate_errors
    async def get(self, kind: str, subject: bytes, signer: bytes) -> bytes | None:
        async with self.db.conn.execute(
            "SELECT envelope FROM membership WHERE kind = ? AND subject = ? AND signer = ?",
            (kind, subject, signer),
        ) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    @translate_errors
    async def envelopes(self, kind: str) -> list[bytes]:
        async with self.db.conn.execute(
            "SELECT envelope FROM membership WHERE kind = ? ORDER BY stored_at, subject", (kind,)
        ) as cur:
            return [bytes(r[0]) for r in await cur.fetchall()]

    @translate_errors
    async def save_peers(self, rows: list[PeerRow]) -> None:
        """Replace the saved peer table with `rows` (the daemon's whole table)."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM peers")
            await conn.executemany(
                "INSERT INTO peers (url, node_id, name, tier, region, source, state,"
                " last_seen_ms, rtt_ms, failures, last_error, address)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.url,
                        r.node_id,
                        r.name,
                        r.tier,
                        r.region,
                        r.source,
                        r.state,
                        r.last_seen_ms,
                        r.rtt_ms,
                        r.failures,
                        r.last_error,
                        r.address,
                    )
                    for r in rows
                ],
            )

    @translate_errors
    async def load_peers(self) -> list[PeerRow]:
        async with self.db.conn.execute(
            "SELECT url, node_id, name, tier, region, source, state, last_seen_ms, rtt_ms,"
            " failures, last_error, address FROM peers ORDER BY url"
        ) as cur:
            rows = await cur.fetchall()
        return [
            PeerRow(
                url=r[0],
                node_id=r[1],
                name=r[2],
                tier=r[3],
                region=r[4],
                source=r[5],
                state=r[6],
                last_seen_ms=r[7],
                rtt_ms=r[8],
                failures=r[9],
                last_error=r[10],
                address=bytes(r[11]) if r[11] is not None else None,
            )
            for r in rows
        ]
