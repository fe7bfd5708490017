"""Creating a node's home: node.toml, keys, network description and an empty store."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from node.config import CONFIG_FILE, Config, parse_config, render_config
from node.enrolment import copy_network
from node.errors import HomeError
from node.keys import Identity, create_admin_token, create_identity
from node.network import NetworkDescription, load_network
from storage.store import Store

T = TypeVar("T")


def with_store(config: Config, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Open the home's store, run `fn` on it, close it: for commands run outside the daemon."""

    async def go() -> T:
        store = await Store.open(config.store)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


__all__ = ["init_home", "with_store"]


def init_home(
    home: Path,
    *,
    name: str,
    code: str,
    tier: str,
    region: str = "",
    parent: str = "",
    listen: str = "127.0.0.1:8470",
    public_url: str = "",
    admin_listen: str = "127.0.0.1:8471",
    network_file: Path | None = None,
    network_name: str = "siku",
    ark_naan: str = "99999",
    quota_gib: int = 4096,
    hello_interval_seconds: int = 30,
    sync_interval_seconds: int = 30,
    replication_interval_seconds: int = 60,
    subscribe: tuple[str, ...] = (),
    replication: bool = True,
    zeroconf: bool = False,
    force: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[Config, Identity, NetworkDescription | None]:
    """Write a new home. Everything is validated before the disk is touched; with `force` an
    existing home's store, keys and membership are kept aside (renamed), never deleted."""
    network = load_network(network_file) if network_file is not None else None
    if network is not None:  # the network's name and identifier prefix, not the defaults
        network_name, ark_naan = network.name, network.ark_naan
    text = render_config(
        name=name,
        code=code,
        tier=tier,
        region=region,
        parent=parent,
        listen=listen,
        public_url=public_url,
        admin_listen=admin_listen,
        network_name=network_name,
        ark_naan=ark_naan,
        quota_gib=quota_gib,
        hello_interval_seconds=hello_interval_seconds,
        sync_interval_seconds=sync_interval_seconds,
        replication_interval_seconds=replication_interval_seconds,
        subscribe=subscribe,
        replication=replication,
        zeroconf=zeroconf,
    )
    config = parse_config(tomllib.loads(text), home.resolve())
    if (home / CONFIG_FILE).exists() and not force:
        raise HomeError(
            f"{home} is already a siku home (it has {CONFIG_FILE}); use --force to replace it"
            " (the old store and keys are kept aside, not deleted)"
        )
    home.mkdir(mode=0o750, parents=True, exist_ok=True)
    if force:
        # The old records and certificate belong to the old key: keep them, never delete.
        stamp = int(time.time())
        for old in (config.store.root, config.key_file.parent, config.chain_file.parent):
            if old.exists():
                aside = old.with_name(f"{old.name}.replaced-{stamp}")
                old.rename(aside)
                say(f"kept the previous {old.name} at {aside}")
    identity = create_identity(config.key_file, force=force)
    create_admin_token(config.token_file, force=force)
    tmp = home / (CONFIG_FILE + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(home / CONFIG_FILE)
    if network_file is not None:
        copy_network(network_file, home)

    async def nothing(store: Store) -> None:
        return None

    with_store(config, nothing)  # creates the store and applies its migrations
    return config, identity, network
