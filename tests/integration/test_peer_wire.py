"""Regression tests for the peer layer on real sockets (commit 8c06a1f): chains are believed
and cached only after a signature proves their holder, and answers are read whole however the
bytes arrive. Every server here is an aiohttp app on 127.0.0.1 inside the test."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.peer.client import HELLO_PATH, PeerClient, PeerMisbehavedError, PeerRefusedError
from node.peer.membership import Admitted, MembershipView
from node.peer.server import CHAIN_HEADER, MSGPACK, PeerServer, Rejections
from protocol import httpsig
from protocol.membership import encode_bundle, verify_chain
from protocol.peering import (
    MAX_HELLO_BYTES,
    AddressRecord,
    HelloMessage,
    encode_hello,
    sign_address,
)
from protocol.records import SignedRecord
from storage.store import Store, StoreSettings
from tests.node.test_peer_security import Network, make_network
from tests.peer_helpers import Member, certify, now_ms

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return make_network(tmp_path / "network")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(StoreSettings(tmp_path / "store", 1 << 30))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """An aiohttp app with POST `routes` on a free port of 127.0.0.1; yields its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def hello_of(network: Network, member: Member, url: str) -> HelloMessage:
    address = AddressRecord(network.id, member.public_key, (url,), now_ms())
    return HelloMessage(network.id, member.chain, sign_address(address, member.key))


def chain_header(chain: tuple[SignedRecord, ...]) -> str:
    return base64.b64encode(encode_bundle(chain)).decode("ascii")


def signed_headers(
    key: Ed25519PrivateKey, body: bytes, chain: tuple[SignedRecord, ...], claim: str | None = None
) -> dict[str, str]:
    """A first-contact request's headers signed by `key`; `claim` rewrites the key id (a
    forgery: the signature then cannot verify under the claimed node's key)."""
    headers = httpsig.sign_request(
        key,
        method="POST",
        path=HELLO_PATH,
        query="",
        body=body,
        created=int(time.time()),
        nonce=secrets.token_urlsafe(24),
        to=httpsig.ANY_RECEIVER,
    )
    if claim is not None:
        signer_id = headers["Signature-Input"].split('keyid="')[1].split('"')[0]
        headers["Signature-Input"] = headers["Signature-Input"].replace(signer_id, claim)
    headers["Content-Type"] = MSGPACK
    headers[CHAIN_HEADER] = chain_header(chain)
    return headers


async def parse(request: web.Request) -> tuple[httpsig.PendingRequest, bytes]:
    body = await request.read()
    pending = httpsig.parse_request(
        method=request.method,
        path=request.rel_url.raw_path,
        query=request.rel_url.raw_query_string,
        headers=request.headers,
        body=body,
        now=int(time.time()),
    )
    return pending, body


# --- S2: a chain is believed only from its key's holder -----------------------------------------


async def test_spoofed_chain_with_bad_signature_is_not_cached(
    network: Network, store: Store, http: aiohttp.ClientSession
) -> None:
    view = MembershipView(network.description, list(network.gansu.chain), store, now_ms)
    server = PeerServer(network.gansu.key, view, Rejections(), 1 << 20, time.time)
    seen: list[Admitted] = []

    async def handler(admitted: Admitted, body: bytes) -> tuple[int, bytes]:
        seen.append(admitted)
        return 200, b"ok"

    member = network.dunhuang  # chain X: certified by jiuquan
    # Chain Y: a second valid certificate for dunhuang's key, from the other Jiuquan library.
    spoof = certify(
        network.jiuquan2, member.key, network.id,
        name="Dunhuang", code="dh", tier="county", region="620982",
    )  # fmt: skip
    valid = verify_chain(spoof.chain, root=network.description.root_public_key, now_ms=now_ms())
    assert valid.subject.node_id == member.node_id  # Y is valid too

    async with serving({HELLO_PATH: server.route(handler)}) as url:
        body = b"hello"
        async with http.post(
            url + HELLO_PATH, data=body, headers=signed_headers(member.key, body, member.chain)
        ) as resp:
            assert resp.status == 200, await resp.text()
        cached = view.cached(member.node_id)
        assert cached is not None and cached.chain == member.chain

        attacker = Ed25519PrivateKey.generate()
        forged = signed_headers(attacker, body, spoof.chain, claim=member.node_id)
        async with http.post(url + HELLO_PATH, data=body, headers=forged) as resp:
            assert resp.status == 401
            problem = await resp.json(content_type=None)
        assert problem["code"] == "bad-signature"

    cached = view.cached(member.node_id)
    assert cached is not None and cached.chain == member.chain  # still X, not Y
    assert len(seen) == 1
    assert server.rejections.by_code["bad-signature"] == 1


