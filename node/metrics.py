"""`/metrics` on the admin listener: the node's live state in the Prometheus text format.

Nothing is counted on hot paths for this. A scrape first gathers a `Snapshot` of what the
services already keep — cumulative counters (sync per-peer stats, transfer totals, bytes
served, rejections by code) and a few gauges read from the store — then a custom collector over
a private registry turns that snapshot into metric families. Counters come only from totals
that never decrease while the daemon runs, so a scrape neither double-counts nor resets them.

Conventions: names `siku_*`, base units (bytes, seconds) in the name, counters end in
`_total`, and labels only from small fixed sets (state, kind, class, priority, rule, route,
code), never a peer, pid or other id.

Scrape cost: four indexed-or-scanning SQLite reads — catalogue counts (a pass over `records`
and `chunks`, as /admin/api/v1/status does), sync-set counts (`sync_items` GROUP BY kind), and
the copies table (one row per copy held for the network, as /admin/api/v1/replication reads
it) — plus in-memory totals. That is milliseconds at a county node's size; a national node with
millions of rows would want these kept as running counts in storage/.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node.context import VERSION, NodeContext
from sync.placement import CLASSES, KLASS_OWN, RULES
from sync.transfer import PRIORITY_NAMES

if TYPE_CHECKING:
    from node.http.security import AuthFailures  # node.http imports this module
    from sync.placement import Plan

__all__ = [
    "CONTENT_TYPE",
    "MAX_CODES",
    "PEER_STATES",
    "NodeCollector",
    "Snapshot",
    "metrics_handler",
    "take_snapshot",
]

# The format `generate_latest` writes (the classic text format, whatever the library's default).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PEER_STATES = ("new", "connected", "failed", "rejected")  # node.peer.table, "self" left out
# Refusal codes with their own label value; codes first seen after these are summed as "other".
# Codes are the node's own stable error codes (a few dozen at most); this bounds them anyway.
# Codes keep their first-seen order (Counter never forgets a key), so each series only grows.
MAX_CODES = 40
OTHER = "other"


@dataclass(frozen=True)
class Snapshot:
    """What one scrape reports, gathered before rendering (reading it may await the store)."""

    tier: str
    wall_s: float  # when it was taken, Unix time
    uptime_s: float
    started_wall_s: float
    # store
    items_by_kind: Mapping[str, int]
    live: int
    deleted: int
    chunks: int
    used_bytes: int
    quota_bytes: int
    # peering (None: not enrolled)
    peer_states: Mapping[str, int] | None = None
    rejections: Mapping[str, int] = field(default_factory=dict)
    # catalogue sync (None: not running)
    sync: SyncTotals | None = None
    # replication (None: not running)
    replication: ReplicationSnapshot | None = None
    # wrong admin tokens (None: not counted by this app)
    auth_failures: tuple[int, int] | None = None  # total, over the limit


@dataclass(frozen=True)
class SyncTotals:
    behind: int
    last_reconcile_ms: int | None
    reconciliations: int
    records_received: int
    records_sent: int
    bytes_received: int
    bytes_sent: int
    rejected: int
    errors: int


@dataclass(frozen=True)
class ReplicationSnapshot:
    cache_bytes: int
    copies: Mapping[str, tuple[int, int]]  # class → (copies, bytes); own from the last plan
    totals: Mapping[str, int]  # sync.transfer totals
    served_chunks: int
    served_bytes: int
    counters: Mapping[str, int]  # node.replication._Counters
    queued: Mapping[str, Mapping[str, int]]  # priority → tasks, bytes, waiting_retry
    active: int
    in_flight: int
    window_open: bool
    last_plan_ms: int | None
    plan_seconds: float
    resources: int | None
    below_policy: Mapping[str, int]
    unplaceable: Mapping[str, int]
    at_risk: int | None


class _OwnFromPlan:
    """Own-collection copies and bytes, from the last plan (the copies table holds only copies
    kept for the network). Counted once per plan, not per scrape: a plan lists every resource
    held, and own copies change only by ingest, which triggers a new plan within seconds."""

    def __init__(self) -> None:
        self._plan: weakref.ref[Plan] | None = None  # not kept alive once replaced
        self._value = (0, 0)

    def __call__(self, plan: Plan | None) -> tuple[int, int]:
        if plan is None:
            return 0, 0
        if self._plan is None or self._plan() is not plan:
            count = sum(1 for klass in plan.keep.values() if klass == KLASS_OWN)
            self._plan, self._value = weakref.ref(plan), (count, plan.usage.get(KLASS_OWN, 0))
        return self._value


async def take_snapshot(
    ctx: NodeContext, own: _OwnFromPlan | None = None, failures: AuthFailures | None = None
) -> Snapshot:
    """Read everything a scrape reports from the running services and the store."""
    counts = await ctx.store.catalogue.counts()
    items = await ctx.store.sync.counts()
    peer_states: dict[str, int] | None = None
    rejections: dict[str, int] = {}
    if ctx.peering is not None:
        peer_states = dict.fromkeys(PEER_STATES, 0)
        for p in ctx.peering.table.snapshot():
            if p.state != "self":
                peer_states[p.state] = peer_states.get(p.state, 0) + 1
        for i, (code, n) in enumerate(ctx.peering.rejections.by_code.items()):
            key = code if i < MAX_CODES else OTHER
            rejections[key] = rejections.get(key, 0) + n
    sync: SyncTotals | None = None
    if ctx.sync is not None:
        engine = ctx.sync.engine
        peers = list(engine.peers.values())
        sync = SyncTotals(
            behind=engine.behind(),
            last_reconcile_ms=max((p.last_reconcile_ms or 0 for p in peers), default=0) or None,
            reconciliations=sum(p.reconciliations for p in peers),
            records_received=sum(p.records_received for p in peers),
            records_sent=sum(p.records_sent for p in peers),
            bytes_received=sum(p.bytes_received for p in peers),
            bytes_sent=sum(p.bytes_sent for p in peers),
            rejected=sum(p.rejected for p in peers),
            errors=sum(p.errors for p in peers),
        )
    replication: ReplicationSnapshot | None = None
    if ctx.replication is not None:
        rep = ctx.replication
        by_class = await ctx.store.holdings.copy_totals()
        plan = rep.last_plan
        by_class[KLASS_OWN] = (own or _OwnFromPlan())(plan)
        status = rep.transfers.status()
        counters = vars(rep.counters)
        replication = ReplicationSnapshot(
            cache_bytes=rep.rc.cache_bytes,
            copies=by_class,
            totals=dict(status["totals"]),
            served_chunks=int(counters["served_chunks"]),
            served_bytes=int(counters["served_bytes"]),
            counters={k: int(v) for k, v in counters.items()},
            queued=status["queued"],
            active=len(status["active"]),
            in_flight=int(status["requests_in_flight"]),
            window_open=bool(status["window"]["in_force"]),
            last_plan_ms=rep.last_plan_ms,
            plan_seconds=rep.plan_seconds,
            resources=None if plan is None else plan.health.resources,
            below_policy={} if plan is None else dict(plan.health.below_policy),
            unplaceable={} if plan is None else dict(plan.health.unplaceable),
            at_risk=None if plan is None else plan.health.at_risk,
        )
    return Snapshot(
        tier=ctx.config.tier,
        wall_s=time.time(),
        uptime_s=ctx.uptime_seconds,
        started_wall_s=ctx.started_wall,
        items_by_kind=items,
        live=counts.records,
        deleted=counts.deleted,
        chunks=counts.chunks,
        used_bytes=counts.chunk_bytes,
        quota_bytes=ctx.store.settings.quota_bytes,
        peer_states=peer_states,
        rejections=rejections,
        sync=sync,
        replication=replication,
        auth_failures=None if failures is None else (failures.total, failures.over_limit),
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labelled(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    family = kind(name, doc, labels=[label])
    for key in sorted(values):
        family.add_metric([key], values[key])
    return family


class NodeCollector:
    """Turns the latest snapshot into metric families (prometheus_client's Collector)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        if s is None:
            return
        build = GaugeMetricFamily("siku_build_info", "The siku version.", labels=["version"])
        build.add_metric([VERSION], 1)
        yield build
        node = GaugeMetricFamily("siku_node_info", "This node's tier.", labels=["tier"])
        node.add_metric([s.tier], 1)
        yield node
        yield _gauge(
            "siku_start_time_seconds", "When the daemon started, Unix time.", s.started_wall_s
        )
        yield _gauge("siku_uptime_seconds", "Seconds since the daemon started.", s.uptime_s)

        yield _labelled(
            GaugeMetricFamily,
            "siku_records",
            "Signed records in the set this node reconciles, by kind.",
            "kind",
            s.items_by_kind,
        )
        yield _labelled(
            GaugeMetricFamily,
            "siku_catalogue_records",
            "Catalogue entries held: live, or deleted (tombstones).",
            "state",
            {"live": s.live, "deleted": s.deleted},
        )
        yield _gauge("siku_storage_chunks", "Distinct chunks of live content held.", s.chunks)
        yield _gauge(
            "siku_storage_used_bytes",
            "Bytes of content held for live records, each shared chunk counted once.",
            s.used_bytes,
        )
        yield _gauge("siku_storage_quota_bytes", "The storage quota.", s.quota_bytes)

        if s.peer_states is not None:
            yield _labelled(
                GaugeMetricFamily,
                "siku_peers",
                "Peers in the peer table, by state.",
                "state",
                s.peer_states,
            )
            yield _labelled(
                CounterMetricFamily,
                "siku_peer_rejections",
                "Problems counted against peers (refused requests, rejected records, bad"
                " content), by code.",
                "code",
                s.rejections,
            )
        if s.sync is not None:
            yield from _sync_families(s.sync, s.wall_s)
        if s.replication is not None:
            yield from _replication_families(s.replication)
        if s.auth_failures is not None:
            yield _labelled(
                CounterMetricFamily,
                "siku_admin_auth_failures",
                "Wrong admin tokens given to this listener (API and console login); over_limit:"
                " answered 429 after the limit.",
                "outcome",
                {
                    "refused": s.auth_failures[0] - s.auth_failures[1],
                    "over_limit": s.auth_failures[1],
                },
            )


def _sync_families(t: SyncTotals, wall_s: float) -> Iterator[Metric]:
    yield _gauge(
        "siku_sync_behind_records",
        "Records some peer held that this node still lacks, at the last reconciliation.",
        t.behind,
    )
    if t.last_reconcile_ms is not None:
        at = t.last_reconcile_ms / 1000
        yield _gauge(
            "siku_sync_last_reconciliation_timestamp_seconds",
            "When the last reconciliation with any peer ended, Unix time.",
            at,
        )
        yield _gauge(
            "siku_sync_last_reconciliation_age_seconds",
            "Seconds since the last reconciliation with any peer ended.",
            max(0.0, wall_s - at),
        )
    yield _counter(
        "siku_sync_reconciliations", "Reconciliations run with peers.", t.reconciliations
    )
    yield _counter(
        "siku_sync_received_records", "Records received from peers and applied.", t.records_received
    )
    yield _counter("siku_sync_sent_records", "Records sent to peers.", t.records_sent)
    yield _counter(
        "siku_sync_received_bytes", "Sync payload bytes received from peers.", t.bytes_received
    )
    yield _counter("siku_sync_sent_bytes", "Sync payload bytes sent to peers.", t.bytes_sent)
    yield _counter(
        "siku_sync_rejected_records",
        "Records from peers refused by signature or authority.",
        t.rejected,
    )
    yield _counter("siku_sync_errors", "Sync exchanges with peers that failed.", t.errors)


def _replication_families(r: ReplicationSnapshot) -> Iterator[Metric]:
    copies = {k: r.copies.get(k, (0, 0)) for k in CLASSES}
    yield _labelled(
        GaugeMetricFamily,
        "siku_storage_copies",
        "Resources whose content this node holds, by class.",
        "class",
        {k: n for k, (n, _) in copies.items()},
    )
    yield _labelled(
        GaugeMetricFamily,
        "siku_storage_class_bytes",
        "Bytes of the resources held, by class (a resource's full size, shared chunks too; own:"
        " at the last plan).",
        "class",
        {k: size for k, (_, size) in copies.items()},
    )
    yield _gauge(
        "siku_storage_cache_limit_bytes",
        "Room for the on-demand cache, within the quota.",
        r.cache_bytes,
    )

    received_bytes = CounterMetricFamily(
        "siku_transfer_received_bytes",
        "Verified content bytes fetched from peers: planned copies, or streamed to a reader.",
        labels=["route"],
    )
    received_chunks = CounterMetricFamily(
        "siku_transfer_received_chunks",
        "Verified chunks fetched from peers: planned copies, or streamed to a reader.",
        labels=["route"],
    )
    for route, prefix in (("replication", ""), ("stream", "stream_")):
        received_bytes.add_metric([route], r.totals.get(prefix + "bytes", 0))
        received_chunks.add_metric([route], r.totals.get(prefix + "chunks", 0))
    yield received_bytes
    yield received_chunks
    yield _counter("siku_transfer_sent_bytes", "Content bytes served to peers.", r.served_bytes)
    yield _counter("siku_transfer_sent_chunks", "Chunks served to peers.", r.served_chunks)
    yield _counter(
        "siku_transfer_corrupt_chunks",
        "Chunks from peers that failed their hash (discarded, counted against the peer).",
        r.totals.get("corrupt_chunks", 0),
    )
    yield _labelled(
        CounterMetricFamily,
        "siku_transfer_tasks",
        "Transfer tasks ended, by result.",
        "result",
        {
            "completed": r.totals.get("tasks_completed", 0),
            "failed": r.totals.get("tasks_failed", 0),
            "cancelled": r.totals.get("tasks_cancelled", 0),
        },
    )
    queued = {p: r.queued.get(p, {}) for p in PRIORITY_NAMES}
    yield _labelled(
        GaugeMetricFamily,
        "siku_transfer_queued_tasks",
        "Transfer tasks waiting to start, by priority.",
        "priority",
        {p: q.get("tasks", 0) for p, q in queued.items()},
    )
    yield _labelled(
        GaugeMetricFamily,
        "siku_transfer_queued_bytes",
        "Bytes of the transfer tasks waiting to start, by priority.",
        "priority",
        {p: q.get("bytes", 0) for p, q in queued.items()},
    )
    yield _gauge("siku_transfer_active_tasks", "Transfers running now.", r.active)
    yield _gauge(
        "siku_transfer_requests_in_flight", "Chunk requests to peers in flight.", r.in_flight
    )
    yield _gauge(
        "siku_transfer_window_open",
        "1 if a bulk-transfer time window is in force now (or none is configured), else 0.",
        1 if r.window_open else 0,
    )

    if r.last_plan_ms is not None:
        yield _gauge(
            "siku_replication_last_plan_timestamp_seconds",
            "When the last replication plan was made, Unix time.",
            r.last_plan_ms / 1000,
        )
        yield _gauge(
            "siku_replication_plan_duration_seconds",
            "How long the last replication plan took.",
            r.plan_seconds,
        )
    if r.resources is not None and r.at_risk is not None:
        yield _gauge(
            "siku_replication_resources",
            "Resources with content, at the last plan.",
            r.resources,
        )
        yield _labelled(
            GaugeMetricFamily,
            "siku_replication_below_policy_resources",
            "Resources below the replication policy at the last plan, by rule.",
            "rule",
            {rule: r.below_policy.get(rule, 0) for rule in RULES},
        )
        yield _labelled(
            GaugeMetricFamily,
            "siku_replication_unplaceable_resources",
            "Resources for which too few eligible nodes have room, at the last plan, by rule.",
            "rule",
            {rule: r.unplaceable.get(rule, 0) for rule in RULES},
        )
        yield _gauge(
            "siku_replication_at_risk_resources",
            "Resources held by one node only, at the last plan.",
            r.at_risk,
        )
    c = r.counters
    yield _counter("siku_replication_plans", "Replication plans made.", c.get("plans", 0))
    yield _counter(
        "siku_replication_committed_copies",
        "Copies completed and committed.",
        c.get("committed", 0),
    )
    yield _counter(
        "siku_replication_dropped_copies", "Copies dropped by the planner.", c.get("dropped", 0)
    )
    yield _counter(
        "siku_replication_collected_bytes",
        "Bytes of chunks no longer referred to, removed.",
        c.get("collected_bytes", 0),
    )
    yield _counter(
        "siku_replication_orphans_removed_bytes",
        "Bytes of chunk files no row referred to (left by cancelled or failed transfers),"
        " removed by the sweep.",
        c.get("orphan_bytes_removed", 0),
    )
    yield _counter(
        "siku_replication_published_pages",
        "Holdings pages signed and published.",
        c.get("pages_published", 0),
    )


def metrics_handler(ctx: NodeContext, failures: AuthFailures | None = None) -> Handler:
    """The GET /metrics handler for one admin app, with its own registry and collector."""
    registry = CollectorRegistry(auto_describe=False)
    collector = NodeCollector()
    registry.register(collector)
    own = _OwnFromPlan()

    async def metrics(request: web.Request) -> web.Response:
        snapshot = await take_snapshot(ctx, own, failures)
        # No await from here to the end of rendering: a concurrent scrape cannot swap the
        # snapshot in between.
        collector.snapshot = snapshot
        body = generate_latest(registry)
        resp = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
        resp.headers["Cache-Control"] = "no-store"
        return resp

    return metrics
