"""`/metrics` on the admin listener, parsed by prometheus_client's own text parser: auth, format,
naming rules, bounded labels, and real values — from an admin app on a 127.0.0.1 socket, and
from two real daemons after one replicated a resource from the other."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from node.context import VERSION
from node.demo import NodeSpec, Processes, build_network
from node.keys import load_identity
from node.metrics import MAX_CODES
from node.peer.server import Rejections
from node.peer.service import Peering
from node.peer.table import PeerTable
from protocol.records import CHUNK_SIZE
from tests.integration.conftest import QUOTA_BYTES, HttpNode
from tests.integration.replication_helpers import copies, ingest_csv, random_file
from tests.integration.sync_helpers import LIBRARIES, Node, poll
from tests.peer_helpers import free_port_pair

METRICS = "/metrics"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
MAX_LABEL_VALUES = 8  # any label but `code` (bounded by MAX_CODES + "other")
UNITS = ("_bytes", "_seconds")


def parse(text: str) -> dict[str, Metric]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families, text
    return families


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The value of the one sample named `sample` with exactly these labels."""
    family = families[sample.removesuffix("_total")]
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, family.samples)
    return found[0]


def check_conventions(families: dict[str, Metric]) -> None:
    """Names, types, units and label sets every scrape must keep to."""
    for name, family in families.items():
        assert name.startswith("siku_"), name
        assert family.type in ("counter", "gauge"), (name, family.type)
        assert family.documentation, name
        assert not any(bad in name for bad in ("_ms", "milli", "_kb", "_mib", "_minutes")), name
        for s in family.samples:
            if family.type == "counter":
                assert s.name == name + "_total", s
                assert s.value >= 0, s
            else:
                assert s.name == name, s
        values: dict[str, set[str]] = {}
        for s in family.samples:
            for label, v in s.labels.items():
                values.setdefault(label, set()).add(v)
        for label, seen in values.items():
            assert label not in ("peer", "pid", "node", "node_id", "url"), (name, label)
            bound = MAX_CODES + 1 if label == "code" else MAX_LABEL_VALUES
            assert len(seen) <= bound, (name, label, seen)
    # Units are in the names: every size is in bytes, every time in seconds.
    for name in families:
        if "bytes" in name or "seconds" in name:
            assert name.removesuffix("_total").endswith(UNITS) or name.endswith("_info"), name


