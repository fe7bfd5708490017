"""Catalogue sync in the daemon: sync.engine over the node's store and the signed peer API.

Routes (POST, signed like every peer request, answered only to admitted members):

    /peer/v1/sync/reconcile   a protocol.reconcile message → the responder's reply (stateless)
    /peer/v1/sync/fetch       ids (protocol.syncwire) → the envelopes held among them, bounded
    /peer/v1/sync/push        envelopes → [applied, known, stale, deferred, rejected]
    /peer/v1/sync/offer       ids → [queued]: the receiver pulls those it lacks, later
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from node.peer.membership import Admitted
from node.peer.server import PeerHandler
from node.peer.service import Peering
from protocol.errors import ChainError, ProtocolError
from protocol.membership import Revocation
from protocol.reconcile import MAX_MESSAGE_BYTES
from protocol.records import canonical_pack, encode_envelope
from protocol.syncwire import (
    MAX_BODY_BYTES,
    decode_envelopes,
    decode_ids,
    encode_envelopes,
    encode_ids,
)
from storage.store import Store
from sync.authority import Authority
from sync.engine import Neighbours, SyncEngine, SyncSettings, TransportError
from sync.records import SyncRecord
from sync.store import StoreRecords

__all__ = ["CatalogueSync"]

log = logging.getLogger(__name__)

PATH = "/peer/v1/sync/"
MAX_RANDOM_PEERS = 32  # "others" offered to gossip's random choice
CALL_TIMEOUT_SECONDS = 60.0  # one sync request and its answer (up to ~8 MiB)


class CatalogueSync:
    def __init__(
        self, peering: Peering, store: Store, *, interval_s: float, settings: SyncSettings
    ) -> None:
        self.peering = peering
        self.store = store
        self.interval_s = interval_s
        network = peering.network
        self.authority = Authority(
            network.root_public_key,
            network.id,
            network.ark_naan,
            frozenset(network.catalogue_authorities),
        )
        self.engine = SyncEngine(
            StoreRecords(store),
            self.authority,
            _HttpTransport(self),
            self.neighbours,
            clock_ms=peering.clock_ms,
            settings=settings,
            on_applied=self._applied,
            on_rejected=self._rejected,
        )
        peering.on_connected = self._connected
        # Called when records that content replication plans from arrive (catalogue,
        # holdings, policy, certificates).
        self.on_change: Callable[[], None] | None = None

    async def start(self) -> None:
        await self.engine.start()
        # This node's own chain joins the set: it is how other nodes come to judge its records.
        own = [encode_envelope(c) for c in self.peering.membership.own_chain]
        await self.engine.apply(own, None)

    async def run(self) -> None:
        await self.engine.run(self.interval_s)

    # --- wiring ----------------------------------------------------------------------------

    def neighbours(self) -> Neighbours:
        tree: list[str] = []
        others: list[str] = []
        for node, _ in self.peering.connected_peers().items():
            try:
                admitted = self.peering.membership.cached(node)
            except ChainError:
                continue
            if admitted is None:
                continue
            leaf = admitted.leaf
            if self.peering.is_tree_neighbour(leaf.subject, leaf.issuer):
                tree.append(node)
            elif len(others) < MAX_RANDOM_PEERS:
                others.append(node)
        return Neighbours(tree, others)

    async def _connected(self, admitted: Admitted) -> None:
        # The peer's chain was just verified: its certificates join the set (no gossip: they
        # are old news for everyone else), and the peer is reconciled with first.
        chain = [encode_envelope(c) for c in admitted.chain]
        await self.engine.apply(chain, None, gossip=False)
        self.engine.connected(admitted.leaf.subject.node_id)
        if self.on_change is not None:
            self.on_change()  # a holder may be reachable now

    async def _applied(self, records: Sequence[SyncRecord]) -> None:
        if self.on_change is not None:
            self.on_change()
        for record in records:
            if isinstance(record.body, Revocation):
                try:
                    await self.peering.membership.add_revocation(record.signed)
                except ProtocolError as e:  # held by sync, judged stricter for peering
                    log.info("revocation not applied to peering: %s", e.message)

    def _rejected(self, sender: str, code: str) -> None:
        self.peering.rejections.add(sender, code)
        self.peering.events.record("warning", "records-refused", f"refused: {code}", node=sender)

    # --- serving ---------------------------------------------------------------------------

    async def handle_reconcile(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        return 200, await self.engine.answer_reconcile(sender.leaf.subject.node_id, body)

    async def handle_fetch(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        envelopes = await self.engine.answer_fetch(sender.leaf.subject.node_id, decode_ids(body))
        return 200, encode_envelopes(envelopes)

    async def handle_push(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        result = await self.engine.receive_push(sender.leaf.subject.node_id, decode_envelopes(body))
        counts = [
            len(result.applied),
            result.known,
            result.stale,
            result.deferred,
            result.rejected,
        ]
        return 200, canonical_pack(counts)

    async def handle_offer(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        queued = await self.engine.receive_offer(sender.leaf.subject.node_id, decode_ids(body))
        return 200, canonical_pack([queued])

    def routes(self) -> list[tuple[str, int, PeerHandler]]:
        """(path, body limit, handler) of each sync route."""
        return [
            (PATH + "reconcile", MAX_MESSAGE_BYTES, self.handle_reconcile),
            (PATH + "fetch", 256 * 1024, self.handle_fetch),
            (PATH + "push", MAX_BODY_BYTES, self.handle_push),
            (PATH + "offer", 256 * 1024, self.handle_offer),
        ]

    # --- admin -----------------------------------------------------------------------------

    async def state(self) -> dict[str, object]:
        names = {
            p.node_id: (p.name, p.url, p.tier)
            for p in self.peering.table.peers.values()
            if p.node_id
        }
        peers = []
        for stats in sorted(self.engine.peers.values(), key=lambda s: s.peer):
            name, url, tier = names.get(stats.peer, (None, None, None))
            peers.append({**stats.to_json(), "name": name, "url": url, "tier": tier})
        counts = await self.store.sync.counts()
        return {
            "records": counts,
            "total": sum(counts.values()),
            "behind": self.engine.behind(),
            "interval_seconds": self.interval_s,
            "peers": peers,
        }


class _HttpTransport:
    def __init__(self, sync: CatalogueSync) -> None:
        self.sync = sync

    async def _call(self, peer: str, route: str, body: bytes, max_answer: int) -> bytes:
        try:
            return await self.sync.peering.call_member(
                peer, PATH + route, body, max_answer=max_answer, timeout_s=CALL_TIMEOUT_SECONDS
            )
        except TransportError as e:
            level = "error" if e.misbehaved else "warning"
            self.sync.peering.events.record(level, "sync-error", f"{route}: {e.message}", node=peer)
            raise

    async def reconcile(self, peer: str, message: bytes) -> bytes:
        return await self._call(peer, "reconcile", message, MAX_MESSAGE_BYTES + 1024)

    async def fetch(self, peer: str, ids: Sequence[bytes]) -> list[bytes]:
        answer = await self._call(peer, "fetch", encode_ids(ids), MAX_BODY_BYTES)
        try:
            return decode_envelopes(answer)
        except ProtocolError as e:
            raise TransportError(f"fetch answer: {e.message}", misbehaved=True) from e

    async def push(self, peer: str, envelopes: Sequence[bytes]) -> None:
        await self._call(peer, "push", encode_envelopes(envelopes), 4096)

    async def offer(self, peer: str, ids: Sequence[bytes]) -> None:
        await self._call(peer, "offer", encode_ids(ids), 4096)
