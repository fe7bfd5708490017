"""Membership: who may join the network, proved by certificate chains down the tiers to the root.

The national library keeps the network root key offline. The root certifies the national node and
the provincial nodes; a provincial node certifies the municipal nodes of its province; a municipal
node certifies the county nodes under it. A node is admitted only with an unexpired, unrevoked
chain from its own key to the root:

    county cert (issued by municipal) -> municipal cert (by provincial) -> provincial cert (by root)

Regions are GB/T 2260 administrative division codes (six digits PPCCDD): a province is PP0000, a
prefecture-level city PPCC00, a county-level unit PPCCDD. "Under" is a prefix relation, so the
rules are checkable from the certificates alone. County-level units that a province administers
directly (CC = 90, e.g. 429004 仙桃) are certified by their provincial node.

Revocations are signed records too. A revocation of a key counts when it is signed by the root or
by an issuer at or above the revoked link *in the chain being checked*: so a county node can
never revoke its province, and a revoked municipal node takes every county it certified with it.

Everything here is pure: time is an argument, serial numbers come in as bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import (
    ChainError,
    DecodeError,
    ExpiredError,
    RevokedError,
    SignatureError,
    UnsupportedVersionError,
    ValidationError,
    WrongNetworkError,
)
from protocol.identity import PUBLIC_KEY_BYTES, node_id, public_key_bytes, sign
from protocol.records import (
    MAX_RECORD_BYTES,
    SignedRecord,
    canonical_pack,
    canonical_unpack,
    decode_envelope,
    encode_envelope,
    signing_bytes,
    verified_fields,
)

__all__ = [
    "KIND_CERTIFICATE",
    "KIND_REQUEST",
    "KIND_REVOCATION",
    "MAX_CHAIN",
    "ROOT",
    "TIERS",
    "Certificate",
    "EnrolmentRequest",
    "NodeInfo",
    "Revocation",
    "check_issuer",
    "decode_bundle",
    "decode_certificate",
    "decode_request",
    "decode_revocation",
    "encode_bundle",
    "network_id",
    "region_tier",
    "revocation_applies",
    "sign_certificate",
    "sign_request",
    "sign_revocation",
    "verify_chain",
]

KIND_REQUEST = "enrol-request"
KIND_CERTIFICATE = "certificate"
KIND_REVOCATION = "revocation"
MEMBERSHIP_VERSION = 1

TIERS = ("national", "provincial", "municipal", "county")
ROOT = "root"  # the issuer "tier" of certificates signed with the network root key
NATIONAL_REGION = "000000"
# root -> provincial -> municipal -> county: no admitted node has a longer chain.
MAX_CHAIN = 3
MAX_VALIDITY_MS = 10 * 366 * 86_400_000
MAX_NAME_CHARS = 200
MAX_REASON_CHARS = 500
MAX_PARENT_CHARS = 2_048
SERIAL_BYTES = 16

_REGION = re.compile(r"[0-9]{6}")
_CODE = re.compile(r"[0-9bcdfghjkmnpqrstvwxz]{2,16}")
_NODE_ID = re.compile(r"[a-z2-7]{32}")


def network_id(root_public_key: bytes) -> str:
    """The network's id: derived from its root key exactly as a node id is from a node key."""
    return node_id(root_public_key)


def region_tier(region: str) -> str:
    """The tier a GB/T 2260 code belongs to (000000 is the national library's)."""
    if not _REGION.fullmatch(region):
        raise ValidationError(f"region {region!r} is not a six-digit GB/T 2260 code")
    if region == NATIONAL_REGION:
        return "national"
    if region[:2] == "00":
        raise ValidationError(f"region {region!r} names no province")
    if region[2:] == "0000":
        return "provincial"
    if region[4:] == "00":
        return "municipal"
    return "county"