# --- one admin app, no network --------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "unauthorized"),
        (bearer("wrong-token-" + "x" * 32), "invalid-token"),
    ],
)
async def test_metrics_require_the_admin_token(
    http_node: HttpNode,
    admin_url: str,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    code: str,
) -> None:
    async with http.get(admin_url + METRICS, headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json(content_type="application/problem+json")
    assert body["code"] == code
    assert "siku_" not in str(body)


async def test_metrics_of_a_node_not_yet_in_a_network(
    http_node: HttpNode, admin_url: str, http: aiohttp.ClientSession
) -> None:
    shared = os.urandom(CHUNK_SIZE + 10)  # two chunks
    await http_node.add("A", files={"a.bin": shared, "small.txt": (b"small", "text/plain")})
    await http_node.add("B", files={"copy.bin": shared})  # the same chunks: stored once
    for i in range(3):
        await http_node.add(f"metadata only {i}")
    gone = await http_node.add("Gone", files={"gone.bin": b"gone gone gone"})
    await http_node.delete(gone.pid)

    token = http_node.ctx.admin_token
    async with http.get(admin_url + METRICS, headers=bearer(token)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == PROMETHEUS_TEXT
        assert resp.headers["Cache-Control"] == "no-store"
        text = await resp.text()
    families = parse(text)
    check_conventions(families)

    assert value(families, "siku_build_info", version=VERSION) == 1
    assert value(families, "siku_node_info", tier="county") == 1
    assert 0 <= value(families, "siku_uptime_seconds") < 60
    assert value(families, "siku_start_time_seconds") == pytest.approx(http_node.ctx.started_wall)
    # Six records stored, one of them since deleted (a tombstone in the same slot).
    assert value(families, "siku_records", kind="catalogue") == 6
    assert value(families, "siku_catalogue_records", state="live") == 5
    assert value(families, "siku_catalogue_records", state="deleted") == 1
    assert value(families, "siku_storage_chunks") == 3  # two shared, one of small.txt
    assert value(families, "siku_storage_used_bytes") == len(shared) + len(b"small")
    assert value(families, "siku_storage_quota_bytes") == QUOTA_BYTES
    assert families["siku_records"].type == "gauge"
    # Not enrolled: no peering, sync or replication families at all (not zeros that look real).
    assert not any(n.startswith(("siku_peer", "siku_sync", "siku_transfer")) for n in families)

    # A second scrape sees the new state (nothing cached between scrapes).
    await http_node.add("C")
    async with http.get(admin_url + METRICS, headers=bearer(token)) as resp:
        again = parse(await resp.text())
    assert value(again, "siku_catalogue_records", state="live") == 6
    assert value(again, "siku_uptime_seconds") >= value(families, "siku_uptime_seconds")


async def test_peers_by_state_and_refusals_by_a_bounded_set_of_codes(
    http_node: HttpNode, admin_url: str, http: aiohttp.ClientSession
) -> None:
    # The peering service's real table and refusal counter, without its network half.
    table = PeerTable(max_peers=16)
    for i in range(6):
        table.add(f"http://10.0.0.{i}:8470", "configured", 0)
    table.failed("http://10.0.0.1:8470", "connection refused", 1, 0.5)
    table.failed("http://10.0.0.2:8470", "connection refused", 1, 0.5)
    table.rejected("http://10.0.0.3:8470", "bad-chain", 1)
    table.is_self("http://10.0.0.5:8470", "self-id")
    rejections = Rejections()
    for i in range(MAX_CODES + 10):  # more distinct codes than get a label of their own
        for _ in range(i + 1):
            rejections.add(f"peer-{i % 3}", f"code-{i:02d}")
    http_node.ctx.peering = cast(Peering, SimpleNamespace(table=table, rejections=rejections))
    token = http_node.ctx.admin_token

    async def families() -> dict[str, Metric]:
        async with http.get(admin_url + METRICS, headers=bearer(token)) as resp:
            assert resp.status == 200
            return parse(await resp.text())

    first = await families()
    check_conventions(first)
    assert first["siku_peers"].type == "gauge"
    states = {s.labels["state"]: s.value for s in first["siku_peers"].samples}
    assert states == {"new": 2, "connected": 0, "failed": 2, "rejected": 1}  # "self" left out
    refused = first["siku_peer_rejections"]
    assert refused.type == "counter"
    codes = {s.labels["code"]: s.value for s in refused.samples}
    assert len(codes) == MAX_CODES + 1
    assert codes["code-00"] == 1 and codes[f"code-{MAX_CODES - 1:02d}"] == MAX_CODES
    assert sum(codes.values()) == sum(rejections.by_code.values())
    assert codes["other"] == sum(range(MAX_CODES + 1, MAX_CODES + 11))
    # A new code and more of an old one: every series only grows, none is renamed.
    rejections.add("peer-9", "brand-new-code")
    rejections.add("peer-0", "code-03")
    second = await families()
    later = {s.labels["code"]: s.value for s in second["siku_peer_rejections"].samples}
    assert later.keys() == codes.keys()
    assert later["other"] == codes["other"] + 1 and later["code-03"] == codes["code-03"] + 1
    assert all(later[c] >= v for c, v in codes.items())


# --- two real daemons -----------------------------------------------------------------------

HELLO_INTERVAL_SECONDS = 1
SYNC_INTERVAL_SECONDS = 2
REPLICATION_INTERVAL_SECONDS = 3
STARTUP_SECONDS = 30
REPLICATED_SECONDS = 90
SIZE = 1_500_000  # two chunks


def scrape(node: Node, token: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of GET /metrics on the node's admin listener."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(node.admin + METRICS, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers["Content-Type"], e.read().decode()


def metrics(node: Node) -> dict[str, Metric]:
    status, content_type, text = scrape(node, node.token)
    assert status == 200 and content_type == PROMETHEUS_TEXT, (status, text)
    return parse(text)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, bytes]]:
    """The national library and a province under it; the province ingested one resource."""
    root = tmp_path_factory.mktemp("metrics-network")
    taken: set[int] = set()
    rows = [r for r in LIBRARIES if r[0] in ("national", "gansu")]
    node_specs = [NodeSpec(*row, port=free_port_pair(taken)) for row in rows]
    configs = build_network(
        root,
        node_specs,
        hello_interval_seconds=HELLO_INTERVAL_SECONDS,
        sync_interval_seconds=SYNC_INTERVAL_SECONDS,
        replication_interval_seconds=REPLICATION_INTERVAL_SECONDS,
    )
    national, province = (
        Node(s, root / s.key, load_identity(configs[s.key].key_file).node_id) for s in node_specs
    )
    data = random_file(root / "content" / "scan.tif", SIZE, seed=6)
    [pid] = ingest_csv(
        province.home,
        root / "content" / "items.csv",
        [["甘肃方志 metrics", "甘肃省图书馆", "", "open", "scan.tif"]],
    )
    with Processes([national.home, province.home]) as processes:
        for node in (national, province):
            poll(node.up, bool, STARTUP_SECONDS, f"{node.key} up", alive=processes.check_alive)
        poll(
            lambda: copies(national.db),
            lambda held: pid in held,
            REPLICATED_SECONDS,
            "the national library's copy",
            interval=0.5,
            alive=processes.check_alive,
        )
        yield national, province, data


@pytest.mark.slow
def test_metrics_of_two_daemons_after_a_replication(
    pair: tuple[Node, Node, bytes],
) -> None:
    national, province, data = pair
    chunks = -(-len(data) // CHUNK_SIZE)

    # Auth on a real daemon: none, wrong, right.
    assert scrape(national)[0] == 401
    assert scrape(national, "not-the-token")[0] == 401
    assert scrape(national, province.token)[0] == 401  # another node's token

    # The province plans again within seconds of the copy; then its own copy is counted.
    ours = poll(
        lambda: metrics(province),
        lambda f: value(f, "siku_storage_copies", **{"class": "own"}) == 1,
        REPLICATED_SECONDS,
        "the province's own copy in its metrics",
    )
    theirs = metrics(national)
    for families in (ours, theirs):
        check_conventions(families)
        assert value(families, "siku_peers", state="connected") == 1
        assert value(families, "siku_peers", state="failed") == 0
        assert value(families, "siku_catalogue_records", state="live") == 1
        assert value(families, "siku_records", kind="catalogue") == 1
        assert value(families, "siku_records", kind="certificate") >= 2
        assert value(families, "siku_sync_reconciliations_total") >= 1
        assert value(families, "siku_sync_received_bytes_total") > 0
        assert value(families, "siku_sync_sent_bytes_total") > 0
        assert value(families, "siku_sync_rejected_records_total") == 0
        assert value(families, "siku_transfer_corrupt_chunks_total") == 0
        assert value(families, "siku_transfer_tasks_total", result="failed") == 0
        assert 0 <= value(families, "siku_sync_last_reconciliation_age_seconds") < 60
        for priority in ("repair", "preservation", "subscription", "cache"):
            value(families, "siku_transfer_queued_tasks", priority=priority)  # always present
        for rule in ("copies", "higher-in-province", "outside-province"):
            value(families, "siku_replication_below_policy_resources", rule=rule)
        assert value(families, "siku_replication_resources") == 1

    # The national library fetched the content: every byte and chunk once, verified.
    assert value(theirs, "siku_transfer_received_bytes_total", route="replication") == len(data)
    assert value(theirs, "siku_transfer_received_chunks_total", route="replication") == chunks
    assert value(theirs, "siku_transfer_received_bytes_total", route="stream") == 0
    assert value(theirs, "siku_transfer_tasks_total", result="completed") == 1
    assert value(theirs, "siku_replication_committed_copies_total") == 1
    assert value(theirs, "siku_storage_copies", **{"class": "preservation"}) == 1
    assert value(theirs, "siku_storage_class_bytes", **{"class": "preservation"}) == len(data)
    assert value(theirs, "siku_storage_copies", **{"class": "own"}) == 0
    assert value(theirs, "siku_storage_used_bytes") == len(data)
    assert value(theirs, "siku_transfer_active_tasks") == 0
    assert value(theirs, "siku_sync_received_records_total") >= 1  # the catalogue entry at least
    # ... which the province served, and holds as its own collection.
    assert value(ours, "siku_transfer_sent_bytes_total") == len(data)
    assert value(ours, "siku_transfer_sent_chunks_total") == chunks
    assert value(ours, "siku_transfer_received_bytes_total", route="replication") == 0
    assert value(ours, "siku_storage_class_bytes", **{"class": "own"}) == len(data)
    assert value(ours, "siku_storage_used_bytes") == len(data)

    # Counters never go down between scrapes.
    later = metrics(province)
    for family in ours.values():
        if family.type == "counter":
            for s in family.samples:
                assert value(later, s.name, **s.labels) >= s.value, s
