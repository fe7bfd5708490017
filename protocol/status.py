"""Node status records: what a node tells the network about itself (space, holdings, lag).

One record per node, replaced by each newer version (the node's hybrid logical clock). The
planner reads `full` (a node that defers copies for lack of quota is not given new ones: without
it, a placement that keeps choosing a full node would never be filled elsewhere), and the
console of a national, provincial or municipal library shows the rest for every node below it.
A node republishes when something it reports changes, and at least every STATUS_HEARTBEAT_MS.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import DecodeError, SignatureError, ValidationError
from protocol.hlc import Hlc
from protocol.identity import PUBLIC_KEY_BYTES, public_key_bytes, sign
from protocol.records import (
    SignedRecord,
    canonical_pack,
    hlc_field,
    signing_bytes,
    verified_fields,
)

__all__ = [
    "KIND_STATUS",
    "STATUS_HEARTBEAT_MS",
    "NodeStatus",
    "decode_status",
    "sign_status",
]

KIND_STATUS = "status"
STATUS_VERSION = 1
STATUS_HEARTBEAT_MS = 15 * 60 * 1000
_MAX_COUNT = 1 << 53  # bytes and counts: integers JSON and every client can hold exactly


@dataclass(frozen=True)
class NodeStatus:
    node: bytes  # public key
    version: Hlc
    quota_bytes: int
    used_bytes: int
    full: bool  # copies the policy placed here are deferred for lack of quota
    held_resources: int  # resources whose content this node holds (its own and copies)
    deferred_bytes: int  # bytes of planned copies it has no room for
    sync_behind: int  # records a peer held that it lacked at its last reconciliation
    oldest_verified_s: int  # unix seconds of its least recently verified copy (0: none)

    def __post_init__(self) -> None:
        if not isinstance(self.node, bytes) or len(self.node) != PUBLIC_KEY_BYTES:
            raise ValidationError("a status names a 32-byte node key")
        counts = (
            self.quota_bytes,
            self.used_bytes,
            self.held_resources,
            self.deferred_bytes,
            self.sync_behind,
            self.oldest_verified_s,
        )
        if any(type(c) is not int or not 0 <= c < _MAX_COUNT for c in counts):
            raise ValidationError("a status count is out of range")
        if not isinstance(self.full, bool):
            raise ValidationError("a status's full flag is a boolean")


def _encode(s: NodeStatus) -> bytes:
    return canonical_pack(
        [
            STATUS_VERSION,
            s.node,
            s.version.wall_ms,
            s.version.counter,
            s.quota_bytes,
            s.used_bytes,
            s.full,
            s.held_resources,
            s.deferred_bytes,
            s.sync_behind,
            s.oldest_verified_s,
        ]
    )


_SHAPE = (int, bytes, int, int, int, int, bool, int, int, int, int)


def sign_status(status: NodeStatus, key: Ed25519PrivateKey) -> SignedRecord:
    if public_key_bytes(key) != status.node:
        raise SignatureError("a node status is signed by its node")
    body = _encode(status)
    return SignedRecord(KIND_STATUS, body, status.node, sign(key, signing_bytes(KIND_STATUS, body)))


def decode_status(signed: SignedRecord) -> NodeStatus:
    """Verify a status record (signed by the node it describes) and decode it."""
    f = verified_fields(signed, KIND_STATUS, STATUS_VERSION, _SHAPE)
    version = hlc_field(f[2], f[3], "status")
    status = NodeStatus(f[1], version, f[4], f[5], f[6], f[7], f[8], f[9], f[10])  # type: ignore[arg-type]
    if signed.signer != status.node:
        raise SignatureError("status not signed by the node it describes")
    if _encode(status) != signed.body:
        raise DecodeError("status is not in canonical form")
    return status
