"""The admin console in real headless Chromium against a running three-node network: login is
required (no cookie → the login page, a wrong token refused, the API still 401 without either),
each view shows real values from the nodes, search finds an ingested title, the resource page
names the libraries holding its copies, both languages are complete, and logout ends the
session. Every view is saved as a screenshot under test-artifacts/console/."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.http.console import CONSOLE_CSP, SESSION_COOKIE
from tests.browser.conftest import (
    CONSOLE_NODE,
    REPLICATE_SECONDS,
    SLOW_NODE,
    TITLES,
    Network,
    screenshot_path,
    siku_status,
)
from tests.integration.replication_helpers import ingest_csv, random_file
from tests.integration.sync_helpers import poll

pytestmark = pytest.mark.slow

WAIT_MS = 20_000


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        with e:
            return int(e.code)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        locale="en-US", viewport={"width": 1280, "height": 860}, device_scale_factor=1
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text else None,
    )
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def _login(page: Any, node: Any) -> None:
    page.goto(node.admin + "/")
    page.wait_for_url(re.compile(r"/console/login$"))
    page.fill("#token", node.token)
    page.click("#submit")
    page.wait_for_url(re.compile(r"/console/$"))
    page.wait_for_selector("body[data-loaded=yes]")


def _view(page: Any, name: str) -> None:
    page.click(f"#nav a[data-view={name}]")
    page.wait_for_selector(f"#view-{name}:not([hidden])")


def test_login_is_required(net: Network, page: Any) -> None:
    node = net[CONSOLE_NODE]
    assert _status(node.admin + "/admin/api/v1/status") == 401
    assert _status(node.admin + "/admin/api/v1/search?q=x") == 401
    assert _status(node.admin + "/admin/api/v1/events") == 401
    assert _status(node.admin + "/admin/api/v1/console/network") == 401
    # Bearer still opens the JSON API.
    assert (
        _status(node.admin + "/admin/api/v1/status", {"Authorization": f"Bearer {node.token}"})
        == 200
    )

    response = page.goto(node.admin + "/console/")
    page.wait_for_url(re.compile(r"/console/login$"))
    assert response.headers["content-security-policy"] == CONSOLE_CSP
    assert page.is_visible("#token")
    assert page.is_hidden("#failed")
    page.screenshot(path=screenshot_path("login"), full_page=True)

    page.fill("#token", "not-the-token")
    page.click("#submit")
    page.wait_for_url(re.compile(r"/console/login\?failed=1$"))
    page.wait_for_selector("#failed:not([hidden])")
    assert "not this node's admin token" in page.inner_text("#failed")
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    page.screenshot(path=screenshot_path("login-refused"), full_page=True)
    # After too many wrong tokens the daemon sends the login back with the wait
    # (tests/integration/test_http_admin.py): the page says how long, in the page's language.
    page.goto(node.admin + "/console/login?wait=42")
    page.wait_for_selector("#locked:not([hidden])")
    assert "wait 42 s" in page.inner_text("#locked")
    assert page.is_hidden("#failed")
    page.screenshot(path=screenshot_path("login-wait"), full_page=True)
    # Still no way in: the console page sends the browser back to the login.
    page.goto(node.admin + "/console/")
    page.wait_for_url(re.compile(r"/console/login$"))


def test_views_show_the_network(net: Network, page: Any) -> None:
    node = net[CONSOLE_NODE]
    _login(page, node)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != node.token and cookie["expires"] > 0

    # Overview: who this node is, its parent and child, real counts, alerts.
    page.wait_for_selector("#node-name")
    assert page.inner_text("#node-name") == node.spec.name
    overview = page.inner_text("#view-overview")
    assert "甘肃省图书馆 Gansu" in overview  # parent (issuer of the city's certificate)
    assert "municipal" in overview and node.node_id in overview
    records = page.inner_text("#view-overview .stat:first-child .value")
    assert int(records.replace(",", "")) >= len(TITLES)
    page.screenshot(path=screenshot_path("overview"), full_page=True)

    # Peers: the national library and the province, connected, with round-trip times.
    _view(page, "peers")
    national = net["national"]
    row = f"#view-peers tr[data-node-id='{national.node_id}']"
    page.wait_for_selector(f"{row} .badge.connected")
    assert "国家图书馆 National Library" in page.inner_text(row)
    assert " ms" in page.inner_text(row)
    page.screenshot(path=screenshot_path("peers"), full_page=True)

    # Sync: the set's size and a reconciliation per peer.
    _view(page, "sync")
    page.wait_for_function(
        "document.querySelectorAll('#view-sync tbody tr').length >= 2", timeout=WAIT_MS
    )
    sync = page.inner_text("#view-sync")
    total = net[CONSOLE_NODE].admin_json("/admin/api/v1/sync")["total"]
    assert total > 0 and "Gansu" in sync
    page.screenshot(path=screenshot_path("sync"), full_page=True)

    # Transfers, storage, replication health.
    _view(page, "transfers")
    page.wait_for_selector("#view-transfers h3")
    transfers = page.text_content("#view-transfers")
    assert "Queue by priority" in transfers and "Bandwidth window" in transfers
    page.screenshot(path=screenshot_path("transfers"), full_page=True)

    _view(page, "storage")
    own = page.inner_text("#view-storage tr:has([data-class=own])")
    assert "own collections" in own and re.search(r"\b[1-9]\d*\s", own), own
    # A city with 64 GiB of room defers nothing (this once read the length of [count, bytes]).
    assert "Copies deferred for lack of room\n0 (0 B)" in page.inner_text("#view-storage")
    page.screenshot(path=screenshot_path("storage"), full_page=True)

    _view(page, "replication")
    page.wait_for_selector("#view-replication .stats")
    assert "Resources with content" in page.inner_text("#view-replication")
    page.screenshot(path=screenshot_path("replication"), full_page=True)

    # Catalogue: search finds an ingested title; its page names the holders.
    _view(page, "catalogue")
    page.fill("#q", "嘉峪关")
    page.click("#search-form button")
    page.wait_for_selector("#search-results a.result-title")
    assert TITLES[2] in page.inner_text("#search-results")
    page.fill("#q", "敦煌")
    page.click("#search-form button")
    link = page.locator("#search-results a.result-title", has_text=TITLES[0])
    link.wait_for()
    page.screenshot(path=screenshot_path("catalogue"), full_page=True)
    link.click()
    page.wait_for_selector("#resource-title")
    assert page.inner_text("#resource-title") == TITLES[0]
    page.wait_for_function(
        "document.querySelectorAll('#holders tbody tr').length >= 2", timeout=WAIT_MS
    )
    holders = page.inner_text("#holders")
    assert node.spec.name in holders and "this node" in holders
    others = [n.spec.name for k, n in net.nodes.items() if k != CONSOLE_NODE]
    assert any(name in holders for name in others), holders
    assert net.pids[TITLES[0]] in page.inner_text("#view-resource")
    assert "open" in page.inner_text("#view-resource")
    page.screenshot(path=screenshot_path("resource"), full_page=True)


def test_chinese_and_english_are_complete(net: Network, page: Any) -> None:
    node = net[CONSOLE_NODE]
    _login(page, node)
    keys = page.evaluate("[Object.keys(SIKU_I18N.en).sort(), Object.keys(SIKU_I18N.zh).sort()]")
    assert keys[0] == keys[1], set(keys[0]) ^ set(keys[1])
    page.click("#lang")
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert page.inner_text("#nav a[data-view=overview]") == "概览"
    page.wait_for_selector("#view-overview .stat")
    assert "目录记录" in page.inner_text("#view-overview")
    page.screenshot(path=screenshot_path("overview-zh"), full_page=True)
    _view(page, "peers")
    page.wait_for_selector("#view-peers .badge.connected")
    assert "已连接" in page.inner_text("#view-peers")
    page.screenshot(path=screenshot_path("peers-zh"), full_page=True)
    # The choice survives a reload (and the next login).
    page.reload()
    page.wait_for_selector("body[data-loaded=yes]")
    assert page.inner_text("#nav a[data-view=sync]") == "同步"


def test_logout_ends_the_session(net: Network, page: Any) -> None:
    node = net[CONSOLE_NODE]
    _login(page, node)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    api = node.admin + "/admin/api/v1/status"
    with_cookie = {"Cookie": f"{SESSION_COOKIE}={cookie['value']}"}
    assert _status(api, with_cookie) == 200
    page.click("#logout")
    page.wait_for_url(re.compile(r"/console/login$"))
    assert _status(api, with_cookie) == 401
    # A forged or stale cookie is no session.
    assert _status(api, {"Cookie": f"{SESSION_COOKIE}={node.token}"}) == 401
    body = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(api, headers={"Authorization": f"Bearer {node.token}"}),
            timeout=10,
        ).read()
    )
    assert body["node"]["name"] == node.spec.name


def test_events_and_network_at_the_national_library(net: Network, page: Any) -> None:
    national = net["national"]
    others = [n for k, n in net.nodes.items() if k != "national"]
    # A copy made at the national library (three nodes, three copies by policy) and every
    # other node's status record arrived there.
    poll(
        lambda: national.admin_json("/admin/api/v1/events?kind=copy-complete")["events"],
        bool,
        REPLICATE_SECONDS,
        "a copy-complete event at the national library",
        interval=0.5,
        alive=net.alive,
    )
    poll(
        lambda: national.admin_json("/admin/api/v1/console/network")["nodes"],
        lambda ns: len(ns) == len(others) and all(n["status"] for n in ns),
        REPLICATE_SECONDS,
        "every other node's status at the national library",
        interval=0.5,
        alive=net.alive,
    )
    _login(page, national)

    _view(page, "events")
    page.wait_for_selector("#view-events tr[data-kind=copy-complete]")
    events = page.inner_text("#view-events")
    assert "copy complete" in events and "node started" in events and "peer connected" in events
    copy = page.inner_text("#view-events tr[data-kind=copy-complete]")
    assert "ark:" in copy and "bytes" in copy, copy
    page.screenshot(path=screenshot_path("events"), full_page=True)
    # Filters: by kind, then by level (warnings and worse hide the copies).
    page.select_option("#events-kind", "peer-connected")
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#view-events tbody tr')];"
        " return rows.length > 0 && rows.every(r => r.dataset.kind === 'peer-connected'); }"
    )
    page.select_option("#events-kind", index=0)
    page.select_option("#events-level", "warning")
    page.wait_for_function(
        "() => ![...document.querySelectorAll('#view-events tbody tr')]"
        ".some(r => r.dataset.level === 'info')"
    )
    page.select_option("#events-level", index=0)
    page.wait_for_selector("#view-events tr[data-kind=copy-complete]")

    _view(page, "network")
    for node in others:
        row = f"#view-network tr[data-node-id='{node.node_id}']"
        page.wait_for_selector(f"{row}[data-online=yes]")
        text = page.inner_text(row)
        assert node.spec.name in text and node.spec.region in text, text
        assert "online" in text and re.search(r"\d (KiB|MiB|GiB|TiB)", text), text
    city = national.admin_json("/admin/api/v1/console/network")["nodes"]
    (jq,) = [n for n in city if n["node_id"] == net[CONSOLE_NODE].node_id]
    assert jq["parent"] == net["gansu"].spec.name and jq["status"]["held_resources"] >= len(TITLES)
    assert jq["status"]["quota_bytes"] > 0 and jq["status"]["free_bytes"] > 0
    page.screenshot(path=screenshot_path("network"), full_page=True)

    page.click("#lang")
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    page.wait_for_selector("#view-network .badge.connected")
    assert "在线" in page.inner_text("#view-network")
    page.screenshot(path=screenshot_path("network-zh"), full_page=True)
    _view(page, "events")
    page.wait_for_selector("#view-events tr[data-kind=copy-complete]")
    assert "副本完成" in page.inner_text("#view-events")
    page.screenshot(path=screenshot_path("events-zh"), full_page=True)
    page.click("#lang")  # back to English for the next test's login


def _active_at(node: Any, pid: str) -> dict[str, Any] | None:
    found = node.admin_json("/admin/api/v1/replication")["transfers"]["active"]
    return next((a for a in found if a["pid"] == pid), None)


def _copying_at_the_province(
    net: Network, tmp_path: Path, title: str, mib: int, seed: int
) -> tuple[str, dict[str, Any]]:
    """Ingest a `mib` MiB resource at the city; wait until the province (1 Mbit/s) is part-way
    through copying it: its pid and the active transfer."""
    name = f"r{seed}"
    random_file(tmp_path / name / "reel.tif", mib << 20, seed=seed)
    (pid,) = ingest_csv(
        net[CONSOLE_NODE].home,
        tmp_path / f"{name}.csv",
        [[title, "酒泉市图书馆", "", "open", f"{name}/reel.tif"]],
    )
    job = poll(
        lambda: _active_at(net[SLOW_NODE], pid),
        lambda a: a is not None and 0 < a["bytes_done"] < a["bytes_total"],
        REPLICATE_SECONDS,
        f"the province part-way through copying the {mib} MiB resource",
        interval=0.5,
        alive=net.alive,
    )
    assert job is not None and job["bytes_total"] == mib << 20
    return pid, job


def test_an_active_transfer_shows_its_progress_and_rate(
    net: Network, page: Any, tmp_path: Path
) -> None:
    """A 6 MiB resource ingested at the city is copied to the province at its 1 Mbit/s limit
    (about 50 s): the province's Transfers view shows it mid-way, with progress and a rate."""
    province = net[SLOW_NODE]
    pid, _ = _copying_at_the_province(net, tmp_path, "敦煌遗书缩微胶卷 Dunhuang microfilm", 6, 7)

    _login(page, province)
    _view(page, "transfers")
    row = f"#view-transfers tr[data-pid='{pid}']"
    page.wait_for_selector(row)
    text = page.inner_text(row)
    assert re.search(r"\d\.\d\d MiB / 6\.00 MiB", text), text
    rate = re.search(r"([\d.]+) (B|KiB|MiB)/s", text)
    assert rate is not None and float(rate.group(1)) > 0, text
    window = page.inner_text("#view-transfers")
    assert "122.1 KiB/s" in window, window  # the 1 Mbit/s limit in force, as configured
    page.screenshot(path=screenshot_path("transfers-active"), full_page=True)
    # siku status says the same in a terminal.
    out = siku_status(province)
    assert re.search(rf"{re.escape(pid)} \(\w+\) \d+ % of 6\.0 MiB at ", out), out


