"""Benchmark 1: ingest of N × 1 MiB files (default 1,000, about 1 GB) in MB/s (10^6 bytes/s).

siku: the real CLI, `siku ingest --quiet --home H scans.csv` in a subprocess (process start-up
included), a fresh home per run. Every byte is read, SHA-256 hashed, written into the chunk
store and made durable (each chunk fsynced, then its folders) before the batch's records are
committed.

Baselines measured in the same run, interleaved with siku's runs:
* `bagit.py --sha256 DIR` bagging a hard-linked copy of the same files in place (only the
  bagit.py process is timed; it hashes and renames, it neither copies nor fsyncs);
* SHA-256 of 1 MiB buffers on one core (hashlib), the hashing ceiling of one core;
* writing and fsyncing 1 MiB files from as many threads as siku imports with, on the same
  disk: the storage ceiling of a write-then-fsync-per-chunk design.
Source files are written beforehand and read once right before every timed run, for siku and
for bagit alike, so both start from a warm page cache (the cache is not dropped: that would
disturb everyone else on the machine).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import threading
import time
from pathlib import Path

from tests.bench.common import (
    BIN,
    MB,
    MIB,
    Figure,
    Measure,
    Repeat,
    Settings,
    check_summary,
    drop_tree,
    read_once,
    siku,
    siku_init,
)
from tests.bench.dataset import FileDataset, make_file_dataset

__all__ = ["run_ingest_files", "sha256_rate"]


def import_threads() -> int:
    """How many threads siku's Ingester copies files with by default (its `workers`)."""
    from node.ingest.pipeline import Ingester

    default = inspect.signature(Ingester.__init__).parameters["workers"].default
    return int(default) if isinstance(default, int) else 2


def _settle() -> None:
    """Start each timed run with no dirty pages from the previous one being written back."""
    os.sync()


def siku_ingest(data: FileDataset, home: Path) -> float:
    """MB/s of `siku ingest` of the data set into a fresh home; checks what was stored."""
    siku_init(home)
    read_once(data.files())
    _settle()
    start = time.perf_counter()
    out = siku("ingest", "--quiet", "--home", home, data.csv)
    seconds = time.perf_counter() - start
    check_summary(out, data.count)
    stored = _chunk_bytes(home / "store" / "chunks")
    if stored != data.total_bytes:
        raise RuntimeError(f"chunk store holds {stored} bytes, expected {data.total_bytes}")
    return data.total_bytes / seconds / MB


def _chunk_bytes(root: Path) -> int:
    """Bytes in the chunk store's fan-out folders (temp and quarantine not counted)."""
    total = 0
    for top in root.iterdir():
        if len(top.name) == 2:
            total += sum(f.stat().st_size for f in top.glob("*/*"))
    return total


def bagit(data: FileDataset, scratch: Path) -> float:
    """MB/s of `bagit.py --sha256` bagging a fresh hard-linked copy of the files in place."""
    drop_tree(scratch)
    subprocess.run(["cp", "-al", str(data.scans), str(scratch)], check=True)
    read_once(sorted(scratch.iterdir()))
    _settle()
    cmd = [str(BIN / "bagit.py"), "--sha256", str(scratch)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"bagit.py failed: {done.stderr[-1000:]}")
    manifest = (scratch / "manifest-sha256.txt").read_text(encoding="utf-8").splitlines()
    if len(manifest) != data.count:
        raise RuntimeError(f"bagit manifest lists {len(manifest)} files, not {data.count}")
    drop_tree(scratch)
    return data.total_bytes / seconds / MB


def sha256_rate(seconds: float) -> float:
    """MB/s of hashlib SHA-256 over 1 MiB buffers on one core."""
    buf = os.urandom(MIB)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        hashlib.sha256(buf).digest()
        count += 1
    return count * MIB / (time.perf_counter() - start) / MB


def fsync_probe(folder: Path, files: int, threads: int) -> float:
    """MB/s writing `files` random 1 MiB files, each fsynced, from `threads` threads."""
    drop_tree(folder)
    folder.mkdir(parents=True)
    buf = os.urandom(MIB)

    def write(worker: int) -> None:
        for i in range(worker, files, threads):
            fd = os.open(folder / f"{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, buf)
                os.fsync(fd)
            finally:
                os.close(fd)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
    _settle()
    start = time.perf_counter()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    seconds = time.perf_counter() - start
    drop_tree(folder)
    return files * MIB / seconds / MB


def run_ingest_files(settings: Settings, repeat: Repeat) -> Figure:
    root = settings.workdir / "files"
    data = make_file_dataset(root / f"dataset-{settings.files}", settings.files)
    sha_seconds = 0.5 if settings.quick else 2.0
    probe_files = min(settings.files, 256)
    threads = import_threads()
    siku_rates: list[float] = []
    bagit_rates: list[float] = []
    sha_rates: list[float] = []
    probe_rates: list[float] = []
    for _ in repeat.runs("file ingest"):
        siku_rates.append(siku_ingest(data, root / "home"))
        drop_tree(root / "home")
        bagit_rates.append(bagit(data, root / "bag"))
        sha_rates.append(sha256_rate(sha_seconds))
        probe_rates.append(fsync_probe(root / "probe", probe_files, threads))
    figure = Measure("siku ingest (CLI)", "MB/s", tuple(siku_rates))
    bag = Measure("bagit.py --sha256", "MB/s", tuple(bagit_rates))
    sha = Measure("SHA-256, 1 core", "MB/s", tuple(sha_rates))
    probe = Measure(
        f"write+fsync 1 MiB files, {threads} threads as siku ({probe_files} files)",
        "MB/s",
        tuple(probe_rates),
    )
    return Figure(
        benchmark=f"ingest {data.count:,} × 1 MiB files ({data.total_bytes / MB:,.0f} MB), "
        "a CSV row per file",
        figure=figure,
        baselines=[bag, sha, probe],
        ratios=[
            ("siku/bagit", figure.value / bag.value),
            ("siku/sha256", figure.value / sha.value),
            ("siku/fsync-probe", figure.value / probe.value),
        ],
        target="siku/bagit ≥ 1.0",
        met=figure.value / bag.value >= 1.0,
        notes=[
            "`siku ingest --quiet` in a subprocess (start-up included), fresh home per run; "
            "every byte hashed, copied into the chunk store and fsynced before commit",
            "warm page cache for siku and bagit alike: source files written beforehand and "
            "read once before each timed run (page cache not dropped); os.sync() before each",
        ],
    )
