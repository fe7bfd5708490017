"""Peer messages: signed address records (how to reach a node) and the hello exchange.

A hello is the first thing two nodes say to each other and, repeated, their heartbeat. Each side
sends the same message: its certificate chain, its own signed address, the addresses of other
members it knows (peer exchange) and the revocations it holds, so a revocation reaches every node
that talks to one that has it. The HTTP request or response signature around the message says who
sent it; the records inside are each checked on their own before anything is believed.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import DecodeError, SignatureError, UnsupportedVersionError, ValidationError
from protocol.httpsig import SessionKey
from protocol.identity import PUBLIC_KEY_BYTES, public_key_bytes, sign
from protocol.membership import MAX_CHAIN
from protocol.records import (
    SignedRecord,
    canonical_pack,
    canonical_unpack,
    decode_envelope,
    encode_envelope,
    signing_bytes,
)

__all__ = [
    "KIND_ADDRESS",
    "MAX_ADDRESSES",
    "MAX_HELLO_BYTES",
    "MAX_REVOCATIONS",
    "AddressRecord",
    "HelloMessage",
    "decode_address",
    "decode_hello",
    "derive_session",
    "encode_hello",
    "sign_address",
    "validate_peer_url",
    "x25519_public",
]

KIND_ADDRESS = "address"
PEERING_VERSION = 1
MAX_URLS = 4
MAX_URL_CHARS = 256
MAX_ADDRESSES = 64  # addresses passed on per hello
MAX_REVOCATIONS = 4_096  # revocations passed on per hello
MAX_HELLO_BYTES = 4 << 20
X25519_KEY_BYTES = 32
SESSION_INFO = b"siku/session/v1\x00"

_NETWORK = re.compile(r"[a-z2-7]{32}")
_URL = re.compile(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:[1-9][0-9]{0,4})?/?")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def validate_peer_url(url: str) -> str:
    """A peer's base URL, scheme, host and port only (`http://10.1.2.3:8470`), returned in
    canonical form: lower-case host, no trailing slash. Host names are DNS names; IPv6 literals
    go in brackets (as written: only checked); ports have no leading zeros."""
    match = _URL.fullmatch(url) if isinstance(url, str) and len(url) <= MAX_URL_CHARS else None
    if match is None:
        raise ValidationError(f"peer URL {url!r} must be http(s)://HOST[:PORT]")
    scheme, host, port = match.group(1), match.group(2).lower(), match.group(3)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as e:
            raise ValidationError(f"peer URL {url!r} has a malformed IPv6 address") from e
    elif not _HOST.fullmatch(host):
        raise ValidationError(f"peer URL {url!r} has a malformed host name")
    if port and not (0 < int(port[1:]) < 65536):
        raise ValidationError(f"peer URL {url!r} has a port out of range")
    return f"{scheme}://{host}{port or ''}"


def _check_version(fields: object, what: str) -> None:
    """The version first, so a future message is told apart from a malformed one."""
    if not (isinstance(fields, list) and fields and type(fields[0]) is int):
        raise DecodeError(f"{what} is not an array that starts with its version")
    if fields[0] != PEERING_VERSION:
        raise UnsupportedVersionError(f"{what} version {fields[0]!r}")


@dataclass(frozen=True)
class AddressRecord:
    """Where `node` (a public key) listens for peers, as it says itself at `issued_ms`."""

    network: str
    node: bytes
    urls: tuple[str, ...]
    issued_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not _NETWORK.fullmatch(self.network):
            raise ValidationError("network id is malformed")
        if not isinstance(self.node, bytes) or len(self.node) != PUBLIC_KEY_BYTES:
            raise ValidationError("a node key is 32 bytes")
        if not (1 <= len(self.urls) <= MAX_URLS):
            raise ValidationError(f"an address record lists 1 to {MAX_URLS} URLs")
        for url in self.urls:
            if validate_peer_url(url) != url:
                raise ValidationError(f"peer URL {url!r} is not in canonical form")
        if type(self.issued_ms) is not int or not (0 <= self.issued_ms < 2**48):
            raise ValidationError("address time is out of range")


def _encode_address(a: AddressRecord) -> bytes:
    return canonical_pack([PEERING_VERSION, a.network, a.node, list(a.urls), a.issued_ms])


def sign_address(address: AddressRecord, key: Ed25519PrivateKey) -> SignedRecord:
    signer = public_key_bytes(key)
    if signer != address.node:
        raise SignatureError("a node signs only its own address")
    body = _encode_address(address)
    return SignedRecord(KIND_ADDRESS, body, signer, sign(key, signing_bytes(KIND_ADDRESS, body)))


def decode_address(signed: SignedRecord) -> AddressRecord:
    if signed.kind != KIND_ADDRESS:
        raise UnsupportedVersionError(f"expected an address record, got {signed.kind!r}")
    signed.verify()
    f = canonical_unpack(signed.body, "address body")
    _check_version(f, "address record")
    if not (
        isinstance(f, list)
        and len(f) == 5
        and [type(v) for v in f] == [int, str, bytes, list, int]
        and all(type(u) is str for u in f[3])
    ):
        raise DecodeError("address record has the wrong shape")
    address = AddressRecord(f[1], f[2], tuple(f[3]), f[4])
    if address.node != signed.signer:
        raise SignatureError("address record not signed by the node it names")
    if _encode_address(address) != signed.body:
        raise DecodeError("address record is not in canonical form")
    return address


@dataclass(frozen=True)
class HelloMessage:
    network: str
    chain: tuple[SignedRecord, ...]  # the sender's certificate chain, leaf first
    address: SignedRecord  # the sender's own address record
    peers: tuple[SignedRecord, ...] = ()  # address records of other members
    revocations: tuple[SignedRecord, ...] = ()
    # An ephemeral X25519 public key offering a session (b"" for none): see derive_session.
    session_key: bytes = b""

    def __post_init__(self) -> None:
        if len(self.session_key) not in (0, X25519_KEY_BYTES):
            raise ValidationError("a session key offer is a 32-byte X25519 public key")
        if not _NETWORK.fullmatch(self.network):
            raise ValidationError("network id is malformed")
        if not (1 <= len(self.chain) <= MAX_CHAIN):
            raise ValidationError(f"a hello carries a chain of 1 to {MAX_CHAIN} certificates")
        if len(self.peers) > MAX_ADDRESSES:
            raise ValidationError(f"a hello passes on at most {MAX_ADDRESSES} addresses")
        if len(self.revocations) > MAX_REVOCATIONS:
            raise ValidationError(f"a hello carries at most {MAX_REVOCATIONS} revocations")


def encode_hello(hello: HelloMessage) -> bytes:
    def envs(records: Sequence[SignedRecord]) -> list[bytes]:
        return [encode_envelope(r) for r in records]

    return canonical_pack(
        [
            PEERING_VERSION,
            hello.network,
            envs(hello.chain),
            encode_envelope(hello.address),
            envs(hello.peers),
            envs(hello.revocations),
            hello.session_key,
        ]
    )


def decode_hello(data: bytes) -> HelloMessage:
    """Parse a hello. Records inside are only envelope-checked: verify each before use."""
    if len(data) > MAX_HELLO_BYTES:
        raise DecodeError("hello larger than the limit")
    f = canonical_unpack(data, "hello")
    _check_version(f, "hello")
    if not (
        isinstance(f, list)
        and len(f) == 7
        and [type(v) for v in f] == [int, str, list, bytes, list, list, bytes]
        and all(type(e) is bytes for part in (f[2], f[4], f[5]) for e in part)
    ):
        raise DecodeError("hello has the wrong shape")
    if len(f[2]) > MAX_CHAIN or len(f[4]) > MAX_ADDRESSES or len(f[5]) > MAX_REVOCATIONS:
        raise DecodeError("hello carries more records than allowed")
    return HelloMessage(
        network=f[1],
        chain=tuple(decode_envelope(e) for e in f[2]),
        address=decode_envelope(f[3]),
        peers=tuple(decode_envelope(e) for e in f[4]),
        revocations=tuple(decode_envelope(e) for e in f[5]),
        session_key=f[6],
    )


def x25519_public(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of an X25519 key's public half (what a hello offers)."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def derive_session(
    own: X25519PrivateKey,
    peer_offer: bytes,
    *,
    client: bytes,
    server: bytes,
    client_offer: bytes,
    server_offer: bytes,
) -> SessionKey:
    """The session two nodes share after a hello in which both offered an ephemeral X25519 key.

    Each offer travels inside a hello signed with its sender's Ed25519 key (request body under
    Content-Digest, answer under the answer's signature), so only those two nodes can compute
    the secret; HKDF binds it to both node keys and both offers, in client-then-server order,
    so both ends derive the same 32-byte secret and 16-byte id. A new hello makes a new session
    (forward secrecy: the ephemeral keys are never stored)."""
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(peer_offer))
    except ValueError as e:
        raise ValidationError(f"session key offer is not a usable X25519 key: {e}") from e
    info = SESSION_INFO + client + server + client_offer + server_offer
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=info).derive(shared)
    session_id = base64.b32encode(okm[32:]).decode("ascii").lower().rstrip("=")
    return SessionKey(session_id, okm[:32])
