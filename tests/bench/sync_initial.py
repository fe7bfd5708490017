"""Benchmark (d): initial sync of N catalogue records to an empty node over loopback HTTP.

Two real daemons (`python -m node.cli run`), enrolled in one network: a provincial library
(the source, its store holding N records it signed, pids minted under its library code) and
the national library (the destination, its store empty but for membership). N = 1,000,000;
20,000 with --quick. The records are catalogue-only (no files), ~600 bytes signed: Chinese and
English titles, creators, subjects, a short Chinese description, date, type, publisher,
identifier; their HLC times are 30 s apart over the past year (so none counts as recent and push
gossip leaves them to anti-entropy, as for a node joining an established network).

Measured: the source daemon is started and answering; then the destination is started, and the
clock runs from that moment until the destination's sync set (admin GET /admin/api/v1/sync,
"total") equals the source's with all N records in it (the end time is the stored_at of the
last batch, confirmed committed on a read-only connection of our own). records/s = N / that
time. Beside it, in
the same run: the single-core rate of Ed25519 verification (`cryptography`, the same signatures
over the same bytes, public key loaded once), and of siku's own decode_record (signature,
canonical decoding and checks) on one core. Target: records/s ≥ 0.6 × the verification rate.
Also reported: peak RSS (VmHWM) of both daemons, the CPU time of each one's event-loop thread
and other threads (the database thread among them), and the per-peer sync statistics.

The source home is built once and cached under WORKDIR/sync-initial/ (keyed by N and FORMAT);
its build time is printed but is not a measured figure. The destination is a fresh copy of a
pristine home for every run.

    python -m tests.bench --only sync-initial [--quick] [--runs 3] [--workdir DIR]
    python -m tests.bench.sync_initial [--quick | --records N] [--runs 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import (
    MB,
    REPO,
    Figure,
    Measure,
    Repeat,
    drop_tree,
    fmt,
    log,
    machine_info,
    median,
)

__all__ = ["main", "run_sync_initial"]

FORMAT = 1  # bump when the generated records or the cached layout change
FULL_RECORDS = 1_000_000
QUICK_RECORDS = 20_000
SPACING_MS = 30_000  # between the records' HLC times
BATCH = 5_000  # records per Catalogue.put while building the source store
VERIFY_SAMPLES = 5_000
VERIFY_REPEATS = 5
TARGET_RATIO = 0.6
POLL_SECONDS = 0.25
STARTUP_SECONDS = 180.0
STALL_SECONDS = 300.0  # the destination's count unchanged this long: the run fails
SOURCE, DEST = "source", "dest"

# --- the records -------------------------------------------------------------------------------

_PLACES = (
    ("敦煌", "Dunhuang"), ("酒泉", "Jiuquan"), ("张掖", "Zhangye"), ("武威", "Wuwei"),
    ("兰州", "Lanzhou"), ("天水", "Tianshui"), ("瓜州", "Guazhou"), ("玉门", "Yumen"),
    ("陇西", "Longxi"), ("临夏", "Linxia"), ("平凉", "Pingliang"), ("庆阳", "Qingyang"),
)  # fmt: skip
_ERAS = (("康熙", "Kangxi", 1662), ("乾隆", "Qianlong", 1736), ("道光", "Daoguang", 1821),
         ("光绪", "Guangxu", 1875), ("民国", "Republican", 1912))  # fmt: skip
_KINDS = (
    ("县志", "county gazetteer", "Text", "地方志"),
    ("府志", "prefectural gazetteer", "Text", "地方志"),
    ("家谱", "family genealogy", "Text", "谱牒"), ("写本", "manuscript", "Text", "敦煌学"),
    ("碑帖", "stele rubbing", "Image", "金石"), ("舆图", "map", "Image", "地理"),
    ("诗集", "collected poems", "Text", "文学"), ("书信", "letters", "Text", "档案"),
)  # fmt: skip
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
_GIVEN = "文志明国华学书德清玉敬安永兴恩庆桂芳贤懋"
_PUBLISHERS = ("甘肃人民出版社", "敦煌文艺出版社", "甘肃省图书馆", "兰州大学出版社")
_DESCRIPTIONS = (
    "本书记载{place}的建置沿革、山川形胜、物产风俗与人物事迹，是研究河西走廊历史的重要文献。",
    "原书藏于{publisher}，经整理后影印出版，书前有序言，书后附跋语与校勘记。",
    "卷中保存了大量碑刻、诗文与档案资料，为边疆史地与地方文献研究提供了第一手材料。",
    "书中字迹清晰，间有虫蛀与水渍，个别页面残缺，已按传统工艺修补并完成数字化。",
)


def _person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choices(_GIVEN, k=rng.choice((1, 2))))


def _dc(k: int) -> list[tuple[str, str, str]]:
    """(element, value, lang) of record k: the same k always gives the same values."""
    rng = random.Random(k)
    place, place_en = rng.choice(_PLACES)
    era, era_en, first = rng.choice(_ERAS)
    kind, kind_en, dc_type, subject = rng.choice(_KINDS)
    volume = rng.randint(1, 24)
    year = first + rng.randint(0, 40)
    publisher = rng.choice(_PUBLISHERS)
    out = [
        ("title", f"{era}{place}{kind} 卷{volume}", "zh"),
        ("title", f"{place_en} {kind_en}, {era_en} era, vol. {volume}", "en"),
    ]
    out += [("creator", _person(rng), "zh") for _ in range(rng.randint(1, 2))]
    out += [
        ("subject", subject, "zh"),
        ("subject", place, "zh"),
        ("subject", rng.choice(("历史", "文献", "古籍", "民俗")), "zh"),
        ("description", rng.choice(_DESCRIPTIONS).format(place=place, publisher=publisher), "zh"),
        ("publisher", publisher, "zh"),
        ("date", str(year), ""),
        ("type", dc_type, ""),
        ("identifier", f"GS/620000/{k + 1:07d}", ""),
        ("language", "zh", ""),
    ]
    return out


_worker: dict[str, Any] = {}


def _init_worker(key_file: str, naan: str, code: str) -> None:
    from node.keys import load_identity

    _worker.update(identity=load_identity(Path(key_file)), naan=naan, code=code)


def _build_batch(start: int, stop: int, newest_ms: int, n: int) -> list[Any]:
    """StoredRecords k = start..stop-1, signed by the source's key (runs in a worker process)."""
    from protocol import ark
    from protocol.hlc import Hlc
    from protocol.records import CatalogueRecord, Rights, dc_from_pairs, sign_catalogue
    from storage.catalogue import StoredRecord

    identity, naan, code = _worker["identity"], _worker["naan"], _worker["code"]
    out = []
    for k in range(start, stop):
        entropy = hashlib.sha256(b"sync-initial/%d" % k).digest()
        record = CatalogueRecord(
            pid=str(ark.mint(naan, code, entropy)),
            origin=identity.public_key,
            version=Hlc(newest_ms - (n - 1 - k) * SPACING_MS, 0),
            dc=dc_from_pairs(_dc(k)),
            collection="gansu-local-docs",
            rights=Rights("open" if k % 10 else "onsite"),
        )
        out.append(StoredRecord(sign_catalogue(record, identity.key), record))
    return out


