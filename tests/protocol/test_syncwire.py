"""Bodies of the catalogue-sync routes (protocol/syncwire.py): round trips, and every malformed
body refused with a ProtocolError before anything else looks at it."""

from __future__ import annotations

import contextlib
import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import DecodeError, ProtocolError, UnsupportedVersionError
from protocol.records import MAX_RECORD_BYTES
from protocol.syncwire import (
    MAX_BODY_BYTES,
    MAX_ENVELOPES,
    MAX_IDS,
    SYNCWIRE_VERSION,
    decode_envelopes,
    decode_ids,
    encode_envelopes,
    encode_ids,
)


def ids(n: int) -> list[bytes]:
    return [hashlib.sha256(b"%d" % i).digest() for i in range(n)]


def pack(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 17, MAX_IDS])
def test_ids_round_trip(n: int) -> None:
    body = encode_ids(ids(n))
    assert decode_ids(body) == ids(n)
    assert body == pack([SYNCWIRE_VERSION, ids(n)])


def test_envelopes_round_trip() -> None:
    envelopes = [b"\x95x", bytes(range(256)) * 3, b"y" * 70_000]
    assert decode_envelopes(encode_envelopes(envelopes)) == envelopes
    assert decode_envelopes(encode_envelopes([])) == []
    big = [b"z" * MAX_RECORD_BYTES]  # one record of the largest size fits in a body
    assert decode_envelopes(encode_envelopes(big)) == big


def test_encode_ids_refuses_what_decode_would() -> None:
    with pytest.raises(ValueError):
        encode_ids(ids(MAX_IDS + 1))
    with pytest.raises(ValueError):
        encode_ids([b"short"])


# --- malformed ----------------------------------------------------------------------------------

ID = ids(1)[0]

MALFORMED_IDS: dict[str, bytes] = {
    "empty": b"",
    "not msgpack": b"\xc1",
    "truncated": encode_ids(ids(3))[:-5],
    "trailing bytes": encode_ids(ids(1)) + b"\x00",
    "not an array": pack({"v": 1}),
    "a bare list": pack([ID]),
    "three fields": pack([SYNCWIRE_VERSION, [ID], []]),
    "version not an int": pack(["1", [ID]]),
    "ids not a list": pack([SYNCWIRE_VERSION, ID]),
    "an id of 31 bytes": pack([SYNCWIRE_VERSION, [ID, ID[:31]]]),
    "an id of 33 bytes": pack([SYNCWIRE_VERSION, [ID + b"\x00"]]),
    "an id as str": pack([SYNCWIRE_VERSION, ["a" * 32]]),
    "an id as int": pack([SYNCWIRE_VERSION, [7]]),
    "a nested list": pack([SYNCWIRE_VERSION, [[ID]]]),
    "too many ids": pack([SYNCWIRE_VERSION, ids(MAX_IDS + 1)]),
    "a map inside": pack([SYNCWIRE_VERSION, [{}]]),
    "a float version": pack([1.0, [ID]]),
    "over the body limit": b"\x00" * (MAX_BODY_BYTES + 1),
}

MALFORMED_ENVELOPES: dict[str, bytes] = {
    "empty": b"",
    "not msgpack": b"\xc1\xc1",
    "not an array": pack(b"x"),
    "one field": pack([SYNCWIRE_VERSION]),
    "records not a list": pack([SYNCWIRE_VERSION, b"x"]),
    "an empty record": pack([SYNCWIRE_VERSION, [b"x", b""]]),
    "a record as str": pack([SYNCWIRE_VERSION, ["x"]]),
    "a record as int": pack([SYNCWIRE_VERSION, [1]]),
    "an oversized record": pack([SYNCWIRE_VERSION, [b"x" * (MAX_RECORD_BYTES + 1)]]),
    "too many records": pack([SYNCWIRE_VERSION, [b"x"] * (MAX_ENVELOPES + 1)]),
    "over the body limit": pack([SYNCWIRE_VERSION, [b"x" * MAX_RECORD_BYTES] * 2]),
}


@pytest.mark.parametrize("case", MALFORMED_IDS)
def test_malformed_id_lists_are_refused(case: str) -> None:
    with pytest.raises(DecodeError):
        decode_ids(MALFORMED_IDS[case])


@pytest.mark.parametrize("case", MALFORMED_ENVELOPES)
def test_malformed_record_lists_are_refused(case: str) -> None:
    with pytest.raises(DecodeError):
        decode_envelopes(MALFORMED_ENVELOPES[case])


@pytest.mark.parametrize("version", [0, 2, 255, -1])
def test_other_versions_are_refused_as_unsupported(version: int) -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_ids(pack([version, [ID]]))
    with pytest.raises(UnsupportedVersionError):
        decode_envelopes(pack([version, [b"x"]]))


# Encodings msgpack decodes to an acceptable value, but not the one canonical encoding of it:
# the version as uint16 or as `true`, the list as array16, an id as str8-typed bin16.
NON_CANONICAL = {
    "version as uint16": b"\x92\xcd\x00\x01\x91\xc4\x20" + ID,
    "version as true": b"\x92\xc3\x91\xc4\x20" + ID,
    "list as array16": b"\x92\x01\xdc\x00\x01\xc4\x20" + ID,
    "id as bin16": b"\x92\x01\x91\xc5\x00\x20" + ID,
}


@pytest.mark.parametrize("case", NON_CANONICAL)
def test_non_canonical_bodies_are_refused(case: str) -> None:
    body = NON_CANONICAL[case]
    assert msgpack.unpackb(body) in ([1, [ID]], [True, [ID]])  # well-formed, decodable
    with pytest.raises(DecodeError):
        decode_ids(body)


# --- fuzzing ------------------------------------------------------------------------------------


def _decode_both(data: bytes) -> None:
    for decode in (decode_ids, decode_envelopes):
        with contextlib.suppress(ProtocolError):
            decode(data)


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_raise_nothing_but_protocol_errors(data: bytes) -> None:
    _decode_both(data)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=40)
    | st.just(ID),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=250, deadline=None)
@given(st.one_of(_values, st.tuples(st.integers(-2, 3), _values).map(list)))
def test_random_msgpack_values_raise_nothing_but_protocol_errors(value: object) -> None:
    data = pack(value)
    _decode_both(data)
    # Near misses: the body cut short or extended.
    _decode_both(data[:-1])
    _decode_both(data + b"\x90")
