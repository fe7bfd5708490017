"""Who may write what (sync/authority.py): certificates down the tiers, revocations by the root
or a held member, catalogue records by their library under its own NAAN and code."""

from __future__ import annotations

import hashlib
import secrets
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import ark
from protocol.hlc import Hlc
from protocol.membership import Revocation, sign_revocation
from protocol.records import CatalogueRecord, LangString, encode_envelope, sign_catalogue
from sync.authority import Authority, Deferred, Rejected
from sync.records import SyncRecord, decode_record
from tests.peer_helpers import Member, certify
from tests.sync.netbuild import NAAN, Library, TestNetwork, catalogue_record

NATIONAL, PROVINCIAL, MUNICIPAL, COUNTY = 0, 1, 2, 3


def now_ms() -> int:
    return int(time.time() * 1000)


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


@pytest.fixture(scope="module")
def net() -> TestNetwork:
    return TestNetwork.build(2, 1, 1)  # two provinces: 0 national, 1-3 and 4-6 one chain each


def authority(net: TestNetwork, *learned: int) -> Authority:
    """An authority of `net` that holds the certificates of the libraries `learned`."""
    judge = Authority(net.root.public_key, net.network, NAAN)
    for index in learned:
        judge.learn(decode_record(net.certificates(index)[0]))
    return judge


def cert_record(member: Member) -> SyncRecord:
    return decode_record(encode_envelope(member.chain[0]))


def new_member(
    net: TestNetwork, issuer: Member, name: str, code: str, tier: str, region: str
) -> Member:
    return certify(issuer, key(name), net.network, name=name, code=code, tier=tier, region=region)


def revocation(net: TestNetwork, issuer_key: Ed25519PrivateKey, subject: bytes) -> SyncRecord:
    issuer = Member(issuer_key, ()).public_key
    body = Revocation(net.network, subject, issuer, now_ms(), "withdrawn")
    return decode_record(encode_envelope(sign_revocation(body, issuer_key)))


def catalogue(lib: Library, *, pid: str | None = None) -> SyncRecord:
    return decode_record(catalogue_record(lib, now_ms(), pid=pid))


def catalogue_under(lib: Library, naan: str, code: str) -> SyncRecord:
    pid = str(ark.mint(naan, code, secrets.token_bytes(8)))
    record = CatalogueRecord(
        pid=pid,
        origin=lib.public_key,
        version=Hlc(now_ms()),
        dc={"title": (LangString("题名", "zh"),)},
    )
    return decode_record(encode_envelope(sign_catalogue(record, lib.member.key)))


# --- certificates -------------------------------------------------------------------------------


def test_the_root_certifies_national_and_provincial_nodes(net: TestNetwork) -> None:
    judge = authority(net)
    for index in (NATIONAL, PROVINCIAL):
        judge.judge(decode_record(net.certificates(index)[0]), None)


def test_the_root_does_not_certify_a_municipal_node(net: TestNetwork) -> None:
    municipal = new_member(net, net.root, "rogue-city", "rc", "municipal", "110100")
    with pytest.raises(Rejected, match="root certifies national and provincial"):
        authority(net).judge(cert_record(municipal), None)


def test_a_held_issuer_certifies_within_its_rights(net: TestNetwork) -> None:
    province = net.libraries[PROVINCIAL]  # region 110000
    judge = authority(net, PROVINCIAL)
    judge.judge(decode_record(net.certificates(MUNICIPAL)[0]), None)
    another = new_member(net, province.member, "p0m9", "mzz", "municipal", "110900")
    judge.judge(cert_record(another), None)
    # A county-level unit its province administers directly (CC = 90).
    direct = new_member(net, province.member, "p0d1", "dzz", "county", "119001")
    judge.judge(cert_record(direct), None)
    municipal = net.libraries[MUNICIPAL]  # region 110100
    authority(net, MUNICIPAL).judge(decode_record(net.certificates(COUNTY)[0]), None)
    county = new_member(net, municipal.member, "p0m0c9", "czz", "county", "110109")
    authority(net, MUNICIPAL).judge(cert_record(county), None)


def test_a_certificate_from_an_issuer_not_held_is_deferred(net: TestNetwork) -> None:
    with pytest.raises(Deferred):
        authority(net).judge(decode_record(net.certificates(MUNICIPAL)[0]), None)
    with pytest.raises(Deferred):
        authority(net, PROVINCIAL).judge(decode_record(net.certificates(COUNTY)[0]), None)


@pytest.mark.parametrize(
    ("issuer", "tier", "region"),
    [
        (PROVINCIAL, "municipal", "120100"),  # a city of another province
        (PROVINCIAL, "county", "110101"),  # a county under a city: the city's to certify
        (PROVINCIAL, "provincial", "120000"),  # a peer
        (MUNICIPAL, "county", "110201"),  # a county of another city
        (MUNICIPAL, "municipal", "110200"),
        (COUNTY, "county", "110102"),  # counties certify nobody
        (NATIONAL, "provincial", "130000"),  # only the root certifies provinces
    ],
)
def test_a_certificate_beyond_its_issuers_rights_is_rejected(
    net: TestNetwork, issuer: int, tier: str, region: str
) -> None:
    held = list(range(issuer + 1))
    subject = new_member(
        net, net.libraries[issuer].member, f"beyond-{issuer}-{region}", "bz", tier, region
    )
    with pytest.raises(Rejected):
        authority(net, *held).judge(cert_record(subject), None)


