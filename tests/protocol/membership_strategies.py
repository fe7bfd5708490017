"""A small fixed network for membership tests (root, provinces, cities, counties) and Hypothesis
strategies for valid certificates, revocations and enrolment requests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from protocol.identity import public_key_bytes, sign
from protocol.membership import (
    MAX_VALIDITY_MS,
    Certificate,
    EnrolmentRequest,
    NodeInfo,
    Revocation,
    decode_certificate,
    decode_request,
    decode_revocation,
    network_id,
    sign_certificate,
    sign_request,
    sign_revocation,
)
from protocol.records import SignedRecord, signing_bytes


def key(seed: int) -> Ed25519PrivateKey:
    """A fixed Ed25519 key, so failures reproduce (seeds 64 on: clear of strategies.py)."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


ROOT_KEY = key(64)
OTHER_ROOT_KEY = key(65)
ROOT = public_key_bytes(ROOT_KEY)
NET = network_id(ROOT)
OTHER_NET = network_id(public_key_bytes(OTHER_ROOT_KEY))

DAY_MS = 86_400_000
NOW = 1_750_000_000_000
NOT_BEFORE = NOW - 30 * DAY_MS
NOT_AFTER = NOW + 365 * DAY_MS


@dataclass(frozen=True)
class Member:
    """A node of the test network: its key and who it says it is."""

    key: Ed25519PrivateKey
    info: NodeInfo

    @property
    def public(self) -> bytes:
        return self.info.public_key


def member(seed: int, name: str, code: str, tier: str, region: str) -> Member:
    k = key(seed)
    return Member(k, NodeInfo(public_key_bytes(k), name, code, tier, region))


NATIONAL = member(70, "国家图书馆", "ncn", "national", "000000")
GUANGDONG = member(71, "广东省立中山图书馆", "gdsb", "provincial", "440000")
GANSU = member(72, "甘肃省图书馆", "gssb", "provincial", "620000")
HUBEI = member(73, "湖北省图书馆", "hbsb", "provincial", "420000")
GUANGZHOU = member(74, "广州图书馆", "gz", "municipal", "440100")
SHENZHEN = member(75, "深圳图书馆", "sz", "municipal", "440300")
JIUQUAN = member(76, "酒泉市图书馆", "jq", "municipal", "620900")
LIWAN = member(77, "荔湾区图书馆", "gzw", "county", "440103")
YUEXIU = member(78, "越秀区图书馆", "gzx", "county", "440104")
FUTIAN = member(79, "福田区图书馆", "szft", "county", "440304")
DUNHUANG = member(80, "敦煌市图书馆", "dh", "county", "620982")
XIANTAO = member(81, "仙桃市图书馆", "xt", "county", "429004")
MEMBERS = (
    NATIONAL,
    GUANGDONG,
    GANSU,
    HUBEI,
    GUANGZHOU,
    SHENZHEN,
    JIUQUAN,
    LIWAN,
    YUEXIU,
    FUTIAN,
    DUNHUANG,
    XIANTAO,
)


def certificate(
    subject: Member,
    issuer: Ed25519PrivateKey,
    *,
    network: str = NET,
    not_before: int = NOT_BEFORE,
    not_after: int = NOT_AFTER,
) -> Certificate:
    issuer_key = public_key_bytes(issuer)
    serial = hashlib.sha256(subject.public + issuer_key + network.encode()).digest()[:16]
    return Certificate(serial, network, subject.info, issuer_key, not_before, not_after)


def certify(
    subject: Member,
    issuer: Ed25519PrivateKey,
    *,
    network: str = NET,
    not_before: int = NOT_BEFORE,
    not_after: int = NOT_AFTER,
) -> SignedRecord:
    """`issuer`'s signed certificate for `subject`, whether or not the rules allow it."""
    cert = certificate(subject, issuer, network=network, not_before=not_before, not_after=not_after)
    return sign_certificate(cert, issuer)


def signed_by(kind: str, body: bytes, key: Ed25519PrivateKey) -> SignedRecord:
    """Any body under a good signature of `key`, bypassing the sign_* checks."""
    return SignedRecord(kind, body, public_key_bytes(key), sign(key, signing_bytes(kind, body)))


def revoke(subject: Member, issuer: Ed25519PrivateKey, reason: str = "") -> Revocation:
    revocation = Revocation(NET, subject.public, public_key_bytes(issuer), NOW - DAY_MS, reason)
    # Through the wire and back: the tests handle revocations as a node would receive them.
    return decode_revocation(sign_revocation(revocation, issuer))


