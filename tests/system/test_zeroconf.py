"""Zeroconf discovery between real daemons, each in a network namespace of its own on one bridge.

Two provincial libraries of one network, neither configured with the other, find each other by
mDNS and connect; a library of another network advertising on the same bridge stays out. The
daemons, the `siku peers` queries and the browse probe all run through `ip netns exec`:
zeroconf never runs in the machine's own namespace.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.lab.netns import Host, Segment, missing_requirements, segment
from node.config import load_config
from node.demo import NodeSpec, build_network
from node.keys import load_identity
from node.network import load_network
from node.peer.discovery import SERVICE_TYPE  # the constant only: nothing runs in this process
from tests.conftest import ROOT, siku_command, siku_env

pytestmark = pytest.mark.system

PORT = 8474  # every host has its own namespace, so all can use the same port
HELLO_INTERVAL_SECONDS = 2
CONNECT_SECONDS = 60.0
STOP_SECONDS = 15.0
QUIET_SECONDS = 3 * HELLO_INTERVAL_SECONDS  # how long the outsider must stay out

# Browses _siku._tcp for a while inside a namespace and prints each service's TXT record.
_BROWSE = """
import json, sys, time
from zeroconf import ServiceBrowser, ServiceListener, Zeroconf
kind, expect, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
names = set()
class Listener(ServiceListener):
    def add_service(self, zc, type_, name): names.add(name)
    def update_service(self, zc, type_, name): names.add(name)
    def remove_service(self, zc, type_, name): names.discard(name)
zc = Zeroconf()
try:
    browser = ServiceBrowser(zc, kind, Listener())
    deadline = time.monotonic() + seconds
    while len(names) < expect and time.monotonic() < deadline:
        time.sleep(0.2)
    found = []
    for name in sorted(names):
        info = zc.get_service_info(kind, name, timeout=3000)
        if info is not None:
            found.append({k.decode(): (v or b"").decode() for k, v in info.properties.items()})
    browser.cancel()
finally:
    zc.close()
