"""The real `siku run` process on 127.0.0.1: serving, ingest while running, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SikuRunner, siku_command, siku_env

STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningNode:
    home: Path
    proc: subprocess.Popen[str]
    public: str
    admin: str
    token: str

    def get(self, path: str, *, admin: bool = False) -> tuple[int, dict[str, str], bytes]:
        base = self.admin if admin else self.public
        request = urllib.request.Request(base + path)
        if admin:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


@pytest.fixture
def node(tmp_path: Path, siku: SikuRunner) -> Iterator[RunningNode]:
    home = tmp_path / "home"
    public, admin = free_port(), free_port()
    siku(
        "init",
        "--home",
        str(home),
        "--name",
        "Daemon Test Library",
        "--code",
        "620982",
        "--tier",
        "county",
        "--listen",
        f"127.0.0.1:{public}",
        "--admin-listen",
        f"127.0.0.1:{admin}",
    )
    proc = subprocess.Popen(
        siku_command("run", "--home", str(home)),
        env=siku_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningNode(
        home,
        proc,
        f"http://127.0.0.1:{public}",
        f"http://127.0.0.1:{admin}",
        (home / "keys" / "admin.token").read_text().strip(),
    )
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            if running.get("/admin/api/v1/status", admin=True)[0] == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None, f"daemon exited: {proc.stdout.read() if proc.stdout else ''}"
        assert time.monotonic() < deadline, "daemon did not start"
        time.sleep(0.1)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_ingest_while_running_is_served_at_once(
    tmp_path: Path, node: RunningNode, siku: SikuRunner
) -> None:
    data = os.urandom(1_500_000)
    (tmp_path / "scan.bin").write_bytes(data)
    (tmp_path / "c.csv").write_text(
        "title@zh,title@en,access,files\n敦煌县志,Dunhuang gazetteer,open,scan.bin\n"
        "馆藏善本,Rare books,restricted,\n",
        encoding="utf-8",
    )
    siku("ingest", "--home", str(node.home), str(tmp_path / "c.csv"))
    status, _, body = node.get("/api/v1/search?q=" + urllib.parse.quote("县志"))
    assert status == 200
    results = json.loads(body)["results"]
    assert len(results) == 1
    pid = results[0]["pid"]
    status, headers, body = node.get(f"/api/v1/content/{pid}/scan.bin")
    assert status == 200 and body == data and headers["ETag"].strip('"') != ""
    status, _, body = node.get(f"/id/{pid}")
    assert status == 200 and "敦煌县志".encode() in body
    # The daemon's status reflects what the CLI just stored.
    status, _, body = node.get("/admin/api/v1/status", admin=True)
    counts = json.loads(body)["counts"]
    assert counts["records"] == 2 and counts["files"] == 1
    shown = json.loads(siku("status", "--json", "--home", str(node.home)).stdout)
    assert shown["daemon"]["running"] is True and shown["counts"]["records"] == 2


def test_sigterm_stops_cleanly(node: RunningNode) -> None:
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=20) == 0
    output = node.proc.stdout.read() if node.proc.stdout else ""
    assert "stopped" in output and "Traceback" not in output
    with pytest.raises(OSError):
        node.get("/api/v1/search?q=x")


def test_a_second_daemon_on_the_same_ports_fails_clearly(
    node: RunningNode, siku: SikuRunner
) -> None:
    proc = siku("run", "--home", str(node.home), check=False, timeout=60)
    assert proc.returncode != 0
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
    assert node.proc.poll() is None  # the first one is unharmed
