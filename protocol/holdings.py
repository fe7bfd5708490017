"""Holdings and replication-policy records: who holds which content, and how many copies to keep.

A holding says "node H holds a complete, verified copy of resource P's current content, last
verified at T". One signed record per holding would cost the network a signature check and
~150 bytes per copy: at millions of resources and three or more copies each, tens of millions
of records. Instead a node publishes its holdings in *pages*: its holdings are split by pid
key (the first 8 bytes of SHA-256 of the pid) into a fixed number of pages that depends only
on its tier (PAGES_BY_TIER), and each page is one signed record listing 20-byte entries

    pid key (8) | content key (8) | verified, unix seconds (4, big-endian)

sorted by pid key. A page is replaced by a newer version of itself (the holder's hybrid logical
clock); dropping a copy republishes its page without the entry, and an empty page withdraws
them all. Network-wide that is at most 4,096 + 35 × 1,024 + 400 × 256 + 2,800 × 64 ≈ 321,000
records however many resources there are, 20 bytes per copy, and one signature check per page.

The content key (first 8 bytes of SHA-256 over the files' SHA-256 and size, in record order)
ties a holding to a version's content: a metadata edit keeps it, a changed file does not.

The replication policy is one record signed by the network root; the newest version wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import DecodeError, SignatureError, ValidationError
from protocol.hlc import Hlc
from protocol.identity import PUBLIC_KEY_BYTES, public_key_bytes, sign
from protocol.records import (
    FileEntry,
    SignedRecord,
    canonical_pack,
    hlc_field,
    signing_bytes,
    verified_fields,
)

__all__ = [
    "ENTRY_BYTES",
    "KIND_HOLDINGS",
    "KIND_POLICY",
    "MAX_ENTRIES",
    "PAGES_BY_TIER",
    "Holding",
    "HoldingsPage",
    "ReplicationPolicy",
    "content_key",
    "decode_holdings",
    "decode_policy",
    "encode_entries",
    "page_of",
    "pid_key",
    "sign_holdings",
    "sign_policy",
]

KIND_HOLDINGS = "holdings"
KIND_POLICY = "policy"
HOLDINGS_VERSION = 1
POLICY_VERSION = 1

# Pages per holder, by tier: enough that a national node's millions of holdings make pages of
# about a thousand entries (~20 KB to re-sign and re-send when one changes), few enough that a
# county's few thousand do not make thousands of tiny records.
PAGES_BY_TIER = {"national": 4096, "provincial": 1024, "municipal": 256, "county": 64}
ENTRY_BYTES = 20
KEY_BYTES = 8
MAX_ENTRIES = 200_000  # 4 MB of entries, within MAX_RECORD_BYTES
MAX_COPIES = 16


def pid_key(pid: str) -> bytes:
    """The 8-byte key of a pid: where its holdings are filed."""
    return hashlib.sha256(pid.encode("utf-8")).digest()[:KEY_BYTES]


def content_key(files: Sequence[FileEntry]) -> bytes:
    """The 8-byte key of a version's content: its files' SHA-256 and sizes, in order."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.sha256)
        h.update(f.size.to_bytes(8, "big"))
    return h.digest()[:KEY_BYTES]


def page_of(key: bytes, pages: int) -> int:
    """The page a pid key is filed in: its top log2(pages) bits."""
    return (int.from_bytes(key[:4], "big") * pages) >> 32


@dataclass(frozen=True)
class Holding:
    pid_key: bytes
    content_key: bytes
    verified_s: int  # unix seconds of the last full verification

    def __post_init__(self) -> None:
        if len(self.pid_key) != KEY_BYTES or len(self.content_key) != KEY_BYTES:
            raise ValidationError("holding keys are 8 bytes")
        if not 0 <= self.verified_s < 1 << 32:
            raise ValidationError("holding verification time out of range")


def encode_entries(holdings: Sequence[Holding]) -> bytes:
    """Entries in canonical form: sorted by pid key (one entry per pid key)."""
    ordered = sorted(holdings, key=lambda h: h.pid_key)
    return b"".join(h.pid_key + h.content_key + h.verified_s.to_bytes(4, "big") for h in ordered)


