"""What this node believes about membership right now: the network root, its own chain, the
revocations it holds, and the chains of callers it has already checked (a bounded cache)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from node.network import NetworkDescription
from protocol.errors import ChainError, WrongNetworkError
from protocol.identity import node_id
from protocol.membership import (
    KIND_REVOCATION,
    Certificate,
    Revocation,
    decode_certificate,
    decode_revocation,
    verify_chain,
)
from protocol.peering import MAX_REVOCATIONS
from protocol.records import SignedRecord, decode_envelope, encode_envelope
from storage.store import Store

__all__ = ["Admitted", "MembershipView"]

log = logging.getLogger(__name__)

MAX_CACHED_CHAINS = 4_096
# A provincial library certifies a few dozen municipal and county libraries: an issuer with
# more revocations than this is not acting in good faith.
MAX_REVOCATIONS_PER_ISSUER = 256
# A cached verdict is re-derived this often even without news, so expiry is noticed.
RECHECK_MS = 60_000


@dataclass(frozen=True)
class Admitted:
    leaf: Certificate
    chain: tuple[SignedRecord, ...]
    checked_ms: int
    generation: int  # the revocation generation it was checked against


class MembershipView:
    def __init__(
        self,
        network: NetworkDescription,
        own_chain: list[SignedRecord],
        store: Store,
        clock: Callable[[], int],
    ) -> None:
        self.network = network
        self.root = network.root_public_key
        self.own_chain = tuple(own_chain)
        self.store = store
        self.clock = clock
        self._revocations: dict[tuple[bytes, bytes], tuple[Revocation, SignedRecord]] = {}
        self._generation = 0
        self._cache: OrderedDict[str, Admitted] = OrderedDict()

    @property
    def own_leaf(self) -> Certificate:
        return decode_certificate(self.own_chain[0])

    async def load(self) -> int:
        """(Re)read revocations from the store (the CLI adds them while the daemon runs)."""
        added = 0
        for envelope in await self.store.membership.envelopes(KIND_REVOCATION):
            signed = decode_envelope(envelope)
            revocation = decode_revocation(signed)
            key = (revocation.subject, revocation.issuer)
            if key not in self._revocations:
                self._revocations[key] = (revocation, signed)
                added += 1
        if added:
            self._generation += 1
        return added

    def revocations(self) -> list[Revocation]:
        return [r for r, _ in self._revocations.values()]

    def revocation_records(self) -> list[SignedRecord]:
        return [s for _, s in self._revocations.values()][:MAX_REVOCATIONS]

    def check_own(self) -> Certificate:
        """This node's own chain, checked like anyone's (a revoked node stops talking)."""
        return verify_chain(
            self.own_chain, root=self.root, now_ms=self.clock(), revocations=self.revocations()
        )

    def admit(self, chain: tuple[SignedRecord, ...]) -> Admitted:
        """Check a presented chain now and remember the verdict for its leaf's node id."""
        now = self.clock()
        leaf = verify_chain(chain, root=self.root, now_ms=now, revocations=self.revocations())
        admitted = Admitted(leaf, chain, now, self._generation)
        node = leaf.subject.node_id
        self._cache[node] = admitted
        self._cache.move_to_end(node)
        while len(self._cache) > MAX_CACHED_CHAINS:
            self._cache.popitem(last=False)
        return admitted

    def cached(self, node_id: str) -> Admitted | None:
        """The admitted chain of `node_id`, re-checked if revocations changed or it is old.
        Raises ChainError if it no longer admits the node (then it is forgotten)."""
        admitted = self._cache.get(node_id)
        if admitted is None:
            return None
        if (
            admitted.generation != self._generation
            or self.clock() - admitted.checked_ms > RECHECK_MS
        ):
            try:
                return self.admit(admitted.chain)
            except ChainError:
                del self._cache[node_id]
                raise
        return admitted

    async def add_revocation(self, signed: SignedRecord, sender: Admitted | None) -> bool:
        """Take a revocation a peer passed on; True if it is new here.

        Any revocation of this network with a valid signature is kept: whether it counts is
        decided per chain by verify_chain (only the root or an issuer above the revoked link
        has the authority), so keeping one without authority changes nothing. Storage is
        bounded per issuer and in total, so one member cannot crowd the others out."""
        revocation = decode_revocation(signed)  # signature checked
        if revocation.network != self.network.id:
            raise WrongNetworkError("a revocation of another network")
        key = (revocation.subject, revocation.issuer)
        if key in self._revocations:
            return False
        if revocation.issuer != self.root:
            by_issuer = sum(1 for _, issuer in self._revocations if issuer == revocation.issuer)
            if by_issuer >= MAX_REVOCATIONS_PER_ISSUER:
                raise ChainError("this issuer has signed more revocations than a node keeps")
        if len(self._revocations) >= MAX_REVOCATIONS:
            raise ChainError("this node holds the most revocations it keeps")
        await self.store.membership.put(
            KIND_REVOCATION, revocation.subject, revocation.issuer, encode_envelope(signed)
        )
        self._revocations[key] = (revocation, signed)
        self._generation += 1
        log.warning(
            "revocation of node %s by %s received",
            node_id(revocation.subject),
            "the network root" if revocation.issuer == self.root else node_id(revocation.issuer),
        )
        return True
