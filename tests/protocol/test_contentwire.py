"""Bodies of the chunk peer route (protocol/contentwire.py): a canonical request, a shape-checked
and bounded answer."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.contentwire import (
    MAX_ANSWER_BYTES,
    MAX_CHUNKS,
    decode_chunk_request,
    decode_chunks,
    encode_chunk_request,
    encode_chunks,
)
from protocol.errors import DecodeError, ProtocolError, UnsupportedVersionError
from protocol.records import CHUNK_SIZE

digests_st = st.lists(st.binary(min_size=32, max_size=32), max_size=40)


def digest(n: int) -> bytes:
    return hashlib.sha256(b"%d" % n).digest()


def pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


# --- requests ------------------------------------------------------------------------------------


PID = "ark:99999/6209821k7jf25w8k"


def test_request_round_trip_and_layout() -> None:
    ds = [digest(i) for i in range(3)]
    body = encode_chunk_request(PID, ds, 1 << 20)
    assert body == pack([1, PID, 1 << 20, ds])
    assert decode_chunk_request(body) == (PID, ds, 1 << 20)
    assert decode_chunk_request(encode_chunk_request(PID, [], 1)) == (PID, [], 1)


def test_request_max_bytes_is_capped() -> None:
    body = encode_chunk_request(PID, [digest(0)], MAX_ANSWER_BYTES * 4)
    assert decode_chunk_request(body) == (PID, [digest(0)], MAX_ANSWER_BYTES)
    big = encode_chunk_request(PID, [], (1 << 64) - 1)
    assert decode_chunk_request(big)[2] == MAX_ANSWER_BYTES


def test_request_of_the_most_digests_and_longest_pid_fits_its_bound() -> None:
    ds = [digest(i) for i in range(MAX_CHUNKS)]
    body = encode_chunk_request("界" * 256, ds, MAX_ANSWER_BYTES)
    assert decode_chunk_request(body)[1] == ds


def test_encoder_refuses_too_many_or_malformed_digests_or_no_pid() -> None:
    with pytest.raises(ValueError):
        encode_chunk_request(PID, [digest(i) for i in range(MAX_CHUNKS + 1)], 1)
    for bad in (b"\x00" * 31, b"\x00" * 33, b""):
        with pytest.raises(ValueError):
            encode_chunk_request(PID, [digest(0), bad], 1)
    for pid in ("", "x" * 257):
        with pytest.raises(ValueError):
            encode_chunk_request(pid, [digest(0)], 1)


@pytest.mark.parametrize(
    "value",
    [
        [1, PID, 100],
        [1, PID, 100, [], 0],
        {"v": 1},
        [1, PID, 0, []],  # max_bytes must be positive
        [1, PID, -5, []],
        [1, PID, True, []],
        [1, PID, 1.5, []],
        [1, PID, "100", []],
        [1, PID, 100, b"not a list"],
        [1, PID, 100, [b"\x00" * 31]],
        [1, PID, 100, [b"\x00" * 33]],
        [1, PID, 100, ["x" * 32]],
        [1, PID, 100, [[b"\x00" * 32]]],
        [1, "", 100, []],  # no pid
        [1, "x" * 257, 100, []],
        [1, PID.encode(), 100, []],
        [1, 100, []],  # the layout before pids
        [True, PID, 100, []],
        ["1", PID, 100, []],
        7,
    ],
)
def test_malformed_requests_are_refused(value: object) -> None:
    with pytest.raises(DecodeError):
        decode_chunk_request(pack(value))


def test_unknown_request_version_is_typed() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_chunk_request(pack([2, PID, 100, []]))


def test_request_with_too_many_digests_is_refused() -> None:
    body = pack([1, PID, 100, [digest(i) for i in range(MAX_CHUNKS + 1)]])
    with pytest.raises(DecodeError):
        decode_chunk_request(body)
    # Past the byte bound, refused before parsing.
    with pytest.raises(DecodeError, match="too large"):
        decode_chunk_request(pack([1, PID, 100, [digest(0)] * (MAX_CHUNKS + 40)]))


def test_non_canonical_requests_are_refused() -> None:
    canonical = encode_chunk_request(PID, [digest(1)], 100)
    wide_int = canonical.replace(b"\x64", b"\xcc\x64", 1)  # 100 as uint 8
    assert msgpack.unpackb(wide_int) == msgpack.unpackb(canonical)
    with pytest.raises(DecodeError, match="canonical"):
        decode_chunk_request(wide_int)
    bin16 = canonical.replace(b"\xc4\x20", b"\xc5\x00\x20", 1)
    assert msgpack.unpackb(bin16) == msgpack.unpackb(canonical)
    with pytest.raises(DecodeError, match="canonical"):
        decode_chunk_request(bin16)
    array16 = b"\xdc\x00\x04" + canonical[1:]
    assert msgpack.unpackb(array16) == msgpack.unpackb(canonical)
    with pytest.raises(DecodeError, match="canonical"):
        decode_chunk_request(array16)
    with pytest.raises(DecodeError):
        decode_chunk_request(canonical + b"\x00")


@settings(max_examples=100, deadline=None)
@given(ds=digests_st, max_bytes=st.integers(1, (1 << 64) - 1))
def test_property_request_round_trip(ds: list[bytes], max_bytes: int) -> None:
    assert decode_chunk_request(encode_chunk_request(PID, ds, max_bytes)) == (
        PID,
        ds,
        min(max_bytes, MAX_ANSWER_BYTES),
    )


@settings(max_examples=300, deadline=None)
@given(ds=digests_st, max_bytes=st.integers(1, 1 << 40), data=st.data())
def test_property_any_byte_flip_of_a_request_is_refused_or_decodes_to_another_request(
    ds: list[bytes], max_bytes: int, data: st.DataObject
) -> None:
    """Digest and pid bytes carry no check (a flipped digest asks for another chunk, a flipped
    pid for another resource); anything else flipped is refused, and whatever decodes
    re-encodes to exactly the bytes given."""
    body = encode_chunk_request(PID, ds, max_bytes)
    where = data.draw(st.integers(0, len(body) - 1))
    damaged = bytearray(body)
    damaged[where] ^= data.draw(st.integers(1, 255))
    try:
        pid, got, capped = decode_chunk_request(bytes(damaged))
    except ProtocolError:
        return
    version, raw_pid, raw_max, raw_digests = msgpack.unpackb(bytes(damaged))
    assert (version, raw_pid, raw_digests) == (1, pid, got)
    assert capped == min(raw_max, MAX_ANSWER_BYTES)
    assert pack([1, raw_pid, raw_max, got]) == bytes(damaged)
    assert got != ds or raw_max != max_bytes or pid != PID


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.binary(max_size=40)
    | st.text(max_size=5) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200) | msgpack_values.map(pack))
def test_property_arbitrary_bodies_raise_only_decode_errors(data: bytes) -> None:
    """Whatever a peer sends, decoding returns a valid value or raises DecodeError."""
    try:
        pid, ds, max_bytes = decode_chunk_request(data)
    except DecodeError:
        pass
    else:
        assert pid and all(len(d) == 32 for d in ds) and 0 < max_bytes <= MAX_ANSWER_BYTES
    try:
        chunks = decode_chunks(data, MAX_CHUNKS)
    except DecodeError:
        pass
    else:
        assert all(type(c) is bytes for c in chunks)


# --- answers -------------------------------------------------------------------------------------


def test_answer_round_trip_and_layout() -> None:
    chunks = [b"alpha", b"", b"\x00" * 1000]
    body = encode_chunks(chunks)
    assert body == pack([1, chunks])
    assert decode_chunks(body, 3) == chunks
    assert decode_chunks(body, 10) == chunks  # a prefix: fewer than asked is fine
    assert decode_chunks(encode_chunks([]), 0) == []


def test_answer_with_more_chunks_than_asked_is_refused() -> None:
    with pytest.raises(DecodeError, match="more chunks"):
        decode_chunks(encode_chunks([b"a", b"b"]), 1)


def test_a_full_size_chunk_fits_and_a_larger_one_does_not() -> None:
    full = b"\x5a" * CHUNK_SIZE
    assert decode_chunks(encode_chunks([full]), 1) == [full]
    with pytest.raises(DecodeError):
        decode_chunks(encode_chunks([full + b"!"]), 1)


def test_answer_byte_bound() -> None:
    chunks = [b"\x01" * CHUNK_SIZE] * 17  # 17 MiB > MAX_ANSWER_BYTES + slack
    with pytest.raises(DecodeError, match="too large"):
        decode_chunks(encode_chunks(chunks), 17)
    sixteen = [b"\x01" * CHUNK_SIZE] * 16
    assert len(decode_chunks(encode_chunks(sixteen), 16)) == 16


def test_unknown_answer_version_is_typed() -> None:
    """As for requests (and every envelope, HOUSE-STYLE 4): an unknown version is its own error."""
    with pytest.raises(UnsupportedVersionError):
        decode_chunks(pack([2, [b"chunk"]]), 1)


def test_encoder_refuses_a_max_bytes_its_decoder_refuses() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError):
            encode_chunk_request(PID, [digest(0)], bad)


@pytest.mark.parametrize(
    "value",
    [
        [1],
        [1, [], 0],
        [2, []],
        [True, []],
        [1.0, []],
        [1, b"chunk"],
        [1, ["text"]],
        [1, [[b"nested"]]],
        [1, [1]],
        [1, [None]],
        {"a": 1},
        b"bytes",
        None,
    ],
)
def test_malformed_answers_are_refused(value: object) -> None:
    with pytest.raises(DecodeError):
        decode_chunks(pack(value), 10)


def test_truncated_or_extended_answers_are_refused() -> None:
    body = encode_chunks([b"alpha", b"beta"])
    for cut in range(len(body)):
        with pytest.raises(DecodeError):
            decode_chunks(body[:cut], 2)
    with pytest.raises(DecodeError):
        decode_chunks(body + b"\xc0", 2)


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_chunks(b"\x91" * 100_000 + b"\x90", 2)


def test_ext_types_are_refused() -> None:
    body = b"\x92\x01\x91" + msgpack.packb(msgpack.ExtType(1, b"xx"))
    with pytest.raises(DecodeError):
        decode_chunks(body, 2)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=30))
def test_property_answer_round_trip(chunks: list[bytes]) -> None:
    assert decode_chunks(encode_chunks(chunks), len(chunks)) == chunks
    if chunks:
        with pytest.raises(DecodeError):
            decode_chunks(encode_chunks(chunks), len(chunks) - 1)
