"""node.peer.client.PeerClient reads an answer bounded by `max_answer`, whether the peer says
its length up front or streams it without one (chunked): past the bound it stops reading and
counts the peer as misbehaving. Against a stub peer on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.peer.client import PeerClient, PeerMisbehavedError
from protocol import httpsig

LIMIT = 64 * 1024


async def _sized(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * (LIMIT + 1))


async def _streamed(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(64):  # 64 × 4 KiB = 4 × the bound, in small pieces
        await resp.write(b"y" * 4096)
    await resp.write_eof()
    return resp


async def _fitting(request: web.Request) -> web.Response:
    return web.Response(body=b"z" * LIMIT)


@pytest.fixture
async def peer() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/sized", _sized)
    app.router.add_post("/streamed", _streamed)
    app.router.add_post("/fitting", _fitting)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = cast(Any, site._server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _post(url: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        client = PeerClient(session, Ed25519PrivateKey.generate(), (), cast(Any, None))
        status, _, body, _ = await client._post(
            url, path, b"", httpsig.ANY_RECEIVER, chain=False, max_answer=LIMIT
        )
        return status, body


@pytest.mark.parametrize("path", ["/sized", "/streamed"])
async def test_an_answer_over_the_bound_is_refused(peer: str, path: str) -> None:
    with pytest.raises(PeerMisbehavedError) as raised:
        await _post(peer, path)
    assert raised.value.problem_code == "body-too-large"


async def test_an_answer_at_the_bound_is_read_whole(peer: str) -> None:
    assert await _post(peer, "/fitting") == (200, b"z" * LIMIT)
