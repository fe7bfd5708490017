"""Range-based set reconciliation (the negentropy approach): the pure core of anti-entropy.

Two nodes each hold a set of items, an item being (timestamp ms, 32-byte id) — for siku a record's
HLC wall time and the SHA-256 of its signed envelope — ordered by (timestamp, id). They exchange
fingerprints of ranges of that order, split only the ranges whose fingerprints differ, and swap
id lists once a range is small, so the bytes exchanged grow with the difference, not the sets.
After A. Meyer, "Range-Based Set Reconciliation", and D. Hoyte's negentropy protocol v1.

Message (canonical msgpack, built only by `encode_message`):

    [RECONCILE_VERSION, [range, ...]]
    range = [timestamp_delta, id_prefix, mode, payload]

Each range is [upper bound of the range before it, its own upper bound); the first starts at the
bottom of the order, and whatever lies above the last range is skipped. An upper bound is
(timestamp, id_prefix): `timestamp_delta` is its timestamp minus the previous upper bound's (the
first's minus 0), `id_prefix` is 0–32 bytes, just long enough to separate the items on either side
of it. An item (t, id) lies below bound (bt, p) iff (t, id) < (bt, p), bytes compared
lexicographically. (MAX_TIMESTAMP, b"") is INFINITY, above every item.

    mode             payload
    0 SKIP           nil               nothing to do in this range
    1 FINGERPRINT    bin 16            the sender's fingerprint of its items in the range
    2 ID_LIST        [bin 32, ...]     every id the sender holds in the range, in item order
    3 HAVE           [bitmap, [bin 32, ...]]
                                       the responder's answer to an initiator's ID_LIST: bit i
                                       (byte i // 8, value 1 << i % 8) is set iff the responder
                                       holds the i-th id of that list; bitmap is ceil(k / 8)
                                       bytes for k listed ids, unused bits 0. Then the ids the
                                       responder holds in the range that the list lacks. So each
                                       id crosses once, not once each way.

Fingerprint of a range: SHA-256(S || varint(n))[:16], where S is the sum of the n ids as
little-endian 256-bit integers mod 2**256 (32 bytes little-endian) and varint is base 128,
most significant group first, high bit set on all but the last byte. The sum is associative and
order-free, so a store keeps prefix sums and fingerprints any range in O(1). A sum is not
collision-resistant against chosen ids; ids here are hashes of signed envelopes, not free choices.

Roles and states:
- Initiator: NEW --initiate()--> WAITING --reconcile(reply)--> WAITING (returns the next message)
  or DONE (returns no message). Only the initiator learns the difference: `have` (ids it holds
  that the peer lacks) and `need` (ids the peer holds that it lacks).
- Responder: stateless. Each `reconcile(message)` returns a reply and no ids, so the server end
  of an exchange keeps no session between requests.

The first message covers the initiator's whole set: BRANCHING FINGERPRINT ranges of equal counts,
the newest of them halved again and again until it holds 2–4 × ID_LIST_THRESHOLD items (one
ID_LIST if the set holds fewer than ID_LIST_THRESHOLD). It stays under 1 KB for realistic stores,
well within MIN_FRAME_SIZE_LIMIT.

Each side answers each incoming range from its own items in it: SKIP → nothing; a FINGERPRINT
equal to its own → nothing; a different one → its items split into BRANCHING FINGERPRINT ranges of
near-equal counts, or one ID_LIST when it holds fewer than ID_LIST_THRESHOLD items; an ID_LIST →
the initiator records the difference and says nothing, the responder replies HAVE (or, if that
does not fit, its own ID_LIST, cut as below); a HAVE → the initiator records the difference and
says nothing (only an initiator accepts HAVE, and only with a bitmap as long as its own id list
in that range).

Invariants:
- Upper bounds strictly increase within a message, so ranges are disjoint and every item of
  either side lies in exactly one range (or above the last, where both sides already agree).
- A range leaves the conversation only when both sides hold the same items in it (equal
  fingerprints, barring a 2**-128 collision) or once the initiator has compared both id lists:
  when the initiator returns no message, its `have` and `need` are the whole difference.
- No message is longer than the sender's `frame_size_limit`. When the next range's answer would
  not fit, the sender stops and ends the message with one FINGERPRINT range from there to
  INFINITY; a responder's ID_LIST that does not fit is cut between two items the same way. Every
  message answers at least its first open range, so the lowest open range keeps moving up and
  the conversation ends.
- A message that was cut short can make ranges already compared come back (inside the closing
  range); the initiator reports each id in `have` or `need` once per session regardless.
- Decoding is strict: a decoded `ReconcileMessage` satisfies all of the above, and its bytes are
  exactly what `encode_message` produces.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import NamedTuple, Protocol

from protocol.errors import DecodeError, UnsupportedVersionError, ValidationError
from protocol.records import canonical_pack, canonical_unpack

__all__ = [
    "BRANCHING",
    "DEFAULT_FRAME_SIZE_LIMIT",
    "FINGERPRINT_SIZE",
    "ID_LIST_THRESHOLD",
    "ID_SIZE",
    "INFINITY",
    "MAX_FRAME_SIZE_LIMIT",
    "MAX_MESSAGE_BYTES",
    "MAX_TIMESTAMP",
    "MIN_FRAME_SIZE_LIMIT",
    "RECONCILE_VERSION",
    "Bound",
    "Item",
    "Mode",
    "Range",
    "ReconcileMessage",
    "ReconcileStep",
    "Reconciler",
    "SortedItems",
    "Storage",
    "decode_message",
    "encode_message",
    "fingerprint",
    "fingerprint_from_sum",
    "id_sum",
]

RECONCILE_VERSION = 2  # 2: HAVE answers an ID_LIST
ID_SIZE = 32
FINGERPRINT_SIZE = 16
MAX_TIMESTAMP = 2**48  # item timestamps lie below it; INFINITY's timestamp
BRANCHING = 16  # sub-ranges a differing range is split into
# Fewer items than this: send ids, not fingerprints. At least BRANCHING, so every split range
# holds an item; equal to it, because a dense difference (every tenth of the newest 10,000 of
# 1,000,000 missing) then costs ~10 % fewer bytes and spread ones ~5 % fewer than at
# 2 × BRANCHING, for at most one more round trip on a single difference (tests/bench/sync.py).
ID_LIST_THRESHOLD = BRANCHING

# Bounds on message sizes. We never send more than our frame_size_limit and accept up to
# MAX_MESSAGE_BYTES from a peer, whatever limit it chose.
DEFAULT_FRAME_SIZE_LIMIT = 60_000
MIN_FRAME_SIZE_LIMIT = 4_096  # room for any one range's answer, so every message progresses
MAX_FRAME_SIZE_LIMIT = 1 << 20
MAX_MESSAGE_BYTES = MAX_FRAME_SIZE_LIMIT

_SUM_MODULUS = 2**256


# --- items, bounds, fingerprints ----------------------------------------------------------------


@dataclass(frozen=True, order=True, slots=True)
class Item:
    """One element of a reconciled set, ordered by (timestamp, id)."""

    timestamp: int
    id: bytes

    def __post_init__(self) -> None:
        if type(self.timestamp) is not int or not 0 <= self.timestamp < MAX_TIMESTAMP:
            raise ValidationError(f"item timestamp must be in [0, 2**48), got {self.timestamp!r}")
        if type(self.id) is not bytes or len(self.id) != ID_SIZE:
            raise ValidationError(f"item id must be {ID_SIZE} bytes")


@dataclass(frozen=True, order=True, slots=True)
class Bound:
    """A point in the item order; a range's items are those at or above its lower bound and
    below its upper bound."""

    timestamp: int
    id_prefix: bytes = b""

    def __post_init__(self) -> None:
        if type(self.timestamp) is not int or not 0 <= self.timestamp <= MAX_TIMESTAMP:
            raise ValidationError(f"bound timestamp must be in [0, 2**48], got {self.timestamp!r}")
        if type(self.id_prefix) is not bytes or len(self.id_prefix) > ID_SIZE:
            raise ValidationError(f"bound id prefix must be at most {ID_SIZE} bytes")
        if self.timestamp == MAX_TIMESTAMP and self.id_prefix:
            raise ValidationError("no bound lies above INFINITY")


MIN_BOUND = Bound(0)
INFINITY = Bound(MAX_TIMESTAMP)


def _separating_bound(below: Item, above: Item) -> Bound:
    """The shortest bound b with below < b <= above (below < above)."""
    if below.timestamp != above.timestamp:
        return Bound(above.timestamp)
    shared = 0
    while below.id[shared] == above.id[shared]:
        shared += 1
    return Bound(above.timestamp, above.id[: shared + 1])


def _varint(n: int) -> bytes:
    groups = [n & 0x7F]
    n >>= 7
    while n:
        groups.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(groups))


def id_sum(ids: Iterable[bytes]) -> int:
    """Sum of ids as little-endian integers mod 2**256: add sums of disjoint parts to combine."""
    return sum(int.from_bytes(i, "little") for i in ids) % _SUM_MODULUS


def fingerprint_from_sum(total: int, count: int) -> bytes:
    """The 16-byte fingerprint of `count` ids whose `id_sum` is `total` (mod 2**256)."""
    data = (total % _SUM_MODULUS).to_bytes(32, "little") + _varint(count)
    return hashlib.sha256(data).digest()[:FINGERPRINT_SIZE]


def fingerprint(ids: Iterable[bytes]) -> bytes:
    """The fingerprint of a set of ids (order does not matter)."""
    listed = list(ids)
    return fingerprint_from_sum(id_sum(listed), len(listed))


class Storage(Protocol):
    """What reconciliation needs of a node's store: a sorted, duplicate-free view of its items."""

    def size(self) -> int: ...

    def item(self, index: int) -> Item: ...

    def find_lower_bound(self, bound: Bound, begin: int, end: int) -> int:
        """The first index in [begin, end) whose item is not below `bound`, else `end`."""
        ...

    def fingerprint(self, begin: int, end: int) -> bytes:
        """`fingerprint` of the ids of the items at indices [begin, end)."""
        ...


