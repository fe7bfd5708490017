"""Shared pieces of the benchmark: results, timing, machine facts, and running the real CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BIN",
    "MB",
    "MIB",
    "REPO",
    "Figure",
    "Measure",
    "Repeat",
    "Settings",
    "check_summary",
    "drop_tree",
    "fmt",
    "free_port",
    "log",
    "machine_info",
    "median",
    "read_once",
    "siku",
    "siku_init",
    "timed",
]

MB = 1_000_000  # figures are in MB/s = 10^6 bytes per second
MIB = 1 << 20
BIN = Path(sys.executable).parent  # the venv's bin/: siku, bagit.py
REPO = Path(__file__).resolve().parents[2]
# Library code and tier every benchmark node is created with.
PRODUCT_PACKAGES = ("protocol", "storage", "sync", "node")
NODE_ARGS = ("--name", "Bench", "--code", "620982", "--tier", "county", "--quota-gib", "64")


@dataclass(frozen=True)
class Settings:
    """What one invocation measures, chosen by --quick / --runs / --workdir."""

    workdir: Path
    runs: int
    quick: bool
    files: int  # 1 MiB files in the ingest data set
    records: int  # rows in the catalogue CSV
    profile_records: int  # rows the cProfile pass ingests
    queries_per_class: int  # search latency samples per query class and path
    profile: bool
    keep: bool


@dataclass(frozen=True)
class Measure:
    """One measured quantity: the median of its samples is what the table shows."""

    name: str
    unit: str
    samples: tuple[float, ...]
    note: str = ""

    @property
    def value(self) -> float:
        return median(self.samples)

    def show(self) -> str:
        text = f"{self.name}: {fmt(self.value)} {self.unit}"
        if len(self.samples) > 1:
            text += f" ({fmt(min(self.samples))}–{fmt(max(self.samples))})"
        return f"{text}; {self.note}" if self.note else text


@dataclass
class Figure:
    """One row of the results table: a figure of siku, its baselines, ratio and target."""

    benchmark: str
    figure: Measure
    baselines: list[Measure] = field(default_factory=list)
    ratios: list[tuple[str, float]] = field(default_factory=list)
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    # Figure cell text when a single median is not the whole story (latency percentiles).
    shown: str | None = None

    def as_json(self) -> dict[str, object]:
        def measure(m: Measure) -> dict[str, object]:
            return {
                "name": m.name,
                "unit": m.unit,
                "median": m.value if m.samples else None,
                "samples": list(m.samples),
                "note": m.note,
            }

        return {
            "benchmark": self.benchmark,
            "figure": measure(self.figure),
            "shown": self.shown,
            "baselines": [measure(b) for b in self.baselines],
            "ratios": dict(self.ratios),
            "target": self.target,
            "met": self.met,
            "notes": self.notes,
        }


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the results."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class Repeat:
    """Yields run numbers: `count` runs, fewer if repeating would pass a time budget.

    A benchmark that takes longer than its budget per run is run once rather than making the
    whole invocation unbounded; the table then shows how many runs the median is of.
    """

    def __init__(self, count: int, budget_seconds: float) -> None:
        self.count = count
        self.budget = budget_seconds

    def runs(self, name: str) -> Iterator[int]:
        start = time.perf_counter()
        for number in range(self.count):
            began = time.perf_counter()
            log(f"{name}: run {number + 1} of {self.count}")
            yield number
            took = time.perf_counter() - began
            spent = time.perf_counter() - start
            if number + 1 < self.count and spent + took > self.budget:
                log(f"{name}: {took:.0f} s per run; stopping after {number + 1} (budget)")
                return


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float) -> str:
    """A figure with about three significant digits, thousands separated."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds `fn()` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def siku(*args: str | os.PathLike[str], timeout: float = 3600) -> str:
    """Run the real `siku` CLI; return its stdout, raise with its stderr if it fails."""
    cmd = [str(BIN / "siku"), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}{done.stdout[-500:]}"
        )
    return done.stdout


_SUMMARY = re.compile(r"(\d+) added, (\d+) updated, (\d+) unchanged, (\d+) failed")


def check_summary(out: str, expected: int) -> None:
    """Fail loudly unless `siku ingest`'s summary line says all `expected` were added."""
    match = _SUMMARY.search(out)
    if match is None or int(match.group(1)) != expected or int(match.group(4)) != 0:
        raise RuntimeError(f"siku ingest did not add {expected} resources: {out[-500:]!r}")


def siku_init(home: Path) -> None:
    """A fresh node home (the old one, if any, removed first)."""
    drop_tree(home)
    siku("init", "--home", home, *NODE_ARGS)


def drop_tree(path: Path) -> None:
    """Remove a tree the benchmark made, including read-only chunk files (mode 0440)."""
    if path.exists():
        shutil.rmtree(path)


def read_once(paths: Sequence[Path]) -> int:
    """Read every file once so both siku and the baseline start from a warm page cache."""
    total = 0
    buf = bytearray(MIB)
    for path in paths:
        with path.open("rb", buffering=0) as handle:
            while n := handle.readinto(buf):
                total += n
    return total


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    model = match.group(1).strip() if match else "unknown"
    if flags and "sha_ni" in flags.group(1).split():
        model += " (SHA-NI)"
    return model


def _disk_of(path: Path) -> str:
    done = subprocess.run(
        ["df", "-hT", str(path)], capture_output=True, text=True, timeout=10, check=False
    )
    lines = done.stdout.strip().splitlines()
    return " ".join(lines[-1].split()[:3]) if len(lines) > 1 else "unknown"


def code_version() -> str:
    """Where the measured siku is imported from, its git HEAD, and a digest of its sources as
    they are on disk (others may be editing them: the digest tells which state was measured)."""
    spec = importlib.util.find_spec("node")
    root = Path(spec.origin).parents[1] if spec and spec.origin else REPO
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    head = f"HEAD {done.stdout.strip()}" if done.returncode == 0 else "not a git checkout"
    digest = hashlib.sha256()
    for package in PRODUCT_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in (".py", ".sql") and path.is_file():
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return f"{root} ({head}), sources sha256:{digest.hexdigest()[:12]}"


def machine_info(workdir: Path) -> dict[str, str]:
    """Facts that the figures depend on, printed above the table."""
    import cryptography

    return {
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cryptography": cryptography.__version__,
        "kernel": platform.release(),
        "workdir filesystem": f"{_disk_of(workdir)} ({workdir})",
        "siku code": code_version(),
    }
