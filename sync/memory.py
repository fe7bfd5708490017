"""A `RecordSet` held in memory: the simulator's nodes (tests/sim) and unit tests use it.

Semantics match `sync.store.StoreRecords` over SQLite: one version per slot, the newest by
`SyncRecord.order`, each version one item of the reconciled set, a sequence number per insert.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.membership import KIND_CERTIFICATE
from protocol.reconcile import SortedItems, Storage
from sync.records import Order, SyncRecord

__all__ = ["MemoryRecords"]


class MemoryRecords:
    def __init__(self) -> None:
        self.by_slot: dict[str, SyncRecord] = {}
        self.by_id: dict[bytes, SyncRecord] = {}
        self._local: list[tuple[int, bytes, int, str]] = []  # (seq, id, ts, kind) of `put_local`
        self._next = 1
        self._snapshot: SortedItems | None = None

    async def snapshot(self, stale_ok_s: float = 0.0) -> Storage:
        if self._snapshot is None:
            self._snapshot = SortedItems(r.item for r in self.by_id.values())
        return self._snapshot

    async def have(self, ids: Sequence[bytes]) -> set[bytes]:
        return {i for i in ids if i in self.by_id}

    async def envelopes(self, ids: Sequence[bytes], max_bytes: int) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        for id_ in ids:
            record = self.by_id.get(id_)
            if record is None:
                continue
            if out and size + len(record.envelope) > max_bytes:
                break
            out.append(record.envelope)
            size += len(record.envelope)
        return out

    async def held(self, records: Sequence[SyncRecord]) -> dict[str, tuple[Order, bytes | None]]:
        out: dict[str, tuple[Order, bytes | None]] = {}
        for record in records:
            current = self.by_slot.get(record.slot)
            if current is not None:
                out[record.slot] = (current.order, getattr(current.body, "origin", None))
        return out

    async def store(self, records: Sequence[SyncRecord]) -> None:
        for record in records:
            self._put(record)

    def put_local(self, record: SyncRecord) -> bool:
        """Write as ingest or the CLI would, bypassing the engine (found by `new_since`)."""
        if not self._put(record):
            return False
        self._local.append((self._next - 1, record.id, record.item.timestamp, record.kind))
        return True

    def _put(self, record: SyncRecord) -> bool:
        old = self.by_slot.get(record.slot)
        if old is not None:
            if old.order >= record.order:
                return False
            del self.by_id[old.id]
        self.by_slot[record.slot] = record
        self.by_id[record.id] = record
        self._next += 1
        self._snapshot = None
        return True

    async def certificates(self) -> list[bytes]:
        return [r.envelope for r in self.by_slot.values() if r.kind == KIND_CERTIFICATE]

    async def latest_seq(self) -> int:
        return self._next - 1

    async def new_since(self, seq: int, limit: int) -> tuple[int, list[tuple[bytes, int, str]]]:
        new = [(s, i, t, k) for s, i, t, k in self._local if s > seq and i in self.by_id][:limit]
        return (new[-1][0] if new else seq), [(i, t, k) for _, i, t, k in new]
