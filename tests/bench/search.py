"""Benchmark 3: search latency (p50/p95/p99) over the catalogue the ingest benchmark built.

Each query class is sampled `queries_per_class` times (its queries in turn) after a warm-up:
* in-process: `await Catalogue.search(q, limit=20)` on an open Store (aiosqlite thread hop
  included, as in the daemon);
* over HTTP: `GET /api/v1/search?q=…&per_page=20` against a real `siku run` daemon on
  127.0.0.1 (free ports written into node.toml), one keep-alive connection, body read fully.
Baseline: the same queries as FTS5 MATCH (count + bm25-ranked top 20, as siku runs them) on a
plain `unicode61` table of the same four text columns in an in-memory SQLite database, called
synchronously. It shows what siku's CJK bigram tokenisation and the thread hop cost; note that
unicode61 treats a run of Han characters as one token, so its CJK results are mostly empty.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.bench.common import BIN, Figure, Measure, Repeat, Settings, free_port, log, median
from tests.bench.dataset import catalogue_rows

__all__ = ["QUERY_CLASSES", "QueryClass", "run_search"]

TARGET_P95_MS = 20.0
LIMIT = 20
WARMUP_ROUNDS = 2  # every query run this many times before sampling
# Sampling a query class stops after this long even if fewer than the wanted queries ran, so
# a very slow build cannot make the run unbounded; the table shows how many ran.
CLASS_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class QueryClass:
    name: str
    queries: tuple[str, ...]


QUERY_CLASSES = (
    QueryClass("zh 1 char", ("书", "志", "经", "图")),
    QueryClass("zh 2 chars", ("县志", "敦煌", "写本", "家谱")),
    QueryClass("zh 3-4 chars", ("图书馆", "地方文献", "金刚经", "敦煌学")),
    QueryClass("zh + en mixed", ("敦煌 manuscripts", "县志 gazetteer", "佛教 Buddhism")),
    QueryClass("en 1 word", ("gazetteer", "manuscripts", "Buddhism", "Dunhuang", "genealogy")),
    QueryClass(
        "en 2 words",
        ("county gazetteer", "Dunhuang manuscripts", "Diamond Sutra", "family genealogy"),
    ),
)


@dataclass(frozen=True)
class Latency:
    """Milliseconds of one pass over a query class, and the hit counts seen."""

    samples_ms: tuple[float, ...]
    totals: tuple[int, ...]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank]


def _schedule(qc: QueryClass, count: int) -> list[str]:
    return [qc.queries[i % len(qc.queries)] for i in range(count)]


def _measure(call: Callable[[str], int], qc: QueryClass, count: int) -> Latency:
    """Time `call(query)` (which returns the hit total) `count` times, after a warm-up."""
    for _ in range(WARMUP_ROUNDS):
        for q in qc.queries:
            call(q)
    samples, totals = [], []
    stop_at = time.perf_counter() + CLASS_SECONDS
    for q in _schedule(qc, count):
        start = time.perf_counter()
        totals.append(call(q))
        samples.append((time.perf_counter() - start) * 1000)
        if start > stop_at:
            break
    return Latency(tuple(samples), tuple(totals))


# --- in-process --------------------------------------------------------------------------------


def in_process(home: Path, count: int) -> dict[str, Latency]:
    """Latency of Catalogue.search per query class, on one open store and one event loop
    (each query is one `Runner.run`, a few tens of microseconds of the figure)."""
    from node.config import load_config
    from storage.store import Store

    with asyncio.Runner() as runner:
        store = runner.run(Store.open(load_config(home).store))
        try:

            def call(q: str) -> int:
                return runner.run(store.catalogue.search(q, limit=LIMIT)).total

            return {qc.name: _measure(call, qc, count) for qc in QUERY_CLASSES}
        finally:
            runner.run(store.close())


# --- over HTTP, against `siku run` ------------------------------------------------------------


class DaemonUnavailableError(RuntimeError):
    """`siku run` did not start or did not answer; the HTTP figures are reported as n/a."""


def _set_ports(home: Path, public: int, admin: int) -> None:
    """Point node.toml's [http] listen and admin_listen at the given 127.0.0.1 ports."""
    path = home / "node.toml"
    text = path.read_text(encoding="utf-8")
    text, n1 = re.subn(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{public}"', text)
    text, n2 = re.subn(r'(?m)^admin_listen = ".*"$', f'admin_listen = "127.0.0.1:{admin}"', text)
    if (n1, n2) != (1, 1):
        raise DaemonUnavailableError(f"{path}: cannot find [http] listen/admin_listen")
    path.write_text(text, encoding="utf-8")


class Daemon:
    """A `siku run` process on free loopback ports; stopped with SIGTERM."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        _set_ports(home, self.port, free_port())
        self.log_path = home / "bench-daemon.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "siku"), "run", "--home", str(home)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def wait_ready(self) -> None:
        """Poll the search API until it answers 200 (or the process dies, or time runs out)."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DaemonUnavailableError(f"siku run exited: {self._tail()}")
            try:
                conn = self.connection()
                conn.request("GET", "/api/v1/search?q=ready")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise DaemonUnavailableError(f"siku run not ready in {READY_TIMEOUT_SECONDS} s")

    def _tail(self) -> str:
        self._log.flush()
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log(f"siku run (pid {self.process.pid}) ignored SIGTERM; killing it")
                self.process.kill()
                self.process.wait()
        self._log.close()


def over_http(daemon: Daemon, count: int) -> dict[str, Latency]:
    conn = daemon.connection()

    def call(q: str) -> int:
        conn.request("GET", f"/api/v1/search?q={quote(q)}&per_page={LIMIT}")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"search {q!r} answered {response.status}: {body[:300]!r}")
        return int(json.loads(body)["total"])

    try:
        return {qc.name: _measure(call, qc, count) for qc in QUERY_CLASSES}
    finally:
        conn.close()


