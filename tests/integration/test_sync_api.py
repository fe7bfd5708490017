"""The catalogue-sync peer routes of a real daemon under attack: hand-made, correctly signed
requests from real enrolled members carrying records nobody may write, and bodies that are not
what the routes speak.

One network is built per module with the real enrolment code; two of its daemons run:

    jiuquan   the target (municipal 620900)
    gansu     its parent (provincial 620000): what the target accepts spreads to it, nothing else

The test process holds every node key, so it signs requests and records as any member: mostly as
Dunhuang and Guazhou (counties under Jiuquan, not running). Records are checked where a reader
sees them (the public record API: 200, 404 or 410), in the target's reconciled set (its SQLite
store, read-only), and every refusal is counted against the sender (admin /sync and /peers).

The hello interval is long (30 s) so that the target, once connected to Gansu, keeps taking it for
connected after Gansu stops: the last test stops Gansu and checks that the target survives the
reconciliation that then fails.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.demo import Processes, build_network
from node.enrolment import load_chain
from node.keys import load_identity
from node.network import NetworkDescription, load_network
from node.peer.server import CHAIN_HEADER, MSGPACK
from protocol import ark, httpsig
from protocol.hlc import Hlc
from protocol.identity import node_id
from protocol.membership import encode_bundle
from protocol.reconcile import (
    MAX_MESSAGE_BYTES,
    RECONCILE_VERSION,
    Item,
    Reconciler,
    SortedItems,
)
from protocol.records import (
    CatalogueRecord,
    LangString,
    canonical_pack,
    canonical_unpack,
    encode_envelope,
    sign_catalogue,
)
from protocol.syncwire import MAX_BODY_BYTES, MAX_ENVELOPES, MAX_IDS
from sync.engine import SyncSettings
from sync.records import record_id
from tests.integration.sync_helpers import Node, poll, specs, store_ids, store_items
from tests.peer_helpers import Member, certify, now_ms

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 30
CONNECT_SECONDS = 45
SYNC_SECONDS = 30
LOG_SECONDS = 10
SYNC_INTERVAL_SECONDS = 1
HELLO_INTERVAL_SECONDS = 30
PROBLEM_JSON = "application/problem+json"
LOCAL = "127.0.0.1"  # how a caller is counted until its signature has verified
SYNC = "/peer/v1/sync/"
# The routes' body limits (node.peer.sync.CatalogueSync.routes).
LIMITS = {
    "reconcile": MAX_MESSAGE_BYTES,
    "fetch": 256 * 1024,
    "push": MAX_BODY_BYTES,
    "offer": 256 * 1024,
}
RUNNING = ("jiuquan", "gansu")


# --- the running nodes --------------------------------------------------------------------------


@dataclass
class Lab:
    root: Path
    network: NetworkDescription
    members: dict[str, Member]
    nodes: dict[str, Node]
    processes: Processes
    refused: set[bytes] = field(default_factory=set)  # ids of every record a test saw refused

    @property
    def target(self) -> Node:
        return self.nodes["jiuquan"]

    @property
    def target_key(self) -> bytes:
        return self.members["jiuquan"].public_key


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("sync-api")
    node_specs = specs()
    configs = build_network(
        root,
        node_specs,
        hello_interval_seconds=HELLO_INTERVAL_SECONDS,
        sync_interval_seconds=SYNC_INTERVAL_SECONDS,
    )
    network = load_network(root / "network" / "network.toml")
    members = {
        key: Member(load_identity(config.key_file).key, tuple(load_chain(config)))
        for key, config in configs.items()
    }
    nodes = {
        s.key: Node(s, root / s.key, members[s.key].node_id) for s in node_specs if s.key in RUNNING
    }
    with Processes([n.home for n in nodes.values()]) as processes:
        lab = Lab(root, network, members, nodes, processes)
        for node in nodes.values():
            poll(node.up, bool, STARTUP_SECONDS, f"{node.key} up", alive=processes.check_alive)
        target, parent = nodes["jiuquan"], nodes["gansu"]
        poll(
            target.connected,
            lambda got: parent.node_id in got,
            CONNECT_SECONDS,
            "the target to connect to its parent",
            alive=processes.check_alive,
        )
        _same_sets(lab)
        yield lab


def _same_sets(lab: Lab) -> frozenset[bytes]:
    """Wait until the target and its parent hold the same set; returns it."""
    target, parent = lab.target, lab.nodes["gansu"]
    sets = poll(
        lambda: (store_ids(target.db), store_ids(parent.db)),
        lambda pair: pair[0] == pair[1],
        SYNC_SECONDS,
        "the target and its parent to hold the same set",
        alive=lab.processes.check_alive,
    )
    return sets[0]


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers.get("Content-Type", "").startswith(PROBLEM_JSON), self.headers
        data: dict[str, Any] = json.loads(self.body)
        return data

    def counts(self) -> list[int]:
        assert self.status == 200, self.body
        value = canonical_unpack(self.body, "answer")
        assert isinstance(value, list)
        return [int(v) for v in value]


def _signed(lab: Lab, member: Member, path: str, body: bytes) -> dict[str, str]:
    """Headers a correct client sends: Ed25519 signature (no session), digest, the target as
    receiver, and the member's chain."""
    import base64

    headers = httpsig.sign_request(
        member.key,
        method="POST",
        path=path,
        query="",
        body=body,
        created=int(time.time()),
        nonce=secrets.token_urlsafe(24),
        to=node_id(lab.target_key),
    )
    headers["Content-Type"] = MSGPACK
    headers[CHAIN_HEADER] = base64.b64encode(encode_bundle(member.chain)).decode("ascii")
    return headers


