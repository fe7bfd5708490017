"""`siku run`: the daemon. One TaskGroup on uvloop; SIGTERM or SIGINT stops it cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop
from aiohttp import web

from node.config import Config, HostPort
from node.context import NodeContext
from node.errors import NodeError
from node.http.admin import build_admin_app
from node.http.public import build_public_app
from node.keys import load_admin_token, load_identity
from storage.store import Store

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
                self.ready.set()
                # Later issues add long-running services (gossip, replication) to this group.
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._stop.wait())
                log.info("stopping")
            finally:
                await admin.cleanup()
                await public.cleanup()
        finally:
            await store.close()
        log.info("stopped")


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
