"""Membership: chains down the tiers, the issuing rules, revocation, records and bundles."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import (
    ChainError,
    DecodeError,
    ExpiredError,
    ProtocolError,
    RevokedError,
    SignatureError,
    UnsupportedVersionError,
    ValidationError,
    WrongNetworkError,
)
from protocol.identity import public_key_bytes
from protocol.membership import (
    KIND_CERTIFICATE,
    KIND_REQUEST,
    KIND_REVOCATION,
    MAX_CHAIN,
    MAX_VALIDITY_MS,
    TIERS,
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
    network_id,
    region_tier,
    revocation_applies,
    sign_certificate,
    sign_request,
    sign_revocation,
    verify_chain,
)
from protocol.membership import (
    ROOT as ROOT_ISSUER,
)
from protocol.records import (
    MAX_RECORD_BYTES,
    SignedRecord,
    canonical_pack,
    decode_envelope,
    encode_envelope,
)

from .membership_strategies import (
    COUNTY_CHAIN,
    DAY_MS,
    DIRECT_COUNTY_CHAIN,
    DUNHUANG,
    FUTIAN,
    FUTIAN_CHAIN,
    GANSU,
    GANSU_CHAIN,
    GUANGDONG,
    GUANGZHOU,
    JIUQUAN,
    LIWAN,
    MEMBERS,
    MUNICIPAL_CHAIN,
    NATIONAL,
    NATIONAL_CHAIN,
    NET,
    NOT_AFTER,
    NOT_BEFORE,
    NOW,
    OTHER_NET,
    OTHER_ROOT_KEY,
    PROVINCIAL_CHAIN,
    ROOT,
    ROOT_KEY,
    SHENZHEN,
    SHENZHEN_CHAIN,
    XIANTAO,
    YUEXIU,
    Decoder,
    Member,
    certificate,
    certify,
    revoke,
    signed_by,
    signed_membership_records,
)

# Each example signs and verifies: fewer examples keep the properties quick.
record_settings = settings(max_examples=60, deadline=None)


def verify(chain: Sequence[SignedRecord], *revocations: Revocation, now: int = NOW) -> Certificate:
    return verify_chain(chain, root=ROOT, now_ms=now, revocations=revocations)


def refused(
    error: type[ChainError], chain: Sequence[SignedRecord], *revocations: Revocation, now: int = NOW
) -> ChainError:
    """Assert the chain is refused with exactly `error` (not a subclass: the code must be right)."""
    with pytest.raises(ChainError) as caught:
        verify(chain, *revocations, now=now)
    assert type(caught.value) is error, caught.value
    assert caught.value.code == error.code
    return caught.value


# --- valid chains ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "leaf", "links"),
    [
        (NATIONAL_CHAIN, NATIONAL, 1),
        (PROVINCIAL_CHAIN, GUANGDONG, 1),
        (GANSU_CHAIN, GANSU, 1),
        (MUNICIPAL_CHAIN, GUANGZHOU, 2),
        (SHENZHEN_CHAIN, SHENZHEN, 2),
        (COUNTY_CHAIN, LIWAN, 3),
        (FUTIAN_CHAIN, FUTIAN, 3),
        (DIRECT_COUNTY_CHAIN, XIANTAO, 2),  # a county its province administers directly
    ],
    ids=lambda v: v.info.code if isinstance(v, Member) else None,
)
def test_a_valid_chain_of_each_tier_returns_its_leaf(
    chain: tuple[SignedRecord, ...], leaf: Member, links: int
) -> None:
    assert len(chain) == links
    cert = verify(chain)
    assert cert == decode_certificate(chain[0])
    assert cert.subject == leaf.info
    assert cert.network == NET == network_id(ROOT)


def test_chains_survive_the_wire() -> None:
    wired = tuple(decode_envelope(encode_envelope(s)) for s in COUNTY_CHAIN)
    assert verify(wired).subject == LIWAN.info


def test_revocations_of_others_do_not_disturb_a_chain() -> None:
    others = [revoke(SHENZHEN, GUANGDONG.key), revoke(DUNHUANG, ROOT_KEY), revoke(FUTIAN, ROOT_KEY)]
    assert verify(COUNTY_CHAIN, *others).subject == LIWAN.info


# --- who may certify whom -------------------------------------------------------------------------

ALLOWED = [
    (ROOT_ISSUER, "", NATIONAL),
    (ROOT_ISSUER, "", GUANGDONG),
    (ROOT_ISSUER, "", GANSU),
    ("provincial", "440000", GUANGZHOU),
    ("provincial", "440000", SHENZHEN),
    ("provincial", "620000", JIUQUAN),
    ("provincial", "420000", XIANTAO),  # county-level unit a province administers directly
    ("municipal", "440100", LIWAN),
    ("municipal", "440100", YUEXIU),
    ("municipal", "440300", FUTIAN),
    ("municipal", "620900", DUNHUANG),
]

FORBIDDEN = [
    # the root certifies only national and provincial nodes
    (ROOT_ISSUER, "", GUANGZHOU),
    (ROOT_ISSUER, "", LIWAN),
    (ROOT_ISSUER, "", XIANTAO),
    # sibling provinces
    ("provincial", "620000", GUANGZHOU),
    ("provincial", "440000", JIUQUAN),
    ("provincial", "440000", XIANTAO),
    # a province certifies counties only where it administers them directly (PP90DD)
    ("provincial", "440000", LIWAN),
    ("provincial", "440000", GANSU),
    ("provincial", "440000", NATIONAL),
    # a city certifies only the counties under it
    ("municipal", "440100", FUTIAN),
    ("municipal", "440300", LIWAN),
    ("municipal", "440100", DUNHUANG),
    ("municipal", "440100", SHENZHEN),
    ("municipal", "440100", GUANGDONG),
    # the national node certifies nobody (the root does)
    ("national", "000000", GUANGDONG),
    ("national", "000000", GUANGZHOU),
]


@pytest.mark.parametrize(("tier", "region", "subject"), ALLOWED)
def test_check_issuer_allows(tier: str, region: str, subject: Member) -> None:
    check_issuer(tier, region, subject.info)


@pytest.mark.parametrize(("tier", "region", "subject"), FORBIDDEN)
def test_check_issuer_forbids(tier: str, region: str, subject: Member) -> None:
    with pytest.raises(ChainError) as caught:
        check_issuer(tier, region, subject.info)
    assert type(caught.value) is ChainError


@pytest.mark.parametrize("subject", MEMBERS, ids=lambda m: m.info.region)
def test_a_county_certifies_nobody(subject: Member) -> None:
    with pytest.raises(ChainError):
        check_issuer("county", LIWAN.info.region, subject.info)


def test_sibling_province_cannot_certify_a_city_in_a_signed_chain() -> None:
    # Gansu (620000) certifies Guangzhou (440100): every signature is good, the rule is not.
    chain = (certify(GUANGZHOU, GANSU.key), *GANSU_CHAIN)
    assert decode_certificate(chain[0]).issuer == GANSU.public
    error = refused(ChainError, chain)
    assert "another province" in error.message


def test_sibling_province_cannot_certify_a_direct_county_in_a_signed_chain() -> None:
    refused(ChainError, (certify(XIANTAO, GUANGDONG.key), *PROVINCIAL_CHAIN))


def test_a_city_cannot_certify_a_county_of_another_city() -> None:
    refused(ChainError, (certify(FUTIAN, GUANGZHOU.key), *MUNICIPAL_CHAIN))
    refused(ChainError, (certify(DUNHUANG, GUANGZHOU.key), *MUNICIPAL_CHAIN))


def test_a_province_cannot_certify_a_county_under_a_city() -> None:
    refused(ChainError, (certify(LIWAN, GUANGDONG.key), *PROVINCIAL_CHAIN))


def test_a_county_cannot_certify_anything() -> None:
    # Liwan certifies its neighbour Yuexiu: the chain links up, the rule refuses it.
    refused(ChainError, (certify(YUEXIU, LIWAN.key), *COUNTY_CHAIN[:2]))
    # ... and a 4-link chain under a county is refused too (for its length, first).
    refused(ChainError, (certify(YUEXIU, LIWAN.key), *COUNTY_CHAIN))


@pytest.mark.parametrize("subject", [GUANGZHOU, LIWAN, XIANTAO], ids=lambda m: m.info.tier)
def test_the_root_cannot_certify_below_provincial(subject: Member) -> None:
    refused(ChainError, (certify(subject, ROOT_KEY),))


def test_the_national_node_cannot_certify_a_province() -> None:
    refused(ChainError, (certify(GUANGDONG, NATIONAL.key), *NATIONAL_CHAIN))


# --- length and structure ------------------------------------------------------------------------


def test_a_chain_one_link_too_long_is_refused() -> None:
    # Self-consistent: each link issued by the subject of the next, the last by the root; but
    # the province is certified through the national node, which makes four links.
    chain = (
        certify(LIWAN, GUANGZHOU.key),
        certify(GUANGZHOU, GUANGDONG.key),
        certify(GUANGDONG, NATIONAL.key),
        *NATIONAL_CHAIN,
    )
    assert len(chain) == MAX_CHAIN + 1
    assert "longer" in refused(ChainError, chain).message


def test_a_chain_with_an_extra_link_in_the_middle_is_refused() -> None:
    # Three links, each issued by the next: the national node sits between city and root.
    refused(
        ChainError,
        (certify(GUANGZHOU, GUANGDONG.key), certify(GUANGDONG, NATIONAL.key), *NATIONAL_CHAIN),
    )
    # A link repeated in the middle: its issuer (the root) is not the next link's subject.
    refused(ChainError, (MUNICIPAL_CHAIN[0], *PROVINCIAL_CHAIN, *PROVINCIAL_CHAIN))
    # A province vouched for by a province, which the root vouches for.
    refused(
        ChainError,
        (certify(GUANGZHOU, GUANGDONG.key), certify(GUANGDONG, GANSU.key), *GANSU_CHAIN),
    )


def test_an_empty_chain_is_refused() -> None:
    refused(ChainError, ())


def test_a_link_whose_issuer_is_not_the_next_subject_is_refused() -> None:
    # Liwan's certificate (issued by Guangzhou) presented above Shenzhen's.
    error = refused(ChainError, (COUNTY_CHAIN[0], *SHENZHEN_CHAIN))
    assert "not issued by the subject" in error.message


def test_links_out_of_order_are_refused() -> None:
    refused(ChainError, tuple(reversed(COUNTY_CHAIN)))
    refused(ChainError, (COUNTY_CHAIN[1], COUNTY_CHAIN[0], COUNTY_CHAIN[2]))


def test_a_last_link_not_issued_by_the_root_is_refused() -> None:
    # Guangzhou's certificate alone: signed by Guangdong, whose own certificate is missing.
    assert "network root" in refused(ChainError, MUNICIPAL_CHAIN[:1]).message
    refused(ChainError, COUNTY_CHAIN[:2])
    # A "provincial" certificate for our network signed by a key that is not our root.
    refused(ChainError, (certify(GUANGDONG, OTHER_ROOT_KEY),))
    refused(ChainError, (MUNICIPAL_CHAIN[0], certify(GUANGDONG, GANSU.key)))


def test_a_link_signed_by_a_key_other_than_its_issuer_is_refused() -> None:
    # Gansu signs a certificate that names Guangdong as issuer, under its own signer field ...
    cert = certificate(GUANGZHOU, GUANGDONG.key)
    body = sign_certificate(cert, GUANGDONG.key).body
    forged = signed_by(KIND_CERTIFICATE, body, GANSU.key)
    refused(ChainError, (forged, *PROVINCIAL_CHAIN))
    # ... or under Guangdong's signer field: the signature does not verify.
    lying = dataclasses.replace(forged, signer=GUANGDONG.public)
    error = refused(ChainError, (lying, *PROVINCIAL_CHAIN))
    assert isinstance(error.__cause__, SignatureError)
    # The same holds for the root link.
    root_forged = dataclasses.replace(
        signed_by(KIND_CERTIFICATE, PROVINCIAL_CHAIN[0].body, OTHER_ROOT_KEY), signer=ROOT
    )
    refused(ChainError, (MUNICIPAL_CHAIN[0], root_forged))


def test_a_tampered_link_is_refused() -> None:
    # Guangzhou's certificate re-labelled as Shenzhen's region: the signature no longer covers it.
    good = MUNICIPAL_CHAIN[0]
    body = good.body.replace(b"440100", b"440300")
    assert body != good.body
    refused(ChainError, (dataclasses.replace(good, body=body), *PROVINCIAL_CHAIN))


def test_a_link_that_is_not_a_certificate_is_refused() -> None:
    revocation = sign_revocation(
        Revocation(NET, GUANGZHOU.public, GUANGDONG.public, NOW), GUANGDONG.key
    )
    refused(ChainError, (revocation, *PROVINCIAL_CHAIN))


# --- network ------------------------------------------------------------------------------------


def test_a_chain_under_another_root_is_of_another_network() -> None:
    foreign = (
        certify(LIWAN, GUANGZHOU.key, network=OTHER_NET),
        certify(GUANGZHOU, GUANGDONG.key, network=OTHER_NET),
        certify(GUANGDONG, OTHER_ROOT_KEY, network=OTHER_NET),
    )
    refused(WrongNetworkError, foreign)
    refused(WrongNetworkError, foreign[2:])
    # Valid in its own network.
    other_root = public_key_bytes(OTHER_ROOT_KEY)
    assert verify_chain(foreign, root=other_root, now_ms=NOW).subject == LIWAN.info
    # Our own chain is foreign to the other network.
    with pytest.raises(WrongNetworkError):
        verify_chain(COUNTY_CHAIN, root=other_root, now_ms=NOW)


def test_one_foreign_link_makes_the_chain_foreign() -> None:
    refused(WrongNetworkError, (certify(LIWAN, GUANGZHOU.key, network=OTHER_NET), *MUNICIPAL_CHAIN))


# --- validity periods ---------------------------------------------------------------------------


def test_validity_boundaries_are_inclusive() -> None:
    assert verify(COUNTY_CHAIN, now=NOT_BEFORE).subject == LIWAN.info
    assert verify(COUNTY_CHAIN, now=NOT_AFTER).subject == LIWAN.info
    refused(ExpiredError, COUNTY_CHAIN, now=NOT_AFTER + 1)
    refused(ExpiredError, COUNTY_CHAIN, now=NOT_BEFORE - 1)


@pytest.mark.parametrize("position", [0, 1, 2], ids=["leaf", "middle", "top"])
def test_an_expired_link_anywhere_expires_the_chain(position: int) -> None:
    chain = list(COUNTY_CHAIN)
    end = NOW - 1
    links: list[tuple[Member, Member | None]] = [
        (LIWAN, GUANGZHOU),
        (GUANGZHOU, GUANGDONG),
        (GUANGDONG, None),
    ]
    subject, issuer = links[position]
    issuer_key = issuer.key if issuer is not None else ROOT_KEY
    chain[position] = certify(subject, issuer_key, not_before=end - DAY_MS, not_after=end)
    refused(ExpiredError, chain)
    assert verify(chain, now=end).subject == LIWAN.info


@pytest.mark.parametrize("position", [0, 1, 2], ids=["leaf", "middle", "top"])
def test_a_link_not_yet_valid_fails_the_chain(position: int) -> None:
    chain = list(COUNTY_CHAIN)
    start = NOW + 1
    links = [(LIWAN, GUANGZHOU.key), (GUANGZHOU, GUANGDONG.key), (GUANGDONG, ROOT_KEY)]
    subject, issuer_key = links[position]
    chain[position] = certify(subject, issuer_key, not_before=start, not_after=start + DAY_MS)
    refused(ExpiredError, chain)
    assert verify(chain, now=start).subject == LIWAN.info


def test_structure_is_checked_before_time() -> None:
    # A forged chain is "invalid", not merely "expired", even when it is also out of date.
    refused(ChainError, (certify(GUANGZHOU, ROOT_KEY),), now=NOT_AFTER + 1)


# --- revocation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [GUANGZHOU, GUANGDONG, None],
    ids=["by-its-issuer", "by-the-province-above", "by-the-root"],
)
def test_a_revoked_leaf_is_refused(issuer: Member | None) -> None:
    revocation = revoke(LIWAN, issuer.key if issuer else ROOT_KEY)
    refused(RevokedError, COUNTY_CHAIN, revocation)
    # The city and its other counties are untouched.
    assert verify(MUNICIPAL_CHAIN, revocation).subject == GUANGZHOU.info
    yuexiu = (certify(YUEXIU, GUANGZHOU.key), *MUNICIPAL_CHAIN)
    assert verify(yuexiu, revocation).subject == YUEXIU.info


def test_a_revoked_middle_link_takes_its_descendants_with_it() -> None:
    revocation = revoke(GUANGZHOU, GUANGDONG.key)
    refused(RevokedError, MUNICIPAL_CHAIN, revocation)
    refused(RevokedError, COUNTY_CHAIN, revocation)
    refused(RevokedError, (certify(YUEXIU, GUANGZHOU.key), *MUNICIPAL_CHAIN), revocation)
    # A sibling city and its counties, and the province itself, stay admitted.
    assert verify(FUTIAN_CHAIN, revocation).subject == FUTIAN.info
    assert verify(PROVINCIAL_CHAIN, revocation).subject == GUANGDONG.info


def test_a_province_revoked_by_the_root_takes_the_whole_province() -> None:
    revocation = revoke(GUANGDONG, ROOT_KEY)
    for chain in (PROVINCIAL_CHAIN, MUNICIPAL_CHAIN, COUNTY_CHAIN, SHENZHEN_CHAIN, FUTIAN_CHAIN):
        refused(RevokedError, chain, revocation)
    assert verify(GANSU_CHAIN, revocation).subject == GANSU.info
    assert verify(DIRECT_COUNTY_CHAIN, revocation).subject == XIANTAO.info


@pytest.mark.parametrize(
    ("subject", "issuer"),
    [
        (LIWAN, SHENZHEN),  # a city that did not certify it
        (LIWAN, GANSU),  # another province
        (LIWAN, NATIONAL),  # the national node is not the root
        (LIWAN, FUTIAN),  # a county elsewhere
        (LIWAN, YUEXIU),  # its sibling
        (GUANGZHOU, LIWAN),  # the revoked node's own child
        (GUANGDONG, LIWAN),  # a grandchild
        (GUANGDONG, GUANGZHOU),  # a child
        (GUANGZHOU, SHENZHEN),  # a sibling city
    ],
    ids=lambda m: m.info.code,
)
def test_a_revocation_by_someone_without_authority_does_not_count(
    subject: Member, issuer: Member
) -> None:
    revocation = revoke(subject, issuer.key)
    assert verify(COUNTY_CHAIN, revocation).subject == LIWAN.info
    assert verify(MUNICIPAL_CHAIN, revocation).subject == GUANGZHOU.info


def test_a_revocation_by_another_networks_root_does_not_count() -> None:
    other = Revocation(NET, LIWAN.public, public_key_bytes(OTHER_ROOT_KEY), NOW)
    assert verify(COUNTY_CHAIN, other).subject == LIWAN.info


def test_revocation_applies() -> None:
    r = revoke(LIWAN, GUANGZHOU.key)
    assert revocation_applies(r, LIWAN.public, [GUANGZHOU.public, GUANGDONG.public, ROOT], ROOT)
    assert not revocation_applies(r, LIWAN.public, [SHENZHEN.public, GUANGDONG.public], ROOT)
    assert not revocation_applies(r, YUEXIU.public, [GUANGZHOU.public], ROOT)
    by_root = revoke(LIWAN, ROOT_KEY)
    assert revocation_applies(by_root, LIWAN.public, [], ROOT)
    assert revocation_applies(by_root, LIWAN.public, iter([GUANGZHOU.public]), ROOT)


# --- node info and regions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "tier"),
    [
        ("000000", "national"),
        ("110000", "provincial"),
        ("440000", "provincial"),
        ("440100", "municipal"),
        ("440103", "county"),
        ("429004", "county"),
        ("659001", "county"),
        ("990000", "provincial"),
    ],
)
def test_region_tier(region: str, tier: str) -> None:
    assert region_tier(region) == tier


@pytest.mark.parametrize(
    "region",
    [
        "",
        "44010",
        "4401000",
        "44010a",
        "44 100",
        "００００００",
        "440100\n",
        "001234",
        "000100",
        "-44010",
        "+44010",
        "4401.0",
    ],
)
def test_malformed_regions_are_refused(region: str) -> None:
    with pytest.raises(ValidationError):
        region_tier(region)
    with pytest.raises(ValidationError):
        dataclasses.replace(LIWAN.info, region=region)


@pytest.mark.parametrize(
    ("tier", "region"),
    [
        ("national", "110000"),
        ("provincial", "000000"),
        ("provincial", "440100"),
        ("municipal", "440000"),
        ("municipal", "440103"),
        ("county", "440100"),
        ("county", "000000"),
        ("root", "000000"),
        ("city", "440100"),
        ("", "440103"),
    ],
)
def test_tier_must_match_the_shape_of_the_region(tier: str, region: str) -> None:
    with pytest.raises(ValidationError):
        NodeInfo(LIWAN.public, "x", "gzw", tier, region)


@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_has_a_region_shape(tier: str) -> None:
    region = {"national": "000000", "provincial": "440000", "municipal": "440100"}.get(
        tier, "440103"
    )
    assert NodeInfo(LIWAN.public, "x", "gzw", tier, region).tier == tier


@pytest.mark.parametrize(
    "change",
    [
        {"public_key": b"\x01" * 31},
        {"public_key": b"\x01" * 33},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "two\nlines"},
        {"name": "tab\there"},
        {"code": "a"},
        {"code": "LWLIB"},
        {"code": "lw-lib"},
        {"code": "aeiou"},  # vowels are not betanumeric
        {"code": "b" * 17},
    ],
    ids=str,
)
def test_node_info_invariants(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(LIWAN.info, **change)  # type: ignore[arg-type]


def test_node_info_edges_that_are_fine() -> None:
    assert (
        dataclasses.replace(LIWAN.info, name="x" * 200, code="b" * 16).node_id == LIWAN.info.node_id
    )


# --- record invariants --------------------------------------------------------------------------

CERT = certificate(GUANGZHOU, GUANGDONG.key)
REVOCATION = Revocation(NET, GUANGZHOU.public, GUANGDONG.public, NOW, "密钥泄露 key leaked")
REQUEST = EnrolmentRequest(NET, LIWAN.info, "http://10.44.1.1:8470", NOW)
ROOT_REQUEST = EnrolmentRequest(NET, GUANGDONG.info, "", NOW)  # asked of the root: no parent URL


@pytest.mark.parametrize(
    "change",
    [
        {"serial": b"\x00" * 15},
        {"serial": b"\x00" * 17},
        {"network": "not-a-network"},
        {"network": NET.upper()},
        {"issuer": b"\x00" * 31},
        {"issuer": GUANGZHOU.public},  # issued by its own subject
        {"not_before_ms": NOT_AFTER},  # empty period
        {"not_before_ms": NOT_AFTER + 1},
        {"not_after_ms": NOT_BEFORE + MAX_VALIDITY_MS + 1},
        {"not_before_ms": -1},
        {"not_after_ms": 2**48},
        {"not_before_ms": True},
        {"not_before_ms": float(NOT_BEFORE)},
    ],
    ids=str,
)
def test_certificate_invariants(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(CERT, **change)  # type: ignore[arg-type]


def test_certificate_longest_validity_is_allowed() -> None:
    cert = dataclasses.replace(CERT, not_after_ms=NOT_BEFORE + MAX_VALIDITY_MS)
    assert decode_certificate(sign_certificate(cert, GUANGDONG.key)) == cert


@pytest.mark.parametrize(
    "change",
    [
        {"network": "x"},
        {"subject": b"\x00" * 31},
        {"issuer": b""},
        {"revoked_ms": -1},
        {"revoked_ms": 2**48},
        {"reason": "x" * 501},
        {"reason": "line\nbreak"},
    ],
    ids=str,
)
def test_revocation_invariants(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(REVOCATION, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"network": ""},
        {"parent": "http://" + "a" * 2_048},
        {"parent": "http://a\n"},
        {"created_ms": -5},
        {"created_ms": None},
    ],
    ids=str,
)
def test_request_invariants(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(REQUEST, **change)  # type: ignore[arg-type]


def test_signing_with_the_wrong_key_is_refused() -> None:
    with pytest.raises(SignatureError):
        sign_certificate(CERT, GANSU.key)
    with pytest.raises(SignatureError):
        sign_certificate(CERT, GUANGZHOU.key)  # the subject cannot sign its own certificate
    with pytest.raises(SignatureError):
        sign_revocation(REVOCATION, GUANGZHOU.key)
    with pytest.raises(SignatureError):
        sign_request(REQUEST, GUANGZHOU.key)  # a parent cannot ask on its child's behalf


# --- encoding -----------------------------------------------------------------------------------


def test_round_trips_of_each_kind() -> None:
    cases: list[tuple[SignedRecord, Decoder, object]] = [
        (sign_certificate(CERT, GUANGDONG.key), decode_certificate, CERT),
        (sign_revocation(REVOCATION, GUANGDONG.key), decode_revocation, REVOCATION),
        (sign_request(REQUEST, LIWAN.key), decode_request, REQUEST),
        (sign_request(ROOT_REQUEST, GUANGDONG.key), decode_request, ROOT_REQUEST),
    ]
    for signed, decode, record in cases:
        wired = decode_envelope(encode_envelope(signed))
        assert wired == signed
        assert decode(wired) == record


@record_settings
@given(signed_membership_records)
def test_round_trip_property(item: tuple[SignedRecord, Decoder, object]) -> None:
    signed, decode, record = item
    assert decode(decode_envelope(encode_envelope(signed))) == record


def test_wire_layout_is_fixed() -> None:
    # Pins field order and types: a change here is a protocol version change.
    i = GUANGZHOU.info
    node = [i.public_key, i.name, i.code, i.tier, i.region]
    assert msgpack.unpackb(sign_certificate(CERT, GUANGDONG.key).body) == [
        1,
        CERT.serial,
        NET,
        *node,
        GUANGDONG.public,
        NOT_BEFORE,
        NOT_AFTER,
    ]
    r = REVOCATION
    assert msgpack.unpackb(sign_revocation(r, GUANGDONG.key).body) == [
        1,
        NET,
        r.subject,
        r.issuer,
        r.revoked_ms,
        r.reason,
    ]
    q = REQUEST
    leaf = [q.subject.public_key, q.subject.name, q.subject.code, q.subject.tier, q.subject.region]
    assert msgpack.unpackb(sign_request(q, LIWAN.key).body) == [
        1,
        NET,
        *leaf,
        q.parent,
        q.created_ms,
    ]


def _fields(signed: SignedRecord) -> list[object]:
    fields: list[object] = msgpack.unpackb(signed.body)
    return fields


# (kind, a good record's fields, the key that signs it, its decoder)
KINDS: list[tuple[str, list[object], Member, Decoder]] = [
    (
        KIND_CERTIFICATE,
        _fields(sign_certificate(CERT, GUANGDONG.key)),
        GUANGDONG,
        decode_certificate,
    ),
    (
        KIND_REVOCATION,
        _fields(sign_revocation(REVOCATION, GUANGDONG.key)),
        GUANGDONG,
        decode_revocation,
    ),
    (KIND_REQUEST, _fields(sign_request(REQUEST, LIWAN.key)), LIWAN, decode_request),
]
KIND_IDS = [k[0] for k in KINDS]


@pytest.mark.parametrize(("kind", "fields", "signer", "decode"), KINDS, ids=KIND_IDS)
def test_a_body_that_is_not_canonical_is_refused(
    kind: str, fields: list[object], signer: Member, decode: Decoder
) -> None:
    body = canonical_pack(fields)
    assert body[0] == 0x90 | len(fields) and body[1] == 0x01
    variants = [
        bytes([body[0]]) + b"\xcd\x00\x01" + body[2:],  # version as uint16
        b"\xdc" + len(fields).to_bytes(2, "big") + body[1:],  # array16 for a short array
        body + b"\xc0",  # trailing bytes
    ]
    decode(signed_by(kind, body, signer.key))  # the canonical body itself decodes
    for variant in variants:
        with pytest.raises(DecodeError):
            decode(signed_by(kind, variant, signer.key))


@pytest.mark.parametrize(("kind", "fields", "signer", "decode"), KINDS, ids=KIND_IDS)
def test_a_body_of_the_wrong_shape_is_refused(
    kind: str, fields: list[object], signer: Member, decode: Decoder
) -> None:
    shapes: list[object] = [
        fields[:-1],
        [*fields, 0],
        [],
        [1],
        {"v": 1},
        1,
        "certificate",
        [True, *fields[1:]],
        [*fields[:-1], [fields[-1]]],
        [*fields[:-1], None],
        [*fields[:-1], 1.5],
        [fields[0], *[f.decode("latin-1") if isinstance(f, bytes) else f for f in fields[1:]]],
        [fields[0], *[f.encode() if isinstance(f, str) else f for f in fields[1:]]],
        [*fields[:2], [fields[2]], *fields[3:]],
    ]
    for shape in shapes:
        body = msgpack.packb(shape, use_bin_type=True)
        with pytest.raises(DecodeError) as caught:
            decode(signed_by(kind, body, signer.key))
        assert type(caught.value) is DecodeError, shape
    for garbage in [b"", b"\xc1", b"\x93\x01", b"\xff" * 8]:
        with pytest.raises(DecodeError):
            decode(signed_by(kind, garbage, signer.key))


@pytest.mark.parametrize(("kind", "fields", "signer", "decode"), KINDS, ids=KIND_IDS)
def test_an_unknown_version_is_refused(
    kind: str, fields: list[object], signer: Member, decode: Decoder
) -> None:
    for version in (0, 2, 255, -1):
        body = canonical_pack([version, *fields[1:]])
        with pytest.raises(UnsupportedVersionError):
            decode(signed_by(kind, body, signer.key))


@pytest.mark.parametrize(("kind", "fields", "signer", "decode"), KINDS, ids=KIND_IDS)
def test_a_record_of_another_kind_is_refused(
    kind: str, fields: list[object], signer: Member, decode: Decoder
) -> None:
    for other, other_fields, other_signer, _ in KINDS:
        if other == kind:
            continue
        foreign = signed_by(other, canonical_pack(other_fields), other_signer.key)
        with pytest.raises(UnsupportedVersionError):
            decode(foreign)
        # Same body, relabelled kind, re-signed: the body does not fit the kind.
        with pytest.raises(ProtocolError):
            decode(signed_by(kind, canonical_pack(other_fields), other_signer.key))
    for label in ("catalogue", "address", "certificates", ""):
        with pytest.raises(UnsupportedVersionError):
            decode(signed_by(label, canonical_pack(fields), signer.key))


@pytest.mark.parametrize(("kind", "fields", "signer", "decode"), KINDS, ids=KIND_IDS)
def test_a_record_signed_by_the_wrong_node_is_refused(
    kind: str, fields: list[object], signer: Member, decode: Decoder
) -> None:
    body = canonical_pack(fields)
    # A good signature by someone who is not the record's issuer (or requesting node) ...
    with pytest.raises(SignatureError):
        decode(signed_by(kind, body, GANSU.key))
    # ... and the right signer named, with someone else's signature.
    forged = dataclasses.replace(signed_by(kind, body, GANSU.key), signer=signer.public)
    with pytest.raises(SignatureError):
        decode(forged)


@pytest.mark.parametrize(
    ("kind", "fields", "signer", "decode", "index", "value"),
    [
        (*KINDS[0], 8, GUANGZHOU.public),  # certificate issued by its own subject
        (*KINDS[0], 7, "440103"),  # a municipal node with a county region
        (*KINDS[0], 10, NOT_BEFORE),  # an empty validity period
        (*KINDS[0], 2, OTHER_NET.upper()),
        (*KINDS[1], 5, "a\nb"),
        (*KINDS[1], 3, b"\x00" * 31),
        (*KINDS[2], 7, "bad\x00url"),
        (*KINDS[2], 8, 2**48),
        (*KINDS[2], 6, "000000"),
    ],
)
def test_a_signed_body_that_breaks_an_invariant_is_refused(
    kind: str,
    fields: list[object],
    signer: Member,
    decode: Decoder,
    index: int,
    value: object,
) -> None:
    changed = list(fields)
    changed[index] = value
    with pytest.raises(ValidationError):
        decode(signed_by(kind, canonical_pack(changed), signer.key))


# --- tampering ----------------------------------------------------------------------------------


@record_settings
@given(signed_membership_records, st.data())
def test_any_change_of_any_byte_is_rejected(
    item: tuple[SignedRecord, Decoder, object], data: st.DataObject
) -> None:
    signed, decode, _ = item
    envelope = bytearray(encode_envelope(signed))
    position = data.draw(st.integers(0, len(envelope) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    envelope[position] ^= mask
    with pytest.raises(ProtocolError):
        decode(decode_envelope(bytes(envelope)))


@pytest.mark.parametrize(
    ("signed", "decode"),
    [
        (COUNTY_CHAIN[0], decode_certificate),
        (sign_revocation(REVOCATION, GUANGDONG.key), decode_revocation),
        (sign_request(REQUEST, LIWAN.key), decode_request),
    ],
    ids=KIND_IDS,
)
def test_every_single_bit_flip_is_rejected(signed: SignedRecord, decode: Decoder) -> None:
    data = encode_envelope(signed)
    decode(decode_envelope(data))
    missed = []
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            try:
                decode(decode_envelope(bytes(flipped)))
            except ProtocolError:
                continue
            missed.append((position, bit))
    assert missed == []


def test_a_tampered_link_anywhere_in_a_chain_is_refused() -> None:
    for i, link in enumerate(COUNTY_CHAIN):
        data = bytearray(encode_envelope(link))
        data[-1] ^= 1  # the signature's last byte
        chain = list(COUNTY_CHAIN)
        chain[i] = decode_envelope(bytes(data))
        refused(ChainError, chain)


# --- bundles ------------------------------------------------------------------------------------


def test_bundle_round_trip() -> None:
    records = [
        *COUNTY_CHAIN,
        sign_request(REQUEST, LIWAN.key),
        sign_revocation(REVOCATION, GUANGDONG.key),
    ]
    data = encode_bundle(records)
    assert decode_bundle(data) == records
    assert verify(decode_bundle(encode_bundle(COUNTY_CHAIN))).subject == LIWAN.info
    assert decode_bundle(encode_bundle([])) == []


def test_a_bundle_holds_at_most_64_records() -> None:
    record = COUNTY_CHAIN[0]
    assert len(decode_bundle(encode_bundle([record] * 64))) == 64
    with pytest.raises(ValidationError):
        encode_bundle([record] * 65)
    too_many = canonical_pack([1, [encode_envelope(record)] * 65])
    with pytest.raises(DecodeError):
        decode_bundle(too_many)


def test_a_bundle_only_frames_records_it_does_not_vouch_for_them() -> None:
    forged = dataclasses.replace(MUNICIPAL_CHAIN[0], signature=bytes(64))
    chain = decode_bundle(encode_bundle([forged, *PROVINCIAL_CHAIN]))
    refused(ChainError, chain)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"not a bundle at all",
        bytes(range(256)),
        canonical_pack([]),
        canonical_pack([1]),
        canonical_pack([1, [], []]),
        canonical_pack(["1", []]),
        canonical_pack([True, []]),
        canonical_pack([1, b"x"]),
        canonical_pack([1, ["envelope"]]),
        canonical_pack([1, [[1, "certificate"]]]),
        canonical_pack([1, [b"not an envelope"]]),
        canonical_pack([1, [encode_envelope(COUNTY_CHAIN[0])[:-1]]]),
        canonical_pack([1, [encode_envelope(COUNTY_CHAIN[0]) + b"\x00"]]),
        encode_bundle(COUNTY_CHAIN)[:-1],
        encode_bundle(COUNTY_CHAIN) + b"\x00",
    ],
)
def test_garbage_is_not_a_bundle(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_bundle(data)


def test_bundle_version_and_size() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_bundle(canonical_pack([2, []]))
    with pytest.raises(DecodeError):
        decode_bundle(canonical_pack([1, [b"\x00" * MAX_RECORD_BYTES]]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash_the_bundle_decoder(data: bytes) -> None:
    try:
        records = decode_bundle(data)
    except ProtocolError:
        return
    assert all(isinstance(r, SignedRecord) for r in records)
