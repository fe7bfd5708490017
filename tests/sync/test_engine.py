"""The sync engine (sync/engine.py) between nodes in one process: records in memory (and, where
stated, in a real store), real signatures, a direct transport that carries syncwire bodies."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from protocol.errors import ProtocolError
from protocol.hlc import Hlc
from protocol.identity import sign
from protocol.records import (
    KIND_CATALOGUE,
    CatalogueRecord,
    LangString,
    SignedRecord,
    encode_body,
    encode_envelope,
    sign_catalogue,
    signing_bytes,
)
from protocol.syncwire import (
    MAX_BATCH_BYTES,
    decode_envelopes,
    decode_ids,
    encode_envelopes,
    encode_ids,
)
from storage.store import Store, StoreSettings
from sync.authority import Authority
from sync.engine import Neighbours, RecordSet, SyncEngine, SyncSettings, TransportError
from sync.memory import MemoryRecords
from sync.records import decode_record, record_id
from sync.store import StoreRecords
from tests.sync.netbuild import NAAN, Library, TestNetwork, catalogue_record, deletion

NATIONAL, PROVINCIAL, MUNICIPAL, COUNTY = 0, 1, 2, 3


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def net() -> TestNetwork:
    return TestNetwork.build(1, 1, 1)


# --- an in-process network ----------------------------------------------------------------------

Fault = Callable[[str, str, str], None]  # (kind, sender, receiver): raise to fail the call


@dataclass
class Wire:
    """Delivers calls to the engines it knows, through syncwire bodies; records every call
    (kind, sender, receiver, ids or envelopes); peers it does not know only record."""

    engines: dict[str, SyncEngine] = field(default_factory=dict)
    calls: list[tuple[str, str, str, list[bytes]]] = field(default_factory=list)
    fault: Fault | None = None

    def end(self, me: str) -> WireEnd:
        return WireEnd(self, me)

    def sent(self, kind: str, sender: str | None = None) -> dict[str, list[bytes]]:
        """receiver → everything of `kind` sent to it (by `sender`, if given)."""
        out: dict[str, list[bytes]] = {}
        for k, src, dst, items in self.calls:
            if k == kind and (sender is None or src == sender):
                out.setdefault(dst, []).extend(items)
        return out


@dataclass
class WireEnd:
    wire: Wire
    me: str

    def _call(self, kind: str, peer: str, items: list[bytes]) -> SyncEngine | None:
        self.wire.calls.append((kind, self.me, peer, items))
        if self.wire.fault is not None:
            self.wire.fault(kind, self.me, peer)
        return self.wire.engines.get(peer)

    async def reconcile(self, peer: str, message: bytes) -> bytes:
        engine = self._call("reconcile", peer, [])
        if engine is None:
            raise TransportError(f"{peer} unreachable")
        try:
            return await engine.answer_reconcile(self.me, message)
        except ProtocolError as e:
            raise TransportError(e.message, misbehaved=True) from e

    async def fetch(self, peer: str, ids: Sequence[bytes]) -> list[bytes]:
        engine = self._call("fetch", peer, list(ids))
        if engine is None:
            raise TransportError(f"{peer} unreachable")
        answer = await engine.answer_fetch(self.me, decode_ids(encode_ids(ids)))
        return decode_envelopes(encode_envelopes(answer))

    async def push(self, peer: str, envelopes: Sequence[bytes]) -> None:
        engine = self._call("push", peer, list(envelopes))
        if engine is not None:
            await engine.receive_push(self.me, decode_envelopes(encode_envelopes(envelopes)))

    async def offer(self, peer: str, ids: Sequence[bytes]) -> None:
        engine = self._call("offer", peer, list(ids))
        if engine is not None:
            await engine.receive_offer(self.me, decode_ids(encode_ids(ids)))


@dataclass
class Node:
    name: str
    engine: SyncEngine
    records: RecordSet
    tree: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    async def ids(self) -> set[bytes]:
        snap = await self.records.snapshot()
        return {snap.item(i).id for i in range(snap.size())}


async def make_node(
    wire: Wire,
    net: TestNetwork,
    name: str,
    *,
    records: RecordSet | None = None,
    settings: SyncSettings | None = None,
    certificates: bool = True,
    seed: int = 0,
) -> Node:
    """A node named `name` on `wire`, holding every certificate of `net` unless told not to."""
    held = records if records is not None else MemoryRecords()
    node = Node(name, None, held)  # type: ignore[arg-type]
    node.engine = SyncEngine(
        held,
        Authority(net.root.public_key, net.network, NAAN),
        wire.end(name),
        lambda: Neighbours(list(node.tree), list(node.others)),
        clock_ms=now_ms,
        rng=random.Random(seed),
        settings=settings,
        on_rejected=lambda sender, code: node.refused.append((sender, code)),
    )
    wire.engines[name] = node.engine
    await node.engine.start()
    if certificates:
        result = await node.engine.apply(net.all_certificates(), None)
        assert result.rejected == result.deferred == 0
    return node


def records_of(lib: Library, n: int, **kw: object) -> list[bytes]:
    return [catalogue_record(lib, now_ms(), **kw) for _ in range(n)]  # type: ignore[arg-type]


def record_at(lib: Library, wall_ms: int) -> bytes:
    """A new record of `lib` with the version given (the library's clock left alone)."""
    body = CatalogueRecord(
        pid=pid_of(catalogue_record(lib, now_ms())),
        origin=lib.public_key,
        version=Hlc(wall_ms),
        dc={"title": (LangString("旧志", "zh"),)},
    )
    return encode_envelope(sign_catalogue(body, lib.member.key))


def ids_of(envelopes: Sequence[bytes]) -> set[bytes]:
    return {record_id(e) for e in envelopes}


def pid_of(envelope: bytes) -> str:
    return decode_record(envelope).slot


# --- applying -----------------------------------------------------------------------------------


async def test_apply_verifies_and_blames_the_sender_for_bad_records(net: TestNetwork) -> None:
    wire = Wire()
    node = await make_node(wire, net, "a")
    county, national = net.libraries[COUNTY], net.libraries[NATIONAL]
    good = catalogue_record(county, now_ms())
    bad_signature = good[:-1] + bytes([good[-1] ^ 1])
    bad_body = good.replace("县志".encode(), "伪志".encode())
    assert bad_body != good
    # Signed by another member's key in the county's name.
    body = CatalogueRecord(
        pid=pid_of(catalogue_record(county, now_ms())),
        origin=county.public_key,
        version=Hlc(now_ms()),
        dc={"title": (LangString("冒名", "zh"),)},
    )
    payload = encode_body(body)
    forged = encode_envelope(
        SignedRecord(
            KIND_CATALOGUE,
            payload,
            national.public_key,
            sign(national.member.key, signing_bytes(KIND_CATALOGUE, payload)),
        )
    )
    garbage = b"\x95\x01not a record"
    batch = [bad_signature, good, garbage, forged, bad_body]
    result = await node.engine.apply(batch, "peer-x")
    assert [r.id for r in result.applied] == [record_id(good)]
    assert result.rejected == 4
    assert node.engine.peers["peer-x"].rejected == 4
    assert [sender for sender, _ in node.refused] == ["peer-x"] * 4
    assert all(code for _, code in node.refused)
    assert await node.records.have([record_id(e) for e in batch]) == {record_id(good)}
    # This node's own bad records are refused too, and blamed on nobody.
    result = await node.engine.apply([bad_signature], None)
    assert result.rejected == 1 and len(node.refused) == 4


async def test_a_batch_applies_whatever_the_order_of_its_certificates(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    catalogue = records_of(county, 3)
    chain = net.certificates(COUNTY)  # county, municipal, provincial: leaf first
    batches = [catalogue + chain]
    rng = random.Random(4)
    for _ in range(4):
        shuffled = catalogue + chain
        rng.shuffle(shuffled)
        batches.append(shuffled)
    for n, batch in enumerate(batches):
        node = await make_node(Wire(), net, f"n{n}", certificates=False)
        result = await node.engine.apply(batch, "peer")
        assert (len(result.applied), result.deferred, result.rejected) == (6, 0, 0), n
        assert await node.ids() == ids_of(batch)


async def test_deferred_records_apply_when_their_certificate_arrives(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    node = await make_node(Wire(), net, "a", certificates=False)
    await node.engine.apply(net.certificates(MUNICIPAL), "peer-1")  # municipal + provincial
    catalogue = records_of(county, 3)
    result = await node.engine.apply(catalogue, "peer-1")
    assert (len(result.applied), result.deferred, result.rejected) == (0, 3, 0)
    assert node.engine.peers["peer-1"].rejected == 0, "waiting is not misbehaving"
    assert await node.records.have(list(ids_of(catalogue))) == set()
    await node.engine.apply(net.certificates(COUNTY)[:1], "peer-2")
    assert await node.records.have(list(ids_of(catalogue))) == ids_of(catalogue)
    assert node.engine.peers["peer-1"].records_received == 2 + 3


async def test_newest_version_wins_and_tombstones_stay(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    v1 = catalogue_record(county, now_ms(), title="初版")
    pid = pid_of(v1)
    v2 = catalogue_record(county, now_ms(), title="再版", pid=pid)
    tomb = deletion(county, pid, now_ms())
    node = await make_node(Wire(), net, "a")
    await node.engine.apply([v2], "p")
    result = await node.engine.apply([v1], "p")
    assert (result.applied, result.stale) == ([], 1)
    await node.engine.apply([tomb], "p")
    result = await node.engine.apply([v2, v1], "p")
    assert result.applied == [] and result.stale + result.known == 2
    assert record_id(tomb) in await node.ids()
    assert not await node.records.have([record_id(v1), record_id(v2)])
    # One batch, any order: the tombstone is kept.
    for order in ([v1, tomb, v2], [tomb, v2, v1], [v2, v1, tomb]):
        fresh = await make_node(Wire(), net, "b")
        result = await fresh.engine.apply(order, "p")
        assert [r.id for r in result.applied] == [record_id(tomb)]
        assert result.stale == 2


async def test_reconciliation_never_resurrects_a_deleted_record(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    live = catalogue_record(county, now_ms())
    tomb = deletion(county, pid_of(live), now_ms())
    wire = Wire()
    a = await make_node(wire, net, "a")
    b = await make_node(wire, net, "b")
    await a.engine.apply([live], None)
    await b.engine.apply([tomb], None)
    stats = await a.engine.reconcile_with("b")  # a pushes `live`, b fetches nothing new
    assert stats.last_result == "ok"
    assert record_id(tomb) in await a.ids() and record_id(live) not in await a.ids()
    assert record_id(live) not in await b.ids()
    assert await a.ids() == await b.ids()


# --- reconciliation -----------------------------------------------------------------------------


async def test_reconcile_with_makes_both_sets_equal(net: TestNetwork) -> None:
    county, national = net.libraries[COUNTY], net.libraries[NATIONAL]
    wire = Wire()
    settings = SyncSettings(fetch_batch=25, frame_size_limit=4_096)
    a = await make_node(wire, net, "a", settings=settings)
    b = await make_node(wire, net, "b", settings=settings)
    shared = records_of(county, 50)
    only_a = records_of(county, 120)
    only_b = records_of(national, 300)
    await a.engine.apply(shared + only_a, None)
    await b.engine.apply(shared + only_b, None)
    stats = await a.engine.reconcile_with("b")
    assert stats.last_result == "ok", stats.last_error
    assert (stats.ahead, stats.behind) == (len(only_a), 0)
    assert stats.records_received == len(only_b)
    assert stats.records_sent == len(only_a)
    assert b.engine.peers["a"].records_received == len(only_a)
    assert await a.ids() == await b.ids()
    assert ids_of(shared + only_a + only_b) <= await a.ids()
    again = await a.engine.reconcile_with("b")
    assert again.last_result == "in sync" and again.round_trips == 1
    assert (again.ahead, again.behind) == (0, 0)


async def test_fetch_answers_are_bounded(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    wire = Wire()
    a = await make_node(wire, net, "a")
    b = await make_node(wire, net, "b")
    large = [
        catalogue_record(county, now_ms(), title="长" * 20_000 + str(n)) for n in range(45)
    ]  # ~60 KB each: 2.7 MB in all
    assert sum(map(len, large)) > MAX_BATCH_BYTES
    await b.engine.apply(large, None)
    wanted = [record_id(e) for e in large]
    answer = await b.engine.answer_fetch("a", [bytes(32), *wanted])
    assert 0 < len(answer) < len(large)
    assert answer == large[: len(answer)], "in the order asked, unknown ids skipped"
    assert sum(map(len, answer)) <= MAX_BATCH_BYTES
    assert await b.engine.answer_fetch("a", [bytes(32)]) == []
    # The initiator fetches the rest in further requests.
    stats = await a.engine.reconcile_with("b")
    assert stats.last_result == "ok" and ids_of(large) <= await a.ids()
    assert len(wire.sent("fetch", "a")["b"]) >= len(large)
    assert sum(1 for k, src, _, _ in wire.calls if k == "fetch" and src == "a") >= 2


# --- gossip -------------------------------------------------------------------------------------


async def test_gossip_pushes_along_the_tree_and_offers_to_a_few_others(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    for seed in range(5):
        wire = Wire()
        node = await make_node(wire, net, "me", settings=SyncSettings(random_fanout=2), seed=seed)
        node.tree = ["parent", "child-1", "child-2"]
        node.others = ["child-1", "o1", "o2", "o3", "o4"]
        fresh = records_of(county, 3)
        old = [record_at(county, now_ms() - 3_600_000)]  # anti-entropy's business
        await node.engine.receive_push("child-2", fresh + old)
        await node.engine.flush()
        pushed = wire.sent("push")
        assert set(pushed) == {"parent", "child-1"}, "not back to the sender"
        for envelopes in pushed.values():
            assert sorted(envelopes) == sorted(fresh)
        offered = wire.sent("offer")
        assert len(offered) == 2 and set(offered) <= {"o1", "o2", "o3", "o4"}
        for offered_ids in offered.values():
            assert sorted(offered_ids) == sorted(record_id(e) for e in fresh)
        # Own records go to every tree neighbour.
        wire.calls.clear()
        own = records_of(county, 1)
        await node.engine.apply(own, None)
        await node.engine.flush()
        assert set(wire.sent("push")) == {"parent", "child-1", "child-2"}
        assert len(wire.sent("offer")) == 2


async def test_an_offer_is_pulled_once_and_what_is_held_is_not(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    wire = Wire()
    a = await make_node(wire, net, "a", settings=SyncSettings(random_fanout=1))
    b = await make_node(wire, net, "b")
    a.others = ["b"]
    held, new = records_of(county, 2), records_of(county, 3)
    await b.engine.apply(held, None)
    await a.engine.apply(held + new, None)
    await a.engine.flush()  # offers all five to b
    assert sorted(wire.sent("offer", "a")["b"]) == sorted(ids_of(held + new))
    assert await b.engine.receive_offer("a", [record_id(e) for e in new]) == 0, "queued already"
    await b.engine.flush()
    assert sorted(wire.sent("fetch", "b")["a"]) == sorted(ids_of(new))
    assert ids_of(held + new) <= await b.ids()


async def test_queues_are_bounded(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    wire = Wire()
    limit = 5
    node = await make_node(wire, net, "me", settings=SyncSettings(queue_limit=limit))
    node.tree = ["parent"]
    node.others = ["other"]
    fresh = records_of(county, 12)
    await node.engine.receive_push("sender", fresh)
    await node.engine.receive_push("sender", records_of(county, 3))
    await node.engine.flush()
    pushed = wire.sent("push")["parent"]
    assert len(pushed) == limit and set(pushed) <= set(fresh), "the rest is anti-entropy's"
    assert len(wire.sent("offer")["other"]) == limit
    # Offers to pull: at most `limit` queued per peer.
    offered = [record_id(e) for e in records_of(county, 12)]
    assert await node.engine.receive_offer("sender", offered) == limit
    assert await node.engine.receive_offer("sender", offered[limit:]) == 0
    # Records waiting for a certificate: `limit` are kept.
    stranger = await make_node(
        Wire(), net, "s", settings=SyncSettings(queue_limit=limit), certificates=False
    )
    await stranger.engine.apply(net.certificates(MUNICIPAL), None)
    waiting = records_of(county, 12)
    result = await stranger.engine.apply(waiting, "sender")
    assert result.deferred == 12
    await stranger.engine.apply(net.certificates(COUNTY)[:1], "sender")
    assert len(await stranger.records.have([record_id(e) for e in waiting])) == limit


# --- interruptions ------------------------------------------------------------------------------


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Store]]]:
    opened: list[Store] = []

    async def open_store(name: str) -> Store:
        store = await Store.open(StoreSettings(tmp_path / name, 1 << 30))
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


async def interrupted_pair(
    net: TestNetwork, records: RecordSet | None = None
) -> tuple[Wire, Node, Node, list[bytes]]:
    """a (holding nothing but certificates) and b (holding 200 records of the county), with
    small fetch batches and frames, so that a reconciliation takes several requests."""
    wire = Wire()
    settings = SyncSettings(fetch_batch=20, frame_size_limit=4_096)
    a = await make_node(wire, net, "a", records=records, settings=settings)
    b = await make_node(wire, net, "b", settings=settings)
    catalogue = records_of(net.libraries[COUNTY], 200)
    await b.engine.apply(catalogue, None)
    return wire, a, b, catalogue


def fail_on(kind: str, nth: int) -> Fault:
    count = 0

    def fault(call: str, sender: str, receiver: str) -> None:
        nonlocal count
        if call == kind:
            count += 1
            if count == nth:
                raise TransportError(f"{kind} {nth} to {receiver} failed")

    return fault


@pytest.mark.parametrize("fault", ["reconcile", "fetch", "fetch-extra"])
async def test_a_transport_error_leaves_the_round_interrupted(net: TestNetwork, fault: str) -> None:
    wire, a, b, _ = await interrupted_pair(net)
    if fault == "fetch-extra":
        stray = catalogue_record(net.libraries[COUNTY], now_ms())
        await b.engine.apply([stray], None)
        original = b.engine.answer_fetch

        async def answer_with_extra(peer: str, ids: Sequence[bytes]) -> list[bytes]:
            return [*await original(peer, ids), stray]  # not asked for

        b.engine.answer_fetch = answer_with_extra  # type: ignore[method-assign]
    else:
        wire.fault = fail_on(fault, 2 if fault == "reconcile" else 3)
    stats = await a.engine.reconcile_with("b")
    assert stats.last_result == "interrupted"
    assert stats.errors == 1 and stats.last_error
    assert await a.ids() < await b.ids()


@pytest.mark.parametrize("backend", ["memory", "store"])
@pytest.mark.parametrize("fault", ["reconcile", "fetch"])
async def test_an_interrupted_round_keeps_whole_records_and_the_next_completes(
    net: TestNetwork, stores: Callable[[str], Awaitable[Store]], backend: str, fault: str
) -> None:
    store = await stores("a") if backend == "store" else None
    records = StoreRecords(store) if store is not None else None
    wire, a, b, catalogue = await interrupted_pair(net, records)
    wire.fault = fail_on(fault, 6 if fault == "fetch" else 2)
    # How the interruption surfaces is the test above's business; what it leaves is this one's.
    with contextlib.suppress(TransportError, BaseExceptionGroup):
        await a.engine.reconcile_with("b")
    certificates = ids_of(net.all_certificates())
    got = await a.ids()
    # Fetched batches may or may not have been applied when the error came; whatever was is
    # whole, and nothing else is there.
    assert certificates <= got < await b.ids()
    envelopes = await a.records.envelopes(sorted(got), 1 << 30)
    assert ids_of(envelopes) == got, "every item has its whole record"
    for envelope in envelopes:
        decode_record(envelope)
    if store is not None:
        async with store.db.conn.execute(
            "SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM membership),"
            " (SELECT count(*) FROM sync_items)"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == row[1] == len(got)
        assert (await store.catalogue.counts()).records == len(got - certificates)
    wire.fault = None
    stats = await a.engine.reconcile_with("b")
    assert stats.last_result == "ok", stats.last_error
    assert stats.behind == 0
    assert await a.ids() == await b.ids()
    assert ids_of(catalogue) <= await a.ids()
    assert (await a.engine.reconcile_with("b")).last_result == "in sync"
