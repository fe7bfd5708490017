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

A record whose issuer or origin certificate is not held yet is deferred, not rejected: it is
neither stored nor blamed on the sender, and arrives again with the next reconciliation, after
the certificate it waits for (certificates are applied first within every batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import ark
from protocol.errors import ChainError, IdentifierError, ProtocolError
from protocol.identity import node_id
from protocol.membership import ROOT, Certificate, Revocation, check_issuer
from protocol.records import CatalogueRecord
from sync.records import SyncRecord

__all__ = ["Authority", "Deferred", "Rejected"]

MAX_CERTIFICATES_PER_KEY = 8


class Rejected(ProtocolError):
    """The record breaks an authority rule: it is refused and counted against the sender."""

    code = "unauthorised-record"


class Deferred(Exception):
    """The record waits for a certificate this node does not hold yet."""


@dataclass
class Authority:
    root: bytes
    network: str
    naan: str
    catalogue_authorities: frozenset[str] = frozenset()  # node ids, from the network policy

    def __post_init__(self) -> None:
        # Every accepted certificate, by subject key: a key may hold several (renewed, or
        # certified again elsewhere), and a verdict must not depend on which arrived last, so
        # a rule holds if any of them allows it.
        self._certificates: dict[bytes, dict[bytes, Certificate]] = {}

    def certificate(self, subject: bytes) -> Certificate | None:
        """The subject's newest certificate (by not_before, then serial), if any is held."""
        held = self._certificates.get(subject)
        if not held:
            return None
        return max(held.values(), key=lambda c: (c.not_before_ms, c.serial))

    def __len__(self) -> int:
        return sum(len(held) for held in self._certificates.values())

    def learn(self, record: SyncRecord) -> None:
        """Take a certificate into account once it is stored (or loaded at start)."""
        if isinstance(record.body, Certificate):
            cert = record.body
            held = self._certificates.setdefault(cert.subject.public_key, {})
            held[cert.serial] = cert
            if len(held) > MAX_CERTIFICATES_PER_KEY:  # keep the newest
                del held[min(held, key=lambda s: (held[s].not_before_ms, s))]

    def judge(self, record: SyncRecord, held_origin: bytes | None) -> None:
        """Raise Rejected or Deferred unless `record` may join the set. `held_origin` is the
        origin of the version of its slot held now (catalogue records), if any."""
        body = record.body
        if isinstance(body, Certificate):
            self._judge_certificate(body)
        elif isinstance(body, Revocation):
            if body.network != self.network:
                raise Rejected("a revocation of another network")
            if body.issuer != self.root and body.issuer not in self._certificates:
                raise Deferred("revocation by a node whose certificate is not held yet")
        elif isinstance(body, CatalogueRecord):
            self._judge_catalogue(body, record.signed.signer, held_origin)
        else:  # pragma: no cover - decode_record builds no other
            raise Rejected(f"no rule for records of kind {record.kind}")

    def _judge_certificate(self, cert: Certificate) -> None:
        if cert.network != self.network:
            raise Rejected("a certificate of another network")
        try:
            if cert.issuer == self.root:
                check_issuer(ROOT, "", cert.subject)
                return
            issuers = self._certificates.get(cert.issuer)
            if not issuers:
                raise Deferred("certificate from an issuer whose own certificate is not held yet")
            refusals = []
            for issuer in issuers.values():
                try:
                    check_issuer(issuer.subject.tier, issuer.subject.region, cert.subject)
                    return
                except ChainError as e:
                    refusals.append(e.message)
            raise ChainError(refusals[0])
        except ChainError as e:
            raise Rejected(f"certificate for {cert.subject.name}: {e.message}") from e

    def _judge_catalogue(
        self, record: CatalogueRecord, signer: bytes, held_origin: bytes | None
    ) -> None:
        origins = self._certificates.get(record.origin)
        if not origins:
            raise Deferred("catalogue record from a library whose certificate is not held yet")
        try:
            pid = ark.parse(record.pid)
        except IdentifierError as e:  # pragma: no cover - the record's own check ran first
            raise Rejected(e.message) from e
        if pid.naan != self.naan:
            raise Rejected(f"{record.pid} is not minted under this network's NAAN {self.naan}")
        if all(pid.library_code != c.subject.code for c in origins.values()):
            origin = max(origins.values(), key=lambda c: (c.not_before_ms, c.serial)).subject
            raise Rejected(
                f"{record.pid} is minted under library code {pid.library_code!r},"
                f" but its origin {origin.name} holds code {origin.code!r}"
            )
        if held_origin is not None and held_origin != record.origin:
            raise Rejected(f"{record.pid} belongs to another library")
        if signer != record.origin:
            if node_id(signer) not in self.catalogue_authorities:
                raise Rejected(
                    f"{record.pid} is signed by node {node_id(signer)}, neither its library nor"
                    " a catalogue authority of the network policy"
                )
            if signer not in self._certificates:
                raise Deferred("catalogue authority whose certificate is not held yet")
