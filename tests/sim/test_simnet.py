"""The simulator itself: rounds, faults, accounting and the uneven network builder."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from protocol.syncwire import encode_envelopes, encode_ids
from sync.engine import TransportError
from sync.records import record_id
from tests.sim.simnet import T0, SimNet, build_network
from tests.sync.netbuild import TestNetwork as Network
from tests.sync.netbuild import catalogue_record

# national (0) — provincial (1) — municipal (2) — county (3)
LINE = Network.build(1, 1, 1, seed=3, not_before_ms=T0 - 60_000)
COUNTY, MUNICIPAL = 3, 2


async def _settled(seed: int = 0) -> SimNet:
    sim = SimNet(LINE, seed=seed)
    await sim.start()
    assert await sim.settle(30) is not None
    return sim


async def test_one_way_messages_are_handled_the_round_after_they_are_sent() -> None:
    sim = await _settled()
    envelope = catalogue_record(LINE.libraries[COUNTY], sim.now, rng=random.Random(0))
    await sim.write(COUNTY, envelope)
    assert sim.in_flight() == 0  # queued in the engine until its flush
    await sim.step()
    assert sim.in_flight() > 0 and sim.holders(record_id(envelope)) == 1
    await sim.step()
    assert record_id(envelope) in sim.ids(MUNICIPAL)
    await sim.run(4)
    assert sim.holders(record_id(envelope)) == len(LINE.libraries)


async def test_traffic_counts_requests_and_body_bytes() -> None:
    sim = await _settled()
    before = dataclasses.replace(sim.nodes[COUNTY].traffic)
    envelope = catalogue_record(LINE.libraries[COUNTY], sim.now, rng=random.Random(1))
    await sim.write(COUNTY, envelope)
    await sim.step()
    after = sim.nodes[COUNTY].traffic
    # One push to its one tree neighbour, one offer of the id to one other peer.
    assert (after.push - before.push, after.offer - before.offer) == (1, 1)
    assert (after.fetch, after.reconcile) == (before.fetch, before.reconcile)
    pushed, offered = encode_envelopes([envelope]), encode_ids([record_id(envelope)])
    assert after.bytes - before.bytes == len(pushed) + len(offered)
    assert after.messages == after.push + after.offer + after.fetch + after.reconcile


async def test_total_loss_drops_messages_and_fails_requests() -> None:
    sim = await _settled()
    sim.set_loss(1.0)
    envelope = catalogue_record(LINE.libraries[COUNTY], sim.now, rng=random.Random(2))
    await sim.write(COUNTY, envelope)
    await sim.run(5)
    assert sim.holders(record_id(envelope)) == 1
    assert sim.lost > 0
    stats = await sim.nodes[MUNICIPAL].running().reconcile_with(sim.name(COUNTY))
    assert stats.last_result == "interrupted" and stats.errors == 1
    sim.set_loss(0.0)
    stats = await sim.nodes[MUNICIPAL].running().reconcile_with(sim.name(COUNTY))
    assert stats.last_result == "ok" and record_id(envelope) in sim.ids(MUNICIPAL)


async def test_partitions_cut_requests_and_neighbours_until_healed() -> None:
    sim = await _settled()
    sim.partition([{COUNTY}])
    assert sim.neighbours(COUNTY).tree == [] and sim.neighbours(COUNTY).others == []
    assert sim.name(COUNTY) not in sim.neighbours(MUNICIPAL).tree
    with pytest.raises(TransportError):
        await sim.nodes[MUNICIPAL].running().transport.fetch(sim.name(COUNTY), [])
    sim.heal()
    assert sim.neighbours(COUNTY).tree == [sim.name(MUNICIPAL)]
    # The healed link is reconciled first.
    assert sim.nodes[MUNICIPAL].running().next_peer() == sim.name(COUNTY)


async def test_a_stopped_node_loses_its_messages_and_restarts_on_its_records() -> None:
    sim = await _settled()
    held = sim.ids(COUNTY)
    first = sim.nodes[COUNTY].engine
    envelope = catalogue_record(LINE.libraries[MUNICIPAL], sim.now, rng=random.Random(3))
    await sim.write(MUNICIPAL, envelope)
    sim.stop(COUNTY, 3)
    await sim.run(2)
    assert not sim.is_up(COUNTY) and sim.ids(COUNTY) == held
    assert sim.dropped + sim.nodes[MUNICIPAL].running().peer(sim.name(COUNTY)).errors > 0
    await sim.step()
    assert sim.is_up(COUNTY) and sim.nodes[COUNTY].engine is not first
    assert sim.nodes[COUNTY].restarts == 1
    await sim.run(3, anti_entropy_every=1)
    assert record_id(envelope) in sim.ids(COUNTY)


async def test_the_same_seed_gives_the_same_run() -> None:
    def script() -> list[bytes]:
        rng = random.Random(9)
        return [catalogue_record(LINE.libraries[COUNTY], T0 + k, rng=rng) for k in range(3)]

    envelopes = script()
    traces = []
    for _ in range(2):
        sim = SimNet(LINE, seed=5)
        await sim.start()
        sim.set_loss(0.3)
        for envelope in envelopes:
            await sim.write(COUNTY, envelope)
        trace = []
        for _ in range(6):
            await sim.step(anti_entropy=True)
            trace.append(
                (sim.messages(), sim.bytes(), sim.lost, sorted(map(len, map(sim.ids, range(4)))))
            )
        traces.append(trace)
    assert traces[0] == traces[1]


def test_build_network_spreads_libraries_evenly() -> None:
    net = build_network(35, 400, 2564)
    tiers = Counter(lib.tier for lib in net.libraries)
    assert tiers == {"national": 1, "provincial": 35, "municipal": 400, "county": 2564}
    for tier in ("provincial", "municipal"):
        sizes = [len(net.children(i)) for i, lib in enumerate(net.libraries) if lib.tier == tier]
        assert max(sizes) - min(sizes) <= 1, tier
    assert len({lib.code for lib in net.libraries}) == len(net.libraries)
    assert len({lib.public_key for lib in net.libraries}) == len(net.libraries)


async def test_uneven_network_chains_are_accepted_everywhere() -> None:
    net = build_network(3, 7, 20, not_before_ms=T0 - 60_000)
    provinces = [i for i, lib in enumerate(net.libraries) if lib.tier == "provincial"]
    assert [len(net.children(i)) for i in provinces] == [3, 2, 2]
    municipal = [i for i, lib in enumerate(net.libraries) if lib.tier == "municipal"]
    assert sorted(len(net.children(i)) for i in municipal) == [2, 3, 3, 3, 3, 3, 3]
    sim = SimNet(net, seed=1, others=2)
    await sim.start()  # raises if a node refuses its own chain
    assert await sim.settle(60) is not None
    assert len(sim.ids(0)) == len(net.libraries)
