"""The multi-host lab (deploy/lab): five real daemons of the four tiers, each in its own network
namespace, one link rate-limited by tbf and one losing 5 % of its packets to nftables.

Shows the daemons connect along the tiers over those links, a record ingested at a county
library becomes searchable at the national one, the shaping is really in force (tbf counters,
a timed transfer, a change of rate mid-test; nft drop counters), and nothing of the lab is left
afterwards, also after its process was killed with SIGKILL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from deploy.lab import Lab, LabNode, LabSpec, Shaping, clean_stale, missing_requirements
from deploy.lab.netns import lab_namespaces
from tests.conftest import ROOT, siku_env
from tests.integration.sync_helpers import write_csv

pytestmark = pytest.mark.system

T = TypeVar("T")

TOOLS = ("ip", "tc", "nft")  # iproute2 and nftables
SLOW_RATE = "4mbit"  # county1's link, each way
FAST_RATE = "40mbit"  # county1's link after the change mid-test
LOSS_PERCENT = 5.0  # county2's link, each way
TRANSFER_BYTES = 1_000_000  # 8 Mbit: 2 s at SLOW_RATE, 0.2 s at FAST_RATE
CONNECT_SECONDS = 45.0
SYNC_SECONDS = 45.0
TITLE = "敦煌写本实验室测试"

# Receives one TCP stream on ADDRESS:PORT, answers "ok" after EOF; or sends BYTES to it and
# prints how long until that answer came.
_TRANSFER = """
import socket, sys, time
role, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if role == "serve":
    with socket.create_server((address, port)) as s:
        print("ready", flush=True)
        s.settimeout(30)
        conn, _ = s.accept()
        with conn:
            conn.settimeout(30)
            while conn.recv(65536):
                pass
            conn.sendall(b"ok")
else:
    data = b"x" * int(sys.argv[4])
    with socket.create_connection((address, port), timeout=30) as c:
        start = time.monotonic()
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        assert c.recv(2) == b"ok"
        print(time.monotonic() - start, flush=True)
"""

# Sends COUNT small UDP datagrams to ADDRESS (nothing listens: they only cross the link).
_DATAGRAMS = """
import socket, sys
address, count = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for _ in range(count):
        s.sendto(b"siku-lab", (address, 9))  # a drop on the link raises nothing here
