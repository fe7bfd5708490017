"""Records as sync sees them: any signed record a node keeps for the network, with its place in
the reconciled set (timestamp, id), its slot (what a newer version replaces) and its order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocol.errors import DecodeError, ValidationError
from protocol.holdings import (
    KIND_HOLDINGS,
    KIND_POLICY,
    HoldingsPage,
    ReplicationPolicy,
    decode_holdings,
    decode_policy,
)
from protocol.membership import (
    KIND_CERTIFICATE,
    KIND_REVOCATION,
    Certificate,
    Revocation,
    decode_certificate,
    decode_revocation,
)
from protocol.reconcile import MAX_TIMESTAMP, Item
from protocol.records import (
    KIND_CATALOGUE,
    MAX_RECORD_BYTES,
    CatalogueRecord,
    SignedRecord,
    decode_catalogue,
    decode_envelope,
)
from protocol.status import KIND_STATUS, NodeStatus, decode_status
from storage.holdings import POLICY_REF, holdings_ref, status_ref
from storage.membership import membership_ref

__all__ = [
    "SYNCED_KINDS",
    "Order",
    "SyncRecord",
    "catalogue_order",
    "decode_record",
    "holdings_ref",
    "record_id",
]

SYNCED_KINDS = (
    KIND_CATALOGUE,
    KIND_CERTIFICATE,
    KIND_REVOCATION,
    KIND_HOLDINGS,
    KIND_POLICY,
    KIND_STATUS,
)

# Which version of a slot wins: the greater order. Every node computes the same order for the
# same record, so nodes holding different versions of a slot all keep the same one; the last
# element is the record id, so two different records never tie. For catalogue records a
# deletion comes first (1 before 0): a withdrawn pid stays withdrawn, whatever version a later
# edit carries (pids are never reused), then the newest HLC version.
Order = tuple[int, int, int, bytes, bytes]


def record_id(envelope: bytes) -> bytes:
    return hashlib.sha256(envelope).digest()


def catalogue_order(record: CatalogueRecord, id_: bytes) -> Order:
    """The order of a catalogue record (storage.catalogue keeps the same one)."""
    return (int(record.deleted), record.version.wall_ms, record.version.counter, record.origin, id_)


@dataclass(frozen=True)
class SyncRecord:
    kind: str
    # catalogue: the pid; membership: kind/subject/signer (storage.membership_ref); holdings:
    # holdings/holder/page (holdings_ref); the policy: "policy"; status/node
    slot: str
    order: Order
    item: Item
    envelope: bytes
    signed: SignedRecord
    body: CatalogueRecord | Certificate | Revocation | HoldingsPage | ReplicationPolicy | NodeStatus

    @property
    def id(self) -> bytes:
        return self.item.id


def decode_record(envelope: bytes) -> SyncRecord:
    """Decode and verify (signature included) a record of a synced kind; raises ProtocolError
    (DecodeError, ValidationError, SignatureError, ...) for anything else."""
    if len(envelope) > MAX_RECORD_BYTES:
        raise DecodeError(f"record larger than {MAX_RECORD_BYTES} bytes")
    signed = decode_envelope(envelope)
    body: CatalogueRecord | Certificate | Revocation | HoldingsPage | ReplicationPolicy | NodeStatus
    if signed.kind == KIND_CATALOGUE:
        _, catalogue = decode_catalogue(signed, delegated=True)  # sync.authority judges
        body = catalogue
        slot = catalogue.pid
        ts = catalogue.version.wall_ms
        order: Order = catalogue_order(catalogue, record_id(envelope))
    elif signed.kind == KIND_CERTIFICATE:
        cert = decode_certificate(signed)
        body = cert
        slot = membership_ref(KIND_CERTIFICATE, cert.subject.public_key, signed.signer)
        ts = cert.not_before_ms
        order = (0, ts, 0, cert.serial, record_id(envelope))
    elif signed.kind == KIND_REVOCATION:
        revocation = decode_revocation(signed)
        body = revocation
        slot = membership_ref(KIND_REVOCATION, revocation.subject, signed.signer)
        ts = revocation.revoked_ms
        order = (0, ts, 0, b"", record_id(envelope))
    elif signed.kind == KIND_HOLDINGS:
        page = decode_holdings(signed)
        body = page
        slot = holdings_ref(page.holder, page.page)
        ts = page.version.wall_ms
        order = (0, ts, page.version.counter, page.holder, record_id(envelope))
    elif signed.kind == KIND_POLICY:
        policy = decode_policy(signed)
        body = policy
        slot = POLICY_REF
        ts = policy.version.wall_ms
        order = (0, ts, policy.version.counter, b"", record_id(envelope))
    elif signed.kind == KIND_STATUS:
        status = decode_status(signed)
        body = status
        slot = status_ref(status.node)
        ts = status.version.wall_ms
        order = (0, ts, status.version.counter, status.node, record_id(envelope))
    else:
        raise ValidationError(f"records of kind {signed.kind!r} are not synced")
    if not 0 <= ts < MAX_TIMESTAMP:
        raise ValidationError("record time out of range")
    return SyncRecord(
        signed.kind, slot, order, Item(ts, record_id(envelope)), envelope, signed, body
    )