def _post(lab: Lab, member: Member, route: str, body: bytes) -> Answer:
    """POST a signed body to a sync route of the target; a signed answer is verified."""
    path = SYNC + route
    headers = _signed(lab, member, path, body)
    conn = http.client.HTTPConnection("127.0.0.1", lab.target.spec.port, timeout=60)
    try:
        # Refused before the whole body was read, the send may break: the answer is waiting.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        answer = Answer(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()
    # Every answer to a request whose signature parsed is signed by the target, bound to it; a
    # body refused for its size, before anything is parsed, cannot be.
    if answer.status != 413:
        assert "Signature" in answer.headers, answer
        httpsig.verify_response(
            status=answer.status, headers=answer.headers, body=answer.body,
            public_key=lab.target_key, request_method="POST", request_path=path,
            request_query="", request_signature_member=httpsig.signature_member(headers),
            now=int(time.time()),
        )  # fmt: skip
    return answer


def _push(lab: Lab, member: Member, envelopes: list[bytes]) -> list[int]:
    """[applied, known, stale, deferred, rejected] for a push of `envelopes`."""
    return _post(lab, member, "push", canonical_pack([1, envelopes])).counts()


# --- records ------------------------------------------------------------------------------------


def _chain(member: Member) -> list[bytes]:
    """The member's certificates as records: what lets a node judge its catalogue records."""
    return [encode_envelope(c) for c in member.chain]


def _pid(lab: Lab, code: str, naan: str | None = None) -> str:
    return str(ark.mint(naan or lab.network.ark_naan, code, secrets.token_bytes(8)))


def _record(
    member: Member,
    pid: str,
    *,
    wall_ms: int | None = None,
    title: str = "敦煌写本 sync test",
    deleted: bool = False,
) -> bytes:
    version = Hlc(now_ms() if wall_ms is None else wall_ms)
    dc = {} if deleted else {"title": (LangString(title, "zh"),)}
    record = CatalogueRecord(pid, member.public_key, version, deleted=deleted, dc=dc)
    return encode_envelope(sign_catalogue(record, member.key))


def _record_json(lab: Lab, pid: str) -> tuple[int, Any]:
    return lab.target.public(f"/api/v1/records/{pid}")


def _sync_peer(lab: Lab, member: Member) -> dict[str, Any]:
    """The target's sync statistics about `member` (zeros if it has none yet)."""
    for peer in lab.target.sync()["peers"]:
        if peer["peer"] == member.node_id:
            return dict(peer)
    return {"rejected": 0, "records_received": 0}


def _rejections(lab: Lab) -> dict[str, Any]:
    data = lab.target.admin_json("/admin/api/v1/peers")
    rejections: dict[str, Any] = data["rejections"]
    return rejections


