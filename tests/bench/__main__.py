"""`python -m tests.bench`: run the benchmarks, print the table, write results.json.

python -m tests.bench                 # full: 1,000 × 1 MiB files, 100,000 records
python -m tests.bench --quick         # smoke: 64 × 1 MiB files, 5,000 records (< 1 min)
python -m tests.bench --profile       # also cProfile an in-process catalogue ingest
python -m tests.bench --runs 5 --workdir /mnt/fast/bench-data
python -m tests.bench --only console  # console latency while 1 GiB replicates (issue 6)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.catalogue import CatalogueResult, profile_ingest, run_catalogue
from tests.bench.common import (
    REPO,
    Figure,
    Measure,
    Repeat,
    Settings,
    drop_tree,
    log,
    machine_info,
)
from tests.bench.console import run_console
from tests.bench.ingest_files import run_ingest_files
from tests.bench.peer import run_peer
from tests.bench.replication import run_replication
from tests.bench.report import render, write_json
from tests.bench.search import run_search
from tests.bench.sync import run_sync
from tests.bench.sync_initial import run_sync_initial  # sync (d)

# Per benchmark: repeats stop early rather than pass this many seconds (see Repeat).
BUDGET_SECONDS = 200.0
QUICK_BUDGET_SECONDS = 10.0
_EXCEPTION_LINE = re.compile(r"[\w.]+(Error|Exception): ")
CREATED = (
    "files",
    "catalogue",
    "profile",
    "peer",
    "console",
)  # what a run leaves in the workdir, unless --keep


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median shown)")
    parser.add_argument("--quick", action="store_true", help="small smoke version (< 1 min)")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data")
    parser.add_argument("--profile", action="store_true", help="cProfile a catalogue ingest")
    parser.add_argument("--profile-records", type=int, help="rows to profile (20,000)")
    parser.add_argument("--keep", action="store_true", help="keep data sets and node homes")
    parser.add_argument(
        "--only",
        choices=(
            "files",
            "catalogue",
            "search",
            "peer",
            "sync",
            "sync-initial",
            "replication",
            "console",
            "profile",
        ),
        help="one benchmark (search ingests first; profile implies --profile)",
    )
    parser.add_argument("--budget", type=float, help="seconds of repeats per benchmark")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    quick = bool(args.quick)
    settings = Settings(
        workdir=args.workdir.resolve(),
        runs=args.runs,
        quick=quick,
        files=64 if quick else 1000,
        records=5_000 if quick else 100_000,
        profile_records=args.profile_records or (2_000 if quick else 20_000),
        queries_per_class=30 if quick else 200,
        profile=args.profile or args.only == "profile",
        keep=args.keep,
    )
    return settings, args


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def _failed(benchmark: str, error: Exception) -> Figure:
    """The table row of a benchmark that could not finish (the traceback goes to stderr)."""
    log(f"{benchmark} FAILED:\n{''.join(traceback.format_exception(error))}")
    lines = [line.strip(" |") for line in str(error).splitlines() if line.strip(" |")] or [""]
    # The first line says what failed; for a CLI failure, the last exception line in its
    # stderr says what it died of.
    reason = f"{type(error).__name__}: {lines[0]}"
    died_of = [line for line in lines[1:] if _EXCEPTION_LINE.match(line)]
    if died_of:
        reason += f" … {died_of[-1]}"
    return Figure(
        benchmark=benchmark,
        figure=Measure("failed", "", ()),
        shown="FAILED (traceback on stderr)",
        met=None,
        notes=[f"failed: {reason}"[:600]],
    )


@dataclass
class Outcome:
    figures: list[Figure] = field(default_factory=list)
    profile: str | None = None
    failed: bool = False


def run(settings: Settings, only: str | None, budget: float) -> Outcome:
    """Each benchmark in turn; one that fails (say, a siku build in the middle of an edit)
    becomes a FAILED row and the others still run."""
    repeat = Repeat(settings.runs, budget)
    out = Outcome()

    def guarded(benchmark: str, fn: Callable[[], list[Figure]]) -> None:
        try:
            out.figures += fn()
        except Exception as e:  # reported in the table and on stderr, exit status 1
            out.figures.append(_failed(benchmark, e))
            out.failed = True

    if only in (None, "files"):
        guarded("file ingest", lambda: [run_ingest_files(settings, repeat)])
    if only in (None, "catalogue", "search"):
        catalogue: list[CatalogueResult] = []

        def ingest() -> list[Figure]:
            catalogue.append(run_catalogue(settings, repeat))
            return [catalogue[0].figure]

        guarded("catalogue-only ingest", ingest)
        if only in (None, "search") and catalogue:
            log("search benchmark")
            home = catalogue[0].home
            guarded("search", lambda: run_search(settings, home, settings.records, repeat))
    if only in (None, "peer"):
        log("peer API benchmark")
        requests = 500 if settings.quick else 3000
        guarded("peer API", lambda: run_peer(settings.workdir, settings.runs, requests))
    if only in (None, "sync"):
        log("set reconciliation benchmark")
        guarded("sync", lambda: run_sync(settings.quick, settings.runs))
    if only in (None, "sync-initial"):  # sync (d), tests/bench/sync_initial.py: two daemons
        log("initial sync benchmark (source store cached in WORKDIR/sync-initial)")
        guarded("sync (d)", lambda: run_sync_initial(settings.workdir, settings.quick, repeat))
    if only in (None, "replication"):  # tests/bench/replication.py: siku vs rsync, syncthing
        log("replication benchmark (data sets cached in WORKDIR/replication)")
        guarded("replication", lambda: run_replication(settings, repeat))
    if only in (None, "console"):  # tests/bench/console.py: console latency under replication
        log("console latency benchmark (data set cached in WORKDIR/replication)")
        guarded("console", lambda: run_console(settings))
    if settings.profile:
        log(f"cProfile of an in-process ingest of {settings.profile_records:,} rows")
        try:
            out.profile = profile_ingest(settings, settings.profile_records)
        except Exception as e:  # as above
            out.profile = f"cProfile pass failed: {_failed('cProfile', e).notes[0]}"
            out.failed = True
    return out


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(argv)
    budget = args.budget or (QUICK_BUDGET_SECONDS if settings.quick else BUDGET_SECONDS)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    machine = machine_info(settings.workdir)
    machine["load average at start"] = _load()
    started = time.perf_counter()
    try:
        outcome = run(settings, args.only, budget)
        figures, profile = outcome.figures, outcome.profile
    finally:
        if not settings.keep:
            for name in CREATED:
                drop_tree(settings.workdir / name)
    machine["load average at end"] = _load()
    mode = "quick" if settings.quick else "full"
    machine["mode"] = f"{mode}, --runs {settings.runs}, {time.perf_counter() - started:.0f} s"
    extra = [
        "figures are medians over runs (fewer runs than --runs where one run exceeds the "
        f"{budget:.0f} s per-benchmark budget); baselines are measured in the same runs, "
        "interleaved with siku's",
        "MB = 10^6 bytes; other processes on the machine were not stopped (see load average)",
    ]
    report = render(machine, figures, extra)
    sys.stdout.write(report + "\n")
    if profile is not None:
        sys.stdout.write("\n" + profile + "\n")
    # A smoke run does not overwrite the full run's results.
    results = settings.workdir / ("results-quick.json" if settings.quick else "results.json")
    write_json(results, machine, figures, extra, profile)
    log(f"wrote {results}")
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
