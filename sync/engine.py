"""Catalogue sync: how a node's record set comes to equal every other node's.

Three ways records move, all through `SyncEngine.apply`, which verifies each record, applies the
authority rules (sync.authority) and keeps the newest version of each slot:

1. Push gossip. A record new to this node (its own, or applied from a peer) and recent is pushed
   whole to its tree neighbours (parent and children, except whoever sent it) and offered by id
   to `random_fanout` other peers, which pull it if they lack it. Along the certificate tree
   every node hears of a record once, so a network of N nodes spends about (1 + random_fanout)
   messages per node per record, and the tree's depth bounds the rounds.
2. Anti-entropy. Periodically, and when a peer (re)connects, the node reconciles its whole set
   with one peer (protocol.reconcile): it learns which ids the peer holds that it lacks (fetched
   in batches and applied, pipelined with the reconciliation) and which it holds that the peer
   lacks (pushed). Bytes grow with the difference, not with the set.
3. Nothing else: a node never trusts a peer's claim about a record, only the signed record.

Every batch is applied in one store transaction, so an interrupted round leaves whole records or
nothing, and the next round picks up what is still missing. Work is bounded everywhere: queued
pushes, offers and pulls per peer, ids per message, bytes per batch, one reconciliation at a
time as initiator. I/O goes through two protocols, `RecordSet` (the node's store) and `Transport`
(the peer API), so the daemon and the simulator (tests/sim) run this same code.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from protocol.errors import ProtocolError
from protocol.membership import KIND_CERTIFICATE, KIND_REVOCATION, TIERS, Certificate
from protocol.reconcile import DEFAULT_FRAME_SIZE_LIMIT, Reconciler, Storage
from protocol.syncwire import MAX_BATCH_BYTES, MAX_IDS
from sync.authority import Authority, Deferred, Rejected
from sync.records import Order, SyncRecord, decode_record, record_id

__all__ = [
    "ApplyResult",
    "Neighbours",
    "PeerSync",
    "RecordSet",
    "SyncEngine",
    "SyncSettings",
    "Transport",
    "TransportError",
]

log = logging.getLogger(__name__)

DECODE_SLICE = 64  # records verified between yields to the event loop (~15-30 ms of work)
APPLY_PIPELINE = 2  # fetched batches applied at once: one decoding, one being written
RETRY_SECONDS = 2.0  # after an interrupted reconciliation, the next one starts this soon
MIN_UNSERVED_CLAIM = 64  # a fetch of this many claimed ids answered with none: misbehaviour
MAX_DEFERRED_BYTES = 8 << 20  # records kept waiting for a certificate, at most
RESPONDING_MS = 10_000  # a peer that sent a reconcile message this recently is reconciling


class TransportError(Exception):
    """A peer could not be reached, refused, or answered badly (the transport says which)."""

    def __init__(self, message: str, *, misbehaved: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.misbehaved = misbehaved


class RecordSet(Protocol):
    """What sync needs of a node's store."""

    async def snapshot(self, stale_ok_s: float = 0.0) -> Storage:
        """The whole set, sorted, unchanged for as long as the caller uses it; up to
        `stale_ok_s` seconds old if that spares a rebuild."""
        ...

    async def have(self, ids: Sequence[bytes]) -> set[bytes]: ...

    async def envelopes(self, ids: Sequence[bytes], max_bytes: int) -> list[bytes]:
        """Held records among `ids`, in order, within `max_bytes` (at least one if any)."""
        ...

    async def held(self, records: Sequence[SyncRecord]) -> dict[str, tuple[Order, bytes | None]]:
        """slot → (order, origin) of the version held now, for the slots of `records`."""
        ...

    async def store(self, records: Sequence[SyncRecord]) -> None:
        """Keep `records` (each newer than what its slot held), replacing older versions; each
        record whole or not at all (records are independent: a batch cut short by a crash
        is finished by the next round)."""
        ...

    async def certificates(self) -> list[bytes]:
        """Envelopes of every certificate held (to judge records after a restart)."""
        ...

    async def latest_seq(self) -> int:
        """The sequence number of the newest item (where `new_since` starts after a restart)."""
        ...

    async def new_since(self, seq: int, limit: int) -> tuple[int, list[tuple[bytes, int, str]]]:
        """(sequence number reached, [(id, ts, kind)]) of items written to the store directly after
        `seq` — by ingest or the CLI, not through `store` — oldest first."""
        ...


