"""node.cli_status.daemon_get against a stub admin listener on 127.0.0.1: a refused token, a
daemon answering nonsense, and a section that fails while the status answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from node.cli_status import EVENTS_PATH, NETWORK_PATH, OVERVIEW_PATH, STATUS_PATH, daemon_get
from node.config import Config, load_config
from node.errors import NodeError
from node.home import init_home
from tests.peer_helpers import free_port_pair

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _answer(text: str, status: int = 200, content_type: str = "application/json") -> Handler:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=text, status=status, content_type=content_type)

    return handle


def _json(data: object, status: int = 200) -> Handler:
    return _answer(json.dumps(data), status)


@asynccontextmanager
async def _serve(routes: dict[str, Handler], port: int) -> AsyncIterator[None]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path.split("?")[0], handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    public = free_port_pair(set())
    init_home(
        tmp_path / "home",
        name="Stub",
        code="st",
        tier="provincial",
        listen=f"127.0.0.1:{public}",
        admin_listen=f"127.0.0.1:{public + 1}",
    )
    return load_config(tmp_path / "home")


async def _ask(config: Config, routes: dict[str, Handler], extra: list[str]) -> object:
    async with _serve(routes, config.admin_listen.port):
        return await daemon_get(config, extra)


async def test_no_daemon_is_none(config: Config) -> None:
    assert await daemon_get(config, [OVERVIEW_PATH]) is None


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_json({"code": "invalid-token"}, 401), "refused the admin token in keys/admin.token"),
        (_json({"code": "too-many-failures"}, 429), "too many wrong ones"),
        (_json({"code": "boom"}, 500), "answered 500"),
        (_json([1, 2, 3]), "not a JSON object"),
        (_answer("<html>", content_type="text/html"), "is not JSON"),
        (_answer("{nope"), "is not JSON"),
    ],
)
async def test_a_refusal_or_nonsense_is_a_sentence(
    config: Config, answer: Handler, says: str
) -> None:
    with pytest.raises(NodeError, match=says):
        await _ask(config, {STATUS_PATH: answer}, [OVERVIEW_PATH])


async def test_a_failing_section_is_named_and_the_status_still_shown(config: Config) -> None:
    routes = {
        STATUS_PATH: _json({"node": {"name": "Stub"}}),
        OVERVIEW_PATH: _json({"code": "boom"}, 500),
        EVENTS_PATH: _json({"events": []}),
        # NETWORK_PATH not served: 404
    }
    got = await _ask(config, routes, [OVERVIEW_PATH, EVENTS_PATH, NETWORK_PATH])
    assert isinstance(got, tuple)
    status, sections = got
    assert status == {"node": {"name": "Stub"}}
    assert sections[EVENTS_PATH] == {"events": []}
    assert "answered 500" in str(sections[OVERVIEW_PATH])
    assert "answered 404" in str(sections[NETWORK_PATH])
