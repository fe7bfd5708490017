"""Hosts in Linux network namespaces on one bridge, with optional tbf shaping and nft loss.

Needs root and `ip` (iproute2); shaping needs `tc`, loss needs `nft`. Nothing is created in the
machine's own namespace: the bridge lives in a hub namespace of its own, each veth pair is made
there with its other end placed straight into a host's namespace, and addresses (10.77.0.0/24 by
default) exist only inside the lab. Deleting a namespace takes its veths, qdiscs and nft tables
with it, so teardown is: kill what still runs inside (by pid), delete the namespaces.

Every name is `sikulab-RUN-HOST` (RUN: 6 random hex digits), and a run records its owner (pid and
start time) in a state file before it creates anything. A run whose owner is gone (the script was
SIGKILLed, the machine lost power) is stale: `clean_stale()`, which every new run calls first,
deletes its namespaces; `clean_all()` deletes every lab namespace, live or not.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "PREFIX",
    "SUBNET",
    "Host",
    "LabError",
    "LinkStats",
    "Segment",
    "Shaping",
    "clean_all",
    "clean_stale",
    "lab_namespaces",
    "missing_requirements",
    "parse_loss",
    "parse_rate",
    "segment",
]

PREFIX = "sikulab"  # every namespace of every lab starts with "sikulab-"
SUBNET = "10.77.0.0/24"  # unusual enough not to clash with a real LAN; exists only in the lab
PROBE_GROUP = "239.255.77.77"  # administratively scoped; the probe sends with TTL 1
PROBE_PORT = 47_777
COMMAND_TIMEOUT_SECONDS = 30.0
NFT_TABLE = "sikulab"  # `netdev sikulab` in each lossy host's namespace
TBF_LATENCY = "200ms"  # longest a packet may wait in the tbf queue (sets the queue length)
MIN_BURST_BYTES = 3_200  # at least two full frames
STATE_DIRS = (Path("/run/siku-lab"), Path("/tmp/siku-lab"))  # noqa: S108 (root-owned, fixed)
_HOST = re.compile(r"[a-z][a-z0-9]{0,11}")
_RUN = re.compile(r"[0-9a-f]{6}")
_RATE = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)", re.IGNORECASE)
_RATE_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}

# ICMP echo from inside a namespace, without needing `ping` (iputils) on the machine.
_PING = """
import os, socket, struct, sys, time
dst, seconds = sys.argv[1], float(sys.argv[2])
def checksum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF
ident = os.getpid() & 0xFFFF
body = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'siku-lab'
packet = body[:2] + struct.pack('!H', checksum(body)) + body[4:]
deadline = time.monotonic() + seconds
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
    s.settimeout(0.3)
    while time.monotonic() < deadline:
        s.sendto(packet, (dst, 0))
        try:
            data, (src, _) = s.recvfrom(1024)
        except TimeoutError:
            continue
        ihl = (data[0] & 0x0F) * 4
        kind, _, _, rid, _ = struct.unpack('!BBHHH', data[ihl:ihl + 8])
        if src == dst and kind == 0 and rid == ident:
            sys.exit(0)
sys.exit(1)
"""

# Joins the probe group on the host's address and prints the other senders it heard.
_RECEIVE = """
import json, socket, sys
group, port, local, expect, seconds = sys.argv[1:6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((group, int(port)))
mreq = socket.inet_aton(group) + socket.inet_aton(local)
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print('ready', flush=True)
s.settimeout(float(seconds))
heard = set()
try:
    while len(heard) < int(expect):
        _, (src, _) = s.recvfrom(64)
        if src != local:
            heard.add(src)
except TimeoutError:
    pass
print(json.dumps(sorted(heard)), flush=True)
"""

_SEND = """
import socket, sys, time
group, port, local = sys.argv[1:4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for _ in range(3):
    s.sendto(b'siku-lab', (group, int(port)))
    time.sleep(0.1)
"""


class LabError(Exception):
    """The lab could not be built, checked, changed or torn down."""


def missing_requirements(tools: Sequence[str] = ("ip",)) -> str | None:
    """Why a lab (using `tools`) cannot be built here, or None if it can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the system tests as root)"
    packages = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}
    for tool in tools:
        if shutil.which(tool) is None:
            return f"the `{tool}` command ({packages.get(tool, tool)}) is not installed"
    return None


