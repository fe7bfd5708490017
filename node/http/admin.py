"""The admin listener: token-protected JSON about this node, under /admin/api/v1/, and the
console (node/http/console.py).

Every route, known or not, requires `Authorization: Bearer <admin token>` or a console session
cookie, except the console's login page and static assets; a request without either learns
nothing but 401 (a browser asking for a console page is sent to the login). The token is
compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from node.context import VERSION, NodeContext
from node.http.console import ConsoleSessions, add_console_routes, is_open_path, login_redirect
from node.http.problems import Problem, dumps, problem_middleware
from node.http.security import AuthFailures, add_security_headers
from node.metrics import metrics_handler

__all__ = ["build_admin_app", "status_json", "too_many_failures"]

_REALM = 'Bearer realm="siku-admin"'


def _bearer(request: web.Request) -> bytes | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip().encode("utf-8", "surrogateescape")


def too_many_failures(wait: int) -> Problem:
    return Problem(
        429,
        "too-many-failures",
        "Too many wrong tokens",
        f"That is not the admin token, and too many wrong ones came lately: wait {wait} s.",
        headers={"Retry-After": str(wait)},
    )


def _auth_middleware(token: str, sessions: ConsoleSessions, failures: AuthFailures) -> Middleware:
    expected = token.encode("utf-8")

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The console's login page and assets are open; a console session counts as the token.
        if is_open_path(request.path) or sessions.of(request):
            return await handler(request)
        given = _bearer(request)
        if given is None:
            to_login = login_redirect(request)
            if to_login is not None:
                return to_login
            raise Problem(
                401,
                "unauthorized",
                "Authentication required",
                "Send the node's admin token as 'Authorization: Bearer <token>'; it is in"
                " keys/admin.token in the node's home folder.",
                headers={"WWW-Authenticate": _REALM},
            )
        if not hmac.compare_digest(given, expected):
            wait = failures.failed()
            if wait:
                await failures.tarpit()
                raise too_many_failures(wait)
            raise Problem(
                401,
                "invalid-token",
                "Invalid token",
                "The admin token is not this node's.",
                headers={"WWW-Authenticate": _REALM + ', error="invalid_token"'},
            )
        return await handler(request)

    return require_token


def _iso_utc(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


async def status_json(
    ctx: NodeContext, replication: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What /admin/api/v1/status reports: who this node is, what it holds, how full it is.
    `replication`: Replication.state() when the caller has it already."""
    config = ctx.config
    # Asked together: each answer is one trip to the database's reader thread, and on a busy
    # event loop every trip waits its turn; together they wait once.
    counts, sync, replication_summary = await asyncio.gather(
        ctx.store.catalogue.counts(), _sync_summary(ctx), _replication_summary(ctx, replication)
    )
    used = counts.chunk_bytes  # what Store.bytes_used reports, without counting twice
    quota = ctx.store.settings.quota_bytes
    return {
        "node": {
            "id": ctx.identity.node_id,
            "name": config.name,
            "code": config.code,
            "tier": config.tier,
            "parent": config.parent,
            "public_key": ctx.identity.public_key.hex(),
            "network": config.network_name,
            "ark_naan": config.ark_naan,
            "version": VERSION,
        },
        "uptime_seconds": round(ctx.uptime_seconds, 3),
        "started_at": _iso_utc(ctx.started_wall),
        "counts": {
            "records": counts.records,
            "deleted": counts.deleted,
            "files": counts.files,
            "content_bytes": counts.content_bytes,
            "chunks": counts.chunks,
        },
        "storage": {
            "used_bytes": used,
            "quota_bytes": quota,
            "free_fraction": round(max(0.0, 1.0 - used / quota), 6) if quota > 0 else 0.0,
        },
        "listen": {"public": str(config.listen), "admin": str(config.admin_listen)},
        "membership": _membership_json(ctx),
        "sync": sync,
        "replication": replication_summary,
    }


