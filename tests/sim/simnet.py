"""Many nodes in one process running the real SyncEngine over a fake network and a fake clock.

Time moves in rounds of `round_ms` virtual milliseconds; nothing sleeps. Round r:

1. nodes whose restart delay ends come back: a new SyncEngine (and, unless one Authority is
   shared, a new Authority) over the same MemoryRecords, which is what a process restart keeps;
2. one-way messages (push, offer) sent in round r - 1 are delivered, unless by now the receiver
   is down or in another partition; their handlers may queue more gossip;
3. every up node runs `publish_local()` then `flush()`: pushes and offers leave (to arrive in
   round r + 1); pulls (fetch) complete at once;
4. on anti-entropy rounds every up node reconciles once with `engine.next_peer()`.

Request/response calls (reconcile, fetch) complete within the round or raise TransportError:
the peer is down or in another partition, or the request or its answer is lost. A lost one-way
message vanishes silently; a push or offer to an unreachable peer raises TransportError, as a
refused connection would. When peers become reachable again (heal, restart) both ends are told
through `engine.connected`, as the daemon's peer table would.

Every request a node makes is counted, with its body bytes as the peer API carries them
(protocol.syncwire bodies; reconcile messages as they are); answers count as bytes of the node
that served them. Lost and refused requests count too: they were sent.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import ark
from protocol.syncwire import encode_envelopes, encode_ids
from sync.authority import Authority
from sync.engine import ApplyResult, Neighbours, SyncEngine, SyncSettings, TransportError
from sync.memory import MemoryRecords
from tests.peer_helpers import Member, certify
from tests.sync.netbuild import NAAN, Library, TestNetwork

__all__ = ["T0", "Message", "SimNet", "SimNode", "SimTransport", "Traffic", "build_network"]

T0 = 1_700_000_000_000  # virtual time at round 0, ms (a plausible HLC wall time)
ROUND_MS = 1_000

Kind = Literal["push", "offer", "fetch", "reconcile"]


@dataclass
class Traffic:
    """What one node sent: requests by kind, and bytes of its requests and of its answers."""

    push: int = 0
    offer: int = 0
    fetch: int = 0
    reconcile: int = 0
    bytes: int = 0

    @property
    def messages(self) -> int:
        return self.push + self.offer + self.fetch + self.reconcile

    def count(self, kind: Kind, size: int) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.bytes += size


@dataclass(frozen=True)
class Message:
    """A one-way message in flight, delivered in round `due`."""

    due: int
    kind: Literal["push", "offer"]
    src: int
    dst: int
    payload: tuple[bytes, ...]


@dataclass
class SimNode:
    index: int
    library: Library
    records: MemoryRecords
    tree: list[int]  # parent and children in the certificate tree
    others: list[int]  # peers outside the tree this node knows
    engine: SyncEngine | None = None  # None while down
    down_until: int | None = None  # the round it comes back, while down
    restarts: int = 0
    traffic: Traffic = field(default_factory=Traffic)

    @property
    def node_id(self) -> str:
        return self.library.node_id

    @property
    def up(self) -> bool:
        return self.engine is not None

    def running(self) -> SyncEngine:
        if self.engine is None:
            raise RuntimeError(f"node {self.index} is down")
        return self.engine


class SimTransport:
    """Node `me`'s side of the fake network (the `Transport` its engines use)."""

    def __init__(self, sim: SimNet, me: int) -> None:
        self.sim = sim
        self.me = me

    async def reconcile(self, peer: str, message: bytes) -> bytes:
        dst = self.sim.request(self.me, peer, "reconcile", len(message))
        reply = (
            await self.sim.nodes[dst].running().answer_reconcile(self.sim.name(self.me), message)
        )
        self.sim.answer(dst, len(reply))
        return reply

    async def fetch(self, peer: str, ids: Sequence[bytes]) -> list[bytes]:
        dst = self.sim.request(self.me, peer, "fetch", len(encode_ids(ids)))
        envelopes = await self.sim.nodes[dst].running().answer_fetch(self.sim.name(self.me), ids)
        self.sim.answer(dst, len(encode_envelopes(envelopes)))
        return envelopes

    async def push(self, peer: str, envelopes: Sequence[bytes]) -> None:
        self.sim.send(self.me, peer, "push", tuple(envelopes))

    async def offer(self, peer: str, ids: Sequence[bytes]) -> None:
        self.sim.send(self.me, peer, "offer", tuple(ids))


