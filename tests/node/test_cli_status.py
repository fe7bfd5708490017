"""node.cli_status.render: what `siku status` prints for what the daemon says (pure)."""

from __future__ import annotations

import re
from typing import Any

from node.cli_status import ALERT_TEXT, ATTENTION_ROWS, render
from tests.conftest import ROOT

NOW = 1_780_000_000.0


def _daemon_status(**extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "node": {"id": "n1", "name": "甘肃省图书馆 Gansu", "code": "gs", "tier": "provincial"},
        "counts": {"records": 12, "deleted": 1, "files": 30, "content_bytes": 5 << 20},
        "storage": {"used_bytes": 1 << 30, "quota_bytes": 4 << 30},
        "uptime_seconds": 3600.5,
        "daemon": {"running": True},
        "parent_node": None,
        "children": [
            {"node_id": "c1", "name": "酒泉 Jiuquan", "state": "connected"},
            {"node_id": "c2", "name": "敦煌 Dunhuang", "state": "failed"},
        ],
        "alerts": [],
    }
    status.update(extra)
    return status


def _row(name: str, **status: Any) -> dict[str, Any]:
    st = {
        "fresh": True,
        "age_s": 30,
        "held_resources": 4,
        "used_bytes": 1 << 20,
        "quota_bytes": 1 << 30,
        "free_bytes": (1 << 30) - (1 << 20),
        "sync_behind": 0,
        "oldest_verified_s": 1_770_000_000,
        "full": False,
    }
    st.update(status)
    return {
        "node_id": name,
        "name": name,
        "tier": "county",
        "region": "620921",
        "online": True,
        "status": st,
    }


def _lines(status: dict[str, Any], every_node: bool = False) -> list[str]:
    return render(
        status, home="/h", public_url="http://127.0.0.1:8470", every_node=every_node, now=NOW
    )


def test_identity_children_and_no_alerts() -> None:
    lines = _lines(_daemon_status())
    assert lines[0] == "甘肃省图书馆 Gansu  (provincial, code gs)"
    assert "  children  2 (1 connected): 酒泉 Jiuquan, 敦煌 Dunhuang" in lines
    assert "  health    no alerts" in lines
    assert "  daemon    running for 3600 s, public http://127.0.0.1:8470" in lines
    assert "  storage   1.0 GiB of 4.0 GiB quota (25.00 %)" in lines


def test_alerts_are_worded_most_serious_first_as_the_daemon_sent_them() -> None:
    alerts = [
        {"level": "error", "code": "storage-full", "params": {"percent": 97}},
        {"level": "warning", "code": "peers-failing", "params": {"count": 2, "names": ["a", "b"]}},
        {"level": "warning", "code": "from-a-newer-daemon", "params": {"x": 1}},
    ]
    lines = _lines(_daemon_status(alerts=alerts))
    i = lines.index("  health    ERROR: Storage is 97% full: new copies are deferred.")
    assert lines[i + 1] == "            WARNING: 2 peers cannot be reached or were refused: a, b"
    assert lines[i + 2] == "            WARNING: from-a-newer-daemon {'x': 1}"


def test_the_terminal_words_every_alert_the_console_words() -> None:
    i18n = (ROOT / "node" / "http" / "static" / "i18n.js").read_text(encoding="utf-8")
    assert set(ALERT_TEXT) == set(re.findall(r'"alert\.([a-z-]+)"', i18n))


def test_below_lists_only_nodes_needing_attention_unless_asked() -> None:
    rows = [
        _row("ok-1"),
        _row("ok-2"),
        {**_row("offline"), "online": False},
        _row("full", full=True),
        _row("behind", sync_behind=3),
        _row("stale", fresh=False, age_s=4000),
        {**_row("silent"), "status": None},
    ]
    lines = _lines(_daemon_status(below=rows))
    (summary,) = [ln for ln in lines if ln.startswith("  below ")]
    assert summary.startswith(
        "  below     7 nodes: 6 online, 1 offline, 1 full, 1 without a status"
    )
    assert "24 resources held" in summary
    listed = [
        ln.split(":")[0].strip() for ln in lines if ln.startswith("            ") and "(" in ln
    ]
    assert [name.split(" ")[0] for name in listed] == [
        "offline",
        "full",
        "behind",
        "stale",
        "silent",
    ]
    assert any("OFFLINE" in ln for ln in lines) and any("FULL" in ln for ln in lines)
    assert any("status 4000 s old" in ln for ln in lines)
    assert any("silent (county, 620921): online, no status record yet" in ln for ln in lines)
    every = _lines(_daemon_status(below=rows), every_node=True)
    assert sum(1 for ln in every if "(county, 620921)" in ln) == len(rows)
    assert not any("needing attention" in ln for ln in every)


def test_a_long_attention_list_is_cut_with_a_pointer_to_the_rest() -> None:
    rows = [{**_row(f"down-{i:02}"), "online": False} for i in range(ATTENTION_ROWS + 5)]
    lines = _lines(_daemon_status(below=rows))
    assert sum(1 for ln in lines if "OFFLINE" in ln) == ATTENTION_ROWS
    assert lines[-1] == "            … and 5 more (siku status --network)"


def test_recent_warnings_show_time_kind_subject_and_repeats() -> None:
    events = [
        {
            "at_ms": int(NOW * 1000),
            "level": "warning",
            "kind": "transfer-failed",
            "message": "no reachable holder",
            "pid": "ark:/65665/x1",
            "node": None,
            "count": 3,
        }
    ]
    lines = _lines(_daemon_status(recent_events=events))
    assert "  recent    the newest 1 warnings and errors:" in lines
    (line,) = [ln for ln in lines if "transfer-failed" in ln]
    assert line.endswith("warning transfer-failed [ark:/65665/x1]: no reachable holder (×3)")


def test_without_a_daemon_it_says_how_to_start_one() -> None:
    status = _daemon_status(daemon={"running": False})
    for key in ("alerts", "children", "uptime_seconds"):
        del status[key]
    lines = _lines(status)
    assert "  daemon    not running (start it with: siku run --home /h)" in lines
    assert not any(ln.startswith("  health") for ln in lines)


def test_sections_the_daemon_could_not_give_are_named() -> None:
    status = _daemon_status(
        parent_node={"node_id": "p1", "name": "国家图书馆", "state": None},
        unavailable={"/admin/api/v1/console/network": "the daemon answered 500 at …"},
    )
    lines = _lines(status)
    assert "  parent    国家图书馆" in lines  # no "(None)" when the peer state is unknown
    assert "  missing   /admin/api/v1/console/network: the daemon answered 500 at …" in lines
