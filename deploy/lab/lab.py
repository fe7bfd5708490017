"""The multi-host lab: a siku network of the four tiers, each node a real `siku run` in its own
network namespace on one bridge, links optionally shaped (tbf) and lossy (nftables).

`with Lab(LabSpec(provincial=1, municipal=1, county=2)) as lab:` builds the network exactly as
the CLI would (root key, network.toml, one home per node enrolled request → approve → accept),
makes the namespaces (see netns.py), starts every daemon inside its namespace and waits until
each admin API answers. Leaving the block stops the daemons (SIGTERM, then SIGKILL after a
grace) and deletes every namespace, veth, bridge, qdisc and nft table of the lab; a daemon whose
lab process dies without that gets SIGTERM from the kernel (PR_SET_PDEATHSIG), and the next lab
deletes the namespaces left behind.

Layout: one national library; provincial libraries certified by the root with the national one
as parent; municipal library j under provincial ((j-1) mod P) + 1; county library i under
municipal ((i-1) mod M) + 1. Every node listens on its namespace address, port 8474, and has its
admin listener on 127.0.0.1:8475 inside its namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

from deploy.lab.netns import Host, LabError, LinkStats, Segment, Shaping, segment
from node.config import load_config
from node.demo import NodeSpec, build_network
from node.keys import load_admin_token, load_identity

__all__ = ["PORT", "Lab", "LabNode", "LabSpec", "layout"]

ROOT = Path(__file__).resolve().parents[2]  # the repository: `python -m node.cli` runs from it
PORT = 8474  # public listener of every node (each has its own namespace); admin on PORT + 1
READY_SECONDS = 60.0  # for every daemon's admin API to answer after start
STOP_GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL
HTTP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 120.0
MAX_PROVINCES = 89  # region codes 11 to 99
MAX_CHILDREN = 99  # municipal per province, county per municipal (two digits of the region)
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# An HTTP GET from inside a namespace: the admin listener is on that namespace's loopback, the
# public ones on addresses only the lab's namespaces can reach. The admin token comes on stdin
# (not argv, which `ps` shows); no proxy from the environment is used.
_GET = """
import json, sys, urllib.error, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
token = sys.stdin.read().strip()
headers = {"Authorization": "Bearer " + token} if token else {}
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(urllib.request.Request(url, headers=headers), timeout=seconds) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except OSError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
print(json.dumps({"status": status, "body": body.decode("utf-8", "replace")}))
"""


@dataclass(frozen=True)
class LabSpec:
    """What to build. `rate`/`loss` shape every link; `shaping` overrides them per node name.
    `peers` are (a, b) pairs: node a lists node b in its node.toml [peers] urls."""

    provincial: int = 1
    municipal: int = 1
    county: int = 1
    rate: str | None = None
    loss: float | None = None
    shaping: Mapping[str, Shaping] = field(default_factory=dict)
    peers: tuple[tuple[str, str], ...] = ()
    hello_interval_seconds: int = 1
    sync_interval_seconds: int = 2
    zeroconf: bool = False
    network_name: str = "siku lab network"
    quota_gib: int = 4

    def link(self, name: str) -> Shaping:
        return self.shaping.get(name, Shaping(self.rate, self.loss))


@dataclass(frozen=True)
class LabNode:
    name: str  # also the host name in the lab: national, prov1, muni1, county1, …
    tier: str
    parent: str | None  # name of the parent node (None for the national library)
    host: Host
    home: Path
    url: str  # peer and public URL, reachable from the lab's namespaces only
    node_id: str

    @property
    def namespace(self) -> str:
        return self.host.netns

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{PORT + 1}"  # inside the node's namespace


def layout(spec: LabSpec) -> list[tuple[str, str, str, str, str | None]]:
    """(name, tier, region, code, parent name) of every node, parents first."""
    p, m, c = spec.provincial, spec.municipal, spec.county
    if not 0 <= p <= MAX_PROVINCES or m < 0 or c < 0:
        raise LabError(f"provincial must be 0 to {MAX_PROVINCES}; municipal, county at least 0")
    if (m and not p) or (c and not m):
        raise LabError("a municipal library needs a provincial one, a county one a municipal one")
    if m > p * MAX_CHILDREN or c > m * MAX_CHILDREN:
        raise LabError(f"at most {MAX_CHILDREN} children per parent")
    rows: list[tuple[str, str, str, str, str | None]] = [
        ("national", "national", "000000", "zg", None)
    ]
    regions: dict[str, str] = {}
    children: dict[str, int] = {}
    for k in range(1, p + 1):
        regions[f"prov{k}"] = f"{10 + k:02d}0000"
        rows.append((f"prov{k}", "provincial", regions[f"prov{k}"], f"p{k}", None))
    for tier, count, parents, short, level in (
        ("municipal", m, [f"prov{k}" for k in range(1, p + 1)], "muni", 2),
        ("county", c, [f"muni{j}" for j in range(1, m + 1)], "county", 4),
    ):
        for i in range(1, count + 1):
            parent = parents[(i - 1) % len(parents)]
            children[parent] = n = children.get(parent, 0) + 1
            base = regions[parent]
            regions[f"{short}{i}"] = base[:level] + f"{n:02d}" + base[level + 2 :]
            code = f"{tier[0]}{i}"  # m1, c1: 0-9 and bcdfghjkmnpqrstvwxz only
            rows.append((f"{short}{i}", tier, regions[f"{short}{i}"], code, parent))
    return rows


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the lab process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = cast(Callable[[int, int], int], libc.prctl)
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SIKU_HOME"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["SIKU_HOME"] = str(home)
    return env


def _set_peer_urls(home: Path, urls: list[str]) -> None:
    path = home / "node.toml"
    text = path.read_text(encoding="utf-8")
    if text.count("\nurls = []\n") != 1:
        raise LabError(f"{path}: no `urls = []` line in [peers] to fill in")
    path.write_text(text.replace("\nurls = []\n", f"\nurls = {json.dumps(urls)}\n"), "utf-8")
    load_config(home)  # still a valid config


class Lab:
    """A running lab; use as a context manager. `nodes` maps node name → LabNode."""

    def __init__(
        self,
        spec: LabSpec,
        workdir: Path | None = None,
        *,
        say: Callable[[str], None] = lambda _: None,
        ready_seconds: float = READY_SECONDS,
    ) -> None:
        self.spec = spec
        self.rows = layout(spec)
        names = [r[0] for r in self.rows]
        if unknown := ({a for a, _ in spec.peers} | {b for _, b in spec.peers}) - set(names):
            raise LabError(f"peers name nodes that do not exist: {sorted(unknown)}")
        if unknown := set(spec.shaping) - set(names):
            raise LabError(f"shaping for nodes that do not exist: {sorted(unknown)}")
        self._workdir = workdir
        self._say = say
        self._ready_seconds = ready_seconds
        self.root = Path()
        self.nodes: dict[str, LabNode] = {}
        self._segment: Segment | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._stack = contextlib.ExitStack()

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._up()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _up(self) -> None:
        temporary: list[Path] = []
        if self._workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="siku-lab-"))
            self._stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            temporary.append(workdir)
        else:
            workdir = self._workdir
        names = [r[0] for r in self.rows]
        shaping = {n: link for n in names if (link := self.spec.link(n)) != Shaping()}
        self._say(f"creating {len(names)} namespaces on a bridge")
        self._segment = seg = self._stack.enter_context(
            segment(names, shaping=shaping, temporary=temporary)
        )
        self.root = workdir / f"lab-{seg.run}"
        self._say(f"building the network and enrolling {len(names)} homes in {self.root}")
        zeroconf = self.spec.zeroconf
        specs = [
            NodeSpec(name, f"siku lab {name}", code, tier, region, parent, PORT,
                     host=seg[name].address, zeroconf=zeroconf)
            for name, tier, region, code, parent in self.rows
        ]  # fmt: skip
        build_network(
            self.root,
            specs,
            network_name=self.spec.network_name,
            hello_interval_seconds=self.spec.hello_interval_seconds,
            sync_interval_seconds=self.spec.sync_interval_seconds,
            quota_gib=self.spec.quota_gib,
        )
        for s in specs:
            home = self.root / s.key
            identity = load_identity(load_config(home).key_file)
            self.nodes[s.key] = LabNode(
                s.key, s.tier, s.parent, seg[s.key], home, s.url, identity.node_id
            )
        for a in {a for a, _ in self.spec.peers}:
            urls = [self.nodes[b].url for x, b in self.spec.peers if x == a]
            _set_peer_urls(self.nodes[a].home, urls)
        self._stack.callback(self._close_logs)
        self._stack.callback(self.stop_all)  # runs before the namespaces go
        self._say("starting the daemons")
        for node in self.nodes.values():
            self.start(node, wait=False)
        self.wait_ready(timeout=self._ready_seconds)

    def _close_logs(self) -> None:
        for log in self._logs:
            log.close()
        self._logs.clear()

    @property
    def segment(self) -> Segment:
        if self._segment is None:
            raise LabError("the lab is not up")
        return self._segment

    @property
    def run_id(self) -> str:
        return self.segment.run

    def __getitem__(self, name: str) -> LabNode:
        return self.nodes[name]

    def children(self, node: LabNode) -> list[LabNode]:
        return [n for n in self.nodes.values() if n.parent == node.name] + (
            [n for n in self.nodes.values() if n.tier == "provincial"]
            if node.tier == "national"
            else []
        )

    def parent(self, node: LabNode) -> LabNode | None:
        if node.parent is not None:
            return self.nodes[node.parent]
        if node.tier == "provincial":
            return self.nodes["national"]
        return None

    # --- daemons --------------------------------------------------------------------------------

    def start(self, node: LabNode, *, wait: bool = True) -> None:
        """Start `siku run` for `node` inside its namespace (log: HOME/daemon.log)."""
        proc = self._procs.get(node.name)
        if proc is not None and proc.poll() is None:
            raise LabError(f"{node.name} is already running (pid {proc.pid})")
        log = (node.home / "daemon.log").open("ab")
        self._logs.append(log)
        self._procs[node.name] = subprocess.Popen(
            node.host.command(sys.executable, "-m", "node.cli", "run", "--home", str(node.home)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches the lab, which stops the daemons in order
            preexec_fn=_die_with_parent,
        )
        if wait:
            self.wait_ready([node], timeout=self._ready_seconds)

    def kill(self, node: LabNode, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to `node`'s daemon; for SIGKILL, also wait until it is gone."""
        proc = self._procs.get(node.name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(STOP_GRACE_SECONDS)

    def stop(self, node: LabNode, grace: float = STOP_GRACE_SECONDS) -> None:
        self.stop_all([node], grace)

    def stop_all(
        self, nodes: Iterable[LabNode] | None = None, grace: float = STOP_GRACE_SECONDS
    ) -> None:
        """SIGTERM to each daemon, SIGKILL to those still running after `grace` seconds."""
        chosen = [n.name for n in (self.nodes.values() if nodes is None else nodes)]
        procs = [p for n in chosen if (p := self._procs.get(n)) is not None and p.poll() is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(STOP_GRACE_SECONDS)

    def pid(self, node: LabNode) -> int | None:
        """The pid of `node`'s daemon (last started), or None if it never started."""
        proc = self._procs.get(node.name)
        return None if proc is None else proc.pid

    def running(self, node: LabNode) -> bool:
        proc = self._procs.get(node.name)
        return proc is not None and proc.poll() is None

    def check_alive(self, nodes: Iterable[LabNode] | None = None) -> None:
        for node in self.nodes.values() if nodes is None else nodes:
            proc = self._procs.get(node.name)
            if proc is not None and proc.poll() is not None:
                raise LabError(
                    f"the daemon of {node.name} exited with {proc.returncode}:\n"
                    + self.log_tail(node)
                )

    def wait_ready(self, nodes: Iterable[LabNode] | None = None, timeout: float = 60.0) -> None:
        """Until each daemon's admin API answers; LabError if one exits or `timeout` passes."""
        waiting = list(self.nodes.values() if nodes is None else nodes)
        deadline = time.monotonic() + timeout
        while waiting:
            self.check_alive(waiting)
            waiting = [n for n in waiting if not self._answers(n)]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(n.name for n in waiting)
                tails = "\n".join(f"--- {n.name}\n{self.log_tail(n)}" for n in waiting)
                raise LabError(f"no admin API after {timeout:.0f} s: {names}\n{tails}")
            if waiting:
                time.sleep(0.3)

    def _answers(self, node: LabNode) -> bool:
        try:
            self.admin_get(node, "/admin/api/v1/status", timeout=2.0)
        except LabError:
            return False
        return True

    def log_tail(self, node: LabNode, lines: int = 30) -> str:
        path = node.home / "daemon.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # --- commands and HTTP inside the namespaces ------------------------------------------------

    def exec(
        self,
        node: LabNode,
        argv: list[str],
        *,
        timeout: float = CLI_TIMEOUT_SECONDS,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Any command inside `node`'s namespace, SIKU_HOME set to its home."""
        return subprocess.run(
            node.host.command(*argv),
            input=input,
            capture_output=True,
            text=True,
            env=_env(node.home),
            cwd=ROOT,
            timeout=timeout,
        )

    def run(
        self,
        node: LabNode,
        argv: list[str],
        *,
        timeout: float = CLI_TIMEOUT_SECONDS,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """`siku ARGV` inside `node`'s namespace against its home, e.g. ["peers", "--json"]."""
        done = self.exec(node, [sys.executable, "-m", "node.cli", *argv], timeout=timeout)
        if check and done.returncode != 0:
            raise LabError(
                f"siku {' '.join(argv)} at {node.name} exited {done.returncode}: {done.stderr}"
            )
        return done

    def _get(self, via: LabNode, url: str, token: str, timeout: float) -> tuple[int, Any]:
        try:
            done = self.exec(
                via,
                [sys.executable, "-c", _GET, url, str(timeout)],
                input=token,
                timeout=timeout + 15,
            )
        except subprocess.TimeoutExpired as e:
            raise LabError(f"GET {url} from {via.name}: no answer") from e
        if done.returncode != 0 or not done.stdout.strip():
            raise LabError(f"GET {url} from {via.name}: {done.stderr.strip()}")
        result = json.loads(done.stdout)
        if "error" in result:
            raise LabError(f"GET {url} from {via.name}: {result['error']}")
        text = result["body"]
        try:
            body = json.loads(text) if text else None
        except json.JSONDecodeError:
            body = text
        return int(result["status"]), body

    def admin_get(self, node: LabNode, path: str, *, timeout: float = HTTP_TIMEOUT_SECONDS) -> Any:
        """Parsed JSON of GET `path` (e.g. /admin/api/v1/peers) on `node`'s admin API."""
        token = load_admin_token(load_config(node.home).token_file)
        status, body = self._get(node, node.admin_url + path, token, timeout)
        if status != 200:
            raise LabError(f"{node.name} admin {path}: HTTP {status} {body!r}")
        return body

    def public_get(
        self,
        node: LabNode,
        path: str,
        *,
        via: LabNode | None = None,
        timeout: float = HTTP_TIMEOUT_SECONDS,
    ) -> tuple[int, Any]:
        """(status, parsed body) of GET `path` on `node`'s public listener, sent from `via`'s
        namespace (default: the node's own)."""
        return self._get(via or node, node.url + path, "", timeout)

    def connected(self, node: LabNode) -> set[str]:
        """Names of the lab nodes `node` lists as connected peers (its admin API)."""
        by_id = {n.node_id: n.name for n in self.nodes.values()}
        peers = self.admin_get(node, "/admin/api/v1/peers")["peers"]
        return {
            by_id[p["node_id"]]
            for p in peers
            if p.get("state") == "connected" and p.get("node_id") in by_id
        }

    # --- links ----------------------------------------------------------------------------------

    def shape(self, node: LabNode, *, rate: str | None = None, loss: float | None = None) -> None:
        """Replace the shaping of `node`'s link (both directions); None removes a limit."""
        self.segment.shape(node.host, Shaping(rate, loss))

    def stats(self, node: LabNode) -> LinkStats:
        return self.segment.stats(node.host)

    def check(self) -> None:
        """Ping between every pair of nodes and multicast among all (raises LabError)."""
        self.segment.check()

    # --- a table for people ---------------------------------------------------------------------

    def table(self) -> str:
        rows = [("node", "tier", "parent", "namespace", "url", "link", "home")]
        for n in self.nodes.values():
            link = self.spec.link(n.name)
            shaped = " ".join(
                x
                for x in (link.rate, f"{link.loss:g}% loss" if link.loss else None)
                if x is not None
            )
            parent = self.parent(n)
            rows.append(
                (
                    n.name,
                    n.tier,
                    parent.name if parent else "-",
                    n.namespace,
                    n.url,
                    shaped or "-",
                    str(n.home),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
            for r in rows
        )
