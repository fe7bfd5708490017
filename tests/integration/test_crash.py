"""kill -9 of `siku ingest` at random moments never leaves a visible resource incomplete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import SikuRunner, siku_command, siku_env
from tests.integration.check_store import audit, record_count, temp_files

TRIALS = 24
SEED = int(os.environ.get("SIKU_CRASH_SEED", "20261125"))


def _make_input(folder: Path, rng: random.Random, n: int = 12) -> Path:
    """A CSV of `n` resources with 1–3 files each, 10 KiB to 2.5 MiB (multi-chunk) — new bytes."""
    files = folder / "files"
    files.mkdir(parents=True)
    rows = ["title@zh,title@en,files"]
    for i in range(n):
        names = []
        for j in range(rng.randint(1, 3)):
            name = f"r{i:03d}-{j}.bin"
            (files / name).write_bytes(rng.randbytes(rng.randint(10_000, 2_200_000)))
            names.append(f"files/{name}")
        rows.append(f"第{i}号文献,Item {i},{'||'.join(names)}")
    csv = folder / "items.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv


def _timed_ingest(home: Path, csv: Path) -> float:
    start = time.monotonic()
    subprocess.run(
        siku_command("ingest", "--quiet", "--home", str(home), str(csv)),
        env=siku_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return time.monotonic() - start


def test_kill_9_during_ingest_leaves_only_complete_resources(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    rng = random.Random(SEED)
    # Calibrate: how long a whole ingest of one input takes here, start-up included.
    duration = _timed_ingest(home, _make_input(tmp_path / "calibrate", rng))
    committed_before = record_count(home)
    killed_mid_way = 0
    for trial in range(TRIALS):
        csv = _make_input(tmp_path / f"trial{trial}", rng)
        proc = subprocess.Popen(
            siku_command("ingest", "--quiet", "--home", str(home), str(csv)),
            env=siku_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, duration * 1.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_way += 1
        proc.wait(timeout=60)
        live, problems = audit(home)  # reopening the store is the restart
        assert problems == [], f"trial {trial} (seed {SEED}): {problems}"
        assert temp_files(home) == [], f"trial {trial}: temp files left after restart"
        assert live >= committed_before, "a committed resource disappeared"
        committed_before = live
    # The kills must really have landed mid-ingest for the test to mean anything.
    assert killed_mid_way >= TRIALS // 2, f"only {killed_mid_way} kills hit a running ingest"
    # And the store is still fully usable: a last ingest completes and everything verifies.
    csv = _make_input(tmp_path / "final", rng, n=4)
    siku("ingest", "--quiet", "--home", str(home), str(csv))
    live, problems = audit(home)
    assert problems == [] and live == committed_before + 4
