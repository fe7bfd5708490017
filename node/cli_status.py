"""`siku status`: the console's essentials in a terminal.

From the running daemon (its admin API, with the node's admin token): identity, parent and
children, peers, catalogue sync, copies and transfers, storage, the alerts the console's
overview shows, the newest warnings, and, for the national, provincial and municipal libraries,
the nodes below them from their signed status records. Without a daemon it reads the store and
says so. The rendering is pure (`render`), so what an admin reads is tested line by line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node.config import Config, load_config
from node.errors import EX_OK, EX_UNAVAILABLE, NodeError
from node.home import with_store
from node.keys import load_admin_token, load_identity
from node.progress import format_size
from storage.store import Store

__all__ = [
    "ALERT_TEXT",
    "add_status_parser",
    "cmd_status",
    "daemon_get",
    "daemon_status",
    "render",
]

STATUS_TIMEOUT_SECONDS = 5.0
RECENT_EVENTS = 5  # warnings and errors shown (the console's Events view has them all)
ATTENTION_ROWS = 10  # nodes below needing attention listed without --network

STATUS_PATH = "/admin/api/v1/status"
OVERVIEW_PATH = "/admin/api/v1/console/overview"
NETWORK_PATH = "/admin/api/v1/console/network"
EVENTS_PATH = "/admin/api/v1/events?" + urllib.parse.urlencode(
    {"level": "warning", "limit": RECENT_EVENTS}
)

# The console's English wording of each alert code (node/http/static/i18n.js).
ALERT_TEXT = {
    "not-enrolled": "This node is not enrolled in a network yet.",
    "certificate-problem": "Membership certificate problem: {problem}",
    "certificate-expiring": (
        "The membership certificate expires in {days} days: renew it with the parent library."
    ),
    "peers-failing": "{count} peers cannot be reached or were refused: {names}",
    "storage-full": "Storage is {percent}% full: new copies are deferred.",
    "storage-high": "Storage is {percent}% full.",
    "resources-at-risk": "{count} resources exist in one copy only.",
    "below-policy": "Resources fall short of the replication policy {count} times, by rule.",
    "transfer-failures": "{count} transfers failed recently.",
    "sync-errors": "{count} catalogue sync errors with peers.",
}


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# --- asking the daemon --------------------------------------------------------------------------


async def _get(session: Any, base: str, path: str, token: str) -> dict[str, Any]:
    """One admin JSON document; NodeError when the daemon refuses or answers nonsense."""
    import aiohttp

    url = base + path
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status == 401:
            raise NodeError(f"the daemon at {base} refused the admin token in keys/admin.token")
        if resp.status == 429:
            wait = resp.headers.get("Retry-After", "?")
            raise NodeError(
                f"the daemon at {base} refused the admin token after too many wrong ones;"
                f" retry in {wait} s"
            )
        if resp.status != 200:
            raise NodeError(f"the daemon answered {resp.status} at {url}")
        try:
            data = await resp.json()
        except (aiohttp.ContentTypeError, ValueError) as e:
            raise NodeError(f"the daemon's answer at {url} is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise NodeError(f"the daemon's answer at {url} is not a JSON object")
    return data


async def daemon_get(
    config: Config, extra: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, dict[str, Any] | str]] | None:
    """The daemon's /admin/api/v1/status, and each of `extra` paths' answer (or, where that
    one failed, why: the status is what matters, the rest fills in sections). None when the
    daemon does not answer at all; NodeError when it refuses the token or answers nonsense."""
    import aiohttp  # the HTTP stack loads only for the commands that use it (~0.3 s)

    token = load_admin_token(config.token_file)
    base = config.admin_listen.url()
    timeout = aiohttp.ClientTimeout(total=STATUS_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # First the status alone: a wrong token then costs one refusal, not one per route.
            status = await _get(session, base, STATUS_PATH, token)
            answers = await asyncio.gather(
                *(_get(session, base, p, token) for p in extra), return_exceptions=True
            )
    except (aiohttp.ClientConnectionError, TimeoutError):
        return None
    except aiohttp.ClientError as e:
        raise NodeError(f"the daemon at {base} did not answer properly: {e}") from e
    sections: dict[str, dict[str, Any] | str] = {}
    for path, answer in zip(extra, answers, strict=True):
        if isinstance(answer, dict):
            sections[path] = answer
        elif isinstance(answer, NodeError):
            sections[path] = answer.message
        elif isinstance(answer, aiohttp.ClientError | TimeoutError):
            sections[path] = f"no answer ({type(answer).__name__})"
        else:
            raise answer  # a bug: seen whole
    return status, sections


async def daemon_status(config: Config) -> dict[str, Any] | None:
    """/admin/api/v1/status of the running daemon, or None when it does not answer."""
    got = await daemon_get(config)
    return None if got is None else got[0]


def _local_status(config: Config) -> dict[str, Any]:
    """What the store says when no daemon runs."""
    identity = load_identity(config.key_file)

    async def local(store: Store) -> dict[str, Any]:
        c = await store.catalogue.counts()
        return {
            "node": {
                "id": identity.node_id,
                "name": config.name,
                "code": config.code,
                "tier": config.tier,
                "parent": config.parent,
            },
            "counts": {
                "records": c.records,
                "deleted": c.deleted,
                "files": c.files,
                "content_bytes": c.content_bytes,
                "chunks": c.chunks,
            },
            "storage": {"used_bytes": c.chunk_bytes, "quota_bytes": config.quota_bytes},
        }

    return with_store(config, local)


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    extra: list[str] = []
    if not args.require_daemon:  # a health check asks only what it needs
        extra = [OVERVIEW_PATH, EVENTS_PATH]
        if config.tier != "county":  # a county library has no one below it
            extra.append(NETWORK_PATH)
    got = asyncio.run(daemon_get(config, extra))
    running = got is not None
    if got is None and args.require_daemon:
        sys.stderr.write(f"siku: the daemon is not answering at {config.admin_listen.url()}\n")
        return EX_UNAVAILABLE
    if got is None:
        status: dict[str, Any] = _local_status(config)
    else:
        status, sections = got
        unavailable = {p: why for p, why in sections.items() if isinstance(why, str)}
        overview = sections.get(OVERVIEW_PATH)
        if isinstance(overview, dict):
            status["parent_node"] = overview.get("parent")
            status["children"] = overview.get("children") or []
            status["alerts"] = overview.get("alerts") or []
        events = sections.get(EVENTS_PATH)
        if isinstance(events, dict):
            status["recent_events"] = events.get("events") or []
        network = sections.get(NETWORK_PATH)
        if isinstance(network, dict) and network.get("enrolled"):
            status["below"] = network.get("nodes") or []
        if unavailable:
            status["unavailable"] = unavailable
    status["daemon"] = {"running": running, "admin_url": config.admin_listen.url()}
    if args.json:
        _out(json.dumps(status, ensure_ascii=False, indent=2, default=str))
        return EX_OK
    for line in render(
        status, home=str(args.home), public_url=config.listen.url(), every_node=args.network
    ):
        _out(line)
    return EX_OK


def add_status_parser(sub: Any, home: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "status",
        help="identity, health, sync, copies, storage and the nodes below; from the daemon",
    )
    home(p)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--network",
        action="store_true",
        help="list every node below this one, not only those that need attention",
    )
    p.add_argument(
        "--require-daemon",
        action="store_true",
        help="exit 69 unless the daemon answers (for health checks)",
    )
    p.set_defaults(fn=cmd_status, network=False)


# --- what an admin reads ------------------------------------------------------------------------


def _ago(ms: int | None, now: float) -> str:
    if not ms:
        return "never"
    seconds = max(0, int(now - ms / 1000))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _alert_text(alert: dict[str, Any]) -> str:
    params = dict(alert.get("params") or {})
    if isinstance(params.get("names"), list):
        params["names"] = ", ".join(str(n) for n in params["names"])
    template = ALERT_TEXT.get(str(alert.get("code")))
    if template is None:  # a newer daemon's alert: say its code rather than nothing
        return f"{alert.get('code')} {params}"
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return f"{alert.get('code')} {params}"


def _needs_attention(row: dict[str, Any]) -> bool:
    st = row.get("status")
    return (
        not row.get("online")
        or st is None
        or not st.get("fresh")
        or bool(st.get("full"))
        or int(st.get("sync_behind") or 0) > 0
    )


def _node_line(row: dict[str, Any]) -> str:
    st = row.get("status")
    name = f"{row.get('name') or row.get('node_id')} ({row.get('tier')}, {row.get('region')})"
    state = "online" if row.get("online") else "OFFLINE"
    if st is None:
        return f"            {name}: {state}, no status record yet"
    verified = st.get("oldest_verified_s")
    verified_text = (
        dt.datetime.fromtimestamp(verified, dt.UTC).strftime("%Y-%m-%d") if verified else "-"
    )
    full = ", FULL" if st.get("full") else ""
    stale = "" if st.get("fresh") else f", status {st.get('age_s')} s old"
    return (
        f"            {name}: {state}{full}{stale}; {st.get('held_resources')} held,"
        f" {format_size(st.get('free_bytes') or 0)} free of"
        f" {format_size(st.get('quota_bytes') or 0)}, {st.get('sync_behind')} behind,"
        f" oldest verification {verified_text}"
    )


def render(
    status: dict[str, Any],
    *,
    home: str,
    public_url: str,
    every_node: bool = False,
    now: float | None = None,
) -> list[str]:
    """The lines of `siku status` for what the daemon (or the store) said."""
    now = time.time() if now is None else now
    lines: list[str] = []
    out = lines.append
    running = bool(status.get("daemon", {}).get("running"))
    n, c, s = status["node"], status["counts"], status["storage"]
    out(f"{n['name']}  ({n['tier']}, code {n['code']})")
    out(f"  node id   {n['id']}")
    parent = status.get("parent_node")
    if parent:
        state = f" ({parent['state']})" if parent.get("state") else ""
        out(f"  parent    {parent.get('name') or parent.get('node_id')}{state}")
    elif n.get("parent"):
        out(f"  parent    {n['parent']}")
    children = status.get("children") or []
    if children:
        connected = sum(1 for ch in children if ch.get("state") == "connected")
        names = ", ".join(str(ch.get("name") or ch.get("node_id")) for ch in children[:8])
        more = f" and {len(children) - 8} more" if len(children) > 8 else ""
        out(f"  children  {len(children)} ({connected} connected): {names}{more}")
    if running:
        uptime = int(status.get("uptime_seconds", 0))
        out(f"  daemon    running for {uptime} s, public {public_url}")
    else:
        out(f"  daemon    not running (start it with: siku run --home {home})")
    alerts = status.get("alerts")
    if alerts is not None:
        if not alerts:
            out("  health    no alerts")
        for i, alert in enumerate(alerts):
            label = "health   " if i == 0 else "         "
            out(f"  {label} {str(alert.get('level')).upper()}: {_alert_text(alert)}")
    out(
        f"  records   {c['records']} ({c['deleted']} deleted), {c['files']} files,"
        f" {format_size(c['content_bytes'])}"
    )
    m = status.get("membership")
    if m and m.get("enrolled"):
        p = m["peers"]
        expires = dt.datetime.fromtimestamp(m["certificate_expires_ms"] / 1000, dt.UTC)
        out(
            f"  network   {m['network']['name']} (region {m['region']}, certificate until"
            f" {expires:%Y-%m-%d})"
        )
        out(
            f"  peers     {p['connected']} connected of {p['known']} known"
            f" ({p['failed']} unreachable, {p['rejected']} refused);"
            f" {m['rejected_requests']} requests refused"
        )
    elif running:
        out("  network   not enrolled: running alone (siku enroll request)")
    sy = status.get("sync")
    if sy and sy.get("enabled"):
        out(
            f"  sync      {sy['records']} records in the shared set, {sy['behind']} behind;"
            f" {sy['peers_in_sync']} of {sy['peers_reconciled']} peers in sync,"
            f" last reconciled {_ago(sy['last_reconcile_ms'], now)}; {sy['errors']} errors,"
            f" {sy['rejected_records']} records refused"
        )
    rp = status.get("replication")
    if rp and rp.get("enabled"):
        copies = ", ".join(f"{v['copies']} {k}" for k, v in sorted(rp["copies"].items()))
        below_policy = sum(rp["below_policy"].values())
        out(
            f"  copies    {copies or 'none'} held for the network;"
            f" {rp['at_risk']} resources at risk, {below_policy} below policy (by rule)"
        )
        window = "" if rp["window_in_force"] else " (outside the transfer window)"
        out(
            f"  transfers {len(rp['active'])} active, {rp['queued']} queued"
            f" ({format_size(rp['queued_bytes'])}){window}; received"
            f" {format_size(rp['bytes_received'])}, served {format_size(rp['bytes_served'])};"
            f" {rp['failures']} recent failures"
        )
        for a in rp["active"]:
            done = 100 * a["bytes_done"] / a["bytes_total"] if a["bytes_total"] else 100
            out(
                f"            {a['pid']} ({a['class']}) {done:.0f} % of"
                f" {format_size(a['bytes_total'])} at {format_size(a['rate_bytes_per_s'])}/s"
            )
    pct = 100 * s["used_bytes"] / s["quota_bytes"] if s["quota_bytes"] else 0
    used, quota = format_size(s["used_bytes"]), format_size(s["quota_bytes"])
    out(f"  storage   {used} of {quota} quota ({pct:.2f} %)")
    below = status.get("below")
    if below is not None:
        lines.extend(_below_lines(below, every_node))
    for path, why in (status.get("unavailable") or {}).items():
        out(f"  missing   {path}: {why}")
    events = status.get("recent_events")
    if events:
        out(f"  recent    the newest {len(events)} warnings and errors:")
        for e in events:
            at = dt.datetime.fromtimestamp(e["at_ms"] / 1000, dt.UTC).strftime("%m-%d %H:%M:%S")
            times = f" (×{e['count']})" if e.get("count", 1) > 1 else ""
            about = e.get("pid") or e.get("node_name") or e.get("node")
            about_text = f" [{about}]" if about else ""
            out(f"            {at} {e['level']} {e['kind']}{about_text}: {e['message']}{times}")
    return lines


def _below_lines(rows: list[dict[str, Any]], every_node: bool) -> list[str]:
    if not rows:
        return ["  below     no nodes below this one"]
    with_status = [r["status"] for r in rows if r.get("status")]
    online = sum(1 for r in rows if r.get("online"))
    full = sum(1 for st in with_status if st.get("full"))
    free = sum(int(st.get("free_bytes") or 0) for st in with_status)
    quota = sum(int(st.get("quota_bytes") or 0) for st in with_status)
    held = sum(int(st.get("held_resources") or 0) for st in with_status)
    nodes = "1 node" if len(rows) == 1 else f"{len(rows)} nodes"
    lines = [
        f"  below     {nodes}: {online} online, {len(rows) - online} offline,"
        f" {full} full, {len(rows) - len(with_status)} without a status record;"
        f" {held} resources held, {format_size(free)} free of {format_size(quota)}"
    ]
    shown = rows if every_node else [r for r in rows if _needs_attention(r)]
    limit = len(shown) if every_node else ATTENTION_ROWS
    if shown and not every_node:
        lines.append("            needing attention:")
    lines.extend(_node_line(r) for r in shown[:limit])
    if len(shown) > limit:
        lines.append(f"            … and {len(shown) - limit} more (siku status --network)")
    return lines