class SortedItems:
    """An in-memory `Storage` with prefix sums (tests, the simulator, small stores)."""

    def __init__(self, items: Iterable[Item]) -> None:
        self._build(sorted((i.timestamp, i.id) for i in items))

    @classmethod
    def of_keys(cls, keys: Iterable[tuple[int, bytes]]) -> SortedItems:
        """From (timestamp, id) pairs as a database returns them, trusted to be in range (no
        Item is built per pair: at a million items that alone costs seconds)."""
        self = cls.__new__(cls)
        self._build(sorted(keys))
        return self

    def _build(self, keys: list[tuple[int, bytes]]) -> None:
        self._keys = [k for n, k in enumerate(keys) if n == 0 or keys[n - 1] != k]
        self._sums = [0]
        total = 0
        for _, id_ in self._keys:
            total = (total + int.from_bytes(id_, "little")) % _SUM_MODULUS
            self._sums.append(total)

    def size(self) -> int:
        return len(self._keys)

    def item(self, index: int) -> Item:
        return Item(*self._keys[index])

    def find_lower_bound(self, bound: Bound, begin: int, end: int) -> int:
        return bisect_left(self._keys, (bound.timestamp, bound.id_prefix), begin, end)

    def fingerprint(self, begin: int, end: int) -> bytes:
        return fingerprint_from_sum(self._sums[end] - self._sums[begin], end - begin)