def parse_rate(text: str) -> int:
    """A tc rate such as "100mbit" or "512kbit" → bits per second."""
    m = _RATE.fullmatch(text.strip())
    if m is None or float(m[1]) <= 0:
        raise LabError(f"rate {text!r}: a number and bit, kbit, mbit or gbit, e.g. 100mbit")
    return int(float(m[1]) * _RATE_UNITS[m[2].lower()])


def parse_loss(text: str | float) -> float:
    """A loss such as "1%", "0.5" or 5 → percent (0 to 100, in steps of 0.01)."""
    try:
        value = float(str(text).strip().removesuffix("%"))
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise LabError(f"loss {text!r}: a percentage from 0 to 100, e.g. 1% or 0.5")
    return value


@dataclass(frozen=True)
class Shaping:
    """What a host's link does to traffic: `rate` (tc syntax) in each direction, `loss` percent
    of packets dropped in each direction. None: no limit / no loss."""

    rate: str | None = None
    loss: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None:
            parse_rate(self.rate)
        if self.loss is not None:
            object.__setattr__(self, "loss", parse_loss(self.loss))


@dataclass(frozen=True)
class LinkStats:
    """Counters of one host's link: bytes the tbf sent each way (None: no tbf), and packets the
    loss rules saw and dropped (0 without loss rules)."""

    shaped_out_bytes: int | None  # host → bridge (tbf on the host's eth0)
    shaped_in_bytes: int | None  # bridge → host (tbf on the bridge's port)
    packets_seen: int
    packets_dropped: int


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    address: str  # on eth0, the host's veth towards the bridge
    port: str  # the bridge's end of that veth, in the hub namespace

    def command(self, *args: str) -> list[str]:
        """`args` run inside this host's namespace (`ip netns exec` execs, so the pid is the
        command's own)."""
        return ["ip", "netns", "exec", self.netns, *args]


def _run(args: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(args)}: no answer in {COMMAND_TIMEOUT_SECONDS:.0f} s") from e
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _ip(*args: str) -> None:
    _run(["ip", *args])


