"""Who may write what: the rules a record must pass before it joins a node's record set.

The rules depend only on records (never on the clock or on arrival order, beyond waiting for a
record's issuer to arrive), so every node that holds the same records reaches the same verdicts
and reconciliation converges:

- certificate: issued by the network root to a national or provincial node, or by the subject
  of a certificate already held, within that issuer's rights (protocol.membership.check_issuer).
  Validity periods are not checked here: whether a certificate admits its node *now* is judged
  where it matters (peer admission), while the record itself stays part of the network's history.
- revocation: signed by the network root or by the subject of a certificate already held.
- catalogue: signed by its origin, or by a catalogue authority the network policy names (a
  national or provincial cataloguing centre correcting records), whose certificate is held as
  well as the origin's; its pid is minted under the network's NAAN with the origin's own library
  code; and a pid held from one origin is never taken over by another (an authority edits a
  record, it does not change whose it is).
- holdings: a page of its holder's own holdings (signed by the holder, protocol.holdings), whose
  certificate is held, cut into the page count of the holder's tier, dated within it.
- policy: signed by the network root, for this network.
- status: a node's own status (signed by it), whose certificate is held, dated within it.

A record whose issuer or origin certificate is not held yet is deferred, not rejected: it is
neither stored nor blamed on the sender, and arrives again with the next reconciliation, after
the certificate it waits for (certificates are applied first within every batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import ark
from protocol.errors import ChainError, IdentifierError, ProtocolError
from protocol.holdings import PAGES_BY_TIER, HoldingsPage, ReplicationPolicy
from protocol.identity import node_id
from protocol.membership import ROOT, Certificate, Revocation, check_issuer
from protocol.records import CatalogueRecord
from protocol.status import NodeStatus
from sync.records import Order, SyncRecord

__all__ = ["Authority", "Deferred", "Rejected"]

ISSUING_TIERS = ("provincial", "municipal")


class Rejected(ProtocolError):
    """The record breaks an authority rule: it is refused and counted against the sender."""

    code = "unauthorised-record"


class Deferred(Exception):
    """The record waits for the certificate of `awaiting` (a public key), not held yet."""

    def __init__(self, message: str, awaiting: bytes) -> None:
        super().__init__(message)
        self.awaiting = awaiting


@dataclass
class Authority:
    root: bytes
    network: str
    naan: str
    catalogue_authorities: frozenset[str] = frozenset()  # node ids, from the network policy

    def __post_init__(self) -> None:
        # The certificates of the set, as the set holds them: by subject key, then issuer key
        # (one slot each, the greater order kept), so verdicts follow the set alone, not what
        # this node saw before. A key may hold several (renewed by another issuer, or certified
        # again elsewhere): a rule holds if any of them allows it.
        self._certificates: dict[bytes, dict[bytes, tuple[Order, Certificate]]] = {}

    def _held(self, subject: bytes) -> list[Certificate]:
        return [cert for _, cert in self._certificates.get(subject, {}).values()]

    def certificate(self, subject: bytes) -> Certificate | None:
        """The subject's newest certificate (by not_before, then serial), if any is held."""
        held = self._held(subject)
        return max(held, key=lambda c: (c.not_before_ms, c.serial)) if held else None

    def subjects(self) -> list[bytes]:
        """Every key the set holds a certificate for."""
        return list(self._certificates)

    def __len__(self) -> int:
        return sum(len(held) for held in self._certificates.values())

    def learn(self, record: SyncRecord) -> None:
        """Take a certificate into account once it is stored (or loaded at start)."""
        if isinstance(record.body, Certificate):
            cert = record.body
            slots = self._certificates.setdefault(cert.subject.public_key, {})
            current = slots.get(cert.issuer)
            if current is None or current[0] < record.order:
                slots[cert.issuer] = (record.order, cert)

    def judge(self, record: SyncRecord, held_origin: bytes | None) -> None:
        """Raise Rejected or Deferred unless `record` may join the set. `held_origin` is the
        origin of the version of its slot held now (catalogue records), if any."""
        body = record.body
        if isinstance(body, Certificate):
            self._judge_certificate(body)
        elif isinstance(body, Revocation):
            if body.network != self.network:
                raise Rejected("a revocation of another network")
            if body.issuer != self.root:
                issuer = self._held(body.issuer)
                if not issuer:
                    raise Deferred("revocation by a node not certified yet", body.issuer)
                # Only nodes that issue certificates revoke: a county's revocations would be
                # a free way to fill every node's set.
                if all(c.subject.tier not in ISSUING_TIERS for c in issuer):
                    raise Rejected("a revocation signed by a node that issues no certificates")
        elif isinstance(body, CatalogueRecord):
            self._judge_catalogue(body, record.signed.signer, held_origin)
        elif isinstance(body, HoldingsPage):
            self._judge_holdings(body)
        elif isinstance(body, NodeStatus):
            nodes = self._held(body.node)
            if not nodes:
                raise Deferred("status of a node not certified yet", body.node)
            if body.version.wall_ms > max(c.not_after_ms for c in nodes):
                raise Rejected("status dated after its node's certificate")
        elif isinstance(body, ReplicationPolicy):
            if record.signed.signer != self.root:
                raise Rejected("a replication policy not signed by the network root")
            if body.network != self.network:
                raise Rejected("a replication policy of another network")
        else:  # pragma: no cover - decode_record builds no other
            raise Rejected(f"no rule for records of kind {record.kind}")

    def _judge_certificate(self, cert: Certificate) -> None:
        if cert.network != self.network:
            raise Rejected("a certificate of another network")
        try:
            if cert.issuer == self.root:
                check_issuer(ROOT, "", cert.subject)
                return
            issuers = self._held(cert.issuer)
            if not issuers:
                raise Deferred("certificate from an issuer not certified yet", cert.issuer)
            refusals = []
            for issuer in issuers:
                try:
                    check_issuer(issuer.subject.tier, issuer.subject.region, cert.subject)
                    return
                except ChainError as e:
                    refusals.append(e.message)
            raise ChainError(refusals[0])
        except ChainError as e:
            raise Rejected(f"certificate for {cert.subject.name}: {e.message}") from e

    def _judge_holdings(self, page: HoldingsPage) -> None:
        holders = self._held(page.holder)
        if not holders:
            raise Deferred("holdings of a node not certified yet", page.holder)
        if all(PAGES_BY_TIER[c.subject.tier] != page.pages for c in holders):
            raise Rejected(f"holdings cut into {page.pages} pages, not its tier's count")
        if page.version.wall_ms > max(c.not_after_ms for c in holders):
            raise Rejected("holdings dated after their holder's certificate")

    def _judge_catalogue(
        self, record: CatalogueRecord, signer: bytes, held_origin: bytes | None
    ) -> None:
        origins = self._held(record.origin)
        if not origins:
            raise Deferred("catalogue record from a library not certified yet", record.origin)
        try:
            pid = ark.parse(record.pid)
        except IdentifierError as e:  # pragma: no cover - the record's own check ran first
            raise Rejected(e.message) from e
        if pid.naan != self.naan:
            raise Rejected(f"{record.pid} is not minted under this network's NAAN {self.naan}")
        if all(pid.library_code != c.subject.code for c in origins):
            origin = max(origins, key=lambda c: (c.not_before_ms, c.serial)).subject
            raise Rejected(
                f"{record.pid} is minted under library code {pid.library_code!r},"
                f" but its origin {origin.name} holds code {origin.code!r}"
            )
        latest = max(c.not_after_ms for c in origins)
        if record.version.wall_ms > latest:
            # Versions are dated by their library's clock: none can be later than the end of
            # the library's certificate (a far-future version would outrank all honest ones).
            raise Rejected(f"{record.pid} has a version dated after its library's certificate")
        if held_origin is not None and held_origin != record.origin:
            raise Rejected(f"{record.pid} belongs to another library")
        if signer != record.origin:
            if node_id(signer) not in self.catalogue_authorities:
                raise Rejected(
                    f"{record.pid} is signed by node {node_id(signer)}, neither its library nor"
                    " a catalogue authority of the network policy"
                )
            if not self._held(signer):
                raise Deferred("catalogue authority not certified yet", signer)
