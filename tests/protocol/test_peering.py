"""Peering messages: signed address records, peer URLs and the hello exchange."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import (
    DecodeError,
    ProtocolError,
    SignatureError,
    UnsupportedVersionError,
    ValidationError,
)
from protocol.membership import MAX_CHAIN, Revocation, sign_revocation
from protocol.peering import (
    KIND_ADDRESS,
    MAX_ADDRESSES,
    MAX_HELLO_BYTES,
    MAX_REVOCATIONS,
    AddressRecord,
    HelloMessage,
    decode_address,
    decode_hello,
    derive_session,
    encode_hello,
    sign_address,
    validate_peer_url,
    x25519_public,
)
from protocol.records import SignedRecord, canonical_pack, decode_envelope, encode_envelope

from .membership_strategies import (
    COUNTY_CHAIN,
    GUANGZHOU,
    LIWAN,
    NET,
    NOW,
    OTHER_NET,
    signed_by,
)

URL = "http://10.44.1.3:8470"
ADDRESS = AddressRecord(NET, LIWAN.public, (URL, "https://[fd00:44::3]:8443"), NOW)


def _body(address: AddressRecord) -> list[object]:
    return [1, address.network, address.node, list(address.urls), address.issued_ms]


# --- peer URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://10.1.2.3:8470", "http://10.1.2.3:8470"),
        ("http://10.1.2.3:8470/", "http://10.1.2.3:8470"),
        ("https://library.example.cn", "https://library.example.cn"),
        ("https://library.example.cn/", "https://library.example.cn"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://h:65535", "http://h:65535"),
        ("http://[::1]:8470", "http://[::1]:8470"),
        ("http://[::1]:8470/", "http://[::1]:8470"),
        ("http://[fd00:44::3]", "http://[fd00:44::3]"),
        ("http://[::ffff:10.1.2.3]:80", "http://[::ffff:10.1.2.3]:80"),
        ("http://node-7.lan", "http://node-7.lan"),
    ],
)
def test_peer_urls_accepted(url: str, canonical: str) -> None:
    assert validate_peer_url(url) == canonical
    assert validate_peer_url(canonical) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "",
        "10.1.2.3:8470",
        "ftp://10.1.2.3",
        "HTTP://10.1.2.3",
        "http://",
        "http:///",
        "http://10.1.2.3:0",
        "http://10.1.2.3:65536",
        "http://10.1.2.3:99999",
        "http://10.1.2.3:123456",
        "http://10.1.2.3:",
        "http://10.1.2.3:http",
        "http://10.1.2.3:8470//",
        "http://10.1.2.3:8470/peer",
        "http://10.1.2.3:8470/peer/v1/",
        "http://10.1.2.3/?x=1",
        "http://10.1.2.3#frag",
        "http://user@10.1.2.3",
        "http://user:pw@10.1.2.3:8470",
        "http://::1:8470",
        "http://[::1",
        "http://[fe80::1%eth0]:8470",
        "http://[]:8470",
        "http://lib rary.cn",
        "http://图书馆.cn",
        "http://10.1.2.3:8470\n",
        " http://10.1.2.3:8470",
        "http://" + "a" * 254,
        "http://" + "a." * 125 + "cn:8470" + "/" * 2,
    ],
)
def test_peer_urls_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        validate_peer_url(url)


def test_peer_url_length_is_bounded() -> None:
    longest = "http://" + ".".join(["a" * 63] * 3 + ["a"] * 29)  # DNS labels ≤ 63
    assert len(longest) == 256
    assert validate_peer_url(longest) == longest
    with pytest.raises(ValidationError):
        validate_peer_url(longest + "a")  # the host is still under 253 characters


# --- address records ----------------------------------------------------------------------------


def test_address_round_trip() -> None:
    signed = sign_address(ADDRESS, LIWAN.key)
    assert signed.kind == KIND_ADDRESS
    assert signed.signer == LIWAN.public
    wired = decode_envelope(encode_envelope(signed))
    assert wired == signed
    assert decode_address(wired) == ADDRESS


def test_address_wire_layout_is_fixed() -> None:
    assert msgpack.unpackb(sign_address(ADDRESS, LIWAN.key).body) == _body(ADDRESS)


def test_a_node_signs_only_its_own_address() -> None:
    with pytest.raises(SignatureError):
        sign_address(ADDRESS, GUANGZHOU.key)


def test_someone_elses_address_is_refused() -> None:
    # Guangzhou signs (validly) a record claiming to be Liwan's address.
    body = canonical_pack(_body(ADDRESS))
    with pytest.raises(SignatureError):
        decode_address(signed_by(KIND_ADDRESS, body, GUANGZHOU.key))
    # ... or names Liwan as signer with its own signature.
    forged = dataclasses.replace(signed_by(KIND_ADDRESS, body, GUANGZHOU.key), signer=LIWAN.public)
    with pytest.raises(SignatureError):
        decode_address(forged)


@pytest.mark.parametrize(
    "change",
    [
        {"urls": ()},
        {"urls": tuple(f"http://10.0.0.{i}" for i in range(5))},
        {"urls": ("http://10.1.2.3:8470/",)},  # valid, but not canonical
        {"urls": ("http://10.1.2.3:8470/peer",)},
        {"urls": ("10.1.2.3:8470",)},
        {"network": "NET"},
        {"network": NET + "a"},
        {"node": b"\x00" * 31},
        {"issued_ms": -1},
        {"issued_ms": 2**48},
        {"issued_ms": True},
    ],
    ids=str,
)
def test_address_invariants(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(ADDRESS, **change)  # type: ignore[arg-type]


def test_four_urls_are_fine() -> None:
    urls = tuple(f"http://10.0.0.{i}:8470" for i in range(4))
    record = dataclasses.replace(ADDRESS, urls=urls)
    assert decode_address(sign_address(record, LIWAN.key)) == record


def test_a_signed_non_canonical_url_is_refused() -> None:
    body = canonical_pack([1, NET, LIWAN.public, [URL + "/"], NOW])
    with pytest.raises(ValidationError):
        decode_address(signed_by(KIND_ADDRESS, body, LIWAN.key))


def test_an_address_body_that_is_not_canonical_is_refused() -> None:
    body = canonical_pack(_body(ADDRESS))
    assert body[:2] == b"\x95\x01"
    for variant in (
        b"\x95\xcd\x00\x01" + body[2:],  # version as uint16
        b"\xdc\x00\x05" + body[1:],  # array16 for a short array
        body + b"\x00",
    ):
        with pytest.raises(DecodeError):
            decode_address(signed_by(KIND_ADDRESS, variant, LIWAN.key))


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [1, NET, LIWAN.public, [URL]],
        [1, NET, LIWAN.public, [URL], NOW, 0],
        [1, NET, LIWAN.public, URL, NOW],
        [1, NET, LIWAN.public, [URL.encode()], NOW],
        [1, NET, LIWAN.public, [[URL]], NOW],
        [1, NET.encode(), LIWAN.public, [URL], NOW],
        [1, NET, LIWAN.public.hex(), [URL], NOW],
        [1, NET, LIWAN.public, [URL], float(NOW)],
        [True, NET, LIWAN.public, [URL], NOW],
        "address",
    ],
)
def test_an_address_body_of_the_wrong_shape_is_refused(fields: object) -> None:
    body = msgpack.packb(fields, use_bin_type=True)
    with pytest.raises(DecodeError) as caught:
        decode_address(signed_by(KIND_ADDRESS, body, LIWAN.key))
    assert type(caught.value) is DecodeError


def test_an_address_of_another_version_or_kind_is_refused() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_address(signed_by(KIND_ADDRESS, canonical_pack([2, *_body(ADDRESS)[1:]]), LIWAN.key))
    body = canonical_pack(_body(ADDRESS))
    with pytest.raises(UnsupportedVersionError):
        decode_address(signed_by("certificate", body, LIWAN.key))


def test_a_tampered_address_is_refused() -> None:
    signed = sign_address(ADDRESS, LIWAN.key)
    body = signed.body.replace(b"10.44.1.3", b"10.66.6.6")
    with pytest.raises(SignatureError):
        decode_address(dataclasses.replace(signed, body=body))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_change_of_any_byte_of_an_address_is_rejected(data: st.DataObject) -> None:
    envelope = bytearray(encode_envelope(sign_address(ADDRESS, LIWAN.key)))
    position = data.draw(st.integers(0, len(envelope) - 1), label="position")
    envelope[position] ^= data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(ProtocolError):
        decode_address(decode_envelope(bytes(envelope)))


# --- hello --------------------------------------------------------------------------------------

OWN = sign_address(ADDRESS, LIWAN.key)
OTHER = sign_address(
    AddressRecord(NET, GUANGZHOU.public, ("http://10.44.1.1:8470",), NOW), GUANGZHOU.key
)
REVOKED = sign_revocation(
    Revocation(NET, LIWAN.public, GUANGZHOU.public, NOW, "retired"), GUANGZHOU.key
)
HELLO = HelloMessage(NET, COUNTY_CHAIN, OWN, (OTHER,), (REVOKED,))


def _hello_fields(hello: HelloMessage = HELLO) -> list[object]:
    return [
        1,
        hello.network,
        [encode_envelope(r) for r in hello.chain],
        encode_envelope(hello.address),
        [encode_envelope(r) for r in hello.peers],
        [encode_envelope(r) for r in hello.revocations],
        hello.session_key,
    ]


def test_hello_round_trip() -> None:
    data = encode_hello(HELLO)
    assert decode_hello(data) == HELLO
    assert msgpack.unpackb(data) == _hello_fields()
    bare = HelloMessage(NET, COUNTY_CHAIN[2:], OWN)
    assert decode_hello(encode_hello(bare)) == bare


def test_a_hello_at_its_bounds_round_trips() -> None:
    full = HelloMessage(
        NET, COUNTY_CHAIN, OWN, (OTHER,) * MAX_ADDRESSES, (REVOKED,) * MAX_REVOCATIONS
    )
    data = encode_hello(full)
    assert len(data) <= MAX_HELLO_BYTES
    assert decode_hello(data) == full


@pytest.mark.parametrize(
    "change",
    [
        {"chain": ()},
        {"chain": (*COUNTY_CHAIN, COUNTY_CHAIN[0])},
        {"peers": (OTHER,) * (MAX_ADDRESSES + 1)},
        {"revocations": (REVOKED,) * (MAX_REVOCATIONS + 1)},
        {"network": "x"},
        {"network": NET.upper()},
    ],
    ids=lambda c: ",".join(f"{k}:{len(v)}" for k, v in c.items()),
)
def test_hello_bounds(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(HELLO, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (2, [encode_envelope(COUNTY_CHAIN[0])] * (MAX_CHAIN + 1)),
        (4, [encode_envelope(OTHER)] * (MAX_ADDRESSES + 1)),
        (5, [encode_envelope(REVOKED)] * (MAX_REVOCATIONS + 1)),
    ],
    ids=["chain", "peers", "revocations"],
)
def test_a_hello_with_too_many_records_is_refused(index: int, value: list[bytes]) -> None:
    fields = _hello_fields()
    fields[index] = value
    with pytest.raises(DecodeError):
        decode_hello(canonical_pack(fields))


def test_an_oversized_hello_is_refused_before_parsing() -> None:
    data = encode_hello(HELLO)
    padded = data + b"\x00" * (MAX_HELLO_BYTES + 1 - len(data))
    with pytest.raises(DecodeError, match="larger"):
        decode_hello(padded)


def test_a_hello_without_a_chain_or_of_a_bad_network_is_refused() -> None:
    fields = _hello_fields()
    fields[2] = []
    with pytest.raises(ValidationError):
        decode_hello(canonical_pack(fields))
    fields = _hello_fields()
    fields[1] = "x"
    with pytest.raises(ValidationError):
        decode_hello(canonical_pack(fields))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda f: f[:-1],
        lambda f: [*f, []],
        lambda f: [True, *f[1:]],
        lambda f: [f[0], f[1].encode(), *f[2:]],
        lambda f: [*f[:2], f[2][0], *f[3:]],  # a single envelope where a list belongs
        lambda f: [*f[:3], [f[3]], *f[4:]],  # a list where the single envelope belongs
        lambda f: [*f[:4], ["peer"], f[5]],
        lambda f: [*f[:5], [1]],
        lambda f: [*f[:3], b"not an envelope", *f[4:]],
        lambda f: [*f[:2], [b"\x95"], *f[3:]],
        lambda f: "hello",
    ],
)
def test_a_hello_of_the_wrong_shape_is_refused(mangle: object) -> None:
    assert callable(mangle)
    with pytest.raises(DecodeError):
        decode_hello(msgpack.packb(mangle(_hello_fields()), use_bin_type=True))


def test_a_hello_of_another_version_is_refused() -> None:
    fields = _hello_fields()
    fields[0] = 2
    with pytest.raises(UnsupportedVersionError):
        decode_hello(canonical_pack(fields))


def test_hello_only_frames_its_records() -> None:
    # The records inside are envelope-checked only: a forged one parses, and fails when verified.
    forged = dataclasses.replace(OTHER, signature=bytes(64))
    hello = decode_hello(encode_hello(dataclasses.replace(HELLO, peers=(forged,))))
    assert hello.peers == (forged,)
    with pytest.raises(SignatureError):
        decode_address(hello.peers[0])
    # A hello of another network parses too: checking it against ours is the caller's business.
    foreign = decode_hello(encode_hello(dataclasses.replace(HELLO, network=OTHER_NET)))
    assert foreign.network == OTHER_NET


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_hello_decoder(data: bytes) -> None:
    try:
        hello = decode_hello(data)
    except ProtocolError:
        return
    assert isinstance(hello.address, SignedRecord)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_change_of_any_byte_of_a_hello_never_crashes(data: st.DataObject) -> None:
    encoded = bytearray(encode_hello(HELLO))
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    encoded[position] ^= data.draw(st.integers(1, 255), label="mask")
    with contextlib.suppress(ProtocolError):
        decode_hello(bytes(encoded))


# --- sessions -----------------------------------------------------------------------------------


def test_a_session_offer_round_trips_and_is_bounded() -> None:
    offer = x25519_public(X25519PrivateKey.generate())
    hello = dataclasses.replace(HELLO, session_key=offer)
    assert decode_hello(encode_hello(hello)).session_key == offer
    with pytest.raises(ValidationError):
        dataclasses.replace(HELLO, session_key=offer[:31])


def test_both_ends_derive_the_same_session_and_nobody_else_does() -> None:
    client, server, eve = (X25519PrivateKey.generate() for _ in range(3))
    c_offer, s_offer = x25519_public(client), x25519_public(server)
    ids = {"client": b"c" * 32, "server": b"s" * 32}
    mine = derive_session(client, s_offer, client_offer=c_offer, server_offer=s_offer, **ids)
    theirs = derive_session(server, c_offer, client_offer=c_offer, server_offer=s_offer, **ids)
    assert mine == theirs and len(mine.secret) == 32 and len(mine.id) == 26
    # Another key, other node keys or swapped roles give another session.
    assert derive_session(eve, s_offer, client_offer=c_offer, server_offer=s_offer, **ids) != mine
    swapped = {"client": ids["server"], "server": ids["client"]}
    assert (
        derive_session(client, s_offer, client_offer=c_offer, server_offer=s_offer, **swapped)
        != mine
    )
    with pytest.raises(ValidationError):
        derive_session(client, bytes(32), client_offer=c_offer, server_offer=bytes(32), **ids)