class Transport(Protocol):
    """The peer API as sync uses it. Raises TransportError."""

    async def reconcile(self, peer: str, message: bytes) -> bytes: ...

    async def fetch(self, peer: str, ids: Sequence[bytes]) -> list[bytes]: ...

    async def push(self, peer: str, envelopes: Sequence[bytes]) -> None: ...

    async def offer(self, peer: str, ids: Sequence[bytes]) -> None: ...


@dataclass(frozen=True)
class Neighbours:
    tree: Sequence[str]  # parent and children this node can reach now
    others: Sequence[str]  # every other reachable peer


@dataclass(frozen=True)
class SyncSettings:
    fetch_batch: int = 1_000  # ids per fetch request
    random_fanout: int = 1  # peers outside the tree offered each new record
    gossip_max_age_ms: int = 600_000  # older records arriving are anti-entropy's business
    queue_limit: int = 4_096  # ids queued per peer for push, offer or pull; beyond: dropped
    frame_size_limit: int = DEFAULT_FRAME_SIZE_LIMIT
    # A reconciliation longer than this is abandoned: 4,096 messages of 60 KB name ~7 million
    # ids, more than any catalogue difference a round has to settle.
    max_round_trips: int = 4_096
    round_timeout_s: float = 3_600.0  # a round (exchange, fetches, pushes) ends by then
    responder_staleness_s: float = 2.0  # how old a set a responder may answer from


