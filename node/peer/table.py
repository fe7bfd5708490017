"""The peer table: every address this node knows for other members, and how talking to each went.

Pure state: the service calls it with the time and the outcome of each hello. An entry is keyed
by URL (the same node may answer at two); the node behind a URL is known after its first hello.

States:
    new        known, never dialed yet
    connected  the last hello succeeded
    failed     unreachable or timed out; retried with exponential back-off
    rejected   answered but refused us or failed our checks (revoked, wrong network, bad
               signature); retried slowly: the cause is usually an admin's to fix
    self       this node's own address (found by discovery or exchange); never dialed
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BACKOFF_MAX_MS", "Peer", "PeerTable"]

BACKOFF_BASE_MS = 2_000
BACKOFF_MAX_MS = 300_000
REJECTED_RETRY_MS = 600_000
SOURCES = ("configured", "zeroconf", "exchange")


@dataclass
class Peer:
    url: str
    source: str
    state: str = "new"
    node_id: str | None = None
    name: str | None = None
    tier: str | None = None
    region: str | None = None
    last_seen_ms: int | None = None
    rtt_ms: float | None = None
    failures: int = 0
    last_error: str | None = None
    next_attempt_ms: int = 0
    address: bytes | None = None  # the node's signed address record (envelope), for exchange
    address_issued_ms: int = 0


class PeerTable:
    def __init__(self, max_peers: int) -> None:
        self.max_peers = max_peers
        self.peers: dict[str, Peer] = {}

    def add(self, url: str, source: str, now_ms: int) -> Peer | None:
        """Know `url` (from config, discovery or another node). Configured peers are always
        kept; others only while the table has room, or by displacing a failing exchanged one."""
        assert source in SOURCES
        peer = self.peers.get(url)
        if peer is not None:
            # A stronger source wins the label: configured > zeroconf (seen on our LAN) >
            # exchange (heard from another node).
            if SOURCES.index(source) < SOURCES.index(peer.source):
                peer.source = source
            return peer
        # With only configured peers left, the table may exceed max_peers by them rather than
        # drop one silently: node.toml bounds their number (the parent + 64 URLs).
        full = len(self.peers) >= self.max_peers
        if full and not self._make_room(source) and source != "configured":
            return None
        peer = Peer(url=url, source=source, next_attempt_ms=now_ms)
        self.peers[url] = peer
        return peer

    def _make_room(self, source: str) -> bool:
        victims = [
            p
            for p in self.peers.values()
            if p.source != "configured" and p.state in ("failed", "rejected", "new")
        ]
        if not victims and source == "configured":
            victims = [p for p in self.peers.values() if p.source != "configured"]
        if not victims:
            return False
        worst = max(victims, key=lambda p: (p.state != "new", p.failures, -(p.last_seen_ms or 0)))
        del self.peers[worst.url]
        return True

    def due(self, now_ms: int, busy: set[str]) -> list[Peer]:
        return sorted(
            (
                p
                for p in self.peers.values()
                if p.state != "self" and p.url not in busy and p.next_attempt_ms <= now_ms
            ),
            key=lambda p: (p.source != "configured", p.next_attempt_ms),
        )

    def succeeded(
        self,
        url: str,
        *,
        node_id: str,
        name: str,
        tier: str,
        region: str,
        rtt_ms: float,
        now_ms: int,
        interval_ms: int,
    ) -> None:
        peer = self.peers.get(url)
        if peer is None:
            return
        peer.state, peer.node_id, peer.name, peer.tier, peer.region = (
            "connected",
            node_id,
            name,
            tier,
            region,
        )
        peer.last_seen_ms, peer.rtt_ms, peer.failures, peer.last_error = now_ms, rtt_ms, 0, None
        peer.next_attempt_ms = now_ms + interval_ms

    def failed(self, url: str, error: str, now_ms: int, jitter: float) -> None:
        """A hello that did not get through; back off 2 s, 4 s, … up to 5 min, ±`jitter`
        (a fraction in [0, 1) from the caller's random source) so nodes do not retry in step."""
        peer = self.peers.get(url)
        if peer is None:
            return
        peer.failures += 1
        peer.state, peer.last_error = "failed", error
        delay = min(BACKOFF_BASE_MS * 2 ** min(peer.failures - 1, 20), BACKOFF_MAX_MS)
        peer.next_attempt_ms = now_ms + int(delay * (0.75 + 0.5 * jitter))

    def rejected(self, url: str, error: str, now_ms: int, node_id: str | None = None) -> None:
        peer = self.peers.get(url)
        if peer is None:
            return
        peer.failures += 1
        peer.state, peer.last_error = "rejected", error
        if node_id:
            peer.node_id = node_id
        peer.next_attempt_ms = now_ms + REJECTED_RETRY_MS

    def is_self(self, url: str, node_id: str) -> None:
        peer = self.peers.get(url)
        if peer is not None:
            peer.state, peer.node_id = "self", node_id

    def learn_address(
        self,
        envelope: bytes,
        node_id: str,
        urls: tuple[str, ...],
        issued_ms: int,
        now_ms: int,
        own_id: str,
    ) -> None:
        """A verified address record of `node_id`: keep the newest, know its URLs."""
        for url in urls:
            peer = self.add(url, "exchange", now_ms)
            if peer is None:
                continue
            if node_id == own_id:
                peer.state, peer.node_id = "self", node_id
            if peer.node_id not in (None, node_id):
                continue  # another node answers at this URL: its word about it, not this one's
            if issued_ms >= peer.address_issued_ms:
                peer.address, peer.address_issued_ms = envelope, issued_ms
                peer.node_id = peer.node_id or node_id

    def addresses(self, limit: int) -> list[bytes]:
        """Signed addresses to pass on: the most recently seen connected peers first."""
        known = [p for p in self.peers.values() if p.address is not None and p.state == "connected"]
        known.sort(key=lambda p: -(p.last_seen_ms or 0))
        out: list[bytes] = []
        seen: set[bytes] = set()
        for p in known:
            if len(out) >= limit:
                break
            assert p.address is not None
            if p.address not in seen:
                seen.add(p.address)
                out.append(p.address)
        return out

    def snapshot(self) -> list[Peer]:
        return sorted(self.peers.values(), key=lambda p: (p.state != "connected", p.url))
