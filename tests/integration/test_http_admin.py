"""The admin listener on a real 127.0.0.1 socket: bearer-token auth and the status document."""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import aiohttp
import pytest

from node.context import VERSION
from node.http.console import SESSION_COOKIE
from node.http.security import AUTH_FAILURE_LIMIT, AUTH_FAILURE_WINDOW_SECONDS
from protocol.records import CHUNK_SIZE, LangString, Rights
from tests.integration.conftest import QUOTA_BYTES, HttpNode

PROBLEM = "application/problem+json"
STATUS = "/admin/api/v1/status"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        (STATUS, {}, "unauthorized"),
        (STATUS, {"Authorization": "Basic YWRtaW46YWRtaW4="}, "unauthorized"),
        (STATUS, {"Authorization": "Bearer "}, "unauthorized"),
        (STATUS, bearer("wrong-token-" + "x" * 32), "invalid-token"),
        (STATUS, bearer("令牌"), "invalid-token"),
        ("/admin/api/v1/sync", {}, "unauthorized"),
        ("/admin/api/v1/sync", bearer("wrong-token-" + "x" * 32), "invalid-token"),
        ("/admin/api/v1/no-such-route", {}, "unauthorized"),  # routes are not revealed
        ("/", bearer("wrong"), "invalid-token"),
    ],
)
async def test_admin_requires_the_token(
    http_node: HttpNode,
    admin_url: str,
    http: aiohttp.ClientSession,
    caplog: Any,
    path: str,
    headers: dict[str, str],
    code: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with http.get(admin_url + path, headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.content_type == PROBLEM
        body = await resp.json(content_type=PROBLEM)
    assert body["status"] == 401 and body["code"] == code
    assert body["type"] == f"https://siku.invalid/problems/{code}"
    token = http_node.ctx.admin_token
    assert token not in caplog.text and token not in str(body)


async def test_admin_status(
    http_node: HttpNode, admin_url: str, http: aiohttp.ClientSession, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    shared = os.urandom(CHUNK_SIZE + 10)  # two chunks
    a = await http_node.add("A", files={"a.bin": shared, "small.txt": (b"small", "text/plain")})
    await http_node.add(
        (LangString("同一内容", "zh"),),
        files={"copy.bin": shared},  # same chunks as a.bin: stored and counted once
        rights=Rights("restricted"),
    )
    gone = await http_node.add("Gone", files={"gone.bin": b"gone gone gone"})
    await http_node.delete(gone.pid)

    token = http_node.ctx.admin_token
    async with http.get(admin_url + STATUS, headers=bearer(token)) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert resp.headers["Cache-Control"] == "no-store"
        status = await resp.json()

    ctx = http_node.ctx
    assert status["node"] == {
        "id": ctx.identity.node_id,
        "name": "测试县图书馆 Test County Library",
        "code": "bj",
        "tier": "county",
        "parent": "http://10.0.0.1:8470",
        "public_key": ctx.identity.public_key.hex(),
        "network": "siku-test",
        "ark_naan": "99999",
        "version": VERSION,
    }
    assert status["counts"] == {
        "records": 2,
        "deleted": 1,
        "files": 3,
        "content_bytes": a.content_size + len(shared),
        "chunks": 3,  # the two shared chunks and small.txt's
    }
    used = len(shared) + len(b"small")
    assert status["storage"]["used_bytes"] == used
    assert status["storage"]["quota_bytes"] == QUOTA_BYTES
    assert status["storage"]["free_fraction"] == pytest.approx(1 - used / QUOTA_BYTES, abs=1e-6)
    assert status["listen"] == {"public": "127.0.0.1:8470", "admin": "127.0.0.1:8471"}
    assert 0 <= status["uptime_seconds"] < 600
    started = dt.datetime.fromisoformat(status["started_at"].replace("Z", "+00:00"))
    assert started.tzinfo == dt.UTC
    assert abs((dt.datetime.now(dt.UTC) - started).total_seconds()) < 600
    assert token not in caplog.text
    assert status["sync"] == {"enabled": False}  # not enrolled: nothing to sync with


async def test_admin_sync_when_not_enrolled(
    http_node: HttpNode, admin_url: str, http: aiohttp.ClientSession
) -> None:
    token = http_node.ctx.admin_token
    async with http.get(admin_url + "/admin/api/v1/sync", headers=bearer(token)) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        assert await resp.json() == {"enabled": False, "peers": []}


async def test_wrong_tokens_past_the_limit_get_429_and_the_right_token_still_passes(
    http_node: HttpNode, admin_url: str, http: aiohttp.ClientSession
) -> None:
    token = http_node.ctx.admin_token
    login = admin_url + "/console/login"
    for i in range(AUTH_FAILURE_LIMIT):
        if i % 2:  # wrong tokens through the login form count too
            async with http.post(login, data={"token": f"wrong-{i}"}, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/console/login?failed=1"
            continue
        async with http.get(admin_url + STATUS, headers=bearer(f"wrong-{i}")) as resp:
            assert resp.status == 401
    # Past the limit: a wrong token waits a moment, then 429 with the time left in the window.
    async with http.get(admin_url + STATUS, headers=bearer("wrong-again")) as resp:
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= AUTH_FAILURE_WINDOW_SECONDS
        body = await resp.json(content_type=PROBLEM)
    assert body["code"] == "too-many-failures"
    async with http.post(login, data={"token": "wrong-again"}, allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/console/login?wait=")
        assert SESSION_COOKIE not in resp.cookies
    # The right token is never locked out: not the API, not the console login.
    async with http.get(admin_url + STATUS, headers=bearer(token)) as resp:
        assert resp.status == 200
    async with http.post(login, data={"token": token}, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/"
        assert SESSION_COOKIE in resp.cookies
    # ... and the attempts show in /metrics.
    async with http.get(admin_url + "/metrics", headers=bearer(token)) as resp:
        text = await resp.text()
    assert 'siku_admin_auth_failures_total{outcome="refused"} 10.0' in text, text
    assert 'siku_admin_auth_failures_total{outcome="over_limit"} 2.0' in text, text