@dataclass
class PeerSync:
    """What an admin sees per peer (sync state), and what the tests check."""

    peer: str
    last_reconcile_ms: int | None = None
    last_result: str = "never"
    last_error: str | None = None
    reconciliations: int = 0
    round_trips: int = 0  # of the last reconciliation
    behind: int = 0  # records the peer held that this node lacked, still missing after the last
    ahead: int = 0  # records this node held that the peer lacked, at the last reconciliation
    records_received: int = 0  # applied, whatever the route
    records_sent: int = 0  # pushed or served on fetch
    bytes_received: int = 0  # sync payloads (reconcile messages, records, ids), not HTTP framing
    bytes_sent: int = 0
    messages_sent: int = 0  # requests this node made to the peer
    rejected: int = 0  # records from the peer refused by signature or authority
    errors: int = 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ApplyResult:
    applied: list[SyncRecord] = field(default_factory=list)
    known: int = 0  # already held, exactly
    stale: int = 0  # an equal or newer version of the slot was held
    deferred: int = 0  # waiting for a certificate
    rejected: int = 0


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first TransportError or ProtocolError in a (nested) exception group, else the group."""
    for error in group.exceptions:
        if isinstance(error, TransportError | ProtocolError):
            return error
        if isinstance(error, BaseExceptionGroup):
            found = _first_error(error)
            if found is not error:
                return found
    return group


def _apply_rank(record: SyncRecord) -> tuple[int, int]:
    # Certificates first, issuers before those they certify (the tiers are ordered from the
    # root down), then revocations, then the rest.
    if isinstance(record.body, Certificate):
        return 0, TIERS.index(record.body.subject.tier)
    return (1 if record.kind == KIND_REVOCATION else 2), 0


class SyncEngine:
    def __init__(
        self,
        records: RecordSet,
        authority: Authority,
        transport: Transport,
        neighbours: Callable[[], Neighbours],
        *,
        clock_ms: Callable[[], int],
        rng: random.Random | None = None,
        settings: SyncSettings | None = None,
        on_applied: Callable[[Sequence[SyncRecord]], Awaitable[None]] | None = None,
        on_rejected: Callable[[str, str], None] | None = None,
    ) -> None:
        self.records = records
        self.authority = authority
        self.transport = transport
        self.neighbours = neighbours
        self.clock_ms = clock_ms
        self.rng = rng or random.Random()  # noqa: S311  (peer choice, not a secret)
        self.settings = settings or SyncSettings()
        self.on_applied = on_applied
        self.on_rejected = on_rejected
        self.peers: dict[str, PeerSync] = {}
        self._apply_lock = asyncio.Lock()
        self._reconcile_lock = asyncio.Lock()
        self._outbox: dict[str, list[bytes]] = {}  # ids to push whole
        self._offers: dict[str, list[bytes]] = {}  # ids to offer
        self._pulls: dict[str, list[bytes]] = {}  # ids offered to us, to fetch
        self._queued_pulls: set[bytes] = set()
        # Records waiting for a certificate (a gossiped record can arrive before its origin's
        # certificate): retried when certificates are applied, else left to anti-entropy.
        # Bounded by count and bytes; each entry names the key whose certificate it awaits, and
        # only entries awaiting a key just certified are retried.
        self._deferred: OrderedDict[bytes, tuple[bytes, str | None, bytes]] = OrderedDict()
        self._deferred_bytes = 0
        self._seq = 0
        self._due: list[str] = []  # peers to reconcile with first (newly connected)
        # peer → when (ms) it last sent us a reconcile message: it is reconciling with us
        self._responding: dict[str, int] = {}
        self._turn = 0
        self._gossip_ready = asyncio.Event()  # pushes, offers or pulls are queued
        self._peer_due = asyncio.Event()  # a peer connected: reconcile with it now

    # --- state -----------------------------------------------------------------------------

    def peer(self, peer: str) -> PeerSync:
        stats = self.peers.get(peer)
        if stats is None:
            stats = self.peers[peer] = PeerSync(peer)
        return stats

    async def start(self) -> None:
        """Load what judging needs (held certificates) and where local news begins."""
        for envelope in await self.records.certificates():
            try:
                self.authority.learn(decode_record(envelope))
            except ProtocolError as e:  # the store verified it once; say so if it changed
                log.error("a stored certificate no longer verifies: %s", e.message)
        self._seq = await self.records.latest_seq()

    def behind(self) -> int:
        """Records some peer held that this node lacked at the last reconciliation with it, and
        still lacks (an upper bound: two peers may count the same record)."""
        return max((p.behind for p in self.peers.values()), default=0)

    # --- applying --------------------------------------------------------------------------

    async def apply(
        self, envelopes: Sequence[bytes], sender: str | None, *, gossip: bool = True
    ) -> ApplyResult:
        """Verify, judge and store records from `sender` (None: this node's own). What is new
        is passed on by gossip unless `gossip` is False (records found by reconciliation: the
        other nodes reconcile too, so pushing them on would mostly repeat what they hold)."""
        result = ApplyResult()
        # Verifying and decoding need no lock: two batches in a row (a reconciliation's fetches)
        # overlap, one decoding while the other is written in the database thread. What a
        # concurrent batch stored meanwhile is found under the lock: an equal order is stale.
        ids = [record_id(e) for e in envelopes]
        held_ids = await self.records.have(ids)
        seen: set[bytes] = set()
        decoded: list[SyncRecord] = []
        for n, (envelope, id_) in enumerate(zip(envelopes, ids, strict=True)):
            if id_ in held_ids or id_ in seen:
                result.known += 1
                continue
            seen.add(id_)
            try:
                decoded.append(decode_record(envelope))
            except ProtocolError as e:
                self._blame(sender, e.code, e.message)
                result.rejected += 1
            if n % DECODE_SLICE == DECODE_SLICE - 1:
                await asyncio.sleep(0)  # let the node answer requests between slices
        decoded.sort(key=_apply_rank)
        async with self._apply_lock:
            held = await self.records.held(decoded)
            accepted: dict[str, SyncRecord] = {}
            pending = decoded
            awaiting: dict[bytes, bytes] = {}  # record id → the key it waits for
            while pending:
                waiting: list[SyncRecord] = []
                for record in pending:
                    held_order, held_origin = held.get(record.slot, (None, None))
                    try:
                        self.authority.judge(record, held_origin)
                    except Deferred as e:
                        waiting.append(record)
                        awaiting[record.id] = e.awaiting
                        continue
                    except Rejected as e:
                        self._blame(sender, e.code, e.message)
                        result.rejected += 1
                        continue
                    rival = accepted.get(record.slot)
                    if (held_order is not None and held_order >= record.order) or (
                        rival is not None and rival.order >= record.order
                    ):
                        result.stale += 1
                        continue
                    if rival is not None:
                        result.stale += 1
                    accepted[record.slot] = record
                    # A certificate counts for the rest of this batch at once (a county's
                    # catalogue records may arrive with its certificate).
                    self.authority.learn(record)
                if len(waiting) == len(pending):
                    break
                pending = waiting
            result.deferred = len(pending)
            for record in pending:
                self._defer(record, sender, awaiting[record.id])
            result.applied = list(accepted.values())
            if result.applied:
                await self.records.store(result.applied)
                for record in result.applied:
                    self._undefer(record.id)
        if sender is not None:
            self.peer(sender).records_received += len(result.applied)
        if result.applied:
            if self.on_applied is not None:
                await self.on_applied(result.applied)
            if gossip:
                self._gossip([(r.id, r.item.timestamp) for r in result.applied], exclude=sender)
            certified = {
                r.body.subject.public_key for r in result.applied if isinstance(r.body, Certificate)
            }
            if certified and self._deferred:
                await self._retry_deferred(certified)
        return result

    def _defer(self, record: SyncRecord, sender: str | None, awaiting: bytes) -> None:
        if record.id in self._deferred:
            return
        self._deferred[record.id] = (record.envelope, sender, awaiting)
        self._deferred_bytes += len(record.envelope)
        while (
            len(self._deferred) > self.settings.queue_limit
            or self._deferred_bytes > MAX_DEFERRED_BYTES
        ):
            self._undefer(next(iter(self._deferred)))

    def _undefer(self, id_: bytes) -> None:
        entry = self._deferred.pop(id_, None)
        if entry is not None:
            self._deferred_bytes -= len(entry[0])

    async def _retry_deferred(self, certified: set[bytes]) -> None:
        """Apply again the deferred records that waited for one of the `certified` keys."""
        by_sender: dict[str | None, list[bytes]] = {}
        for id_, (envelope, sender, key) in list(self._deferred.items()):
            if key in certified:
                self._undefer(id_)
                by_sender.setdefault(sender, []).append(envelope)
        for sender, envelopes in by_sender.items():
            await self.apply(envelopes, sender)

    def _blame(self, sender: str | None, code: str, message: str) -> None:
        if sender is None:
            return
        self.peer(sender).rejected += 1
        log.warning("record from %s refused (%s): %s", sender, code, message)
        if self.on_rejected is not None:
            self.on_rejected(sender, code)

    # --- gossip ----------------------------------------------------------------------------

    def _gossip(self, items: Sequence[tuple[bytes, int]], exclude: str | None) -> None:
        oldest = self.clock_ms() - self.settings.gossip_max_age_ms
        ids = [id_ for id_, ts in items if ts >= oldest]
        if not ids:
            return
        around = self.neighbours()
        eager = [p for p in around.tree if p != exclude]
        others = [p for p in around.others if p != exclude and p not in eager]
        lazy = self.rng.sample(others, min(self.settings.random_fanout, len(others)))
        for peer in eager:
            self._enqueue(self._outbox, peer, ids)
        for peer in lazy:
            self._enqueue(self._offers, peer, ids)
        self._gossip_ready.set()

    def _enqueue(self, queues: dict[str, list[bytes]], peer: str, ids: Sequence[bytes]) -> None:
        queue = queues.setdefault(peer, [])
        room = self.settings.queue_limit - len(queue)
        queue.extend(ids[: max(room, 0)])  # the rest is left to anti-entropy

    async def publish_local(self) -> int:
        """Gossip records written to the store since the last call without passing through
        `apply` (ingest and deletions by the CLI, revocations it imports)."""
        self._seq, new = await self.records.new_since(self._seq, self.settings.queue_limit)
        if not new:
            return 0
        # Certificates written by the CLI (`siku enroll approve`) count here at once, and
        # release what waited for them.
        certificates = [i for i, _, kind in new if kind == KIND_CERTIFICATE]
        certified: set[bytes] = set()
        for envelope in await self.records.envelopes(certificates, MAX_BATCH_BYTES):
            record = decode_record(envelope)
            self.authority.learn(record)
            if isinstance(record.body, Certificate):
                certified.add(record.body.subject.public_key)
        if certified and self._deferred:
            await self._retry_deferred(certified)
        self._gossip([(i, ts) for i, ts, _ in new], exclude=None)
        return len(new)

    async def receive_offer(self, sender: str, ids: Sequence[bytes]) -> int:
        """Queue the offered ids this node lacks, to be pulled from the sender."""
        wanted = set(ids) - await self.records.have(ids) - self._queued_pulls
        fresh = [i for i in ids if i in wanted]
        before = len(self._pulls.get(sender, ()))
        self._enqueue(self._pulls, sender, fresh)
        queued = self._pulls.get(sender, [])[before:]
        self._queued_pulls.update(queued)
        if queued:
            self._gossip_ready.set()
        return len(queued)

    async def flush(self) -> None:
        """Send queued pushes and offers and make queued pulls, all peers at once."""
        self._gossip_ready.clear()
        outbox, self._outbox = self._outbox, {}
        offers, self._offers = self._offers, {}
        pulls, self._pulls = self._pulls, {}
        async with asyncio.TaskGroup() as tg:
            for peer, ids in outbox.items():
                tg.create_task(self._guarded(peer, self._push_ids(peer, ids)))
            for peer, ids in offers.items():
                tg.create_task(self._guarded(peer, self._offer(peer, ids)))
            for peer, ids in pulls.items():
                tg.create_task(self._guarded(peer, self._pull(peer, ids)))

    async def _guarded(self, peer: str, work: object) -> None:
        assert asyncio.iscoroutine(work)
        try:
            await work
        except TransportError as e:
            stats = self.peer(peer)
            stats.errors += 1
            stats.last_error = e.message
            log.debug("gossip with %s failed: %s", peer, e.message)

    async def _push_ids(self, peer: str, ids: Sequence[bytes]) -> None:
        for start in range(0, len(ids), self.settings.fetch_batch):
            chunk = ids[start : start + self.settings.fetch_batch]
            while chunk:
                envelopes = await self.records.envelopes(chunk, MAX_BATCH_BYTES)
                if not envelopes:
                    break
                await self._push(peer, envelopes)
                chunk = chunk[len(envelopes) :] if len(envelopes) < len(chunk) else []

    async def _push(self, peer: str, envelopes: Sequence[bytes]) -> None:
        stats = self.peer(peer)
        stats.messages_sent += 1
        stats.bytes_sent += sum(len(e) for e in envelopes)
        await self.transport.push(peer, envelopes)
        stats.records_sent += len(envelopes)

    async def _offer(self, peer: str, ids: Sequence[bytes]) -> None:
        stats = self.peer(peer)
        for start in range(0, len(ids), MAX_IDS):
            chunk = ids[start : start + MAX_IDS]
            stats.messages_sent += 1
            stats.bytes_sent += 32 * len(chunk)
            await self.transport.offer(peer, chunk)

    async def _pull(self, peer: str, ids: Sequence[bytes]) -> None:
        try:
            await self._fetch_and_apply(peer, ids, gossip=True)
        finally:
            self._queued_pulls.difference_update(ids)

    async def _fetch_and_apply(self, peer: str, ids: Sequence[bytes], *, gossip: bool) -> int:
        """Fetch `ids` from `peer` in batches and apply them; the number of ids settled
        (applied, or found already held or superseded)."""
        settled = 0
        for start in range(0, len(ids), self.settings.fetch_batch):
            chunk = list(ids[start : start + self.settings.fetch_batch])
            while chunk:
                envelopes = await self._fetch(peer, chunk)
                if not envelopes:
                    break  # the peer no longer holds them (replaced meanwhile)
                result = await self.apply(envelopes, peer, gossip=gossip)
                settled += len(result.applied) + result.known + result.stale
                got = {record_id(e) for e in envelopes}
                chunk = [i for i in chunk if i not in got] if len(got) < len(chunk) else []
        return settled

    async def _fetch(self, peer: str, ids: Sequence[bytes]) -> list[bytes]:
        stats = self.peer(peer)
        stats.messages_sent += 1
        stats.bytes_sent += 32 * len(ids)
        envelopes = await self.transport.fetch(peer, ids)
        asked = set(ids)
        if any(record_id(e) not in asked for e in envelopes):
            raise TransportError("answered a fetch with records not asked for", misbehaved=True)
        stats.bytes_received += sum(len(e) for e in envelopes)
        return envelopes

    # --- serving ---------------------------------------------------------------------------

    async def answer_reconcile(self, peer: str, message: bytes) -> bytes:
        """The responder's side: stateless, one message at a time. Raises ProtocolError."""
        storage = await self.records.snapshot(self.settings.responder_staleness_s)
        responder = Reconciler(
            storage, initiator=False, frame_size_limit=self.settings.frame_size_limit
        )
        reply = responder.reconcile(message).reply
        assert reply is not None  # a responder always replies
        self._responding[peer] = self.clock_ms()
        stats = self.peer(peer)
        stats.bytes_received += len(message)
        stats.bytes_sent += len(reply)
        return reply

    async def answer_fetch(self, peer: str, ids: Sequence[bytes]) -> list[bytes]:
        envelopes = await self.records.envelopes(ids, MAX_BATCH_BYTES)
        stats = self.peer(peer)
        stats.records_sent += len(envelopes)
        stats.bytes_sent += sum(len(e) for e in envelopes)
        stats.bytes_received += 32 * len(ids)
        return envelopes

    async def receive_push(self, peer: str, envelopes: Sequence[bytes]) -> ApplyResult:
        self.peer(peer).bytes_received += sum(len(e) for e in envelopes)
        return await self.apply(envelopes, peer)

    # --- anti-entropy ----------------------------------------------------------------------

    def connected(self, peer: str) -> None:
        """A peer (re)connected: reconcile with it before the others."""
        if peer not in self._due:
            self._due.append(peer)
        self._peer_due.set()

    def next_peer(self) -> str | None:
        """Whom to reconcile with next: newly connected peers first, then every reachable peer
        in turn (tree neighbours and others alike)."""
        around = self.neighbours()
        reachable = list(dict.fromkeys([*around.tree, *around.others]))
        while self._due:
            peer = self._due.pop(0)
            if peer in reachable:
                return peer
        if not reachable:
            return None
        self._turn = (self._turn + 1) % len(reachable)
        return reachable[self._turn]

    async def reconcile_with(self, peer: str) -> PeerSync:
        """One whole reconciliation with `peer` as initiator: ids this node lacks are fetched and
        applied while the exchange goes on; ids the peer lacks are pushed (unless the peer is
        reconciling with us meanwhile and fetches them itself). Transport errors end the round
        (recorded, not raised); what was applied stays."""
        stats = self.peer(peer)
        async with self._reconcile_lock:
            stats.reconciliations += 1
            stats.last_reconcile_ms = self.clock_ms()
            try:
                async with asyncio.timeout(self.settings.round_timeout_s):
                    need, have, settled = await self._reconcile(peer, stats)
            except TimeoutError:
                stats.errors += 1
                stats.last_result = "interrupted"
                stats.last_error = f"round took longer than {self.settings.round_timeout_s:.0f} s"
                log.warning("reconciliation with %s: %s", peer, stats.last_error)
                return stats
            except (TransportError, ProtocolError) as e:
                stats.errors += 1
                stats.last_result = "interrupted"
                stats.last_error = e.message
                log.info("reconciliation with %s interrupted: %s", peer, e.message)
                return stats
            # Behind: what the peer held that this node neither took nor found superseded
            # (deferred, refused, or not delivered).
            stats.behind = max(0, len(need) - settled)
            stats.ahead = len(have)
            stats.last_result = "in sync" if not need and not have else "ok"
            stats.last_error = None
            if need or have:
                log.info(
                    "reconciled with %s in %d round trips: settled %d of %d missing, sent %d",
                    peer,
                    stats.round_trips,
                    settled,
                    len(need),
                    len(have),
                )
            return stats

    async def _reconcile(self, peer: str, stats: PeerSync) -> tuple[set[bytes], set[bytes], int]:
        storage = await self.records.snapshot()
        initiator = Reconciler(
            storage, initiator=True, frame_size_limit=self.settings.frame_size_limit
        )
        need: set[bytes] = set()
        have: set[bytes] = set()
        # Fetching runs beside the exchange: ids found missing go to `wanted`, and a worker
        # fetches and applies them in batches while the next messages cross.
        wanted: asyncio.Queue[list[bytes] | None] = asyncio.Queue(maxsize=4)
        settled = 0

        async def fetcher() -> None:
            nonlocal settled
            # Fetch the next batch while earlier ones are verified and written.
            slots = asyncio.Semaphore(APPLY_PIPELINE)

            async def apply(envelopes: list[bytes]) -> None:
                nonlocal settled
                try:
                    result = await self.apply(envelopes, peer, gossip=False)
                    settled += len(result.applied) + result.known + result.stale
                finally:
                    slots.release()

            async with asyncio.TaskGroup() as appliers:
                while (batch := await wanted.get()) is not None:
                    while batch:
                        envelopes = await self._fetch(peer, batch)
                        if not envelopes:
                            if len(batch) >= MIN_UNSERVED_CLAIM:
                                # A few may be replaced since the peer named them; a whole batch
                                # is a peer naming ids it does not have, to keep us busy.
                                raise TransportError(
                                    f"named {len(batch)} records it does not serve",
                                    misbehaved=True,
                                )
                            break
                        got = {record_id(e) for e in envelopes}
                        batch = [i for i in batch if i not in got] if len(got) < len(batch) else []
                        await slots.acquire()
                        appliers.create_task(apply(envelopes))

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fetcher())
                message: bytes | None = initiator.initiate()
                stats.round_trips = 0
                pending: list[bytes] = []
                while message is not None:
                    if stats.round_trips >= self.settings.max_round_trips:
                        raise TransportError("reconciliation did not finish; abandoned")
                    stats.round_trips += 1
                    stats.messages_sent += 1
                    stats.bytes_sent += len(message)
                    reply = await self.transport.reconcile(peer, message)
                    stats.bytes_received += len(reply)
                    step = initiator.reconcile(reply)
                    need.update(step.need)
                    have.update(step.have)
                    pending.extend(step.need)
                    while len(pending) >= self.settings.fetch_batch or (
                        pending and step.reply is None
                    ):
                        batch, pending = (
                            pending[: self.settings.fetch_batch],
                            pending[self.settings.fetch_batch :],
                        )
                        await wanted.put(batch)
                    message = step.reply
                await wanted.put(None)
        except BaseExceptionGroup as group:
            # A TaskGroup reports its tasks' failures as a group: the round's own error (a
            # peer unreachable, a bad message) is what the caller records.
            raise _first_error(group) from group
        # What the peer lacks is pushed, unless the peer is reconciling with us itself right now:
        # then it fetches those very records, and pushing them too would send each twice (and
        # have both copies verified when they cross).
        last = self._responding.get(peer)
        if last is None or self.clock_ms() - last > RESPONDING_MS:
            ours = sorted(have)
            for start in range(0, len(ours), self.settings.fetch_batch):
                await self._push_ids(peer, ours[start : start + self.settings.fetch_batch])
        return need, have, settled

    async def run(self, interval_s: float, local_poll_s: float = 0.5) -> None:
        """The daemon's loop: gossip as soon as there is some, reconcile with one peer every
        `interval_s` (at once with a newly connected one), notice local records."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._gossip_loop(local_poll_s))
            while True:
                self._peer_due.clear()
                peer = self.next_peer()
                wait = interval_s
                if peer is not None:
                    try:
                        stats = await self.reconcile_with(peer)
                        if stats.last_result == "interrupted":
                            wait = min(interval_s, RETRY_SECONDS)  # try the next peer soon
                    except Exception:  # a store failure: say so, keep the node serving
                        log.exception("reconciliation with %s failed", peer)
                if self._due:
                    continue
                try:
                    async with asyncio.timeout(wait):
                        await self._peer_due.wait()
                except TimeoutError:
                    pass

    async def _gossip_loop(self, local_poll_s: float) -> None:
        while True:
            try:
                async with asyncio.timeout(local_poll_s):
                    await self._gossip_ready.wait()
            except TimeoutError:
                pass
            try:
                await self.publish_local()
                await self.flush()
            except Exception:  # a store failure: say so, keep the node serving
                log.exception("gossip failed")
            await asyncio.sleep(0.05)  # gather a burst into one message per peer
