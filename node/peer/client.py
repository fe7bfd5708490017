"""Calling other members: every request signed, every answer's signature and chain checked."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.errors import NodeError
from node.peer.membership import Admitted, MembershipView
from node.peer.server import CHAIN_HEADER, MSGPACK, SESSION_SECONDS, session_nonce
from protocol import httpsig
from protocol.errors import ProtocolError
from protocol.identity import node_id, public_key_bytes
from protocol.membership import encode_bundle
from protocol.peering import (
    MAX_HELLO_BYTES,
    HelloMessage,
    decode_hello,
    derive_session,
    encode_hello,
    x25519_public,
)
from protocol.records import SignedRecord

__all__ = [
    "HELLO_PATH",
    "HelloOutcome",
    "PeerClient",
    "PeerError",
    "PeerMisbehavedError",
    "PeerRefusedError",
    "PeerUnreachableError",
]

HELLO_PATH = "/peer/v1/hello"
MAX_PROBLEM_BYTES = 4 * 1024
OFF_LOOP_BYTES = 256 * 1024  # answers larger than this are checked in a worker thread


class PeerError(NodeError):
    code = "peer-error"


class PeerUnreachableError(PeerError):
    """No answer: connection refused, reset, timed out, DNS."""

    code = "unreachable"


class PeerRefusedError(PeerError):
    """The peer answered with a problem (it did not accept us): `problem_code` says why."""

    code = "refused"

    def __init__(self, problem_code: str, message: str) -> None:
        super().__init__(f"{problem_code}: {message}")
        self.problem_code = problem_code


class PeerMisbehavedError(PeerError):
    """The answer failed our checks (bad signature, bad chain, malformed body): counted
    against the peer. `problem_code` is the check that failed."""

    code = "misbehaved"

    def __init__(self, problem_code: str, message: str) -> None:
        super().__init__(f"{problem_code}: {message}")
        self.problem_code = problem_code


@dataclass(frozen=True)
class HelloOutcome:
    admitted: Admitted
    hello: HelloMessage
    rtt_ms: float


class PeerClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        key: Ed25519PrivateKey,
        own_chain: tuple[SignedRecord, ...],
        membership: MembershipView,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.key = key
        self.chain_header = base64.b64encode(encode_bundle(own_chain)).decode("ascii")
        self.membership = membership
        self.clock = clock
        # url → (session, the peer's node id, when to stop using it), from the last hello.
        self.sessions: dict[str, tuple[httpsig.SessionKey, str, float]] = {}
        self._numbers: dict[str, int] = {}  # session id → number of its last request

    async def hello(
        self, url: str, hello: HelloMessage, peer_id: str | None = None
    ) -> HelloOutcome:
        """Say hello (always with our chain: it is how a peer learns it), to `peer_id` if the
        node at `url` is known, else to whoever answers there."""
        ephemeral = X25519PrivateKey.generate()  # offered for a session; never stored
        offer = x25519_public(ephemeral)
        body = encode_hello(dataclasses.replace(hello, session_key=offer))
        started = time.monotonic()
        to = peer_id or httpsig.ANY_RECEIVER
        status, headers, answer, member = await self._post(url, HELLO_PATH, body, to, chain=True)
        rtt_ms = (time.monotonic() - started) * 1000
        if status != 200:
            raise self._refusal(status, answer)
        try:
            theirs = decode_hello(answer)
            admitted = self.membership.check(theirs.chain)
        except ProtocolError as e:
            raise PeerMisbehavedError(e.code, e.message) from e
        self._verify_answer(status, headers, answer, HELLO_PATH, member, admitted)
        self.membership.remember(admitted)  # only now: the answer proved who holds the key
        self.sessions.pop(url, None)
        if theirs.session_key:
            try:
                key = derive_session(
                    ephemeral,
                    theirs.session_key,
                    client=public_key_bytes(self.key),
                    server=admitted.leaf.subject.public_key,
                    client_offer=offer,
                    server_offer=theirs.session_key,
                )
            except ProtocolError as e:
                raise PeerMisbehavedError(e.code, e.message) from e
            # Renewed by every hello; given up a little before the server would forget it.
            expires = self.clock() + SESSION_SECONDS - 60
            self.sessions[url] = (key, admitted.leaf.subject.node_id, expires)
            self._numbers = {
                held[0].id: self._numbers.get(held[0].id, 0) for held in self.sessions.values()
            }
        return HelloOutcome(admitted, theirs, rtt_ms)

    async def call(
        self,
        url: str,
        path: str,
        body: bytes,
        peer_key: bytes,
        *,
        max_answer: int = MAX_HELLO_BYTES,
    ) -> bytes:
        """A signed request to a peer already met (its key known from a hello): the chain is
        sent only if the peer says it does not have it. Returns the verified answer body, at
        most `max_answer` bytes."""
        to = node_id(peer_key)
        signer: httpsig.Signer = self.key
        held = self.sessions.get(url)
        if held is not None and held[1] == to and held[2] > self.clock():
            signer = held[0]
            self._numbers[signer.id] = self._numbers.get(signer.id, 0) + 1
        status, headers, answer, member = await self._post(
            url, path, body, to, chain=False, signer=signer, max_answer=max_answer
        )
        if status == 401 and signer is not self.key and b"unknown-session" in answer[:256]:
            self.sessions.pop(url, None)  # the peer restarted or forgot it: sign with our key
            signer = self.key
            status, headers, answer, member = await self._post(
                url, path, body, to, chain=False, max_answer=max_answer
            )
        if status == 401 and b"unknown-chain" in answer[:MAX_PROBLEM_BYTES]:
            status, headers, answer, member = await self._post(
                url, path, body, to, chain=True, max_answer=max_answer
            )
        if status != 200:
            raise self._refusal(status, answer)
        verify_with: bytes | httpsig.SessionKey = (
            signer if isinstance(signer, httpsig.SessionKey) else peer_key
        )
        check = functools.partial(
            httpsig.verify_response,
            status=status,
            headers=headers,
            body=answer,
            public_key=verify_with,
            request_method="POST",
            request_path=path,
            request_query="",
            request_signature_member=member,
            now=int(self.clock()),
        )
        try:  # also checks the answer's key id is `peer_key`'s node id, or our session's
            if len(answer) > OFF_LOOP_BYTES:
                # Hashing megabytes of chunks takes milliseconds: done in a thread (hashlib
                # releases the GIL), the node goes on answering its admins and peers.
                await asyncio.to_thread(check)
            else:
                check()
        except ProtocolError as e:
            raise PeerMisbehavedError(e.code, f"answer signature: {e.message}") from e
        return answer

    async def _post(
        self,
        url: str,
        path: str,
        body: bytes,
        to: str,
        *,
        chain: bool,
        signer: httpsig.Signer | None = None,
        max_answer: int = MAX_HELLO_BYTES,
    ) -> tuple[int, Mapping[str, str], bytes, str]:
        key = signer or self.key
        nonce = (
            session_nonce(self._numbers[key.id])  # numbered within its session
            if isinstance(key, httpsig.SessionKey)
            else secrets.token_urlsafe(24)
        )
        signed = httpsig.sign_request(
            key,
            method="POST",
            path=path,
            query="",
            body=body,
            created=int(self.clock()),
            nonce=nonce,
            to=to,
        )
        headers = {**signed, "Content-Type": MSGPACK}
        if chain:
            headers[CHAIN_HEADER] = self.chain_header
        try:
            async with self.session.post(url + path, data=body, headers=headers) as resp:
                # read(n) returns what has arrived so far, not n bytes: read to the end,
                # bounded.
                if (resp.content_length or 0) > max_answer:
                    raise PeerMisbehavedError("body-too-large", "answer over the size limit")
                parts, size = [], 0
                # Whatever has arrived, as it arrived: no re-slicing into small pieces (an
                # 8 MiB chunk answer is a few dozen reads, not 128).
                async for part in resp.content.iter_any():
                    size += len(part)
                    if size > max_answer:
                        raise PeerMisbehavedError("body-too-large", "answer over the size limit")
                    parts.append(part)
                answer = b"".join(parts)
                # A case-insensitive multidict: httpsig refuses a repeated signature header.
                got: Mapping[str, str] = resp.headers.copy()
                return resp.status, got, answer, httpsig.signature_member(signed)
        except (aiohttp.ClientError, OSError) as e:
            raise PeerUnreachableError(f"{url}: {e}") from e
        except TimeoutError as e:
            raise PeerUnreachableError(f"{url}: timed out") from e

    def _verify_answer(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        path: str,
        member: str,
        admitted: Admitted,
    ) -> None:
        try:
            params = httpsig.verify_response(
                status=status,
                headers=headers,
                body=body,
                public_key=admitted.leaf.subject.public_key,
                request_method="POST",
                request_path=path,
                request_query="",
                request_signature_member=member,
                now=int(self.clock()),
            )
        except ProtocolError as e:
            raise PeerMisbehavedError(e.code, f"answer signature: {e.message}") from e
        if params.keyid != admitted.leaf.subject.node_id:
            raise PeerMisbehavedError("bad-signature", "answer signed by another node")

    @staticmethod
    def _refusal(status: int, answer: bytes) -> PeerError:
        """What a refusing answer says (unauthenticated: only for logs and back-off). Anyone
        can answer at a URL, so the body is parsed only if small, and nothing it holds may
        escape as an exception (deeply nested JSON raises RecursionError)."""
        code, detail = f"http-{status}", "no problem details"
        if len(answer) <= MAX_PROBLEM_BYTES:
            try:
                problem = json.loads(answer)
                if isinstance(problem, dict):
                    code = str(problem.get("code", code))[:64]
                    detail = str(problem.get("detail", ""))[:500]
            except (ValueError, RecursionError):
                pass
        if status == 404:
            code, detail = "not-a-peer", "no peer API at this URL (not a siku node, or too old)"
        return PeerRefusedError(code, detail)