async def _fill(home: Path, n: int, workers: int) -> None:
    """Store N records in the source's store through Catalogue.put, BATCH at a time, built
    and signed in worker processes while the previous batch is written."""
    from node.config import load_config
    from node.network import load_network
    from storage.store import Store

    config = load_config(home)
    naan = load_network(config.network_file).ark_naan
    newest_ms = int(time.time() * 1000) - 86_400_000
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(
        workers,
        mp_context=spawn,
        initializer=_init_worker,
        initargs=(str(config.key_file), naan, config.code),
    ) as pool:
        store = await Store.open(config.store)
        try:
            ranges = iter([(s, min(s + BATCH, n)) for s in range(0, n, BATCH)])
            pending: deque[asyncio.Future[list[Any]]] = deque()

            def submit() -> None:
                nxt = next(ranges, None)
                if nxt is not None:
                    pending.append(
                        loop.run_in_executor(pool, _build_batch, nxt[0], nxt[1], newest_ms, n)
                    )

            for _ in range(workers + 2):
                submit()
            done = 0
            started = time.perf_counter()
            while pending:
                batch = await pending.popleft()
                submit()
                outcomes = await store.catalogue.put(batch)
                if not all(o.applied for o in outcomes):
                    raise RuntimeError("a generated record was not stored (pid collision?)")
                done += len(batch)
                if done % 100_000 < BATCH or done == n:
                    rate = done / (time.perf_counter() - started)
                    log(f"sync (d): source store {done:,} of {n:,} records ({rate:,.0f}/s)")
        finally:
            await store.close()


