"""`siku status` against the console's running three-node network: the terminal shows the
console's essentials (parent and children, alerts, copies, and the nodes below from their
signed status records)."""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.conftest import CONSOLE_NODE, REPLICATE_SECONDS, Network, siku_status
from tests.integration.sync_helpers import poll

pytestmark = pytest.mark.slow


def test_status_at_the_national_library_lists_the_nodes_below(net: Network) -> None:
    national = net["national"]
    others = [n for k, n in net.nodes.items() if k != "national"]
    poll(
        lambda: national.admin_json("/admin/api/v1/console/network")["nodes"],
        lambda ns: len(ns) == len(others) and all(n["status"] and n["online"] for n in ns),
        REPLICATE_SECONDS,
        "every other node's status at the national library",
        interval=0.5,
        alive=net.alive,
    )
    text = siku_status(national, "--network")
    lines = text.splitlines()
    assert lines[0].startswith(national.spec.name), text
    (below,) = [ln for ln in lines if ln.startswith("  below ")]
    assert f"{len(others)} nodes: {len(others)} online, 0 offline, 0 full" in below, below
    for node in others:
        (row,) = [ln for ln in lines if node.spec.name in ln and "held," in ln]
        assert f"({node.spec.tier}, {node.spec.region}): online;" in row, row
        assert "free of" in row and "oldest verification " in row, row
        if node.key == CONSOLE_NODE:  # it holds its own resources
            assert re.search(r"; [1-9]\d* held, ", row), row
    assert any(ln.startswith("  health ") for ln in lines), text
    # Without --network: the same summary (which nodes need attention is tested in
    # tests/node/test_cli_status.py; here all may be healthy or, for a moment, behind).
    quiet = siku_status(national).splitlines()
    assert [ln for ln in quiet if ln.startswith("  below ")] == [below]

    shown = json.loads(siku_status(national, "--json"))
    assert {n["node_id"] for n in shown["below"]} == {n.node_id for n in others}
    assert isinstance(shown["alerts"], list) and "recent_events" in shown


def test_status_at_the_city_names_its_parent(net: Network) -> None:
    city = net[CONSOLE_NODE]
    parent = net[str(city.spec.parent)]
    poll(
        lambda: siku_status(city),
        lambda out: f"  parent    {parent.spec.name} (connected)" in out,
        REPLICATE_SECONDS,
        "the city's status naming its connected parent",
        interval=1.0,
        alive=net.alive,
    )
    shown = json.loads(siku_status(city, "--json"))
    assert shown["parent_node"]["node_id"] == parent.node_id
    assert shown["below"] == []  # a city has no library below it in this network
