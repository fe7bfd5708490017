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
MAX_PENDING_REVOCATIONS = 256
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
        # Held: stored, applied and passed on. Pending: signed by a key not (yet) known to issue
        # certificates; applied (verify_chain checks authority per chain itself) but neither
        # stored nor passed on, and few: a flood of them only pushes out each other.
        self._revocations: dict[tuple[bytes, bytes], tuple[Revocation, SignedRecord]] = {}
        self._held: set[bytes] = set()  # envelopes, to skip re-verifying what is held
        self._pending: OrderedDict[bytes, Revocation] = OrderedDict()
        self._generation = 0
        self._cache: OrderedDict[str, Admitted] = OrderedDict()
        self.verified_last = False  # whether the last add_revocation verified a signature
        self._issuers: set[bytes] = set()
        self._note_issuers(self.own_chain)

    @property
    def own_leaf(self) -> Certificate:
        return decode_certificate(self.own_chain[0])

    async def load(self) -> int:
        """(Re)read revocations from the store (the CLI adds them while the daemon runs)."""
        added = 0
        for envelope in await self.store.membership.envelopes(KIND_REVOCATION):
            if envelope in self._held:
                continue
            signed = decode_envelope(envelope)
            revocation = decode_revocation(signed)  # re-verified once per process
            self._hold(revocation, signed, envelope)
            added += 1
        if added:
            self._generation += 1
        return added

    def _hold(self, revocation: Revocation, signed: SignedRecord, envelope: bytes) -> None:
        self._revocations[(revocation.subject, revocation.issuer)] = (revocation, signed)
        self._held.add(envelope)
        self._pending.pop(envelope, None)

    def revocations(self) -> list[Revocation]:
        return [r for r, _ in self._revocations.values()] + list(self._pending.values())

    def revocation_records(self) -> list[SignedRecord]:
        return [s for _, s in self._revocations.values()][:MAX_REVOCATIONS]

    def check_own(self) -> Certificate:
        """This node's own chain, checked like anyone's (a revoked node stops talking)."""
        return verify_chain(
            self.own_chain, root=self.root, now_ms=self.clock(), revocations=self.revocations()
        )

    def check(self, chain: tuple[SignedRecord, ...]) -> Admitted:
        """The verdict on a presented chain now; not remembered (see `remember`)."""
        now = self.clock()
        leaf = verify_chain(chain, root=self.root, now_ms=now, revocations=self.revocations())
        return Admitted(leaf, chain, now, self._generation)

    def remember(self, admitted: Admitted) -> None:
        """Cache a verdict for its leaf's node id. Only once the caller has proved it holds the
        leaf's key (its request or answer signature verified): otherwise anyone could replace
        what this node believes about another member with another of its valid chains."""
        node = admitted.leaf.subject.node_id
        previous = self._cache.get(node)
        if previous is None or previous.chain != admitted.chain:
            self._note_issuers(admitted.chain)
        self._cache[node] = admitted
        self._cache.move_to_end(node)
        while len(self._cache) > MAX_CACHED_CHAINS:
            self._cache.popitem(last=False)

    def admit(self, chain: tuple[SignedRecord, ...]) -> Admitted:
        """`check` and `remember`: for chains whose holder is already proved (re-checks)."""
        admitted = self.check(chain)
        self.remember(admitted)
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

    async def add_revocation(self, signed: SignedRecord) -> bool:
        """Take a revocation a peer passed on; True if it is newly held (to be passed on).

        Held (stored, passed on): those signed by the root, and those signed by a key this node
        has seen certified as a provincial or municipal node, at most MAX_REVOCATIONS_PER_ISSUER
        each. Any other validly signed one of this network is pending: applied, since
        verify_chain decides per chain whether its signer has authority, but kept only in a
        small FIFO. So a member flooding revocations under throwaway keys cannot crowd out the
        real ones, and the relay of a revocation this node cannot judge yet is not blamed."""
        self.verified_last = False
        envelope = encode_envelope(signed)
        if envelope in self._held or envelope in self._pending:
            return False  # checked without a signature verification
        self.verified_last = True
        revocation = decode_revocation(signed)  # signature checked
        if revocation.network != self.network.id:
            raise WrongNetworkError("a revocation of another network")
        if (revocation.subject, revocation.issuer) in self._revocations:
            return False
        if revocation.issuer != self.root and not self._issues_certificates(revocation.issuer):
            self._pending[envelope] = revocation
            while len(self._pending) > MAX_PENDING_REVOCATIONS:
                self._pending.popitem(last=False)
            self._generation += 1
            return False
        if revocation.issuer != self.root:
            by_issuer = sum(1 for _, issuer in self._revocations if issuer == revocation.issuer)
            if by_issuer >= MAX_REVOCATIONS_PER_ISSUER:
                raise ChainError("this issuer has signed more revocations than a node keeps")
        await self.store.membership.put(
            KIND_REVOCATION, revocation.subject, revocation.issuer, envelope, revocation.revoked_ms
        )
        self._hold(revocation, signed, envelope)
        self._generation += 1
        log.warning(
            "revocation of node %s by %s received",
            node_id(revocation.subject),
            "the network root" if revocation.issuer == self.root else node_id(revocation.issuer),
        )
        return True

    def _note_issuers(self, chain: tuple[SignedRecord, ...]) -> None:
        """Remember the keys a verified chain certifies as nodes that issue certificates, so
        judging a revocation's signer is a set lookup (decoding re-verifies each link)."""
        for link in chain:
            subject = decode_certificate(link).subject
            if subject.tier in ("provincial", "municipal"):
                self._issuers.add(subject.public_key)

    def _issues_certificates(self, key: bytes) -> bool:
        """Whether `key` is certified, in a chain this node has verified, as a node that issues.
        (Kept after the chain leaves the cache: certified issuers are few, and a revocation
        still only counts where verify_chain finds its signer above the revoked link.)"""
        return key in self._issuers
