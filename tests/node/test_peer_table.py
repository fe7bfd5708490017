"""The peer table's state machine, the nonce cache and the rejection counters: pure, no loop."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from node.peer.server import MAX_CALLERS_TRACKED, NonceCache, PeerProblem, Rejections
from node.peer.table import BACKOFF_MAX_MS, REJECTED_RETRY_MS, Peer, PeerTable
from protocol import httpsig
from protocol.identity import public_key_bytes

T0 = 1_750_000_000_000
INTERVAL = 30_000


def url(i: int) -> str:
    return f"http://10.0.0.{i}:8470"


def connect(table: PeerTable, u: str, now: int, node: str | None = None) -> None:
    table.succeeded(
        u,
        node_id=node or f"node-{u}",
        name="x",
        tier="county",
        region="440103",
        rtt_ms=1.5,
        now_ms=now,
        interval_ms=INTERVAL,
    )


# --- back-off -----------------------------------------------------------------------------------


def test_back_off_doubles_from_two_seconds_to_the_cap() -> None:
    table = PeerTable(8)
    table.add(url(1), "exchange", T0)
    delays = []
    for _ in range(12):
        table.failed(url(1), "unreachable", T0, jitter=0.5)  # 0.5: no jitter at all
        delays.append(table.peers[url(1)].next_attempt_ms - T0)
    assert delays == [
        2_000,
        4_000,
        8_000,
        16_000,
        32_000,
        64_000,
        128_000,
        256_000,
        *[BACKOFF_MAX_MS] * 4,
    ]
    peer = table.peers[url(1)]
    assert (peer.state, peer.failures, peer.last_error) == ("failed", 12, "unreachable")


def test_back_off_stays_capped_after_very_many_failures() -> None:
    table = PeerTable(8)
    table.add(url(1), "exchange", T0)
    table.peers[url(1)].failures = 10_000
    table.failed(url(1), "unreachable", T0, jitter=0.5)
    assert table.peers[url(1)].next_attempt_ms == T0 + BACKOFF_MAX_MS


@settings(max_examples=200)
@given(st.integers(1, 40), st.floats(0, 1, exclude_max=True))
def test_jitter_stays_within_a_quarter_of_the_delay(failures: int, jitter: float) -> None:
    table = PeerTable(8)
    table.add(url(1), "exchange", T0)
    for _ in range(failures):
        table.failed(url(1), "timed out", T0, jitter)
    base = min(2_000 * 2 ** (failures - 1), BACKOFF_MAX_MS)
    delay = table.peers[url(1)].next_attempt_ms - T0
    # ±25 % (the upper end is reached only through float rounding as jitter nears 1)
    assert 0.75 * base <= delay <= 1.25 * base


def test_jitter_extremes() -> None:
    table = PeerTable(8)
    for i, jitter in enumerate([0.0, 0.999_999]):
        table.add(url(i), "exchange", T0)
        table.failed(url(i), "timed out", T0, jitter)
    assert table.peers[url(0)].next_attempt_ms == T0 + 1_500
    assert table.peers[url(1)].next_attempt_ms == T0 + 2_499


def test_success_resets_the_back_off() -> None:
    table = PeerTable(8)
    table.add(url(1), "exchange", T0)
    for _ in range(6):
        table.failed(url(1), "unreachable", T0, 0.5)
    connect(table, url(1), T0 + 1)
    peer = table.peers[url(1)]
    assert (peer.state, peer.failures, peer.last_error) == ("connected", 0, None)
    assert peer.next_attempt_ms == T0 + 1 + INTERVAL
    table.failed(url(1), "unreachable", T0 + 2, 0.5)
    assert table.peers[url(1)].next_attempt_ms == T0 + 2 + 2_000


def test_rejected_peers_are_retried_slowly() -> None:
    table = PeerTable(8)
    table.add(url(1), "exchange", T0)
    table.rejected(url(1), "revoked", T0, node_id="abc")
    peer = table.peers[url(1)]
    assert (peer.state, peer.node_id, peer.last_error) == ("rejected", "abc", "revoked")
    assert peer.next_attempt_ms == T0 + REJECTED_RETRY_MS
    assert table.due(T0 + REJECTED_RETRY_MS - 1, set()) == []
    assert table.due(T0 + REJECTED_RETRY_MS, set()) == [peer]


def test_outcomes_for_unknown_urls_are_ignored() -> None:
    table = PeerTable(8)
    table.failed(url(1), "x", T0, 0.5)
    table.rejected(url(1), "x", T0)
    connect(table, url(1), T0)
    table.is_self(url(1), "me")
    assert table.peers == {}


# --- bound and eviction -------------------------------------------------------------------------


def test_the_table_is_bounded() -> None:
    table = PeerTable(3)
    for i in range(3):
        assert table.add(url(i), "exchange", T0) is not None
        connect(table, url(i), T0)
    # Full of healthy peers: a newcomer from exchange or discovery is turned away.
    assert table.add(url(9), "exchange", T0) is None
    assert table.add(url(9), "zeroconf", T0) is None
    assert set(table.peers) == {url(0), url(1), url(2)}


def test_a_newcomer_displaces_the_worst_failing_peer() -> None:
    table = PeerTable(3)
    for i in range(3):
        table.add(url(i), "exchange", T0)
    connect(table, url(0), T0)
    for _ in range(2):
        table.failed(url(1), "x", T0, 0.5)
    for _ in range(5):
        table.failed(url(2), "x", T0, 0.5)
    assert table.add(url(9), "exchange", T0) is not None
    assert set(table.peers) == {url(0), url(1), url(9)}
    # Then the next-worst; a peer never dialed goes last.
    assert table.add(url(8), "zeroconf", T0) is not None
    assert set(table.peers) == {url(0), url(9), url(8)}


def test_adding_a_known_url_keeps_its_entry() -> None:
    table = PeerTable(2)
    first = table.add(url(1), "exchange", T0)
    connect(table, url(1), T0)
    # Seen on our own LAN is a stronger source than hearsay: the label changes, the entry stays.
    assert table.add(url(1), "zeroconf", T0 + 5) is first
    assert first is not None and first.source == "zeroconf" and first.state == "connected"
    assert table.add(url(1), "exchange", T0 + 5) is first and first.source == "zeroconf"
    # Configuration promotes it, and a promoted peer is never evicted.
    assert table.add(url(1), "configured", T0 + 6) is first
    assert first.source == "configured"


def test_configured_peers_are_never_evicted() -> None:
    table = PeerTable(4)
    for i in range(2):
        table.add(url(i), "configured", T0)
        for _ in range(9):
            table.failed(url(i), "unreachable", T0, 0.5)  # as bad as a peer can be
    table.add(url(2), "exchange", T0)
    table.add(url(3), "zeroconf", T0)  # never dialed: the first to make room
    connect(table, url(2), T0)
    for i in range(10, 60):
        table.add(url(i), "exchange", T0)
        table.failed(url(i), "unreachable", T0, 0.5)
        assert {url(0), url(1), url(2), url(i)} == set(table.peers)
    # A configured newcomer makes room even among healthy peers, but never at a configured one's
    # expense.
    assert table.add(url(5), "configured", T0) is not None
    assert table.add(url(6), "configured", T0) is not None
    assert {url(0), url(1), url(5), url(6)} == set(table.peers)


def test_configured_peers_are_always_kept() -> None:
    # node.toml accepts max_peers from 1 and up to 64 peers.urls plus node.parent, independently.
    table = PeerTable(1)
    table.add(url(1), "configured", T0)  # the parent
    assert table.add(url(2), "configured", T0) is not None
    assert {url(1), url(2)} == set(table.peers)


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),
            st.sampled_from(["configured", "zeroconf", "exchange"]),
            st.sampled_from(["add", "connect", "fail", "reject"]),
        ),
        max_size=60,
    ),
    st.integers(1, 8),
)
def test_bound_and_configured_peers_hold_under_any_sequence(
    steps: list[tuple[int, str, str]], bound: int
) -> None:
    table = PeerTable(bound)
    configured: set[str] = set()
    for i, source, action in steps:
        u = url(i)
        if action == "add":
            peer = table.add(u, source, T0)
            if source == "configured":
                assert peer is not None
                configured.add(u)
        elif action == "connect":
            connect(table, u, T0)
        elif action == "fail":
            table.failed(u, "x", T0, 0.5)
        else:
            table.rejected(u, "x", T0)
        # The bound holds, except that configured peers are never dropped to keep it.
        assert len(table.peers) <= max(bound, len(configured))
        assert configured <= set(table.peers)
        assert all(table.peers[c].source == "configured" for c in configured)


# --- due ----------------------------------------------------------------------------------------


def test_due_puts_configured_peers_first_then_the_longest_waiting() -> None:
    table = PeerTable(16)
    table.add(url(1), "exchange", T0 - 3_000)
    table.add(url(2), "zeroconf", T0 - 5_000)
    table.add(url(3), "configured", T0 - 1_000)
    table.add(url(4), "exchange", T0 - 4_000)
    table.add(url(5), "configured", T0 - 2_000)
    table.add(url(6), "exchange", T0 + 1)  # not yet
    assert [p.url for p in table.due(T0, set())] == [url(5), url(3), url(2), url(4), url(1)]
    assert [p.url for p in table.due(T0 + 1, set())][-1] == url(6)


def test_due_excludes_busy_peers_and_itself() -> None:
    table = PeerTable(16)
    for i in range(4):
        table.add(url(i), "exchange", T0)
    table.is_self(url(0), "me")
    assert [p.url for p in table.due(T0, {url(1)})] == [url(2), url(3)]
    assert table.due(T0 + 10**9, {url(1), url(2), url(3)}) == []
    assert table.peers[url(0)].state == "self"


def test_due_respects_the_next_attempt() -> None:
    table = PeerTable(16)
    table.add(url(1), "exchange", T0)
    connect(table, url(1), T0)
    assert table.due(T0 + INTERVAL - 1, set()) == []
    assert [p.url for p in table.due(T0 + INTERVAL, set())] == [url(1)]


# --- self and addresses -------------------------------------------------------------------------

OWN_ID = "ownnode"


def test_self_detection_survives_outcomes_only_by_state() -> None:
    table = PeerTable(4)
    table.add(url(1), "zeroconf", T0)
    table.is_self(url(1), OWN_ID)
    peer = table.peers[url(1)]
    assert (peer.state, peer.node_id) == ("self", OWN_ID)
    assert table.due(T0 + 10**12, set()) == []
    table.is_self(url(9), OWN_ID)  # unknown URL: nothing happens
    assert url(9) not in table.peers


def test_learning_our_own_address_marks_it_self() -> None:
    table = PeerTable(4)
    table.learn_address(b"own", OWN_ID, (url(1), url(2)), T0, T0, OWN_ID)
    assert {p.state for p in table.peers.values()} == {"self"}
    assert table.due(T0, set()) == []


def test_learn_address_keeps_the_newest() -> None:
    table = PeerTable(4)
    table.learn_address(b"v2", "n1", (url(1),), T0 + 2, T0, OWN_ID)
    table.learn_address(b"v1", "n1", (url(1),), T0 + 1, T0, OWN_ID)  # older: ignored
    peer = table.peers[url(1)]
    assert (peer.address, peer.address_issued_ms, peer.node_id) == (b"v2", T0 + 2, "n1")
    assert peer.source == "exchange"
    table.learn_address(b"v3", "n1", (url(1), url(2)), T0 + 3, T0, OWN_ID)
    assert table.peers[url(1)].address == b"v3"
    assert table.peers[url(2)].address == b"v3"
    # The same record again is harmless.
    table.learn_address(b"v3", "n1", (url(1),), T0 + 3, T0, OWN_ID)
    assert table.peers[url(1)].address == b"v3"


def test_learn_address_skips_urls_when_the_table_is_full() -> None:
    table = PeerTable(1)
    table.add(url(1), "exchange", T0)
    connect(table, url(1), T0)
    table.learn_address(b"x", "n2", (url(2),), T0, T0, OWN_ID)
    assert set(table.peers) == {url(1)}


def test_learn_address_does_not_overwrite_a_known_node_id() -> None:
    table = PeerTable(4)
    table.add(url(1), "exchange", T0)
    connect(table, url(1), T0, node="n1")
    table.learn_address(b"a1", "n1", (url(1),), T0, T0, OWN_ID)
    assert table.peers[url(1)].node_id == "n1"
    assert table.peers[url(1)].state == "connected"


def test_addresses_passes_on_recently_seen_connected_peers_first() -> None:
    table = PeerTable(16)
    for i in range(6):
        table.learn_address(f"a{i}".encode(), f"n{i}", (url(i),), T0, T0, OWN_ID)
    for i in (2, 0, 4, 1):
        connect(table, url(i), T0 + i)
    table.failed(url(1), "x", T0 + 10, 0.5)  # no longer connected
    assert table.addresses(10) == [b"a4", b"a2", b"a0"]
    assert table.addresses(2) == [b"a4", b"a2"]
    assert table.addresses(1) == [b"a4"]


def test_addresses_are_passed_on_once() -> None:
    table = PeerTable(16)
    table.learn_address(b"both", "n1", (url(1), url(2)), T0, T0, OWN_ID)
    table.learn_address(b"other", "n3", (url(3),), T0, T0, OWN_ID)
    for i, seen in ((1, 3), (2, 2), (3, 1)):
        connect(table, url(i), T0 + seen)
    assert table.addresses(10) == [b"both", b"other"]
    assert table.addresses(2) == [b"both", b"other"]


def test_addresses_skips_peers_without_a_record() -> None:
    table = PeerTable(4)
    table.add(url(1), "configured", T0)
    connect(table, url(1), T0)
    assert table.addresses(10) == []


def test_addresses_zero_limit() -> None:
    table = PeerTable(4)
    table.learn_address(b"a1", "n1", (url(1),), T0, T0, OWN_ID)
    connect(table, url(1), T0)
    assert table.addresses(0) == []


def test_snapshot_lists_connected_first() -> None:
    table = PeerTable(4)
    for i in (3, 1, 2):
        table.add(url(i), "exchange", T0)
    connect(table, url(2), T0)
    snapshot: list[Peer] = table.snapshot()
    assert [p.url for p in snapshot] == [url(2), url(1), url(3)]


# --- nonce cache --------------------------------------------------------------------------------

WINDOW = 300


def test_a_replayed_nonce_is_refused() -> None:
    cache = NonceCache(WINDOW)
    cache.check_and_add("k1", "n1", 1_000)
    with pytest.raises(PeerProblem) as caught:
        cache.check_and_add("k1", "n1", 1_001)
    assert (caught.value.code, caught.value.status) == ("replayed-nonce", 401)
    # The same nonce from another caller, and another nonce from the same caller, are fine.
    cache.check_and_add("k2", "n1", 1_001)
    cache.check_and_add("k1", "n2", 1_001)


def test_a_nonce_is_remembered_for_twice_the_skew() -> None:
    cache = NonceCache(WINDOW)
    cache.check_and_add("k", "n", 1_000)
    with pytest.raises(PeerProblem, match="replay"):
        cache.check_and_add("k", "n", 1_000 + 2 * WINDOW - 1)
    # Long after: forgotten (the skew check refuses such an old request anyway).
    cache.check_and_add("k", "n", 1_000 + 2 * WINDOW + 1)


def test_a_nonce_outlives_every_request_that_could_carry_it() -> None:
    key = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    t0 = 1_750_000_000
    headers = httpsig.sign_request(
        key,
        method="POST",
        path="/peer/v1/hello",
        query="",
        body=b"",
        created=t0 + WINDOW,
        nonce="AAAAAAAAAAAAAAAAAAAAAA",
        to=httpsig.ANY_RECEIVER,
    )

    def receive(now: int) -> None:
        request = httpsig.parse_request(
            method="POST",
            path="/peer/v1/hello",
            query="",
            headers=headers,
            body=b"",
            now=now,
            max_skew=WINDOW,
        )
        request.verify(public_key_bytes(key))
        cache.check_and_add(request.params.keyid, request.params.nonce, now)

    cache = NonceCache(WINDOW)
    receive(t0)  # accepted: created is exactly at the edge of the skew window
    last = t0 + 2 * WINDOW  # |created - last| == WINDOW: the skew check still accepts it
    with pytest.raises(PeerProblem) as caught:
        receive(last)
    assert caught.value.code == "replayed-nonce"


def test_the_cache_is_bounded_and_refuses_rather_than_forgets() -> None:
    cache = NonceCache(WINDOW, limit=3)
    for i in range(3):
        cache.check_and_add("k", f"n{i}", 1_000 + i)
    with pytest.raises(PeerProblem) as caught:
        cache.check_and_add("k", "n3", 1_010)
    assert (caught.value.code, caught.value.status) == ("busy", 503)
    # A replay is still recognised as one when full.
    with pytest.raises(PeerProblem, match="replay"):
        cache.check_and_add("k", "n0", 1_010)
    # Once the oldest expires there is room again, and the others are still remembered.
    cache.check_and_add("k", "n3", 1_000 + 2 * WINDOW + 1)
    with pytest.raises(PeerProblem) as again:
        cache.check_and_add("k", "n1", 1_000 + 2 * WINDOW + 1)
    assert again.value.code == "replayed-nonce"


def test_a_clock_that_steps_back_never_forgets_a_live_nonce() -> None:
    cache = NonceCache(WINDOW)
    cache.check_and_add("k", "late", 2_000)
    cache.check_and_add("k", "early", 1_000)  # the clock stepped back
    with pytest.raises(PeerProblem):
        cache.check_and_add("k", "early", 1_000 + 2 * WINDOW - 1)
    with pytest.raises(PeerProblem):
        cache.check_and_add("k", "late", 2_000 + 2 * WINDOW - 1)


# --- rejections ---------------------------------------------------------------------------------


def test_rejections_count_by_caller_and_code() -> None:
    rejections = Rejections()
    rejections.add("a", "revoked")
    rejections.add("a", "revoked")
    rejections.add("a", "bad-signature")
    rejections.add("b", "expired")
    assert rejections.total("a") == 3
    assert rejections.total("b") == 1
    assert rejections.total("nobody") == 0
    assert rejections.by_code == {"revoked": 2, "bad-signature": 1, "expired": 1}
    assert rejections.by_caller["a"]["revoked"] == 2


def test_rejections_track_a_bounded_number_of_callers() -> None:
    rejections = Rejections()
    for i in range(MAX_CALLERS_TRACKED + 500):
        rejections.add(f"10.0.{i // 256}.{i % 256}", "invalid-chain")
    assert len(rejections.by_caller) == MAX_CALLERS_TRACKED + 1
    assert rejections.total("(others)") == 500
    assert rejections.by_code["invalid-chain"] == MAX_CALLERS_TRACKED + 500
    # Callers already tracked keep counting on their own.
    rejections.add("10.0.0.0", "expired")
    assert rejections.total("10.0.0.0") == 2
    rejections.add("203.0.113.9", "expired")
    assert rejections.total("(others)") == 501