# --- messages -----------------------------------------------------------------------------------


class Mode(IntEnum):
    SKIP = 0
    FINGERPRINT = 1
    ID_LIST = 2
    HAVE = 3


@dataclass(frozen=True, slots=True)
class Range:
    """One range of a message: up to `upper` from the previous range's upper bound."""

    upper: Bound
    mode: Mode
    fingerprint: bytes = b""  # FINGERPRINT only
    ids: tuple[bytes, ...] = ()  # ID_LIST and HAVE only
    bitmap: bytes = b""  # HAVE only

    def __post_init__(self) -> None:
        if self.mode is Mode.FINGERPRINT:
            if type(self.fingerprint) is not bytes or len(self.fingerprint) != FINGERPRINT_SIZE:
                raise ValidationError(f"a fingerprint is {FINGERPRINT_SIZE} bytes")
        elif self.fingerprint:
            raise ValidationError("only a FINGERPRINT range carries a fingerprint")
        if self.mode is Mode.HAVE:
            if type(self.bitmap) is not bytes:
                raise ValidationError("a bitmap is bytes")
        elif self.bitmap:
            raise ValidationError("only a HAVE range carries a bitmap")
        if self.mode in (Mode.ID_LIST, Mode.HAVE):
            if any(type(i) is not bytes or len(i) != ID_SIZE for i in self.ids):
                raise ValidationError(f"an id is {ID_SIZE} bytes")
            if len(set(self.ids)) != len(self.ids):
                raise ValidationError("an id list repeats an id")
        elif self.ids:
            raise ValidationError("only an ID_LIST or HAVE range carries ids")