class SimNet:
    """The nodes of `net`, each holding a MemoryRecords and (while up) a SyncEngine."""

    def __init__(
        self,
        net: TestNetwork,
        *,
        seed: int = 0,
        others: int | None = None,
        settings: SyncSettings | None = None,
        authority: Authority | None = None,
        round_ms: int = ROUND_MS,
        start_ms: int = T0,
    ) -> None:
        """`others`: how many random peers outside the tree each node knows (None: all).
        `authority`: one Authority shared by every engine (already holding the certificates),
        else each engine gets its own, rebuilt from the store at every start."""
        self.net = net
        self.seed = seed
        self.settings = settings or SyncSettings()
        self.shared_authority = authority
        self.round_ms = round_ms
        self.now = start_ms
        self.round = 0
        self.loss = 0.0
        self.rng = random.Random(seed)  # loss and the choice of other peers
        self.lost = 0  # one-way messages and requests or answers lost
        self.dropped = 0  # one-way messages whose receiver was gone by delivery
        self._in_flight: list[Message] = []
        self._group = [0] * len(net.libraries)
        self._index = {lib.node_id: i for i, lib in enumerate(net.libraries)}
        children: list[list[int]] = [[] for _ in net.libraries]
        for i, lib in enumerate(net.libraries):
            if lib.parent is not None:
                children[lib.parent].append(i)
        self.nodes: list[SimNode] = []
        everyone = range(len(net.libraries))
        for i, lib in enumerate(net.libraries):
            tree = ([] if lib.parent is None else [lib.parent]) + children[i]
            self.nodes.append(SimNode(i, lib, MemoryRecords(), tree, self._others(i, tree, others)))
        self._transports = [SimTransport(self, i) for i in everyone]

    def _others(self, i: int, tree: list[int], count: int | None) -> list[int]:
        n = len(self.net.libraries)
        if count is None or 2 * (count + len(tree) + 1) > n:
            rest = [j for j in range(n) if j != i and j not in tree]
            return rest if count is None or count >= len(rest) else self.rng.sample(rest, count)
        chosen: dict[int, None] = {}  # a few of many: draw until enough distinct
        while len(chosen) < count:
            j = self.rng.randrange(n)
            if j != i and j not in tree:
                chosen[j] = None
        return list(chosen)

    # --- setup and faults ------------------------------------------------------------------

    async def start(self, *, certificates: bool = True) -> None:
        """Start every node; each holds its own certificate chain (applied as its own records)
        unless `certificates` is False."""
        for node in self.nodes:
            await self._boot(node)
            if certificates:
                result = await node.running().apply(self.net.certificates(node.index), None)
                if result.rejected or result.deferred:
                    raise RuntimeError(f"node {node.index} refused its own chain: {result}")

    async def _boot(self, node: SimNode) -> None:
        authority = self.shared_authority
        if authority is None:
            authority = Authority(self.net.root.public_key, self.net.network, NAAN)
        engine = SyncEngine(
            node.records,
            authority,
            self._transports[node.index],
            lambda: self.neighbours(node.index),
            clock_ms=lambda: self.now,
            rng=random.Random(f"{self.seed}/{node.index}/{node.restarts}"),
            settings=self.settings,
        )
        await engine.start()
        node.engine = engine
        node.down_until = None

    def reachable(self, a: int, b: int) -> bool:
        return self.nodes[a].up and self.nodes[b].up and self._group[a] == self._group[b]

    def neighbours(self, i: int) -> Neighbours:
        node = self.nodes[i]
        return Neighbours(
            tree=[self.nodes[j].node_id for j in node.tree if self.reachable(i, j)],
            others=[self.nodes[j].node_id for j in node.others if self.reachable(i, j)],
        )

    def name(self, i: int) -> str:
        return self.nodes[i].node_id

    def index(self, node_id: str) -> int:
        return self._index[node_id]

    def is_up(self, i: int) -> bool:
        return self.nodes[i].up

    def partition(self, groups: Sequence[Collection[int]]) -> None:
        """Cut the network: each of `groups` reaches only itself; nodes in none of them form
        one more group together."""
        self._changing(lambda: self._regroup(groups))

    def _regroup(self, groups: Sequence[Collection[int]]) -> None:
        self._group = [0] * len(self.nodes)
        for g, members in enumerate(groups, start=1):
            for i in members:
                self._group[i] = g

    def heal(self) -> None:
        self._changing(lambda: self._regroup(()))

    def set_loss(self, rate: float) -> None:
        """Each one-way message, request and answer is lost with probability `rate`."""
        self.loss = rate

    def stop(self, i: int, rounds: int) -> None:
        """Take node i down (its engine and everything queued in it are gone) until `rounds`
        rounds have begun; messages reaching it meanwhile are lost."""
        node = self.nodes[i]
        node.engine = None
        node.down_until = self.round + max(rounds, 1)

    async def restart_now(self, i: int) -> None:
        node = self.nodes[i]
        node.engine = None
        await self._come_back(node)

    async def _come_back(self, node: SimNode) -> None:
        before = self._reach()
        node.restarts += 1
        await self._boot(node)
        self._notify(before)

    def _changing(self, change: Callable[[], None]) -> None:
        before = self._reach()
        change()
        self._notify(before)

    def _reach(self) -> list[set[int]]:
        return [{j for j in (*n.tree, *n.others) if self.reachable(n.index, j)} for n in self.nodes]

    def _notify(self, before: list[set[int]]) -> None:
        for node, (old, new) in zip(
            self.nodes, zip(before, self._reach(), strict=True), strict=True
        ):
            if node.engine is not None:
                for j in sorted(new - old):
                    node.engine.connected(self.name(j))

    # --- the network -----------------------------------------------------------------------

    def _lose(self) -> bool:
        if self.loss > 0 and self.rng.random() < self.loss:
            self.lost += 1
            return True
        return False

    def request(self, src: int, peer: str, kind: Kind, size: int) -> int:
        """Count a request from `src`; the peer's index if it arrives, else TransportError."""
        self.nodes[src].traffic.count(kind, size)
        dst = self._index[peer]
        if not self.reachable(src, dst):
            raise TransportError(f"{peer} is unreachable")
        if self._lose():
            raise TransportError(f"{kind} request to {peer} lost")
        return dst

    def answer(self, dst: int, size: int) -> None:
        self.nodes[dst].traffic.bytes += size
        if self._lose():
            raise TransportError("answer lost")

    def send(
        self, src: int, peer: str, kind: Literal["push", "offer"], payload: tuple[bytes, ...]
    ) -> None:
        """A one-way message from `src`, to be delivered next round (unless lost)."""
        size = len(encode_envelopes(payload)) if kind == "push" else len(encode_ids(payload))
        self.nodes[src].traffic.count(kind, size)
        dst = self._index[peer]
        if not self.reachable(src, dst):
            raise TransportError(f"{peer} is unreachable")
        if self._lose():
            return
        self._in_flight.append(Message(self.round + 1, kind, src, dst, payload))

    def in_flight(self) -> int:
        return len(self._in_flight)

    # --- running ---------------------------------------------------------------------------

    async def write(self, i: int, envelope: bytes) -> ApplyResult:
        """A record written at node i (ingest, edit, deletion): applied as its own."""
        return await self.nodes[i].running().apply([envelope], None)

    async def step(self, *, anti_entropy: bool = False) -> None:
        """One round (see the module docstring)."""
        self.round += 1
        self.now += self.round_ms
        for node in self.nodes:
            if node.down_until is not None and node.down_until <= self.round:
                await self._come_back(node)
        due = [m for m in self._in_flight if m.due <= self.round]
        self._in_flight = [m for m in self._in_flight if m.due > self.round]
        for m in due:
            engine = self.nodes[m.dst].engine
            if engine is None or self._group[m.src] != self._group[m.dst]:
                self.dropped += 1
                continue
            if m.kind == "push":
                await engine.receive_push(self.name(m.src), m.payload)
            else:
                await engine.receive_offer(self.name(m.src), m.payload)
        for node in self.nodes:
            if node.engine is not None:
                await node.engine.publish_local()
                await node.engine.flush()
        if anti_entropy:
            for node in self.nodes:
                if node.engine is not None:
                    peer = node.engine.next_peer()
                    if peer is not None:
                        await node.engine.reconcile_with(peer)

    async def run(self, rounds: int, *, anti_entropy_every: int = 0) -> None:
        for _ in range(rounds):
            await self.step(
                anti_entropy=anti_entropy_every > 0 and (self.round + 1) % anti_entropy_every == 0
            )

    async def settle(self, max_rounds: int) -> int | None:
        """Heal, stop losing messages, bring every node back, then run rounds with anti-entropy
        until every node holds the same set and nothing is in flight: the rounds that took, or
        None if `max_rounds` were not enough."""
        self.heal()
        self.set_loss(0.0)
        for node in self.nodes:
            if node.engine is None:
                await self._come_back(node)
        for taken in range(1, max_rounds + 1):
            await self.step(anti_entropy=True)
            if not self._in_flight and await self.converged():
                return taken
        return None

    # --- observing -------------------------------------------------------------------------

    async def fingerprint(self, i: int) -> bytes:
        """The fingerprint of node i's whole set."""
        snapshot = await self.nodes[i].records.snapshot()
        return snapshot.fingerprint(0, snapshot.size())

    def ids(self, i: int) -> set[bytes]:
        return set(self.nodes[i].records.by_id)

    async def converged(self) -> bool:
        first = await self.fingerprint(0)
        return all([await self.fingerprint(i) == first for i in range(1, len(self.nodes))])

    def holders(self, record_id: bytes) -> int:
        return sum(record_id in n.records.by_id for n in self.nodes)

    def messages(self) -> int:
        return sum(n.traffic.messages for n in self.nodes)

    def bytes(self) -> int:
        return sum(n.traffic.bytes for n in self.nodes)


