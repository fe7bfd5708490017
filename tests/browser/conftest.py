"""A small real network (three daemons: national, a province, a city below it) with a few
resources ingested at the city and replicated, and Debian's headless Chromium driven by
Playwright (never a browser Playwright downloads) to look at the city's admin console."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node.demo import NodeSpec, Processes, build_network
from node.keys import load_identity
from tests.conftest import ROOT, siku_command, siku_env
from tests.integration.replication_helpers import edit_toml, ingest_csv, random_file
from tests.integration.sync_helpers import Node, poll
from tests.peer_helpers import free_port_pair

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "console"
STARTUP_SECONDS = 30
REPLICATE_SECONDS = 60

# key, name, code, tier, region, parent
LIBRARIES: tuple[tuple[str, str, str, str, str, str | None], ...] = (
    ("national", "国家图书馆 National Library", "zg", "national", "000000", None),
    ("gansu", "甘肃省图书馆 Gansu", "gs", "provincial", "620000", None),
    ("jiuquan", "酒泉市图书馆 Jiuquan", "jq", "municipal", "620900", "gansu"),
)
CONSOLE_NODE = "jiuquan"
# The province fetches at 1 Mbit/s (125 KB/s), so a larger resource is seen mid-transfer there.
SLOW_NODE = "gansu"
SLOW_MBIT = 1
TITLES = (
    "敦煌曲子词 Dunhuang ballads",
    "酒泉地方志 Jiuquan gazetteer",
    "嘉峪关图录 Jiayuguan album",
)


@dataclass
class Network:
    nodes: dict[str, Node]
    pids: dict[str, str]  # title → pid (ingested at CONSOLE_NODE)
    processes: Processes

    def __getitem__(self, key: str) -> Node:
        return self.nodes[key]

    def alive(self) -> None:
        self.processes.check_alive()


def _holders(node: Node, pid: str) -> list[dict[str, Any]]:
    try:
        found: list[dict[str, Any]] = node.admin_json(f"/admin/api/v1/resource?pid={pid}")[
            "holders"
        ]
    except OSError:
        return []
    return found


@pytest.fixture(scope="package")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("console-network")
    taken: set[int] = set()
    specs = [NodeSpec(*row, port=free_port_pair(taken)) for row in LIBRARIES]
    configs = build_network(
        root,
        specs,
        hello_interval_seconds=1,
        sync_interval_seconds=2,
        replication_interval_seconds=2,
    )
    nodes = {
        s.key: Node(s, root / s.key, load_identity(configs[s.key].key_file).node_id) for s in specs
    }
    edit_toml(nodes[SLOW_NODE].home, "replication", "bandwidth_mbit", str(SLOW_MBIT))
    src = root / "src"
    rows = []
    for i, title in enumerate(TITLES):
        random_file(src / f"item{i}" / "scan.tif", 40_000 + i * 10_000, seed=100 + i)
        rows.append([title, "酒泉市图书馆", "", "open", f"item{i}/scan.tif"])
    home = nodes[CONSOLE_NODE].home
    pids = dict(zip(TITLES, ingest_csv(home, src / "items.csv", rows), strict=True))
    with Processes([n.home for n in nodes.values()]) as processes:
        network = Network(nodes, pids, processes)
        for node in nodes.values():
            poll(node.up, bool, STARTUP_SECONDS, f"{node.key} up", alive=network.alive)
        # A copy of the first resource made elsewhere, and the city told so (holdings pages).
        poll(
            lambda: _holders(nodes[CONSOLE_NODE], pids[TITLES[0]]),
            lambda hs: len(hs) >= 2,
            REPLICATE_SECONDS,
            "a second holder of the first resource known at the city",
            interval=0.5,
            alive=network.alive,
        )
        yield network


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # As root (CI) Chromium refuses its sandbox; /dev/shm may be small in containers.
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot_path(name: str) -> Path:
    return ARTIFACTS / f"{name}.png"


def siku_status(node: Node, *args: str) -> str:
    """`siku status --home NODE ARGS…` as a person would run it: its output (it must succeed)."""
    proc = subprocess.run(
        siku_command("status", "--home", str(node.home), *args),
        capture_output=True,
        text=True,
        env=siku_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
