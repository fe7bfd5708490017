"""The peer service: says hello to every peer in the table on a schedule (bounded dialing, back-off
on failure), answers hellos, passes on addresses and revocations, keeps the table on disk."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.config import Config
from node.events import Events
from node.keys import Identity
from node.network import NetworkDescription
from node.peer.client import (
    HelloOutcome,
    PeerClient,
    PeerError,
    PeerMisbehavedError,
    PeerRefusedError,
    PeerUnreachableError,
)
from node.peer.membership import Admitted, MembershipView
from node.peer.server import PeerServer, Rejections
from node.peer.table import Peer, PeerTable
from protocol.errors import ProtocolError
from protocol.identity import node_id
from protocol.membership import NodeInfo
from protocol.peering import (
    MAX_ADDRESSES,
    AddressRecord,
    HelloMessage,
    decode_address,
    decode_hello,
    derive_session,
    encode_hello,
    sign_address,
    x25519_public,
)
from protocol.records import canonical_pack, decode_envelope, encode_envelope
from storage.membership import PeerRow
from storage.store import Store
from sync.engine import TransportError

__all__ = ["Peering", "peer_json"]

log = logging.getLogger(__name__)

MAX_CONCURRENT_DIALS = 8
HELLO_TIMEOUT_SECONDS = 10.0
TICK_SECONDS = 0.5
SAVE_EVERY_SECONDS = 10.0
RELOAD_EVERY_SECONDS = 5.0
ADDRESS_REFRESH_MS = 3_600_000
MAX_ADDRESS_AHEAD_MS = 600_000  # an address dated further ahead would pin itself in tables
MAX_NEW_ADDRESSES = 16  # unknown URLs taken from one hello
MAX_NEW_REVOCATIONS = 256  # revocations verified per hello (already held ones cost nothing)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Peering:
    """Everything the daemon does with peers; the admin API and the peer routes read it."""

    config: Config
    identity: Identity
    network: NetworkDescription
    membership: MembershipView
    store: Store
    clock_ms: Callable[[], int] = _now_ms
    rejections: Rejections = field(default_factory=Rejections)
    events: Events = field(default_factory=Events)  # the daemon shares NodeContext.events
    # Called when a peer becomes connected (catalogue sync reconciles with it at once).
    on_connected: Callable[[Admitted], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.table = PeerTable(self.config.max_peers)
        self.server = PeerServer(
            self.identity.key,
            self.membership,
            self.rejections,
            max_body=self.config.max_body_bytes,
            clock=lambda: self.clock_ms() / 1000,
        )
        self._address = self._sign_address()
        self._busy: set[str] = set()
        self.own_problem: str | None = None  # why our own chain does not admit us, if it does not
        self.client: PeerClient | None = None  # set while `run` runs
        self._random = random.Random()  # noqa: S311  (back-off jitter, not a secret)

    # --- what we say ---------------------------------------------------------------------------

    def _sign_address(self) -> tuple[bytes, int]:
        issued = self.clock_ms()
        record = AddressRecord(
            self.network.id, self.identity.public_key, (self.config.public_url,), issued
        )
        return encode_envelope(sign_address(record, self.identity.key)), issued

    def own_hello(self) -> HelloMessage:
        if self.clock_ms() - self._address[1] > ADDRESS_REFRESH_MS:
            self._address = self._sign_address()
        return HelloMessage(
            network=self.network.id,
            chain=self.membership.own_chain,
            address=decode_envelope(self._address[0]),
            peers=tuple(decode_envelope(a) for a in self.table.addresses(MAX_ADDRESSES)),
            revocations=tuple(self.membership.revocation_records()),
        )

    # --- what we hear --------------------------------------------------------------------------

    async def absorb(self, hello: HelloMessage, sender: Admitted) -> None:
        """Learn from a verified member's hello. Each record inside is checked on its own; a
        bad one is skipped and counted against the sender, the rest still count. Work per
        hello is bounded: at most MAX_NEW_ADDRESSES unknown URLs and MAX_NEW_REVOCATIONS
        revocations not already held are looked at; the rest come with the next hello."""
        who = sender.leaf.subject.node_id
        now = self.clock_ms()
        own = self.identity.node_id
        new_urls = 0
        for i, signed in enumerate((hello.address, *hello.peers)):
            try:
                address = decode_address(signed)
                if address.network != self.network.id:
                    raise ProtocolError("address record of another network")
                if i == 0 and address.node != sender.leaf.subject.public_key:
                    raise ProtocolError("hello carries someone else's address as its own")
                if address.issued_ms > now + MAX_ADDRESS_AHEAD_MS:
                    raise ProtocolError("address record dated in the future")
            except ProtocolError as e:
                log.warning("bad address record from %s: %s", who, e.message)
                self.rejections.add(who, "bad-address")
                continue
            unknown = [u for u in address.urls if u not in self.table.peers]
            if i > 0 and unknown:
                if new_urls >= MAX_NEW_ADDRESSES:
                    continue
                new_urls += len(unknown)
            self.table.learn_address(
                encode_envelope(signed),
                node_id(address.node),
                address.urls,
                address.issued_ms,
                now,
                own,
            )
        news = looked = 0
        for signed in hello.revocations:
            if looked >= MAX_NEW_REVOCATIONS:
                break
            try:
                added = await self.membership.add_revocation(signed)
            except ProtocolError as e:
                log.warning("revocation from %s not taken: %s", who, e.message)
                self.rejections.add(who, "bad-revocation")
                added = False
            looked += self.membership.verified_last
            news += added
        if news:
            self.recheck_peers()

    def recheck_peers(self) -> None:
        """After news of revocations: stop counting revoked nodes as connected right away."""
        now = self.clock_ms()
        for peer in self.table.snapshot():
            if peer.state != "connected" or peer.node_id is None:
                continue
            try:
                self.membership.cached(peer.node_id)
            except ProtocolError as e:
                log.warning(
                    "peer %s (%s) is no longer admitted: %s", peer.name, peer.url, e.message
                )
                self.table.rejected(peer.url, f"{e.code}: {e.message}", now)

    async def handle_hello(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        hello = decode_hello(body)
        await self.absorb(hello, sender)
        # The revocations the caller brought may revoke the caller itself.
        self.membership.cached(sender.leaf.subject.node_id)
        answer = self.own_hello()
        if hello.session_key:  # the caller offers a session: take it up
            ephemeral = X25519PrivateKey.generate()
            offer = x25519_public(ephemeral)
            key = derive_session(
                ephemeral,
                hello.session_key,
                client=sender.leaf.subject.public_key,
                server=self.identity.public_key,
                client_offer=hello.session_key,
                server_offer=offer,
            )
            self.server.sessions.add(key, sender.leaf.subject.node_id, self.clock_ms() / 1000)
            answer = dataclasses.replace(answer, session_key=offer)
        return 200, encode_hello(answer)

    async def handle_ping(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        """A cheap signed round trip (latency probes, benchmarks): who answers, and when."""
        return 200, canonical_pack([self.identity.node_id, self.clock_ms()])

    # --- dialing -------------------------------------------------------------------------------

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Dial until cancelled; one TaskGroup owns every hello in flight."""
        await self.load()
        client = PeerClient(
            session,
            self.identity.key,
            self.membership.own_chain,
            self.membership,
            clock=lambda: self.clock_ms() / 1000,
        )
        self.client = client
        limit = asyncio.Semaphore(MAX_CONCURRENT_DIALS)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._save_loop())
            tg.create_task(self._reload_loop())
            while True:
                due = [] if self.own_problem else self.table.due(self.clock_ms(), self._busy)
                for peer in due:
                    if len(self._busy) >= MAX_CONCURRENT_DIALS:
                        break
                    self._busy.add(peer.url)
                    tg.create_task(self._dial(client, peer, limit))
                await asyncio.sleep(TICK_SECONDS)

    async def load(self) -> None:
        await self.membership.load()
        now = self.clock_ms()
        for row in await self.store.membership.load_peers():
            if row.source == "configured":
                continue  # configured peers come from node.toml, which may have changed
            peer = self.table.add(row.url, row.source, now)
            if peer is not None:
                peer.node_id, peer.name, peer.tier, peer.region = (
                    row.node_id,
                    row.name,
                    row.tier,
                    row.region,
                )
                peer.last_seen_ms, peer.address = row.last_seen_ms, row.address
        for url in (self.config.parent, *self.config.peers):
            if url:
                self.table.add(url, "configured", now)

    async def _dial(self, client: PeerClient, peer: Peer, limit: asyncio.Semaphore) -> None:
        url, before = peer.url, peer.state
        try:
            async with limit:
                try:
                    async with asyncio.timeout(HELLO_TIMEOUT_SECONDS):
                        outcome = await client.hello(url, self.own_hello(), peer.node_id)
                except TimeoutError:
                    self.table.failed(url, "timed out", self.clock_ms(), self._random.random())
                    return
                except PeerUnreachableError as e:
                    self.table.failed(url, e.message, self.clock_ms(), self._random.random())
                    log.debug("peer %s unreachable: %s", url, e.message)
                    return
                except PeerRefusedError as e:
                    if e.problem_code == "wrong-receiver":
                        # Another node answers at this URL now: forget who we thought it was.
                        peer.node_id = None
                        self.table.failed(url, e.message, self.clock_ms(), self._random.random())
                        return
                    log.warning("peer %s refused us: %s", url, e.message)
                    self.table.rejected(url, e.message, self.clock_ms())
                    return
                except PeerMisbehavedError as e:
                    log.warning("peer %s failed our checks: %s", url, e.message)
                    self.rejections.add(url, e.problem_code)
                    self.table.rejected(url, e.message, self.clock_ms())
                    return
                await self._connected(url, outcome)
        finally:
            self._busy.discard(url)
            self.events.peer_state(peer.name or url, before, peer.state, peer.last_error)

    async def _connected(self, url: str, outcome: HelloOutcome) -> None:
        subject = outcome.admitted.leaf.subject
        now = self.clock_ms()
        if subject.node_id == self.identity.node_id:
            self.table.is_self(url, subject.node_id)
            return
        if url == self.config.parent and not self._is_parent(subject):
            # Configured as our parent but not the node that certified us: tell the admin.
            message = f"answers as {subject.name} ({subject.node_id}), not our parent library"
            log.warning("parent %s %s", url, message)
            self.table.rejected(url, message, now, subject.node_id)
            return
        was = self.table.peers.get(url)
        newly = was is None or was.state != "connected"
        if newly:
            log.info(
                "connected to %s (%s, %s) at %s", subject.name, subject.tier, subject.node_id, url
            )
        await self.absorb(outcome.hello, outcome.admitted)
        self.table.succeeded(
            url,
            node_id=subject.node_id,
            name=subject.name,
            tier=subject.tier,
            region=subject.region,
            rtt_ms=outcome.rtt_ms,
            now_ms=now,
            interval_ms=self.config.hello_interval_seconds * 1000,
        )
        if newly and self.on_connected is not None:
            await self.on_connected(outcome.admitted)

    def connected_peers(self) -> dict[str, Peer]:
        """node id → a connected peer table entry (one URL per node)."""
        out: dict[str, Peer] = {}
        for peer in self.table.peers.values():
            if peer.state == "connected" and peer.node_id and peer.node_id not in out:
                out[peer.node_id] = peer
        return out

    async def call_member(
        self, node: str, path: str, body: bytes, *, max_answer: int, timeout_s: float
    ) -> bytes:
        """A signed request to a connected member and its verified answer; every failure is a
        sync.engine.TransportError (misbehaved=True when the member broke the protocol), the
        one error catalogue sync and content transfers expect of the peer API."""
        client = self.client
        if client is None:
            raise TransportError("the peer client is not running")
        peer = self.connected_peers().get(node)
        admitted = self.membership.cached(node) if peer is not None else None
        if peer is None or admitted is None:
            raise TransportError(f"node {node} is not connected")
        url = peer.url
        try:
            async with asyncio.timeout(timeout_s):
                return await client.call(
                    url, path, body, admitted.leaf.subject.public_key, max_answer=max_answer
                )
        except PeerMisbehavedError as e:
            raise TransportError(e.message, misbehaved=True) from e
        except PeerError as e:
            raise TransportError(e.message) from e
        except TimeoutError as e:
            raise TransportError(f"{url}: no answer within {timeout_s:.0f} s") from e
        except aiohttp.ClientError as e:
            raise TransportError(f"{url}: {e}") from e

    def is_tree_neighbour(self, subject: NodeInfo, issuer: bytes) -> bool:
        """Whether a member (its certificate's subject and issuer) is this node's parent or
        child in the gossip tree: certificates draw it, and the national node stands above the
        nodes the root certified."""
        own = self.membership.own_leaf
        if issuer == self.identity.public_key or own.issuer == subject.public_key:
            return True
        root = self.network.root_public_key
        tiers = {own.subject.tier, subject.tier}
        return own.issuer == root and issuer == root and tiers == {"national", "provincial"}

    def _is_parent(self, subject: NodeInfo) -> bool:
        """The node that certified us; for nodes the root certified, the national node."""
        issuer = self.membership.own_leaf.issuer
        if issuer == self.network.root_public_key:
            return subject.tier == "national"
        return subject.public_key == issuer

    def add_discovered(self, url: str) -> None:
        """A URL found by zeroconf: dial it soon (the hello decides whether it is a member)."""
        self.table.add(url, "zeroconf", self.clock_ms())

    # --- persistence ---------------------------------------------------------------------------

    async def save(self) -> None:
        await self.store.membership.save_peers(
            [
                PeerRow(
                    url=p.url,
                    node_id=p.node_id,
                    name=p.name,
                    tier=p.tier,
                    region=p.region,
                    source=p.source,
                    state=p.state,
                    last_seen_ms=p.last_seen_ms,
                    rtt_ms=p.rtt_ms,
                    failures=p.failures,
                    last_error=p.last_error,
                    address=p.address,
                )
                for p in self.table.snapshot()
            ]
        )

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY_SECONDS)
            await self.save()

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_EVERY_SECONDS)
            if await self.membership.load():
                log.info("new revocations loaded from the store")
                self.recheck_peers()
            self.check_own()

    def check_own(self) -> None:
        """Our own certificate may expire or be revoked while we run: then stop dialing (peers
        would refuse us anyway) and say so, once, in the log and in status."""
        try:
            self.membership.check_own()
        except ProtocolError as e:
            if self.own_problem != e.message:
                log.error("this node's certificate chain is not valid (%s): not dialing", e.message)
            self.own_problem = e.message
            return
        if self.own_problem is not None:
            log.info("this node's certificate chain is valid again")
        self.own_problem = None


def peer_json(peering: Peering) -> dict[str, object]:
    """What /admin/api/v1/peers and `siku peers` show."""
    now = peering.clock_ms()
    return {
        "network": {"name": peering.network.name, "id": peering.network.id},
        "peers": [
            {
                "url": p.url,
                "node_id": p.node_id,
                "name": p.name,
                "tier": p.tier,
                "region": p.region,
                "source": p.source,
                "state": p.state,
                "last_seen_ms": p.last_seen_ms,
                "last_seen_ago_s": round((now - p.last_seen_ms) / 1000, 1)
                if p.last_seen_ms
                else None,
                "rtt_ms": round(p.rtt_ms, 2) if p.rtt_ms is not None else None,
                "failures": p.failures,
                "last_error": p.last_error,
                "next_attempt_in_s": max(0.0, round((p.next_attempt_ms - now) / 1000, 1)),
                "rejected_requests": peering.rejections.total(p.node_id or p.url),
            }
            for p in peering.table.snapshot()
        ],
        "rejections": {
            "by_code": dict(peering.rejections.by_code),
            "by_caller": {k: dict(v) for k, v in peering.rejections.by_caller.items()},
        },
    }
