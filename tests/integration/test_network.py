"""Six real daemons of all four tiers on 127.0.0.1: they find each other, revocations spread, a
restarted node comes back.

One network is built and started per module (the tests run in file order and share it); every
wait polls the admin API or the logs against a deadline.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.demo import NodeSpec, Processes, build_network
from node.keys import load_identity
from tests.conftest import siku_command, siku_env
from tests.integration.sync_helpers import specs as library_specs

pytestmark = pytest.mark.slow

HELLO_INTERVAL_SECONDS = 1
STARTUP_SECONDS = 30
CONVERGE_SECONDS = 45
# A revocation is picked up from the issuer's store within RELOAD_EVERY_SECONDS (5 s) and then
# travels one hello interval per hop.
SPREAD_SECONDS = 30

T = TypeVar("T")


def _poll(probe: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
    """Call `probe` until `done` accepts its result; fail with the last result at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {value!r}")
        time.sleep(0.25)


@dataclass(frozen=True)
class Node:
    spec: NodeSpec
    home: Path
    node_id: str

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.spec.port + 1}"

    def peers_json(self) -> dict[str, Any]:
        token = (self.home / "keys" / "admin.token").read_text(encoding="utf-8").strip()
        request = urllib.request.Request(
            self.admin + "/admin/api/v1/peers", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def states(self) -> dict[str, str]:
        """node id → state of every peer this node has heard from (by id)."""
        return {p["node_id"]: p["state"] for p in self.peers_json()["peers"] if p["node_id"]}

    def log(self) -> str:
        return (self.home / "daemon.log").read_text(encoding="utf-8", errors="replace")


@dataclass
class Network:
    root: Path
    nodes: dict[str, Node]
    processes: Processes

    def __getitem__(self, key: str) -> Node:
        return self.nodes[key]

    def others(self, key: str, *, without: tuple[str, ...] = ()) -> list[Node]:
        return [n for k, n in self.nodes.items() if k != key and k not in without]


# The six libraries (national; two provinces; a city; two of its counties): sync_helpers.specs


def _admin_up(node: Node) -> bool:
    try:
        node.peers_json()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("network")
    specs = library_specs()
    configs = build_network(root, specs, hello_interval_seconds=HELLO_INTERVAL_SECONDS)
    nodes = {
        s.key: Node(s, root / s.key, load_identity(configs[s.key].key_file).node_id) for s in specs
    }
    with Processes([n.home for n in nodes.values()]) as processes:
        net = Network(root, nodes, processes)
        for node in nodes.values():
            _poll(functools.partial(_admin_up, node), bool, STARTUP_SECONDS, f"{node.spec.key} up")
        yield net


def _siku(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        siku_command(*args), capture_output=True, text=True, env=siku_env(), timeout=60
    )


def _all_connected(node: Node, expected: list[Node]) -> dict[str, str]:
    """Wait until `node` lists every one of `expected` as connected; returns its states."""
    want = {n.node_id for n in expected}
    return _poll(
        node.states,
        lambda states: all(states.get(i) == "connected" for i in want),
        CONVERGE_SECONDS,
        f"{node.spec.key} to be connected to {sorted(n.spec.key for n in expected)}",
    )


# --- finding each other -------------------------------------------------------------------------


def test_every_node_connects_to_every_other(network: Network) -> None:
    for key, node in network.nodes.items():
        _all_connected(node, network.others(key))
    # Nobody was refused anything while the honest network came up.
    for node in network.nodes.values():
        assert node.peers_json()["rejections"]["by_code"] == {}, node.spec.key


def test_parent_is_configured_and_the_rest_come_by_exchange(network: Network) -> None:
    county = network["dunhuang"]
    peers = {p["node_id"]: p for p in county.peers_json()["peers"] if p["node_id"]}
    parent = network["jiuquan"]
    assert peers[parent.node_id]["source"] == "configured"
    assert peers[parent.node_id]["url"] == parent.spec.url
    for other in network.others("dunhuang", without=("jiuquan",)):
        assert peers[other.node_id]["source"] == "exchange", other.spec.key
        assert peers[other.node_id]["tier"] == other.spec.tier
        assert peers[other.node_id]["region"] == other.spec.region
    # The national node has no parent: it knows everyone by exchange only.
    national = network["national"].peers_json()["peers"]
    assert {p["source"] for p in national if p["state"] != "self"} == {"exchange"}


def test_siku_peers_prints_the_others(network: Network) -> None:
    # One CLI process per node, run side by side.
    running = {
        key: subprocess.Popen(
            siku_command("peers", "--home", str(node.home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=siku_env(),
        )
        for key, node in network.nodes.items()
    }
    for key, node in network.nodes.items():
        stdout, stderr = running[key].communicate(timeout=60)
        proc = subprocess.CompletedProcess(
            running[key].args, running[key].returncode, stdout, stderr
        )
        assert proc.returncode == 0, proc.stderr
        assert "daemon not running" not in proc.stdout
        rows = {line.split()[-1]: line for line in proc.stdout.splitlines()[1:]}
        for other in network.others(key):
            assert other.spec.url in rows, f"{key} does not print {other.spec.key}:\n{proc.stdout}"
            assert rows[other.spec.url].startswith("connected"), rows[other.spec.url]
            assert other.spec.tier in rows[other.spec.url]
        assert node.spec.url not in rows  # its own address, learnt from others, is not a peer
    county = network["dunhuang"]
    shown = json.loads(_siku("peers", "--json", "--home", str(county.home)).stdout)
    assert shown["live"] is True
    assert {p["node_id"] for p in shown["peers"] if p["state"] == "connected"} == {
        n.node_id for n in network.others("dunhuang")
    }


# --- restart ------------------------------------------------------------------------------------


def test_a_restarted_node_reconnects(network: Network) -> None:
    county = network["dunhuang"]
    child = network.processes.children[county.home]
    network.processes.stop(county.home, signal.SIGTERM)
    assert child.returncode == 0
    assert "stopped" in county.log().splitlines()[-1]
    # Its peers notice it is gone...
    parent = network["jiuquan"]
    _poll(
        parent.states,
        lambda states: states.get(county.node_id) == "failed",
        CONVERGE_SECONDS,
        "the parent to see the county fail",
    )
    # ...and take it back when it returns (its peer table was saved on the way down).
    network.processes.start(county.home)
    _poll(lambda: _admin_up(county), bool, STARTUP_SECONDS, "the county to start again")
    _all_connected(county, network.others("dunhuang"))
    for other in network.others("dunhuang"):
        _all_connected(other, [county])


# --- revocation ---------------------------------------------------------------------------------


def _revoke(issuer: Node, subject: Node) -> None:
    proc = _siku(
        "enroll", "revoke", "--home", str(issuer.home), "--node", subject.node_id,
        "--reason", "integration test",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert subject.node_id in proc.stdout


def _shows_rejected(node: Node, revoked: list[Node]) -> None:
    """`node` lists each of `revoked` as rejected for revocation, and has refused its hellos."""
    ids = {n.node_id for n in revoked}

    def probe() -> tuple[dict[str, str], dict[str, Any], str]:
        data = node.peers_json()
        states = {p["node_id"]: p for p in data["peers"] if p["node_id"] in ids}
        return (
            {i: p["state"] for i, p in states.items()},
            data["rejections"]["by_caller"],
            node.log(),
        )

    def done(value: tuple[dict[str, str], dict[str, Any], str]) -> bool:
        states, by_caller, log = value
        # An unproved caller is counted by address; the log line names whom it claimed. A
        # revoked node stops dialing once it learns of its own revocation, which may reach it
        # (through its parent) before its next hello here: so at least one refused hello, not
        # one from each.
        return (
            all(states.get(i) == "rejected" for i in ids)
            and by_caller.get("127.0.0.1", {}).get("revoked", 0) >= 1
            and any(f"(claims {i}) refused: revoked" in log for i in ids)
        )

    _poll(probe, done, SPREAD_SECONDS, f"{node.spec.key} to refuse {[n.spec.key for n in revoked]}")
    for entry in node.peers_json()["peers"]:
        if entry["node_id"] in ids:
            assert "revoked" in (entry["last_error"] or ""), entry


def test_revoking_a_county_spreads_to_every_node(network: Network) -> None:
    county, municipal = network["dunhuang"], network["jiuquan"]
    _revoke(municipal, county)
    for node in network.others("dunhuang"):
        _shows_rejected(node, [county])
    # The honest nodes still talk to each other.
    for key in ("national", "gansu", "guangdong", "jiuquan", "guazhou"):
        _all_connected(network[key], network.others(key, without=("dunhuang",)))


def test_revoking_a_municipal_node_takes_its_counties_with_it(network: Network) -> None:
    municipal, sibling_county = network["jiuquan"], network["guazhou"]
    _revoke(network["gansu"], municipal)
    for key in ("national", "gansu", "guangdong"):
        _shows_rejected(network[key], [municipal, sibling_county])
    for key in ("national", "gansu", "guangdong"):
        _all_connected(
            network[key],
            [n for n in network.others(key) if n.spec.tier in ("national", "provincial")],
        )


def test_daemon_logs_have_no_tracebacks(network: Network) -> None:
    for node in network.nodes.values():
        assert "Traceback" not in node.log(), node.spec.key
        assert network.processes.children[node.home].poll() is None, f"{node.spec.key} exited"
