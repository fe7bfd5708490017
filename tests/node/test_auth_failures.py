"""node.http.security.AuthFailures on a fake clock: the limit, the window, and the refusals."""

from __future__ import annotations

from node.http.security import AuthFailures


def test_a_full_window_refuses_until_its_oldest_failure_leaves() -> None:
    now = [100.0]
    failures = AuthFailures(limit=3, window_seconds=60.0, clock=lambda: now[0])
    for step in (0.0, 10.0, 10.0):
        now[0] += step
        assert failures.retry_after() == 0
        failures.failed()
    # failures at 100, 110, 120: the window is full until 160
    assert failures.retry_after() == 40
    now[0] = 159.2
    assert failures.retry_after() == 1  # rounded up, never 0 while refused
    now[0] = 160.0
    assert failures.retry_after() == 0
    failures.failed()  # 110, 120, 160: full again until 170
    assert failures.retry_after() == 10
    assert failures.refused == 3


def test_failures_spread_wider_than_the_window_never_refuse() -> None:
    now = [0.0]
    failures = AuthFailures(limit=3, window_seconds=60.0, clock=lambda: now[0])
    for _ in range(20):
        assert failures.retry_after() == 0
        failures.failed()
        now[0] += 30.0
    assert failures.refused == 0
