"""The events ring (bound, folding of bursts, filters), the events route's validation, and the
network view's pure parts (who is below a node, one node's row from its status)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.context import NodeContext
from node.events import (
    COALESCE_MS,
    KINDS,
    MAX_LIMIT,
    MAX_MESSAGE_CHARS,
    EventQuery,
    Events,
    parse_query,
)
from node.http.console_api import ONLINE_WITHIN_MS, add_console_api, below, network_row
from node.http.problems import problem_middleware
from protocol.hlc import Hlc
from protocol.status import NodeStatus


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def test_the_ring_is_bounded_newest_first() -> None:
    clock = FakeClock()
    events = Events(capacity=5, clock_ms=clock)
    for i in range(12):
        clock.now += 1
        events.record("info", "copy-complete", f"copy {i}", pid=f"ark:/1/{i}")
    assert len(events) == 5 and events.capacity == 5
    found = events.query(EventQuery(limit=3))
    assert [e.message for e in found] == ["copy 11", "copy 10", "copy 9"]
    assert [e.seq for e in found] == [12, 11, 10]


def test_a_burst_is_one_event_with_a_count() -> None:
    clock = FakeClock()
    events = Events(clock_ms=clock)
    for _ in range(1000):
        events.record("warning", "records-refused", "refused: bad-signature", node="n1")
        clock.now += 10
    events.record("info", "peer-connected", "connected to x", node="x")
    events.record("warning", "records-refused", "refused: bad-signature", node="n1")
    assert len(events) == 2 and events.recorded == 1002
    (burst,) = events.query(EventQuery(kind="records-refused"))
    assert burst.count == 1001 and burst.first_ms < burst.at_ms == clock.now
    # Later than COALESCE_MS after the last one: a new event.
    clock.now += COALESCE_MS + 1
    events.record("warning", "records-refused", "refused: bad-signature", node="n1")
    assert len(events.query(EventQuery(kind="records-refused"))) == 2


def test_filters_by_kind_and_least_level() -> None:
    events = Events()
    events.record("info", "copy-complete", "a", pid="ark:/1/a")
    events.record("warning", "peer-lost", "b", node="n")
    events.record("error", "corrupt-chunk", "c", node="n")
    assert [e.kind for e in events.query(EventQuery(level="warning"))] == [
        "corrupt-chunk",
        "peer-lost",
    ]
    assert [e.message for e in events.query(EventQuery(level="error"))] == ["c"]
    assert [e.message for e in events.query(EventQuery(kind="copy-complete"))] == ["a"]
    assert events.counts() == {"info": 1, "warning": 1, "error": 1}


def test_messages_are_short_plain_text_and_kinds_fixed() -> None:
    events = Events()
    e = events.record("info", "node-started", "x\x1b[31m\n" + "y" * 1000)
    assert len(e.message) == MAX_MESSAGE_CHARS and e.message.isprintable()
    with pytest.raises(ValueError):
        events.record("info", "anything", "no")
    with pytest.raises(ValueError):
        events.record("debug", "node-started", "no")


def test_peer_state_changes_become_events() -> None:
    events = Events()
    events.peer_state("Gansu", "new", "connected", None)
    events.peer_state("Gansu", "connected", "connected", None)  # no change: nothing
    events.peer_state("Gansu", "connected", "failed", "timed out")
    events.peer_state("Gansu", "failed", "failed", "timed out")
    events.peer_state("Evil", "new", "rejected", "wrong network")
    events.peer_state("Never", "new", "failed", "unreachable")  # never connected: not "lost"
    assert [(e.kind, e.message) for e in reversed(events.query())] == [
        ("peer-connected", "connected to Gansu"),
        ("peer-lost", "lost Gansu: timed out"),
        ("peer-refused", "Evil refused: wrong network"),
    ]


def test_changed_records_only_a_change() -> None:
    events = Events()
    events.changed("policy-changed", "3/1/1", "policy 3/1/1")
    events.changed("policy-changed", "3/1/1", "policy 3/1/1")
    events.changed("policy-changed", "4/1/1", "policy 4/1/1")
    assert [e.message for e in events.query()] == ["policy 4/1/1"]


def test_parse_query() -> None:
    assert parse_query({}) == EventQuery()
    assert parse_query({"level": "warning", "kind": "peer-lost", "limit": "7"}) == EventQuery(
        "warning", "peer-lost", 7
    )
    for bad in (
        {"level": "debug"},
        {"kind": "nope"},
        {"limit": "0"},
        {"limit": str(MAX_LIMIT + 1)},
        {"limit": "-1"},
        {"limit": "1e3"},
    ):
        with pytest.raises(ValueError):
            parse_query(bad)


async def test_the_events_route_validates_its_query() -> None:
    events = Events()
    events.record("info", "copy-complete", "preservation copy, 10 bytes", pid="ark:/1/x")
    events.record("warning", "peer-lost", "lost Gansu: timed out", node="Gansu")
    events.record("warning", "sync-error", "reconcile: timed out", node="gs-node-id")
    gansu = SimpleNamespace(
        subject=SimpleNamespace(
            node_id="gs-node-id", name="甘肃省图书馆", code="gs", tier="provincial", region="62"
        ),
        issuer=b"\0" * 32,
    )
    authority = SimpleNamespace(subjects=lambda: [b"\1" * 32], certificate=lambda key: gansu)
    ctx = SimpleNamespace(events=events, sync=SimpleNamespace(authority=authority))
    app = web.Application(middlewares=[problem_middleware])
    add_console_api(app, cast(NodeContext, ctx))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/admin/api/v1/events?level=warning")
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        assert [e["kind"] for e in body["events"]] == ["sync-error", "peer-lost"]
        # A member named by node id gets its library's name beside it; other subjects none.
        assert [e["node_name"] for e in body["events"]] == ["甘肃省图书馆", None]
        assert set(body["kinds"]) == KINDS and body["counts"]["info"] == 1
        resp = await client.get("/admin/api/v1/events?kind=copy-complete&limit=1")
        (only,) = (await resp.json())["events"]
        assert only["pid"] == "ark:/1/x" and only["count"] == 1
        for query in ("level=loud", "kind=x", "limit=100000", "limit=abc"):
            resp = await client.get("/admin/api/v1/events?" + query)
            assert resp.status == 400, query
            assert resp.content_type == "application/problem+json"
            assert json.loads(await resp.text())["code"] == "bad-query"


def _names() -> dict[bytes, dict[str, Any]]:
    root, nat, gs, jq, county, other = (bytes([i]) * 32 for i in range(6))

    def n(name: str, tier: str, issuer: bytes) -> dict[str, Any]:
        return {"node_id": name, "name": name, "code": name, "tier": tier, "region": "62"}

    out = {
        nat: n("nat", "national", root),
        gs: n("gs", "provincial", root),
        jq: n("jq", "municipal", gs),
        county: n("county", "county", jq),
        other: n("other", "provincial", root),
    }
    for key, issuer in ((nat, root), (gs, root), (jq, gs), (county, jq), (other, root)):
        out[key]["issuer"] = issuer
    return out


def test_below_follows_the_certificate_tree() -> None:
    names = _names()
    by = {info["name"]: key for key, info in names.items()}
    named = lambda keys: sorted(names[k]["name"] for k in keys)  # noqa: E731
    assert named(below(names, by["nat"], "national")) == ["county", "gs", "jq", "other"]
    assert named(below(names, by["gs"], "provincial")) == ["county", "jq"]
    assert named(below(names, by["jq"], "municipal")) == ["county"]
    assert below(names, by["county"], "county") == []


def test_a_network_row_is_online_when_fresh_or_connected() -> None:
    now = 1_700_000_000_000
    info = {"node_id": "n", "name": "Gansu", "code": "gs", "tier": "provincial", "region": "62"}
    status = NodeStatus(bytes(32), Hlc(now - 60_000, 0), 1000, 400, False, 7, 0, 3, 1_699_000_000)
    row = network_row(info, status, False, None, now)
    assert row["online"] and row["status"]["fresh"] and row["status"]["age_s"] == 60
    assert row["status"]["free_bytes"] == 600 and row["status"]["held_resources"] == 7
    assert row["status"]["sync_behind"] == 3 and row["status"]["oldest_verified_s"] == 1_699_000_000
    old = NodeStatus(bytes(32), Hlc(now - ONLINE_WITHIN_MS - 1, 0), 1, 1, True, 0, 5, 0, 0)
    row = network_row(info, old, False, "root", now)
    assert (
        not row["online"] and row["status"]["full"] and row["status"]["oldest_verified_s"] is None
    )
    assert network_row(info, old, True, None, now)["online"]
    row = network_row(info, None, False, None, now)
    assert row["status"] is None and not row["online"]
