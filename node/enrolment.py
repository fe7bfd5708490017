"""Enrolment on disk: the network root key, requests, certificates and revocations as files an
admin carries between libraries, and this node's installed chain.

Files (all msgpack bundles of signed records, see protocol.membership.encode_bundle):
- `siku network init` → OUT/root.key (0600, keep offline) and OUT/network.toml (public);
- `siku enroll request` → HOME/membership/request.siku, carried to the parent library;
- `siku enroll approve` → a certificate bundle (the new certificate, then the issuer's chain);
- `siku enroll accept` → installs that bundle as HOME/membership/chain.siku after checking it;
- `siku enroll revoke` → stored in the issuer's home (spread by its daemon) and written to a file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.config import Config
from node.errors import ConfigError, HomeError, NodeError
from node.keys import Identity, create_identity, load_identity
from node.network import NETWORK_FILE, NetworkDescription, load_network, render_network
from protocol.errors import ProtocolError
from protocol.identity import public_key_bytes
from protocol.membership import (
    KIND_CERTIFICATE,
    KIND_REVOCATION,
    ROOT,
    Certificate,
    EnrolmentRequest,
    NodeInfo,
    Revocation,
    check_issuer,
    decode_bundle,
    decode_certificate,
    decode_request,
    decode_revocation,
    encode_bundle,
    sign_certificate,
    sign_request,
    sign_revocation,
    verify_chain,
)
from protocol.records import SignedRecord, decode_envelope, encode_envelope
from storage.store import Store

__all__ = [
    "EnrolmentError",
    "Issuer",
    "approve_request",
    "copy_network",
    "install_chain",
    "issued_subject",
    "load_chain",
    "load_revocations",
    "load_root_key",
    "make_request",
    "make_revocation",
    "network_init",
    "node_info",
    "now_ms",
    "read_bundle",
    "remember_certificates",
    "write_file",
]

MAX_BUNDLE_FILE_BYTES = 1 << 20
DAY_MS = 86_400_000


class EnrolmentError(NodeError):
    """A request, certificate or revocation that cannot be used, with the reason."""

    code = "enrolment-error"


def now_ms() -> int:
    return int(time.time() * 1000)


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write-then-rename, so a reader never sees half a file."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_bundle(path: Path) -> list[SignedRecord]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BUNDLE_FILE_BYTES + 1)
    except OSError as e:
        raise EnrolmentError(f"{path}: cannot read: {e.strerror}") from e
    if len(data) > MAX_BUNDLE_FILE_BYTES:
        raise EnrolmentError(f"{path} is larger than {MAX_BUNDLE_FILE_BYTES} bytes")
    try:
        return decode_bundle(data)
    except ProtocolError as e:
        raise EnrolmentError(f"{path} is not a siku bundle: {e.message}") from e


# --- the network root ---------------------------------------------------------------------------


def network_init(out: Path, *, name: str, ark_naan: str) -> tuple[Path, Path, NetworkDescription]:
    """Make a root key and network.toml in `out` (refusing to overwrite either)."""
    key_path, desc_path = out / "root.key", out / NETWORK_FILE
    for existing in (key_path, desc_path):
        if existing.exists():
            raise HomeError(f"{existing} already exists: a network is made once")
    identity = create_identity(key_path)  # 0600 PEM, same format as a node key
    text = render_network(name=name, ark_naan=ark_naan, root_public_key=identity.public_key)
    write_file(desc_path, text.encode("utf-8"))
    return key_path, desc_path, load_network(desc_path)


def load_root_key(path: Path, network: NetworkDescription) -> Identity:
    root = load_identity(path)
    if root.public_key != network.root_public_key:
        raise EnrolmentError(f"{path} is not the root key of network {network.name!r}")
    return root


def copy_network(source: Path, home: Path) -> NetworkDescription:
    network = load_network(source)  # checked before it is copied
    shutil.copyfile(source, home / NETWORK_FILE)
    return network


# --- this node ----------------------------------------------------------------------------------


def node_info(config: Config, identity: Identity) -> NodeInfo:
    if not config.region:
        raise ConfigError(
            "node.region is empty: set the library's GB/T 2260 code in node.toml to enrol"
        )
    try:
        return NodeInfo(identity.public_key, config.name, config.code, config.tier, config.region)
    except ProtocolError as e:
        raise ConfigError(f"node.toml cannot go into a certificate: {e.message}") from e


def make_request(config: Config, identity: Identity, network: NetworkDescription) -> SignedRecord:
    request = EnrolmentRequest(network.id, node_info(config, identity), config.parent, now_ms())
    return sign_request(request, identity.key)


def load_chain(config: Config) -> list[SignedRecord]:
    """This node's installed chain (leaf first), or [] before `siku enroll accept`."""
    if not config.chain_file.exists():
        return []
    return read_bundle(config.chain_file)


async def load_revocations(store: Store) -> list[Revocation]:
    out = []
    for envelope in await store.membership.envelopes(KIND_REVOCATION):
        out.append(decode_revocation(decode_envelope(envelope)))  # re-verified on every load
    return out


