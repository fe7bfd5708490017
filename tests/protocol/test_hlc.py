"""Hybrid logical clock: monotonic under bad wall clocks, past everything it has seen."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.hlc import MAX_COUNTER, MAX_WALL_MS, Hlc, receive, tick

from .strategies import hlcs

# Wall clock readings, including ones that stand still and go backwards.
_readings = st.lists(
    st.one_of(
        st.integers(0, MAX_WALL_MS - 1),
        st.sampled_from([0, 1, 1_700_000_000_000, 1_700_000_000_001]),
    ),
    min_size=1,
    max_size=50,
)


@given(hlcs.filter(lambda h: h.wall_ms < MAX_WALL_MS), _readings)
def test_tick_is_strictly_monotonic_whatever_the_wall_clock_does(
    start: Hlc, readings: list[int]
) -> None:
    last = start
    for now in readings:
        nxt = tick(last, now)
        assert nxt > last
        assert nxt.wall_ms >= now
        last = nxt


@given(hlcs, st.integers(0, MAX_WALL_MS))
def test_tick_follows_wall_time_when_it_moves_forward(last: Hlc, now: int) -> None:
    if now > last.wall_ms:
        assert tick(last, now) == Hlc(now, 0)
    elif last.counter < MAX_COUNTER:
        assert tick(last, now) == Hlc(last.wall_ms, last.counter + 1)


def test_a_clock_that_stands_still_counts_then_borrows_a_millisecond() -> None:
    now = 1_700_000_000_000
    h = tick(Hlc(0), now)
    assert h == Hlc(now, 0)
    seen = [h]
    for _ in range(MAX_COUNTER + 3):
        h = tick(h, now)
        seen.append(h)
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert seen[MAX_COUNTER] == Hlc(now, MAX_COUNTER)
    assert seen[MAX_COUNTER + 1] == Hlc(now + 1, 0)
    assert seen[-1] == Hlc(now + 1, 2)
    # When the wall clock catches up with the borrowed millisecond, it continues from there.
    assert tick(seen[-1], now + 1) == Hlc(now + 1, 3)
    assert tick(seen[-1], now + 2) == Hlc(now + 2, 0)


def test_counter_overflow_on_a_clock_that_went_backwards() -> None:
    assert tick(Hlc(1_000, MAX_COUNTER), 5) == Hlc(1_001, 0)
    assert tick(Hlc(1_000, MAX_COUNTER - 1), 5) == Hlc(1_000, MAX_COUNTER)


def test_the_end_of_time_is_an_error_not_a_wraparound() -> None:
    with pytest.raises(ValueError, match="out of range"):
        tick(Hlc(MAX_WALL_MS, MAX_COUNTER), 0)
    with pytest.raises(ValueError, match="out of range"):
        tick(Hlc(0), MAX_WALL_MS + 1)


@given(hlcs, hlcs, st.integers(0, MAX_WALL_MS))
def test_receive_is_past_both_inputs(last: Hlc, remote: Hlc, now: int) -> None:
    if max(last, remote) >= Hlc(MAX_WALL_MS, MAX_COUNTER):
        return
    got = receive(last, remote, now)
    assert got > last
    assert got > remote
    assert got.wall_ms >= now
    assert got == tick(max(last, remote), now)


@pytest.mark.parametrize(
    ("last", "remote", "now", "expected"),
    [
        (Hlc(10, 5), Hlc(20, 7), 15, Hlc(20, 8)),  # remote ahead of both
        (Hlc(20, 7), Hlc(10, 5), 15, Hlc(20, 8)),  # local ahead
        (Hlc(10, 5), Hlc(10, 9), 10, Hlc(10, 10)),  # same millisecond: the larger counter wins
        (Hlc(10, 5), Hlc(20, 7), 30, Hlc(30, 0)),  # wall clock ahead of everything
        (Hlc(10, 5), Hlc(20, MAX_COUNTER), 3, Hlc(21, 0)),
    ],
)
def test_receive_examples(last: Hlc, remote: Hlc, now: int, expected: Hlc) -> None:
    assert receive(last, remote, now) == expected


def test_ordering_is_by_wall_time_then_counter() -> None:
    assert Hlc(1, MAX_COUNTER) < Hlc(2, 0)
    assert Hlc(2, 0) < Hlc(2, 1)
    assert Hlc(5, 3) == Hlc(5, 3)
    assert sorted([Hlc(2, 1), Hlc(1, 9), Hlc(2, 0), Hlc(1, 0)]) == [
        Hlc(1, 0),
        Hlc(1, 9),
        Hlc(2, 0),
        Hlc(2, 1),
    ]
    assert max(Hlc(3, 0), Hlc(2, 99)) == Hlc(3, 0)
    assert str(Hlc(1_700_000_000_000, 42)) == "1700000000000.42"
    assert Hlc(7) == Hlc(7, 0)


@given(hlcs, hlcs)
def test_order_agrees_with_the_tuple_order(a: Hlc, b: Hlc) -> None:
    assert (a < b) == ((a.wall_ms, a.counter) < (b.wall_ms, b.counter))
    assert (a == b) == ((a.wall_ms, a.counter) == (b.wall_ms, b.counter))


@pytest.mark.parametrize(
    ("wall", "counter"),
    [(-1, 0), (MAX_WALL_MS + 1, 0), (0, -1), (0, MAX_COUNTER + 1)],
)
def test_out_of_range_values_are_refused(wall: int, counter: int) -> None:
    Hlc(max(0, min(wall, MAX_WALL_MS)), max(0, min(counter, MAX_COUNTER)))
    with pytest.raises(ValueError, match="out of range"):
        Hlc(wall, counter)