def _text(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(f"{what} must be 1 to {limit} characters")
    if not value.isprintable():
        raise ValidationError(f"{what} must be printable text on one line")
    return value


@dataclass(frozen=True)
class NodeInfo:
    """Who a node is, as its certificate states it."""

    public_key: bytes
    name: str
    code: str
    tier: str
    region: str

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_BYTES:
            raise ValidationError("a node's public key is 32 bytes")
        _text(self.name, "node name", MAX_NAME_CHARS)
        if not isinstance(self.code, str) or not _CODE.fullmatch(self.code):
            raise ValidationError(f"library code {self.code!r} is malformed")
        if self.tier not in TIERS:
            raise ValidationError(f"tier {self.tier!r} is not one of {', '.join(TIERS)}")
        if region_tier(self.region) != self.tier:
            raise ValidationError(
                f"region {self.region} is a {region_tier(self.region)} code,"
                f" but the node's tier is {self.tier}"
            )

    @property
    def node_id(self) -> str:
        return node_id(self.public_key)

    def _fields(self) -> list[object]:
        return [self.public_key, self.name, self.code, self.tier, self.region]


@dataclass(frozen=True)
class EnrolmentRequest:
    """A node asking its parent (or the root) for a certificate, signed by the node's own key."""

    network: str  # network id
    subject: NodeInfo
    parent: str  # the parent's peer URL as the requesting node knows it ("" for the root)
    created_ms: int

    def __post_init__(self) -> None:
        _check_network(self.network)
        if not isinstance(self.parent, str) or len(self.parent) > MAX_PARENT_CHARS:
            raise ValidationError("parent URL is too long")
        if self.parent and not self.parent.isprintable():
            raise ValidationError("parent URL must be printable")
        _check_ms(self.created_ms, "created")


@dataclass(frozen=True)
class Certificate:
    """`issuer` vouches that `subject` is a member of `network` from not_before to not_after."""

    serial: bytes
    network: str
    subject: NodeInfo
    issuer: bytes  # public key of the issuing node, or the root key
    not_before_ms: int
    not_after_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.serial, bytes) or len(self.serial) != SERIAL_BYTES:
            raise ValidationError(f"a certificate serial is {SERIAL_BYTES} bytes")
        _check_network(self.network)
        if not isinstance(self.issuer, bytes) or len(self.issuer) != PUBLIC_KEY_BYTES:
            raise ValidationError("an issuer key is 32 bytes")
        if self.issuer == self.subject.public_key:
            raise ValidationError("a certificate cannot be issued by its own subject")
        _check_ms(self.not_before_ms, "not_before")
        _check_ms(self.not_after_ms, "not_after")
        if not (0 < self.not_after_ms - self.not_before_ms <= MAX_VALIDITY_MS):
            raise ValidationError("a certificate is valid for a positive period of ≤ 10 years")

    def valid_at(self, now_ms: int) -> bool:
        return self.not_before_ms <= now_ms <= self.not_after_ms


@dataclass(frozen=True)
class Revocation:
    """`issuer` withdraws `subject` (a node key) from the network. It takes effect wherever it
    is known, as soon as it is known: `revoked_ms` records when it was issued, for people."""

    network: str
    subject: bytes
    issuer: bytes
    revoked_ms: int
    reason: str = ""

    def __post_init__(self) -> None:
        _check_network(self.network)
        for key in (self.subject, self.issuer):
            if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
                raise ValidationError("a revocation names 32-byte keys")
        _check_ms(self.revoked_ms, "revoked")
        if not isinstance(self.reason, str) or len(self.reason) > MAX_REASON_CHARS:
            raise ValidationError(f"a revocation reason is at most {MAX_REASON_CHARS} characters")
        if self.reason and not self.reason.isprintable():
            raise ValidationError("a revocation reason must be printable text on one line")


def _check_network(value: str) -> None:
    if not isinstance(value, str) or not _NODE_ID.fullmatch(value):
        raise ValidationError("network id is malformed")


def _check_ms(value: int, what: str) -> None:
    if type(value) is not int or not (0 <= value < 2**48):
        raise ValidationError(f"{what} time is out of range")


# --- encoding: one function per kind builds the signed bytes ----------------------------------


def _encode_request(r: EnrolmentRequest) -> bytes:
    return canonical_pack(
        [MEMBERSHIP_VERSION, r.network, *r.subject._fields(), r.parent, r.created_ms]
    )


def _encode_certificate(c: Certificate) -> bytes:
    return canonical_pack(
        [
            MEMBERSHIP_VERSION,
            c.serial,
            c.network,
            *c.subject._fields(),
            c.issuer,
            c.not_before_ms,
            c.not_after_ms,
        ]
    )