async def test_hello_answer_with_bad_signature_remembers_nothing(
    network: Network, store: Store, http: aiohttp.ClientSession
) -> None:
    impostor = Ed25519PrivateKey.generate()  # presents guazhou's chain without guazhou's key
    claimed = network.guazhou

    async def answer(request: web.Request) -> web.StreamResponse:
        pending, _ = await parse(request)
        out = encode_hello(hello_of(network, claimed, "http://127.0.0.1:1"))
        signed = httpsig.sign_response(
            impostor, status=200, body=out, created=int(time.time()), request=pending
        )
        signer_id = signed["Signature-Input"].split('keyid="')[1].split('"')[0]
        signed["Signature-Input"] = signed["Signature-Input"].replace(signer_id, claimed.node_id)
        return web.Response(body=out, headers={**signed, "Content-Type": MSGPACK})

    view = MembershipView(network.description, list(network.dunhuang.chain), store, now_ms)
    client = PeerClient(http, network.dunhuang.key, network.dunhuang.chain, view)
    async with serving({HELLO_PATH: answer}) as url:
        with pytest.raises(PeerMisbehavedError) as refused:
            await client.hello(url, hello_of(network, network.dunhuang, url))
    assert refused.value.problem_code == "bad-signature"
    assert view.cached(claimed.node_id) is None
    assert client.sessions == {}


# --- C1: answers in several TCP segments --------------------------------------------------------


def split_answer(network: Network, member: Member, parts: int, pause: float) -> Handler:
    """A server that answers a hello correctly, writing the body in `parts` with pauses."""

    async def answer(request: web.Request) -> web.StreamResponse:
        pending, _ = await parse(request)
        out = encode_hello(hello_of(network, member, str(request.url.origin())))
        signed = httpsig.sign_response(
            member.key, status=200, body=out, created=int(time.time()), request=pending
        )
        resp = web.StreamResponse(status=200, headers={**signed, "Content-Type": MSGPACK})
        resp.content_length = len(out)
        await resp.prepare(request)
        step = -(-len(out) // parts)
        for i in range(0, len(out), step):
            await resp.write(out[i : i + step])
            await asyncio.sleep(pause)
        await resp.write_eof()
        return resp

    return answer


async def test_hello_answer_in_several_segments(
    network: Network, store: Store, http: aiohttp.ClientSession
) -> None:
    view = MembershipView(network.description, list(network.dunhuang.chain), store, now_ms)
    client = PeerClient(http, network.dunhuang.key, network.dunhuang.chain, view)
    async with serving({HELLO_PATH: split_answer(network, network.guazhou, 3, 0.1)}) as url:
        outcome = await client.hello(url, hello_of(network, network.dunhuang, url))
    assert outcome.admitted.leaf.subject.node_id == network.guazhou.node_id
    assert outcome.hello.chain == network.guazhou.chain
    cached = view.cached(network.guazhou.node_id)  # remembered once the answer verified
    assert cached is not None and cached.chain == network.guazhou.chain


async def test_refusal_in_several_segments_arrives_whole(
    network: Network, store: Store, http: aiohttp.ClientSession
) -> None:
    problem = b'{"code": "revoked", "detail": "' + b"d" * 2_000 + b'"}'

    async def refuse(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=403, headers={"Content-Type": "application/json"})
        await resp.prepare(request)  # chunked: no length announced
        for i in range(0, len(problem), 700):
            await resp.write(problem[i : i + 700])
            await asyncio.sleep(0.02)
        await resp.write_eof()
        return resp

    view = MembershipView(network.description, list(network.dunhuang.chain), store, now_ms)
    client = PeerClient(http, network.dunhuang.key, network.dunhuang.chain, view)
    async with serving({HELLO_PATH: refuse}) as url:
        with pytest.raises(PeerRefusedError) as refused:
            await client.hello(url, hello_of(network, network.dunhuang, url))
    assert refused.value.problem_code == "revoked"


async def test_answer_over_the_limit_in_chunks_is_refused(
    network: Network, store: Store, http: aiohttp.ClientSession
) -> None:
    async def flood(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=200, headers={"Content-Type": MSGPACK})
        await resp.prepare(request)  # chunked: the limit can be seen only while reading
        chunk = b"\x00" * 65_536
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_HELLO_BYTES // len(chunk) + 2):
                await resp.write(chunk)
            await resp.write_eof()
        return resp

    view = MembershipView(network.description, list(network.dunhuang.chain), store, now_ms)
    client = PeerClient(http, network.dunhuang.key, network.dunhuang.chain, view)
    async with serving({HELLO_PATH: flood}) as url:
        with pytest.raises(PeerMisbehavedError) as refused:
            await client.hello(url, hello_of(network, network.dunhuang, url))
    assert refused.value.problem_code == "body-too-large"
