"""`siku run`: the daemon. One TaskGroup on uvloop; SIGTERM or SIGINT stops it cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import aiohttp
import uvloop
from aiohttp import web

from node.config import Config, HostPort
from node.context import VERSION, NodeContext
from node.enrolment import load_chain
from node.errors import NodeError
from node.http.admin import build_admin_app
from node.http.public import build_public_app
from node.keys import Identity, load_admin_token, load_identity
from node.network import load_network
from node.peer.membership import MembershipView
from node.peer.service import Peering
from node.peer.sync import CatalogueSync
from node.replication import Replication
from protocol.errors import ProtocolError
from storage.store import Store
from sync.engine import SyncSettings

__all__ = ["Daemon", "run_daemon"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.config
        identity = load_identity(config.key_file)
        token = load_admin_token(config.token_file)
        store = await Store.open(config.store)
        try:
            ctx = NodeContext(config, identity, store, token)
            ctx.peering = await _peering(config, identity, store)
            if ctx.peering is not None:
                ctx.sync = CatalogueSync(
                    ctx.peering,
                    store,
                    interval_s=config.sync_interval_seconds,
                    settings=SyncSettings(),
                )
                ctx.peering.events = ctx.events
                await ctx.sync.start()
                if config.replication.enabled:
                    ctx.replication = Replication(config, identity, store, ctx.peering, ctx.sync)
                    ctx.sync.on_change = ctx.replication.changed
            public = web.AppRunner(
                build_public_app(ctx), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
            )
            admin = web.AppRunner(build_admin_app(ctx), access_log=None)
            await public.setup()
            await admin.setup()
            try:
                await _start_site(public, config.listen)
                await _start_site(admin, config.admin_listen)
                log.info(
                    "node %s (%s, %s) serving %s, admin on %s",
                    identity.node_id,
                    config.name,
                    config.tier,
                    config.listen.url(),
                    config.admin_listen.url(),
                )
                ctx.events.record("info", "node-started", f"{config.name} {VERSION} started")
                self.ready.set()
                async with asyncio.TaskGroup() as tg:
                    stop = tg.create_task(self._stop.wait())
                    services = [tg.create_task(self._peers(ctx))] if ctx.peering else []
                    await stop
                    for task in services:
                        task.cancel()
                log.info("stopping")
                if ctx.peering is not None:
                    await ctx.peering.save()
            finally:
                await admin.cleanup()
                await public.cleanup()
        finally:
            await store.close()
        log.info("stopped")

    async def _peers(self, ctx: NodeContext) -> None:
        assert ctx.peering is not None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.TaskGroup() as tg:
            tg.create_task(ctx.peering.run(session))
            if ctx.sync is not None:
                tg.create_task(ctx.sync.run())
            if ctx.replication is not None:
                tg.create_task(ctx.replication.run())
            if ctx.config.zeroconf:
                from node.peer.discovery import run_discovery  # zeroconf loads only if used

                tg.create_task(run_discovery(ctx.config, ctx.identity, ctx.peering))


async def _peering(config: Config, identity: Identity, store: Store) -> Peering | None:
    """The peer service if this node is enrolled in a network with a valid chain, else None
    (the node then serves readers alone, and says why in the log)."""
    if not config.network_file.exists():
        log.info("no network.toml: running standalone, without peers")
        return None
    network = load_network(config.network_file)
    chain = load_chain(config)
    if not chain:
        log.warning(
            "not enrolled in network %r yet: no peers until `siku enroll accept`", network.name
        )
        return None
    membership = MembershipView(network, chain, store, clock=lambda: int(time.time() * 1000))
    await membership.load()
    try:
        leaf = membership.check_own()
    except ProtocolError as e:
        log.error("this node's own certificate chain is not valid (%s): no peers", e.message)
        return None
    if leaf.subject.public_key != identity.public_key:
        log.error("the installed certificate is for another key: no peers")
        return None
    return Peering(config, identity, network, membership, store)


async def _start_site(runner: web.AppRunner, where: HostPort) -> None:
    site = web.TCPSite(runner, where.host, where.port, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        raise NodeError(f"cannot listen on {where}: {e.strerror} (is another node running?)") from e


def run_daemon(config: Config) -> None:
    async def main() -> None:
        daemon = Daemon(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stop)
        await daemon.run()

    uvloop.run(main())