def _count(rejections: dict[str, Any], caller: str, code: str) -> int:
    count: int = rejections["by_caller"].get(caller, {}).get(code, 0)
    return count


def _refused_lines(lab: Lab, sender: str, code: str) -> int:
    return sum(
        1
        for line in lab.target.log().splitlines()
        if f"record from {sender} refused ({code})" in line
    )


def _wait_lines(lab: Lab, sender: str, code: str, at_least: int) -> None:
    poll(
        lambda: _refused_lines(lab, sender, code),
        lambda n: n >= at_least,
        LOG_SECONDS,
        f"log lines refusing records from {sender} ({code})",
        interval=0.05,
    )


# --- bad records in a push ----------------------------------------------------------------------


def test_a_push_keeps_its_good_records_and_refuses_the_tampered_ones(lab: Lab) -> None:
    dunhuang = lab.members["dunhuang"]
    sender = dunhuang.node_id
    good_a, good_b, tampered, badly_signed = (_pid(lab, "dh") for _ in range(4))
    original = _record(dunhuang, tampered, title="tamper-me AAAA")
    assert original.count(b"AAAA") == 1
    changed_text = original.replace(b"AAAA", b"AAAB")  # one byte of the title
    bad_signature = bytearray(_record(dunhuang, badly_signed))
    bad_signature[-1] ^= 0x01  # the envelope ends with the signature
    batch = [
        *_chain(dunhuang),
        _record(dunhuang, good_a),
        changed_text,
        bytes(bad_signature),
        b"\x01 not a record",
        _record(dunhuang, good_b),
    ]
    held_before = store_ids(lab.target.db)
    stats_before, rejections_before = _sync_peer(lab, dunhuang), _rejections(lab)
    lines_before = _refused_lines(lab, sender, "bad-signature")

    applied, known, stale, deferred, rejected = _push(lab, dunhuang, batch)

    assert (rejected, stale, deferred) == (3, 0, 0)
    assert applied + known == len(batch) - 3
    held_after = store_ids(lab.target.db)
    assert len(held_after - held_before) == applied
    for envelope in (changed_text, bytes(bad_signature), b"\x01 not a record"):
        assert record_id(envelope) not in held_after
        lab.refused.add(record_id(envelope))
    # The rest of the batch was applied: readers see the good records, not the tampered ones.
    for pid in (good_a, good_b):
        status, body = _record_json(lab, pid)
        assert status == 200 and body["origin"] == sender, body
    for pid in (tampered, badly_signed):
        assert _record_json(lab, pid)[0] == 404
    # Counted against the sender: in its sync statistics and in the peer refusal counts.
    assert _sync_peer(lab, dunhuang)["rejected"] == stats_before["rejected"] + 3
    after = _rejections(lab)
    assert (
        _count(after, sender, "bad-signature")
        == _count(rejections_before, sender, "bad-signature") + 2
    )
    assert (
        _count(after, sender, "decode-error")
        == _count(rejections_before, sender, "decode-error") + 1
    )
    _wait_lines(lab, sender, "bad-signature", lines_before + 2)


def test_a_record_for_another_librarys_pid_is_refused(lab: Lab) -> None:
    dunhuang, guazhou = lab.members["dunhuang"], lab.members["guazhou"]
    sender = dunhuang.node_id
    theirs = _pid(lab, "gz")  # minted under Guazhou's library code, signed by Dunhuang
    elsewhere = _pid(lab, "dh", naan="12345")  # Dunhuang's code, another network's NAAN
    relayed = _pid(lab, "gz")  # Guazhou's own record, passed on by Dunhuang: fine
    before = _rejections(lab)
    lines_before = _refused_lines(lab, sender, "unauthorised-record")

    refused = [_record(dunhuang, theirs), _record(dunhuang, elsewhere)]
    lab.refused.update(record_id(e) for e in refused)
    counts = _push(
        lab, dunhuang, [*_chain(dunhuang), *_chain(guazhou), *refused, _record(guazhou, relayed)]
    )

    assert counts[4] == 2 and counts[2:4] == [0, 0], counts
    assert _record_json(lab, theirs)[0] == 404
    assert _record_json(lab, elsewhere)[0] == 404
    status, body = _record_json(lab, relayed)
    assert status == 200 and body["origin"] == guazhou.node_id, body
    after = _rejections(lab)
    code = "unauthorised-record"
    assert _count(after, sender, code) == _count(before, sender, code) + 2
    # Nothing was counted against the library whose record was merely relayed.
    assert _count(after, guazhou.node_id, code) == _count(before, guazhou.node_id, code)
    _wait_lines(lab, sender, code, lines_before + 2)
    lines = [
        line
        for line in lab.target.log().splitlines()
        if f"record from {sender} refused ({code})" in line
    ]
    assert any(theirs in line and "library code 'gz'" in line for line in lines), lines
    assert any(elsewhere in line and "NAAN" in line for line in lines), lines