# Valid chains, leaf first, one per tier (and a county its province certifies directly).
NATIONAL_CHAIN = (certify(NATIONAL, ROOT_KEY),)
PROVINCIAL_CHAIN = (certify(GUANGDONG, ROOT_KEY),)
MUNICIPAL_CHAIN = (certify(GUANGZHOU, GUANGDONG.key), *PROVINCIAL_CHAIN)
COUNTY_CHAIN = (certify(LIWAN, GUANGZHOU.key), *MUNICIPAL_CHAIN)
SHENZHEN_CHAIN = (certify(SHENZHEN, GUANGDONG.key), *PROVINCIAL_CHAIN)
FUTIAN_CHAIN = (certify(FUTIAN, SHENZHEN.key), *SHENZHEN_CHAIN)
GANSU_CHAIN = (certify(GANSU, ROOT_KEY),)
DIRECT_COUNTY_CHAIN = (certify(XIANTAO, HUBEI.key), certify(HUBEI, ROOT_KEY))


# --- strategies ---------------------------------------------------------------------------------

_KEYS = tuple(key(seed) for seed in range(90, 94))
_PUBLICS = tuple(public_key_bytes(k) for k in _KEYS)
_KEY_BY_PUBLIC = dict(zip(_PUBLICS, _KEYS, strict=True))


def private_key(public: bytes) -> Ed25519PrivateKey:
    return _KEY_BY_PUBLIC[public]


_REGIONS = st.sampled_from(
    ["000000", "110000", "440000", "440100", "440103", "429004", "620982", "659001", "999999"]
) | st.from_regex(r"[1-9][0-9]{5}", fullmatch=True)
_NAMES = st.text(alphabet="图书馆省市县区 abcXYZ019-·（）", min_size=1, max_size=24).filter(
    lambda s: bool(s.strip())
)
_CODES = st.from_regex(r"[0-9bcdfghjkmnpqrstvwxz]{2,16}", fullmatch=True)
_TIMES = st.integers(0, 2**48 - 1)
_REASONS = st.sampled_from(["", "key compromised", "库馆撤销", "x" * 500])
_PARENTS = st.sampled_from(["", "http://10.1.2.3:8470", "https://[fd00::1]:8470", "http://a"])


def _tier(region: str) -> str:
    if region == "000000":
        return "national"
    if region.endswith("0000"):
        return "provincial"
    return "municipal" if region.endswith("00") else "county"


@st.composite
def node_infos(draw: st.DrawFn, public: bytes | None = None) -> NodeInfo:
    region = draw(_REGIONS)
    if public is None:
        public = draw(st.sampled_from(_PUBLICS))
    return NodeInfo(public, draw(_NAMES), draw(_CODES), _tier(region), region)


@st.composite
def certificates(draw: st.DrawFn) -> Certificate:
    """Any well-formed certificate between two pool keys (the tier rules are verify_chain's)."""
    subject, issuer = draw(st.permutations(_PUBLICS))[:2]
    start = draw(st.integers(0, 2**48 - 2))
    length = draw(st.integers(1, min(MAX_VALIDITY_MS, 2**48 - 1 - start)))
    return Certificate(
        draw(st.binary(min_size=16, max_size=16)),
        draw(st.sampled_from([NET, OTHER_NET])),
        draw(node_infos(subject)),
        issuer,
        start,
        start + length,
    )


@st.composite
def revocations(draw: st.DrawFn) -> Revocation:
    return Revocation(
        draw(st.sampled_from([NET, OTHER_NET])),
        draw(st.sampled_from(_PUBLICS)),
        draw(st.sampled_from(_PUBLICS)),
        draw(_TIMES),
        draw(_REASONS),
    )


@st.composite
def requests(draw: st.DrawFn) -> EnrolmentRequest:
    return EnrolmentRequest(
        draw(st.sampled_from([NET, OTHER_NET])), draw(node_infos()), draw(_PARENTS), draw(_TIMES)
    )


Decoder = Callable[[SignedRecord], object]

# (signed record, the decoder that reads it back, the record it must decode to)
signed_membership_records: st.SearchStrategy[tuple[SignedRecord, Decoder, object]] = st.one_of(
    certificates().map(
        lambda c: (sign_certificate(c, private_key(c.issuer)), decode_certificate, c)
    ),
    revocations().map(lambda r: (sign_revocation(r, private_key(r.issuer)), decode_revocation, r)),
    requests().map(
        lambda r: (sign_request(r, private_key(r.subject.public_key)), decode_request, r)
    ),
)
