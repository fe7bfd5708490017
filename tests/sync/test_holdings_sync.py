"""Holdings pages and the replication policy as synced records: their slot and order
(sync/records.py), who may write them (sync/authority.py), and the engine applying them end to
end over records in memory and in a real store (sync/memory.py, sync/store.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol.errors import SignatureError
from protocol.hlc import Hlc
from protocol.holdings import (
    KIND_HOLDINGS,
    KIND_POLICY,
    PAGES_BY_TIER,
    Holding,
    HoldingsPage,
    ReplicationPolicy,
    encode_entries,
    page_of,
    pid_key,
    sign_holdings,
    sign_policy,
)
from protocol.records import encode_envelope
from storage.keys import int_key
from storage.store import Store, StoreSettings
from sync.authority import Authority, Deferred, Rejected
from sync.engine import RecordSet
from sync.memory import MemoryRecords
from sync.records import decode_record, holdings_ref, record_id
from sync.store import StoreRecords
from tests.sync.netbuild import NAAN, Library, TestNetwork
from tests.sync.test_engine import Node, Wire, make_node

NATIONAL, PROVINCIAL, MUNICIPAL, COUNTY = 0, 1, 2, 3


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def net() -> TestNetwork:
    return TestNetwork.build(1, 1, 1)


@pytest.fixture(scope="module")
def other_net() -> TestNetwork:
    return TestNetwork.build(1, 1, 1, seed=7)


def pids_in(page: int, pages: int, n: int, tag: str = "") -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        pid = f"ark:/{NAAN}/{tag}{i}"
        if page_of(pid_key(pid), pages) == page:
            out.append(pid)
        i += 1
    return out


def page_envelope(
    lib: Library,
    version: Hlc,
    *,
    page: int = 2,
    pages: int | None = None,
    pids: list[str] | None = None,
) -> bytes:
    """Page `page` of `lib`'s holdings (its tier's page count unless given), signed by it."""
    count = PAGES_BY_TIER[lib.tier] if pages is None else pages
    chosen = pids_in(page, count, 3) if pids is None else pids
    entries = [Holding(pid_key(p), pid_key(p)[::-1], 1_700_000_000) for p in chosen]
    body = HoldingsPage(lib.public_key, page, count, version, encode_entries(entries))
    return encode_envelope(sign_holdings(body, lib.member.key))


def policy_envelope(
    net: TestNetwork, version: Hlc, *, copies: int = 3, signer: object = None
) -> bytes:
    key = net.root.key if signer is None else signer
    body = ReplicationPolicy(net.network, version, copies)
    return encode_envelope(sign_policy(body, key))  # type: ignore[arg-type]


def authority(net: TestNetwork, *learned: int) -> Authority:
    judge = Authority(net.root.public_key, net.network, NAAN)
    for index in learned:
        for envelope in net.certificates(index):
            judge.learn(decode_record(envelope))
    return judge


# --- slots and order -----------------------------------------------------------------------------


def test_a_holdings_page_decodes_to_its_slot_and_order(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    envelope = page_envelope(county, Hlc(now_ms(), 4), page=40)
    record = decode_record(envelope)
    assert record.kind == KIND_HOLDINGS
    assert record.slot == holdings_ref(county.public_key, 40)
    assert record.slot == f"holdings/{county.public_key.hex()}/40"
    assert isinstance(record.body, HoldingsPage)
    assert record.order == (
        0,
        record.body.version.wall_ms,
        4,
        county.public_key,
        record_id(envelope),
    )
    assert record.item.timestamp == record.body.version.wall_ms
    assert record.id == record_id(envelope)
    newer = decode_record(page_envelope(county, Hlc(record.body.version.wall_ms, 5), page=40))
    assert newer.slot == record.slot and newer.order > record.order


def test_the_policy_decodes_to_one_slot(net: TestNetwork) -> None:
    envelope = policy_envelope(net, Hlc(5_000, 1))
    record = decode_record(envelope)
    assert record.kind == KIND_POLICY
    assert record.slot == "policy"
    assert record.order == (0, 5_000, 1, b"", record_id(envelope))
    # Any signer's policy has the same slot: who may write it is the authority's call.
    forged = decode_record(policy_envelope(net, Hlc(6_000), signer=net.libraries[0].member.key))
    assert forged.slot == "policy" and forged.order > record.order


def test_a_damaged_page_does_not_decode(net: TestNetwork) -> None:
    envelope = page_envelope(net.libraries[COUNTY], Hlc(now_ms()))
    with pytest.raises(SignatureError):
        decode_record(envelope[:-1] + bytes([envelope[-1] ^ 1]))


# --- the authority -------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [NATIONAL, PROVINCIAL, MUNICIPAL, COUNTY])
def test_each_tier_pages_by_its_own_count(net: TestNetwork, index: int) -> None:
    lib = net.libraries[index]
    judge = authority(net, index)
    judge.judge(decode_record(page_envelope(lib, Hlc(now_ms()))), None)
    for tier, pages in PAGES_BY_TIER.items():
        if tier == lib.tier:
            continue
        with pytest.raises(Rejected, match="pages"):
            judge.judge(decode_record(page_envelope(lib, Hlc(now_ms()), pages=pages)), None)


def test_holdings_of_an_uncertified_node_wait_for_its_certificate(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    judge = authority(net, NATIONAL, PROVINCIAL)
    with pytest.raises(Deferred) as info:
        judge.judge(decode_record(page_envelope(county, Hlc(now_ms()))), None)
    assert info.value.awaiting == county.public_key
    judge.learn(decode_record(net.certificates(COUNTY)[0]))
    judge.judge(decode_record(page_envelope(county, Hlc(now_ms()))), None)


def test_holdings_dated_after_the_certificate_are_rejected(net: TestNetwork) -> None:
    county = net.libraries[COUNTY]
    judge = authority(net, COUNTY)
    cert = judge.certificate(county.public_key)
    assert cert is not None
    judge.judge(decode_record(page_envelope(county, Hlc(cert.not_after_ms))), None)
    with pytest.raises(Rejected, match="after"):
        judge.judge(decode_record(page_envelope(county, Hlc(cert.not_after_ms + 1))), None)


def test_only_the_root_sets_the_policy_of_its_network(
    net: TestNetwork, other_net: TestNetwork
) -> None:
    judge = authority(net, NATIONAL)
    judge.judge(decode_record(policy_envelope(net, Hlc(now_ms()))), None)
    national = net.libraries[NATIONAL].member.key
    with pytest.raises(Rejected, match="root"):
        judge.judge(decode_record(policy_envelope(net, Hlc(now_ms()), signer=national)), None)
    with pytest.raises(Rejected, match="root"):
        judge.judge(decode_record(policy_envelope(other_net, Hlc(now_ms()))), None)
    # This network's name, another network's root.
    foreign_root = encode_envelope(
        sign_policy(ReplicationPolicy(net.network, Hlc(now_ms())), other_net.root.key)
    )
    with pytest.raises(Rejected, match="root"):
        judge.judge(decode_record(foreign_root), None)
    # The root's key, another network's name.
    other_name = encode_envelope(
        sign_policy(ReplicationPolicy(other_net.network, Hlc(now_ms())), net.root.key)
    )
    with pytest.raises(Rejected, match="another network"):
        judge.judge(decode_record(other_name), None)


# --- the engine, end to end ----------------------------------------------------------------------


@pytest.fixture(params=["memory", "store"])
async def records(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecordSet]:
    if request.param == "memory":
        yield MemoryRecords()
        return
    store = await Store.open(StoreSettings(tmp_path / "store", 1 << 30))
    try:
        yield StoreRecords(store)
    finally:
        await store.close()


async def node_with(net: TestNetwork, records: RecordSet, *, certificates: bool = True) -> Node:
    return await make_node(Wire(), net, "a", records=records, certificates=certificates)


async def held_envelope(records: RecordSet, slot: str) -> bytes | None:
    """The envelope a record set holds in `slot` (holdings or policy)."""
    if isinstance(records, MemoryRecords):
        record = records.by_slot.get(slot)
        return record.envelope if record else None
    assert isinstance(records, StoreRecords)
    store = records._store
    if slot == "policy":
        return await store.holdings.policy_envelope()
    _, holder, page = slot.split("/")
    return await store.holdings.page_envelope(bytes.fromhex(holder), int(page))


async def test_engine_stores_newer_pages_and_refuses_older(
    net: TestNetwork, records: RecordSet
) -> None:
    node = await node_with(net, records)
    county = net.libraries[COUNTY]
    t = now_ms()
    first = page_envelope(county, Hlc(t, 0), pids=pids_in(2, 64, 3, "a"))
    result = await node.engine.apply([first], "peer")
    assert [r.id for r in result.applied] == [record_id(first)]
    slot = holdings_ref(county.public_key, 2)
    assert await held_envelope(records, slot) == first
    assert record_id(first) in await node.ids()

    newer = page_envelope(county, Hlc(t, 1), pids=pids_in(2, 64, 2, "b"))
    result = await node.engine.apply([newer], "peer")
    assert len(result.applied) == 1
    assert await held_envelope(records, slot) == newer
    ids = await node.ids()
    assert record_id(newer) in ids and record_id(first) not in ids

    older = page_envelope(county, Hlc(t - 1, 9))
    result = await node.engine.apply([older], "peer")
    assert (len(result.applied), result.stale, result.rejected) == (0, 1, 0)
    assert await held_envelope(records, slot) == newer
    assert (await node.engine.apply([newer], "peer")).known == 1
    assert node.refused == []

    if isinstance(records, StoreRecords):
        store = records._store
        # The entry rows as stored (`holders()` reads only those of catalogued records).
        async with store.db.conn.execute(
            "SELECT pid_key, holder, content_key, verified_s FROM holdings"
        ) as cur:
            rows = {int_key(k): (bytes(h), int_key(c), v) for k, h, c, v in await cur.fetchall()}
        assert set(rows) == {pid_key(p) for p in pids_in(2, 64, 2, "b")}
        assert all(r == (county.public_key, k[::-1], 1_700_000_000) for k, r in rows.items())


async def test_engine_rejects_a_page_cut_for_another_tier(
    net: TestNetwork, records: RecordSet
) -> None:
    node = await node_with(net, records)
    county = net.libraries[COUNTY]
    bad = page_envelope(county, Hlc(now_ms()), pages=PAGES_BY_TIER["municipal"])
    result = await node.engine.apply([bad], "mallory")
    assert (len(result.applied), result.rejected) == (0, 1)
    assert node.refused == [("mallory", "unauthorised-record")]
    assert node.engine.peer("mallory").rejected == 1
    assert await held_envelope(records, holdings_ref(county.public_key, 2)) is None
    assert record_id(bad) not in await node.ids()


async def test_engine_blames_the_sender_for_a_damaged_page(
    net: TestNetwork, records: RecordSet
) -> None:
    node = await node_with(net, records)
    good = page_envelope(net.libraries[COUNTY], Hlc(now_ms()))
    bad = good[:-1] + bytes([good[-1] ^ 1])
    result = await node.engine.apply([bad], "mallory")
    assert result.rejected == 1 and not result.applied
    assert [sender for sender, _ in node.refused] == ["mallory"]


async def test_engine_defers_pages_of_an_uncertified_node_until_its_certificate(
    net: TestNetwork, records: RecordSet
) -> None:
    node = await node_with(net, records, certificates=False)
    county = net.libraries[COUNTY]
    page = page_envelope(county, Hlc(now_ms()))
    result = await node.engine.apply([page], "peer")
    assert (len(result.applied), result.deferred, result.rejected) == (0, 1, 0)
    assert node.refused == []
    assert await held_envelope(records, holdings_ref(county.public_key, 2)) is None
    # Its chain arrives: the page waiting for it is applied.
    result = await node.engine.apply(net.certificates(COUNTY), "peer")
    assert result.rejected == 0
    assert await held_envelope(records, holdings_ref(county.public_key, 2)) == page


async def test_engine_takes_the_policy_only_from_the_root(
    net: TestNetwork, records: RecordSet
) -> None:
    node = await node_with(net, records)
    t = now_ms()
    forged = policy_envelope(net, Hlc(t + 1), copies=1, signer=net.libraries[NATIONAL].member.key)
    result = await node.engine.apply([forged], "mallory")
    assert result.rejected == 1
    assert node.refused == [("mallory", "unauthorised-record")]
    assert await held_envelope(records, "policy") is None

    first = policy_envelope(net, Hlc(t))
    assert len((await node.engine.apply([first], "peer")).applied) == 1
    assert await held_envelope(records, "policy") == first
    newer = policy_envelope(net, Hlc(t, 1), copies=5)
    assert len((await node.engine.apply([newer], "peer")).applied) == 1
    assert await held_envelope(records, "policy") == newer
    result = await node.engine.apply([policy_envelope(net, Hlc(t - 1), copies=2)], "peer")
    assert result.stale == 1
    assert await held_envelope(records, "policy") == newer
    ids = await node.ids()
    assert record_id(newer) in ids and record_id(first) not in ids


async def test_one_batch_of_two_versions_keeps_the_newer(
    net: TestNetwork, records: RecordSet
) -> None:
    node = await node_with(net, records)
    county = net.libraries[COUNTY]
    t = now_ms()
    older = page_envelope(county, Hlc(t, 0), pids=pids_in(2, 64, 1, "o"))
    newer = page_envelope(county, Hlc(t, 1), pids=pids_in(2, 64, 1, "n"))
    result = await node.engine.apply([newer, older], "peer")
    assert [r.id for r in result.applied] == [record_id(newer)]
    assert await held_envelope(records, holdings_ref(county.public_key, 2)) == newer


async def test_store_records_reads_a_held_pages_order_as_decoding_does(
    net: TestNetwork, tmp_path: Path
) -> None:
    """StoreRecords.held reads a page's order from its envelope without verifying it again:
    it must equal the order decode_record gives, or newer/older verdicts go wrong."""
    store = await Store.open(StoreSettings(tmp_path / "store", 1 << 30))
    try:
        records = StoreRecords(store)
        node = await node_with(net, records)
        county, national = net.libraries[COUNTY], net.libraries[NATIONAL]
        pages = [
            page_envelope(county, Hlc(now_ms(), 7), page=63),
            page_envelope(national, Hlc(now_ms(), 1), page=4095),
            policy_envelope(net, Hlc(now_ms(), 3)),
        ]
        assert len((await node.engine.apply(pages, "peer")).applied) == 3
        probes = [
            decode_record(page_envelope(county, Hlc(1), page=63)),
            decode_record(page_envelope(national, Hlc(1), page=4095)),
            decode_record(policy_envelope(net, Hlc(1))),
            decode_record(page_envelope(county, Hlc(1), page=0)),  # nothing held there
        ]
        held = await records.held(probes)
        assert held == {decode_record(e).slot: (decode_record(e).order, None) for e in pages}
        sync_counts = await store.sync.counts()
        assert sync_counts.get(KIND_HOLDINGS) == 2 and sync_counts.get(KIND_POLICY) == 1
        assert await store.sync.envelopes([record_id(e) for e in pages], 1 << 20) == pages
    finally:
        await store.close()


async def test_two_nodes_reconcile_pages_and_the_policy(net: TestNetwork, tmp_path: Path) -> None:
    wire = Wire()
    store = await Store.open(StoreSettings(tmp_path / "b", 1 << 30))
    try:
        a = await make_node(wire, net, "a")
        b = await make_node(wire, net, "b", records=StoreRecords(store))
        county = net.libraries[COUNTY]
        envelopes = [
            page_envelope(county, Hlc(now_ms()), page=p, pids=pids_in(p, 64, 2, "r"))
            for p in (0, 31, 32, 63)
        ] + [policy_envelope(net, Hlc(now_ms()))]
        assert len((await a.engine.apply(envelopes, None, gossip=False)).applied) == 5
        await a.engine.reconcile_with("b")
        for e in envelopes:
            assert await held_envelope(b.records, decode_record(e).slot) == e
        assert await a.ids() == await b.ids()
        holders = await store.holdings.holders()
        assert len(holders) == 8
    finally:
        await store.close()