print(json.dumps(found))
"""


@dataclass
class Daemon:
    """`siku run` inside a lab host's namespace."""

    host: Host
    home: Path
    url: str
    node_id: str
    network_id: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = load_config(self.home)
        assert config.zeroconf and config.listen.host == self.host.address
        env = {**siku_env(), "PYTHONUNBUFFERED": "1"}
        with (self.home / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.host.command(*siku_command("run", "--home", str(self.home))),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 25) -> str:
        path = self.home / "daemon.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def peers(self) -> list[dict[str, Any]] | None:
        """The live peer table (`siku peers --json` in the namespace), or None while the daemon
        is not answering yet."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(
                f"daemon in {self.host.netns} exited with {self.proc.returncode}:\n"
                + self.log_tail()
            )
        done = subprocess.run(
            self.host.command(*siku_command("peers", "--home", str(self.home), "--json")),
            capture_output=True,
            text=True,
            env=siku_env(),
            cwd=ROOT,
            timeout=60,
        )
        assert done.returncode == 0, f"siku peers in {self.host.netns}: {done.stderr}"
        data = json.loads(done.stdout)
        peers: list[dict[str, Any]] = data["peers"]
        return peers if data["live"] else None


@dataclass
class Scene:
    lab: Segment
    a: Daemon  # network 1
    b: Daemon  # network 1
    outsider: Daemon  # network 2

    @property
    def daemons(self) -> list[Daemon]:
        return [self.a, self.b, self.outsider]

    def logs(self) -> str:
        return "\n".join(f"--- {d.host.netns} daemon.log\n{d.log_tail()}" for d in self.daemons)


# (lab host, home folder, library name, code, region): provincial libraries the root certified
Library = tuple[Host, str, str, str, str]


def _daemons(root: Path, network: str, libraries: list[Library]) -> list[Daemon]:
    """One network of `libraries`, not configured with each other (no parent, no peers)."""
    specs = [
        NodeSpec(key, name, code, "provincial", region, None, PORT, host=h.address, zeroconf=True)
        for h, key, name, code, region in libraries
    ]
    configs = build_network(
        root, specs, network_name=network, hello_interval_seconds=HELLO_INTERVAL_SECONDS
    )
    out = []
    for (host, *_), spec in zip(libraries, specs, strict=True):
        config = configs[spec.key]
        assert config.parent == "" and not config.peers, "the test needs no configured peers"
        identity, description = load_identity(config.key_file), load_network(config.network_file)
        out.append(Daemon(host, root / spec.key, spec.url, identity.node_id, description.id))
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    reason = missing_requirements()
    if reason is not None:
        # Namespaces need root and iproute2 (CI has both, and .ci/run installs iproute2);
        # `reason` says which is missing. Never falls back to the machine's own namespace.
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("zeroconf")
    with segment(["a", "b", "c"]) as net, contextlib.ExitStack() as running:
        net.check()  # plain unicast and multicast first: a failure here is the lab's, not siku's
        a, b = _daemons(
            root / "net1",
            "siku system test network",
            [
                (net["a"], "gansu", "甘肃省图书馆 (test)", "gs", "620000"),
                (net["b"], "guangdong", "广东省立中山图书馆 (test)", "gd", "440000"),
            ],
        )
        (outsider,) = _daemons(
            root / "net2",
            "another siku network",
            [(net["c"], "sichuan", "四川省图书馆 (other network)", "sc", "510000")],
        )
        assert a.network_id == b.network_id != outsider.network_id
        for d in (a, b, outsider):
            running.callback(d.stop)  # stopped before the lab's namespaces go
            d.start()
        yield Scene(net, a, b, outsider)


def _entry(peers: list[dict[str, Any]], url: str) -> dict[str, Any] | None:
    return next((p for p in peers if p["url"] == url), None)


def _wait(scene: Scene, what: str, done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            tables = {d.host.name: d.peers() for d in scene.daemons}
            pytest.fail(
                f"timed out after {seconds:.0f} s waiting for {what}\n"
                f"peer tables: {json.dumps(tables, ensure_ascii=False, indent=1)}\n{scene.logs()}"
            )
        time.sleep(1.0)


def _wait_connected(scene: Scene) -> None:
    def found(d: Daemon, other: Daemon) -> bool:
        peers = d.peers()
        entry = _entry(peers or [], other.url)
        return (
            entry is not None
            and entry["source"] == "zeroconf"
            and entry["state"] == "connected"
            and entry["node_id"] == other.node_id
        )

    _wait(
        scene,
        "a and b to list each other as zeroconf peers, connected",
        lambda: found(scene.a, scene.b) and found(scene.b, scene.a),
        CONNECT_SECONDS,
    )


def test_members_find_each_other_by_zeroconf(scene: Scene) -> None:
    _wait_connected(scene)


def test_node_of_another_network_stays_out(scene: Scene) -> None:
    _wait_connected(scene)  # discovery works on this bridge, so the outsider was seen too
    probe = subprocess.run(
        scene.a.host.command(sys.executable, "-c", _BROWSE, SERVICE_TYPE, "3", "15"),
        capture_output=True,
        text=True,
        env=siku_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    advertised = {(t.get("url"), t.get("net")) for t in json.loads(probe.stdout)}
    assert advertised == {
        (scene.a.url, scene.a.network_id),
        (scene.b.url, scene.b.network_id),
        (scene.outsider.url, scene.outsider.network_id),
    }, f"what the bridge carries: {advertised}"

    deadline = time.monotonic() + QUIET_SECONDS
    while True:
        for member in (scene.a, scene.b):
            peers = member.peers()
            assert peers is not None
            assert _entry(peers, scene.outsider.url) is None, (
                f"{member.host.name} took the other network's advertisement: {peers}"
            )
            assert all(p["node_id"] != scene.outsider.node_id for p in peers)
        outsider = scene.outsider.peers()
        assert outsider is not None
        assert not [p for p in outsider if p["state"] == "connected"], outsider
        assert {p["url"] for p in outsider}.isdisjoint({scene.a.url, scene.b.url}), outsider
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
