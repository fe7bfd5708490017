"""A small network on one machine: homes for several tiers, enrolled down the chain, and the
daemons run as separate processes. `siku demo` uses it, and so do the multi-node tests."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from node.config import Config, load_config
from node.enrolment import (
    Issuer,
    approve_request,
    install_chain,
    load_root_key,
    make_request,
    network_init,
    remember_certificates,
)
from node.errors import NodeError
from node.home import init_home, with_store
from node.keys import load_identity
from node.network import NETWORK_FILE

__all__ = [
    "DEMO_NODES",
    "NATIONAL_COLLECTION",
    "NodeSpec",
    "Processes",
    "build_network",
    "is_built",
    "wait_until",
]

PR_SET_PDEATHSIG = 1  # linux/prctl.h
NATIONAL_COLLECTION = "national-lectures"  # the demo's collection replicated down the tiers


@dataclass(frozen=True)
class NodeSpec:
    key: str  # folder under the network root
    name: str
    code: str
    tier: str
    region: str
    parent: str | None  # key of the parent node's spec (None: certified by the root)
    port: int  # public listener; the admin listener is port + 1
    host: str = "127.0.0.1"
    zeroconf: bool = False
    subscribe: tuple[str, ...] = ()  # collections from above it replicates (node.toml)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


DEMO_NODES = (
    NodeSpec(
        "national", "国家图书馆 National Library (demo)", "zg", "national", "000000", None, 8476
    ),
    NodeSpec(
        "provincial", "甘肃省图书馆 Gansu Provincial Library (demo)", "gs", "provincial",
        "620000", None, 8474,
    ),
    NodeSpec(
        "municipal", "酒泉市图书馆 Jiuquan Municipal Library (demo)", "jq", "municipal",
        "620900", "provincial", 8472,
    ),
    NodeSpec(
        "county", "敦煌市图书馆 Dunhuang County Library (demo)", "620982", "county",
        "620982", "municipal", 8470, subscribe=(NATIONAL_COLLECTION,),
    ),
)  # fmt: skip


def _parent_url(spec: NodeSpec, specs: dict[str, NodeSpec]) -> str:
    if spec.parent is not None:
        return specs[spec.parent].url
    national = next((s for s in specs.values() if s.tier == "national"), None)
    return national.url if national is not None and spec.tier == "provincial" else ""


def build_network(
    root: Path,
    specs: Sequence[NodeSpec],
    *,
    network_name: str = "siku demo network",
    hello_interval_seconds: int = 30,
    sync_interval_seconds: int = 30,
    replication_interval_seconds: int = 60,
    replication: bool = True,
    quota_gib: int = 64,
) -> dict[str, Config]:
    """Create the network (root key, network.toml) and one enrolled home per spec, parents
    first. Enrolment runs exactly as the CLI does it: request → approve → accept."""
    key_path, network_path, network = network_init(
        root / "network", name=network_name, ark_naan="99999"
    )
    root_issuer = Issuer.root(load_root_key(key_path, network).key)
    by_key = {s.key: s for s in specs}
    configs: dict[str, Config] = {}
    for spec in specs:
        config, identity, _ = init_home(
            root / spec.key,
            name=spec.name,
            code=spec.code,
            tier=spec.tier,
            region=spec.region,
            parent=_parent_url(spec, by_key),
            listen=f"{spec.host}:{spec.port}",
            admin_listen=f"127.0.0.1:{spec.port + 1}",
            network_file=network_path,
            quota_gib=quota_gib,
            hello_interval_seconds=hello_interval_seconds,
            sync_interval_seconds=sync_interval_seconds,
            replication_interval_seconds=replication_interval_seconds,
            subscribe=spec.subscribe,
            replication=replication,
            zeroconf=spec.zeroconf,
        )
        request = make_request(config, identity, network)
        if spec.parent is None:
            issuer, issuer_config = root_issuer, None
        else:
            issuer_config = configs[spec.parent]
            issuer = Issuer.node(issuer_config, load_identity(issuer_config.key_file), network, [])
        _, chain = approve_request(request, issuer, network, days=network.certificate_days)
        asyncio.run(install_chain(config, identity, network, chain))
        if issuer_config is not None:
            issued = chain[:1]  # the issuing node remembers what it issued (for revocation)
            with_store(issuer_config, lambda store: remember_certificates(store, issued))  # noqa: B023 (called at once)
        configs[spec.key] = load_config(root / spec.key)
    return configs


def is_built(root: Path, specs: Sequence[NodeSpec]) -> bool:
    return (root / "network" / NETWORK_FILE).exists() and all(
        (root / s.key / "membership" / "chain.siku").exists() for s in specs
    )


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the parent dies (even by SIGKILL), so a demo
    or a test never leaves daemons behind. Linux only; elsewhere the parent's exit path stops
    them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Processes:
    """Daemons as child processes (`python -m node.cli run`), logs in each home's daemon.log.
    Stopped with SIGTERM (then SIGKILL after a grace period) when the block ends."""

    def __init__(self, homes: Sequence[Path]) -> None:
        self.homes = list(homes)
        self.children: dict[Path, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Processes:
        for home in self.homes:
            self.start(home)
        return self

    def start(self, home: Path) -> subprocess.Popen[bytes]:
        log = (home / "daemon.log").open("ab")
        self._logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        child = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "run", "--home", str(home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            preexec_fn=_die_with_parent,
        )
        self.children[home] = child
        return child

    def stop(self, home: Path, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
        child = self.children.get(home)
        if child is None or child.poll() is not None:
            return
        child.send_signal(sig)
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def __exit__(self, *exc: object) -> None:
        for home in self.homes:
            with contextlib.suppress(ProcessLookupError):
                self.stop(home)
        for log in self._logs:
            log.close()

    def check_alive(self) -> None:
        for home, child in self.children.items():
            if child.poll() is not None:
                raise NodeError(
                    f"the daemon of {home} exited with {child.returncode}; see {home}/daemon.log"
                )


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5
) -> None:
    """Poll `predicate` until it holds; NodeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise NodeError(f"timed out after {timeout:.0f} s waiting for {what}")
