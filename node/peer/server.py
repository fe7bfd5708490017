"""The peer API on the public listener, `/peer/v1/…`: every request signed by a member (RFC 9421),
every response signed by this node.

Checks, in order; each failure gets its own problem code and a log line (with the key id the
request claims), and is counted against the caller: against its node id once its signature has
verified, against its IP address before (an unverified key id proves nothing, and counting
against it would let anyone blacken another node's record):

    body-too-large       413  body over the limit (refused before anything is parsed)
    signature-missing    401  no Signature / Signature-Input
    malformed-signature  401  headers do not parse, wrong components or parameters
    clock-skew           401  `created` too far from our clock
    digest-mismatch      400  Content-Digest absent or not the body's
    unknown-chain        401  no chain presented and none cached for this key id
    invalid-chain        403  chain does not lead to our root by the tier rules (forged link,
                              sibling province, too long, not the signer's)
    wrong-network        403  chain of another network
    expired              403  a link outside its validity period
    revoked              403  a link revoked by the root or an issuer above it
    unknown-session      401  an HMAC-signed request under a session this node does not hold
    bad-signature        401  the signature (Ed25519, or the session's HMAC) does not verify
    wrong-receiver       421  signed for another node (Siku-To), or for "*" off the hello route
    replayed-nonce       401  (key id, nonce) seen within the skew window
    too-many-requests    429  the caller's share of the nonce cache is used up

The nonce is recorded only after the signature verifies, so nobody can burn another node's
nonces; the skew bound on `created` bounds how long a nonce must be remembered.

Sessions: a hello in which both sides offer an ephemeral X25519 key gives them a shared secret
(protocol.peering.derive_session); later requests may be signed with HMAC-SHA256 under its id
(RFC 9421 `alg="hmac-sha256"`) and are answered the same way. Every other check is unchanged;
the session stands in for the caller's key and chain, and the chain is still re-checked
(revocations, expiry) through the membership cache on every request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.http.problems import PROBLEM_BASE, PROBLEM_JSON, dumps
from node.peer.membership import Admitted, MembershipView
from protocol import httpsig
from protocol.errors import ChainError, ProtocolError
from protocol.identity import node_id, public_key_bytes
from protocol.membership import decode_bundle, decode_certificate

__all__ = [
    "CHAIN_HEADER",
    "MSGPACK",
    "NonceCache",
    "PeerHandler",
    "PeerProblem",
    "PeerServer",
    "Rejections",
    "Session",
    "SessionTable",
    "session_nonce",
]

log = logging.getLogger(__name__)

CHAIN_HEADER = "Siku-Chain"  # base64 of a bundle: the caller's certificate chain, leaf first
MAX_CHAIN_HEADER_CHARS = 16_384
MAX_NONCES = 200_000
# Per caller within the nonce lifetime (~10 min): ~40 requests/s sustained, enough for sync
# rounds, and 8 such callers cannot fill the whole cache.
MAX_NONCES_PER_CALLER = 25_000
MAX_SESSIONS = 4_096
REPLAY_WINDOW = 4_096  # request numbers a session request may lag behind the highest seen
SESSION_SECONDS = 3_600.0  # a hello every hello_interval renews it long before
SESSION_GRACE_SECONDS = 30.0  # a replaced session still serves requests already in flight
MAX_CALLERS_TRACKED = 4_096
MSGPACK = "application/msgpack"
OFF_LOOP_BYTES = 256 * 1024  # answers larger than this are signed in a worker thread
FIRST_CONTACT_PATH = "/peer/v1/hello"  # the one route a request for "any receiver" may use

_STATUS = {
    "body-too-large": 413,
    "digest-mismatch": 400,
    "invalid-chain": 403,
    "wrong-network": 403,
    "expired": 403,
    "revoked": 403,
    "busy": 503,
    "wrong-receiver": 421,
}
_AUTH_CODES = frozenset(
    {
        "signature-missing",
        "malformed-signature",
        "clock-skew",
        "unknown-chain",
        "bad-signature",
        "replayed-nonce",
        "unknown-session",
    }
)


class PeerProblem(Exception):
    """A refusal with a stable code, raised inside the peer API and answered as problem+json."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or _STATUS.get(code, 401 if code in _AUTH_CODES else 400)


_KEYID_PARAM = re.compile(r'keyid="([a-z2-7]{32})"')


def _claimed_keyid(request: web.Request) -> str:
    """The key id a request that failed to parse says it is from: for the log line only."""
    match = _KEYID_PARAM.search(request.headers.get("Signature-Input", "")[:4096])
    return match.group(1) if match else "nothing"


