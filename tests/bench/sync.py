"""Benchmark: what anti-entropy between two catalogues costs, with the pure reconciler in-process.

Two stores of N records (N = 1,000,000; 100,000 with --quick), one written every 30 s, each an
item (HLC wall time, SHA-256 id) in protocol.reconcile's SortedItems. An initiator reconciles with
a responder over plain bytes (no network): round trips, bytes both ways, and the reconciler's CPU
time per round trip (both sides). Cases, after issue 4:

    (a) identical stores;
    (b) 1,000 differences among recent records — "recent" is the newest 10,000 records (1 % of
        1,000,000; every tenth of them missing on one side), and the dense case: the 1,000
        newest records, all missing on one side (writes gossip has not delivered yet);
    (c) 1,000 differences spread evenly over the whole store: bytes per difference.

Only the initiator learns the difference, so which side lacks the records matters: each of (b)
and (c) runs both ways and the table shows the costlier; the notes give both, and the same
sessions under the largest frame limit a peer may choose (round trips beyond the first few are
mostly messages cut at the default 60,000 B frame).

    (e) gossip: one new record written at a county library of a 3,000-node four-tier network
        (1 national, 35 provincial, 400 municipal, 2,564 county), every node running the real
        SyncEngine in the simulator (tests/sim): rounds until every node holds it and messages
        per node (push, offer, fetch, reconcile requests), without loss and with 1 % of
        messages lost (then anti-entropy every few rounds finds what gossip dropped). Baselines
        in the same run: push along the tree alone, and (full mode) anti-entropy alone.

Baselines measured in the same run: the bytes of a naive exchange (one side's sorted id list as
one msgpack array of bin 32: 34 B × N + 5 B), and the CPU time of SHA-256 over the N ids (what
hashing the whole id list once would cost).

    python -m tests.bench.sync [--quick] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.reconcile import (
    DEFAULT_FRAME_SIZE_LIMIT,
    MAX_FRAME_SIZE_LIMIT,
    Item,
    Reconciler,
    SortedItems,
)
from protocol.records import encode_envelope
from sync.authority import Authority
from sync.engine import SyncSettings
from sync.records import decode_record, record_id
from tests.bench.common import REPO, Figure, Measure, fmt, log, machine_info, median
from tests.sim.simnet import SimNet, build_network
from tests.sync.netbuild import NAAN, TestNetwork, catalogue_record

__all__ = ["main", "run_gossip", "run_sync"]

T0 = 1_700_000_000_000  # HLC wall time of the newest record, ms
SPACING_MS = 30_000
DIFFERENCES = 1_000
RECENT = 10_000  # "recent" = the newest 10,000 records (1 % of 1,000,000)
NAIVE_FRAMING = 5  # msgpack array 32 header; each id is bin 8 (2 B header + 32 B)


@dataclass
class Session:
    round_trips: int
    total_bytes: int
    largest_message: int
    cpu_seconds: float  # both sides, all rounds
    differences: int

    @property
    def cpu_per_round(self) -> float:
        return self.cpu_seconds / self.round_trips


def _id(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def _session(a: SortedItems, b: SortedItems, limit: int = DEFAULT_FRAME_SIZE_LIMIT) -> Session:
    initiator = Reconciler(a, initiator=True, frame_size_limit=limit)
    responder = Reconciler(b, initiator=False, frame_size_limit=limit)
    started = time.process_time()
    message: bytes | None = initiator.initiate()
    round_trips = total = largest = differences = 0
    while message is not None:
        round_trips += 1
        reply = responder.reconcile(message).reply
        assert reply is not None
        step = initiator.reconcile(reply)
        differences += len(step.have) + len(step.need)
        total += len(message) + len(reply)
        largest = max(largest, len(message), len(reply))
        message = step.reply
        if round_trips > 1_000:
            raise RuntimeError("reconciliation did not end")
    cpu = time.process_time() - started
    return Session(round_trips, total, largest, cpu, differences)


def _sha256_seconds(ids: list[bytes]) -> float:
    started = time.process_time()
    digest = hashlib.sha256()
    for i in ids:
        digest.update(i)
    digest.digest()
    return time.process_time() - started


def _shown(sessions: list[Session], value: str) -> str:
    s = sessions[0]
    trips = "round trip" if s.round_trips == 1 else "round trips"
    cpu = median([x.cpu_per_round for x in sessions]) * 1e3
    return f"{s.round_trips} {trips}, {value}\nCPU {fmt(cpu)} ms per round trip"


def run_sync(quick: bool, runs: int) -> list[Figure]:
    n = 100_000 if quick else 1_000_000
    log(f"sync: building {n:,} items")
    ids = [_id(k) for k in range(n)]
    items = [Item(T0 - (n - 1 - k) * SPACING_MS, i) for k, i in enumerate(ids)]
    full = SortedItems(items)
    naive_bytes = float(NAIVE_FRAMING + 34 * n)
    sha_ms = tuple(_sha256_seconds(ids) * 1e3 for _ in range(max(runs, 1)))
    sha = median(sha_ms)

    step = RECENT // DIFFERENCES
    spread_missing = {n - RECENT + k * step for k in range(DIFFERENCES)}
    random_step = n // DIFFERENCES
    random_missing = {k * random_step + random_step // 2 for k in range(DIFFERENCES)}
    lacking = {
        "recent": SortedItems(i for k, i in enumerate(items) if k not in spread_missing),
        "dense": SortedItems(items[:-DIFFERENCES]),
        "random": SortedItems(i for k, i in enumerate(items) if k not in random_missing),
    }
    # Which side lacks the records matters (only the initiator learns the difference): each
    # case runs both ways and the figure is the costlier way.
    cases: dict[str, tuple[SortedItems, SortedItems]] = {"identical": (full, full)}
    for name, store in lacking.items():
        cases[f"{name}, responder lacks"] = (full, store)
        cases[f"{name}, initiator lacks"] = (store, full)
    runs_of: dict[str, list[Session]] = {}
    for name, (a, b) in cases.items():
        runs_of[name] = []
        for run in range(max(runs, 1)):
            one = _session(a, b)
            runs_of[name].append(one)
            log(
                f"sync {name} run {run + 1}: {one.round_trips} round trips,"
                f" {one.total_bytes:,} B, {one.cpu_seconds * 1e3:,.0f} ms CPU"
            )
        expected = 0 if name == "identical" else DIFFERENCES
        if runs_of[name][0].differences != expected:
            raise RuntimeError(f"sync {name}: found {runs_of[name][0].differences} differences")
    results = {"identical": runs_of["identical"]}
    ways: dict[str, str] = {}
    for name in lacking:
        both = [runs_of[f"{name}, {way}"] for way in ("responder lacks", "initiator lacks")]
        results[name] = max(both, key=lambda r: (r[0].total_bytes, r[0].round_trips))
        ways[name] = "; ".join(
            f"{way}: {r[0].round_trips} round trips, {r[0].total_bytes:,} B,"
            f" largest message {r[0].largest_message:,} B"
            for way, r in zip(("responder lacks", "initiator lacks"), both, strict=True)
        )
        # Round trips here are mostly messages cut at the frame limit: the same case with the
        # largest limit a peer may choose, once each way.
        big = [
            _session(*cases[f"{name}, {way}"], MAX_FRAME_SIZE_LIMIT)
            for way in ("responder lacks", "initiator lacks")
        ]
        ways[name] += f"; with a {MAX_FRAME_SIZE_LIMIT:,} B frame limit: " + " and ".join(
            f"{b.round_trips} round trips, {b.total_bytes:,} B" for b in big
        )

    def baselines() -> list[Measure]:
        return [
            Measure("naive: one side's id list", "B", (naive_bytes,), "34 B × N + 5"),
            Measure(f"SHA-256 over the {n:,} ids", "ms", sha_ms),
        ]

    def ratios(sessions: list[Session], figure: float) -> list[tuple[str, float]]:
        cpu = median([x.cpu_per_round for x in sessions]) * 1e3
        return [("bytes/naive", figure / naive_bytes), ("CPU per round/SHA", cpu / sha)]

    figures = []
    same = results["identical"]
    figures.append(
        Figure(
            benchmark=f"sync (a): identical stores, {n:,} records",
            figure=Measure("bytes", "B", (float(same[0].total_bytes),)),
            shown=_shown(same, f"{same[0].total_bytes:,} B"),
            baselines=baselines(),
            ratios=ratios(same, same[0].total_bytes),
            target="1 round trip, ≤ 1 KB",
            met=same[0].round_trips == 1 and same[0].total_bytes <= 1_024,
        )
    )
    for name, what in (
        ("recent", f"1,000 of the newest {RECENT:,} missing, evenly spread"),
        ("dense", "the newest 1,000 missing"),
    ):
        s = results[name]
        figures.append(
            Figure(
                benchmark=f"sync (b): {what}, {n:,} records",
                figure=Measure("bytes", "B", (float(s[0].total_bytes),)),
                shown=_shown(s, f"{s[0].total_bytes:,} B"),
                baselines=baselines(),
                ratios=ratios(s, s[0].total_bytes),
                target="≤ 3 round trips, ≤ 150 KB",
                met=s[0].round_trips <= 3 and s[0].total_bytes <= 150_000,
                notes=[f"the costlier way shown; {ways[name]}"],
            )
        )
    s = results["random"]
    per = s[0].total_bytes / DIFFERENCES
    figures.append(
        Figure(
            benchmark=f"sync (c): 1,000 evenly spread differences, {n:,} records",
            figure=Measure("bytes per difference", "B", (per,)),
            shown=_shown(s, f"{fmt(per)} B per difference"),
            baselines=baselines(),
            ratios=ratios(s, s[0].total_bytes),
            target="≤ 1.5 KB per difference",
            met=per <= 1_500,
            notes=[f"the costlier way shown; {ways['random']}"],
        )
    )
    figures[0].notes.append(
        "pure reconciler in one process (no network, no store): initiator and responder each"
        " over an in-memory SortedItems; bytes = every message both ways; CPU = process time"
        f" of both sides divided by round trips, median of {max(runs, 1)}; frame limit"
        f" {DEFAULT_FRAME_SIZE_LIMIT:,} B; records {SPACING_MS // 1000} s apart"
    )
    return figures + run_gossip(quick, runs)


# --- (e) gossip over a 3,000-node network, in the simulator ------------------------------------

GOSSIP_TIERS = (35, 400, 2_564)  # provincial, municipal, county libraries under the national one
GOSSIP_OTHERS = 8  # peers outside the tree each node knows; `random_fanout` of them get offers
GOSSIP_LOSS = 0.01
LOSSY_ANTI_ENTROPY_EVERY = 10  # rounds; each round of it, every node reconciles with one peer
GOSSIP_MAX_ROUNDS = 80
TARGET_ROUNDS = 12
TARGET_MESSAGES = 3.0
KINDS = ("push", "offer", "fetch", "reconcile")


@dataclass
class Spread:
    """One record's spread in one trial; per-node figures are totals over all nodes / N."""

    rounds: int | None  # until every node held it; None: not within GOSSIP_MAX_ROUNDS
    messages: float  # requests per node, until the network fell quiet
    bytes: float  # request and answer bodies per node
    kinds: dict[str, float]  # messages per node by kind
    before_anti_entropy: float  # share of nodes holding it when anti-entropy first ran


