"""`RecordSet` over a node's store: catalogue records in storage.catalogue (searchable at once),
certificates and revocations in storage.membership, the reconciled set in storage.syncindex."""

from __future__ import annotations

from collections.abc import Sequence

from protocol.holdings import HoldingsPage, ReplicationPolicy
from protocol.membership import KIND_CERTIFICATE, Certificate, Revocation
from protocol.reconcile import Storage
from protocol.records import CatalogueRecord, canonical_unpack, decode_envelope
from protocol.status import NodeStatus
from storage.catalogue import StoredRecord
from storage.store import Store
from sync.records import Order, SyncRecord, decode_record, record_id

__all__ = ["StoreRecords"]


class StoreRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def snapshot(self, stale_ok_s: float = 0.0) -> Storage:
        return await self._store.sync.snapshot(stale_ok_s)

    async def have(self, ids: Sequence[bytes]) -> set[bytes]:
        return await self._store.sync.have(ids)

    async def envelopes(self, ids: Sequence[bytes], max_bytes: int) -> list[bytes]:
        return await self._store.sync.envelopes(ids, max_bytes)

    async def held(self, records: Sequence[SyncRecord]) -> dict[str, tuple[Order, bytes | None]]:
        out: dict[str, tuple[Order, bytes | None]] = {}
        pids = [r.slot for r in records if isinstance(r.body, CatalogueRecord)]
        for pid, order in (await self._store.catalogue.versions(pids)).items():
            out[pid] = (order, order[3])
        for record in records:
            body = record.body
            if isinstance(body, Certificate | Revocation) and record.slot not in out:
                subject = body.subject.public_key if isinstance(body, Certificate) else body.subject
                envelope = await self._store.membership.get(
                    record.kind, subject, record.signed.signer
                )
                if envelope is not None:
                    # Verified when stored; decoded again for its order (few, small records).
                    out[record.slot] = (decode_record(envelope).order, None)
            elif isinstance(body, HoldingsPage) and record.slot not in out:
                envelope = await self._store.holdings.page_envelope(body.holder, body.page)
                if envelope is not None:
                    # The order is (0, hlc, holder, id): read from the envelope without
                    # verifying a page of up to 4 MB again (it was verified when stored).
                    held = decode_envelope(envelope)
                    fields = canonical_unpack(held.body, "holdings body")
                    order = (0, fields[4], fields[5], body.holder, record_id(envelope))
                    out[record.slot] = (order, None)
            elif isinstance(body, NodeStatus) and record.slot not in out:
                envelope = await self._store.holdings.status_envelope(body.node)
                if envelope is not None:
                    out[record.slot] = (decode_record(envelope).order, None)
            elif isinstance(body, ReplicationPolicy) and record.slot not in out:
                envelope = await self._store.holdings.policy_envelope()
                if envelope is not None:
                    out[record.slot] = (decode_record(envelope).order, None)
        return out

    async def store(self, records: Sequence[SyncRecord]) -> None:
        catalogue = [
            StoredRecord(r.signed, r.body, held=False)
            for r in records
            if isinstance(r.body, CatalogueRecord)
        ]
        if catalogue:
            await self._store.catalogue.put(catalogue)
        for r in records:
            body = r.body
            if isinstance(body, Certificate):
                await self._store.membership.put(
                    r.kind,
                    body.subject.public_key,
                    r.signed.signer,
                    r.envelope,
                    r.item.timestamp,
                    local=False,
                )
            elif isinstance(body, Revocation):
                await self._store.membership.put(
                    r.kind, body.subject, r.signed.signer, r.envelope, r.item.timestamp, local=False
                )
            elif isinstance(body, ReplicationPolicy):
                await self._store.holdings.put_policy(r.envelope, r.item.timestamp, local=False)
            elif isinstance(body, NodeStatus):
                v = body.version
                await self._store.holdings.put_status(
                    r.envelope, body.node, v.wall_ms, v.counter, body.full, local=False
                )
        pages = [
            (
                r.envelope,
                r.body.holder,
                r.body.page,
                r.body.version.wall_ms,
                r.body.version.counter,
                list(r.body),
            )
            for r in records
            if isinstance(r.body, HoldingsPage)
        ]
        if pages:
            await self._store.holdings.put_pages(pages, local=False)

    async def certificates(self) -> list[bytes]:
        return await self._store.membership.envelopes(KIND_CERTIFICATE)

    async def latest_seq(self) -> int:
        return await self._store.sync.version()

    async def new_since(self, seq: int, limit: int) -> tuple[int, list[tuple[bytes, int, str]]]:
        items = await self._store.sync.since(seq, limit)
        if not items:
            return seq, []
        return items[-1].seq, [(i.id, i.ts, i.kind) for i in items]