async def _replication_summary(
    ctx: NodeContext, state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The essentials of /admin/api/v1/replication, for the status page and `siku status`."""
    if ctx.replication is None:
        return {"enabled": False}
    if state is None:
        state = await ctx.replication.state()
    transfers = state["transfers"]
    plan = state["plan"] or {}
    health = plan.get("health", {})
    return {
        "enabled": True,
        "copies": state["copies"],
        "queued": sum(q["tasks"] for q in transfers["queued"].values()),
        "queued_bytes": sum(q["bytes"] for q in transfers["queued"].values()),
        "active": [
            {k: a[k] for k in ("pid", "class", "bytes_done", "bytes_total", "rate_bytes_per_s")}
            for a in transfers["active"]
        ],
        "failures": len(transfers["failures"]),
        "window_in_force": transfers["window"]["in_force"],
        "bytes_received": transfers["totals"]["bytes"],
        "bytes_served": state["counters"]["served_bytes"],
        "copies_committed": state["counters"]["committed"],
        "below_policy": health.get("below_policy", {}),
        "at_risk": health.get("at_risk", 0),
        "last_plan_ms": state["last_plan_ms"],
    }


async def _sync_summary(ctx: NodeContext) -> dict[str, Any]:
    """The essentials of /admin/api/v1/sync, for the status page and `siku status`."""
    if ctx.sync is None:
        return {"enabled": False}
    state = await ctx.sync.state()
    peers = state["peers"]
    assert isinstance(peers, list)
    last = max((p["last_reconcile_ms"] or 0 for p in peers), default=0)
    return {
        "enabled": True,
        "records": state["total"],
        "behind": state["behind"],
        "peers_in_sync": sum(1 for p in peers if p["last_result"] == "in sync"),
        "peers_reconciled": sum(1 for p in peers if p["reconciliations"]),
        "last_reconcile_ms": last or None,
        "errors": sum(int(p["errors"]) for p in peers),
        "rejected_records": sum(int(p["rejected"]) for p in peers),
    }


def _membership_json(ctx: NodeContext) -> dict[str, Any]:
    peering = ctx.peering
    if peering is None:
        return {"enrolled": False, "network": None}
    leaf = peering.membership.own_leaf
    states = [p.state for p in peering.table.snapshot() if p.state != "self"]
    return {
        "enrolled": True,
        "network": {"name": peering.network.name, "id": peering.network.id},
        "region": leaf.subject.region,
        "certificate_expires_ms": leaf.not_after_ms,
        "revocations_held": len(peering.membership.revocations()),
        "certificate_problem": peering.own_problem,
        "peers": {
            "known": len(states),
            "connected": states.count("connected"),
            "failed": states.count("failed"),
            "rejected": states.count("rejected"),
        },
        "rejected_requests": sum(peering.rejections.by_code.values()),
    }


def build_admin_app(ctx: NodeContext) -> web.Application:
    """The admin application; the daemon runs it on `ctx.config.admin_listen`."""
    sessions = ConsoleSessions()
    failures = AuthFailures()
    app = web.Application(
        client_max_size=ctx.config.max_body_bytes,
        middlewares=[problem_middleware, _auth_middleware(ctx.admin_token, sessions, failures)],
    )

    async def status(request: web.Request) -> web.Response:
        resp = web.Response(
            text=dumps(await status_json(ctx)), content_type="application/json", charset="utf-8"
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def peers(request: web.Request) -> web.Response:
        if ctx.peering is None:
            data: dict[str, Any] = {"network": None, "enrolled": False, "peers": []}
        else:
            from node.peer.service import peer_json

            data = {"enrolled": True, **peer_json(ctx.peering)}
        resp = web.Response(text=dumps(data), content_type="application/json", charset="utf-8")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def sync(request: web.Request) -> web.Response:
        if ctx.sync is None:
            data: dict[str, Any] = {"enabled": False, "peers": []}
        else:
            data = {"enabled": True, **await ctx.sync.state()}
        resp = web.Response(text=dumps(data), content_type="application/json", charset="utf-8")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def replication(request: web.Request) -> web.Response:
        if ctx.replication is None:
            data: dict[str, Any] = {"enabled": False}
        else:
            data = await ctx.replication.state()
        resp = web.Response(text=dumps(data), content_type="application/json", charset="utf-8")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    app.router.add_get("/admin/api/v1/status", status)
    app.router.add_get("/admin/api/v1/replication", replication)
    app.router.add_get("/admin/api/v1/sync", sync)
    app.router.add_get("/admin/api/v1/peers", peers)
    # Behind the token, like the rest.
    app.router.add_get("/metrics", metrics_handler(ctx, failures))
    add_console_routes(app, ctx, sessions, failures)
    app.on_response_prepare.append(add_security_headers)
    return app