"""


def _poll(probe: Callable[[], T], done: Callable[[T], bool], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}: {value!r}")
        time.sleep(0.5)


def _require() -> None:
    reason = missing_requirements(TOOLS)
    if reason is not None:
        # CI runs as root and .ci/run installs iproute2 and nftables; `reason` names what is
        # missing. Never falls back to the machine's own namespace.
        pytest.skip(reason)


def _connected(lab: Lab, node: LabNode) -> set[str]:
    """Lab nodes `node` lists as connected, per `siku peers --json` in its namespace."""
    lab.check_alive()
    done = lab.run(node, ["peers", "--json"], check=True)
    table = json.loads(done.stdout)
    names = {n.node_id: n.name for n in lab.nodes.values()}
    return {
        names[p["node_id"]]
        for p in table["peers"]
        if table["live"] and p["state"] == "connected" and p["node_id"] in names
    }


def _neighbours(lab: Lab, node: LabNode) -> set[str]:
    parent = lab.parent(node)
    return {c.name for c in lab.children(node)} | ({parent.name} if parent else set())


def _wait_connected(lab: Lab, node: LabNode, expected: set[str]) -> None:
    _poll(
        lambda: _connected(lab, node),
        lambda got: expected <= got,
        CONNECT_SECONDS,
        f"{node.name} to connect to {sorted(expected)}",
    )


def _transfer_seconds(lab: Lab, sender: LabNode, receiver: LabNode, port: int) -> float:
    server = subprocess.Popen(
        receiver.host.command(
            sys.executable, "-c", _TRANSFER, "serve", receiver.address, str(port)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready", server.stderr
        args = ["send", receiver.address, str(port), str(TRANSFER_BYTES)]
        done = lab.exec(sender, [sys.executable, "-c", _TRANSFER, *args], timeout=60)
        assert done.returncode == 0, done.stderr
        return float(done.stdout)
    finally:
        server.kill()
        server.wait(10)


def test_five_tiers_shaped_and_lossy_links(tmp_path: Path) -> None:
    _require()
    spec = LabSpec(
        provincial=1,
        municipal=1,
        county=2,
        shaping={"county1": Shaping(rate=SLOW_RATE), "county2": Shaping(loss=LOSS_PERCENT)},
    )
    with Lab(spec, tmp_path) as lab:
        run = lab.run_id
        national, prov, muni = lab["national"], lab["prov1"], lab["muni1"]
        county1, county2 = lab["county1"], lab["county2"]
        assert [n.tier for n in lab.nodes.values()] == [
            "national", "provincial", "municipal", "county", "county",
        ]  # fmt: skip
        assert len({n.namespace for n in lab.nodes.values()}) == 5
        assert all(run in n.namespace for n in lab.nodes.values())

        # Every node connects to its parent and its children, over shaped and lossy links too.
        for node in lab.nodes.values():
            _wait_connected(lab, node, _neighbours(lab, node))
        assert lab.connected(muni) >= {"prov1", "county1", "county2"}  # the admin API agrees

        # A daemon killed and started again comes back (through the lossy link).
        lab.kill(county2, signal.SIGKILL)
        assert not lab.running(county2)
        lab.start(county2)
        _wait_connected(lab, county2, {"muni1"})

        # A record ingested at county1 (behind the slow link) is found at the national node.
        before = lab.stats(county1)
        csv = write_csv(tmp_path / "probe.csv", ["title", "creator"], [[TITLE, "lab"]])
        ingest = lab.run(county1, ["ingest", "--json", str(csv)], check=True)
        pid = json.loads(ingest.stdout.splitlines()[0])["pid"]
        _poll(
            lambda: json.loads(lab.run(national, ["search", "写本", "--json"]).stdout)["results"],
            lambda hits: pid in [h["pid"] for h in hits],
            SYNC_SECONDS,
            f"{pid} to be searchable at the national node",
        )
        query = urllib.parse.urlencode({"q": TITLE})
        status, body = lab.public_get(national, f"/api/v1/search?{query}", via=county2)
        assert status == 200 and pid in [h["pid"] for h in body["results"]], body

        # tbf is in force on county1's link both ways, and its counters grew.
        shown = lab.exec(county1, ["tc", "-s", "qdisc", "show", "dev", "eth0"], timeout=30)
        assert "tbf" in shown.stdout and "rate 4Mbit" in shown.stdout, shown.stdout
        after = lab.stats(county1)
        assert before.shaped_out_bytes is not None and before.shaped_in_bytes is not None
        assert after.shaped_out_bytes is not None and after.shaped_in_bytes is not None
        assert after.shaped_out_bytes > before.shaped_out_bytes, (before, after)
        assert after.shaped_in_bytes > before.shaped_in_bytes, (before, after)
        # 8 Mbit at 4 Mbit/s cannot take less than 2 s (less the bucket's burst); unshaped it
        # takes milliseconds. A new rate mid-test takes effect at once.
        slow = _transfer_seconds(lab, muni, county1, 9001)
        assert slow > 1.5, f"{TRANSFER_BYTES} bytes at {SLOW_RATE} in {slow:.2f} s"
        lab.shape(county1, rate=FAST_RATE)
        fast = _transfer_seconds(lab, muni, county1, 9002)
        assert fast < slow / 3, f"{FAST_RATE}: {fast:.2f} s, {SLOW_RATE}: {slow:.2f} s"
        assert lab.stats(prov).shaped_out_bytes is None  # unshaped links have no tbf

        # nft drops about 5 % of what crosses county2's link.
        sent = lab.exec(county2, [sys.executable, "-c", _DATAGRAMS, muni.address, "400"])
        assert sent.returncode == 0, sent.stderr
        listing = lab.exec(county2, ["nft", "list", "table", "netdev", "sikulab"], timeout=30)
        assert "numgen random mod 10000 < 500" in listing.stdout, listing.stdout
        lossy = lab.stats(county2)
        assert lossy.packets_seen >= 400, lossy
        assert 0 < lossy.packets_dropped < lossy.packets_seen * 0.15, lossy
        assert lab.stats(county1).packets_dropped == 0

        pids = [pid for n in lab.nodes.values() if (pid := lab.pid(n)) is not None]

    # Nothing of the lab is left: no namespace (and with them no veth, bridge, qdisc or nft
    # table, none of which ever existed outside them), no daemon, no state file.
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    assert run not in names.stdout, names.stdout
    assert run not in lab_namespaces()
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=30)
    assert "sikulab" not in host_links.stdout and "br0" not in host_links.stdout
    assert len(pids) == 5 and not [p for p in pids if Path(f"/proc/{p}").exists()], pids
    assert not Path(f"/run/siku-lab/{run}.json").exists()


_HOLD = """
import sys, time
from deploy.lab.netns import segment
with segment(["a", "b"]) as s:
    print(s.run, flush=True)
    time.sleep(120)
