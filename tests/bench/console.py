"""Benchmark (issue 6): admin console latency while the node replicates 1 GiB, beside the idle node.

Two daemons on 127.0.0.1 (tests.bench.replication.SikuNetwork: a national and a provincial
library, the `large` data set — 1,000 × 1 MiB, 64 × 1 MiB with --quick — ingested at the
provincial one, the catalogue already synced to the national one). The national node is the
node under test: it replicates the whole set from the provincial node while a load thread in
this process (the daemons are separate processes) asks it, at a fixed rate and round-robin,
for the console's three heaviest things:

* `GET /admin/api/v1/status` (what `siku status` and every console poll read),
* `GET /console/` (the console page), and
* `GET /admin/api/v1/console/overview` (the console's main JSON: status, peers and the
  replication state, with the alerts).

All with the console's session cookie (a real login) over one keep-alive connection, as the
browser does. Latency runs from each request's scheduled time (so a slow answer delays the
next ones and counts against them: no coordinated omission) to the last byte of its body.

busy: a fresh national home (the catalogue, no content) is started, and the load begins once
its first transfer is seen; it stops when every copy is committed (a monitor polls
/admin/api/v1/replication every MONITOR_SECONDS, not counted) or the requests are spent. If the
replication ends before REQUESTS requests per endpoint, it runs again from a fresh home (at most
MAX_BUSY_RUNS times); only requests made while copies were still being fetched count.
idle: the same node after the last run, all copies held, the same requests at the same rate.

    python -m tests.bench --only console [--quick] [--keep] [--workdir DIR]
"""

from __future__ import annotations

import http.client
import shutil
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.common import MIB, Figure, Measure, Settings, drop_tree, fmt, log
from tests.bench.replication import START_SECONDS, SikuNetwork, make_dataset

__all__ = ["ENDPOINTS", "run_console"]

ENDPOINTS = (
    ("status API", "/admin/api/v1/status"),
    ("console page", "/console/"),
    ("console main JSON", "/admin/api/v1/console/overview"),
)
# Requests a second over all endpoints: about six consoles open at once (a console polls five
# JSON routes every 3 s), and far more than one admin's clicks.
RATE_PER_S = 10.0
REQUESTS = 150  # per endpoint and phase (45 s a phase; 30 with --quick)
QUICK_REQUESTS = 30
MAX_BUSY_RUNS = 10
MONITOR_SECONDS = 0.25
TRANSFER_START_SECONDS = 120.0
REPLICATION_SECONDS = 1800.0
TIMEOUT_SECONDS = 30.0
TARGET_P99_MS = 100.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Samples:
    """Latencies in ms per endpoint name; failed requests counted apart."""

    ms: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n, _ in ENDPOINTS})
    # From sending the request to its last byte (what one request costs, lateness aside).
    service_ms: dict[str, list[float]] = field(
        default_factory=lambda: {n: [] for n, _ in ENDPOINTS}
    )
    failed: int = 0

    def fewest(self) -> int:
        return min(len(v) for v in self.ms.values())