def test_a_pid_held_from_one_library_is_not_taken_over_by_another(lab: Lab) -> None:
    guazhou = lab.members["guazhou"]
    pid = _pid(lab, "gz")
    original = _record(guazhou, pid, title="瓜州县志 original")
    assert _push(lab, guazhou, [*_chain(guazhou), original])[4] == 0
    assert _record_json(lab, pid)[0] == 200
    # A second, valid member holding the same library code (a new key certified for it by the
    # municipal library) claims the pid with newer versions: a replacement and a deletion.
    impostor = certify(
        lab.members["jiuquan"], Ed25519PrivateKey.generate(), lab.network.id,
        name="瓜州县图书馆 Guazhou (new key)", code="gz", tier="county", region="620923",
    )  # fmt: skip
    before = _rejections(lab)
    stats_before = _sync_peer(lab, impostor)
    later = now_ms() + 60_000
    refused = [
        _record(impostor, pid, wall_ms=later, title="瓜州县志 taken over"),
        _record(impostor, pid, wall_ms=later + 1, deleted=True),
    ]
    lab.refused.update(record_id(e) for e in refused)
    counts = _push(lab, impostor, [*_chain(impostor), *refused])
    assert counts[4] == 2, counts
    status, body = _record_json(lab, pid)
    assert status == 200, body
    assert body["origin"] == guazhou.node_id
    assert body["dc"]["title"][0]["value"] == "瓜州县志 original"
    held = [i for i, (_, kind, ref) in store_items(lab.target.db).items() if ref == pid]
    assert held == [record_id(original)]
    code = "unauthorised-record"
    assert (
        _count(_rejections(lab), impostor.node_id, code)
        == _count(before, impostor.node_id, code) + 2
    )
    assert _sync_peer(lab, impostor)["rejected"] == stats_before["rejected"] + 2
    assert any(
        f"record from {impostor.node_id} refused ({code}): {pid} belongs to another library" in line
        for line in lab.target.log().splitlines()
    )


# --- versions -----------------------------------------------------------------------------------


def _held_for(lab: Lab, pid: str) -> list[bytes]:
    return [i for i, (_, _, ref) in store_items(lab.target.db).items() if ref == pid]


def test_an_older_version_never_replaces_a_newer_one(lab: Lab) -> None:
    dunhuang = lab.members["dunhuang"]
    chain = _chain(dunhuang)
    t = now_ms()
    pid = _pid(lab, "dh")
    v1 = _record(dunhuang, pid, wall_ms=t - 2_000, title="version one")
    v2 = _record(dunhuang, pid, wall_ms=t - 1_000, title="version two")
    v3 = _record(dunhuang, pid, wall_ms=t, deleted=True)

    assert _push(lab, dunhuang, [*chain, v2])[0] >= 1
    applied, _, stale, _, rejected = _push(lab, dunhuang, [*chain, v1])
    assert (applied, stale, rejected) == (0, 1, 0)
    status, body = _record_json(lab, pid)
    assert status == 200 and body["dc"]["title"][0]["value"] == "version two", body
    assert body["version"] == f"{t - 1_000}.0"
    assert _held_for(lab, pid) == [record_id(v2)]

    # The tombstone replaces it; neither older live version brings it back, alone or together.
    assert _push(lab, dunhuang, [*chain, v3])[0] == 1
    assert _record_json(lab, pid)[0] == 410
    for batch in ([v2], [v1], [v1, v2]):
        applied, _, stale, _, rejected = _push(lab, dunhuang, [*chain, *batch])
        assert (applied, stale, rejected) == (0, len(batch), 0), batch
        status, problem = _record_json(lab, pid)
        assert status == 410 and problem["code"] == "deleted", problem
    assert _held_for(lab, pid) == [record_id(v3)]


