"""Zeroconf (mDNS/DNS-SD) on a library's LAN: advertise `_siku._tcp` and dial what we find.

Off unless node.toml says `[discovery] zeroconf = true`: mDNS multicasts on every interface.
What it finds is only a URL to try: the hello that follows decides whether the node there is a
member. The TXT record carries the node id, the network id and the peer URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from urllib.parse import urlsplit

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from node.config import Config
from node.keys import Identity
from node.peer.service import Peering
from protocol.errors import ValidationError
from protocol.peering import validate_peer_url

__all__ = ["SERVICE_TYPE", "run_discovery"]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_siku._tcp.local."
RESOLVE_TIMEOUT_MS = 3_000
MAX_PENDING = 64


def _service_info(config: Config, identity: Identity, network_id: str) -> AsyncServiceInfo:
    host = urlsplit(config.public_url).hostname or config.listen.host
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = []  # a host name: peers use the URL in the TXT record
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{identity.node_id}.{SERVICE_TYPE}",
        port=config.listen.port,
        properties={"id": identity.node_id, "net": network_id, "url": config.public_url},
        server=f"{identity.node_id}.local.",
        parsed_addresses=addresses or None,
    )


async def run_discovery(config: Config, identity: Identity, peering: Peering) -> None:
    network_id = peering.network.id
    found: asyncio.Queue[str] = asyncio.Queue(MAX_PENDING)

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            with contextlib.suppress(asyncio.QueueFull):  # bounded: the next update retries
                found.put_nowait(name)

    aiozc = AsyncZeroconf()
    browser: AsyncServiceBrowser | None = None
    try:
        await aiozc.async_register_service(_service_info(config, identity, network_id))
        browser = AsyncServiceBrowser(aiozc.zeroconf, SERVICE_TYPE, handlers=[on_change])
        log.info("zeroconf: advertising and browsing %s", SERVICE_TYPE)
        while True:
            name = await found.get()
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(aiozc.zeroconf, RESOLVE_TIMEOUT_MS):
                continue
            url = _url_of(info, network_id, identity.node_id)
            if url is not None:
                log.info("zeroconf: found %s at %s", name.split(".")[0], url)
                peering.add_discovered(url)
    finally:
        if browser is not None:
            await browser.async_cancel()
        await aiozc.async_unregister_all_services()
        await aiozc.async_close()


def _url_of(info: AsyncServiceInfo, network_id: str, own_id: str) -> str | None:
    props = {
        k.decode("ascii", "replace"): (v or b"").decode("utf-8", "replace")
        for k, v in info.properties.items()
    }
    if props.get("net") != network_id or props.get("id") == own_id:
        return None  # another network's node, or our own advertisement
    try:
        return validate_peer_url(props.get("url", ""))
    except ValidationError:
        pass
    addresses = info.parsed_addresses()
    if not addresses or not info.port:
        return None
    host = addresses[0]
    return f"http://[{host}]:{info.port}" if ":" in host else f"http://{host}:{info.port}"