class NonceCache:
    """(key id, nonce) pairs seen in the last 2 × `window` seconds: at most `limit` of them, and
    at most `per_owner` for any one caller, so that one member cannot fill it for all."""

    def __init__(
        self, window: int, limit: int = MAX_NONCES, per_owner: int = MAX_NONCES_PER_CALLER
    ) -> None:
        self.window, self.limit, self.per_owner = window, limit, per_owner
        # (key id, nonce) → (expiry, owner), expiries increasing
        self._seen: OrderedDict[tuple[str, str], tuple[int, str]] = OrderedDict()
        self._by_owner: Counter[str] = Counter()

    def check_and_add(self, keyid: str, nonce: str, now: int, owner: str | None = None) -> None:
        """Refuse a nonce seen before; remember a new one, counted against `owner` (the
        caller's node id; by default the key id)."""
        while self._seen:
            key, (expiry, held_by) = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[key]
            self._by_owner[held_by] -= 1
            if not self._by_owner[held_by]:
                del self._by_owner[held_by]
        if (keyid, nonce) in self._seen:
            raise PeerProblem("replayed-nonce", "this request was already received (replay)")
        owner = owner or keyid
        # Forgetting a live nonce would open a replay window: refuse instead.
        if self._by_owner[owner] >= self.per_owner:
            raise PeerProblem(
                "too-many-requests", "more requests in the last minutes than a peer may send", 429
            )
        if len(self._seen) >= self.limit:
            raise PeerProblem("busy", "too many recent requests; retry shortly", 503)
        # A request is accepted while |created - now| <= window (inclusive). One created at the
        # far edge, `window` ahead of now, is thus acceptable until now + 2 * window inclusive:
        # the nonce must outlive that second too, hence + 1 (expired means expiry <= now).
        self._seen[(keyid, nonce)] = (now + 2 * self.window + 1, owner)
        self._by_owner[owner] += 1


class Rejections:
    """Refused requests, per caller and per code: what `siku peers` and the console show."""

    def __init__(self) -> None:
        self.by_code: Counter[str] = Counter()
        self.by_caller: dict[str, Counter[str]] = {}

    def add(self, caller: str, code: str) -> None:
        self.by_code[code] += 1
        if caller not in self.by_caller and len(self.by_caller) >= MAX_CALLERS_TRACKED:
            caller = "(others)"
        self.by_caller.setdefault(caller, Counter())[code] += 1

    def total(self, caller: str) -> int:
        return sum(self.by_caller.get(caller, Counter()).values())


@dataclass
class Session:
    key: httpsig.SessionKey
    node_id: str  # the peer the session was made with, by a hello both signed
    expires: float  # unix seconds
    window: ReplayWindow = field(default_factory=lambda: ReplayWindow())


class ReplayWindow:
    """Replay protection for one session, as IPsec does it: requests under a session number
    their nonces 1, 2, 3, … (`session_nonce`); the highest seen and a bitmap of the
    REPLAY_WINDOW below it are all that is kept, so a busy session costs a few bytes, not a
    nonce-cache entry per request. Requests in flight may arrive out of order within it."""

    def __init__(self) -> None:
        self.highest = 0
        self.seen = 0  # bit i: counter highest - i was seen

    def check_and_add(self, counter: int) -> None:
        if counter > self.highest:
            shift = counter - self.highest
            # (A jump past the window forgets it all; never shift by an attacker's number.)
            kept = (self.seen << shift) & ((1 << REPLAY_WINDOW) - 1) if shift < REPLAY_WINDOW else 0
            self.seen = kept | 1
            self.highest = counter
            return
        age = self.highest - counter
        if age >= REPLAY_WINDOW:
            raise PeerProblem("replayed-nonce", "request number too old for this session")
        if self.seen >> age & 1:
            raise PeerProblem("replayed-nonce", "this request was already received (replay)")
        self.seen |= 1 << age


def session_counter(nonce: str) -> int:
    """The request number a session request carries as its nonce (20 decimal digits)."""
    if len(nonce) != 20 or not nonce.isdigit() or int(nonce) == 0:
        raise PeerProblem("malformed-signature", "a session request's nonce is its number")
    return int(nonce)


def session_nonce(counter: int) -> str:
    return f"{counter:020d}"


