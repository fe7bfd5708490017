"""Catalogue sync converges: whatever writes, deletions, partitions, losses and restarts happen,
once the network heals every node holds the same set — per pid the newest version, a deleted
pid its tombstone — and records nobody may write are refused everywhere."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ark
from protocol.hlc import Hlc
from protocol.reconcile import SortedItems
from protocol.records import CatalogueRecord
from sync.records import decode_record, record_id
from tests.sim.simnet import T0, SimNet
from tests.sync.netbuild import NAAN, catalogue_record, deletion
from tests.sync.netbuild import TestNetwork as Network

# 9 nodes: national; 2 provincial; 1 municipal under each; 2 counties under each municipal.
NET = Network.build(2, 1, 2, seed=7, not_before_ms=T0 - 60_000)
N = len(NET.libraries)
COUNTIES = [i for i, lib in enumerate(NET.libraries) if lib.tier == "county"]
SETTLE_ROUNDS = 60

convergence_settings = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- what the network should end up holding ---------------------------------------------------


@dataclass
class Expected:
    """Every record written, as the writers know them: per pid the newest envelope."""

    newest: dict[str, bytes]
    origin: dict[str, int]
    deleted: set[str]

    @classmethod
    def empty(cls) -> Expected:
        return cls({}, {}, set())

    def ids(self) -> set[bytes]:
        certificates = {record_id(e) for e in NET.all_certificates()}
        return certificates | {record_id(e) for e in self.newest.values()}

    def fingerprint(self) -> bytes:
        envelopes = [*NET.all_certificates(), *self.newest.values()]
        items = SortedItems(decode_record(e).item for e in envelopes)
        return items.fingerprint(0, items.size())

    def live(self) -> list[str]:
        return [pid for pid in self.newest if pid not in self.deleted]


def _reset_clocks() -> None:
    # Every example starts at T0 again; versions restart with it.
    for lib in NET.libraries:
        lib.clock = Hlc(0)


async def _started(seed: int, *, settled: bool = True) -> SimNet:
    """The network started, each node holding its own chain; `settled`: and every chain."""
    _reset_clocks()
    sim = SimNet(NET, seed=seed)
    await sim.start()
    if settled:
        assert await sim.settle(SETTLE_ROUNDS) is not None
    return sim


async def _write(sim: SimNet, expected: Expected, node: int, rng: random.Random) -> None:
    envelope = catalogue_record(NET.libraries[node], sim.now, rng=rng)
    result = await sim.write(node, envelope)
    assert len(result.applied) == 1
    pid = result.applied[0].slot
    expected.newest[pid] = envelope
    expected.origin[pid] = node


async def _update(sim: SimNet, expected: Expected, pid: str) -> None:
    node = expected.origin[pid]
    envelope = catalogue_record(NET.libraries[node], sim.now, pid=pid, title="修订")
    assert len((await sim.write(node, envelope)).applied) == 1
    expected.newest[pid] = envelope


async def _delete(sim: SimNet, expected: Expected, pid: str) -> None:
    node = expected.origin[pid]
    envelope = deletion(NET.libraries[node], pid, sim.now)
    assert len((await sim.write(node, envelope)).applied) == 1
    expected.newest[pid] = envelope
    expected.deleted.add(pid)


async def _assert_converged(sim: SimNet, expected: Expected) -> None:
    taken = await sim.settle(SETTLE_ROUNDS)
    assert taken is not None, f"not converged after {SETTLE_ROUNDS} rounds of anti-entropy"
    want_ids = expected.ids()
    want_fingerprint = expected.fingerprint()
    for i in range(N):
        assert sim.ids(i) == want_ids, f"node {i} holds a different set"
        assert await sim.fingerprint(i) == want_fingerprint, f"node {i}: fingerprint differs"
        by_slot = sim.nodes[i].records.by_slot
        for pid in expected.deleted:
            body = by_slot[pid].body
            assert isinstance(body, CatalogueRecord) and body.deleted, f"{pid} came back"


# --- the property -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    node: int


@dataclass(frozen=True)
class Update:
    pick: int  # among pids written and not deleted


@dataclass(frozen=True)
class Delete:
    pick: int


@dataclass(frozen=True)
class Partition:
    sides: tuple[int, ...]  # per node: 0, 1 or 2


@dataclass(frozen=True)
class Heal:
    pass


@dataclass(frozen=True)
class Restart:
    node: int
    down: int  # rounds down; 0: back at once


@dataclass(frozen=True)
class Loss:
    rate: float


@dataclass(frozen=True)
class Run:
    rounds: int
    anti_entropy: bool


Op = Write | Update | Delete | Partition | Heal | Restart | Loss | Run

nodes = st.integers(0, N - 1)
writes = st.builds(Write, nodes)
runs = st.builds(Run, st.integers(1, 4), st.booleans())
ops = st.one_of(
    writes,
    writes,
    writes,
    st.builds(Update, st.integers(0, 1_000)),
    st.builds(Delete, st.integers(0, 1_000)),
    st.builds(Partition, st.tuples(*[st.integers(0, 2)] * N)),
    st.just(Heal()),
    st.builds(Restart, nodes, st.integers(0, 3)),
    st.builds(Loss, st.sampled_from([0.0, 0.1, 0.3, 0.6])),
    runs,
    runs,
    runs,
)


def _check_monotonic(sim: SimNet, seen: list[dict[str, tuple[int, int, bytes]]]) -> None:
    """No node ever goes back to an older version of a slot (a tombstone stays)."""
    for i, node in enumerate(sim.nodes):
        for slot, record in node.records.by_slot.items():
            before = seen[i].get(slot)
            assert before is None or record.order >= before, f"node {i}: {slot} went back"
            seen[i][slot] = record.order


async def _play(script: list[Op], seed: int) -> None:
    sim = await _started(seed, settled=False)
    expected = Expected.empty()
    rng = random.Random(seed)
    seen: list[dict[str, tuple[int, int, bytes]]] = [{} for _ in range(N)]
    for op in script:
        match op:
            case Write(node) if sim.is_up(node):
                await _write(sim, expected, node, rng)
            case Update(pick) | Delete(pick) if expected.live():
                live = expected.live()
                pid = live[pick % len(live)]
                if sim.is_up(expected.origin[pid]):
                    await (_update if isinstance(op, Update) else _delete)(sim, expected, pid)
            case Partition(sides):
                sim.partition([{i for i, s in enumerate(sides) if s == g} for g in (1, 2)])
            case Heal():
                sim.heal()
            case Restart(node, 0) if sim.is_up(node):
                await sim.restart_now(node)
            case Restart(node, down) if sim.is_up(node):
                sim.stop(node, down)
            case Loss(rate):
                sim.set_loss(rate)
            case Run(rounds, anti_entropy):
                await sim.run(rounds, anti_entropy_every=1 if anti_entropy else 0)
            case _:
                pass  # the writer is down, or nothing to update yet
        _check_monotonic(sim, seen)
    await _assert_converged(sim, expected)
    _check_monotonic(sim, seen)


@convergence_settings
@given(script=st.lists(ops, min_size=12, max_size=60), seed=st.integers(0, 2**16))
def test_any_history_converges_to_the_newest_versions(script: list[Op], seed: int) -> None:
    asyncio.run(_play(script, seed))


# --- plain cases ------------------------------------------------------------------------------


def _subtree(root: int) -> set[int]:
    below = {root}
    for i, lib in enumerate(NET.libraries):
        if lib.parent in below:
            below.add(i)
    return below


async def test_partitioned_halves_converge_after_healing() -> None:
    sim = await _started(1)
    expected = Expected.empty()
    rng = random.Random(1)
    east = _subtree(5)  # the second province, its municipal library and counties
    west = set(range(N)) - east
    sim.partition([east])
    await _write(sim, expected, min(west & set(COUNTIES)), rng)
    await _write(sim, expected, min(east & set(COUNTIES)), rng)
    await sim.run(8, anti_entropy_every=2)
    west_pid, east_pid = expected.newest
    west_id, east_id = (record_id(expected.newest[p]) for p in (west_pid, east_pid))
    assert all(west_id in sim.ids(i) and east_id not in sim.ids(i) for i in west)
    assert all(east_id in sim.ids(i) and west_id not in sim.ids(i) for i in east)
    # Gossip carries a record once, when it is new: after healing, anti-entropy moves it.
    sim.heal()
    await sim.run(3)
    assert not await sim.converged()
    await sim.run(20, anti_entropy_every=1)
    assert await sim.converged()
    assert all(sim.ids(i) == expected.ids() for i in range(N))


async def test_restarted_node_keeps_its_records_and_catches_up() -> None:
    sim = await _started(2)
    expected = Expected.empty()
    rng = random.Random(2)
    county = COUNTIES[0]
    await _write(sim, expected, county, rng)
    await sim.run(8)
    assert sim.holders(record_id(next(iter(expected.newest.values())))) == N
    first_engine = sim.nodes[county].engine
    sim.stop(county, 4)
    for writer in COUNTIES[1:]:
        await _write(sim, expected, writer, rng)
    await sim.run(2)
    assert not sim.is_up(county)
    assert len(sim.ids(county)) == len(expected.ids()) - 3  # kept, but missed the new ones
    await sim.run(10, anti_entropy_every=1)
    assert sim.is_up(county)
    assert sim.nodes[county].engine is not first_engine
    assert sim.ids(county) == expected.ids()
    assert await sim.converged()


async def test_deletion_by_its_origin_wins_over_the_live_version_everywhere() -> None:
    sim = await _started(3)
    expected = Expected.empty()
    rng = random.Random(3)
    writer = COUNTIES[1]
    await _write(sim, expected, writer, rng)
    (pid,) = expected.newest
    live = expected.newest[pid]
    await sim.run(1)
    # The tombstone leaves while the live version is still on its way.
    await _delete(sim, expected, pid)
    await _assert_converged(sim, expected)
    assert sim.holders(record_id(live)) == 0
    # The old live version offered again later is stale everywhere.
    for i in range(N):
        result = await sim.nodes[i].running().apply([live], sim.name(writer))
        assert result.stale == 1 and not result.applied


def _tampered(envelope: bytes) -> bytes:
    assert envelope.count(b"ORIGINAL") == 1
    return envelope.replace(b"ORIGINAL", b"FORGED!!")


async def test_forged_record_is_refused_and_blamed_on_the_sender() -> None:
    sim = await _started(4)
    liar, victim = COUNTIES[0], NET.libraries[COUNTIES[0]].parent
    assert victim is not None
    genuine = catalogue_record(NET.libraries[liar], sim.now, title="ORIGINAL")
    forged = _tampered(genuine)
    sim.send(liar, sim.name(victim), "push", (forged,))
    await sim.run(5, anti_entropy_every=1)
    assert sim.nodes[victim].running().peers[sim.name(liar)].rejected == 1
    assert sim.holders(record_id(forged)) == 0
    assert sim.holders(record_id(genuine)) == 0
    assert await sim.converged()


async def test_record_under_another_librarys_code_is_refused() -> None:
    sim = await _started(5)
    thief, owner = COUNTIES[0], COUNTIES[2]
    parent = NET.libraries[thief].parent
    assert parent is not None
    pid = str(ark.mint(NAAN, NET.libraries[owner].code, b"stolen!!"))
    stolen = catalogue_record(NET.libraries[thief], sim.now, pid=pid)
    # Its own node refuses it too (no one to blame) ...
    local = await sim.write(thief, stolen)
    assert local.rejected == 1 and not local.applied
    # ... and a peer it is pushed to refuses it and counts it against the sender.
    sim.send(thief, sim.name(parent), "push", (stolen,))
    await sim.run(5, anti_entropy_every=1)
    assert sim.nodes[parent].running().peers[sim.name(thief)].rejected == 1
    assert sim.holders(record_id(stolen)) == 0