async def install_chain(
    config: Config, identity: Identity, network: NetworkDescription, chain: list[SignedRecord]
) -> Certificate:
    """Check a certificate bundle from the issuer and install it as this node's chain."""
    store = await Store.open(config.store)
    try:
        revocations = await load_revocations(store)
        try:
            leaf = verify_chain(
                chain, root=network.root_public_key, now_ms=now_ms(), revocations=revocations
            )
        except ProtocolError as e:
            raise EnrolmentError(f"the certificate does not admit this node: {e.message}") from e
        if leaf.subject.public_key != identity.public_key:
            raise EnrolmentError(
                f"the certificate is for node {leaf.subject.node_id}, not this node"
                f" ({identity.node_id})"
            )
        if leaf.subject != node_info(config, identity):
            raise EnrolmentError(
                "the certificate's name, code, tier or region differ from node.toml:"
                f" certified {leaf.subject.name!r} {leaf.subject.code} {leaf.subject.tier}"
                f" {leaf.subject.region}"
            )
        await remember_certificates(store, chain)
    finally:
        await store.close()
    write_file(config.chain_file, encode_bundle(chain))
    return leaf


async def remember_certificates(store: Store, chain: list[SignedRecord]) -> None:
    """Keep verified certificates (this node's chain, the ones it issued) in the store."""
    for signed in chain:
        cert = decode_certificate(signed)
        await store.membership.put(
            KIND_CERTIFICATE,
            cert.subject.public_key,
            signed.signer,
            encode_envelope(signed),
            cert.not_before_ms,
        )


async def issued_subject(store: Store, issuer: bytes, node_id: str) -> NodeInfo | None:
    """The subject of a certificate this store holds from `issuer` for `node_id`."""
    for envelope in await store.membership.envelopes(KIND_CERTIFICATE):
        cert = decode_certificate(decode_envelope(envelope))
        if cert.issuer == issuer and cert.subject.node_id == node_id:
            return cert.subject
    return None


# --- issuing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """Who signs: the network root key, or an enrolled node with its own chain."""

    key: Ed25519PrivateKey
    tier: str  # ROOT or the node's tier
    region: str
    chain: tuple[SignedRecord, ...]  # the issuer's own chain ((), for the root)

    @classmethod
    def root(cls, key: Ed25519PrivateKey) -> Issuer:
        return cls(key, ROOT, "", ())

    @classmethod
    def node(
        cls,
        config: Config,
        identity: Identity,
        network: NetworkDescription,
        revocations: list[Revocation],
    ) -> Issuer:
        chain = load_chain(config)
        if not chain:
            raise EnrolmentError(
                f"{config.home} has no certificate yet: enrol it first (siku enroll accept)"
            )
        try:
            leaf = verify_chain(
                chain, root=network.root_public_key, now_ms=now_ms(), revocations=revocations
            )
        except ProtocolError as e:
            raise EnrolmentError(f"this node's own chain is not valid: {e.message}") from e
        return cls(identity.key, leaf.subject.tier, leaf.subject.region, tuple(chain))


def approve_request(
    request_record: SignedRecord,
    issuer: Issuer,
    network: NetworkDescription,
    *,
    days: int,
    serial: bytes | None = None,
) -> tuple[EnrolmentRequest, list[SignedRecord]]:
    """Check a request against the tier rules and issue the certificate bundle for it."""
    try:
        request = decode_request(request_record)
    except ProtocolError as e:
        raise EnrolmentError(f"the request is not valid: {e.message}") from e
    if request.network != network.id:
        raise EnrolmentError("the request is for another network (different network.toml)")
    try:
        check_issuer(issuer.tier, issuer.region, request.subject)
    except ProtocolError as e:
        raise EnrolmentError(f"cannot approve: {e.message}") from e
    if not (1 <= days <= 3650):
        raise EnrolmentError("--days must be between 1 and 3650")
    start = now_ms() - 3_600_000  # an hour back: tolerate the subject's clock being a little slow
    end = start + days * DAY_MS
    # Never beyond the issuer's own certificate: the chain would stop admitting it then anyway.
    for link in issuer.chain:
        end = min(end, decode_certificate(link).not_after_ms)
    if end <= start:
        raise EnrolmentError("the issuing node's own certificate has expired: renew it first")
    cert = Certificate(
        serial=serial or secrets.token_bytes(16),
        network=network.id,
        subject=request.subject,
        issuer=public_key_bytes(issuer.key),
        not_before_ms=start,
        not_after_ms=end,
    )
    return request, [sign_certificate(cert, issuer.key), *issuer.chain]


def make_revocation(
    issuer_key: Ed25519PrivateKey, network: NetworkDescription, subject: bytes, reason: str
) -> tuple[Revocation, SignedRecord]:
    revocation = Revocation(network.id, subject, public_key_bytes(issuer_key), now_ms(), reason)
    return revocation, sign_revocation(revocation, issuer_key)
