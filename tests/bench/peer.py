"""Benchmark: what authentication costs the peer API, and how long a cold chain check takes.

Authenticated small requests per second against the same requests unauthenticated, in one run:
a server process serves `POST /peer/v1/ping` through siku's real PeerServer (RFC 9421 request
check, chain lookup, nonce cache, signed response) and `POST /open/v1/ping` with the same
handler, same aiohttp stack and same answer but no authentication. A client process sends
64-byte bodies over keep-alive connections, 16 in flight: for the authenticated route through
siku's PeerClient (signs every request, verifies every answer's signature), after a hello as
the daemon does (so under the session it made: HMAC-SHA256), and, for comparison, with an
Ed25519 signature on every request and answer. Both processes run on uvloop, as the daemon
does. Target: authentication costs ≤ 30 % of throughput.

Cold chain check: verify_chain of a county node's full chain (county → municipal → provincial
certificates → root key: four keys, three signatures) with nothing cached, beside the time of
one Ed25519 verification measured in the same run.

    python -m tests.bench --only peer      (or: python -m tests.bench.peer run --runs 3)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench.common import Figure, Measure, free_port, log, median

if TYPE_CHECKING:
    from node.keys import Identity
    from node.peer.membership import MembershipView

__all__ = ["run_peer"]

TARGET_COST = 0.30
BODY = b"x" * 64
CONCURRENCY = 16
# open: no authentication; session: HMAC-SHA256 under the session a hello made (what daemons
# do after their first hello); ed25519: an Ed25519 signature on every request and answer.
MODES = ("open", "session", "ed25519")
SPECS_KEYS = ("national", "provincial", "municipal", "county")


# --- server and client processes -------------------------------------------------------------


async def _serve(home: Path, port: int) -> None:
    from aiohttp import web

    from node.config import load_config
    from node.enrolment import load_chain
    from node.http.problems import problem_middleware
    from node.keys import load_identity
    from node.network import load_network
    from node.peer.membership import MembershipView
    from node.peer.server import MSGPACK
    from node.peer.service import Peering
    from storage.store import Store

    config = load_config(home)
    identity = load_identity(config.key_file)
    network = load_network(config.network_file)
    store = await Store.open(config.store)
    membership = MembershipView(
        network, load_chain(config), store, clock=lambda: int(time.time() * 1000)
    )
    peering = Peering(config, identity, network, membership, store)

    async def open_ping(request: web.Request) -> web.Response:
        await request.read()
        _, out = await peering.handle_ping(None, b"")  # type: ignore[arg-type]
        return web.Response(body=out, content_type=MSGPACK)

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_post("/peer/v1/hello", peering.server.route(peering.handle_hello))
    app.router.add_post("/peer/v1/ping", peering.server.route(peering.handle_ping))
    app.router.add_post("/open/v1/ping", open_ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


async def _client(home: Path, server_home: Path, url: str, mode: str, requests: int) -> float:

    from node.config import load_config
    from node.enrolment import load_chain
    from node.keys import load_identity
    from node.network import load_network
    from node.peer.membership import MembershipView
    from storage.store import Store

    config = load_config(home)
    identity = load_identity(config.key_file)
    peer_key = load_identity(load_config(server_home).key_file).public_key
    store = await Store.open(config.store)
    membership = MembershipView(
        load_network(config.network_file),
        load_chain(config),
        store,
        lambda: int(time.time() * 1000),
    )
    try:
        return await _drive(url, mode, requests, identity, membership, peer_key)
    finally:
        await store.close()  # its worker thread would keep a failed client alive


async def _drive(
    url: str,
    mode: str,
    requests: int,
    identity: Identity,
    membership: MembershipView,
    peer_key: bytes,
) -> float:
    import aiohttp

    from node.peer.client import PeerClient

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = PeerClient(session, identity.key, membership.own_chain, membership)

        async def one() -> None:
            if mode != "open":
                await client.call(url, "/peer/v1/ping", BODY, peer_key)
            else:
                async with session.post(url + "/open/v1/ping", data=BODY) as resp:
                    await resp.read()
                    assert resp.status == 200

        if mode == "session":  # a hello first, as a daemon does: it makes the session
            from protocol.peering import AddressRecord, HelloMessage, sign_address

            address = AddressRecord(
                membership.network.id, identity.public_key, ("http://127.0.0.1:9",), 1
            )
            hello = HelloMessage(
                membership.network.id, membership.own_chain, sign_address(address, identity.key)
            )
            await client.hello(url, hello)
            assert url in client.sessions
        await one()  # warm-up: connection, chain presented once
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return requests / elapsed


# --- orchestration -----------------------------------------------------------------------------


def _ed25519_verify_seconds(samples: int = 2000) -> float:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    message = b"m" * 600
    signature = key.sign(message)
    started = time.perf_counter()
    for _ in range(samples):
        pub.verify(signature, message)
    return (time.perf_counter() - started) / samples


def _cold_chain_seconds(root: Path, samples: int = 300) -> list[float]:
    from node.config import load_config
    from node.enrolment import load_chain
    from node.network import load_network
    from protocol.membership import verify_chain

    config = load_config(root / "county")
    chain = load_chain(config)
    assert len(chain) == 3
    network = load_network(config.network_file)
    now = int(time.time() * 1000)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        verify_chain(chain, root=network.root_public_key, now_ms=now)
        times.append(time.perf_counter() - started)
    return times


def _build(root: Path) -> None:
    from node.demo import DEMO_NODES, build_network

    if not (root / "county" / "membership" / "chain.siku").exists():
        build_network(root, DEMO_NODES)


def run_peer(workdir: Path, runs: int, requests: int) -> list[Figure]:
    root = workdir / "peer"
    _build(root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.peer", "serve", str(root / "national"), str(port)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("bench peer server did not start")
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        for run in range(runs):
            for mode in MODES:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "tests.bench.peer",
                        "client",
                        str(root / "county"),
                        str(root / "national"),
                        url,
                        mode,
                        str(requests),
                    ],
                    check=True,
                    capture_output=True,
                    env=env,
                )
                rate = float(json.loads(out.stdout)["rate"])
                rates[mode].append(rate)
                log(f"peer ping {mode} run {run + 1}: {rate:,.0f} requests/s")
    finally:
        server.terminate()
        server.wait(10)
    session, ed, unauth = (median(rates[m]) for m in ("session", "ed25519", "open"))
    cost = 1 - session / unauth
    verify_s = [_ed25519_verify_seconds() for _ in range(3)]
    chain_s = _cold_chain_seconds(root)
    one_verify_us = median(verify_s) * 1e6
    chain_us = median(chain_s) * 1e6
    return [
        Figure(
            benchmark="peer API: signed ping, 64 B body, 16 in flight",
            figure=Measure("authenticated (session HMAC)", "req/s", tuple(rates["session"])),
            baselines=[
                Measure("same requests unauthenticated", "req/s", tuple(rates["open"])),
                Measure("Ed25519 on every request and answer", "req/s", tuple(rates["ed25519"])),
            ],
            ratios=[
                ("session/unauth", session / unauth),
                ("cost", cost),
                ("ed25519/unauth", ed / unauth),
            ],
            target=f"cost ≤ {TARGET_COST:.0%}",
            met=cost <= TARGET_COST,
            notes=[
                "client: siku's PeerClient signs each request and verifies each signed answer;"
                " server: signature, digest, skew, nonce, receiver, cached chain re-checked,"
                " answer signed. Session = HMAC-SHA256 (RFC 9421) under the key an"
                " Ed25519-signed hello agreed by X25519"
            ],
        ),
        Figure(
            benchmark="cold check of a county's full chain (3 certificates to the root)",
            figure=Measure("verify_chain, nothing cached", "µs", tuple(t * 1e6 for t in chain_s)),
            baselines=[Measure("one Ed25519 verification", "µs", tuple(t * 1e6 for t in verify_s))],
            ratios=[("chain / one verify", chain_us / one_verify_us)],
            target="(reported)",
            met=None,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.peer")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("home", type=Path)
    s.add_argument("port", type=int)
    c = sub.add_parser("client")
    c.add_argument("home", type=Path)
    c.add_argument("server_home", type=Path)
    c.add_argument("url")
    c.add_argument("mode", choices=MODES)
    c.add_argument("requests", type=int)
    r = sub.add_parser("run")
    r.add_argument("--workdir", type=Path, default=Path("bench-data"))
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    import uvloop

    if args.cmd == "serve":
        uvloop.run(_serve(args.home, args.port))
    elif args.cmd == "client":
        rate = uvloop.run(_client(args.home, args.server_home, args.url, args.mode, args.requests))
        sys.stdout.write(json.dumps({"rate": rate}) + "\n")
    else:
        from tests.bench.report import render

        figures = run_peer(args.workdir.resolve(), args.runs, args.requests)
        sys.stdout.write(render({"benchmark": "peer API"}, figures, []) + "\n")


if __name__ == "__main__":
    main()