class _Client:
    """One keep-alive connection to the admin listener with the console's session cookie."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
        body = urllib.parse.urlencode({"token": token})
        self.conn.request(
            "POST",
            "/console/login",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = self.conn.getresponse()
        resp.read()
        cookie = resp.getheader("Set-Cookie") or ""
        if resp.status != 303 or "siku_console=" not in cookie:
            raise RuntimeError(f"console login failed: {resp.status} {cookie!r}")
        self.cookie = cookie.split(";", 1)[0]

    def get(self, path: str) -> int:
        for attempt in (0, 1):
            try:
                self.conn.request("GET", path, headers={"Cookie": self.cookie})
                resp = self.conn.getresponse()
                resp.read()
                return resp.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=TIMEOUT_SECONDS
                )
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _load(client: _Client, samples: Samples, per_endpoint: int, stop: threading.Event) -> None:
    """Fixed-rate round-robin requests until `per_endpoint` each are taken or `stop` is set."""
    start = time.perf_counter()
    i = 0
    while samples.fewest() < per_endpoint and not stop.is_set():
        scheduled = start + i / RATE_PER_S
        delay = scheduled - time.perf_counter()
        if delay > 0:
            stop.wait(delay)
            if stop.is_set():
                break
        name, path = ENDPOINTS[i % len(ENDPOINTS)]
        sent = time.perf_counter()
        try:
            status = client.get(path)
        except (http.client.HTTPException, OSError):
            status = 0
        done = time.perf_counter()
        if stop.is_set():
            break  # the replication ended while this request was out: not a busy sample
        if status == 200:
            if len(samples.ms[name]) < per_endpoint:
                samples.ms[name].append((done - scheduled) * 1000)
                samples.service_ms[name].append((done - sent) * 1000)
        else:
            samples.failed += 1
        i += 1


def _busy_run(network: SikuNetwork, procs: Any, samples: Samples, per: int) -> dict[str, Any]:
    """One replication of the whole set onto a fresh national home, under load."""
    nat = network.national
    if nat.home in procs.children:
        procs.stop(nat.home)
    drop_tree(nat.home)
    shutil.copytree(network.pristine, nat.home, symlinks=True)
    procs.start(nat.home)
    network._until("the national daemon", nat.answers, START_SECONDS, procs)
    client = _Client(nat.port + 1, (nat.home / "keys" / "admin.token").read_text().strip())
    deadline = time.monotonic() + TRANSFER_START_SECONDS
    while True:
        state = nat.admin("/admin/api/v1/replication")
        if state and (state["transfers"]["totals"]["bytes"] or state["transfers"]["active"]):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no transfer started; see {nat.log_file}")
        procs.check_alive()
        time.sleep(0.05)
    stop = threading.Event()
    before = samples.fewest()
    started = time.perf_counter()
    thread = threading.Thread(target=_load, args=(client, samples, per, stop), daemon=True)
    thread.start()
    n = network.resources
    committed = 0
    try:
        while thread.is_alive():
            state = nat.admin("/admin/api/v1/replication", timeout=60)
            if state is not None:
                committed = int(state["counters"]["committed"])
                if committed >= n:
                    break
            if time.perf_counter() - started > REPLICATION_SECONDS:
                raise RuntimeError(f"replication not done in {REPLICATION_SECONDS:.0f} s")
            procs.check_alive()
            time.sleep(MONITOR_SECONDS)
    finally:
        stop.set()
        thread.join()
        client.close()
    seconds = time.perf_counter() - started
    state = nat.admin("/admin/api/v1/replication") or {}
    return {
        "seconds": seconds,
        "committed_at_stop": committed,
        "fetched_bytes": state.get("transfers", {}).get("totals", {}).get("bytes", 0),
        "samples": samples.fewest() - before,
    }


def _finish(network: SikuNetwork, procs: Any) -> None:
    """Let the last run's replication finish: the idle node holds every copy."""
    nat = network.national
    deadline = time.monotonic() + REPLICATION_SECONDS
    while True:
        state = nat.admin("/admin/api/v1/replication")
        committed = state["counters"]["committed"] if state else -1
        if state and committed >= network.resources and not state["transfers"]["active"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the national node did not finish replicating")
        procs.check_alive()
        time.sleep(0.2)


def _summary(ms: list[float]) -> str:
    return f"p50 {fmt(percentile(ms, 50))} ms, p99 {fmt(percentile(ms, 99))} ms"


def run_console(settings: Settings) -> list[Figure]:
    data = make_dataset(settings.workdir, "large", settings.quick)
    per = QUICK_REQUESTS if settings.quick else REQUESTS
    scratch = settings.workdir / "console"
    network = SikuNetwork(data, scratch)
    busy, idle = Samples(), Samples()
    runs: list[dict[str, Any]] = []
    try:
        with network._daemons() as procs:
            procs.start(network.provincial.home)
            network._until("the provincial daemon", network.provincial.answers, 60, procs)
            for run in range(MAX_BUSY_RUNS):
                log(f"console: busy run {run + 1}: replicating {data.label} under load")
                runs.append(_busy_run(network, procs, busy, per))
                log(f"console: busy run {run + 1}: {runs[-1]}")
                if busy.fewest() >= per:
                    break
            _finish(network, procs)
            time.sleep(2.0)
            log("console: idle node, same requests")
            nat = network.national
            client = _Client(nat.port + 1, (nat.home / "keys" / "admin.token").read_text().strip())
            try:
                _load(client, idle, per, threading.Event())
            finally:
                client.close()
    finally:
        network.close(settings.keep)
    figures = []
    replicated = sum(r["fetched_bytes"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    for name, path in ENDPOINTS:
        b, i = busy.ms[name], idle.ms[name]
        if not b or not i:
            raise RuntimeError(f"console: no samples of {name} (busy {len(b)}, idle {len(i)})")
        p99 = percentile(b, 99)
        figures.append(
            Figure(
                benchmark=f"console latency: {name} (GET {path}) while replicating {data.label}",
                figure=Measure("p99 under replication", "ms", (p99,)),
                baselines=[
                    Measure("p50 under replication", "ms", (percentile(b, 50),)),
                    Measure("p99 idle", "ms", (percentile(i, 99),)),
                    Measure("p50 idle", "ms", (percentile(i, 50),)),
                ],
                ratios=[("busy p99 / idle p99", p99 / max(percentile(i, 99), 1e-9))],
                target=f"p99 ≤ {TARGET_P99_MS:.0f} ms",
                met=p99 <= TARGET_P99_MS,
                shown=f"busy {_summary(b)} ({len(b)} req); idle {_summary(i)} ({len(i)} req)",
                notes=[
                    f"service time (send to last byte, lateness aside): busy"
                    f" {_summary(busy.service_ms[name])}, idle {_summary(idle.service_ms[name])}",
                    f"{RATE_PER_S:.0f} req/s round-robin over {len(ENDPOINTS)} endpoints, one"
                    " keep-alive connection with a console session; latency from the scheduled"
                    f" time; {len(runs)} replication run(s), {replicated / MIB:,.0f} MiB fetched"
                    f" in {seconds:,.1f} s under load; {busy.failed + idle.failed} failed requests",
                ],
            )
        )
    return figures


def main() -> None:
    import argparse

    from tests.bench.common import REPO
    from tests.bench.report import render

    parser = argparse.ArgumentParser(prog="python -m tests.bench.console")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data")
    args = parser.parse_args()
    settings = Settings(
        workdir=args.workdir.resolve(),
        runs=1,
        quick=args.quick,
        files=0,
        records=0,
        profile_records=0,
        queries_per_class=0,
        profile=False,
        keep=args.keep,
    )
    print(render({"mode": "quick" if args.quick else "full"}, run_console(settings), []))


if __name__ == "__main__":
    main()
