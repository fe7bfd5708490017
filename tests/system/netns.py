"""A lab of Linux network namespaces for system tests: one bridge, each host on its own veth.

Needs root and `ip` (iproute2). Nothing is created in the machine's own namespace: the bridge
lives in a namespace of its own and each veth pair is created there, with its other end placed
straight into the host's namespace. Names carry a random suffix so concurrent runs do not
collide. When the block ends, even on failure, processes still inside a lab namespace (only this
lab can have put them there) are killed by pid and the namespaces are deleted, taking the bridge
and the veths with them.
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
from types import FrameType

__all__ = ["SUBNET", "Host", "Lab", "LabError", "lab", "missing_requirements"]

SUBNET = "10.77.0.0/24"  # unusual enough not to clash with a real LAN; exists only in the lab
PROBE_GROUP = "239.255.77.77"  # administratively scoped; the probe sends with TTL 1
PROBE_PORT = 47_777
IP_TIMEOUT_SECONDS = 30.0
_NAME = re.compile(r"[a-z][a-z0-9]{0,5}")  # keeps "siku-NAME-SUFFIX" a short, safe netns name

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
    """The lab could not be built, checked or torn down."""


def missing_requirements() -> str | None:
    """Why a lab cannot be built here, or None if it can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the system tests as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    address: str  # on eth0, the host's veth towards the bridge

    def command(self, *args: str) -> list[str]:
        """`args` run inside this host's namespace (`ip netns exec` execs, so the pid is the
        command's own)."""
        return ["ip", "netns", "exec", self.netns, *args]


@dataclass(frozen=True)
class Lab:
    suffix: str
    bridge_netns: str
    hosts: dict[str, Host]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

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


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _delete(netns: str) -> str | None:
    """Kill what still runs in `netns`, then delete it; a problem as text, or None."""
    found = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS
    )
    for pid in found.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    done = subprocess.run(
        ["ip", "netns", "delete", netns],
        capture_output=True,
        text=True,
        timeout=IP_TIMEOUT_SECONDS,
    )
    return f"{netns}: {done.stderr.strip()}" if done.returncode != 0 else None


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # as Ctrl-C: pytest stops, fixture teardowns and `finally` run


@contextlib.contextmanager
def lab(names: Sequence[str], *, subnet: str = SUBNET) -> Iterator[Lab]:
    """Hosts `names` (short lowercase labels) on one bridge, addressed .1, .2, … of `subnet`
    in order, lo and eth0 up. Deleted when the block ends, also on SIGTERM (a CI timeout):
    in the main thread, SIGTERM raises KeyboardInterrupt while the lab exists."""
    reason = missing_requirements()
    if reason is not None:
        raise LabError(reason)
    net = ipaddress.ip_network(subnet)
    if len(names) + 2 > net.num_addresses or len(set(names)) != len(names):
        raise LabError(f"{len(names)} distinct hosts do not fit in {subnet}")
    for name in names:
        if not _NAME.fullmatch(name):
            raise LabError(f"host name {name!r}: 1 to 6 lowercase letters or digits")
    suffix = secrets.token_hex(3)
    bridge = f"siku-br-{suffix}"
    created: list[str] = []
    hosts: dict[str, Host] = {}
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main else None
    try:
        _ip("netns", "add", bridge)
        created.append(bridge)
        _ip("-n", bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", bridge, "link", "set", "br0", "up")
        for i, name in enumerate(names, start=1):
            netns = f"siku-{name}-{suffix}"
            _ip("netns", "add", netns)
            created.append(netns)
            port, address = f"v{i}", net.network_address + i
            veth = ("type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("-n", bridge, "link", "add", port, *veth)
            _ip("-n", bridge, "link", "set", port, "master", "br0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "address", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            hosts[name] = Host(name, netns, str(address))
        yield Lab(suffix, bridge, hosts)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the teardown finish
        problems = [p for p in map(_delete, reversed(created)) if p is not None]
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        if problems:
            raise LabError("lab teardown failed: " + "; ".join(problems))
