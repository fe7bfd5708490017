"""Regression tests for the peer-layer security review (commit 8c06a1f), in process: revocation
floods, session and nonce bounds, refusal parsing and certificate expiry caps.

Real keys, real certificates and a real SQLite store; the network is minted here:

    gansu      provincial 620000, certified by the root
    jiuquan    municipal 620900, by gansu
    jiuquan2   a second municipal library of 620900, by gansu
    dunhuang   county 620982, by jiuquan
    guazhou    county 620923, by jiuquan
    yumen      county 620981, by jiuquan2
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.enrolment import (
    EnrolmentError,
    Issuer,
    approve_request,
    load_root_key,
    make_revocation,
    network_init,
)
from node.network import NetworkDescription
from node.peer.client import PeerClient, PeerRefusedError
from node.peer.membership import MAX_PENDING_REVOCATIONS, MembershipView
from node.peer.server import SESSION_GRACE_SECONDS, NonceCache, PeerProblem, SessionTable
from protocol import httpsig
from protocol.errors import RevokedError
from protocol.identity import public_key_bytes
from protocol.membership import (
    KIND_REVOCATION,
    Certificate,
    EnrolmentRequest,
    NodeInfo,
    decode_certificate,
    sign_certificate,
    sign_request,
)
from protocol.records import SignedRecord
from storage.store import Store, StoreSettings
from tests.peer_helpers import DAY_MS, Member, certify, now_ms

# --- who can sign what --------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    description: NetworkDescription
    root: Member
    gansu: Member
    jiuquan: Member
    jiuquan2: Member
    dunhuang: Member
    guazhou: Member
    yumen: Member

    @property
    def id(self) -> str:
        return self.description.id


def make_network(where: Path) -> Network:
    """A network made as `siku network init` makes one, and members certified down the tiers."""
    key_path, _, description = network_init(where, name="security test", ark_naan="99999")
    root = Member(load_root_key(key_path, description).key, ())
    net = description.id
    gansu = certify(
        root, Ed25519PrivateKey.generate(), net,
        name="Gansu", code="gs", tier="provincial", region="620000",
    )  # fmt: skip
    jiuquan = certify(
        gansu, Ed25519PrivateKey.generate(), net,
        name="Jiuquan", code="jq", tier="municipal", region="620900",
    )  # fmt: skip
    jiuquan2 = certify(
        gansu, Ed25519PrivateKey.generate(), net,
        name="Jiuquan 2", code="jq2", tier="municipal", region="620900",
    )  # fmt: skip
    dunhuang = certify(
        jiuquan, Ed25519PrivateKey.generate(), net,
        name="Dunhuang", code="dh", tier="county", region="620982",
    )  # fmt: skip
    guazhou = certify(
        jiuquan, Ed25519PrivateKey.generate(), net,
        name="Guazhou", code="gz", tier="county", region="620923",
    )  # fmt: skip
    yumen = certify(
        jiuquan2, Ed25519PrivateKey.generate(), net,
        name="Yumen", code="jm", tier="county", region="620981",
    )  # fmt: skip
    return Network(description, root, gansu, jiuquan, jiuquan2, dunhuang, guazhou, yumen)


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return make_network(tmp_path / "network")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(StoreSettings(tmp_path / "store", 1 << 30))
    try:
        yield opened
    finally:
        await opened.close()


def view_of(network: Network, member: Member, store: Store) -> MembershipView:
    return MembershipView(network.description, list(member.chain), store, now_ms)


# --- S1: revocation floods ----------------------------------------------------------------------


async def test_revocations_by_throwaway_keys_stay_pending_and_bounded(
    network: Network, store: Store
) -> None:
    view = view_of(network, network.dunhuang, store)
    flood = [
        make_revocation(Ed25519PrivateKey.generate(), network.description, s.public_key, "x")
        for s in (network.guazhou, network.jiuquan)
        for _ in range(150)
    ]
    for _, signed in flood:
        assert await view.add_revocation(signed) is False  # not held: nothing to pass on
        assert view.verified_last is True
    assert view.revocation_records() == []
    assert await store.membership.envelopes(KIND_REVOCATION) == []
    pending = view.revocations()
    assert len(pending) == MAX_PENDING_REVOCATIONS < len(flood)
    # FIFO: the newest are kept, the oldest pushed out.
    assert pending == [r for r, _ in flood[-MAX_PENDING_REVOCATIONS:]]
    # Throwaway keys have no authority over anyone's chain.
    assert view.check(network.guazhou.chain).leaf.subject.node_id == network.guazhou.node_id


async def test_real_revocations_are_held_after_a_flood(network: Network, store: Store) -> None:
    view = view_of(network, network.dunhuang, store)
    for _ in range(300):
        _, junk = make_revocation(
            Ed25519PrivateKey.generate(), network.description, network.guazhou.public_key, "x"
        )
        await view.add_revocation(junk)

    by_root, from_root = make_revocation(
        network.root.key, network.description, network.yumen.public_key, "root"
    )
    # jiuquan certified guazhou, and is a known issuer (it is in this node's own chain).
    by_issuer, from_issuer = make_revocation(
        network.jiuquan.key, network.description, network.guazhou.public_key, "issuer"
    )
    assert await view.add_revocation(from_root) is True
    assert await view.add_revocation(from_issuer) is True
    assert set(view.revocation_records()) == {from_root, from_issuer}
    assert len(await store.membership.envelopes(KIND_REVOCATION)) == 2
    assert {by_root, by_issuer} <= set(view.revocations())
    with pytest.raises(RevokedError):
        view.check(network.guazhou.chain)
    with pytest.raises(RevokedError):
        view.check(network.yumen.chain)

    # Already held: skipped without verifying its signature again.
    assert await view.add_revocation(from_issuer) is False
    assert view.verified_last is False
    assert await view.add_revocation(from_root) is False
    assert view.verified_last is False
    assert len(await store.membership.envelopes(KIND_REVOCATION)) == 2


async def test_pending_revocation_by_a_real_issuer_still_counts(
    network: Network, store: Store
) -> None:
    # Gansu has never seen jiuquan2's certificate: jiuquan2 is not a known issuer there.
    view = view_of(network, network.gansu, store)
    _, signed = make_revocation(
        network.jiuquan2.key, network.description, network.yumen.public_key, "pending"
    )
    assert await view.add_revocation(signed) is False
    assert view.revocation_records() == []
    assert await store.membership.envelopes(KIND_REVOCATION) == []
    with pytest.raises(RevokedError):
        view.check(network.yumen.chain)
    # It counts only where its signer has authority.
    assert view.check(network.guazhou.chain).leaf.subject.node_id == network.guazhou.node_id


# --- S3: refusal bodies from anyone -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 65_536,
        b"[" * 4_000,
        b'{"code": ' * 2_000,
        b"[1, 2, 3]",
        b'"just a string"',
        b"\xff\xfe\x00\x80 not utf-8 \xc3\x28",
        b"x" * (10 << 20),
        b'{"code": "' + b"y" * (10 << 20) + b'"}',
        b"",
    ],
    ids=[
        "deep-64k", "deep-4k", "deep-objects", "list", "string", "non-utf8", "huge",
        "huge-json", "empty",
    ],
)  # fmt: skip
@pytest.mark.parametrize("status", [400, 403, 500, 503])
def test_refusal_of_hostile_body_is_a_refusal(body: bytes, status: int) -> None:
    error = PeerClient._refusal(status, body)
    assert isinstance(error, PeerRefusedError)
    assert error.problem_code == f"http-{status}"
    assert len(str(error)) < 1_000


def test_refusal_reads_a_small_problem() -> None:
    error = PeerClient._refusal(403, b'{"code": "revoked", "detail": "' + b"d" * 900 + b'"}')
    assert isinstance(error, PeerRefusedError)
    assert error.problem_code == "revoked"
    assert len(str(error)) < 600  # detail cut to 500 characters
    not_found = PeerClient._refusal(404, b"[" * 65_536)
    assert isinstance(not_found, PeerRefusedError)
    assert not_found.problem_code == "not-a-peer"


# --- L3: one session per node -------------------------------------------------------------------


def session_key() -> httpsig.SessionKey:
    sid = base64.b32encode(os.urandom(16)).decode("ascii").lower().rstrip("=")
    return httpsig.SessionKey(sid, os.urandom(32))


def test_a_new_session_replaces_the_nodes_previous_one() -> None:
    table = SessionTable(limit=4, lifetime=3_600)
    first, other, second, third = session_key(), session_key(), session_key(), session_key()
    table.add(first, "a", 0.0)
    table.add(other, "b", 0.0)
    session = table.add(second, "a", 1.0)
    # The replaced session still serves requests in flight, for a grace period only.
    assert table.get(first.id, 2.0) is not None
    assert table.get(first.id, 1.0 + SESSION_GRACE_SECONDS) is None
    assert table.get(second.id, 2.0) is session
    assert table.get(other.id, 2.0) is not None
    # A node holds at most two: a third hello drops the first at once.
    table.add(first, "a", 3.0)
    table.add(third, "a", 4.0)
    assert table.get(first.id, 5.0) is not None  # now the previous one
    assert table.get(second.id, 5.0) is None


def test_one_node_cannot_push_out_other_sessions() -> None:
    table = SessionTable(limit=3, lifetime=3_600)
    others = [session_key() for _ in range(2)]
    for key, node in zip(others, ("b", "c"), strict=True):
        table.add(key, node, 0.0)
    keys = [session_key() for _ in range(20)]
    for key in keys:
        table.add(key, "a", 1.0)
    assert all(table.get(k.id, 2.0) is not None for k in others)
    assert [k for k in keys if table.get(k.id, 2.0) is not None] == keys[-1:]
    # The bound holds when distinct nodes overflow it.
    many = [session_key() for _ in range(10)]
    for i, key in enumerate(many):
        table.add(key, f"n{i}", 3.0)
    held = [k for k in [*others, *keys, *many] if table.get(k.id, 4.0) is not None]
    assert held == many[-3:]


# --- M1: per-caller nonce quota -----------------------------------------------------------------


def nonce() -> str:
    return secrets.token_urlsafe(24)


def test_nonce_quota_per_owner() -> None:
    cache = NonceCache(window=300, per_owner=3)
    for _ in range(3):
        cache.check_and_add("keya", nonce(), 1_000, "node-a")
    with pytest.raises(PeerProblem) as refused:
        cache.check_and_add("keya", nonce(), 1_000, "node-a")
    assert refused.value.code == "too-many-requests"
    assert refused.value.status == 429
    # Counted per owner, whatever key id or session the requests come under.
    with pytest.raises(PeerProblem, match="more requests"):
        cache.check_and_add("session-of-a", nonce(), 1_000, "node-a")
    cache.check_and_add("keyb", nonce(), 1_000, "node-b")
    # A replay is still a replay, not a quota matter.
    seen = nonce()
    cache.check_and_add("keyc", seen, 1_000)
    with pytest.raises(PeerProblem) as replay:
        cache.check_and_add("keyc", seen, 1_000)
    assert replay.value.code == "replayed-nonce"


def test_nonce_quota_is_freed_by_expiry() -> None:
    cache = NonceCache(window=300, per_owner=3)
    for t in (1_000, 1_001, 1_002):
        cache.check_and_add("keya", nonce(), t, "node-a")
    with pytest.raises(PeerProblem):
        cache.check_and_add("keya", nonce(), 1_100, "node-a")
    # The first nonce expires at 1_000 + 2 * 300 + 1: one slot frees, then another.
    cache.check_and_add("keya", nonce(), 1_601, "node-a")
    with pytest.raises(PeerProblem):
        cache.check_and_add("keya", nonce(), 1_601, "node-a")
    cache.check_and_add("keya", nonce(), 1_602, "node-a")


def test_default_owner_is_the_key_id() -> None:
    cache = NonceCache(window=300, per_owner=1)
    cache.check_and_add("keya", nonce(), 1_000)
    with pytest.raises(PeerProblem):
        cache.check_and_add("keya", nonce(), 1_000)
    cache.check_and_add("keyb", nonce(), 1_000)


# --- L7: certificates end with their issuer's ---------------------------------------------------


def enrolment_request(network: Network, key: Ed25519PrivateKey) -> SignedRecord:
    subject = NodeInfo(public_key_bytes(key), "Akesai", "ks", "county", "620924")
    return sign_request(EnrolmentRequest(network.id, subject, "", now_ms()), key)


@pytest.mark.parametrize(("gansu_days", "jiuquan_days"), [(30, 10), (5, 10)])
def test_certificate_capped_at_issuer_expiry(
    network: Network, gansu_days: int, jiuquan_days: int
) -> None:
    now = now_ms()
    gansu = certify(
        network.root, network.gansu.key, network.id,
        name="Gansu", code="gs", tier="provincial", region="620000",
        not_after_ms=now + gansu_days * DAY_MS,
    )  # fmt: skip
    jiuquan = certify(
        gansu, network.jiuquan.key, network.id,
        name="Jiuquan", code="jq", tier="municipal", region="620900",
        not_after_ms=now + jiuquan_days * DAY_MS,
    )  # fmt: skip
    issuer = Issuer(jiuquan.key, "municipal", "620900", jiuquan.chain)
    request = enrolment_request(network, Ed25519PrivateKey.generate())
    _, chain = approve_request(request, issuer, network.description, days=365)
    cap = now + min(gansu_days, jiuquan_days) * DAY_MS
    issued = decode_certificate(chain[0])
    assert issued.not_after_ms == cap
    assert issued.not_before_ms < now
    assert tuple(chain[1:]) == jiuquan.chain


def test_certificate_not_capped_when_the_issuer_outlives_it(network: Network) -> None:
    issuer = Issuer(network.jiuquan.key, "municipal", "620900", network.jiuquan.chain)
    request = enrolment_request(network, Ed25519PrivateKey.generate())
    _, chain = approve_request(request, issuer, network.description, days=2)
    issued = decode_certificate(chain[0])
    assert issued.not_after_ms - issued.not_before_ms == 2 * DAY_MS


def test_expired_issuer_cannot_certify(network: Network) -> None:
    now = now_ms()
    gansu = Member(network.gansu.key, ())
    cert = Certificate(
        serial=secrets.token_bytes(16),
        network=network.id,
        subject=NodeInfo(network.jiuquan.public_key, "Jiuquan", "jq", "municipal", "620900"),
        issuer=network.gansu.public_key,
        not_before_ms=now - 10 * DAY_MS,
        not_after_ms=now - DAY_MS,
    )
    chain = (sign_certificate(cert, gansu.key), *network.gansu.chain)
    issuer = Issuer(network.jiuquan.key, "municipal", "620900", chain)
    request = enrolment_request(network, Ed25519PrivateKey.generate())
    with pytest.raises(EnrolmentError, match="expired"):
        approve_request(request, issuer, network.description, days=365)
