"""Catalogue authorities named by the network policy may edit any library's records; nobody
else may, and an edit never changes whose record it is."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.hlc import Hlc
from protocol.records import CatalogueRecord, LangString, encode_envelope, sign_catalogue
from sync.authority import Authority, Rejected
from sync.records import decode_record
from tests.sync.netbuild import NAAN, TestNetwork, catalogue_record


def _edit(
    envelope: bytes, signer_key: Ed25519PrivateKey, *, title: str, origin: bytes | None = None
) -> bytes:
    record = decode_record(envelope).body
    assert isinstance(record, CatalogueRecord)
    edited = CatalogueRecord(
        pid=record.pid,
        origin=origin or record.origin,
        version=Hlc(record.version.wall_ms + 1),
        dc={"title": (LangString(title, "zh"),)},
    )
    return encode_envelope(sign_catalogue(edited, signer_key, delegated=True))


@pytest.fixture
def net() -> TestNetwork:
    return TestNetwork.build(1, 1, 1)


def _authority(net: TestNetwork, *authorities: str) -> Authority:
    authority = Authority(net.root.public_key, net.network, NAAN, frozenset(authorities))
    for envelope in net.all_certificates():
        authority.learn(decode_record(envelope))
    return authority


def test_a_named_authority_may_edit_another_librarys_record(net: TestNetwork) -> None:
    national, county = net.libraries[0], net.libraries[3]
    original = catalogue_record(county, int(time.time() * 1000))
    edit = decode_record(_edit(original, national.member.key, title="校正题名"))
    _authority(net, national.node_id).judge(edit, held_origin=county.public_key)


def test_anyone_else_may_not(net: TestNetwork) -> None:
    provincial, county = net.libraries[1], net.libraries[3]
    original = catalogue_record(county, int(time.time() * 1000))
    edit = decode_record(_edit(original, provincial.member.key, title="擅改"))
    with pytest.raises(Rejected, match="neither its library nor a catalogue authority"):
        _authority(net, net.libraries[0].node_id).judge(edit, held_origin=county.public_key)


def test_an_authority_cannot_change_whose_record_it_is(net: TestNetwork) -> None:
    national, municipal, county = net.libraries[0], net.libraries[2], net.libraries[3]
    original = catalogue_record(county, int(time.time() * 1000))
    moved = decode_record(
        _edit(original, national.member.key, title="改属", origin=municipal.public_key)
    )
    with pytest.raises(Rejected):
        _authority(net, national.node_id).judge(moved, held_origin=county.public_key)
