"""JSON the console needs beyond status, peers, sync and replication: the node's place in the
tree with its alerts, catalogue search, and one resource with the nodes that hold its copies.

Routes (admin listener, behind the same token or session as the rest of /admin/):
    /admin/api/v1/console/overview      parent, children, alerts
    /admin/api/v1/search?q=&per_page=   the catalogue's ranked search
    /admin/api/v1/resource?pid=         record, rights, this node's copy, holders by name
    /admin/api/v1/events?level=&kind=&limit=   recent significant events, newest first
    /admin/api/v1/console/network       every node below this one, from their status records

A national library's network is every other member (provincial libraries are certified by the
root, not by it); any other library's is the nodes its certificates reach, directly or through
the libraries it certified. A node is online when a fresh status (younger than two heartbeats)
or a live connection says so.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from aiohttp import web

from node.context import NodeContext
from node.events import KINDS, LEVELS, parse_query
from node.http.problems import Problem, dumps
from node.http.public import record_json, stored_record, today
from protocol import ark
from protocol.errors import ProtocolError
from protocol.holdings import content_key
from protocol.identity import node_id
from protocol.records import decode_envelope
from protocol.status import STATUS_HEARTBEAT_MS, NodeStatus, decode_status
from storage.textindex import match_expression

__all__ = [
    "CERTIFICATE_WARN_DAYS",
    "MAX_TREE_DEPTH",
    "ONLINE_WITHIN_MS",
    "SEARCH_PAGE_SIZE",
    "STORAGE_FULL_FRACTION",
    "STORAGE_WARN_FRACTION",
    "add_console_api",
    "alerts",
    "below",
    "network_row",
]

CERTIFICATE_WARN_DAYS = 30
STORAGE_WARN_FRACTION = 0.85
STORAGE_FULL_FRACTION = 0.95
SEARCH_PAGE_SIZE = 50
DAY_MS = 86_400_000
ONLINE_WITHIN_MS = 2 * STATUS_HEARTBEAT_MS  # a status this fresh means the node is up
MAX_TREE_DEPTH = 4  # national → provincial → municipal → county


def _json(data: object) -> web.Response:
    resp = web.Response(text=dumps(data), content_type="application/json", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def alerts(
    status: dict[str, Any],
    peers: list[dict[str, Any]],
    replication: dict[str, Any],
    now_ms: int,
) -> list[dict[str, Any]]:
    """What needs an admin's eye, most serious first: each {level, code, params}; the console
    words them (in either language) from the code."""
    out: list[dict[str, Any]] = []

    def add(level: str, code: str, **params: Any) -> None:
        out.append({"level": level, "code": code, "params": params})

    membership = status.get("membership", {})
    if not membership.get("enrolled"):
        add("info", "not-enrolled")
    else:
        if membership.get("certificate_problem"):
            add("error", "certificate-problem", problem=membership["certificate_problem"])
        expires = membership.get("certificate_expires_ms")
        if isinstance(expires, int) and expires - now_ms < CERTIFICATE_WARN_DAYS * DAY_MS:
            days = max(0, (expires - now_ms) // DAY_MS)
            add("error" if days < 7 else "warning", "certificate-expiring", days=days)
    failing = [p for p in peers if p.get("state") in ("failed", "rejected")]
    if failing:
        names = [str(p.get("name") or p.get("url")) for p in failing]
        add("warning", "peers-failing", count=len(failing), names=names[:5])
    storage = status.get("storage", {})
    quota, used = storage.get("quota_bytes") or 0, storage.get("used_bytes") or 0
    if quota > 0 and used / quota >= STORAGE_FULL_FRACTION:
        add("error", "storage-full", percent=round(100 * used / quota))
    elif quota > 0 and used / quota >= STORAGE_WARN_FRACTION:
        add("warning", "storage-high", percent=round(100 * used / quota))
    if replication.get("enabled"):
        health = (replication.get("plan") or {}).get("health", {})
        if health.get("at_risk"):
            add("warning", "resources-at-risk", count=health["at_risk"])
        below = sum(health.get("below_policy", {}).values())
        if below:
            add("warning", "below-policy", count=below)
        failures = replication["transfers"]["failures"]
        if failures:
            add("warning", "transfer-failures", count=len(failures))
    sync = status.get("sync", {})
    if sync.get("errors"):
        add("warning", "sync-errors", count=sync["errors"])
    order = {"error": 0, "warning": 1, "info": 2}
    out.sort(key=lambda a: order[a["level"]])
    return out


def _names(ctx: NodeContext) -> dict[bytes, dict[str, Any]]:
    """Every node this one knows a certificate of (public key → who it is, who certified it)."""
    out: dict[bytes, dict[str, Any]] = {}
    if ctx.sync is None:
        return out
    authority = ctx.sync.authority
    for key in authority.subjects():
        cert = authority.certificate(key)
        if cert is None:
            continue
        s = cert.subject
        out[key] = {
            "node_id": s.node_id,
            "name": s.name,
            "code": s.code,
            "tier": s.tier,
            "region": s.region,
            "issuer": cert.issuer,
        }
    return out


def _tree(ctx: NodeContext) -> dict[str, Any]:
    """This node's parent (its certificate's issuer) and children (nodes it certified)."""
    if ctx.peering is None:
        return {"parent": None, "children": []}
    own = ctx.peering.membership.own_leaf
    me = ctx.identity.public_key
    names = _names(ctx)
    states = {p.node_id: p.state for p in ctx.peering.table.snapshot() if p.node_id}

    def who(key: bytes) -> dict[str, Any]:
        info = names.get(key) or {"node_id": node_id(key), "name": None, "tier": None}
        return {k: info.get(k) for k in ("node_id", "name", "code", "tier", "region")} | {
            "state": states.get(info["node_id"])
        }

    parent = None if own.issuer == ctx.peering.network.root_public_key else who(own.issuer)
    children = [who(k) for k, info in names.items() if info["issuer"] == me and k != me]
    children.sort(key=lambda c: str(c["name"]))
    return {"parent": parent, "children": children}


def below(names: dict[bytes, dict[str, Any]], me: bytes, tier: str) -> list[bytes]:
    """The nodes a library oversees: every other member for a national library, else the
    nodes its certificates reach (at most MAX_TREE_DEPTH levels down)."""
    if tier == "national":
        return [k for k in names if k != me]
    out: list[bytes] = []
    level = {me}
    for _ in range(MAX_TREE_DEPTH):
        level = {k for k, info in names.items() if info["issuer"] in level and k not in level}
        level -= {me, *out}
        if not level:
            break
        out.extend(level)
    return out


def network_row(
    info: dict[str, Any],
    status: NodeStatus | None,
    connected: bool,
    issuer: str | None,
    now_ms: int,
) -> dict[str, Any]:
    """One node of the network view: who it is, and what its newest status says."""
    row: dict[str, Any] = {k: info.get(k) for k in ("node_id", "name", "code", "tier", "region")}
    row |= {"parent": issuer, "connected": connected, "status": None}
    age = None if status is None else max(0, now_ms - status.version.wall_ms)
    fresh = age is not None and age <= ONLINE_WITHIN_MS
    row["online"] = connected or fresh
    if status is not None:
        row["status"] = {
            "at_ms": status.version.wall_ms,
            "age_s": None if age is None else age // 1000,
            "fresh": fresh,
            "held_resources": status.held_resources,
            "used_bytes": status.used_bytes,
            "quota_bytes": status.quota_bytes,
            "free_bytes": max(0, status.quota_bytes - status.used_bytes),
            "deferred_bytes": status.deferred_bytes,
            "sync_behind": status.sync_behind,
            "oldest_verified_s": status.oldest_verified_s or None,
            "full": status.full,
        }
    return row


def add_console_api(app: web.Application, ctx: NodeContext) -> None:
    async def overview(request: web.Request) -> web.Response:
        from node.http.admin import status_json  # admin registers the console: import late

        replication = await ctx.replication.state() if ctx.replication is not None else {}
        status = await status_json(ctx, replication or None)
        peers: list[dict[str, Any]] = []
        if ctx.peering is not None:
            from node.peer.service import peer_json

            found = peer_json(ctx.peering)["peers"]
            assert isinstance(found, list)
            peers = found
        now_ms = int(time.time() * 1000)
        return _json({**_tree(ctx), "alerts": alerts(status, peers, replication, now_ms)})

    async def search(request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        if not q:
            raise Problem(400, "missing-query", "Missing query", "Give a search query in q.")
        try:
            match_expression(q)
        except ValueError as e:
            raise Problem(400, "bad-query", "Query too large", f"{e}.") from e
        page = await ctx.store.catalogue.search(q, limit=SEARCH_PAGE_SIZE)
        results = []
        for hit in page.hits:
            results.append(
                {
                    "pid": hit.pid,
                    "title": next(iter(hit.texts("title")), ""),
                    "creator": hit.texts("creator"),
                    "date": next(iter(hit.texts("date")), None),
                    "collection": hit.summary.get("collection", ""),
                    "access": hit.summary.get("access", ""),
                }
            )
        return _json({"query": q, "total": page.total, "results": results})

    async def resource(request: web.Request) -> web.Response:
        raw = request.query.get("pid", "").strip()
        if not raw:
            raise Problem(400, "missing-pid", "Missing pid", "Give the resource's pid in pid.")
        pid = str(ark.parse(raw))
        signed, record = await stored_record(ctx, pid)
        names = _names(ctx)
        current = content_key(record.files)
        me = ctx.identity.public_key
        holders = []
        for key, ckey, verified_s in await ctx.store.holdings.holders_of(pid):
            info = names.get(key, {})
            holders.append(
                {
                    "node_id": info.get("node_id") or node_id(key),
                    "name": info.get("name"),
                    "tier": info.get("tier"),
                    "region": info.get("region"),
                    "this_node": key == me,
                    "current": ckey == current,
                    "verified": dt.datetime.fromtimestamp(verified_s, dt.UTC).isoformat()
                    if verified_s
                    else None,
                }
            )
        holders.sort(key=lambda h: (not h["this_node"], str(h["name"])))
        copy = await ctx.store.holdings.copy(pid)
        held = await ctx.store.catalogue.is_held(pid)
        return _json(
            {
                "record": record_json(signed, record, today()),
                "held_here": held,
                "copy": None
                if copy is None
                else {"class": copy.klass, "dark": copy.dark, "bytes": copy.size},
                "origin": names.get(record.origin, {}).get("name"),
                "holders": holders,
            }
        )

    async def events(request: web.Request) -> web.Response:
        try:
            q = parse_query(request.query)
        except ValueError as e:
            raise Problem(400, "bad-query", "Bad events query", f"{e}.") from e
        found = ctx.events.query(q)
        # Events about a member name it by node id; the console shows its library's name.
        named = {info["node_id"]: info["name"] for info in _names(ctx).values()}
        return _json(
            {
                "events": [e.json() | {"node_name": named.get(e.node or "")} for e in found],
                "levels": list(LEVELS),
                "kinds": sorted(KINDS),
                "counts": ctx.events.counts(),
                "capacity": ctx.events.capacity,
            }
        )

    async def network(request: web.Request) -> web.Response:
        if ctx.sync is None or ctx.peering is None:
            return _json({"enrolled": False, "nodes": [], "heartbeat_s": 0})
        names = _names(ctx)
        me = ctx.identity.public_key
        keys = below(names, me, ctx.config.tier)
        statuses: dict[bytes, NodeStatus] = {}
        wanted = set(keys)
        for envelope in await ctx.store.holdings.status_envelopes():
            try:
                st = decode_status(decode_envelope(envelope))
            except ProtocolError:  # verified before it was stored: a bad one is not shown
                continue
            if st.node in wanted:
                statuses[st.node] = st
        connected = {
            p.node_id for p in ctx.peering.table.snapshot() if p.state == "connected" and p.node_id
        }
        now_ms = int(time.time() * 1000)
        rows = []
        for key in keys:
            info = names[key]
            issuer = names.get(info["issuer"], {}).get("name")
            rows.append(
                network_row(info, statuses.get(key), info["node_id"] in connected, issuer, now_ms)
            )
        order = {"national": 0, "provincial": 1, "municipal": 2, "county": 3}
        rows.sort(key=lambda r: (order.get(str(r["tier"]), 9), str(r["region"]), str(r["name"])))
        return _json({"enrolled": True, "nodes": rows, "heartbeat_s": STATUS_HEARTBEAT_MS // 1000})

    app.router.add_get("/admin/api/v1/console/overview", overview)
    app.router.add_get("/admin/api/v1/console/network", network)
    app.router.add_get("/admin/api/v1/events", events)
    app.router.add_get("/admin/api/v1/search", search)
    app.router.add_get("/admin/api/v1/resource", resource)
