"""The peer API of real daemons under attack: hand-made requests, chains and signatures.

One network is built per module with the real enrolment code; four of its daemons run:

    gansu      the target (provincial 620000); holds a revocation of guazhou
    guangdong  a second node (provincial 440000) for replays; not connected to gansu
    guazhou    a county whose own certificate is revoked (in its own store)
    yumen      a county whose own certificate has expired

The test process holds the root key and every node key, so it can mint any chain. Every refusal
is checked four ways: HTTP status, the problem+json `code`, a line in the target's daemon.log
naming the code, and a count against the caller in /admin/api/v1/peers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import aiohttp
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.demo import NodeSpec, Processes, build_network
from node.enrolment import load_chain, make_revocation, network_init, write_file
from node.keys import load_identity
from node.network import NetworkDescription, load_network
from node.peer.client import HELLO_PATH, PeerClient
from node.peer.membership import MembershipView
from node.peer.server import CHAIN_HEADER, MSGPACK
from protocol import httpsig
from protocol.identity import node_id, sign
from protocol.membership import (
    decode_certificate,
    encode_bundle,
)
from protocol.peering import (
    MAX_HELLO_BYTES,
    AddressRecord,
    HelloMessage,
    decode_hello,
    encode_hello,
    sign_address,
)
from protocol.records import SignedRecord, signing_bytes
from storage.store import Store
from tests.conftest import siku_command, siku_env
from tests.peer_helpers import DAY_MS, Member, certify, free_port_pair, now_ms

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 30
LOG_SECONDS = 10
MAX_BODY_BYTES = 1 << 20  # http.max_body_bytes as `build_network` writes it
PROBLEM_JSON = "application/problem+json"
LOCAL = "127.0.0.1"  # how a caller is counted until its signature has verified


def _hello(member: Member, network: str, url: str) -> bytes:
    """A well-formed hello from `member`, announcing `url` as its address."""
    address = AddressRecord(network, member.public_key, (url,), now_ms())
    message = HelloMessage(
        network=network,
        chain=member.chain,
        address=sign_address(address, member.key),
    )
    return encode_hello(message)


def _chain_header(chain: tuple[SignedRecord, ...]) -> str:
    return base64.b64encode(encode_bundle(chain)).decode("ascii")


def _signed(
    member: Member,
    body: bytes,
    *,
    created: int | None = None,
    with_chain: bool = True,
    path: str = HELLO_PATH,
    to: str = httpsig.ANY_RECEIVER,
) -> dict[str, str]:
    """The headers a correct client sends: signature, digest, receiver (by default "anyone",
    as on first contact) and (by default) its chain."""
    headers = httpsig.sign_request(
        member.key,
        method="POST",
        path=path,
        query="",
        body=body,
        created=int(time.time()) if created is None else created,
        nonce=secrets.token_urlsafe(24),
        to=to,
    )
    headers["Content-Type"] = MSGPACK
    if with_chain:
        headers[CHAIN_HEADER] = _chain_header(member.chain)
    return headers


# --- the running nodes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Daemon:
    spec: NodeSpec
    home: Path
    public_key: bytes

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.spec.port + 1}"

    @property
    def token(self) -> str:
        return (self.home / "keys" / "admin.token").read_text(encoding="utf-8").strip()

    def log(self) -> str:
        return (self.home / "daemon.log").read_text(encoding="utf-8", errors="replace")


@dataclass
class Lab:
    root: Path
    network: NetworkDescription
    specs: dict[str, NodeSpec]
    members: dict[str, Member]
    daemons: dict[str, Daemon]
    processes: Processes
    other_network_root: Member = field(init=False)

    def __post_init__(self) -> None:
        # A whole second network, made the way `siku network init` makes one.
        key_path, _, _ = network_init(
            self.root / "elsewhere", name="another network", ark_naan="99999"
        )
        self.other_network_root = Member(load_identity(key_path).key, ())


# key, name, code, tier, region, parent
LIBRARIES: tuple[tuple[str, str, str, str, str, str | None], ...] = (
    ("national", "国家图书馆 National Library", "zg", "national", "000000", None),
    ("gansu", "甘肃省图书馆 Gansu", "gs", "provincial", "620000", None),
    ("guangdong", "广东省立中山图书馆 Guangdong", "gd", "provincial", "440000", None),
    ("jiuquan", "酒泉市图书馆 Jiuquan", "jq", "municipal", "620900", "gansu"),
    ("dunhuang", "敦煌市图书馆 Dunhuang", "dh", "county", "620982", "jiuquan"),
    ("guazhou", "瓜州县图书馆 Guazhou", "gz", "county", "620923", "jiuquan"),
    ("yumen", "玉门市图书馆 Yumen", "jm", "county", "620981", "jiuquan"),
)


def _specs() -> list[NodeSpec]:
    taken: set[int] = set()
    return [NodeSpec(*row, port=free_port_pair(taken)) for row in LIBRARIES]


RUNNING = ("gansu", "guangdong", "guazhou", "yumen")


def _siku(*args: str) -> None:
    proc = subprocess.run(
        siku_command(*args), capture_output=True, text=True, env=siku_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def _admin_up(daemon: Daemon) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", daemon.spec.port + 1), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("peer-api")
    specs = _specs()
    configs = build_network(root, specs, hello_interval_seconds=1)
    network = load_network(root / "network" / "network.toml")
    members = {
        key: Member(load_identity(config.key_file).key, tuple(load_chain(config)))
        for key, config in configs.items()
    }
    # Jiuquan revokes Guazhou; the target and Guazhou itself import the revocation.
    _, revocation = make_revocation(
        members["jiuquan"].key, network, members["guazhou"].public_key, "test"
    )
    revocation_file = root / "guazhou.revoked.siku"
    write_file(revocation_file, encode_bundle([revocation]))
    for key in ("gansu", "guazhou"):
        _siku("enroll", "import", "--home", str(root / key), str(revocation_file))
    # Yumen's installed chain has expired (`enroll accept` would refuse it: write it directly).
    now = now_ms()
    expired = certify(
        members["jiuquan"], members["yumen"].key, network.id,
        name="玉门市图书馆 Yumen", code="jm", tier="county", region="620981",
        not_before_ms=now - 2 * DAY_MS, not_after_ms=now - DAY_MS,
    )  # fmt: skip
    write_file(configs["yumen"].chain_file, encode_bundle(expired.chain))

    by_key = {s.key: s for s in specs}
    daemons = {key: Daemon(by_key[key], root / key, members[key].public_key) for key in RUNNING}
    with Processes([d.home for d in daemons.values()]) as processes:
        deadline = time.monotonic() + STARTUP_SECONDS
        for daemon in daemons.values():
            while not _admin_up(daemon):
                processes.check_alive()
                assert time.monotonic() < deadline, f"{daemon.spec.key} did not start"
                time.sleep(0.1)
        yield Lab(root, network, by_key, members, daemons, processes)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers.get("Content-Type", "").startswith(PROBLEM_JSON), self.headers
        data: dict[str, Any] = json.loads(self.body)
        return data


async def _post(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    headers: Mapping[str, str],
    body: bytes,
    path: str = HELLO_PATH,
) -> Answer:
    async with http.post(daemon.url + path, data=body, headers=dict(headers)) as resp:
        got = dict(resp.headers.items())
        return Answer(resp.status, got, await resp.read())


async def _rejections(http: aiohttp.ClientSession, daemon: Daemon) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {daemon.token}"}
    async with http.get(daemon.admin + "/admin/api/v1/peers", headers=headers) as resp:
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
    assert data["enrolled"] is True
    rejections: dict[str, Any] = data["rejections"]
    return rejections


def _count(rejections: dict[str, Any], caller: str, code: str) -> int:
    """How many requests from `caller` were refused with `code`."""
    count: int = rejections["by_caller"].get(caller, {}).get(code, 0)
    return count


def _refusal_lines(daemon: Daemon, caller: str, code: str) -> list[str]:
    return [
        line
        for line in daemon.log().splitlines()
        if f" from {caller} (" in line and f"refused: {code}:" in line
    ]


@dataclass(frozen=True)
class Attempt:
    """A request to send, what must come back, and whom the refusal must be counted against."""

    headers: dict[str, str]
    body: bytes
    status: int
    code: str
    # Whom the refusal is counted against: the key id once the signature has verified (only
    # that proves who is calling), the address before.
    callers: tuple[str, ...]
    detail: str = ""  # a phrase the problem's detail must contain (tells invalid-chains apart)
    repeat: bool = False  # send it twice; the second one is refused
    path: str = HELLO_PATH


async def _expect_refusal(http: aiohttp.ClientSession, target: Daemon, attempt: Attempt) -> Answer:
    """Send `attempt` and check the status, the problem, the log line and the counts."""
    before = await _rejections(http, target)
    lines_before = {c: len(_refusal_lines(target, c, attempt.code)) for c in attempt.callers}
    if attempt.repeat:
        first = await _post(http, target, attempt.headers, attempt.body, attempt.path)
        assert first.status == 200, first.body
    answer = await _post(http, target, attempt.headers, attempt.body, attempt.path)

    assert answer.status == attempt.status, answer.body
    problem = answer.problem()
    assert problem["code"] == attempt.code, problem
    assert problem["status"] == attempt.status
    assert problem["type"].endswith("/" + attempt.code)
    assert attempt.detail in problem["detail"], problem
    assert answer.headers.get("Cache-Control") == "no-store"

    after = await _rejections(http, target)
    by_code = after["by_code"].get(attempt.code, 0) - before["by_code"].get(attempt.code, 0)
    assert by_code == 1, (attempt.code, before, after)
    counted = {
        c: _count(after, c, attempt.code) - _count(before, c, attempt.code) for c in attempt.callers
    }
    assert sorted(counted.values()) == [0] * (len(counted) - 1) + [1], (attempt.code, counted)
    caller = next(c for c, n in counted.items() if n == 1)

    deadline = time.monotonic() + LOG_SECONDS
    while len(_refusal_lines(target, caller, attempt.code)) <= lines_before[caller]:
        assert time.monotonic() < deadline, (
            f"no log line for {attempt.code} from {caller} in {target.home}/daemon.log"
        )
        await asyncio.sleep(0.05)
    return answer


# --- the attempts -------------------------------------------------------------------------------


def _fresh_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _honest(lab: Lab) -> Member:
    return lab.members["dunhuang"]


def _honest_body(lab: Lab) -> bytes:
    return _hello(_honest(lab), lab.network.id, lab.specs["dunhuang"].url)


def _unknown_chain(lab: Lab) -> Attempt:
    stranger = Member(_fresh_key(), ())
    body = b"\x90"
    headers = _signed(stranger, body, with_chain=False)
    return Attempt(headers, body, 401, "unknown-chain", (LOCAL,), "no certificate chain")


def _forged_link(lab: Lab) -> Attempt:
    # A municipal certificate that says Gansu issued it, but the forger signed it.
    forger, gansu = _fresh_key(), lab.members["gansu"]
    genuine = certify(
        gansu, forger, lab.network.id,
        name="假冒 Forged Municipal", code="jf", tier="municipal", region="620900",
    )  # fmt: skip
    link = genuine.chain[0]
    forged = replace(link, signature=sign(forger, signing_bytes(link.kind, link.body)))
    county = certify(
        Member(forger, (forged, *gansu.chain)), _fresh_key(), lab.network.id,
        name="假冒 Forged County", code="xf", tier="county", region="620982",
    )  # fmt: skip
    body = _hello(county, lab.network.id, "http://127.0.0.1:9")
    return Attempt(
        _signed(county, body), body, 403, "invalid-chain", (LOCAL,),
        "certificate 2 of the chain",
    )  # fmt: skip


def _sibling_province(lab: Lab) -> Attempt:
    # Guangdong (440000) certifies a municipal library of Gansu (620100).
    intruder = certify(
        lab.members["guangdong"], _fresh_key(), lab.network.id,
        name="兰州市图书馆 Lanzhou", code="nz", tier="municipal", region="620100",
    )  # fmt: skip
    body = _hello(intruder, lab.network.id, "http://127.0.0.1:9")
    return Attempt(
        _signed(intruder, body), body, 403, "invalid-chain", (LOCAL,),
        "another province",
    )  # fmt: skip


def _chain_too_long(lab: Lab) -> Attempt:
    # A county "certifying" a node below it: four links, one more than any member has.
    below = certify(
        _honest(lab), _fresh_key(), lab.network.id,
        name="乡镇 Township", code="xz", tier="county", region="620982",
    )  # fmt: skip
    assert len(below.chain) == 4
    body = b"\x90"
    return Attempt(_signed(below, body), body, 403, "invalid-chain", (LOCAL,), "longer than 3")


def _not_the_signers_chain(lab: Lab) -> Attempt:
    # Jiuquan signs, but presents Dunhuang's (valid) chain.
    jiuquan = lab.members["jiuquan"]
    body = _honest_body(lab)
    headers = _signed(Member(jiuquan.key, _honest(lab).chain), body)
    return Attempt(headers, body, 403, "invalid-chain", (LOCAL,), "not the signer's")


def _wrong_network(lab: Lab) -> Attempt:
    root = lab.other_network_root
    other_network = node_id(root.public_key)
    assert other_network != lab.network.id
    member = certify(
        root, _fresh_key(), other_network,
        name="甘肃省图书馆 Gansu", code="gs", tier="provincial", region="620000",
    )  # fmt: skip
    body = _hello(member, other_network, "http://127.0.0.1:9")
    return Attempt(_signed(member, body), body, 403, "wrong-network", (LOCAL,), "another network")


def _revoked(lab: Lab) -> Attempt:
    guazhou = lab.members["guazhou"]
    body = _hello(guazhou, lab.network.id, lab.specs["guazhou"].url)
    return Attempt(_signed(guazhou, body), body, 403, "revoked", (LOCAL,), "is revoked")


def _expired(lab: Lab) -> Attempt:
    now = now_ms()
    member = certify(
        lab.members["jiuquan"], _fresh_key(), lab.network.id,
        name="金塔县图书馆 Jinta", code="jt", tier="county", region="620921",
        not_before_ms=now - 2 * DAY_MS, not_after_ms=now - DAY_MS,
    )  # fmt: skip
    body = _hello(member, lab.network.id, "http://127.0.0.1:9")
    return Attempt(_signed(member, body), body, 403, "expired", (LOCAL,), "not valid now")


def _clock_skew(seconds: int) -> Callable[[Lab], Attempt]:
    def attempt(lab: Lab) -> Attempt:
        body = _honest_body(lab)
        headers = _signed(_honest(lab), body, created=int(time.time()) + seconds)
        return Attempt(headers, body, 401, "clock-skew", (LOCAL,))

    return attempt


def _replayed_nonce(lab: Lab) -> Attempt:
    body = _honest_body(lab)
    return Attempt(
        _signed(_honest(lab), body), body, 401, "replayed-nonce", (_honest(lab).node_id,),
        "already received", repeat=True,
    )  # fmt: skip


def _digest_mismatch(lab: Lab) -> Attempt:
    body = _honest_body(lab)
    headers = _signed(_honest(lab), body)
    changed = body[:-1] + bytes([body[-1] ^ 1])
    return Attempt(headers, changed, 400, "digest-mismatch", (LOCAL,))


def _body_too_large(lab: Lab) -> Attempt:
    # http.max_body_bytes bounds every peer route but the hello (bounded by its own format).
    body = b"\x00" * (MAX_BODY_BYTES + 1)
    headers = _signed(_honest(lab), body, path="/peer/v1/ping")
    return Attempt(headers, body, 413, "body-too-large", (LOCAL,), path="/peer/v1/ping")


def _hello_too_large(lab: Lab) -> Attempt:
    body = b"\x00" * (MAX_HELLO_BYTES + 1)
    return Attempt(_signed(_honest(lab), body), body, 413, "body-too-large", (LOCAL,))


def _bad_signature(lab: Lab) -> Attempt:
    body = _honest_body(lab)
    headers = _signed(_honest(lab), body)
    raw = bytearray(base64.b64decode(httpsig.signature_member(headers).strip(":")))
    raw[10] ^= 0x40
    headers["Signature"] = f"sig1=:{base64.b64encode(bytes(raw)).decode('ascii')}:"
    return Attempt(headers, body, 401, "bad-signature", (LOCAL,), "does not verify")


def _signature_missing(lab: Lab) -> Attempt:
    body = _honest_body(lab)
    headers = {
        k: v for k, v in _signed(_honest(lab), body).items() if not k.startswith("Signature")
    }
    return Attempt(headers, body, 401, "signature-missing", (LOCAL,))


def _malformed_signature(lab: Lab) -> Attempt:
    body = _honest_body(lab)
    headers = _signed(_honest(lab), body)
    # Covering fewer components than the protocol requires (no digest: the body is unsigned).
    headers["Signature-Input"] = headers["Signature-Input"].replace(' "content-digest"', "")
    return Attempt(headers, body, 401, "malformed-signature", (LOCAL,), "covered components")


def _wrong_receiver(lab: Lab) -> Attempt:
    # Signed, correctly, for Guangdong, but sent to Gansu (a replay to a node it was not for).
    body = _honest_body(lab)
    guangdong = node_id(lab.daemons["guangdong"].public_key)
    headers = _signed(_honest(lab), body, to=guangdong)
    return Attempt(headers, body, 421, "wrong-receiver", (_honest(lab).node_id,), "signed for node")


def _anyone_off_the_hello_route(lab: Lab) -> Attempt:
    # "Any receiver" is for first contact only: on any other route the receiver must be named.
    body = b"\x90"
    headers = _signed(_honest(lab), body, path="/peer/v1/ping")
    return Attempt(
        headers, body, 421, "wrong-receiver", (_honest(lab).node_id,), "signed for node *",
        path="/peer/v1/ping",
    )  # fmt: skip


ATTEMPTS: dict[str, Callable[[Lab], Attempt]] = {
    "unknown-chain": _unknown_chain,
    "invalid-chain/forged-link": _forged_link,
    "invalid-chain/sibling-province": _sibling_province,
    "invalid-chain/too-long": _chain_too_long,
    "invalid-chain/not-the-signers": _not_the_signers_chain,
    "wrong-network": _wrong_network,
    "revoked": _revoked,
    "expired": _expired,
    "clock-skew/ahead": _clock_skew(600),
    "clock-skew/behind": _clock_skew(-600),
    "replayed-nonce": _replayed_nonce,
    "digest-mismatch": _digest_mismatch,
    "body-too-large": _body_too_large,
    "body-too-large/hello": _hello_too_large,
    "bad-signature": _bad_signature,
    "signature-missing": _signature_missing,
    "malformed-signature": _malformed_signature,
    "wrong-receiver/another-node": _wrong_receiver,
    "wrong-receiver/anyone-off-hello": _anyone_off_the_hello_route,
}
# Refusals before the request's signature headers parse cannot be bound to it: unsigned.
UNSIGNED = {"body-too-large", "signature-missing", "malformed-signature", "clock-skew",
            "digest-mismatch"}  # fmt: skip


@pytest.mark.parametrize("name", list(ATTEMPTS))
async def test_refused(lab: Lab, http: aiohttp.ClientSession, name: str) -> None:
    target = lab.daemons["gansu"]
    attempt = ATTEMPTS[name](lab)
    answer = await _expect_refusal(http, target, attempt)
    if attempt.code not in UNSIGNED:
        # The request parsed, so the refusal is bound to it and signed by the node.
        member = httpsig.signature_member(attempt.headers)
        httpsig.verify_response(
            status=answer.status, headers=answer.headers, body=answer.body,
            public_key=target.public_key, request_method="POST", request_path=attempt.path,
            request_query="", request_signature_member=member, now=int(time.time()),
        )  # fmt: skip


# --- what an honest caller gets -----------------------------------------------------------------


async def test_a_well_formed_hello_gets_a_signed_answer(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    target, other = lab.daemons["gansu"], lab.daemons["guangdong"]
    honest = _honest(lab)
    before = await _rejections(http, target)
    body = _honest_body(lab)
    headers = _signed(honest, body)
    answer = await _post(http, target, headers, body)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == MSGPACK
    theirs = decode_hello(answer.body)
    assert theirs.network == lab.network.id
    assert decode_certificate(theirs.chain[0]).subject.public_key == target.public_key

    member = httpsig.signature_member(headers)

    def verify(public_key: bytes, request_member: str = member) -> httpsig.SignatureParams:
        return httpsig.verify_response(
            status=answer.status, headers=answer.headers, body=answer.body,
            public_key=public_key, request_method="POST", request_path=HELLO_PATH,
            request_query="", request_signature_member=request_member, now=int(time.time()),
        )  # fmt: skip

    assert verify(target.public_key).keyid == node_id(target.public_key)
    with pytest.raises(httpsig.BadSignatureError):
        verify(other.public_key)  # not the key that signed it
    another_request = httpsig.signature_member(_signed(honest, body))
    with pytest.raises(httpsig.BadSignatureError):
        verify(target.public_key, another_request)  # not the answer to that request

    # Now known, the caller may leave its chain out; nothing was counted against it.
    later = _honest_body(lab)
    answer = await _post(http, target, _signed(honest, later, with_chain=False), later)
    assert answer.status == 200, answer.body
    after = await _rejections(http, target)
    assert after["by_caller"].get(honest.node_id) == before["by_caller"].get(honest.node_id)
    # The hello taught the target the caller's address.
    async with http.get(
        target.admin + "/admin/api/v1/peers", headers={"Authorization": f"Bearer {target.token}"}
    ) as resp:
        peers = (await resp.json())["peers"]
    assert any(p["url"] == lab.specs["dunhuang"].url for p in peers), peers


@pytest.mark.parametrize("name", ["clock-skew/ahead", "digest-mismatch", "bad-signature"])
async def test_unproved_refusals_count_against_the_address_and_log_the_claim(
    lab: Lab, http: aiohttp.ClientSession, name: str
) -> None:
    """Before its signature verifies, a request proves nobody's identity: the refusal is
    counted against the address (counting it against the claimed node would let anyone blacken
    another node's record), and the log line names the key id it claimed."""
    target = lab.daemons["gansu"]
    honest = _honest(lab)
    before = await _rejections(http, target)
    await _expect_refusal(http, target, ATTEMPTS[name](lab))
    after = await _rejections(http, target)
    assert after["by_caller"].get(honest.node_id) == before["by_caller"].get(honest.node_id)
    assert any(
        f"(claims {honest.node_id}) refused: {ATTEMPTS[name](lab).code}:" in line
        for line in target.log().splitlines()
    )


async def test_a_request_replayed_to_a_second_node_is_refused_there(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    first, second = lab.daemons["gansu"], lab.daemons["guangdong"]
    honest = _honest(lab)
    body = _honest_body(lab)
    headers = _signed(honest, body, to=node_id(first.public_key))  # addressed to `first`
    assert (await _post(http, first, headers, body)).status == 200
    first_before = await _rejections(http, first)
    second_before = await _rejections(http, second)

    answer = await _post(http, second, headers, body)

    # `second` never saw the nonce: it refuses by the receiver the signature names.
    assert answer.status == 421, answer.body
    assert answer.problem()["code"] == "wrong-receiver"
    assert await _rejections(http, first) == first_before
    second_after = await _rejections(http, second)
    assert sum(second_after["by_caller"][honest.node_id].values()) == 1 + sum(
        second_before["by_caller"].get(honest.node_id, {}).values()
    )


async def test_a_replay_is_refused_by_each_node_on_its_own(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    """Each node keeps its own nonces: a request replayed at one node is counted there only."""
    first, second = lab.daemons["gansu"], lab.daemons["guangdong"]
    honest = _honest(lab)
    second_before = await _rejections(http, second)
    attempt = _replayed_nonce(lab)
    await _expect_refusal(http, first, attempt)
    assert await _rejections(http, second) == second_before
    await _expect_refusal(http, second, _replayed_nonce(lab))
    assert _count(await _rejections(http, second), honest.node_id, "replayed-nonce") == 1 + _count(
        second_before, honest.node_id, "replayed-nonce"
    )


# --- sessions ----------------------------------------------------------------------------------


def _client(lab: Lab, http: aiohttp.ClientSession, member: Member) -> PeerClient:
    # Only MembershipView.admit is used by the client: no store is needed.
    view = MembershipView(lab.network, list(member.chain), cast(Store, None), now_ms)
    return PeerClient(http, member.key, member.chain, view)


async def test_a_hello_makes_a_session_and_requests_under_it_are_answered_under_it(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    target = lab.daemons["gansu"]
    honest = _honest(lab)
    client = _client(lab, http, honest)
    message = decode_hello(_honest_body(lab))
    outcome = await client.hello(target.url, message, node_id(target.public_key))
    assert outcome.admitted.leaf.subject.public_key == target.public_key
    session, peer, _ = client.sessions[target.url]
    assert peer == node_id(target.public_key)

    # A ping MAC'd under the session: answered, and the answer verified under the session.
    answer = await client.call(target.url, "/peer/v1/ping", b"\x90", target.public_key)
    assert msgpack.unpackb(answer)[0] == node_id(target.public_key)

    # A session the node does not hold: refused as such, counted against the address.
    body = b"\x90"
    stranger = httpsig.SessionKey("q" * 26, bytes(32))
    headers = httpsig.sign_request(
        stranger, method="POST", path="/peer/v1/ping", query="", body=body,
        created=int(time.time()), nonce=secrets.token_urlsafe(24),
        to=node_id(target.public_key),
    )  # fmt: skip
    refused = await _post(http, target, headers, body, "/peer/v1/ping")
    assert refused.status == 401 and refused.problem()["code"] == "unknown-session"

    # The right session id with a wrong MAC: a bad signature.
    forged = httpsig.sign_request(
        httpsig.SessionKey(session.id, bytes(32)), method="POST", path="/peer/v1/ping",
        query="", body=body, created=int(time.time()), nonce=secrets.token_urlsafe(24),
        to=node_id(target.public_key),
    )  # fmt: skip
    refused = await _post(http, target, forged, body, "/peer/v1/ping")
    assert refused.status == 401 and refused.problem()["code"] == "bad-signature"


# --- nodes whose own certificate does not admit them ---------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"), [("guazhou", "is revoked"), ("yumen", "is not valid now")]
)
async def test_a_node_that_is_not_admitted_runs_without_peers(
    lab: Lab, http: aiohttp.ClientSession, key: str, reason: str
) -> None:
    daemon = lab.daemons[key]
    assert lab.processes.children[daemon.home].poll() is None  # it runs...
    lines = [line for line in daemon.log().splitlines() if "own certificate chain" in line]
    assert len(lines) == 1 and reason in lines[0] and lines[0].endswith("no peers"), lines
    auth = {"Authorization": f"Bearer {daemon.token}"}
    async with http.get(daemon.admin + "/admin/api/v1/peers", headers=auth) as resp:
        assert resp.status == 200
        assert await resp.json() == {"network": None, "enrolled": False, "peers": []}
    # ...serves readers, and refuses every peer.
    async with http.get(daemon.admin + "/admin/api/v1/status", headers=auth) as resp:
        assert resp.status == 200
    body = _hello(_honest(lab), lab.network.id, lab.specs["dunhuang"].url)
    answer = await _post(http, daemon, _signed(_honest(lab), body), body)
    assert answer.status == 503
    assert answer.problem()["code"] == "not-enrolled"
    assert "Signature" not in answer.headers  # it has no standing to sign for the network


def test_the_daemons_survived(lab: Lab) -> None:
    lab.processes.check_alive()
    for daemon in lab.daemons.values():
        assert "Traceback" not in daemon.log(), daemon.spec.key
