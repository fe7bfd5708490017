"""Shared fixtures: run the real `siku` CLI in a subprocess against a node home in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SikuRunner = Callable[..., subprocess.CompletedProcess[str]]


def siku_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.cli", *args]


def siku_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("SIKU_HOME", None)
    return env


@pytest.fixture
def siku() -> SikuRunner:
    """siku(*args, check=True) → CompletedProcess with text stdout/stderr."""

    def run(
        *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            siku_command(*args),
            capture_output=True,
            text=True,
            env=siku_env(),
            cwd=ROOT,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"siku {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture
def home(tmp_path: Path, siku: SikuRunner) -> Path:
    """A freshly initialised county node home."""
    h = tmp_path / "home"
    siku(
        "init",
        "--home",
        str(h),
        "--name",
        "Test County Library",
        "--code",
        "620982",
        "--tier",
        "county",
        "--quota-gib",
        "8",
    )
    return h
