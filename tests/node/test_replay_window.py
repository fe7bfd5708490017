"""Session replay protection: numbered requests, a sliding window, out-of-order within it."""

from __future__ import annotations

import pytest

from node.peer.server import (
    REPLAY_WINDOW,
    PeerProblem,
    ReplayWindow,
    session_counter,
    session_nonce,
)


def test_each_number_is_accepted_once_in_any_order_within_the_window() -> None:
    window = ReplayWindow()
    for n in (1, 3, 2, 10, 4, 9):
        window.check_and_add(n)
    for n in (1, 2, 3, 4, 9, 10):
        with pytest.raises(PeerProblem) as caught:
            window.check_and_add(n)
        assert caught.value.code == "replayed-nonce"
    window.check_and_add(5)  # never seen: still in the window


def test_numbers_older_than_the_window_are_refused() -> None:
    window = ReplayWindow()
    window.check_and_add(1)
    window.check_and_add(REPLAY_WINDOW + 5)
    with pytest.raises(PeerProblem, match="too old"):
        window.check_and_add(5)  # never seen, but beyond what is remembered
    window.check_and_add(6)  # exactly at the edge: remembered, so still decidable
    with pytest.raises(PeerProblem):
        window.check_and_add(6)


def test_a_big_jump_forgets_everything_below_the_window() -> None:
    window = ReplayWindow()
    window.check_and_add(7)
    window.check_and_add(10**12)
    assert window.seen == 1 and window.highest == 10**12
    with pytest.raises(PeerProblem):
        window.check_and_add(7)


@pytest.mark.parametrize("nonce", ["1", "0" * 20, "x" * 20, "-" + "1" * 19, "1" * 21])
def test_a_session_nonce_is_a_positive_twenty_digit_number(nonce: str) -> None:
    with pytest.raises(PeerProblem) as caught:
        session_counter(nonce)
    assert caught.value.code == "malformed-signature"


def test_session_nonces_round_trip() -> None:
    for n in (1, 42, 10**19):
        assert session_counter(session_nonce(n)) == n