def test_a_tombstone_first_then_the_older_live_version_stays_deleted(lab: Lab) -> None:
    dunhuang = lab.members["dunhuang"]
    chain = _chain(dunhuang)
    t = now_ms()
    # Never seen before: the tombstone arrives first (gossip may deliver in any order).
    first = _pid(lab, "dh")
    tombstone = _record(dunhuang, first, wall_ms=t, deleted=True)
    assert _push(lab, dunhuang, [*chain, tombstone])[0] == 1
    live = _record(dunhuang, first, wall_ms=t - 5_000, title="resurrect me")
    applied, _, stale, _, _ = _push(lab, dunhuang, [*chain, live])
    assert (applied, stale) == (0, 1)
    assert _record_json(lab, first)[0] == 410
    assert _held_for(lab, first) == [record_id(tombstone)]
    # Both in one batch, the live version first: the tombstone wins all the same.
    second = _pid(lab, "dh")
    live = _record(dunhuang, second, wall_ms=t - 5_000, title="resurrect me too")
    tombstone = _record(dunhuang, second, wall_ms=t, deleted=True)
    applied, _, stale, _, _ = _push(lab, dunhuang, [*chain, live, tombstone])
    assert (applied, stale) == (1, 1)
    assert _record_json(lab, second)[0] == 410
    assert _held_for(lab, second) == [record_id(tombstone)]
    assert not lab.target.search("resurrect")


# --- malformed bodies ---------------------------------------------------------------------------


def _ids(n: int, size: int = 32) -> list[bytes]:
    return [secrets.token_bytes(size) for _ in range(n)]


DECODE, VERSION = "decode-error", "unsupported-version"
R = RECONCILE_VERSION
MALFORMED: dict[str, tuple[str, bytes, str, str]] = {
    # name: (route, body, code, a phrase of the problem's detail); all answered 400
    "reconcile/not-msgpack": ("reconcile", b"\xc1\xc1 not msgpack", DECODE, "not valid msgpack"),
    "reconcile/wrong-version": ("reconcile", canonical_pack([R + 7, []]), VERSION,
                                f"version {R + 7}"),
    "reconcile/wrong-shape": ("reconcile", canonical_pack([R, [[0]]]), DECODE, "wrong shape"),
    "reconcile/have-to-a-responder": (
        "reconcile", canonical_pack([R, [[2**40, b"", 3, [b"", []]]]]), DECODE,
        "HAVE range sent to a responder",
    ),
    "reconcile/trailing-bytes": (
        "reconcile", canonical_pack([R, []]) + b"\x00", DECODE, "extra data",
    ),
    # A version number spelt as uint8 (0xcc) where canonical msgpack has a fixint.
    "reconcile/not-canonical": ("reconcile", b"\x92\xcc" + bytes([R]) + b"\x90", DECODE,
                                "canonical form"),
    "fetch/not-canonical": ("fetch", b"\x92\xcc\x01\x90", DECODE, "canonical form"),
    "fetch/not-msgpack": ("fetch", b"\xc1 not msgpack", DECODE, "not valid msgpack"),
    "fetch/wrong-version": ("fetch", canonical_pack([2, _ids(1)]), VERSION, "version 2"),
    "fetch/too-many-ids": ("fetch", canonical_pack([1, _ids(MAX_IDS + 1)]), DECODE,
                           f"more than {MAX_IDS} ids"),
    "fetch/short-id": ("fetch", canonical_pack([1, [*_ids(2), bytes(31)]]), DECODE,
                       "not 32 bytes"),
    "fetch/long-id": ("fetch", canonical_pack([1, _ids(1, 33)]), DECODE, "not 32 bytes"),
    "offer/not-msgpack": ("offer", b"\x92\x01", DECODE, "not valid msgpack"),
    "offer/wrong-version": ("offer", canonical_pack([0, _ids(1)]), VERSION, "version 0"),
    "offer/too-many-ids": ("offer", canonical_pack([1, _ids(MAX_IDS + 1)]), DECODE,
                           f"more than {MAX_IDS} ids"),
    "offer/short-id": ("offer", canonical_pack([1, [bytes(16)]]), DECODE, "not 32 bytes"),
    "offer/not-a-list": ("offer", canonical_pack([1, b"\x00" * 32]), DECODE,
                         "not [version, list]"),
    "push/not-msgpack": ("push", b"\xc1" * 64, DECODE, "not valid msgpack"),
    # A one-byte record spelt as bin 16 (0xc5) where canonical msgpack has bin 8.
    "push/not-canonical": ("push", b"\x92\x01\x91\xc5\x00\x01x", DECODE, "canonical form"),
    "push/wrong-version": ("push", canonical_pack([2, [b"x"]]), VERSION, "version 2"),
    "push/too-many-records": ("push", canonical_pack([1, [b"x"] * (MAX_ENVELOPES + 1)]), DECODE,
                              f"more than {MAX_ENVELOPES} records"),
    "push/empty-record": ("push", canonical_pack([1, [b""]]), DECODE, "empty, too large"),
    "push/not-bytes": ("push", canonical_pack([1, ["a string"]]), DECODE, "not bytes"),
}  # fmt: skip
OVERSIZE = {f"{route}/over-the-limit": route for route in LIMITS}