# --- uneven trees ----------------------------------------------------------------------------


def _key(seed: int, name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest())


def _code(n: int) -> str:
    """Two characters of the ARK alphabet for n < 841."""
    return ark.ALPHABET[n // len(ark.ALPHABET)] + ark.ALPHABET[n % len(ark.ALPHABET)]


def _spread(total: int, parts: int) -> list[int]:
    """`total` split into `parts` counts differing by at most one, larger first."""
    each, extra = divmod(total, parts)
    return [each + (1 if k < extra else 0) for k in range(parts)]


def build_network(
    provincial: int, municipal: int, county: int, *, seed: int = 0, not_before_ms: int = T0
) -> TestNetwork:
    """National + `provincial` + `municipal` + `county` libraries, municipal ones spread over
    the provinces and counties over the municipal ones as evenly as possible (what
    `TestNetwork.build`, with its uniform counts, cannot do). Deterministic keys."""
    root = Member(_key(seed, "root"), ())
    net = TestNetwork(root)
    nid = net.network

    def add(
        issuer: Member, name: str, code: str, tier: str, region: str, parent: int | None
    ) -> int:
        member = certify(
            issuer, _key(seed, name), nid, name=name, code=code, tier=tier, region=region,
            not_before_ms=not_before_ms, not_after_ms=not_before_ms + 3650 * 86_400_000,
        )  # fmt: skip
        net.libraries.append(Library(member, code, tier, region, parent))
        return len(net.libraries) - 1

    national = add(root, "national", "zg", "national", "000000", None)
    per_province = _spread(municipal, provincial)
    per_municipal = iter(_spread(county, municipal))
    for p in range(provincial):
        prov = add(root, f"p{p}", f"p{_code(p)}", "provincial", f"{11 + p:02d}0000", national)
        for m in range(per_province[p]):
            region = f"{11 + p:02d}{1 + m:02d}"
            muni = add(
                net.libraries[prov].member, f"p{p}m{m}", f"m{_code(p)}{_code(m)}", "municipal",
                f"{region}00", prov,
            )  # fmt: skip
            for c in range(next(per_municipal)):
                add(
                    net.libraries[muni].member, f"p{p}m{m}c{c}",
                    f"c{_code(p)}{_code(m)}{_code(c)}", "county", f"{region}{1 + c:02d}", muni,
                )  # fmt: skip
    return net