async def _top_up(home: Path, n: int) -> int:
    """Records k = N, N + 1, ... until the store holds exactly N: a pid minted from 8 bytes of
    entropy repeats about once in 30 million, so among a million records one may have
    replaced another. Returns how many were added."""
    from node.config import load_config
    from node.network import load_network
    from storage.store import Store

    config = load_config(home)
    _init_worker(str(config.key_file), load_network(config.network_file).ark_naan, config.code)
    store = await Store.open(config.store)
    try:

        async def count() -> tuple[int, int]:
            async with store.db.conn.execute("SELECT count(*), max(hlc_wall) FROM records") as cur:
                row = await cur.fetchone()
            assert row is not None
            return int(row[0]), int(row[1] or 0)

        held, newest = await count()
        k = n
        while held < n:
            # Versions just after the newest record, so a repeated pid is a newer version.
            batch = _build_batch(k, k + n - held, newest + (n - k) * SPACING_MS, n)
            await store.catalogue.put(batch)
            k += len(batch)
            held, newest = await count()
        return k - n
    finally:
        await store.close()


# --- the two homes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cache:
    root: Path  # network/, source/ (the built source home), dest/ (pristine destination home)
    n: int
    build_seconds: float
    envelope_bytes: float  # mean size of a signed record


def _specs(port_source: int, port_dest: int) -> list[Any]:
    from node.demo import NodeSpec

    return [
        NodeSpec(DEST, "国家图书馆 National Library (bench)", "zg", "national", "000000", None,
                 port_dest),
        NodeSpec(SOURCE, "甘肃省图书馆 Gansu Provincial Library (bench)", "gs", "provincial",
                 "620000", None, port_source),
    ]  # fmt: skip


def _envelope_sample(home: Path, limit: int) -> list[bytes]:
    uri = f"file:{home / 'store' / 'catalogue.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute("SELECT envelope FROM records ORDER BY id LIMIT ?", (limit,))
        return [bytes(r[0]) for r in rows]


def build_cache(workdir: Path, n: int) -> Cache:
    """The network, the destination's pristine home and the source's home with N records:
    reused if a complete one for (FORMAT, N) is there, else built."""
    from node.demo import build_network
    from tests.peer_helpers import free_port_pair

    root = workdir / "sync-initial" / f"v{FORMAT}-{n}"
    marker = root / "complete.json"
    if marker.exists():
        meta = json.loads(marker.read_text(encoding="utf-8"))
        log(f"sync (d): reusing the source home with {n:,} records in {root}")
        if added := asyncio.run(_top_up(root / SOURCE, n)):  # a cache made before _top_up
            log(f"sync (d): {added} record(s) added to replace repeated pids")
        return Cache(root, n, float(meta["build_seconds"]), float(meta["envelope_bytes"]))
    drop_tree(root)
    root.mkdir(parents=True)
    log(f"sync (d): building a source home with {n:,} records in {root} (cached for next time)")
    started = time.perf_counter()
    taken: set[int] = set()
    specs = _specs(free_port_pair(taken), free_port_pair(taken))
    build_network(
        root, specs, network_name="siku bench", hello_interval_seconds=1, sync_interval_seconds=1
    )
    asyncio.run(_fill(root / SOURCE, n, workers=max(1, min(2, (os.cpu_count() or 2) - 1))))
    asyncio.run(_top_up(root / SOURCE, n))
    build_seconds = time.perf_counter() - started
    sample = _envelope_sample(root / SOURCE, 10_000)
    envelope_bytes = sum(map(len, sample)) / len(sample)
    meta = {"records": n, "build_seconds": build_seconds, "envelope_bytes": envelope_bytes}
    marker.write_text(json.dumps(meta), encoding="utf-8")
    log(f"sync (d): source built in {build_seconds:,.0f} s ({n / build_seconds:,.0f} records/s)")
    return Cache(root, n, build_seconds, envelope_bytes)


