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

Baselines measured in the same run: the bytes of a naive exchange (one side's sorted id list as
one msgpack array of bin 32: 34 B × N + 5 B), and the CPU time of SHA-256 over the N ids (what
hashing the whole id list once would cost).

    python -m tests.bench.sync [--quick] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
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
from tests.bench.common import REPO, Figure, Measure, fmt, log, machine_info, median

__all__ = ["main", "run_sync"]

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
