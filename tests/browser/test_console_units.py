"""The console's pure parts, without a browser: sessions (expiry, bound, logout) and alerts."""

from __future__ import annotations

from typing import Any

from node.http.console import ConsoleSessions, is_open_path
from node.http.console_api import DAY_MS, alerts


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_expires_and_logout_ends_it() -> None:
    clock = FakeClock()
    sessions = ConsoleSessions(ttl_seconds=60, clock=clock)
    a = sessions.open()
    assert sessions.valid(a) and not sessions.valid("forged") and not sessions.valid(None)
    clock.now += 59
    assert sessions.valid(a)
    clock.now += 2
    assert not sessions.valid(a)
    b = sessions.open()
    sessions.close(b)
    assert not sessions.valid(b) and len(sessions) == 0


def test_sessions_are_bounded_oldest_dropped_first() -> None:
    clock = FakeClock()
    sessions = ConsoleSessions(limit=3, clock=clock)
    opened = []
    for _ in range(5):
        opened.append(sessions.open())
        clock.now += 1
    assert len(sessions) == 3
    assert [sessions.valid(s) for s in opened] == [False, False, True, True, True]
    assert len(set(opened)) == 5 and all(len(s) >= 40 for s in opened)


def test_only_the_login_and_assets_are_open() -> None:
    assert is_open_path("/console/login") and is_open_path("/console/static/console.js")
    for path in ("/", "/console/", "/console/logout", "/admin/api/v1/status", "/console/login/x"):
        assert not is_open_path(path)


def _status(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "membership": {
            "enrolled": True,
            "certificate_problem": None,
            "certificate_expires_ms": 400 * DAY_MS,
        },
        "storage": {"used_bytes": 10, "quota_bytes": 100},
        "sync": {"enabled": True, "errors": 0},
    }
    base.update(over)
    return base


def _replication(failures: int = 0, at_risk: int = 0, below: int = 0) -> dict[str, Any]:
    return {
        "enabled": True,
        "plan": {"health": {"at_risk": at_risk, "below_policy": {"copies": below}}},
        "transfers": {"failures": [{"pid": "x", "reason": "r"}] * failures},
    }


def test_a_healthy_node_has_no_alerts() -> None:
    assert alerts(_status(), [{"state": "connected"}], _replication(), 0) == []


def test_alerts_name_what_is_wrong_most_serious_first() -> None:
    status = _status(
        membership={
            "enrolled": True,
            "certificate_problem": None,
            "certificate_expires_ms": 3 * DAY_MS,
        },
        storage={"used_bytes": 90, "quota_bytes": 100},
        sync={"errors": 2},
    )
    peers = [{"state": "failed", "name": "Gansu"}, {"state": "connected", "name": "Jiuquan"}]
    found = alerts(status, peers, _replication(failures=1, at_risk=4, below=5), 0)
    codes = [a["code"] for a in found]
    assert codes[0] == "certificate-expiring" and found[0]["level"] == "error"
    assert found[0]["params"]["days"] == 3
    assert set(codes) == {
        "certificate-expiring",
        "peers-failing",
        "storage-high",
        "resources-at-risk",
        "below-policy",
        "transfer-failures",
        "sync-errors",
    }
    by_code = {a["code"]: a for a in found}
    assert by_code["peers-failing"]["params"] == {"count": 1, "names": ["Gansu"]}
    assert by_code["resources-at-risk"]["params"] == {"count": 4}
    full = alerts(_status(storage={"used_bytes": 99, "quota_bytes": 100}), [], {}, 0)
    assert [a["code"] for a in full] == ["storage-full"]
    assert [a["code"] for a in alerts({"membership": {"enrolled": False}}, [], {}, 0)] == [
        "not-enrolled"
    ]