class SessionTable:
    """Sessions made by hellos (see protocol.peering.derive_session), newest last, bounded."""

    def __init__(self, limit: int = MAX_SESSIONS, lifetime: float = SESSION_SECONDS) -> None:
        self.limit, self.lifetime = limit, lifetime
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self._by_node: dict[str, str] = {}  # node id → its current session id
        self._previous: dict[str, str] = {}  # node id → the session its current one replaced

    def add(self, key: httpsig.SessionKey, node_id: str, now: float) -> Session:
        """The session a hello made with `node_id`. It replaces that node's previous one, which
        stays valid for SESSION_GRACE_SECONDS only, for requests already in flight under it; an
        older one goes. So no member holds more than two (nor pushes others' sessions out)."""
        older = self._previous.pop(node_id, None)
        if older is not None:
            self._by_id.pop(older, None)
        previous = self._by_node.get(node_id)
        if previous is not None and previous in self._by_id:
            held = self._by_id[previous]
            held.expires = min(held.expires, now + SESSION_GRACE_SECONDS)
            self._previous[node_id] = previous
        session = Session(key, node_id, now + self.lifetime)
        self._by_node[node_id] = key.id
        self._by_id[key.id] = session
        self._by_id.move_to_end(key.id)
        while len(self._by_id) > self.limit:
            # Sessions kept only for their grace period go first, then the least recent.
            if self._previous:
                node = next(iter(self._previous))
                self._by_id.pop(self._previous.pop(node), None)
                continue
            _, dropped = self._by_id.popitem(last=False)  # it falls back to Ed25519 + hello
            if self._by_node.get(dropped.node_id) == dropped.key.id:
                del self._by_node[dropped.node_id]
        return session

    def get(self, session_id: str, now: float) -> Session | None:
        session = self._by_id.get(session_id)
        if session is not None and session.expires <= now:
            del self._by_id[session_id]
            if self._by_node.get(session.node_id) == session_id:
                del self._by_node[session.node_id]
            if self._previous.get(session.node_id) == session_id:
                del self._previous[session.node_id]
            return None
        return session

    def __len__(self) -> int:
        return len(self._by_id)


PeerHandler = Callable[[Admitted, bytes], Awaitable[tuple[int, bytes]]]