def _expect_refusal(lab: Lab, route: str, body: bytes, status: int, code: str, detail: str) -> None:
    dunhuang = lab.members["dunhuang"]
    # Refused before the signature is checked (body too large): counted against the address.
    caller = LOCAL if code == "body-too-large" else dunhuang.node_id
    held = store_ids(lab.target.db)
    total = lab.target.total()
    before = _rejections(lab)

    answer = _post(lab, dunhuang, route, body)

    assert answer.status == status, answer.body[:500]
    problem = answer.problem()
    assert problem["code"] == code and problem["status"] == status, problem
    assert problem["type"].endswith("/" + code)
    assert detail in problem["detail"], problem
    assert answer.headers.get("Cache-Control") == "no-store"
    after = _rejections(lab)
    assert after["by_code"].get(code, 0) == before["by_code"].get(code, 0) + 1
    assert _count(after, caller, code) == _count(before, caller, code) + 1
    # Nothing stored.
    assert lab.target.total() == total
    assert store_ids(lab.target.db) == held
    lines = [
        line
        for line in lab.target.log().splitlines()
        if f"POST {SYNC}{route} from {caller} (" in line and f"refused: {code}:" in line
    ]
    assert lines, f"no log line for {code} on {route}"


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_body_is_refused(lab: Lab, name: str) -> None:
    route, body, code, detail = MALFORMED[name]
    _expect_refusal(lab, route, body, 400, code, detail)


@pytest.mark.parametrize("name", list(OVERSIZE))
def test_a_body_over_the_routes_limit_is_refused(lab: Lab, name: str) -> None:
    route = OVERSIZE[name]
    limit = LIMITS[route]
    _expect_refusal(lab, route, b"\x00" * (limit + 1), 413, "body-too-large", f"over {limit}")


# --- what an honest caller gets -----------------------------------------------------------------