def _encode_revocation(r: Revocation) -> bytes:
    return canonical_pack(
        [MEMBERSHIP_VERSION, r.network, r.subject, r.issuer, r.revoked_ms, r.reason]
    )


def _signed(kind: str, body: bytes, key: Ed25519PrivateKey) -> SignedRecord:
    return SignedRecord(kind, body, public_key_bytes(key), sign(key, signing_bytes(kind, body)))


def sign_request(request: EnrolmentRequest, key: Ed25519PrivateKey) -> SignedRecord:
    if public_key_bytes(key) != request.subject.public_key:
        raise SignatureError("an enrolment request is signed by the requesting node's own key")
    return _signed(KIND_REQUEST, _encode_request(request), key)


def sign_certificate(certificate: Certificate, key: Ed25519PrivateKey) -> SignedRecord:
    if public_key_bytes(key) != certificate.issuer:
        raise SignatureError("a certificate is signed by its issuer's key")
    return _signed(KIND_CERTIFICATE, _encode_certificate(certificate), key)


def sign_revocation(revocation: Revocation, key: Ed25519PrivateKey) -> SignedRecord:
    if public_key_bytes(key) != revocation.issuer:
        raise SignatureError("a revocation is signed by its issuer's key")
    return _signed(KIND_REVOCATION, _encode_revocation(revocation), key)


def _fields(signed: SignedRecord, kind: str, shape: Sequence[type]) -> list[object]:
    return verified_fields(signed, kind, MEMBERSHIP_VERSION, shape)


_NODE_SHAPE = (bytes, str, str, str, str)


def decode_request(signed: SignedRecord) -> EnrolmentRequest:
    """Verify an enrolment request (self-signed: proves the node holds its key) and decode it."""
    f = _fields(signed, KIND_REQUEST, (int, str, *_NODE_SHAPE, str, int))
    request = EnrolmentRequest(f[1], NodeInfo(*f[2:7]), f[7], f[8])  # type: ignore[arg-type]
    if signed.signer != request.subject.public_key:
        raise SignatureError("enrolment request not signed by the node it names")
    if _encode_request(request) != signed.body:
        raise DecodeError("enrolment request is not in canonical form")
    return request


def decode_certificate(signed: SignedRecord) -> Certificate:
    """Verify a certificate's signature by its stated issuer and decode it (the issuer's right to
    issue it is `verify_chain`'s business)."""
    f = _fields(signed, KIND_CERTIFICATE, (int, bytes, str, *_NODE_SHAPE, bytes, int, int))
    cert = Certificate(f[1], f[2], NodeInfo(*f[3:8]), f[8], f[9], f[10])  # type: ignore[arg-type]
    if signed.signer != cert.issuer:
        raise SignatureError("certificate not signed by its issuer")
    if _encode_certificate(cert) != signed.body:
        raise DecodeError("certificate is not in canonical form")
    return cert


def decode_revocation(signed: SignedRecord) -> Revocation:
    f = _fields(signed, KIND_REVOCATION, (int, str, bytes, bytes, int, str))
    revocation = Revocation(f[1], f[2], f[3], f[4], f[5])  # type: ignore[arg-type]
    if signed.signer != revocation.issuer:
        raise SignatureError("revocation not signed by its issuer")
    if _encode_revocation(revocation) != signed.body:
        raise DecodeError("revocation is not in canonical form")
    return revocation


# --- the rules ----------------------------------------------------------------------------------


def check_issuer(issuer_tier: str, issuer_region: str, subject: NodeInfo) -> None:
    """Raise ChainError unless an issuer of this tier and region may certify `subject`.

    `issuer_tier` is ROOT for the network root key (whose region is ignored)."""
    if issuer_tier == ROOT:
        if subject.tier not in ("national", "provincial"):
            raise ChainError(
                f"the root certifies national and provincial nodes, not {subject.tier}"
            )
        return
    if issuer_tier == "provincial" and subject.tier == "municipal":
        if subject.region[:2] != issuer_region[:2]:
            raise ChainError(
                f"provincial node of {issuer_region} cannot certify a municipal node of another"
                f" province ({subject.region})"
            )
        return
    if issuer_tier == "provincial" and subject.tier == "county" and subject.region[2:4] == "90":
        if subject.region[:2] != issuer_region[:2]:
            raise ChainError(
                f"provincial node of {issuer_region} cannot certify a county of another"
                f" province ({subject.region})"
            )
        return
    if issuer_tier == "municipal" and subject.tier == "county":
        if subject.region[:4] != issuer_region[:4]:
            raise ChainError(
                f"municipal node of {issuer_region} cannot certify a county outside it"
                f" ({subject.region})"
            )
        return
    raise ChainError(f"a {issuer_tier} node cannot certify a {subject.tier} node")