def _gossip_authority(net: TestNetwork) -> Authority:
    """One Authority for every node, holding every library's certificate. (e) measures how one
    new record spreads, not how certificates do (they travel like any record, which tests/sim
    covers); 3,000 nodes each verifying 3,000 certificates would be 9 million decodes."""
    authority = Authority(net.root.public_key, net.network, NAAN)
    for lib in net.libraries:
        authority.learn(decode_record(encode_envelope(lib.member.chain[0])))
    return authority


async def _spread(
    net: TestNetwork,
    authority: Authority,
    origin: int,
    seed: int,
    *,
    settings: SyncSettings | None = None,
    loss: float = 0.0,
    anti_entropy_every: int = 0,
) -> Spread:
    sim = SimNet(net, seed=seed, others=GOSSIP_OTHERS, settings=settings, authority=authority)
    await sim.start(certificates=False)  # empty stores; the Authority knows every library
    sim.set_loss(loss)
    envelope = catalogue_record(net.libraries[origin], sim.now, rng=random.Random(seed))
    await sim.write(origin, envelope)
    wanted, n = record_id(envelope), len(sim.nodes)
    rounds: int | None = None
    before: float | None = None
    while sim.round < GOSSIP_MAX_ROUNDS:
        due = anti_entropy_every > 0 and (sim.round + 1) % anti_entropy_every == 0
        anti_entropy = due and rounds is None  # none once every node holds it
        if anti_entropy and before is None:
            before = sim.holders(wanted) / n
        sent = sim.messages()
        await sim.step(anti_entropy=anti_entropy)
        if rounds is None and sim.holders(wanted) == n:
            rounds = sim.round
        # Count until the network is quiet: what is sent after 100 % is part of the cost.
        if rounds is not None and sim.in_flight() == 0 and sim.messages() == sent:
            break
    kinds = {k: sum(getattr(node.traffic, k) for node in sim.nodes) / n for k in KINDS}
    return Spread(
        rounds, sim.messages() / n, sim.bytes() / n, kinds, 1.0 if before is None else before
    )