@dataclass
class PeerServer:
    key: Ed25519PrivateKey
    membership: MembershipView
    rejections: Rejections
    max_body: int
    clock: Callable[[], float]  # unix seconds
    max_skew: int = httpsig.DEFAULT_MAX_SKEW_SECONDS

    def __post_init__(self) -> None:
        self.node_id = node_id(public_key_bytes(self.key))
        self.nonces = NonceCache(self.max_skew)
        self.sessions = SessionTable()
        self._presented: OrderedDict[str, str] = OrderedDict()  # key id → last chain header

    def route(
        self, handler: PeerHandler, max_body: int | None = None
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """An aiohttp handler running `handler` behind every check; `max_body` overrides the
        listener's body limit for routes whose messages are bounded otherwise (the hello)."""
        limit = max_body or self.max_body

        async def serve(request: web.Request) -> web.Response:
            return await self._serve(request, handler, limit)

        return serve

    async def _serve(
        self, request: web.Request, handler: PeerHandler, max_body: int
    ) -> web.Response:
        pending: httpsig.PendingRequest | None = None
        caller = request.remote or "?"
        try:
            body = await self._read_body(request, max_body)
            now = int(self.clock())
            pending = httpsig.parse_request(
                method=request.method,
                path=request.rel_url.raw_path,
                query=request.rel_url.raw_query_string,
                headers=request.headers,
                body=body,
                now=now,
                max_skew=self.max_skew,
            )
            claimed = pending.params.keyid
            signer: httpsig.Signer = self.key
            if pending.params.alg == httpsig.ALG_HMAC:
                session = self.sessions.get(claimed, self.clock())
                if session is None:
                    raise PeerProblem(
                        "unknown-session", "no such session (expired or forgotten): say hello"
                    )
                admitted = self._cached(session.node_id)
                pending.verify_session(session.key)
                caller, signer = session.node_id, session.key
                self._check_receiver(pending, request)
                session.window.check_and_add(session_counter(pending.params.nonce))
            else:
                admitted = self._admitted(request, pending)  # verifies the signature too
                caller = claimed  # proved: from here on a refusal is the caller's own
                self._check_receiver(pending, request)
                self.nonces.check_and_add(claimed, pending.params.nonce, now, caller)
            status, out = await handler(admitted, body)
            if len(out) > OFF_LOOP_BYTES:
                # Megabytes of chunks: the body's digest is computed in a worker thread
                # (hashlib releases the GIL), so the node goes on answering meanwhile.
                signed = await asyncio.to_thread(self._sign, status, out, pending, signer)
                return self._respond(status, out, MSGPACK, pending, signer, signed)
            return self._respond(status, out, MSGPACK, pending, signer)
        except (PeerProblem, ProtocolError) as e:
            problem = e if isinstance(e, PeerProblem) else PeerProblem(e.code, e.message)
            log.warning(
                "peer request %s %s from %s (claims %s) refused: %s: %s",
                request.method,
                request.rel_url.raw_path,
                caller,
                pending.params.keyid if pending is not None else _claimed_keyid(request),
                problem.code,
                problem.message,
            )
            self.rejections.add(caller, problem.code)
            body_out = dumps(
                {
                    "type": PROBLEM_BASE + problem.code,
                    "title": "Peer request refused",
                    "status": problem.status,
                    "detail": problem.message,
                    "code": problem.code,
                }
            ).encode("utf-8")
            return self._respond(problem.status, body_out, PROBLEM_JSON, pending)

    def _check_receiver(self, pending: httpsig.PendingRequest, request: web.Request) -> None:
        if pending.to == self.node_id:
            return
        if pending.to == httpsig.ANY_RECEIVER and request.rel_url.raw_path == FIRST_CONTACT_PATH:
            return  # the caller knows only our URL until this hello
        raise PeerProblem(
            "wrong-receiver", f"this request was signed for node {pending.to}, not for this one"
        )

    async def _read_body(self, request: web.Request, max_body: int) -> bytes:
        length = request.content_length
        if length is not None and length > max_body:
            raise PeerProblem("body-too-large", f"body of {length} bytes over {max_body}")
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > max_body:
                raise PeerProblem("body-too-large", f"body over {max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _cached(self, keyid: str) -> Admitted:
        try:
            admitted = self.membership.cached(keyid)
        except ChainError as e:
            raise PeerProblem(e.code, e.message) from e
        if admitted is None:
            raise PeerProblem(
                "unknown-chain", f"no certificate chain known for {keyid}: send {CHAIN_HEADER}"
            )
        return admitted

    def _admitted(self, request: web.Request, pending: httpsig.PendingRequest) -> Admitted:
        """The caller's admitted chain, its request signature verified against the chain's leaf
        key before anything about the chain is believed or remembered."""
        keyid = pending.params.keyid
        header = request.headers.get(CHAIN_HEADER)
        if header is None or self._presented.get(keyid) == header:
            # No chain, or the same one as before: the cached verdict, re-checked only as the
            # cache's rules say (revocations, age), not re-verified link by link.
            try:
                cached = self.membership.cached(keyid)
            except ChainError as e:
                raise PeerProblem(e.code, e.message) from e
            if cached is not None:
                pending.verify(cached.leaf.subject.public_key)
                return cached
            if header is None:
                raise PeerProblem(
                    "unknown-chain", f"no certificate chain known for {keyid}: send {CHAIN_HEADER}"
                )
        if len(header) > MAX_CHAIN_HEADER_CHARS:
            raise PeerProblem("invalid-chain", f"{CHAIN_HEADER} header too long")
        try:
            chain = decode_bundle(base64.b64decode(header, validate=True))
            leaf = decode_certificate(chain[0]) if chain else None
        except (binascii.Error, ValueError) as e:
            raise PeerProblem("invalid-chain", f"{CHAIN_HEADER} is not base64") from e
        except ProtocolError as e:
            raise PeerProblem("invalid-chain", f"{CHAIN_HEADER}: {e.message}") from e
        if leaf is None or leaf.subject.node_id != keyid:
            raise PeerProblem("invalid-chain", "the chain presented is not the signer's")
        # One signature check (the request's) before three (the chain's) for a stranger, and
        # nothing remembered for anyone who does not hold the key.
        pending.verify(leaf.subject.public_key)
        admitted = self.membership.check(tuple(chain))  # ChainError subclasses carry the code
        self.membership.remember(admitted)
        self._presented[keyid] = header
        self._presented.move_to_end(keyid)
        while len(self._presented) > MAX_CALLERS_TRACKED:
            self._presented.popitem(last=False)
        return admitted

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        pending: httpsig.PendingRequest | None,
        signer: httpsig.Signer | None = None,
        signed: dict[str, str] | None = None,
    ) -> web.Response:
        resp = web.Response(status=status, body=body, content_type=content_type)
        resp.headers["Cache-Control"] = "no-store"
        if pending is not None:  # a response can be bound only to a request that parsed
            resp.headers.update(signed or self._sign(status, body, pending, signer))
        return resp

    def _sign(
        self,
        status: int,
        body: bytes,
        pending: httpsig.PendingRequest,
        signer: httpsig.Signer | None,
    ) -> dict[str, str]:
        return dict(
            httpsig.sign_response(
                signer or self.key,
                status=status,
                body=body,
                created=int(self.clock()),
                request=pending,
            )
        )