@dataclass(frozen=True, slots=True)
class ReconcileMessage:
    ranges: tuple[Range, ...]

    def __post_init__(self) -> None:
        previous = MIN_BOUND
        for r in self.ranges:
            if not r.upper > previous:
                raise ValidationError("range bounds must strictly increase")
            previous = r.upper


def _wire_range(r: Range, previous_timestamp: int) -> list[object]:
    payload: object = None
    if r.mode is Mode.FINGERPRINT:
        payload = r.fingerprint
    elif r.mode is Mode.ID_LIST:
        payload = list(r.ids)
    elif r.mode is Mode.HAVE:
        payload = [r.bitmap, list(r.ids)]
    return [r.upper.timestamp - previous_timestamp, r.upper.id_prefix, int(r.mode), payload]


def encode_message(message: ReconcileMessage) -> bytes:
    wire = []
    previous = 0
    for r in message.ranges:
        wire.append(_wire_range(r, previous))
        previous = r.upper.timestamp
    return canonical_pack([RECONCILE_VERSION, wire])


def decode_message(data: bytes) -> ReconcileMessage:
    """Parse and check a peer's message; raises DecodeError or UnsupportedVersionError."""
    if type(data) is not bytes:
        raise DecodeError("a reconcile message is bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"reconcile message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    f = canonical_unpack(data, "reconcile message")
    if not (isinstance(f, list) and f and type(f[0]) is int):
        raise DecodeError("reconcile message has the wrong shape")
    if f[0] != RECONCILE_VERSION:
        raise UnsupportedVersionError(f"reconcile message version {f[0]!r}")
    if len(f) != 2 or not isinstance(f[1], list):
        raise DecodeError("reconcile message has the wrong shape")
    ranges = []
    timestamp = 0
    try:
        for w in f[1]:
            if not (
                isinstance(w, list)
                and len(w) == 4
                and type(w[0]) is int
                and type(w[1]) is bytes
                and type(w[2]) is int
            ):
                raise DecodeError("reconcile range has the wrong shape")
            delta, prefix, mode, payload = w
            if delta < 0:
                raise DecodeError("range bounds must strictly increase")
            timestamp += delta
            upper = Bound(timestamp, prefix)
            if mode == Mode.SKIP and payload is None:
                ranges.append(Range(upper, Mode.SKIP))
            elif mode == Mode.FINGERPRINT and type(payload) is bytes:
                ranges.append(Range(upper, Mode.FINGERPRINT, fingerprint=payload))
            elif mode == Mode.ID_LIST and isinstance(payload, list):
                ranges.append(Range(upper, Mode.ID_LIST, ids=tuple(payload)))
            elif (
                mode == Mode.HAVE
                and isinstance(payload, list)
                and len(payload) == 2
                and type(payload[0]) is bytes
                and isinstance(payload[1], list)
            ):
                ranges.append(Range(upper, Mode.HAVE, ids=tuple(payload[1]), bitmap=payload[0]))
            else:
                raise DecodeError(f"reconcile range of unknown mode {mode!r} or wrong payload")
        message = ReconcileMessage(tuple(ranges))
    except ValidationError as e:
        raise DecodeError(f"invalid reconcile message: {e.message}") from e
    if encode_message(message) != data:
        raise DecodeError("reconcile message is not in canonical form")
    return message


# Exact msgpack sizes, so a message is cut before it outgrows the frame, not after.
def _int_size(n: int) -> int:
    return 1 if n < 0x80 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 2**32 else 9


def _bin_size(n: int) -> int:
    return n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)


