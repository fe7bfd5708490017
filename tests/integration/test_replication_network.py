"""Content replication (issue 5) between six real daemons of all four tiers on 127.0.0.1.

Resources are ingested (with `siku ingest`, before the daemons start) at a county (open,
restricted and on-site content), at a province and at the national library (collections that
lower nodes subscribe to). One node has a tight quota and subscribes to a national collection
holding a resource larger than that quota. The tests, in file order, on one network:

1. convergence: from the stores (read-only), every resource is held intact by enough nodes of
   the right tiers and provinces, dark (restricted/on-site) copies only where rights allow,
   no quota exceeded, the oversized subscription deferred; the public content API refuses a
   dark copy; every chunk file hashes to its name;
2. on demand: a county reader gets a file it does not hold, byte-identical, and the county then
   keeps a cache copy;
3. kill -9 of a node receiving a slow transfer (bandwidth-limited): no partial chunk under its
   final name, and after a restart it fetches only what it lacked;
4. a holder killed mid-transfer: the transfer completes from the other holders;
5. a peer serving corrupted chunks: caught, counted against it, fetched from an honest holder.

A real daemon never serves a chunk that fails its hash (it re-hashes on read and quarantines),
so the misbehaving peer of test 5 is the Jiuquan node's daemon run *inside this process*
(`node.daemon.Daemon`, the same code `siku run` starts) with `ContentPeers._read` wrapped to
flip one byte of the first chunk of every answer while a flag is set. Every other node is a
separate `siku run` process.

Which nodes a resource is placed on depends on the nodes' keys (rendezvous hashing), made anew
for every run. So each slow-transfer resource is ingested as a few candidate records sharing one
file (deduplicated: no extra bytes); the test computes placement (sync.placement.place, what
every node computes) and keeps a candidate that the receiving node is not placed on (it fetches
it only once it subscribes), withdrawing the rest before any daemon starts.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from node.demo import Processes, build_network
from node.keys import load_identity
from node.peer.content import ContentPeers
from protocol.identity import node_id as node_id_of
from sync.placement import Member
from tests.integration.replication_helpers import (
    InProcessDaemon,
    StoredResource,
    bad_chunk_files,
    chunk_path,
    copies,
    delete_records,
    download,
    edit_toml,
    holders_known,
    holds_intact,
    ingest_csv,
    log_tail,
    members,
    patched,
    random_file,
    replication,
    resources,
    sparse_zero_file,
    target_of,
    try_replication,
)
from tests.integration.sync_helpers import Node, poll, specs

pytestmark = pytest.mark.slow

HELLO_INTERVAL_SECONDS = 1
SYNC_INTERVAL_SECONDS = 2
REPLICATION_INTERVAL_SECONDS = 5
STARTUP_SECONDS = 30
CONVERGE_SECONDS = 120
TRANSFER_SECONDS = 90

MIB = 1 << 20
GIB = 1 << 30
RECEIVER = "guazhou"  # the county that fetches slowly: killed, and fed corrupt chunks
CORRUPTER = "jiuquan"  # its parent, run in-process: serves corrupt chunks while told to
RECEIVER_MBIT = 16  # 2 MB/s: a 12 MiB copy takes ~6 s
TIGHT_QUOTA_GIB = 1
OVERSIZED = 1100 * MIB  # larger than the tight quota, yet one distinct chunk (zeros)
CANDIDATES = 8
NATIONAL_COLLECTION = "national-lectures"


@dataclass
class Content:
    pid: str
    origin: str  # node key
    access: str
    files: dict[str, bytes]  # path in the resource → bytes (empty for the oversized one)
    collection: str = ""


@dataclass
class Network:
    root: Path
    nodes: dict[str, Node]
    processes: Processes
    corrupter: InProcessDaemon
    corrupting: threading.Event
    content: dict[str, Content]  # label → resource
    tight: str  # key of the node with the tight quota (subscribes to NATIONAL_COLLECTION)
    full: str | None  # a node with a tight quota that the oversized resource is placed on
    keys: dict[str, bytes] = field(default_factory=dict)
    member_list: list[Member] = field(default_factory=list)

    def __getitem__(self, key: str) -> Node:
        return self.nodes[key]

    def alive(self) -> None:
        self.processes.check_alive()
        self.corrupter.check_alive()

    def by_id(self, node_id: str) -> str:
        return next(k for k, n in self.nodes.items() if n.node_id == node_id)

    def logs(self, *keys: str) -> str:
        return "\n".join(log_tail(self.nodes[k]) for k in (keys or tuple(self.nodes)))

    def restart(self, key: str, sig: int = signal.SIGTERM) -> None:
        node = self.nodes[key]
        self.processes.stop(node.home, sig)
        self.processes.start(node.home)
        poll(node.up, bool, STARTUP_SECONDS, f"{key} up again", alive=self.alive)


def _corrupting_read(
    original: Any, flag: threading.Event
) -> Any:  # the wrapper installed on ContentPeers._read
    @functools.wraps(original)
    def read(self: ContentPeers, digests: list[bytes], max_bytes: int) -> list[bytes]:
        out: list[bytes] = original(self, digests, max_bytes)
        if flag.is_set() and out:
            bad = bytearray(out[0])
            bad[len(bad) // 2] ^= 0x01  # one bit of the first chunk of every answer
            out[0] = bytes(bad)
        return out

    return read


def _choose(
    label: str, pids: list[str], origin: Node, size: int, member_list: list[Member], avoid: str
) -> tuple[str, list[str]]:
    """The first candidate pid that placement does not put on node id `avoid`; the others."""
    for pid in pids:
        if avoid not in target_of(pid, origin.node_id, size, "open", member_list):
            return pid, [p for p in pids if p != pid]
    raise AssertionError(f"every {label} candidate is placed on {avoid}")  # (0.4^8 odds)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("replication-network")
    node_specs = specs()
    configs = build_network(
        root,
        node_specs,
        hello_interval_seconds=HELLO_INTERVAL_SECONDS,
        sync_interval_seconds=SYNC_INTERVAL_SECONDS,
        replication_interval_seconds=REPLICATION_INTERVAL_SECONDS,
    )
    identities = {s.key: load_identity(configs[s.key].key_file) for s in node_specs}
    nodes = {s.key: Node(s, root / s.key, identities[s.key].node_id) for s in node_specs}
    keys = {k: i.public_key for k, i in identities.items()}
    member_list = members(nodes, keys)
    src = root / "content"
    content: dict[str, Content] = {}

    # A county's own collection: open (one with two files), restricted and on-site.
    county_rows = []
    county_specs = [
        ("open-0", "open", {"scan.tif": 300_000, "notes.txt": 70_000}),
        ("open-1", "open", {"scan.tif": 400_000}),
        ("open-2", "open", {"scan.tif": 250_000}),
        ("restricted-0", "restricted", {"scan.tif": 300_000}),
        ("restricted-1", "restricted", {"scan.tif": 200_000}),
        ("onsite-0", "onsite", {"scan.tif": 350_000}),
    ]
    seed = 0
    for label, access, sizes in county_specs:
        files = {}
        for name, size in sizes.items():
            seed += 1
            files[name] = random_file(src / "dunhuang" / label / name, size, seed)
        county_rows.append(
            [f"敦煌文书 {label}", "敦煌市图书馆", "", access,
             "||".join(f"{label}/{name}" for name in sizes)]
        )  # fmt: skip
        content[label] = Content("", "dunhuang", access, files)
    for label, pid in zip(
        [c[0] for c in county_specs],
        ingest_csv(nodes["dunhuang"].home, src / "dunhuang" / "items.csv", county_rows),
        strict=True,
    ):
        content[label].pid = pid

    # A province's open collection (replicated across the provinces).
    province_rows = []
    for i in range(2):
        seed += 1
        data = random_file(src / "guangdong" / f"g{i}" / "map.png", 280_000 + i * 50_000, seed)
        content[f"province-{i}"] = Content("", "guangdong", "open", {"map.png": data})
        province_rows.append([f"广东舆图 {i}", "广东省立中山图书馆", "", "open", f"g{i}/map.png"])
    for i, pid in enumerate(
        ingest_csv(nodes["guangdong"].home, src / "guangdong" / "items.csv", province_rows)
    ):
        content[f"province-{i}"].pid = pid

    # National collections: a small lecture and one larger than the tight quota (subscribed to
    # by the tight node), and the candidates of the three slow-transfer resources.
    nat = src / "national"
    seed += 1
    lecture = random_file(nat / "lecture" / "talk.mp4", 500_000, seed)
    sparse_zero_file(nat / "oversized" / "master.tif", OVERSIZED)
    slow = {"slow-12m": 12 * MIB, "slow-20m": 20 * MIB, "corrupt-6m": 6 * MIB}
    slow_data = {}
    for label, size in slow.items():
        seed += 1
        slow_data[label] = random_file(nat / label / "video.mp4", size, seed)
    collections = {"slow-12m": "lectures-b", "slow-20m": "lectures-c", "corrupt-6m": "lectures-d"}
    national_rows = [
        ["国家图书馆公开课 lecture", "国家图书馆", NATIONAL_COLLECTION, "open", "lecture/talk.mp4"],
        ["国家图书馆 oversized", "国家图书馆", NATIONAL_COLLECTION, "open", "oversized/master.tif"],
    ]
    for label in slow:
        for i in range(CANDIDATES):
            national_rows.append(
                [f"{label} candidate {i}", "国家图书馆", collections[label], "open",
                 f"{label}/video.mp4"]
            )  # fmt: skip
    national = nodes["national"]
    pids = ingest_csv(national.home, nat / "items.csv", national_rows)
    content["lecture"] = Content(
        pids[0], "national", "open", {"talk.mp4": lecture}, NATIONAL_COLLECTION
    )
    content["oversized"] = Content(pids[1], "national", "open", {}, NATIONAL_COLLECTION)
    receiver_id = nodes[RECEIVER].node_id
    withdrawn: list[str] = []
    for n, label in enumerate(slow):
        pool = pids[2 + n * CANDIDATES : 2 + (n + 1) * CANDIDATES]
        pid, rest = _choose(label, pool, national, slow[label], member_list, receiver_id)
        withdrawn += rest
        content[label] = Content(
            pid, "national", "open", {"video.mp4": slow_data[label]}, collections[label]
        )
    delete_records(national.home, withdrawn)

    # The tight-quota subscriber: a node placement does not put the oversized resource on (the
    # daemon does not tell other nodes that it is full, so a share it defers would stay unmet:
    # see the report), neither the receiver nor the in-process node.
    placed = target_of(content["oversized"].pid, national.node_id, OVERSIZED, "open", member_list)
    tight = next(k for k in ("dunhuang", "guangdong", "gansu") if nodes[k].node_id not in placed)
    # And one that it is placed on, also with a tight quota: the subject of the xfail test
    # (None in the 1 run in 10 where only the receiver and the in-process node are placed).
    full = next(
        (k for k, n in nodes.items()
         if n.node_id in placed and k not in ("national", RECEIVER, CORRUPTER)),
        None,
    )  # fmt: skip
    for key in (tight, full):
        if key is not None:
            edit_toml(nodes[key].home, "replication", "cache_mib", "256")
            edit_toml(nodes[key].home, "storage", "quota_gib", str(TIGHT_QUOTA_GIB))
    edit_toml(nodes[tight].home, "replication", "subscribe", f'["{NATIONAL_COLLECTION}"]')
    edit_toml(nodes[RECEIVER].home, "replication", "bandwidth_mbit", str(RECEIVER_MBIT))
    edit_toml(nodes[CORRUPTER].home, "replication", "subscribe", '["lectures-d"]')

    corrupting = threading.Event()
    corrupter = InProcessDaemon(nodes[CORRUPTER].home)
    subprocess_homes = [n.home for k, n in nodes.items() if k != CORRUPTER]
    with patched(ContentPeers, "_read", _corrupting_read(ContentPeers._read, corrupting)):
        corrupter.start()
        try:
            with Processes(subprocess_homes) as processes:
                network = Network(
                    root, nodes, processes, corrupter, corrupting, content, tight, full,
                    keys, member_list,
                )  # fmt: skip
                for node in nodes.values():
                    poll(node.up, bool, STARTUP_SECONDS, f"{node.key} up", alive=network.alive)
                yield network
        finally:
            corrupter.stop()


# --- auditing the stores ----------------------------------------------------------------------


def _province(node: Node) -> str:
    return node.spec.region[:2]


def _rank(node: Node) -> int:
    return ("national", "provincial", "municipal", "county").index(node.spec.tier)


def _ancestors(net: Network, key: str) -> set[str]:
    out = set()
    parent = net[key].spec.parent
    while parent is not None:
        out.add(parent)
        parent = net[parent].spec.parent
    return out


def _holders(
    net: Network, stores: dict[str, dict[str, StoredResource]], pid: str
) -> dict[str, bool]:
    """node key → whether it holds `pid` intact, for every node that says it holds it."""
    return {
        key: holds_intact(net[key].home, stores[key][pid])
        for key in net.nodes
        if pid in stores[key] and stores[key][pid].held
    }


def _audit(net: Network) -> list[str]:
    """Everything that is not (yet) as issue 5 requires; empty once converged."""
    problems: list[str] = []
    stores = {key: resources(node.db) for key, node in net.nodes.items()}
    reference = stores["national"]
    for label, c in net.content.items():
        if c.pid not in reference:
            problems.append(f"{label}: not in the national catalogue yet")
            continue
        for key, store in stores.items():
            if c.pid not in store:
                problems.append(f"{label}: record not at {key} yet")
            elif store[c.pid].record != reference[c.pid].record:
                problems.append(f"{label}: {key} has another version of the record")
        held = _holders(net, stores, c.pid)
        broken = sorted(k for k, ok in held.items() if not ok)
        if broken:
            problems.append(f"{label}: held=1 but content not intact at {broken}")
        holders = {k for k, ok in held.items() if ok}
        origin = net[c.origin]
        if len(holders) < 3:
            problems.append(f"{label}: {len(holders)} copies {sorted(holders)}, policy: 3")
        above = [k for k, n in net.nodes.items()
                 if _province(n) == _province(origin) and _rank(n) < _rank(origin)]  # fmt: skip
        dark = c.access in ("restricted", "onsite")
        if dark:
            allowed = {c.origin, "national"} | _ancestors(net, c.origin)
            above = [k for k in above if k in allowed]
            wrong = holders - allowed
            if wrong:
                problems.append(f"RIGHTS: {c.access} {label} held at {sorted(wrong)}")
        if above and not holders & set(above):
            problems.append(f"{label}: no copy at a higher tier of its province ({above})")
        if not any(_province(net[k]) != _province(origin) for k in holders):
            problems.append(f"{label}: no copy outside province {_province(origin)}")
    # The subscriptions, and the quota.
    if not _holders(net, stores, net.content["lecture"].pid).get(net.tight):
        problems.append(f"subscription: {net.tight} does not hold the national lecture")
    oversized = _holders(net, stores, net.content["oversized"].pid)
    for tight in {net.tight, net.full} - {None}:
        if oversized.get(str(tight)):
            problems.append(f"QUOTA: {tight} holds the oversized resource")
    if not _holders(net, stores, net.content["corrupt-6m"].pid).get(CORRUPTER):
        problems.append(f"subscription: {CORRUPTER} does not hold lectures-d")
    for key, store in stores.items():
        used = sum(r.size for r in store.values() if r.held)
        quota = TIGHT_QUOTA_GIB * GIB if key in (net.tight, net.full) else 64 * GIB
        if used > quota:
            problems.append(f"QUOTA: {key} holds {used} bytes, quota {quota}")
    # Each node's own view agrees: nothing below policy (its holdings pages are all in).
    expected: dict[str, int] = {}
    for key, node in net.nodes.items():
        state = try_replication(node)
        if state is None or state["plan"] is None:
            problems.append(f"{key}: no plan yet")
            continue
        below = {r: n for r, n in state["plan"]["health"]["below_policy"].items() if n}
        if below != expected:
            problems.append(f"{key} sees resources below policy: {below}")
    return problems


def _wait_converged(net: Network, what: str, timeout: float = CONVERGE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    while time.monotonic() < deadline:
        net.alive()
        problems = _audit(net)
        if not problems:
            return
        time.sleep(1.0)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}:\n  "
        + "\n  ".join(problems)
        + "\n"
        + net.logs()
    )


def _active(node: Node, pid: str) -> dict[str, Any] | None:
    state = try_replication(node)
    if state is None:
        return None
    return next((a for a in state["transfers"]["active"] if a["pid"] == pid), None)


def _midway(node: Node, pid: str) -> Any:
    """Poll probe: the active transfer of `pid` at `node` once it is part way through."""
    return _active(node, pid)


def _is_midway(job: dict[str, Any] | None) -> bool:
    return job is not None and 0 < job["bytes_done"] < job["bytes_total"]


def _held_intact(net: Network, key: str, label: str) -> bool:
    c = net.content[label]
    store = resources(net[key].db)
    return c.pid in store and store[c.pid].held and holds_intact(net[key].home, store[c.pid])


def _subscribe(net: Network, key: str, *collections: str) -> None:
    """Restart `key` with these subscriptions (node.toml is read at start)."""
    node = net[key]
    net.processes.stop(node.home, signal.SIGTERM)
    listed = ", ".join(f'"{c}"' for c in collections)
    edit_toml(node.home, "replication", "subscribe", f"[{listed}]")
    net.processes.start(node.home)
    poll(node.up, bool, STARTUP_SECONDS, f"{key} up again", alive=net.alive)


# --- 1. convergence ---------------------------------------------------------------------------


def test_every_resource_meets_the_policy_within_quota_and_rights(net: Network) -> None:
    started = time.monotonic()
    _wait_converged(net, "every resource placed as the policy requires")
    print(f"converged {time.monotonic() - started:.1f} s after the daemons were up")

    # Every chunk file of every store hashes to its name.
    for key, node in net.nodes.items():
        assert bad_chunk_files(node.home) == [], key

    # Copies kept for the network say why, and dark ones say so.
    for label, c in net.content.items():
        for key, node in net.nodes.items():
            kept = copies(node.db).get(c.pid)
            if key == c.origin:
                assert kept is None, (label, key, kept)  # own content: no copy row
            elif kept is not None:
                assert kept[1] == (c.access in ("restricted", "onsite")), (label, key, kept)
    # (The policy may place the lecture on the subscriber too: the best class is kept.)
    lecture_copy = copies(net[net.tight].db)[net.content["lecture"].pid]
    assert lecture_copy in (("subscription", False), ("preservation", False)), lecture_copy

    # The tight node's planner defers the oversized subscription for quota, and says so.
    state = replication(net[net.tight])
    assert state["quota_bytes"] == TIGHT_QUOTA_GIB * GIB
    deferred = state["plan"]["deferred_for_quota"]
    count, size = deferred["copies"], deferred["bytes"]
    assert count >= 1 and size >= OVERSIZED, state["plan"]
    assert state["plan"]["usage"]["subscription"] < TIGHT_QUOTA_GIB * GIB
    assert state["subscriptions"] == [NATIONAL_COLLECTION]
    # ... while the oversized resource itself is held by three nodes (one distinct chunk).
    oversized = net.content["oversized"].pid
    stores = {k: resources(n.db) for k, n in net.nodes.items()}
    assert sum(_holders(net, stores, oversized).values()) >= 3

    # Rights: a node holding a dark copy never serves it; the origin refuses too.
    for label in ("restricted-0", "restricted-1", "onsite-0"):
        c = net.content[label]
        holders = {k for k, ok in _holders(net, stores, c.pid).items() if ok}
        others = holders - {c.origin}
        assert others, (label, holders)
        for key in sorted(holders):
            for path, data in c.files.items():
                status, body = download(net[key], c.pid, path)
                assert status == 403, (label, key, status, body[:200])
                assert data not in body
    # Open content is served byte-identical by every holder that is not its origin.
    for label in ("open-0", "province-1", "lecture"):
        c = net.content[label]
        for key in sorted(_holders(net, stores, c.pid)):
            for path, data in c.files.items():
                status, body = download(net[key], c.pid, path)
                assert status == 200 and body == data, (label, key, path, status)


def test_a_share_a_full_node_defers_is_taken_over_by_another(net: Network) -> None:
    """A node placed a copy it has no room for says so in its signed status record; the
    others then place that copy elsewhere (without it the resource would stay below policy)."""
    if net.full is None:
        # Placement (by this run's random node keys) put the oversized resource only on nodes
        # that must keep their full quota for the other tests: nothing to show in this run.
        pytest.skip("placement put the oversized resource only on the receiver and Jiuquan")
    pid = net.content["oversized"].pid
    # (Its plan deferred the copy and its status said so until another node took the copy;
    # with three holders the policy is met and the copy is no longer placed on it.)
    assert replication(net[net.full])["quota_bytes"] < OVERSIZED
    held = _holders(net, {k: resources(n.db) for k, n in net.nodes.items()}, pid)
    assert not held.get(net.full), held  # within its quota
    assert sum(held.values()) >= 3, held  # and another node took the copy


# --- 2. on demand -----------------------------------------------------------------------------


def test_a_county_reader_gets_content_it_does_not_hold_and_the_county_caches_it(
    net: Network,
) -> None:
    stores = {k: resources(n.db) for k, n in net.nodes.items()}
    choice = None
    for county in ("dunhuang", RECEIVER):
        for label in ("province-0", "province-1", "lecture", "open-1"):
            c = net.content[label]
            if c.origin != county and not stores[county][c.pid].held:
                choice = county, label
                break
        if choice:
            break
    assert choice is not None, "every small open resource is held at both counties"
    county, label = choice
    c = net.content[label]
    node = net[county]
    path, data = next(iter(c.files.items()))
    before = replication(node)["transfers"]["totals"]
    status, body = download(node, c.pid, path)
    assert status == 200, (status, body[:300], log_tail(node))
    assert body == data, f"{len(body)} bytes, expected {len(data)}"
    after = replication(node)["transfers"]["totals"]
    assert after["stream_bytes"] - before["stream_bytes"] >= len(data), after

    def cache_copy() -> tuple[Any, bool, dict[str, Any]]:
        # The transfers' state rides along, so a timeout says what the node was doing.
        transfers = replication(node)["transfers"]
        doing = {k: transfers[k] for k in ("queued", "active", "failures")}
        return copies(node.db).get(c.pid), _held_intact(net, county, label), doing

    poll(
        cache_copy,
        lambda got: got[:2] == (("cache", False), True),
        60,
        f"{county} to keep a cache copy of {label}",
        alive=net.alive,
    )
    state = replication(node)
    assert state["copies"]["cache"]["copies"] >= 1, state["copies"]
    status, body = download(node, c.pid, path)
    assert status == 200 and body == data
    assert bad_chunk_files(node.home) == []


# --- 3. kill -9 of the receiving node ---------------------------------------------------------


def test_a_receiver_killed_mid_transfer_resumes_without_refetching(net: Network) -> None:
    c = net.content["slow-12m"]
    receiver = net[RECEIVER]
    size = len(c.files["video.mp4"])
    assert not _held_intact(net, RECEIVER, "slow-12m")
    _subscribe(net, RECEIVER, "lectures-b")
    job = poll(
        functools.partial(_midway, receiver, c.pid),
        _is_midway,
        TRANSFER_SECONDS,
        f"{RECEIVER} part way through fetching {c.pid}",
        interval=0.05,
        alive=net.alive,
    )
    child = net.processes.children[receiver.home]
    net.processes.stop(receiver.home, signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    print(f"killed {RECEIVER} at {job['bytes_done']}/{job['bytes_total']} bytes")

    # What the kill left: chunks whole under their names (a partial one only in tmp/), none
    # of them committed, every chunk file hashing to its name.
    assert bad_chunk_files(receiver.home) == []
    record = resources(receiver.db)[c.pid]
    assert not record.held
    present = [ch for f in record.record.files for ch in f.chunks
               if chunk_path(receiver.home, ch.digest).exists()]  # fmt: skip
    present_bytes = sum(ch.size for ch in present)
    assert 0 < present_bytes < size, (present_bytes, size)

    net.processes.start(receiver.home)
    poll(receiver.up, bool, STARTUP_SECONDS, f"{RECEIVER} up again", alive=net.alive)
    poll(
        lambda: _held_intact(net, RECEIVER, "slow-12m"),
        bool,
        TRANSFER_SECONDS,
        f"{RECEIVER} to complete {c.pid} after the restart\n{net.logs(RECEIVER)}",
        alive=net.alive,
    )
    totals = replication(receiver)["transfers"]["totals"]
    assert 0 < totals["bytes"] <= size - present_bytes, (totals, size, present_bytes)
    assert bad_chunk_files(receiver.home) == []
    status, body = download(receiver, c.pid, "video.mp4")
    assert status == 200 and body == c.files["video.mp4"]


# --- 4. a holder vanishes mid-transfer --------------------------------------------------------


def test_a_holder_killed_mid_transfer_is_replaced_by_another(net: Network) -> None:
    c = net.content["slow-20m"]
    receiver = net[RECEIVER]
    size = len(c.files["video.mp4"])
    stores = {k: resources(n.db) for k, n in net.nodes.items()}
    holders = {k for k, ok in _holders(net, stores, c.pid).items() if ok}
    assert RECEIVER not in holders and len(holders) >= 2, holders
    served = {k: replication(net[k])["counters"]["served_bytes"] for k in holders}

    _subscribe(net, RECEIVER, "lectures-b", "lectures-c")
    # The receiver knows every holder (from its store) before its transfer starts.
    ids = {net[k].node_id for k in holders}
    assert {node_id_of(h) for h in holders_known(receiver.db, c.pid)} >= ids
    job = poll(
        functools.partial(_midway, receiver, c.pid),
        _is_midway,
        TRANSFER_SECONDS,
        f"{RECEIVER} part way through fetching {c.pid}",
        interval=0.05,
        alive=net.alive,
    )
    # A holder that has served nothing yet still has a request of this transfer to answer
    # (batches go round-robin over the holders): kill it. Never the in-process node.
    now = {k: replication(net[k])["counters"]["served_bytes"] for k in holders}
    idle = sorted(k for k in holders if now[k] == served[k] and k != CORRUPTER)
    victim = idle[0] if idle else sorted(holders - {CORRUPTER})[0]
    victim_child = net.processes.children[net[victim].home]
    net.processes.stop(net[victim].home, signal.SIGKILL)
    done_at_kill = job["bytes_done"]
    print(f"killed holder {victim} with {RECEIVER} at {done_at_kill}/{size} bytes")

    poll(
        lambda: _held_intact(net, RECEIVER, "slow-20m"),
        bool,
        TRANSFER_SECONDS,
        f"{RECEIVER} to complete {c.pid} without {victim}\n{net.logs(RECEIVER)}",
        alive=lambda: None,  # the victim is down on purpose
    )
    assert victim_child.poll() is not None  # it stayed down throughout
    survivors = holders - {victim}
    after = {k: replication(net[k])["counters"]["served_bytes"] for k in survivors}
    assert sum(after[k] - served[k] for k in survivors) >= size - done_at_kill
    state = replication(receiver)["transfers"]
    if idle:
        assert net[victim].node_id in state["peer_faults"], state["peer_faults"]
    status, body = download(receiver, c.pid, "video.mp4")
    assert status == 200 and body == c.files["video.mp4"]
    assert bad_chunk_files(receiver.home) == []

    net.processes.start(net[victim].home)
    poll(net[victim].up, bool, STARTUP_SECONDS, f"{victim} up again", alive=net.alive)


# --- 5. a peer serving corrupt chunks --------------------------------------------------------


def test_a_peer_serving_corrupt_chunks_is_caught_and_another_holder_used(net: Network) -> None:
    c = net.content["corrupt-6m"]
    receiver = net[RECEIVER]
    corrupter = net[CORRUPTER]
    assert _held_intact(net, CORRUPTER, "corrupt-6m")
    assert not _held_intact(net, RECEIVER, "corrupt-6m")
    net.corrupting.set()
    try:
        _subscribe(net, RECEIVER, "lectures-b", "lectures-c", "lectures-d")
        poll(
            lambda: _held_intact(net, RECEIVER, "corrupt-6m"),
            bool,
            TRANSFER_SECONDS,
            f"{RECEIVER} to complete {c.pid} from an honest holder\n{net.logs(RECEIVER)}",
            alive=net.alive,
        )
    finally:
        net.corrupting.clear()
    state = replication(receiver)["transfers"]
    assert state["totals"]["corrupt_chunks"] > 0, state
    faults = state["peer_faults"].get(corrupter.node_id, {})
    assert faults.get("corrupt-chunk", 0) > 0, state["peer_faults"]
    assert bad_chunk_files(receiver.home) == []
    status, body = download(receiver, c.pid, "video.mp4")
    assert status == 200 and body == c.files["video.mp4"]
    assert "corrupt chunk" in receiver.log()


def test_the_network_stops_cleanly(net: Network) -> None:
    net.alive()
    for key, node in net.nodes.items():
        if key == CORRUPTER:
            continue
        child = net.processes.children[node.home]
        net.processes.stop(node.home, signal.SIGTERM)
        assert child.returncode == 0, log_tail(node)
        assert "Traceback" not in node.log(), log_tail(node, 80)
        assert bad_chunk_files(node.home) == [], key
