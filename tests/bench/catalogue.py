"""Benchmark 2: catalogue-only ingest (a CSV of records, no files) in records per second.

siku is run as a user runs it (`siku ingest --quiet` in a subprocess, fresh home each run).
Beside it, measured in the same run: Ed25519 signatures per second on one core (every record
is signed once), SQLite inserting comparable rows into siku's own schema from pre-built tuples
(the database floor, no Python per record), and siku's `discover()` alone (parsing and
validating the CSV, nothing stored). `--profile` adds a cProfile pass over every thread.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.bench.common import (
    Figure,
    Measure,
    Repeat,
    Settings,
    check_summary,
    siku,
    siku_init,
    timed,
)
from tests.bench.dataset import CatalogueRow, catalogue_rows, write_catalogue_csv

__all__ = ["CatalogueResult", "profile_ingest", "run_catalogue"]

TARGET_RECORDS_PER_SECOND = 20_000
SQLITE_BATCH = 500  # rows per transaction, as siku's BATCH_RECORDS
# The SQLite and discover() baselines use the first rows of the catalogue, at most this many:
# the rate is what matters, and the full set would make them dominate the run time.
BASELINE_ROWS = 20_000
SIGNED_MESSAGE_BYTES = 1_200  # about one record body of the generated catalogue


@dataclass(frozen=True)
class CatalogueResult:
    figure: Figure
    home: Path  # the node home of the last run, kept for the search benchmark
    csv: Path


# --- siku --------------------------------------------------------------------------------------


def ingest_cli(home: Path, csv: Path, expected: int) -> float:
    """Seconds for `siku ingest --quiet` of `csv` into a fresh `home` (process start included)."""
    siku_init(home)
    start = time.perf_counter()
    out = siku("ingest", "--quiet", "--home", home, csv)
    seconds = time.perf_counter() - start
    check_summary(out, expected)
    return seconds


def discover_rate(csv: Path, records: int) -> float:
    """Records per second of `discover()` alone: CSV parsing and validation, nothing stored."""
    from node.ingest.sources import discover

    seconds = timed(lambda: sum(1 for _ in discover(csv)))
    return records / seconds


# --- baselines ---------------------------------------------------------------------------------


def ed25519_rate(seconds: float) -> float:
    """Signatures per second of a record-sized message on one core."""
    key = Ed25519PrivateKey.generate()
    message = os.urandom(SIGNED_MESSAGE_BYTES)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            key.sign(message)
        count += 200
    return count / (time.perf_counter() - start)


@dataclass(frozen=True)
class _SqliteRows:
    records: list[tuple[Any, ...]]
    fts: list[tuple[Any, ...]]
    sources: list[tuple[Any, ...]]


def _sqlite_rows(rows: list[CatalogueRow]) -> _SqliteRows:
    """Tuples shaped like the ones siku writes for these rows: same text, same FTS tokens,
    envelopes of about the same size (random bytes, as a signature and digests are)."""
    from storage.textindex import index_text

    rng = random.Random(1)
    origin = rng.randbytes(32)
    records, fts, sources = [], [], []
    for i, row in enumerate(rows, start=1):
        pid = f"ark:/99999/620982{i:012d}"
        cells = {c: row.get(c).replace("||", " \n ") for c in ("creator", "subject@zh")}
        summary = json.dumps(
            {"title": row.get("title@zh"), "creator": cells["creator"], "date": row.get("date")},
            ensure_ascii=False,
        )
        text_bytes = sum(len(c.encode()) for c in row.cells)
        wall_ms = 1_700_000_000_000 + i
        records.append(
            (
                *(i, pid, "catalogue", origin, wall_ms, 0, 0),
                *(row.get("collection"), row.get("access"), None, row.get("title@zh")),
                *(summary, 0, 0, rng.randbytes(text_bytes + 200), wall_ms),
            )
        )
        fts.append(
            (
                i,
                index_text(f"{row.get('title@zh')} \n {row.get('title@en')}"),
                index_text(cells["creator"]),
                index_text(f"{cells['subject@zh']} \n {row.get('subject@en')}"),
                index_text(f"{row.get('description@zh')} \n {row.get('description@en')}"),
            )
        )
        sources.append((rng.randbytes(32), pid, None))
    return _SqliteRows(records, fts, sources)


def sqlite_insert_rate(path: Path, rows: _SqliteRows, *, fts: bool = True) -> float:
    """Rows per second inserting pre-built rows into siku's schema, WAL + synchronous=FULL as
    siku opens it, SQLITE_BATCH rows per transaction, on the same disk. `fts=False` leaves
    out the search index rows, to show what full-text indexing costs."""
    from storage.database import migrations

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        for _, _, sql in migrations():
            conn.executescript(sql)
        start = time.perf_counter()
        for i in range(0, len(rows.records), SQLITE_BATCH):
            batch = slice(i, i + SQLITE_BATCH)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO records VALUES ({','.join('?' * 16)})", rows.records[batch]
            )
            if fts:
                conn.executemany(
                    "INSERT INTO search_fts (rowid, title, creator, subject,"
                    " description) VALUES (?, ?, ?, ?, ?)",
                    rows.fts[batch],
                )
            conn.executemany("INSERT INTO ingest_sources VALUES (?, ?, ?)", rows.sources[batch])
            conn.execute("COMMIT")
        seconds = time.perf_counter() - start
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return len(rows.records) / seconds


# --- the benchmark -----------------------------------------------------------------------------


def run_catalogue(settings: Settings, repeat: Repeat) -> CatalogueResult:
    n = settings.records
    root = settings.workdir / "catalogue"
    csv = write_catalogue_csv(root / f"catalogue-{n}.csv", n)
    home = root / "home"
    sample = min(n, BASELINE_ROWS)
    sample_csv = write_catalogue_csv(root / f"catalogue-{sample}.csv", sample)
    sqlite_rows = _sqlite_rows(list(catalogue_rows(sample)))
    sign_seconds = 0.3 if settings.quick else 1.0
    siku_rates: list[float] = []
    signs: list[float] = []
    inserts: list[float] = []
    plain_inserts: list[float] = []
    discovers: list[float] = []
    for _ in repeat.runs("catalogue ingest"):
        siku_rates.append(n / ingest_cli(home, csv, n))
        signs.append(ed25519_rate(sign_seconds))
        inserts.append(sqlite_insert_rate(root / "baseline.db", sqlite_rows))
        plain_inserts.append(sqlite_insert_rate(root / "baseline.db", sqlite_rows, fts=False))
        discovers.append(discover_rate(sample_csv, sample))
    figure = Measure("siku ingest (CLI)", "records/s", tuple(siku_rates))
    sign = Measure("Ed25519 sign, 1 core", "sig/s", tuple(signs))
    insert = Measure(
        f"SQLite insert, siku schema, {SQLITE_BATCH}/txn, {sample:,} rows", "rows/s", tuple(inserts)
    )
    plain_insert = Measure("same without search_fts rows", "rows/s", tuple(plain_inserts))
    parse = Measure(f"siku discover() alone, {sample:,} rows", "records/s", tuple(discovers))
    return CatalogueResult(
        Figure(
            benchmark=f"catalogue-only ingest, {n:,} DC records (CSV, no files)",
            figure=figure,
            baselines=[sign, insert, plain_insert, parse],
            ratios=[
                ("siku/sign", figure.value / sign.value),
                ("siku/sqlite", figure.value / insert.value),
            ],
            target=f"≥ {TARGET_RECORDS_PER_SECOND:,} records/s",
            met=figure.value >= TARGET_RECORDS_PER_SECOND,
            notes=[
                "`siku ingest --quiet` in a subprocess (process start-up included), fresh home "
                "per run; SQLite baseline: pre-built rows into siku's migrated schema "
                "(records + search_fts + ingest_sources), WAL, synchronous=FULL, same disk",
            ],
        ),
        home,
        csv,
    )


# --- profiling ---------------------------------------------------------------------------------


class _AllThreads:
    """cProfile the calling thread and every thread started while this is active (the
    aiosqlite connection thread, the ingest worker pool): each gets its own profiler."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.threads: list[tuple[str, cProfile.Profile]] = []
        self._lock = threading.Lock()

    def _start_thread(self, frame: FrameType, event: str, arg: object) -> None:
        profiler = cProfile.Profile()
        with self._lock:
            self.threads.append((threading.current_thread().name, profiler))
        profiler.enable()  # replaces this hook for the rest of the thread's life

    def __enter__(self) -> _AllThreads:
        threading.setprofile(self._start_thread)
        self.main.enable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.main.disable()
        threading.setprofile(None)


