"""Catalogue sync between six real daemons of all four tiers on 127.0.0.1.

Records are ingested at a county node (thousands, so that sync takes seconds) and at a provincial
node while the daemons run; the national node is killed with SIGKILL while it holds some but not
all of the county's records, and restarted. Every node must come to hold the same set (compared
id by id in the stores, read-only) in a sound database; a record is then found by the public
search API at the national node, and a deletion made at the county reaches every node.

One network is built and started per module (the tests run in file order and share it); every
wait polls against a deadline.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.demo import Processes, build_network
from node.keys import load_identity
from tests.conftest import siku_command, siku_env
from tests.integration.sync_helpers import (
    Node,
    catalogue_refs,
    integrity,
    poll,
    specs,
    store_ids,
    store_items,
    write_csv,
)

pytestmark = pytest.mark.slow

HELLO_INTERVAL_SECONDS = 1
SYNC_INTERVAL_SECONDS = 2
STARTUP_SECONDS = 30
CONNECT_SECONDS = 45
CONVERGE_SECONDS = 90
SPREAD_SECONDS = 45
INGEST_SECONDS = 120

COUNTY_ROWS = 3_000  # ~10 s to reach the national node on two slow cores: time to kill it
PROVINCE_ROWS = 300
NAAN = "99999"  # what build_network gives the network


@dataclass
class Network:
    root: Path
    nodes: dict[str, Node]
    processes: Processes
    # Filled in by the tests, in order: what every node must end up holding.
    baseline: frozenset[bytes] = frozenset()
    county_pids: dict[int, str] = field(default_factory=dict)  # row → pid
    province_pids: dict[int, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Node:
        return self.nodes[key]

    def alive(self) -> None:
        self.processes.check_alive()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("sync-network")
    node_specs = specs()
    configs = build_network(
        root,
        node_specs,
        hello_interval_seconds=HELLO_INTERVAL_SECONDS,
        sync_interval_seconds=SYNC_INTERVAL_SECONDS,
        # Catalogue sync alone: replication (tests/integration/test_replication_network.py)
        # would add holdings pages and status records to the set as content moves.
        replication=False,
    )
    nodes = {
        s.key: Node(s, root / s.key, load_identity(configs[s.key].key_file).node_id)
        for s in node_specs
    }
    with Processes([n.home for n in nodes.values()]) as processes:
        network = Network(root, nodes, processes)
        for node in nodes.values():
            poll(node.up, bool, STARTUP_SECONDS, f"{node.key} up", alive=network.alive)
        yield network


def _siku(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        siku_command(*args), capture_output=True, text=True, env=siku_env(), timeout=timeout
    )


def _county_title(i: int) -> str:
    return f"敦煌遗书 第{i}卷 scroll{i:05d}"


def _province_title(i: int) -> str:
    return f"广东方志 gazetteer{i:04d}"


def _catalogue_count(node: Node, code: str) -> int:
    """Live or deleted catalogue records of library `code` in the node's set (read-only)."""
    prefix = f"ark:{NAAN}/{code}"
    items = store_items(node.db).values()
    return sum(1 for _, kind, ref in items if kind == "catalogue" and ref.startswith(prefix))


def _sets(net: Network) -> dict[str, frozenset[bytes]]:
    return {key: store_ids(node.db) for key, node in net.nodes.items()}


def _all_equal(sets: dict[str, frozenset[bytes]], size: int) -> bool:
    return len(set(sets.values())) == 1 and all(len(s) == size for s in sets.values())


def _summary(sets: dict[str, frozenset[bytes]]) -> dict[str, int]:
    return {key: len(s) for key, s in sets.items()}


def _converged(net: Network, size: int, what: str) -> frozenset[bytes]:
    """Wait until every node's store holds the same `size` ids; returns that set."""
    sets = poll(
        functools.partial(_sets, net),
        lambda sets: _all_equal(sets, size),
        CONVERGE_SECONDS,
        what,
        interval=0.5,
        alive=net.alive,
    )
    return next(iter(sets.values()))


# --- the network comes up -----------------------------------------------------------------------


