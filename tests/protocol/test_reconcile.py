"""Range-based set reconciliation: exact differences, bounded rounds and frames, strict decoding."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import DecodeError, UnsupportedVersionError, ValidationError
from protocol.reconcile import (
    DEFAULT_FRAME_SIZE_LIMIT,
    FINGERPRINT_SIZE,
    INFINITY,
    MAX_MESSAGE_BYTES,
    MAX_TIMESTAMP,
    MIN_FRAME_SIZE_LIMIT,
    RECONCILE_VERSION,
    Bound,
    Item,
    Mode,
    Range,
    ReconcileMessage,
    Reconciler,
    SortedItems,
    decode_message,
    encode_message,
    fingerprint,
    fingerprint_from_sum,
    id_sum,
)

reconcile_settings = settings(max_examples=60, deadline=None)

T0 = 1_700_000_000_000  # a plausible HLC wall time in ms


def _id(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


@dataclass
class Outcome:
    have: list[bytes]
    need: list[bytes]
    round_trips: int
    sizes: list[int]  # every message, in order

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)


def _session(
    a: list[Item], b: list[Item], limit: int = DEFAULT_FRAME_SIZE_LIMIT, max_round_trips: int = 500
) -> Outcome:
    """Run an initiator over `a` against a responder over `b` until the initiator is done."""
    initiator = Reconciler(SortedItems(a), initiator=True, frame_size_limit=limit)
    responder = Reconciler(SortedItems(b), initiator=False, frame_size_limit=limit)
    out = Outcome([], [], 0, [])
    message: bytes | None = initiator.initiate()
    while message is not None:
        assert out.round_trips < max_round_trips, "reconciliation does not end"
        out.round_trips += 1
        out.sizes.append(len(message))
        answer = responder.reconcile(message)
        assert answer.reply is not None and answer.have == answer.need == []
        out.sizes.append(len(answer.reply))
        step = initiator.reconcile(answer.reply)
        out.have += step.have
        out.need += step.need
        message = step.reply
    assert initiator.done
    assert max(out.sizes) <= limit
    return out


def _assert_exact(out: Outcome, a: list[Item], b: list[Item]) -> None:
    ids_a, ids_b = {i.id for i in a}, {i.id for i in b}
    assert set(out.have) == ids_a - ids_b
    assert set(out.need) == ids_b - ids_a
    assert len(out.have) == len(set(out.have)) and len(out.need) == len(set(out.need))


# --- strategies --------------------------------------------------------------------------------

# Few timestamps and ids sharing long prefixes, so bounds need long id prefixes to separate items.
_timestamps = st.one_of(st.integers(0, 3), st.sampled_from([T0, MAX_TIMESTAMP - 1]))
_ids = st.builds(
    lambda head, cut, tail: (head[:cut] + tail)[:32].ljust(32, b"\0"),
    st.sampled_from([bytes(32), b"\xff" * 32, bytes(range(32))]),
    st.integers(0, 32),
    st.binary(min_size=0, max_size=32),
)
_items = st.builds(Item, _timestamps, _ids)


def _unique(items: list[Item]) -> list[Item]:
    """One item per id, as for real records (the id is a hash of the whole envelope)."""
    seen: dict[bytes, Item] = {}
    for i in items:
        seen.setdefault(i.id, i)
    return list(seen.values())


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[list[Item], list[Item]]:
    """Two sets: shared items plus items on one side only (any part may be empty)."""
    pool = _unique(draw(st.lists(_items, max_size=300)))
    sides = draw(st.lists(st.sampled_from("sab"), min_size=len(pool), max_size=len(pool)))
    a = [i for i, s in zip(pool, sides, strict=True) if s in "sa"]
    b = [i for i, s in zip(pool, sides, strict=True) if s in "sb"]
    return a, b


@st.composite
def _few_differences(draw: st.DrawFn) -> tuple[list[Item], list[Item]]:
    """A large shared set with a few items missing on either side at random places."""
    n = draw(st.integers(0, 3_000))
    spacing = draw(st.sampled_from([0, 1, 1_000]))  # 0: all at one timestamp
    items = [Item(T0 + k * spacing, _id(k)) for k in range(n)]
    only_a = set(draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=8))) if n else set()
    only_b = set(draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=8))) - only_a if n else set()
    a = [i for k, i in enumerate(items) if k not in only_b]
    b = [i for k, i in enumerate(items) if k not in only_a]
    return a, b


# --- reconciliation ----------------------------------------------------------------------------


@reconcile_settings
@given(_pairs(), st.sampled_from([MIN_FRAME_SIZE_LIMIT, DEFAULT_FRAME_SIZE_LIMIT]))
def test_any_two_sets_reconcile_to_their_exact_difference(
    pair: tuple[list[Item], list[Item]], limit: int
) -> None:
    a, b = pair
    _assert_exact(_session(a, b, limit), a, b)
    _assert_exact(_session(b, a, limit), b, a)


@reconcile_settings
@given(_few_differences())
def test_few_differences_cost_few_round_trips(pair: tuple[list[Item], list[Item]]) -> None:
    a, b = pair
    out = _session(a, b)
    _assert_exact(out, a, b)
    union = len({i.id for i in a} | {i.id for i in b})
    assert out.round_trips <= 2 + 2 * math.log(max(union, 1), 16)


@reconcile_settings
@given(st.lists(_items, max_size=300).map(_unique))
def test_identical_sets_take_one_round_trip(items: list[Item]) -> None:
    out = _session(items, list(reversed(items)))
    assert (out.round_trips, out.have, out.need) == (1, [], [])


def test_disjoint_and_one_sided_sets_with_small_frames() -> None:
    a = [Item(T0 + k, _id(k)) for k in range(3_000)]
    b = [Item(T0 + k, _id(10_000 + k)) for k in range(3_000)]
    for x, y in [(a, b), (a, []), ([], a), (a, a[:1_000]), (a[1_000:], a)]:
        out = _session(x, y, MIN_FRAME_SIZE_LIMIT)
        _assert_exact(out, x, y)


@reconcile_settings
@given(st.data())
def test_any_valid_message_gets_a_valid_bounded_answer(data: st.DataObject) -> None:
    items = data.draw(st.lists(_items, max_size=100).map(_unique))
    message = data.draw(_messages())
    for initiator in (True, False):
        side = Reconciler(SortedItems(items), initiator=initiator, frame_size_limit=4_096)
        if initiator:
            side.initiate()
        try:
            step = side.reconcile(encode_message(message))
        except DecodeError:
            # Only a HAVE range can be refused: sent to a responder, or its bitmap not matching
            # the initiator's ids in the range.
            assert any(r.mode is Mode.HAVE for r in message.ranges)
            continue
        if step.reply is not None:
            assert len(step.reply) <= 4_096
            decode_message(step.reply)


def test_an_id_list_is_answered_with_have_so_each_id_crosses_once() -> None:
    items = [Item(T0 + k, _id(k)) for k in range(12)]
    ours, theirs = items[:10], items[2:12]  # 10 each, 8 shared
    initiator = Reconciler(SortedItems(ours), initiator=True)
    first = initiator.initiate()
    assert [r.mode for r in decode_message(first).ranges] == [Mode.ID_LIST]
    reply = Reconciler(SortedItems(theirs), initiator=False).reconcile(first).reply
    assert reply is not None
    (have,) = decode_message(reply).ranges
    assert have.mode is Mode.HAVE
    assert have.bitmap == bytes([0b11111100, 0b11])  # the initiator's 3rd to 10th ids
    assert have.ids == (_id(10), _id(11))
    step = initiator.reconcile(reply)
    assert (step.reply, step.have, step.need) == (None, [_id(0), _id(1)], [_id(10), _id(11)])


@pytest.mark.parametrize(
    "bitmap, ids",
    [
        (b"\xff", ()),  # 8 bits for 10 ids
        (b"\xff\xff\xff", ()),  # 24 bits for 10 ids
        (b"\xff\x07", ()),  # a bit set past the 10th
        (b"\xff\x03", (_id(0),)),  # claims we lack an id we listed
    ],
)
def test_a_have_that_does_not_match_our_list_is_a_decode_error(
    bitmap: bytes, ids: tuple[bytes, ...]
) -> None:
    initiator = Reconciler(SortedItems(Item(T0 + k, _id(k)) for k in range(10)), initiator=True)
    initiator.initiate()
    reply = ReconcileMessage((Range(INFINITY, Mode.HAVE, ids=ids, bitmap=bitmap),))
    with pytest.raises(DecodeError):
        initiator.reconcile(encode_message(reply))


def test_a_have_sent_to_a_responder_is_a_decode_error() -> None:
    message = ReconcileMessage((Range(INFINITY, Mode.HAVE, bitmap=b""),))
    with pytest.raises(DecodeError):
        Reconciler(SortedItems([]), initiator=False).reconcile(encode_message(message))


def test_calls_out_of_order_are_bugs() -> None:
    store = SortedItems([])
    responder = Reconciler(store, initiator=False)
    with pytest.raises(RuntimeError):
        responder.initiate()
    initiator = Reconciler(store, initiator=True)
    with pytest.raises(RuntimeError):
        initiator.reconcile(encode_message(ReconcileMessage(())))
    first = initiator.initiate()
    with pytest.raises(RuntimeError):
        initiator.initiate()
    assert initiator.reconcile(responder.reconcile(first).reply or b"").reply is None
    with pytest.raises(RuntimeError):
        initiator.reconcile(encode_message(ReconcileMessage(())))
    for limit in (MIN_FRAME_SIZE_LIMIT - 1, MAX_MESSAGE_BYTES + 1):
        with pytest.raises(ValueError):
            Reconciler(store, initiator=True, frame_size_limit=limit)


def test_items_and_bounds_check_their_ranges() -> None:
    for ts, id_ in [(-1, bytes(32)), (MAX_TIMESTAMP, bytes(32)), (0, bytes(31)), (True, bytes(32))]:
        with pytest.raises(ValidationError):
            Item(ts, id_)
    with pytest.raises(ValidationError):
        Bound(MAX_TIMESTAMP, b"\0")
    with pytest.raises(ValidationError):
        Bound(0, bytes(33))
    top = SortedItems([Item(MAX_TIMESTAMP - 1, b"\xff" * 32)])
    assert top.find_lower_bound(INFINITY, 0, 1) == 1  # every item lies below INFINITY


def test_storage_finds_lower_bounds_by_timestamp_then_id_prefix() -> None:
    items = [Item(5, b"\x01" + bytes(31)), Item(5, b"\x02" + bytes(31)), Item(7, bytes(32))]
    store = SortedItems(items + items[:1])  # duplicates collapse
    assert store.size() == 3
    assert [store.item(k) for k in range(3)] == items
    cases = {Bound(0): 0, Bound(5): 0, Bound(5, b"\x02"): 1, Bound(5, b"\x03"): 2, INFINITY: 3}
    for bound, index in cases.items():
        assert store.find_lower_bound(bound, 0, 3) == index


# --- fingerprints ------------------------------------------------------------------------------

_id_lists = st.lists(st.binary(min_size=32, max_size=32), max_size=50, unique=True)


@given(_id_lists, _id_lists)
def test_fingerprint_of_a_union_comes_from_its_parts(left: list[bytes], right: list[bytes]) -> None:
    combined = fingerprint_from_sum(id_sum(left) + id_sum(right), len(left) + len(right))
    assert fingerprint(left + right) == combined
    assert len(combined) == FINGERPRINT_SIZE


@given(_id_lists, st.randoms(use_true_random=False))
def test_fingerprint_ignores_order(ids: list[bytes], rnd: random.Random) -> None:
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert fingerprint(shuffled) == fingerprint(ids)


@given(st.lists(_items, max_size=60).map(_unique), st.integers(0, 60), st.integers(0, 60))
def test_storage_fingerprints_match_the_definition(items: list[Item], x: int, y: int) -> None:
    store = SortedItems(items)
    begin, end = sorted((min(x, store.size()), min(y, store.size())))
    ids = [store.item(k).id for k in range(begin, end)]
    assert store.fingerprint(begin, end) == fingerprint(ids)


def test_fingerprint_vectors() -> None:
    assert fingerprint([]) == hashlib.sha256(bytes(32) + b"\x00").digest()[:16]
    # The count is a big-endian base-128 varint; the sum wraps at 2**256.
    assert (
        fingerprint_from_sum(2**256 + 1, 128)
        == (hashlib.sha256((1).to_bytes(32, "little") + b"\x81\x00").digest()[:16])
    )
    assert fingerprint([b"\xff" * 32, (1).to_bytes(32, "little")]) == fingerprint_from_sum(0, 2)


# --- encoding ----------------------------------------------------------------------------------


@st.composite
def _messages(draw: st.DrawFn) -> ReconcileMessage:
    bounds = sorted(set(draw(st.lists(st.builds(_bound, _timestamps, _ids, st.integers(0, 32))))))
    if draw(st.booleans()):
        bounds.append(INFINITY)
    ranges = []
    for bound in bounds:
        if bound == Bound(0):
            continue
        mode = draw(st.sampled_from(Mode))
        if mode is Mode.FINGERPRINT:
            ranges.append(Range(bound, mode, fingerprint=draw(st.binary(min_size=16, max_size=16))))
        elif mode is Mode.ID_LIST:
            ranges.append(Range(bound, mode, ids=tuple(draw(_id_lists.map(lambda x: x[:5])))))
        elif mode is Mode.HAVE:
            ids = tuple(draw(_id_lists.map(lambda x: x[:5])))
            ranges.append(Range(bound, mode, ids=ids, bitmap=draw(st.binary(max_size=4))))
        else:
            ranges.append(Range(bound, mode))
    return ReconcileMessage(tuple(ranges))


def _bound(timestamp: int, id_: bytes, length: int) -> Bound:
    return Bound(timestamp, id_[:length])


@given(_messages())
def test_messages_round_trip(message: ReconcileMessage) -> None:
    assert decode_message(encode_message(message)) == message


def _raw(*ranges: list[object], version: object = RECONCILE_VERSION) -> bytes:
    return bytes(msgpack.packb([version, list(ranges)], use_bin_type=True))


_FP = bytes(16)
_MALFORMED = {
    "empty": b"",
    "not msgpack": b"\xc1",
    "trailing bytes": _raw() + b"\x00",
    "not an array": msgpack.packb({"v": 1}),
    "no ranges": msgpack.packb([RECONCILE_VERSION]),
    "ranges not an array": msgpack.packb([RECONCILE_VERSION, b""]),
    "extra field": msgpack.packb([RECONCILE_VERSION, [], 0]),
    "version not an int": msgpack.packb([True, []]),
    "absurd range count": b"\x92\x02\xdd\xff\xff\xff\xff",
    "absurd id count": _raw()[:-1] + b"\x91\x94\x01\xc4\x00\x02\xdd\x7f\xff\xff\xff",
    "range too short": _raw([1, b"", 0]),
    "delta not an int": _raw([b"", b"", 0, None]),
    "negative delta": _raw([1, b"", 0, None], [-1, b"\x01", 0, None]),
    "bounds not increasing": _raw([5, b"\x01", 0, None], [0, b"\x01", 0, None]),
    "first bound at the bottom": _raw([0, b"", 0, None]),
    "timestamp past infinity": _raw([MAX_TIMESTAMP + 1, b"", 0, None]),
    "prefix above infinity": _raw([MAX_TIMESTAMP, b"\x00", 0, None]),
    "prefix too long": _raw([1, bytes(33), 0, None]),
    "unknown mode": _raw([1, b"", 4, None]),
    "skip with payload": _raw([1, b"", 0, _FP]),
    "short fingerprint": _raw([1, b"", 1, bytes(15)]),
    "fingerprint as text": _raw([1, b"", 1, "0" * 16]),
    "id list not a list": _raw([1, b"", 2, bytes(32)]),
    "short id": _raw([1, b"", 2, [bytes(31)]]),
    "repeated id": _raw([1, b"", 2, [bytes(32), bytes(32)]]),
    "mode as bool": _raw([1, b"", True, _FP]),
    "have not a pair": _raw([1, b"", 3, [b""]]),
    "have bitmap not bytes": _raw([1, b"", 3, [0, []]]),
    "have ids not a list": _raw([1, b"", 3, [b"", bytes(32)]]),
    "have short id": _raw([1, b"", 3, [b"", [bytes(31)]]]),
    "have without payload": _raw([1, b"", 3, None]),
    "non-canonical int": b"\x92\x02\x91\x94\xcd\x00\x01\xc4\x00\x00\xc0",
    "prefix as str": _raw([1, "a", 0, None]),
}


@pytest.mark.parametrize("name", sorted(_MALFORMED))
def test_malformed_messages_are_decode_errors(name: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_message(_MALFORMED[name])
    assert type(caught.value) is DecodeError


def test_unknown_versions_are_rejected() -> None:
    for version in (0, 1, 3, 97):  # 1: before HAVE
        with pytest.raises(UnsupportedVersionError):
            decode_message(_raw(version=version))


def test_oversized_messages_are_rejected_before_parsing() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        decode_message(b"\x92\x01\xdc" + b"\x00" * MAX_MESSAGE_BYTES)


def test_every_truncation_of_a_message_is_a_decode_error() -> None:
    items = [Item(T0 + k, _id(k)) for k in range(40)]
    data = Reconciler(SortedItems(items), initiator=True).initiate()
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            decode_message(data[:n])


@given(st.binary(max_size=200))
def test_garbage_is_a_decode_error_or_a_valid_message(data: bytes) -> None:
    try:
        message = decode_message(data)
    except DecodeError:
        return
    assert encode_message(message) == data


# --- sizes (figures for issue 4's benchmark; see them with pytest -s) ---------------------------

N = 100_000


@pytest.fixture(scope="module")
def catalogue() -> list[Item]:
    """N records written 30 s apart, ending at T0."""
    return [Item(T0 - (N - k) * 30_000, _id(k)) for k in range(N)]


def test_identical_stores_of_100k_take_one_small_round_trip(catalogue: list[Item]) -> None:
    out = _session(catalogue, catalogue)
    print(f"\nidentical, {N:,} records: {out.round_trips} round trip, {out.total_bytes:,} bytes")
    assert out.round_trips == 1
    assert out.sizes[0] <= 1_024 and out.total_bytes <= 1_100


def test_1000_recent_differences_in_100k(catalogue: list[Item]) -> None:
    recent = [Item(T0 + k * 3_600, _id(N + k)) for k in range(1_000)]  # the last hour
    cases = {
        "initiator wrote them": (catalogue + recent, catalogue),
        "responder wrote them": (catalogue, catalogue + recent),
        "500 on each side": (catalogue + recent[::2], catalogue + recent[1::2]),
    }
    for name, (a, b) in cases.items():
        out = _session(a, b)
        _assert_exact(out, a, b)
        print(
            f"\n1,000 recent differences in {N:,} records, {name}:"
            f" {out.round_trips} round trips, {out.total_bytes:,} bytes"
        )
        assert out.round_trips <= 3 and out.total_bytes <= 150_000


def test_1000_random_differences_in_100k(catalogue: list[Item]) -> None:
    missing = {k * 97 + 13 for k in range(1_000)}  # spread over the whole catalogue
    b = [i for k, i in enumerate(catalogue) if k not in missing]
    out = _session(catalogue, b)
    _assert_exact(out, catalogue, b)
    print(
        f"\n1,000 random differences in {N:,} records: {out.round_trips} round trips,"
        f" {out.total_bytes:,} bytes, {out.total_bytes / 1_000:,.0f} bytes per difference"
    )
    assert out.total_bytes <= 1_500 * 1_000