"""


def test_a_lab_killed_with_sigkill_is_cleaned_by_the_next() -> None:
    _require()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD],
        stdout=subprocess.PIPE,
        text=True,
        env=siku_env(),
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        run = holder.stdout.readline().strip()
        assert run in lab_namespaces()
        assert run not in clean_stale()  # its owner is alive: left alone
        assert len(lab_namespaces()[run]) == 3  # a, b and the hub
    finally:
        holder.kill()
        holder.wait(10)
    assert run in lab_namespaces()  # SIGKILL: no teardown ran
    assert run in clean_stale()
    assert run not in lab_namespaces()


REPLICATION_SECONDS = 120.0
CONTENT_BYTES = 3 << 20  # three chunks


def test_replication_across_shaped_lossy_links(tmp_path: Path) -> None:
    """Content ingested at a county behind a slow, lossy link is preserved per the default
    policy: a copy at a higher tier of its province (municipal or provincial) and one outside it
    (national), each byte-identical and verified where it lands."""
    _require()
    spec = LabSpec(
        provincial=1,
        municipal=1,
        county=1,
        shaping={"county1": Shaping(rate="20mbit", loss=2.0)},
    )
    with Lab(spec, tmp_path) as lab:
        national, prov, muni, county = (lab[n] for n in ("national", "prov1", "muni1", "county1"))
        for node in lab.nodes.values():
            _wait_connected(lab, node, _neighbours(lab, node))
        data = bytes(range(256)) * (CONTENT_BYTES // 256)
        data = data[:-1000] + b"siku lab replication"  # not a multiple of the chunk size
        (tmp_path / "scan.bin").write_bytes(data)
        csv = write_csv(
            tmp_path / "scan.csv",
            ["title", "files"],
            [["实验室复制测试 lab replication", "scan.bin"]],
        )
        ingest = lab.run(county, ["ingest", "--json", str(csv)], check=True)
        pid = json.loads(ingest.stdout.splitlines()[0])["pid"]

        def preservation(node: LabNode) -> int:
            copies = lab.admin_get(node, "/admin/api/v1/replication")["copies"]
            return int(copies.get("preservation", {}).get("copies", 0))

        _poll(
            lambda: [preservation(n) for n in (national, prov, muni)],
            lambda held: held[0] == 1 and held[1] + held[2] == 1,
            REPLICATION_SECONDS,
            f"{pid} to be copied to national and to one of its province's higher tiers",
        )
        for node in (national, prov, muni):
            if preservation(node):
                out = tmp_path / f"{node.name}.bin"
                got = lab.run(node, ["get", pid, "--file", "scan.bin", "-o", str(out)])
                assert got.returncode == 0, got.stderr
                assert out.read_bytes() == data, f"{node.name}: the copy differs"
        # The origin's own view agrees, once the holders' pages have reached it.
        _poll(
            lambda: lab.admin_get(county, "/admin/api/v1/replication")["plan"]["health"],
            lambda health: not any(health["below_policy"].values()) and not health["at_risk"],
            SYNC_SECONDS,
            "the county to see its resource placed as the policy asks",
        )