def test_nodes_connect_and_share_their_certificates(net: Network) -> None:
    for key, node in net.nodes.items():
        others = {n.node_id for k, n in net.nodes.items() if k != key}
        poll(
            node.connected,
            lambda got, others=others: others <= got,
            CONNECT_SECONDS,
            f"{key} connected to every other node",
            alive=net.alive,
        )
    # Nothing but certificates yet: each node's own, and every other node's by sync. Six nodes,
    # six certificates (each chain is a path from the root; the union is one per node).
    net.baseline = _converged(net, len(net.nodes), "every node to hold the six certificates")
    kinds = {kind for _, kind, _ in store_items(net["national"].db).values()}
    assert kinds == {"certificate"}
    for node in net.nodes.values():
        assert node.total() == len(net.nodes), node.key


# --- ingest while running, a kill -9 in the middle, convergence ----------------------------------


def _start_ingest(node: Node, csv_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        siku_command("ingest", "--home", str(node.home), "--json", str(csv_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=siku_env(),
    )


def _pids_by_row(stdout: str, rows: int) -> dict[int, str]:
    """row → pid from `siku ingest --json` output (its labels end in `:LINE`; line 1 is the
    header, so row i is on line i + 2)."""
    out: dict[int, str] = {}
    for line in stdout.splitlines():
        result = json.loads(line)
        assert result["status"] == "added", result
        line_no = int(str(result["label"]).rsplit(":", 1)[1])
        out[line_no - 2] = str(result["pid"])
    assert sorted(out) == list(range(rows)), f"{len(out)} results for {rows} rows"
    return out


def test_ingest_while_running_and_kill_the_national_node_mid_sync(net: Network) -> None:
    national, county, province = net["national"], net["dunhuang"], net["guangdong"]
    county_csv = write_csv(
        net.root / "county.csv",
        ["title", "creator", "subject@zh"],
        [[_county_title(i), "敦煌市图书馆", "敦煌学||写本"] for i in range(COUNTY_ROWS)],
    )
    province_csv = write_csv(
        net.root / "province.csv",
        ["title", "date"],
        [[_province_title(i), str(1800 + i % 200)] for i in range(PROVINCE_ROWS)],
    )
    county_ingest = _start_ingest(county, county_csv)
    province_ingest = _start_ingest(province, province_csv)
    try:
        # Kill the national node while it holds some, but not all, of the county's records: it
        # is receiving them (pushed along the tree and pulled by reconciliation, batch by batch).
        held = poll(
            lambda: _catalogue_count(national, county.spec.code),
            lambda n: 0 < n < COUNTY_ROWS,
            CONVERGE_SECONDS,
            "the national node to hold part of the county's records",
            interval=0.05,
            alive=net.alive,
        )
        child = net.processes.children[national.home]
        net.processes.stop(national.home, signal.SIGKILL)
        assert child.returncode == -signal.SIGKILL
        killed_at = time.monotonic()
        # What the killed node left behind: a sound database, each record whole (in the catalogue
        # and in the reconciled set alike) or absent, never more than the county holds.
        assert integrity(national.db) == ["ok"]
        records, items = catalogue_refs(national.db)
        assert records == items, (len(records), len(items))
        after_kill = _catalogue_count(national, county.spec.code)
        assert held <= after_kill <= COUNTY_ROWS, (held, after_kill)

        county_out, county_err = county_ingest.communicate(timeout=INGEST_SECONDS)
        province_out, province_err = province_ingest.communicate(timeout=INGEST_SECONDS)
    finally:
        for proc in (county_ingest, province_ingest):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert county_ingest.returncode == 0, county_err
    assert province_ingest.returncode == 0, province_err
    assert f"{COUNTY_ROWS} added" in county_err
    net.county_pids = _pids_by_row(county_out, COUNTY_ROWS)
    net.province_pids = _pids_by_row(province_out, PROVINCE_ROWS)

    # Restarted, the national node catches up: every node ends with the same set.
    net.processes.start(national.home)
    poll(national.up, bool, STARTUP_SECONDS, "the national node to start again", alive=net.alive)
    final = _converged(
        net,
        len(net.baseline) + COUNTY_ROWS + PROVINCE_ROWS,
        "every node to hold every record after the restart",
    )
    caught_up = time.monotonic() - killed_at
    assert net.baseline <= final
    for node in net.nodes.values():
        assert _catalogue_count(node, county.spec.code) == COUNTY_ROWS, node.key
        assert _catalogue_count(node, province.spec.code) == PROVINCE_ROWS, node.key
        assert node.total() == len(final), node.key
        assert integrity(node.db) == ["ok"], node.key
        records, items = catalogue_refs(node.db)
        assert records == items and len(records) == COUNTY_ROWS + PROVINCE_ROWS, node.key
    # The national node did start twice, and says nothing bad about it.
    log = national.log()
    assert log.count(f"node {national.node_id} (") == 2, log[-2000:]
    assert "Traceback" not in log
    print(f"national held {held}/{COUNTY_ROWS} county records when killed; all nodes equal "
          f"{caught_up:.1f} s after the kill")  # fmt: skip


def test_a_county_record_is_searchable_at_the_national_node(net: Network) -> None:
    national, county = net["national"], net["dunhuang"]
    row = 1234
    pid = net.county_pids[row]
    assert national.search(f"scroll{row:05d}") == [pid]
    status, body = national.public(f"/api/v1/records/{pid}")
    assert status == 200, body
    assert body["pid"] == pid
    assert body["origin"] == county.node_id
    assert body["dc"]["title"][0]["value"] == _county_title(row)
    assert body["deleted"] is False
    # Chinese text is searchable there too, and a provincial record at the county (across the
    # tree: Guangdong → national → Gansu → Jiuquan → Dunhuang, or by a random offer).
    assert pid in national.search(f"第{row}卷")
    other = net.province_pids[42]
    assert county.search("gazetteer0042") == [other]
    # `siku status` of the national node reports the synced set.
    proc = _siku("status", "--home", str(national.home))
    assert proc.returncode == 0, proc.stderr
    total = len(net.baseline) + COUNTY_ROWS + PROVINCE_ROWS
    assert f" {total} records in the shared set" in proc.stdout, proc.stdout


def test_a_deletion_at_the_county_spreads_to_every_node(net: Network) -> None:
    county = net["dunhuang"]
    row = 2024
    pid = net.county_pids[row]
    query = f"scroll{row:05d}"
    for node in net.nodes.values():
        assert node.search(query) == [pid], node.key
    before = store_ids(county.db)
    proc = _siku("delete", "--home", str(county.home), pid)
    assert proc.returncode == 0, proc.stderr
    assert f"deleted {pid}" in proc.stdout
    for node in net.nodes.values():
        poll(
            lambda node=node: (node.record_status(pid), node.search(query)),
            lambda got: got == (410, []),
            SPREAD_SECONDS,
            f"the deletion of {pid} at {node.key}",
            alive=net.alive,
        )
    # The tombstone replaced the record in every set: same size, one id swapped.
    after = _converged(net, len(before), "every node to hold the tombstone")
    assert len(before - after) == 1 and len(after - before) == 1
    status, problem = net["national"].public(f"/api/v1/records/{pid}")
    assert status == 410 and problem["code"] == "deleted", problem
    # The neighbouring records are untouched.
    assert net["national"].search(f"scroll{row + 1:05d}") == [net.county_pids[row + 1]]


def test_stopped_nodes_hold_identical_sound_stores(net: Network) -> None:
    net.alive()
    for node in net.nodes.values():
        child = net.processes.children[node.home]
        net.processes.stop(node.home, signal.SIGTERM)
        assert child.returncode == 0, f"{node.key} exited with {child.returncode}:\n" + "\n".join(
            node.log().splitlines()[-25:]
        )
    sets = _sets(net)
    assert len(set(sets.values())) == 1, _summary(sets)
    assert len(next(iter(sets.values()))) == len(net.baseline) + COUNTY_ROWS + PROVINCE_ROWS
    for node in net.nodes.values():
        assert integrity(node.db) == ["ok"], node.key
        records, items = catalogue_refs(node.db)
        assert records == items, node.key
        assert "Traceback" not in node.log(), node.key