@dataclass(frozen=True)
class HoldingsPage:
    """Page `page` of `pages` of `holder`'s holdings, as of `version`."""

    holder: bytes
    page: int
    pages: int
    version: Hlc
    entries: bytes  # ENTRY_BYTES per holding, sorted by pid key, no repeats

    def __post_init__(self) -> None:
        if not isinstance(self.holder, bytes) or len(self.holder) != PUBLIC_KEY_BYTES:
            raise ValidationError("a holder is a 32-byte public key")
        if self.pages not in PAGES_BY_TIER.values():
            raise ValidationError(f"{self.pages} pages is not a page count of any tier")
        if not 0 <= self.page < self.pages:
            raise ValidationError(f"page {self.page} outside 0..{self.pages - 1}")
        if len(self.entries) % ENTRY_BYTES or len(self.entries) // ENTRY_BYTES > MAX_ENTRIES:
            raise ValidationError("holding entries have the wrong length or are too many")
        previous = b""
        for key in self._keys():
            if key <= previous:
                raise ValidationError("holding entries are not sorted by pid key without repeats")
            if page_of(key, self.pages) != self.page:
                raise ValidationError("a holding entry is filed in the wrong page")
            previous = key

    def _keys(self) -> Iterator[bytes]:
        e = self.entries
        return (e[i : i + KEY_BYTES] for i in range(0, len(e), ENTRY_BYTES))

    def __len__(self) -> int:
        return len(self.entries) // ENTRY_BYTES

    def __iter__(self) -> Iterator[Holding]:
        e = self.entries
        for i in range(0, len(e), ENTRY_BYTES):
            yield Holding(
                e[i : i + 8], e[i + 8 : i + 16], int.from_bytes(e[i + 16 : i + 20], "big")
            )


@dataclass(frozen=True)
class ReplicationPolicy:
    """The network's replication rules, set by the root (DESIGN.md "Replication policy")."""

    network: str
    version: Hlc
    min_copies: int = 3
    min_higher_in_province: int = 1  # at a higher tier of the resource's own province
    min_outside_province: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.network, str) and 0 < len(self.network) <= 64):
            raise ValidationError("policy network id is malformed")
        if not 1 <= self.min_copies <= MAX_COPIES:
            raise ValidationError(f"min_copies must be 1 to {MAX_COPIES}")
        for value in (self.min_higher_in_province, self.min_outside_province):
            if not 0 <= value <= self.min_copies:
                raise ValidationError("a placement rule may not ask for more than min_copies")


def _encode_holdings(page: HoldingsPage) -> bytes:
    v = page.version
    return canonical_pack(
        [HOLDINGS_VERSION, page.holder, page.page, page.pages, v.wall_ms, v.counter, page.entries]
    )


def _encode_policy(p: ReplicationPolicy) -> bytes:
    v = p.version
    return canonical_pack(
        [
            POLICY_VERSION,
            p.network,
            v.wall_ms,
            v.counter,
            p.min_copies,
            p.min_higher_in_province,
            p.min_outside_province,
        ]
    )


def _signed(kind: str, body: bytes, key: Ed25519PrivateKey) -> SignedRecord:
    return SignedRecord(kind, body, public_key_bytes(key), sign(key, signing_bytes(kind, body)))


def sign_holdings(page: HoldingsPage, key: Ed25519PrivateKey) -> SignedRecord:
    if public_key_bytes(key) != page.holder:
        raise SignatureError("a holdings page is signed by its holder")
    return _signed(KIND_HOLDINGS, _encode_holdings(page), key)


def sign_policy(policy: ReplicationPolicy, root_key: Ed25519PrivateKey) -> SignedRecord:
    """Sign with the network root key (who may is checked by the receiver: sync.authority)."""
    return _signed(KIND_POLICY, _encode_policy(policy), root_key)


def decode_holdings(signed: SignedRecord) -> HoldingsPage:
    """Verify a holdings page (signed by its holder) and decode it."""
    f = verified_fields(
        signed, KIND_HOLDINGS, HOLDINGS_VERSION, (int, bytes, int, int, int, int, bytes)
    )
    page = HoldingsPage(f[1], f[2], f[3], hlc_field(f[4], f[5], "holdings"), f[6])  # type: ignore[arg-type]
    if signed.signer != page.holder:
        raise SignatureError("holdings page not signed by its holder")
    if _encode_holdings(page) != signed.body:
        raise DecodeError("holdings page is not in canonical form")
    return page


def decode_policy(signed: SignedRecord) -> ReplicationPolicy:
    """Verify a policy record's signature and decode it (whether the signer is the network's
    root is the caller's check: the root key is not in the record)."""
    f = verified_fields(signed, KIND_POLICY, POLICY_VERSION, (int, str, int, int, int, int, int))
    policy = ReplicationPolicy(f[1], hlc_field(f[2], f[3], "policy"), f[4], f[5], f[6])  # type: ignore[arg-type]
    if _encode_policy(policy) != signed.body:
        raise DecodeError("policy is not in canonical form")
    return policy