def _trials(
    name: str,
    net: TestNetwork,
    authority: Authority,
    origins: list[int],
    *,
    settings: SyncSettings | None = None,
    loss: float = 0.0,
    anti_entropy_every: int = 0,
) -> list[Spread]:
    out = []
    for seed, origin in enumerate(origins, start=1):
        one = asyncio.run(
            _spread(
                net,
                authority,
                origin,
                seed,
                settings=settings,
                loss=loss,
                anti_entropy_every=anti_entropy_every,
            )
        )
        out.append(one)
        log(
            f"sync (e) {name}, trial {seed}: {one.rounds} rounds, {one.messages:.2f} messages"
            f" and {one.bytes:,.0f} B per node"
        )
    return out


def _rounds(spreads: list[Spread]) -> tuple[float, ...]:
    return tuple(float(GOSSIP_MAX_ROUNDS if s.rounds is None else s.rounds) for s in spreads)


def _whole(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else fmt(value)


def run_gossip(quick: bool, runs: int) -> list[Figure]:
    """(e): one new record spreading over a 3,000-node four-tier network."""
    trials = 2 if quick else max(runs, 5)
    started = time.perf_counter()
    provincial, municipal, county = GOSSIP_TIERS
    log(f"sync (e): building a network of {1 + sum(GOSSIP_TIERS):,} libraries")
    net = build_network(provincial, municipal, county)
    authority = _gossip_authority(net)
    counties = [i for i, lib in enumerate(net.libraries) if lib.tier == "county"]
    # Origins spread over the network: each trial a different county (and seed).
    origins = [counties[(2 * k + 1) * len(counties) // (2 * trials)] for k in range(trials)]
    n = len(net.libraries)

    gossip = _trials("gossip", net, authority, origins)
    lossy = _trials(
        f"gossip, {GOSSIP_LOSS:.0%} loss",
        net,
        authority,
        origins,
        loss=GOSSIP_LOSS,
        anti_entropy_every=LOSSY_ANTI_ENTROPY_EVERY,
    )
    tree = _trials(
        "tree push only", net, authority, origins, settings=SyncSettings(random_fanout=0)
    )
    # Anti-entropy alone: a negative gossip age makes every record too old to gossip, and each
    # node reconciles with its next peer every round. Slow to simulate (3,000 reconciliations
    # a round), so full mode only, two trials.
    alone = (
        []
        if quick
        else _trials(
            "anti-entropy only",
            net,
            authority,
            origins[:2],
            settings=SyncSettings(gossip_max_age_ms=-1),
            anti_entropy_every=1,
        )
    )

    def baselines() -> list[Measure]:
        out = [
            Measure("tree push only", "rounds", _rounds(tree), "random_fanout 0"),
            Measure("tree push only", "messages per node", tuple(s.messages for s in tree)),
        ]
        if alone:
            out += [
                Measure("anti-entropy only", "rounds", _rounds(alone), "every round"),
                Measure("anti-entropy only", "messages per node", tuple(s.messages for s in alone)),
            ]
        return out

    def figure(name: str, spreads: list[Spread], extra: str) -> Figure:
        rounds = median(_rounds(spreads))
        messages = median([s.messages for s in spreads])
        per_node = median([s.bytes for s in spreads])
        reached = all(s.rounds is not None for s in spreads)
        ratios = [("messages/tree only", messages / median([s.messages for s in tree]))]
        if alone:
            ratios.append(("rounds/anti-entropy only", rounds / median(_rounds(alone))))
        kinds = ", ".join(f"{k} {median([s.kinds[k] for s in spreads]):.2f}" for k in KINDS)
        return Figure(
            benchmark=f"sync (e): one new record to {n:,} nodes, {name}",
            figure=Measure("rounds to 100 %", "rounds", _rounds(spreads)),
            shown=(
                f"{_whole(rounds)} rounds to 100 %\n{fmt(messages)} messages per node per"
                f" record\n{fmt(per_node)} B per node\nmedian of {len(spreads)}"
                f" ({_whole(min(_rounds(spreads)))}–{_whole(max(_rounds(spreads)))} rounds)"
            ),
            baselines=baselines(),
            ratios=ratios,
            target=f"≤ {TARGET_ROUNDS} rounds, ≤ {TARGET_MESSAGES:.0f} messages per node",
            met=reached and rounds <= TARGET_ROUNDS and messages <= TARGET_MESSAGES,
            notes=[
                f"messages per node by kind: {kinds}; rounds per trial:"
                f" {', '.join(str(s.rounds) for s in spreads)}{extra}"
            ],
        )

    figures = [
        figure("no loss", gossip, ""),
        figure(
            f"{GOSSIP_LOSS:.0%} of messages lost",
            lossy,
            f"; anti-entropy every {LOSSY_ANTI_ENTROPY_EVERY} rounds until 100 %, gossip alone"
            f" had reached {fmt(100 * median([s.before_anti_entropy for s in lossy]))} % of"
            " nodes by then (median); each anti-entropy round costs every node one"
            " reconciliation, which in a real network serves every record written since the"
            " last, not this one alone",
        ),
    ]
    figures[0].notes.append(
        f"simulator (tests/sim/simnet.py), real SyncEngine and MemoryRecords per node, one"
        f" process: national, {provincial} provincial, {municipal:,} municipal, {county:,}"
        " county libraries (municipal ones spread evenly over provinces, counties over"
        f" municipal ones); each node knows its tree neighbours and {GOSSIP_OTHERS} random other"
        f" peers, random_fanout {SyncSettings().random_fanout}; a message sent in one round is"
        " handled in the next, fetch and reconcile complete within a round; one county writes"
        f" one record per trial ({trials} trials, different county and seed each); messages ="
        " push, offer, fetch and reconcile requests of all nodes until the network is quiet,"
        " divided by the number of nodes; bytes = their bodies and the answers; all nodes"
        " share one Authority that already holds every certificate (certificate spread is not"
        f" measured here); {time.perf_counter() - started:.0f} s in all"
        + ("" if alone else "; quick mode: no anti-entropy-only baseline")
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.sync")
    parser.add_argument("--quick", action="store_true", help="100,000 records, not 1,000,000")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median shown)")
    args = parser.parse_args()
    from tests.bench.report import render

    figures = run_sync(args.quick, args.runs)
    machine = machine_info(Path(REPO))
    sys.stdout.write(render(machine, figures, []) + "\n")


if __name__ == "__main__":
    main()