def _set_ports(home: Path, port: int, parent: str | None) -> None:
    """Point a home at this run's ports (the cached homes were made with other free ports)."""
    path = home / "node.toml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{port}"', text)
    text = re.sub(r'(?m)^admin_listen = ".*"$', f'admin_listen = "127.0.0.1:{port + 1}"', text)
    if parent is not None:
        text = re.sub(r'(?m)^parent = ".*"$', f'parent = "{parent}"', text)
    path.write_text(text, encoding="utf-8")


# --- one run -----------------------------------------------------------------------------------


def _admin_get(home: Path, port: int, path: str) -> dict[str, Any]:
    token = (home / "keys" / "admin.token").read_text(encoding="utf-8").strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port + 1}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def _sync_state(home: Path, port: int) -> dict[str, Any] | None:
    try:
        return _admin_get(home, port, "/admin/api/v1/sync")
    except (OSError, urllib.error.URLError):
        return None


def _vm_hwm_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def _cpu_seconds(stat: str) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _thread_cpu(pid: int) -> tuple[float, float, list[float]]:
    """CPU seconds of the process (threads that ended included), of its main (event loop)
    thread, and of every other live thread, busiest first."""
    total = _cpu_seconds(Path(f"/proc/{pid}/stat").read_text(encoding="utf-8"))
    main_s, others = 0.0, []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text(encoding="utf-8")
        except OSError:
            continue
        seconds = _cpu_seconds(stat)
        if int(task.name) == pid:
            main_s = seconds
        else:
            others.append(seconds)
    return total, main_s, sorted(others, reverse=True)


@dataclass(frozen=True)
class Run:
    elapsed: float  # destination start → the last record stored (its set equals the source's)
    polled: float  # destination start → the poll that saw it complete
    startup: float  # destination start → its admin API answers
    rate: float  # records/s
    hwm: dict[str, int]  # home key → VmHWM bytes
    cpu: dict[str, tuple[float, float, list[float]]]  # home key → _thread_cpu
    dest_peer: dict[str, Any]  # the destination's stats of the source
    source_peer: dict[str, Any]  # the source's stats of the destination
    total: int
    round_trips: int  # of the destination's longest reconciliation (as polled)


def _peer_stats(state: dict[str, Any]) -> dict[str, Any]:
    peers = [p for p in state.get("peers", []) if p.get("reconciliations") or p["records_sent"]]
    peers = peers or state.get("peers", [])
    return dict(peers[0]) if peers else {}


def _committed(home: Path) -> tuple[int, int]:
    """(records, newest stored_at in ms since the epoch) committed in a home's store, read on
    a connection of our own: the daemon's admin API shares the daemon's connection and so
    also counts the rows of a transaction still open."""
    uri = f"file:{home / 'store' / 'catalogue.db'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        row = conn.execute("SELECT count(*), max(stored_at) FROM records").fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1] or 0)