def test_a_copy_whose_holders_all_go_away_is_set_aside_and_said_so(
    net: Network, page: Any, tmp_path: Path
) -> None:
    """The province is part-way through copying a resource when both other holders (the city
    that made it, the national library) stop: with no one to fetch from, the planner sets the
    copy aside (not a failure: it resumes when a holder is back). The province's events and
    `siku status` say so, and its Transfers view no longer shows it running. Both come back
    after."""
    province = net[SLOW_NODE]
    others = [net[CONSOLE_NODE], net["national"]]
    pid, _ = _copying_at_the_province(net, tmp_path, "莫高窟壁画胶片 Mogao murals film", 8, 8)
    try:
        for node in others:
            net.processes.stop(node.home)
        events = poll(
            lambda: province.admin_json("/admin/api/v1/events?kind=transfer-cancelled")["events"],
            lambda found: any(e["pid"] == pid for e in found),
            REPLICATE_SECONDS,
            "a transfer-cancelled event at the province",
            interval=0.5,
        )
        (event,) = [e for e in events if e["pid"] == pid]
        assert event["level"] == "info", event
        assert re.match(r"set aside at [1-9]\d* of 8388608 bytes: ", event["message"]), event
        assert _active_at(province, pid) is None

        _login(page, province)
        _view(page, "events")
        row = page.inner_text("#view-events tr[data-kind=transfer-cancelled]")
        assert "transfer set aside" in row and pid in row, row
        page.screenshot(path=screenshot_path("events-set-aside"), full_page=True)
        _view(page, "transfers")
        assert page.locator(f"#view-transfers tr[data-pid='{pid}']").count() == 0

        out = siku_status(province)
        # Both peers gone: an alert, and peer-lost among the newest warnings.
        assert "WARNING: 2 peers cannot be reached" in out, out
        assert "peer-lost" in out, out
    finally:
        for node in others:
            net.processes.start(node.home)
        for node in others:
            poll(node.up, bool, 30, f"{node.key} up again", alive=net.alive)
