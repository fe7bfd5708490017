"""Helpers shared by the membership and peer tests: keys that sign, certificates minted on
the spot, free port pairs for daemons (public port p, admin port p + 1)."""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.identity import node_id, public_key_bytes
from protocol.membership import Certificate, NodeInfo, sign_certificate
from protocol.records import SignedRecord

__all__ = ["DAY_MS", "Member", "certify", "free_port_pair", "now_ms"]

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Member:
    """A key and the chain it presents (leaf first; () for the root); not necessarily valid."""

    key: Ed25519PrivateKey
    chain: tuple[SignedRecord, ...]

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.key)

    @property
    def node_id(self) -> str:
        return node_id(self.public_key)


def certify(
    issuer: Member,
    subject_key: Ed25519PrivateKey,
    network: str,
    *,
    name: str,
    code: str,
    tier: str,
    region: str,
    not_before_ms: int | None = None,
    not_after_ms: int | None = None,
) -> Member:
    """A certificate for `subject_key` signed by `issuer`, with the issuer's chain above it."""
    start = now_ms() - 3_600_000 if not_before_ms is None else not_before_ms
    cert = Certificate(
        serial=secrets.token_bytes(16),
        network=network,
        subject=NodeInfo(public_key_bytes(subject_key), name, code, tier, region),
        issuer=issuer.public_key,
        not_before_ms=start,
        not_after_ms=start + 30 * DAY_MS if not_after_ms is None else not_after_ms,
    )
    return Member(subject_key, (sign_certificate(cert, issuer.key), *issuer.chain))


def free_port_pair(taken: set[int]) -> int:
    """A port p such that p and p + 1 (the admin listener) are both free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port + 1 > 65535 or {port, port + 1} & taken:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        taken.update((port, port + 1))
        return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")