async def _ingest_in_process(home: Path, csv: Path) -> dict[str, int]:
    """What `siku ingest --quiet` does, minus argument parsing and printing."""
    from node.config import load_config
    from node.ingest.pipeline import Ingester, IngestOptions, IngestSummary
    from node.ingest.sources import discover
    from node.keys import load_identity
    from storage.store import Store

    config = load_config(home)
    identity = load_identity(config.key_file)
    store = await Store.open(config.store)
    summary = IngestSummary()
    try:
        ingester = Ingester(store, identity, config.ark_naan, config.code, IngestOptions())
        async for result in ingester.run(discover(csv)):
            summary.add(result)
    finally:
        await store.close()
    return summary.counts


SIKU_CODE = r"/(node|storage|protocol)/"  # pstats restriction: siku's own modules
AIOSQLITE_THREAD = "_connection_worker_thread"
IDLE_FUNCTIONS = {  # as pstats keys them (it prints them with {} instead of <>)
    "<method 'poll' of 'select.epoll' objects>",  # the event loop waiting
    "<method 'get' of '_queue.SimpleQueue' objects>",  # a worker thread waiting for work
}


def _top(stats: pstats.Stats, sort: str, count: int, *restrictions: str | int) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(*restrictions, count)
    text = out.getvalue()
    # Keep the table: drop pstats' preamble up to the column header.
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()