def _one_run(cache: Cache, run_dir: Path) -> Run:
    from node.demo import Processes
    from tests.peer_helpers import free_port_pair

    source = cache.root / SOURCE
    dest = run_dir / DEST
    drop_tree(run_dir)
    run_dir.mkdir(parents=True)
    shutil.copytree(cache.root / DEST, dest)
    taken: set[int] = set()
    port_source, port_dest = free_port_pair(taken), free_port_pair(taken)
    _set_ports(dest, port_dest, parent=None)
    _set_ports(source, port_source, parent=f"http://127.0.0.1:{port_dest}")
    (source / "daemon.log").unlink(missing_ok=True)
    n = cache.n
    timeout = STARTUP_SECONDS + n / 100
    # Each poll costs the destination a count over its set (GROUP BY kind): rarer when large.
    # The end time is taken from the last record's stored_at, not from the poll.
    poll = min(5.0, max(POLL_SECONDS, n / 200_000))

    with Processes([source]) as procs:
        deadline = time.monotonic() + STARTUP_SECONDS
        while _sync_state(source, port_source) is None:
            procs.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the source daemon did not start; see {source}/daemon.log")
            time.sleep(POLL_SECONDS)
        procs.homes.append(dest)  # stopped with the source when the block ends
        started_epoch = time.time()
        started = time.perf_counter()
        procs.start(dest)
        startup = None
        last_log = last_change = started
        got = -1
        trips = 0
        while True:
            procs.check_alive()
            state = _sync_state(dest, port_dest)
            now = time.perf_counter()
            if state is not None:
                startup = startup if startup is not None else now - started
                # A session's round_trips counts up while it runs and restarts with the next.
                trips = max([trips, *(int(p["round_trips"]) for p in state.get("peers", []))])
                before, got = got, int(state["records"].get("catalogue", 0))
                last_change = now if got != before else last_change
                if got >= n:
                    theirs = _sync_state(source, port_source)
                    if theirs is not None and int(theirs["total"]) == int(state["total"]):
                        break
                if now - last_log > 60:
                    last_log = now
                    log(
                        f"sync (d): destination holds {got:,} of {n:,}"
                        f" ({got / (now - started):,.0f} records/s so far)"
                    )
            if now - started > timeout or now - last_change > STALL_SECONDS:
                raise RuntimeError(
                    f"the destination holds {got:,} of {n:,} records after"
                    f" {now - started:,.0f} s ({now - last_change:,.0f} s without progress);"
                    f" see {dest}/daemon.log"
                )
            time.sleep(poll if state is not None else POLL_SECONDS)
        while (committed := _committed(dest))[0] < n:  # the last batch is being written
            procs.check_alive()
            time.sleep(0.05)
        polled = time.perf_counter() - started
        pids = {SOURCE: procs.children[source].pid, DEST: procs.children[dest].pid}
        hwm = {key: _vm_hwm_bytes(pid) for key, pid in pids.items()}
        cpu = {key: _thread_cpu(pid) for key, pid in pids.items()}
        dest_state = _sync_state(dest, port_dest) or {}
        trips = max([trips, *(int(p["round_trips"]) for p in dest_state.get("peers", []))])
        source_state = _sync_state(source, port_source) or {}
    # The last batch's stored_at: when its transaction began writing (its commit follows
    # within a fraction of a second).
    elapsed = committed[1] / 1000 - started_epoch
    if not 0 < elapsed <= polled + 1:  # the clock stepped: keep the polled figure
        elapsed = polled
    return Run(
        elapsed=elapsed,
        polled=polled,
        startup=startup or 0.0,
        rate=n / elapsed,
        hwm=hwm,
        cpu=cpu,
        dest_peer=_peer_stats(dest_state),
        source_peer=_peer_stats(source_state),
        total=int(dest_state.get("total", 0)),
        round_trips=trips,
    )


# --- baselines ---------------------------------------------------------------------------------


async def _put_rate(envelopes: list[bytes], directory: Path) -> float:
    """Records per second that Catalogue.put stores into an empty store, 1,000 a transaction
    (sync's fetch batch), as sync stores them (held=False): its row, summary and search-text
    preparation and SQLite, without decoding. Wall clock."""
    from protocol.records import CatalogueRecord
    from storage.catalogue import StoredRecord
    from storage.store import Store, StoreSettings
    from sync.records import decode_record

    drop_tree(directory)
    records = [decode_record(e) for e in envelopes]
    items = [
        StoredRecord(r.signed, r.body, held=False)
        for r in records
        if isinstance(r.body, CatalogueRecord)
    ]
    store = await Store.open(StoreSettings(root=directory, quota_bytes=1 << 30))
    try:
        started = time.perf_counter()
        for start in range(0, len(items), 1_000):
            await store.catalogue.put(items[start : start + 1_000])
        return len(items) / (time.perf_counter() - started)
    finally:
        await store.close()
        drop_tree(directory)