# --- baseline: plain unicode61 -----------------------------------------------------------------


def unicode61_table(records: int) -> sqlite3.Connection:
    """An in-memory FTS5 table, `unicode61` tokenizer, with the catalogue's raw text."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE plain USING fts5 (title, creator, subject, description,"
        " tokenize = 'unicode61 remove_diacritics 2')"
    )

    def rows() -> Iterator[tuple[str, str, str, str]]:
        for row in catalogue_rows(records):
            yield (
                f"{row.get('title@zh')} {row.get('title@en')}",
                row.get("creator").replace("||", " "),
                f"{row.get('subject@zh')} {row.get('subject@en')}".replace("||", " "),
                f"{row.get('description@zh')} {row.get('description@en')}",
            )

    with conn:
        conn.executemany("INSERT INTO plain VALUES (?, ?, ?, ?)", rows())
    return conn


def unicode61_latency(conn: sqlite3.Connection, count: int) -> dict[str, Latency]:
    def call(q: str) -> int:
        expression = " AND ".join('"' + t.replace('"', '""') + '"' for t in q.split())
        total = conn.execute(
            "SELECT count(*) FROM plain WHERE plain MATCH ?", (expression,)
        ).fetchone()[0]
        conn.execute(
            "SELECT rowid, title, bm25(plain, 10.0, 5.0, 3.0, 1.0) AS score FROM plain"
            " WHERE plain MATCH ? ORDER BY score LIMIT ?",
            (expression, LIMIT),
        ).fetchall()
        return int(total)

    return {qc.name: _measure(call, qc, count) for qc in QUERY_CLASSES}


# --- the benchmark -----------------------------------------------------------------------------


@dataclass
class _Collected:
    local: dict[str, list[Latency]]
    http: dict[str, list[Latency]]
    plain: dict[str, list[Latency]]
    http_error: str | None = None


def _add(into: dict[str, list[Latency]], got: dict[str, Latency]) -> None:
    for name, latency in got.items():
        into.setdefault(name, []).append(latency)


def _collect(settings: Settings, home: Path, records: int, repeat: Repeat) -> _Collected:
    count = settings.queries_per_class
    plain = unicode61_table(records)
    out = _Collected({}, {}, {})
    daemon: Daemon | None = None
    try:
        for _ in repeat.runs("search"):
            _add(out.local, in_process(home, count))
            _add(out.plain, unicode61_latency(plain, count))
            if out.http_error is None:
                try:
                    if daemon is None:
                        daemon = Daemon(home)
                        daemon.wait_ready()
                    _add(out.http, over_http(daemon, count))
                except DaemonUnavailableError as e:
                    out.http_error = str(e)
                    log(f"HTTP search skipped: {e}")
    finally:
        plain.close()
        if daemon is not None:
            daemon.stop()
    return out


def _measure_of(name: str, passes: list[Latency], p: float, note: str = "") -> Measure:
    return Measure(name, "ms", tuple(latency.percentile(p) for latency in passes), note)


def _hits(passes: list[Latency]) -> float:
    return median([median(lat.totals) for lat in passes])


def _row(qc: QueryClass, path: str, passes: list[Latency], plain: list[Latency]) -> Figure:
    p95 = _measure_of(f"p95 {path}", passes, 95)
    p50 = median([lat.percentile(50) for lat in passes])
    p99 = median([lat.percentile(99) for lat in passes])
    hits = _hits(passes)
    base = _measure_of("unicode61 p95", plain, 95, f"~{_hits(plain):,.0f} hits")
    samples = sum(len(lat.samples_ms) for lat in passes)
    return Figure(
        benchmark=f"search {qc.name}, {path}: {' | '.join(qc.queries)}",
        figure=p95,
        shown=(
            f"p50 {p50:.2f} / p95 {p95.value:.2f} / p99 {p99:.2f} ms\n"
            f"~{hits:,.0f} hits; {samples} queries"
        ),
        baselines=[base],
        ratios=[("p95 siku/unicode61", p95.value / base.value)],
        target=f"p95 ≤ {TARGET_P95_MS:.0f} ms",
        met=p95.value <= TARGET_P95_MS,
    )


def run_search(settings: Settings, home: Path, records: int, repeat: Repeat) -> list[Figure]:
    got = _collect(settings, home, records, repeat)
    figures = []
    for qc in QUERY_CLASSES:
        figures.append(_row(qc, "in-process", got.local[qc.name], got.plain[qc.name]))
    for qc in QUERY_CLASSES:
        if qc.name in got.http:
            figures.append(_row(qc, "HTTP", got.http[qc.name], got.plain[qc.name]))
    figures[0].notes.append(
        f"in-process: `await Catalogue.search(q, limit={LIMIT})` on one open Store, after "
        f"{WARMUP_ROUNDS} warm-up rounds; over HTTP: `siku run` on 127.0.0.1, GET "
        f"/api/v1/search?q=…&per_page={LIMIT} on one keep-alive connection, body read and parsed"
    )
    figures[0].notes.append(
        "baseline: the same count + bm25 top-20 queries on an in-memory FTS5 table with plain "
        "unicode61 over the same raw text, called synchronously (no thread hop); unicode61 "
        "keeps a run of Han characters as one token, so most CJK queries find nothing there"
    )
    if got.http_error is not None:
        figures.append(
            Figure(
                benchmark="search over HTTP (siku run)",
                figure=Measure("p95 HTTP", "ms", ()),
                target=f"p95 ≤ {TARGET_P95_MS:.0f} ms",
                met=None,
                notes=[f"not measured: {got.http_error}"],
            )
        )
    return figures