@dataclass(frozen=True)
class Segment:
    """Hosts on one bridge. Built by `segment()`, which also tears it down."""

    run: str
    hub: str  # the namespace holding the bridge
    hosts: dict[str, Host]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # --- shaping --------------------------------------------------------------------------------

    def shape(self, host: Host, shaping: Shaping) -> None:
        """Set (or, with None fields, remove) the rate limit and loss of `host`'s link, in both
        directions: tbf on the egress of both veth ends, nft drops at the ingress and egress of
        the host's eth0. Replaces whatever was set before."""
        for netns, dev in ((host.netns, "eth0"), (self.hub, host.port)):
            if shaping.rate is None:
                _run(["tc", "-n", netns, "qdisc", "del", "dev", dev, "root"], check=False)
                continue
            burst = max(parse_rate(shaping.rate) // 8 // 100, MIN_BURST_BYTES)  # 10 ms worth
            tbf = ("tbf", "rate", shaping.rate, "burst", str(burst), "latency", TBF_LATENCY)
            _run(["tc", "-n", netns, "qdisc", "replace", "dev", dev, "root", *tbf])
        # Declaring the table first makes the delete succeed whether or not it existed; the
        # file is one transaction, so the host is never half-configured. The netdev hooks drop
        # packets as the wire would: the sending socket sees no error.
        rules = [f"table netdev {NFT_TABLE} {{}}", f"delete table netdev {NFT_TABLE}"]
        if shaping.loss:
            basis_points = round(shaping.loss * 100)
            rules.append(f"table netdev {NFT_TABLE} {{")
            for hook in ("ingress", "egress"):
                rules += [
                    f"  chain {hook} {{",
                    f'    type filter hook {hook} device "eth0" priority 0; policy accept;',
                    "    counter",
                    f"    numgen random mod 10000 < {basis_points} counter drop",
                    "  }",
                ]
            rules.append("}")
        _run(host.command("nft", "-f", "-"), stdin="\n".join(rules) + "\n")

    def stats(self, host: Host) -> LinkStats:
        out = self._tbf_bytes(host.netns, "eth0")
        into = self._tbf_bytes(self.hub, host.port)
        seen = dropped = 0
        listing = _run(host.command("nft", "-j", "list", "ruleset"))
        for item in json.loads(listing).get("nftables", []):
            rule = item.get("rule")
            if not rule or rule.get("table") != NFT_TABLE:
                continue
            expr = rule.get("expr", [])
            packets = sum(int(e["counter"]["packets"]) for e in expr if "counter" in e)
            if any("drop" in e for e in expr):
                dropped += packets
            else:
                seen += packets
        return LinkStats(out, into, seen, dropped)

    @staticmethod
    def _tbf_bytes(netns: str, dev: str) -> int | None:
        shown: list[dict[str, Any]] = json.loads(
            _run(["tc", "-n", netns, "-s", "-j", "qdisc", "show", "dev", dev]) or "[]"
        )
        tbf = next((q for q in shown if q.get("kind") == "tbf"), None)
        return None if tbf is None else int(tbf["bytes"])

    # --- checks ---------------------------------------------------------------------------------

    def ping(self, src: Host, dst: Host, seconds: float = 5.0) -> None:
        done = subprocess.run(
            src.command(sys.executable, "-c", _PING, dst.address, str(seconds)),
            capture_output=True,
            text=True,
            timeout=seconds + 10,
        )
        if done.returncode != 0:
            raise LabError(
                f"no ping reply from {dst.name} ({dst.address}) in {src.netns}:"
                f" {done.stderr.strip() or 'timed out'}"
            )

    def check_multicast(self, seconds: float = 5.0) -> None:
        """Every host hears a multicast datagram from every other one (IGMP snooping or a
        missing route would stop mDNS the same way)."""
        hosts = list(self.hosts.values())
        receivers: dict[str, subprocess.Popen[str]] = {}
        try:
            for h in hosts:
                args = (PROBE_GROUP, str(PROBE_PORT), h.address, str(len(hosts) - 1), str(seconds))
                receivers[h.name] = p = subprocess.Popen(
                    h.command(sys.executable, "-c", _RECEIVE, *args),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                assert p.stdout is not None
                if p.stdout.readline().strip() != "ready":
                    raise LabError(f"multicast probe did not start in {h.netns}: {p.stderr}")
            for h in hosts:
                subprocess.run(
                    h.command(sys.executable, "-c", _SEND, PROBE_GROUP, str(PROBE_PORT), h.address),
                    check=True,
                    capture_output=True,
                    timeout=seconds + 10,
                )
            for h in hosts:
                out, err = receivers[h.name].communicate(timeout=seconds + 10)
                heard = set(json.loads(out.splitlines()[-1])) if out.strip() else set()
                expected = {o.address for o in hosts if o is not h}
                if heard != expected:
                    raise LabError(
                        f"multicast: {h.name} heard {sorted(heard)}, expected"
                        f" {sorted(expected)} {err.strip()}"
                    )
        finally:
            for p in receivers.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def check(self) -> None:
        """Unicast between every pair of hosts, then multicast among all of them."""
        for src in self.hosts.values():
            for dst in self.hosts.values():
                if src is not dst:
                    self.ping(src, dst)
        self.check_multicast()


# --- runs, their owners and cleaning up -----------------------------------------------------------


def _trusted(d: Path) -> bool:
    """Ours alone: a state folder someone else could write to could name folders to delete."""
    st = d.lstat()
    return (
        d.is_dir() and not d.is_symlink() and st.st_uid == os.geteuid() and not st.st_mode & 0o022
    )


def _state_dir() -> Path:
    for d in STATE_DIRS:
        with contextlib.suppress(OSError):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if _trusted(d):
                return d
    raise LabError(f"cannot create a state folder ({', '.join(map(str, STATE_DIRS))})")


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (with the pid, identifies a process across pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after "pid (comm)"


def lab_namespaces() -> dict[str, list[str]]:
    """run → the namespaces of every lab on this machine, live or stale."""
    runs: dict[str, list[str]] = {}
    for line in _run(["ip", "netns", "list"]).splitlines():
        name = line.split(" ", 1)[0]
        parts = name.split("-", 2)
        if len(parts) == 3 and parts[0] == PREFIX and _RUN.fullmatch(parts[1]):
            runs.setdefault(parts[1], []).append(name)
    return runs


def _owner_alive(run: str) -> bool:
    for d in STATE_DIRS:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            owner = json.loads((d / f"{run}.json").read_text())
            return bool(_start_time(int(owner["pid"])) == owner["start"])
    return False


def _forget(run: str) -> None:
    """Delete the run's state file and the temporary folders it names."""
    for d in STATE_DIRS:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if not _trusted(d):
                continue
            state = d / f"{run}.json"
            for folder in json.loads(state.read_text()).get("temporary", []):
                shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            (d / f"{run}.json").unlink(missing_ok=True)


def _delete(netns: str) -> str | None:
    """Kill what still runs in `netns`, then delete it; a problem as text, or None."""
    found = subprocess.run(
        ["ip", "netns", "pids", netns],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )
    for pid in found.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    done = subprocess.run(
        ["ip", "netns", "delete", netns],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )
    return f"{netns}: {done.stderr.strip()}" if done.returncode != 0 else None


def _delete_run(run: str, namespaces: Sequence[str]) -> list[str]:
    # Hosts first, the hub last: a host's veth goes with whichever end's namespace goes first.
    ordered = sorted(namespaces, key=lambda n: n.endswith("-hub"))
    problems = [p for p in map(_delete, ordered) if p is not None]
    if not problems:
        _forget(run)
    return problems


def clean_stale() -> list[str]:
    """Delete the namespaces of runs whose owner is gone; the runs cleaned."""
    cleaned = []
    for run, namespaces in lab_namespaces().items():
        if not _owner_alive(run):
            problems = _delete_run(run, namespaces)
            if problems:
                raise LabError("cleaning a stale lab: " + "; ".join(problems))
            cleaned.append(run)
    return cleaned


def clean_all() -> list[str]:
    """Delete every lab's namespaces, killing what runs inside, live owner or not."""
    runs = lab_namespaces()
    problems = [p for run, names in runs.items() for p in _delete_run(run, names)]
    if problems:
        raise LabError("cleaning labs: " + "; ".join(problems))
    return sorted(runs)


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # as Ctrl-C: pytest stops, fixture teardowns and `finally` run


@contextlib.contextmanager
def segment(
    names: Sequence[str],
    *,
    subnet: str = SUBNET,
    shaping: dict[str, Shaping] | None = None,
    temporary: Sequence[Path] = (),
) -> Iterator[Segment]:
    """Hosts `names` (short lowercase labels) on one bridge, addressed .1, .2, … of `subnet`
    in order, lo and eth0 up, each link shaped as `shaping` says. Deleted when the block ends,
    also on SIGTERM: in the main thread, SIGTERM raises KeyboardInterrupt while it exists.
    The `temporary` folders are deleted with the run's namespaces if it ends up stale."""
    shaping = shaping or {}
    tools = ["ip"]
    tools += ["tc"] if any(s.rate for s in shaping.values()) else []
    tools += ["nft"] if any(s.loss for s in shaping.values()) else []
    reason = missing_requirements(tools)
    if reason is not None:
        raise LabError(reason)
    net = ipaddress.ip_network(subnet)
    if len(names) + 2 > net.num_addresses or len(set(names)) != len(names):
        raise LabError(f"{len(names)} distinct hosts do not fit in {subnet}")
    for name in names:
        if not _HOST.fullmatch(name) or name == "hub":
            raise LabError(f"host name {name!r}: 1 to 12 lowercase letters or digits, not hub")
    if unknown := set(shaping) - set(names):
        raise LabError(f"shaping for hosts that do not exist: {sorted(unknown)}")
    clean_stale()
    run = secrets.token_hex(3)
    hub = f"{PREFIX}-{run}-hub"
    state = _state_dir() / f"{run}.json"
    owner = {"pid": os.getpid(), "start": _start_time(os.getpid())}
    state.write_text(json.dumps({**owner, "temporary": [str(p) for p in temporary]}))
    created: list[str] = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main else None
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        _ip("netns", "add", hub)
        created.append(hub)
        _ip("-n", hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", hub, "link", "set", "br0", "up")
        hosts: dict[str, Host] = {}
        for i, name in enumerate(names, start=1):
            netns = f"{PREFIX}-{run}-{name}"
            _ip("netns", "add", netns)
            created.append(netns)
            port, address = f"v{i}", net.network_address + i
            veth = ("type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("-n", hub, "link", "add", port, *veth)
            _ip("-n", hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "address", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            hosts[name] = Host(name, netns, str(address), port)
        built = Segment(run, hub, hosts)
        for name, s in shaping.items():
            built.shape(hosts[name], s)
        yield built
    finally:
        if in_main:  # let the teardown finish
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        problems = _delete_run(run, created)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
        if problems:
            raise LabError("lab teardown failed: " + "; ".join(problems))