def _idle_seconds(stats: pstats.Stats) -> float:
    """Own time of the functions that only wait (epoll, a worker's queue.get)."""
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    return float(sum(v[2] for (_, _, name), v in raw.items() if name in IDLE_FUNCTIONS))


def _thread_groups(profiles: list[tuple[str, cProfile.Profile]]) -> dict[str, pstats.Stats]:
    """One merged profile per kind of thread: the aiosqlite connection thread, the default
    executor (asyncio_N: work sent with to_thread), the ingest import pool (ingest_N), …"""
    groups: dict[str, pstats.Stats] = {}
    for name, profiler in profiles:
        kind = "aiosqlite" if AIOSQLITE_THREAD in name else re.sub(r"[_-]?\d+$", "", name)
        if kind in groups:
            groups[kind].add(profiler)
        else:
            groups[kind] = pstats.Stats(profiler)
    return groups


def _busy(stats: pstats.Stats) -> float:
    return float(stats.total_tt) - _idle_seconds(stats)  # type: ignore[attr-defined]


def profile_ingest(settings: Settings, rows: int, top: int = 12) -> str:
    """cProfile of an in-process ingest of `rows` catalogue rows into a fresh home, every
    thread; the report lists the top functions by cumulative and by own time."""
    root = settings.workdir / "profile"
    csv = write_catalogue_csv(root / f"catalogue-{rows}.csv", rows)
    home = root / "home"
    siku_init(home)
    with _AllThreads() as profiles:
        start = time.perf_counter()
        counts = asyncio.run(_ingest_in_process(home, csv))
        seconds = time.perf_counter() - start
    if counts["added"] != rows:
        raise RuntimeError(f"profiled ingest did not add {rows} records: {counts}")
    main = pstats.Stats(profiles.main)
    lines = [
        f"cProfile: in-process Ingester, {rows:,} catalogue rows, fresh home: "
        f"{seconds:.1f} s under the profiler ({rows / seconds:,.0f} records/s)",
        f"main thread (event loop): {_busy(main):.1f} s busy, "
        f"{_idle_seconds(main):.1f} s waiting in epoll",
        "",
        f"== main thread, top {top} of siku's functions by cumulative time",
        _top(main, "cumulative", top, SIKU_CODE),
        "",
        f"== main thread, top {top} functions by own time (all code)",
        _top(main, "tottime", top),
    ]
    for kind, stats in _thread_groups(profiles.threads).items():
        if _busy(stats) < 0.02 * seconds:
            continue  # threads that only waited (executor shutdown, store opening)
        lines += [
            "",
            f"== {kind} thread(s): {_busy(stats):.1f} s busy, {_idle_seconds(stats):.1f} s "
            "waiting for work; top 8 by own time",
            _top(stats, "tottime", 8),
        ]
        if kind == "aiosqlite":
            lines.append(
                "   (SQLite itself runs inside _connection_worker_thread's own time: cProfile "
                "does not see C calls made through functools.partial)"
            )
    return "\n".join(lines)