def _array_header_size(n: int) -> int:
    return 1 if n < 16 else 3 if n < 0x10000 else 5


def _range_size(r: Range, previous_timestamp: int) -> int:
    size = 2 + _int_size(r.upper.timestamp - previous_timestamp) + _bin_size(len(r.upper.id_prefix))
    if r.mode is Mode.SKIP:
        return size + 1
    if r.mode is Mode.FINGERPRINT:
        return size + _bin_size(FINGERPRINT_SIZE)
    if r.mode is Mode.HAVE:
        size += 1 + _bin_size(len(r.bitmap))
    return size + _array_header_size(len(r.ids)) + len(r.ids) * _bin_size(ID_SIZE)


_ENVELOPE_SIZE = 2 + _array_header_size(2**32 - 1)  # outer array, version, largest ranges header
_MAX_SKIP_SIZE = _range_size(Range(Bound(MAX_TIMESTAMP - 1, bytes(ID_SIZE)), Mode.SKIP), 0)
_MAX_REST_SIZE = _range_size(Range(INFINITY, Mode.FINGERPRINT, fingerprint=bytes(16)), 0)
_ID_SIZE_ON_WIRE = _bin_size(ID_SIZE)


def _have_range(incoming: Range, ours: list[bytes]) -> Range:
    """The responder's HAVE answer to an initiator's ID_LIST, given our ids in its range."""
    mine = set(ours)
    bitmap = bytearray((len(incoming.ids) + 7) // 8)
    for n, i in enumerate(incoming.ids):
        if i in mine:
            bitmap[n // 8] |= 1 << n % 8
    theirs = set(incoming.ids)
    extra = tuple(i for i in ours if i not in theirs)
    return Range(incoming.upper, Mode.HAVE, ids=extra, bitmap=bytes(bitmap))


# --- the state machine --------------------------------------------------------------------------


class ReconcileStep(NamedTuple):
    """What one incoming message yields: the reply to send (None once the initiator is done),
    ids we hold that the peer lacks, and ids the peer holds that we lack."""

    reply: bytes | None
    have: list[bytes]
    need: list[bytes]


class _Writer:
    """An outgoing message under construction, kept within the frame size limit."""

    def __init__(self, limit: int) -> None:
        self.ranges: list[Range] = []
        self._budget = limit - _ENVELOPE_SIZE - _MAX_SKIP_SIZE - _MAX_REST_SIZE
        self._last = MIN_BOUND

    def _lead(self, lower: Bound) -> list[Range]:
        """The SKIP needed before a range that starts at `lower`, if any."""
        return [] if lower == self._last else [Range(lower, Mode.SKIP)]

    def _cost(self, ranges: Sequence[Range]) -> int:
        cost, timestamp = 0, self._last.timestamp
        for r in ranges:
            cost += _range_size(r, timestamp)
            timestamp = r.upper.timestamp
        return cost

    def room(self, lower: Bound) -> int:
        """Bytes left for ranges starting at `lower` (keeping room to close the message)."""
        return self._budget - self._cost(self._lead(lower))

    def try_add(self, lower: Bound, ranges: Sequence[Range]) -> bool:
        """Append `ranges` (covering `lower` up to their last bound) if they fit."""
        added = [*self._lead(lower), *ranges]
        cost = self._cost(added)
        if cost > self._budget:
            return False
        self._budget -= cost
        self.ranges += added
        self._last = added[-1].upper
        return True

    def close(self, lower: Bound, rest: bytes) -> None:
        """End the message with one FINGERPRINT range from `lower` to INFINITY (room is kept)."""
        self.ranges += [*self._lead(lower), Range(INFINITY, Mode.FINGERPRINT, fingerprint=rest)]
        self._last = INFINITY


class Reconciler:
    """One side of a reconciliation session over `storage` (see the module docstring).

    `storage` must not change during the session. Errors: DecodeError / UnsupportedVersionError
    for a peer's bad message (end the session and count it against the peer); RuntimeError for
    calls out of order (a bug)."""

    def __init__(
        self,
        storage: Storage,
        *,
        initiator: bool,
        frame_size_limit: int = DEFAULT_FRAME_SIZE_LIMIT,
    ) -> None:
        if not MIN_FRAME_SIZE_LIMIT <= frame_size_limit <= MAX_FRAME_SIZE_LIMIT:
            raise ValueError(
                f"frame_size_limit must be in [{MIN_FRAME_SIZE_LIMIT}, {MAX_FRAME_SIZE_LIMIT}]"
            )
        self._storage = storage
        self._initiator = initiator
        self._limit = frame_size_limit
        self._state = "new" if initiator else "responder"
        # A range already compared can be fingerprinted again after a message was cut short, so
        # the initiator remembers what it reported and reports each id once per session.
        self._reported: set[bytes] = set()

    @property
    def done(self) -> bool:
        return self._state == "done"

    def initiate(self) -> bytes:
        """The first message: the initiator's whole set, split."""
        if self._state != "new":
            raise RuntimeError(f"initiate() on a reconciler in state {self._state!r}")
        self._state = "waiting"
        size = self._storage.size()
        if size < ID_LIST_THRESHOLD:
            return encode_message(ReconcileMessage(tuple(self._split(0, size, INFINITY))))
        # BRANCHING ranges of equal counts, the newest of them halved again and again down to
        # 2–4 × ID_LIST_THRESHOLD items (any lower costs a round trip when the responder holds
        # many newer items the initiator lacks): peers mostly differ in what was written last
        # (gossip still on its way), and this finds those differences a round or two sooner.
        cuts = [size * n // BRANCHING for n in range(BRANCHING + 1)]
        newest = size - cuts[-2]
        while newest >= 4 * ID_LIST_THRESHOLD:
            newest //= 2
            cuts.insert(-1, size - newest)
        return encode_message(ReconcileMessage(tuple(self._fingerprints(cuts, INFINITY))))

    def reconcile(self, message: bytes) -> ReconcileStep:
        """Answer a peer's message. A responder always replies; an initiator replies None when
        the difference is complete."""
        if self._state not in ("waiting", "responder"):
            raise RuntimeError(f"reconcile() on a reconciler in state {self._state!r}")
        incoming = decode_message(message)
        writer = _Writer(self._limit)
        have: list[bytes] = []
        need: list[bytes] = []
        self._answer(incoming, writer, have, need)
        if self._initiator and not writer.ranges:
            self._state = "done"
            return ReconcileStep(None, have, need)
        return ReconcileStep(encode_message(ReconcileMessage(tuple(writer.ranges))), have, need)

    def _answer(
        self, incoming: ReconcileMessage, writer: _Writer, have: list[bytes], need: list[bytes]
    ) -> None:
        storage = self._storage
        size = storage.size()
        lower_index, lower = 0, MIN_BOUND
        for r in incoming.ranges:
            upper_index = storage.find_lower_bound(r.upper, lower_index, size)
            answer: list[Range] = []
            if r.mode is Mode.FINGERPRINT:
                if storage.fingerprint(lower_index, upper_index) != r.fingerprint:
                    answer = self._split(lower_index, upper_index, r.upper)
            elif r.mode is Mode.ID_LIST:
                if not self._initiator and (
                    upper_index - lower_index
                ) * _ID_SIZE_ON_WIRE > writer.room(lower):
                    # Our answer cannot fit: cut it at once, without listing every id in the
                    # range (a 17-byte message naming the whole set would cost O(N) here).
                    self._cut_id_list(writer, lower, lower_index, upper_index)
                    return
                ours = [storage.item(i).id for i in range(lower_index, upper_index)]
                if self._initiator:
                    theirs, mine = set(r.ids), set(ours)
                    missing = [i for i in r.ids if i not in mine]
                    self._compare(ours, [i in theirs for i in ours], missing, have, need)
                elif not writer.try_add(lower, [_have_range(r, ours)]):
                    self._cut_id_list(writer, lower, lower_index, upper_index)
                    return
            elif r.mode is Mode.HAVE:
                if not self._initiator:
                    raise DecodeError("a HAVE range sent to a responder")
                ours = [storage.item(i).id for i in range(lower_index, upper_index)]
                if len(r.bitmap) != (len(ours) + 7) // 8 or (
                    len(ours) % 8 and r.bitmap[-1] >> len(ours) % 8
                ):
                    raise DecodeError("a HAVE bitmap does not match our id list in its range")
                held = [bool(r.bitmap[n // 8] >> n % 8 & 1) for n in range(len(ours))]
                if not set(ours).isdisjoint(r.ids):
                    raise DecodeError("a HAVE range lists an id we sent")
                self._compare(ours, held, r.ids, have, need)
            if answer and not writer.try_add(lower, answer):
                writer.close(lower, storage.fingerprint(lower_index, size))
                return
            lower_index, lower = upper_index, r.upper

    def _compare(
        self,
        ours: list[bytes],
        held: Sequence[bool],
        missing: Iterable[bytes],
        have: list[bytes],
        need: list[bytes],
    ) -> None:
        """Record a range's difference: `held[n]` says whether the peer holds `ours[n]`;
        `missing` are ids the peer holds that we lack (the initiator only)."""
        seen = self._reported
        new_have = [i for i, h in zip(ours, held, strict=True) if not h and i not in seen]
        new_need = [i for i in missing if i not in seen]
        have += new_have
        need += new_need
        seen.update(new_have, new_need)

    def _cut_id_list(self, writer: _Writer, lower: Bound, begin: int, end: int) -> None:
        """Send as many of our ids in [begin, end) as fit, then the rest as one fingerprint."""
        storage = self._storage
        # Room for the range's own bound, mode and a list header, at their largest.
        fits = (writer.room(lower) - _MAX_SKIP_SIZE - 5) // _ID_SIZE_ON_WIRE
        count = min(max(fits, 0), end - begin - 1)
        if count > 0:
            cut = _separating_bound(storage.item(begin + count - 1), storage.item(begin + count))
            ids = tuple(storage.item(i).id for i in range(begin, begin + count))
            added = writer.try_add(lower, [Range(cut, Mode.ID_LIST, ids=ids)])
            assert added, "the id list was sized to fit"
            lower, begin = cut, begin + count
        writer.close(lower, storage.fingerprint(begin, storage.size()))

    def _split(self, begin: int, end: int, upper: Bound) -> list[Range]:
        """Our items in [begin, end), below `upper`: BRANCHING fingerprints, or few enough ids."""
        storage = self._storage
        count = end - begin
        if count < ID_LIST_THRESHOLD:
            ids = tuple(storage.item(i).id for i in range(begin, end))
            return [Range(upper, Mode.ID_LIST, ids=ids)]
        per, extra = divmod(count, BRANCHING)
        cuts = [begin + n * per + min(n, extra) for n in range(BRANCHING + 1)]
        return self._fingerprints(cuts, upper)

    def _fingerprints(self, cuts: list[int], upper: Bound) -> list[Range]:
        """FINGERPRINT ranges of our items between consecutive (increasing) `cuts`; the last
        range ends at `upper`."""
        storage = self._storage
        ranges = []
        for start, stop in pairwise(cuts):
            bound = (
                upper
                if stop == cuts[-1]
                else _separating_bound(storage.item(stop - 1), storage.item(stop))
            )
            ranges.append(
                Range(bound, Mode.FINGERPRINT, fingerprint=storage.fingerprint(start, stop))
            )
        return ranges
