"""node.http.security.AuthFailures on a fake clock: the limit, the window, the Retry-After, and
the tarpit's bound."""

from __future__ import annotations

import asyncio

from node.http.security import MAX_TARPITTED, AuthFailures


def test_past_the_limit_within_the_window_each_failure_gets_a_wait() -> None:
    now = [100.0]
    failures = AuthFailures(limit=3, window_seconds=60.0, clock=lambda: now[0])
    for step in (0.0, 10.0, 10.0):
        now[0] += step
        assert failures.failed() == 0  # at 100, 110, 120: within the limit
    now[0] = 121.0
    assert failures.failed() == 39  # three in the last minute already; the oldest leaves at 160
    now[0] = 169.5
    assert failures.failed() == 1  # 110, 120, 121 in the window: 0.5 s left, rounded up
    now[0] = 200.0
    assert failures.failed() == 0  # of the last three (120, 121, 169.5) the oldest left
    assert (failures.total, failures.over_limit) == (6, 2)


def test_failures_spread_wider_than_the_window_never_reach_the_limit() -> None:
    now = [0.0]
    failures = AuthFailures(limit=3, window_seconds=60.0, clock=lambda: now[0])
    for _ in range(20):
        assert failures.failed() == 0
        now[0] += 30.0
    assert failures.over_limit == 0


async def test_the_tarpit_holds_a_bounded_number_of_answers() -> None:
    failures = AuthFailures(tarpit_seconds=0.5)
    held = [asyncio.create_task(failures.tarpit()) for _ in range(MAX_TARPITTED)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in held)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await failures.tarpit()  # one more: answered at once, the waits do not pile up
    assert loop.time() - started < 0.2
    await asyncio.gather(*held)