def revocation_applies(
    revocation: Revocation, subject: bytes, issuers_above: Iterable[bytes], root: bytes
) -> bool:
    """Whether `revocation` withdraws `subject`, given the keys that certify it in the chain
    under test (its issuer and every issuer above). Anyone else's word about it counts nothing."""
    return revocation.subject == subject and (
        revocation.issuer == root or revocation.issuer in set(issuers_above)
    )


def verify_chain(
    chain: Sequence[SignedRecord],
    *,
    root: bytes,
    now_ms: int,
    revocations: Iterable[Revocation] = (),
) -> Certificate:
    """The leaf certificate of `chain` (leaf first) if the chain admits its subject at `now_ms`:
    every link's signature verifies, each link is issued by the subject of the next, the last by
    `root`, each issuer may certify its subject, every link is within its validity period and no
    link is revoked by the root or an issuer above it. Raises a ChainError subclass otherwise."""
    if not chain:
        raise ChainError("no certificate chain")
    if len(chain) > MAX_CHAIN:
        raise ChainError(f"certificate chain longer than {MAX_CHAIN} links")
    network = network_id(root)
    certs: list[Certificate] = []
    for signed in chain:
        try:
            cert = decode_certificate(signed)
        except (DecodeError, ValidationError, SignatureError) as e:
            raise ChainError(f"certificate {len(certs) + 1} of the chain: {e.message}") from e
        if cert.network != network:
            raise WrongNetworkError("the certificate chain belongs to another network")
        certs.append(cert)
    for i, cert in enumerate(certs):
        last = i == len(certs) - 1
        if last:
            if cert.issuer != root:
                raise ChainError("the chain does not end at the network root")
            check_issuer(ROOT, "", cert.subject)
        else:
            above = certs[i + 1].subject
            if cert.issuer != above.public_key:
                raise ChainError(f"link {i + 1} is not issued by the subject of link {i + 2}")
            check_issuer(above.tier, above.region, cert.subject)
    for cert in certs:
        if not cert.valid_at(now_ms):
            raise ExpiredError(f"the certificate of {cert.subject.name} is not valid now")
    revoked = list(revocations)
    if revoked:
        for i, cert in enumerate(certs):
            issuers = [c.issuer for c in certs[i:]]
            if any(revocation_applies(r, cert.subject.public_key, issuers, root) for r in revoked):
                raise RevokedError(f"{cert.subject.name} ({cert.subject.node_id}) is revoked")
    return certs[0]


# --- bundles: the files an admin carries between nodes ----------------------------------------

BUNDLE_VERSION = 1
MAX_BUNDLE_RECORDS = 64


def encode_bundle(records: Sequence[SignedRecord]) -> bytes:
    """Several signed records in one file: a certificate with the chain above it, a request,
    a revocation. Each record is verified by whoever reads the bundle, never by the bundle."""
    if len(records) > MAX_BUNDLE_RECORDS:
        raise ValidationError(f"a bundle holds at most {MAX_BUNDLE_RECORDS} records")
    return canonical_pack([BUNDLE_VERSION, [encode_envelope(r) for r in records]])


def decode_bundle(data: bytes) -> list[SignedRecord]:
    if len(data) > MAX_RECORD_BYTES:
        raise DecodeError("bundle larger than the limit")
    fields = canonical_unpack(data, "bundle")
    if not (
        isinstance(fields, list)
        and len(fields) == 2
        and type(fields[0]) is int
        and isinstance(fields[1], list)
    ):
        raise DecodeError("not a siku bundle")
    if fields[0] != BUNDLE_VERSION:
        raise UnsupportedVersionError(f"bundle version {fields[0]!r}")
    items = fields[1]
    if len(items) > MAX_BUNDLE_RECORDS or not all(isinstance(i, bytes) for i in items):
        raise DecodeError("bundle has the wrong shape")
    return [decode_envelope(i) for i in items]