def test_records_of_another_network_are_rejected(net: TestNetwork) -> None:
    other = TestNetwork.build(1, 1, 1, seed=7)
    assert other.network != net.network
    judge = authority(net, *range(len(net.libraries)))
    with pytest.raises(Rejected, match="another network"):
        judge.judge(decode_record(other.certificates(NATIONAL)[0]), None)
    # Even when the issuer's key is one this network holds.
    stray = certify(
        net.libraries[PROVINCIAL].member,
        key("stray"),
        other.network,
        name="stray",
        code="sz",
        tier="municipal",
        region="110300",
    )
    with pytest.raises(Rejected, match="another network"):
        judge.judge(cert_record(stray), None)
    with pytest.raises(Rejected, match="another network"):
        judge.judge(revocation(other, other.root.key, net.libraries[COUNTY].public_key), None)


# --- revocations --------------------------------------------------------------------------------


def test_revocations_by_the_root_or_a_held_member_are_accepted(net: TestNetwork) -> None:
    county = net.libraries[COUNTY].public_key
    judge = authority(net, MUNICIPAL)
    judge.judge(revocation(net, net.root.key, county), None)
    judge.judge(revocation(net, net.libraries[MUNICIPAL].member.key, county), None)


def test_a_revocation_by_a_node_not_held_is_deferred(net: TestNetwork) -> None:
    county = net.libraries[COUNTY].public_key
    with pytest.raises(Deferred):
        authority(net, PROVINCIAL).judge(
            revocation(net, net.libraries[MUNICIPAL].member.key, county), None
        )
    with pytest.raises(Deferred):
        authority(net).judge(revocation(net, key("nobody"), county), None)


# --- catalogue ----------------------------------------------------------------------------------


def test_a_catalogue_record_of_a_held_library_is_accepted(net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    judge = authority(net, COUNTY)
    record = catalogue(lib)
    judge.judge(record, None)
    judge.judge(record, lib.public_key)  # a new version of its own record


def test_a_catalogue_record_of_an_unknown_origin_is_deferred(net: TestNetwork) -> None:
    with pytest.raises(Deferred):
        authority(net, MUNICIPAL).judge(catalogue(net.libraries[COUNTY]), None)


def test_a_pid_under_another_naan_is_rejected(net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    with pytest.raises(Rejected, match="NAAN"):
        authority(net, COUNTY).judge(catalogue_under(lib, "99999", lib.code), None)


def test_a_pid_under_another_library_code_is_rejected(net: TestNetwork) -> None:
    lib, other = net.libraries[COUNTY], net.libraries[MUNICIPAL]
    with pytest.raises(Rejected, match="library code"):
        authority(net, COUNTY, MUNICIPAL).judge(catalogue_under(lib, NAAN, other.code), None)


def test_a_pid_held_from_another_origin_is_never_taken_over(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    # Certificates do not make codes unique: a second county given the same code...
    rogue = certify(
        net.libraries[MUNICIPAL].member,
        key("rogue-county"),
        net.network,
        name="rogue",
        code=county.code,
        tier="county",
        region="110102",
    )
    judge = authority(net, COUNTY)
    judge.learn(cert_record(rogue))
    original = catalogue(county)
    assert isinstance(original.body, CatalogueRecord)
    # ...signs a newer version of the county's record as its own.
    body = CatalogueRecord(
        pid=original.body.pid,
        origin=rogue.public_key,
        version=Hlc(original.body.version.wall_ms + 1),
        dc={"title": (LangString("篡改", "zh"),)},
    )
    takeover = decode_record(encode_envelope(sign_catalogue(body, rogue.key)))
    judge.judge(takeover, None)  # nobody holds the pid yet: it is the rogue's to mint
    with pytest.raises(Rejected, match="belongs to another library"):
        judge.judge(takeover, county.public_key)
    with pytest.raises(Rejected, match="belongs to another library"):
        judge.judge(original, rogue.public_key)


def test_only_certificates_are_learned(net: TestNetwork) -> None:
    judge = authority(net)
    judge.learn(catalogue(net.libraries[COUNTY]))
    judge.learn(revocation(net, net.root.key, net.libraries[COUNTY].public_key))
    assert len(judge) == 0
    judge.learn(decode_record(net.certificates(COUNTY)[0]))
    assert len(judge) == 1
    held = judge.certificate(net.libraries[COUNTY].public_key)
    assert held is not None and held.subject.code == net.libraries[COUNTY].code


def test_verdicts_do_not_depend_on_the_order_certificates_are_learned(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    # The county is re-certified by a second city of its province, under a new code.
    city2 = new_member(net, net.libraries[PROVINCIAL].member, "p0m1", "mbz", "municipal", "110200")
    moved = certify(
        city2,
        county.member.key,
        net.network,
        name="p0m0c0",
        code="cnw",
        tier="county",
        region="110201",
    )
    first = decode_record(net.certificates(COUNTY)[0])
    second = cert_record(moved)
    record = catalogue(county)  # under its first code

    def verdict(*certs: SyncRecord) -> str:
        judge = authority(net, PROVINCIAL)
        judge.learn(cert_record(city2))
        judge.learn(decode_record(net.certificates(MUNICIPAL)[0]))
        for c in certs:
            judge.learn(c)
        try:
            judge.judge(record, None)
        except Rejected:
            return "rejected"
        return "accepted"

    assert verdict(first, second) == verdict(second, first)