def _verify_rates(envelopes: list[bytes]) -> tuple[float, float]:
    """Single-core rates (per second, wall clock like the sync figure, so both see the same
    machine load) of Ed25519 verification of these records' signatures (key loaded once,
    signed bytes prepared), and of siku's decode_record on them."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from protocol.records import decode_envelope, signing_bytes
    from sync.records import decode_record

    signed = [decode_envelope(e) for e in envelopes]
    key = Ed25519PublicKey.from_public_bytes(signed[0].signer)
    pairs = [(s.signature, signing_bytes(s.kind, s.body)) for s in signed]
    started = time.perf_counter()
    for signature, message in pairs:
        key.verify(signature, message)
    verify = len(pairs) / (time.perf_counter() - started)
    started = time.perf_counter()
    for envelope in envelopes:
        decode_record(envelope)
    decode = len(envelopes) / (time.perf_counter() - started)
    return verify, decode


def _cpu_note(key: str, cpu: tuple[float, float, list[float]], elapsed: float) -> str:
    total, main_s, others = cpu
    busiest = others[0] if others else 0.0
    rest = sum(others[1:])
    return (
        f"{key} {total:,.0f} s in all: {main_s:,.0f} s event-loop thread ({main_s / elapsed:.0%}),"
        f" {busiest:,.0f} s busiest other thread ({busiest / elapsed:.0%}),"
        f" {rest:,.0f} s the other {max(len(others) - 1, 0)}"
    )


def run_sync_initial(workdir: Path, quick: bool, repeat: Repeat, keep: bool = False,
                     records: int | None = None) -> list[Figure]:  # fmt: skip
    n = records or (QUICK_RECORDS if quick else FULL_RECORDS)
    cache = build_cache(workdir, n)
    envelopes = _envelope_sample(cache.root / SOURCE, VERIFY_SAMPLES)
    verify: list[float] = []
    decode: list[float] = []
    put: list[float] = []

    def baselines() -> None:
        for _ in range(VERIFY_REPEATS):
            v, d = _verify_rates(envelopes)
            verify.append(v)
            decode.append(d)
        put.append(asyncio.run(_put_rate(envelopes, workdir / "sync-initial" / "put-baseline")))

    baselines()
    runs: list[Run] = []
    run_dir = workdir / "sync-initial" / "run"
    load_at_start = os.getloadavg()
    try:
        for number in repeat.runs(f"sync (d) {n:,} records"):
            one = _one_run(cache, run_dir)
            runs.append(one)
            log(
                f"sync (d) run {number + 1}: {one.rate:,.0f} records/s, {one.elapsed:,.1f} s,"
                f" peak RSS source {one.hwm[SOURCE] / MB:,.0f} MB,"
                f" destination {one.hwm[DEST] / MB:,.0f} MB"
            )
            baselines()  # interleaved with the runs
    finally:
        if not keep:
            drop_tree(run_dir)
    load_at_end = os.getloadavg()

    rate = median([r.rate for r in runs])
    verify_rate = median(verify)
    ratio = rate / verify_rate
    last = runs[-1]
    dp, sp = last.dest_peer, last.source_peer
    hwm_source = median([r.hwm[SOURCE] for r in runs]) / MB
    hwm_dest = median([r.hwm[DEST] for r in runs]) / MB
    how_many = "1 run" if len(runs) == 1 else f"median of {len(runs)}"
    dest_cpu_us = last.cpu[DEST][0] / n * 1e6
    shown = (
        f"{fmt(rate)} records/s ({how_many})\n"
        f"{fmt(median([r.elapsed for r in runs]))} s for {n:,} records\n"
        f"{last.round_trips} round trips (largest session)\n"
        f"peak RSS: source {fmt(hwm_source)} MB, destination {fmt(hwm_dest)} MB"
    )
    notes = [
        f"two daemons on loopback HTTP (provincial source → empty national destination),"
        f" [sync] interval 1 s; catalogue-only records (no files), {cache.envelope_bytes:,.0f} B"
        f" signed on average, HLC times {SPACING_MS // 1000} s apart over the past year (too old"
        f" for push gossip: anti-entropy carries them); clock from the destination's start"
        f" (its start-up, {last.startup:.1f} s to answer, included) to the stored_at of its last"
        f" record batch, when its sync set equals the source's ({last.total:,} items; polling"
        f" the admin API, then the committed rows, saw it at {last.polled:,.1f} s); {how_many}"
        + ("" if len(runs) > 1 else " (the per-benchmark time budget allowed one; see --budget)"),
        f"rates per run: {', '.join(fmt(r.rate) for r in runs)} records/s; load average"
        f" {load_at_start[0]:.2f} at start, {load_at_end[0]:.2f} at end (2 daemons + this"
        f" process on {os.cpu_count()} cores)",
        f"destination's view of the source (last run): {dp.get('reconciliations', '?')}"
        f" reconciliations, {last.round_trips} round trips in the largest (as polled),"
        f" {dp.get('messages_sent', '?'):,} requests sent, {dp.get('bytes_received', 0):,} B"
        f" received, {dp.get('bytes_sent', 0):,} B sent, {dp.get('records_received', 0):,}"
        f" records applied, {dp.get('rejected', 0)} rejected, {dp.get('errors', 0)} errors",
        f"source's view of the destination (last run): {sp.get('reconciliations', '?')}"
        f" reconciliations, {sp.get('records_sent', 0):,} records sent (pushed or served:"
        f" {sp.get('records_sent', 0) / n:.2f} per record, the destination fetching what the"
        " source's own reconciliation also pushes),"
        f" {sp.get('bytes_sent', 0):,} B sent, {sp.get('messages_sent', 0):,} requests sent,"
        f" {sp.get('errors', 0)} errors",
        "CPU time over the run (last run): "
        + "; ".join(_cpu_note(k, last.cpu[k], last.elapsed) for k in (DEST, SOURCE))
        + f"; the destination spent {dest_cpu_us:,.0f} µs of CPU per record (all threads,"
        " start-up included),"
        f" i.e. {1e6 / dest_cpu_us:,.0f} records per CPU-second, a figure machine load"
        " does not lower",
        f"baselines: {VERIFY_SAMPLES:,} of the source's records, single core, wall clock,"
        f" {len(verify)} repetitions before and between runs (Catalogue.put: {len(put)}, into"
        " an empty store, where the destination's grows to N); building the source store (not"
        f" measured: cached) took {cache.build_seconds:,.0f} s"
        f" ({n / cache.build_seconds:,.0f} records/s: generated, signed, Catalogue.put)",
    ]
    return [
        Figure(
            benchmark=f"sync (d): initial sync of {n:,} records to an empty node, loopback HTTP",
            figure=Measure("records/s", "records/s", tuple(r.rate for r in runs)),
            shown=shown,
            baselines=[
                Measure("Ed25519 verify, 1 core", "sig/s", tuple(verify)),
                Measure("siku decode_record, 1 core", "records/s", tuple(decode)),
                Measure("siku Catalogue.put, 1,000/txn, empty store", "records/s", tuple(put)),
            ],
            ratios=[
                ("sync/verify", ratio),
                ("sync/decode", rate / median(decode)),
                ("sync/put", rate / median(put)),
            ],
            target=f"≥ {TARGET_RATIO} × verify rate",
            met=ratio >= TARGET_RATIO,
            notes=notes,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.sync_initial")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECORDS:,} records")
    parser.add_argument("--records", type=int, help="records in the source's store")
    parser.add_argument("--runs", type=int, default=1, help="runs (median shown)")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data")
    parser.add_argument("--keep", action="store_true", help="keep the last run's destination")
    args = parser.parse_args()
    from tests.bench.report import render

    workdir = args.workdir.resolve()
    figures = run_sync_initial(
        workdir, args.quick, Repeat(args.runs, float("inf")), args.keep, args.records
    )
    sys.stdout.write(render(machine_info(workdir), figures, []) + "\n")


if __name__ == "__main__":
    main()
