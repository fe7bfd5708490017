"""Content replication in the daemon: the planner, the transfer engine and this node's holdings.

Every `[replication] interval_seconds` (and soon after the catalogue or holdings change) the
node reads the gossiped state from its store — live records with content, every node's
holdings, the members and the root-signed policy — and runs the pure planner
(sync.placement) in a worker thread. Its plan becomes the transfer engine's queue
(sync.transfer), the copies it no longer wants are dropped, and chunks nothing refers to any
more are collected. A completed transfer is committed (storage.holdings.commit_copy: every
chunk already verified and durable) and this node's holdings pages are re-signed and passed on
by catalogue sync like any record.

A reader asking at this node for open content it does not hold gets it streamed from the
nearest holder (this node's parent chain first) while the whole resource is fetched into the
on-demand cache in the background.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from node.config import Config
from node.keys import Identity
from node.peer.content import ContentPeers
from node.peer.service import Peering
from node.peer.sync import CatalogueSync
from protocol.errors import ProtocolError
from protocol.holdings import (
    PAGES_BY_TIER,
    HoldingsPage,
    content_key,
    decode_policy,
    encode_entries,
    page_of,
    sign_holdings,
)
from protocol.identity import node_id
from protocol.membership import Certificate
from protocol.records import (
    CHUNK_SIZE,
    ChunkRef,
    FileEntry,
    canonical_unpack,
    decode_envelope,
    encode_envelope,
)
from protocol.status import STATUS_HEARTBEAT_MS, NodeStatus, sign_status
from storage.errors import StorageError
from storage.store import Store
from sync.content import StoreChunkSink
from sync.placement import (
    KLASS_CACHE,
    KLASS_OWN,
    LocalCopy,
    Member,
    Plan,
    Policy,
    Resource,
    Settings,
    plan,
)
from sync.transfer import (
    CANCELLED_UNPLANNED,
    PRIORITY_NAMES,
    TransferError,
    TransferService,
    TransferSettings,
    TransferTask,
)
from sync.windows import Window

__all__ = ["Replication"]

log = logging.getLogger(__name__)

MAX_QUEUED_TASKS = 512  # planned fetches handed to the engine at once (the rest next round)
PUBLISH_DELAY_SECONDS = 1.0
DIRTY_POLL_SECONDS = 5.0  # changes to this node's holdings are gathered this long
SETTLE_SECONDS = 2.0  # a plan is made this soon after the catalogue or holdings change
GC_BATCH = 10_000
# A chunk file no row refers to is removed once it has not been written or needed for this
# long. A transfer in the current plan protects its chunks outright, and a transfer that
# starts or resumes touches the ones it finds; a copy wanted but not queued (no holder online,
# the queue full) can still lose chunks fetched over a day ago, and fetch them again.
ORPHAN_GRACE_SECONDS = 24 * 3600.0
MAX_ON_DEMAND = 64  # resources readers started that are being fetched into the cache at once
MAX_STREAMS = 16  # reader downloads streamed from other nodes at once
PLAN_SHARE = 10.0  # rounds triggered by changes come at most every PLAN_SHARE × a round's time
# A member whose newest status record is older than this gets no new copies: it is offline,
# runs with replication off, or cannot say (a placement on it would never be filled).
STATUS_STALE_MS = 3 * STATUS_HEARTBEAT_MS
STATUS_MIN_INTERVAL_MS = 60_000  # a changed status is republished at most this often (unless
# its full flag flips, which placement elsewhere depends on)


@dataclass
class _Counters:
    served_chunks: int = 0
    served_bytes: int = 0
    committed: int = 0
    dropped: int = 0
    collected_chunks: int = 0
    collected_bytes: int = 0
    orphans_removed: int = 0
    orphan_bytes_removed: int = 0
    pages_published: int = 0
    plans: int = 0


class Replication:
    def __init__(
        self,
        config: Config,
        identity: Identity,
        store: Store,
        peering: Peering,
        sync: CatalogueSync,
    ) -> None:
        self.config = config
        self.rc = config.replication
        self.identity = identity
        self.store = store
        self.peering = peering
        self.sync = sync
        self.pages = PAGES_BY_TIER[config.tier]
        self.counters = _Counters()
        self.content = ContentPeers(peering, store, self._served, self.may_keep_dark)
        self.sink = StoreChunkSink(store.chunks)
        self.transfers = TransferService(
            self.content,
            self.sink,
            TransferSettings(
                max_tasks=self.rc.max_transfers,
                rate_limit_bytes_per_s=self.rc.bandwidth_bytes_per_s,
                windows=tuple(Window.parse(w) for w in self.rc.windows),
            ),
            reachable=lambda: set(peering.connected_peers()),
            on_complete=self._completed,
            on_peer_fault=self._peer_fault,
            on_failed=self._transfer_failed,
            on_cancelled=self._transfer_cancelled,
        )
        self.last_plan: Plan | None = None
        self.last_plan_ms: int | None = None
        self.plan_seconds = 0.0
        self._members: dict[str, Member] = {}
        self._planned: dict[str, TransferTask] = {}
        self._on_demand: dict[str, TransferTask] = {}  # whole resources a reader started
        self._streams = asyncio.Semaphore(MAX_STREAMS)
        self._used: dict[str, int] = {}  # pid → ms: copies readers used since the last plan
        # What the last status said: quota, used, full, held, deferred bytes, behind, verified.
        self._status: tuple[int, int, bool, int, int, int, int] | None = None
        self._status_ms = 0
        self._change = asyncio.Event()
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()  # commits, drops and garbage collection, one at a time
        # The chunk folder the next orphan sweep looks at (random: a restart loop still
        # reaches every folder).
        self._sweep_next = secrets.randbelow(256)

    # --- wiring ----------------------------------------------------------------------------

    def routes(self) -> list[Any]:
        return self.content.routes()

    def changed(self) -> None:
        """The catalogue or someone's holdings changed: plan again soon."""
        self._change.set()

    def used(self, pid: str) -> None:
        """A reader downloaded from `pid`'s copy here (recorded at the next plan)."""
        if len(self._used) < 100_000:
            self._used[pid] = int(time.time() * 1000)

    def may_keep_dark(self, requester: bytes, origin: bytes) -> bool:
        """Whether a node may keep (so be given) dark content of `origin`: the origin itself, a
        node above it in the certificate tree, or a national node (sync.placement's rule)."""
        if requester == origin:
            return True
        authority = self.sync.authority
        cert = authority.certificate(requester)
        if cert is not None and cert.subject.tier == "national":
            return True
        above = authority.certificate(origin)
        for _ in range(4):
            if above is None or above.issuer == self.peering.network.root_public_key:
                return False
            if above.issuer == requester:
                return True
            above = authority.certificate(above.issuer)
        return False

    def _served(self, chunks: int, size: int) -> None:
        self.counters.served_chunks += chunks
        self.counters.served_bytes += size

    def _peer_fault(self, peer: str, code: str) -> None:
        log.warning("peer=%s served bad content: %s", peer, code)
        self.peering.events.record("error", "corrupt-chunk", f"bad content: {code}", node=peer)
        self.peering.rejections.add(peer, code)

    def _transfer_failed(self, task: TransferTask, reason: str) -> None:
        # The reason names peers and error codes, never bodies; events bound its length.
        self.peering.events.record("warning", "transfer-failed", reason, pid=task.pid)

    def _transfer_cancelled(self, task: TransferTask, done: int, total: int, reason: str) -> None:
        # Not a failure: the plan changed. Said, so a copy that stops part-way is explained.
        if reason == CANCELLED_UNPLANNED:
            reason += " (its holders are offline, or the copy is no longer wanted here)"
        self.peering.events.record(
            "info",
            "transfer-cancelled",
            f"set aside at {done} of {total} bytes: {reason}",
            pid=task.pid,
        )

    # --- the service -----------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.transfers.run())
            tg.create_task(self._publish_loop())
            tg.create_task(self._plan_loop())

    async def _plan_loop(self) -> None:
        while True:
            try:
                await self.plan_once()
            except (StorageError, ProtocolError) as e:
                log.error("replication plan failed: %s", e)
            try:
                async with asyncio.timeout(self.rc.interval_seconds):
                    await self._change.wait()
                # Let a burst of records arrive; and however often records arrive, planning
                # (seconds at a million resources) takes a bounded share of the node's time.
                await asyncio.sleep(max(SETTLE_SECONDS, PLAN_SHARE * self.plan_seconds))
            except TimeoutError:
                pass
            self._change.clear()

    async def _publish_loop(self) -> None:
        full = True  # the first round compares every page: what a crash left unpublished
        while True:
            try:
                await self.publish(full=full)
                full = False
            except (StorageError, ProtocolError) as e:
                log.error("publishing holdings failed: %s", e)
            try:
                # Also polled: ingest and `siku delete` run in other processes and mark keys
                # dirty in the store only.
                async with asyncio.timeout(DIRTY_POLL_SECONDS):
                    await self._dirty.wait()
                await asyncio.sleep(PUBLISH_DELAY_SECONDS)
            except TimeoutError:
                pass
            self._dirty.clear()

    # --- planning --------------------------------------------------------------------------

    def members(self) -> dict[str, Member]:
        """Members as the record set knows them: certified, valid now, not revoked (nor
        below a revoked node)."""
        authority = self.sync.authority
        now = int(time.time() * 1000)
        revoked = {r.subject for r in self.peering.membership.revocations()}
        root = self.peering.network.root_public_key
        out: dict[str, Member] = {}
        for key in authority.subjects():
            chain: list[Certificate] = []
            cert = authority.certificate(key)
            while cert is not None and len(chain) < 4:
                chain.append(cert)
                if cert.issuer == root:
                    break
                cert = authority.certificate(cert.issuer)
            if not chain or chain[-1].issuer != root:
                continue
            if any(c.subject.public_key in revoked or not c.valid_at(now) for c in chain):
                continue
            leaf = chain[0].subject
            out[leaf.node_id] = Member(
                leaf.node_id,
                leaf.public_key,
                leaf.tier,
                leaf.region or "000000",
                tuple(c.subject.node_id for c in chain[1:]),
            )
        return out

    async def policy(self) -> Policy:
        envelope = await self.store.holdings.policy_envelope()
        if envelope is None:
            return Policy()
        p = decode_policy(decode_envelope(envelope))
        return Policy(p.min_copies, p.min_higher_in_province, p.min_outside_province)

    async def plan_once(self) -> Plan:
        """Read the state, plan, and act on the plan."""
        started = time.monotonic()
        me = self.identity.node_id
        if self._used:
            used, self._used = self._used, {}
            await self.store.holdings.touch(used)
        members = self.members()
        self._members = members
        ids: dict[bytes, str] = {m.key: m.node_id for m in members.values()}
        rows = await self.store.holdings.resources()
        holdings = await self.store.holdings.holders()
        copies = {c.pid: c for c in await self.store.holdings.copies()}
        policy = await self.policy()
        self.peering.events.changed("policy-changed", repr(policy), f"replication policy: {policy}")
        resources: list[Resource] = []
        holders: dict[str, frozenset[str]] = {}
        local: list[LocalCopy] = []
        content: dict[str, bytes] = {}
        for row in rows:
            embargo = dt.date.fromisoformat(row.embargo_until) if row.embargo_until else None
            origin = ids.get(row.origin) or node_id(row.origin)
            resources.append(
                Resource(
                    row.pid,
                    row.pid_key,
                    origin,
                    row.content_key,
                    row.size,
                    row.collection,
                    row.access,
                    embargo,
                )
            )
            content[row.pid] = row.content_key
            held = {
                ids[h]
                for h, ck, _ in holdings.get(row.pid_key, ())
                if ck == row.content_key and h in ids
            }
            if row.held:
                held.add(me)  # this node's own pages may not be published yet
                copy = copies.get(row.pid)
                if copy is None:
                    local.append(LocalCopy(row.pid, KLASS_OWN, row.size))
                else:
                    local.append(LocalCopy(row.pid, copy.klass, row.size, copy.last_used_ms))
            else:
                held.discard(me)  # a page not yet republished after a drop
            if held:
                holders[row.pid] = frozenset(held)
        settings = Settings(
            self.config.quota_bytes, self.rc.cache_bytes, frozenset(self.rc.subscribe)
        )
        # Nodes out of room (their own status records say so) get no new copies. This node's
        # own flag is left out: it plans with its own quota, and counting itself full would
        # make it stop deferring, then clear its flag, then be chosen again, and so on.
        now_ms = int(time.time() * 1000)
        states = await self.store.holdings.node_states()
        full = frozenset(
            m.node_id
            for m in members.values()
            if m.node_id != me
            and (
                m.key not in states
                or states[m.key][1]
                or states[m.key][0] < now_ms - STATUS_STALE_MS
            )
        )
        result = await asyncio.to_thread(
            plan,
            me,
            members.values(),
            policy,
            settings,
            resources,
            holders,
            local,
            dt.date.today(),
            full,
        )
        await self._act(result, copies, content)
        await self._publish_status(result, len(local), copies)
        self.last_plan = result
        self.last_plan_ms = int(time.time() * 1000)
        self.plan_seconds = time.monotonic() - started
        self.counters.plans += 1
        return result

    async def _act(self, result: Plan, copies: dict[str, Any], content: dict[str, bytes]) -> None:
        tasks: list[TransferTask] = []
        reachable = set(self.peering.connected_peers())
        # Tasks resting after a failure keep their place in the engine but not in the cap:
        # wants that keep failing must not crowd out the rest.
        resting = self.transfers.resting()
        active = 0
        for want in result.fetch:
            if active >= MAX_QUEUED_TASKS or len(tasks) >= 4 * MAX_QUEUED_TASKS:
                break
            if not reachable.intersection(want.sources):
                # Its holders' pages have not arrived yet, or none is connected: planned again
                # when one connects (`connected`), rather than failed and retried a minute on.
                continue
            task = self._planned.get(want.pid)
            if task is None or task.klass != want.klass or task.priority != want.priority:
                task = await self._task(
                    want.pid, want.klass, want.priority, want.sources, want.dark
                )
            elif task.sources != want.sources:
                task = TransferTask(
                    task.pid, task.klass, task.priority, task.chunks, want.sources, task.dark
                )
            if task is not None:
                tasks.append(task)
                active += task.pid not in resting
        self._planned = {t.pid: t for t in tasks}
        for pid in list(self._on_demand):
            if pid in self._planned or (pid in copies):
                del self._on_demand[pid]
        self.transfers.set_plan([*tasks, *self._on_demand.values()])
        async with self._lock:
            for pid, klass in result.keep.items():
                copy = copies.get(pid)
                if copy is not None and klass != KLASS_OWN and copy.klass != klass:
                    await self.store.holdings.reclassify(pid, klass, dark=copy.dark)
            for pid in result.drop:
                if await self.store.holdings.drop_copy(pid):
                    self.counters.dropped += 1
                    log.info("pid=%s copy dropped: no longer needed here", pid)
                    self.peering.events.record("info", "copy-dropped", "no longer needed", pid=pid)
                    self._dirty.set()
            protected = {c.digest for t in self.transfers_tasks() for c in t.chunks}
            # Never while an ingest runs (siku ingest, another process): it could find a
            # doomed chunk still in place, skip writing it, and refer to it.
            async with self.store.try_exclusive("ingest") as free:
                freed = size = swept = swept_bytes = 0
                if free:
                    freed, size = await self.store.holdings.collect_garbage(
                        self.store.chunks, protected, GC_BATCH
                    )
                    # One of the 256 chunk folders a round: files no row refers to, left by
                    # transfers cancelled or failed. A folder that cannot be read is logged
                    # and passed over: it must not stop planning.
                    folder, self._sweep_next = self._sweep_next, (self._sweep_next + 1) % 256
                    try:
                        swept, swept_bytes = await self.store.holdings.sweep_orphans(
                            self.store.chunks,
                            folder,
                            protected,
                            older_than=time.time() - ORPHAN_GRACE_SECONDS,
                        )
                    except StorageError as e:
                        log.warning("orphan sweep of chunk folder %02x failed: %s", folder, e)
            if freed:
                self.counters.collected_chunks += freed
                self.counters.collected_bytes += size
                log.info("collected %d unreferenced chunks (%d bytes)", freed, size)
            if swept:
                self.counters.orphans_removed += swept
                self.counters.orphan_bytes_removed += swept_bytes
                log.info("removed %d chunk files no copy needs (%d bytes)", swept, swept_bytes)

    def transfers_tasks(self) -> list[TransferTask]:
        return [*self._planned.values(), *self._on_demand.values()]

    async def _task(
        self, pid: str, klass: str, priority: int, sources: Sequence[str], dark: bool
    ) -> TransferTask | None:
        held = await self.store.catalogue.get(pid)
        if held is None or held[1].deleted:
            return None
        chunks = _distinct_chunks(held[1].files)
        return TransferTask(pid, klass, priority, chunks, tuple(sources), dark)

    # --- completing and publishing ---------------------------------------------------------

    async def _completed(self, task: TransferTask) -> None:
        held = await self.store.catalogue.get(task.pid)
        if held is None:
            self._on_demand.pop(task.pid, None)
            return
        record = held[1]
        if _distinct_chunks(record.files) != task.chunks:
            log.info("pid=%s changed content during its transfer: not committed", task.pid)
            self._on_demand.pop(task.pid, None)
            self.changed()
            return
        async with self._lock:
            committed = await self.store.holdings.commit_copy(
                task.pid,
                task.klass,
                dark=task.dark,
                expected_content=content_key(record.files),
                chunks=self.store.chunks,
            )
        if committed:
            self.counters.committed += 1
            self._on_demand.pop(task.pid, None)
            log.info(
                "pid=%s copy complete (%s, %d bytes): holding published",
                task.pid,
                task.klass,
                record.content_size,
            )
            self.peering.events.record(
                "info",
                "copy-complete",
                f"{task.klass} copy, {record.content_size} bytes",
                pid=task.pid,
            )
            self._dirty.set()
        else:
            self._on_demand.pop(task.pid, None)
            self.changed()

    async def publish(self, *, full: bool = False) -> int:
        """Re-sign and pass on this node's holdings pages that changed; the number published.
        `full` compares every page with what is published (after a restart)."""
        holdings = self.store.holdings
        keys = await holdings.dirty_keys()
        # Cleared before reading: a change committed from here on marks its key again.
        await holdings.clear_dirty(keys)
        pages = set(range(self.pages)) if full else {page_of(k, self.pages) for k in keys}
        if not pages:
            return 0
        me = self.identity.public_key
        published = await holdings.own_pages(me)
        envelopes = []
        for page in sorted(pages):
            entries = encode_entries(await holdings.own_entries(self.pages, page))
            old = published.get(page)
            if old is None and not entries:
                continue
            if old is not None and _page_entries(old[2]) == entries:
                continue
            version = await self.store.catalogue.next_version(int(time.time() * 1000))
            record = HoldingsPage(me, page, self.pages, version, entries)
            envelopes.append(encode_envelope(sign_holdings(record, self.identity.key)))
        if envelopes:
            result = await self.sync.engine.apply(envelopes, None)
            self.counters.pages_published += len(result.applied)
            log.info("published %d holdings pages", len(result.applied))
        return len(envelopes)

    async def _publish_status(self, result: Plan, held: int, copies: dict[str, Any]) -> None:
        """Tell the network this node's space and state, when it changed (or as a heartbeat)."""
        now = int(time.time() * 1000)
        full = result.deferred_for_quota[0] > 0
        verified = [c.verified_ms for c in copies.values()]
        said = (
            self.config.quota_bytes,
            await self.store.bytes_used(),
            full,
            held,
            result.deferred_for_quota[1],
            self.sync.engine.behind(),
            min(verified) // 1000 if verified else 0,
        )
        last = self._status
        due = now - self._status_ms >= STATUS_HEARTBEAT_MS
        recent = now - self._status_ms < STATUS_MIN_INTERVAL_MS
        if last is not None and not due and (said == last or (last[2] == full and recent)):
            return
        version = await self.store.catalogue.next_version(now)
        status = NodeStatus(self.identity.public_key, version, *said)
        envelope = encode_envelope(sign_status(status, self.identity.key))
        result_ = await self.sync.engine.apply([envelope], None)
        if result_.applied:
            self._status, self._status_ms = said, now

    # --- readers ---------------------------------------------------------------------------

    async def sources_for(self, pid: str, expected: bytes) -> list[str]:
        """Holders of `pid`'s current content, this node's parent chain first."""
        me = self.identity.node_id
        members = self._members or self.members()
        ids = {m.key: m.node_id for m in members.values()}
        holders = [
            ids[h]
            for h, ck, _ in await self.store.holdings.holders_of(pid)
            if ck == expected and h in ids and ids[h] != me
        ]
        own = members.get(me)
        chain = list(own.ancestors) if own is not None else []
        first = [a for a in chain if a in holders]
        return first + sorted(h for h in holders if h not in first)

    async def stream_remote(
        self, pid: str, files: Sequence[FileEntry], entry: FileEntry, start: int, stop: int
    ) -> AsyncIterator[bytes]:
        """Bytes [start, stop) of a file this node does not hold, from its holders, verified
        chunk by chunk; the whole resource then goes into the on-demand cache."""
        expected = content_key(files)
        sources = await self.sources_for(pid, expected)
        if not sources:
            raise TransferError("no library known to hold it is a member now")
        first = start // CHUNK_SIZE  # every chunk but a file's last is CHUNK_SIZE
        offset = first * CHUNK_SIZE
        wanted = entry.chunks[first:]
        if self._streams.locked():
            raise TransferError("too many downloads from other libraries at once; retry shortly")
        async with self._streams:
            # Chunks are kept only if the resource goes into the cache (whose task commits
            # them); otherwise they would lie in the store unreferenced.
            keep = self._cache(pid, files, sources)
            async for data in self.transfers.stream(wanted, sources, pid=pid, keep=keep):
                lo, hi = max(start - offset, 0), min(stop - offset, len(data))
                if lo < hi:
                    # Whole chunks go out as they are; only a range's first and last are cut.
                    yield data if (lo, hi) == (0, len(data)) else data[lo:hi]
                offset += len(data)
                if offset >= stop:
                    break

    def _cache(self, pid: str, files: Sequence[FileEntry], sources: Sequence[str]) -> bool:
        """Fetch the whole resource into the cache, if it may be kept: whether it will be."""
        if pid in self._planned or pid in self._on_demand:
            return True
        size = sum(f.size for f in files)
        pending = sum(sum(c.size for c in t.chunks) for t in self._on_demand.values())
        if len(self._on_demand) >= MAX_ON_DEMAND or pending + size > self.rc.cache_bytes:
            return False  # streamed, not kept (the plan evicts least recently used copies)
        task = TransferTask(pid, KLASS_CACHE, 3, _distinct_chunks(files), tuple(sources))
        self._on_demand[pid] = task
        self.transfers.set_plan(self.transfers_tasks())
        return True

    # --- admin -----------------------------------------------------------------------------

    async def state(self) -> dict[str, Any]:
        p = self.last_plan
        by_class = {
            klass: {"copies": n, "bytes": size}
            for klass, (n, size) in (await self.store.holdings.copy_totals()).items()
        }
        return {
            "enabled": self.rc.enabled,
            "pages": self.pages,
            "quota_bytes": self.config.quota_bytes,
            "cache_bytes": self.rc.cache_bytes,
            "subscriptions": list(self.rc.subscribe),
            "copies": by_class,
            "last_plan_ms": self.last_plan_ms,
            "plan_seconds": round(self.plan_seconds, 3),
            "plan": None
            if p is None
            else {
                "fetch": len(p.fetch),
                "fetch_bytes": sum(w.size for w in p.fetch),
                "fetch_by_priority": {
                    name: sum(1 for w in p.fetch if w.priority == i)
                    for i, name in enumerate(PRIORITY_NAMES)
                },
                "drop": len(p.drop),
                "usage": p.usage,
                "deferred_for_quota": _count_bytes(p.deferred_for_quota),
                "dropped_for_quota": _count_bytes(p.dropped_for_quota),
                "health": {
                    "resources": p.health.resources,
                    "below_policy": p.health.below_policy,
                    "at_risk": p.health.at_risk,
                    "unplaceable": p.health.unplaceable,
                },
            },
            "transfers": self.transfers.status(),
            "counters": vars(self.counters),
        }


def _count_bytes(pair: tuple[int, int]) -> dict[str, int]:
    return {"copies": pair[0], "bytes": pair[1]}


def _distinct_chunks(files: Sequence[FileEntry]) -> tuple[ChunkRef, ...]:
    seen: dict[bytes, ChunkRef] = {}
    for f in files:
        for c in f.chunks:
            seen.setdefault(c.digest, c)
    return tuple(seen.values())


def _page_entries(envelope: bytes) -> bytes:
    """The entries of a page this node published (verified when it was stored)."""
    fields = canonical_unpack(decode_envelope(envelope).body, "holdings body")
    entries = fields[6]
    return entries if isinstance(entries, bytes) else b""