def test_reconcile_fetch_and_offer_answer_an_honest_caller(lab: Lab) -> None:
    dunhuang = lab.members["dunhuang"]
    # Enough records that the exchange takes fingerprints and splits, not one id list.
    more = [_record(dunhuang, _pid(lab, "dh"), title=f"卷 {i}") for i in range(200)]
    assert _push(lab, dunhuang, [*_chain(dunhuang), *more])[0] == len(more)
    # A responder answers from a snapshot of its set up to this old: let it see the new ones.
    time.sleep(SyncSettings().responder_staleness_s + 0.5)
    before = _rejections(lab)
    theirs = store_items(lab.target.db)
    assert len(theirs) > 200
    ordered = sorted(theirs, key=lambda i: (theirs[i][0], i))
    missing = set(ordered[3:6])  # what "we" lack
    extra = Item(now_ms(), secrets.token_bytes(32))  # what "we" hold and the target does not
    ours = [Item(theirs[i][0], i) for i in ordered if i not in missing] + [extra]
    initiator = Reconciler(SortedItems(ours), initiator=True)
    need: set[bytes] = set()
    have: set[bytes] = set()
    message: bytes | None = initiator.initiate()
    rounds = 0
    while message is not None:
        rounds += 1
        assert rounds < 20
        answer = _post(lab, dunhuang, "reconcile", message)
        assert answer.status == 200, answer.body
        assert answer.headers["Content-Type"] == MSGPACK
        step = initiator.reconcile(answer.body)
        need.update(step.need)
        have.update(step.have)
        message = step.reply
    assert have == {extra.id}

    # Fetch returns exactly the records asked for that the node holds.
    asked = [*sorted(missing), extra.id]
    answer = _post(lab, dunhuang, "fetch", canonical_pack([1, asked]))
    envelopes = canonical_unpack(answer.body, "fetch answer")[1]
    assert answer.status == 200 and {record_id(e) for e in envelopes} == missing
    # An offer queues only what the node lacks (it pulls later, from the offerer).
    answer = _post(lab, dunhuang, "offer", canonical_pack([1, [*sorted(missing), extra.id]]))
    assert answer.counts() == [1]
    # Nothing of this counted against the caller.
    assert _rejections(lab)["by_caller"].get(dunhuang.node_id) == before["by_caller"].get(
        dunhuang.node_id
    )


def test_the_parent_holds_what_the_target_accepted_and_nothing_else(lab: Lab) -> None:
    dunhuang = lab.members["dunhuang"]
    good = _record(dunhuang, _pid(lab, "dh"), title="passed on")
    bad = bytearray(_record(dunhuang, _pid(lab, "dh"), title="not passed on"))
    bad[-1] ^= 0x01
    lab.refused.add(record_id(bytes(bad)))
    assert _push(lab, dunhuang, [*_chain(dunhuang), good, bytes(bad)])[4] == 1
    # Gossip and reconciliation bring the parent to the target's set: every record the target
    # took, this test's and the earlier tests', and none it refused.
    held = _same_sets(lab)
    parent = lab.nodes["gansu"]
    assert record_id(good) in held
    assert len(held) == parent.total()
    assert held.isdisjoint(lab.refused)
    # The target passed on nothing the parent had to refuse.
    assert " refused (" not in parent.log()


def test_the_target_survives_its_peer_leaving_mid_sync(lab: Lab) -> None:
    """Gansu stops. The target still takes it for connected (its next hello is far off), so its
    next reconciliations with Gansu fail to connect: they must be recorded as interrupted, and
    the daemon must go on serving."""
    target, parent = lab.target, lab.nodes["gansu"]
    before = next(p for p in target.sync()["peers"] if p["peer"] == parent.node_id)
    child = lab.processes.children[parent.home]
    lab.processes.stop(parent.home, signal.SIGTERM)
    assert child.returncode == 0

    def peer_state() -> dict[str, Any] | None:
        try:
            peers = target.sync()["peers"]
        except OSError:
            return None
        return next(p for p in peers if p["peer"] == parent.node_id)

    state = poll(
        peer_state,
        lambda p: (
            p is None or (p["errors"] > before["errors"] and p["last_result"] == "interrupted")
        ),
        SYNC_SECONDS,
        "the target to fail a reconciliation with its stopped parent",
    )
    assert state is not None, "the target stopped answering when its peer left:\n" + "\n".join(
        target.log().splitlines()[-30:]
    )
    assert "Cannot connect" in (state["last_error"] or ""), state
    # Still serving a few sync intervals later, in one piece.
    time.sleep(3 * SYNC_INTERVAL_SECONDS)
    assert target.up()
    assert lab.processes.children[target.home].poll() is None
    assert "Traceback" not in target.log()


def test_the_daemons_survived(lab: Lab) -> None:
    assert lab.processes.children[lab.target.home].poll() is None
    for node in lab.nodes.values():
        assert "Traceback" not in node.log(), node.key
