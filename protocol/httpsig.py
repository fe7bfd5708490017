"""HTTP Message Signatures (RFC 9421, ed25519) and Content-Digest (RFC 9530) for the peer API.

Only the subset siku uses. A request carries three headers:

    Content-Digest: sha-256=:<base64 of SHA-256(body)>:
    Siku-To: <the receiving node's id, or * on first contact>
    Signature-Input: sig1=("@method" "@path" "@query" "content-digest" "siku-to");created=<unix s>
                     ;keyid="<node id>";nonce="<16-64 base64url chars>";alg="ed25519"
    Signature: sig1=:<base64 of the Ed25519 signature>:

A response carries the same three headers without a nonce, and its signature also covers the
request's method, path, query and `sig1` signature (`;req` components, RFC 9421 §2.4), so a
response cannot be replayed as the answer to another request.

Verifying a request takes two steps because the server looks the caller's public key up by
keyid in between: `parse_request` checks everything that needs no key (structure, digest, clock
skew) and returns a `PendingRequest`; `PendingRequest.verify(public_key)` checks the signature.

Parsing is strict: the covered components must be exactly the expected tuple, the signature
parameters exactly the expected set, and every structured field must parse under RFC 8941 (minus
decimals, which nothing here uses). The signature base is built by `signature_base` alone, from
the *received* Signature-Input member text, so any change to that text changes the signed bytes.
Component values are passed in as sent on the wire: `path` is the percent-encoded path without
the query (aiohttp: `request.rel_url.raw_path`), `query` the raw query string without its '?'
(aiohttp: `request.rel_url.raw_query_string`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import ProtocolError, SignatureError
from protocol.identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    node_id,
    public_key_bytes,
    sign,
    verify,
)

__all__ = [
    "ALG_HMAC",
    "ANY_RECEIVER",
    "DEFAULT_MAX_SKEW_SECONDS",
    "LABEL",
    "MAX_CONTENT_DIGEST_HEADER_CHARS",
    "MAX_SIGNATURE_HEADER_CHARS",
    "REQUEST_COMPONENTS",
    "RESPONSE_COMPONENTS",
    "BadSignatureError",
    "ClockSkewError",
    "DigestMismatchError",
    "MalformedSignatureError",
    "PendingRequest",
    "SessionKey",
    "SignatureMissingError",
    "SignatureParams",
    "Signer",
    "check_content_digest",
    "content_digest",
    "parse_request",
    "sign_request",
    "sign_response",
    "signature_base",
    "signature_member",
    "verify_response",
]

LABEL = "sig1"
ALG = "ed25519"
# After a hello, two nodes share a session key (see protocol.peering) and sign with HMAC-SHA256
# (RFC 9421 §3.3.3) under a session id instead: the same headers and checks at a fraction of
# the cost of two Ed25519 operations per request.
ALG_HMAC = "hmac-sha256"
MAC_BYTES = 32
# Covered components, each as its name followed by its serialized parameters, in signing order.
# `siku-to` names the node the request is for (its node id), or "*" on first contact when the
# caller knows only a URL: a request signed for one node cannot be replayed to another.
REQUEST_COMPONENTS = ("@method", "@path", "@query", "content-digest", "siku-to")
ANY_RECEIVER = "*"
RESPONSE_COMPONENTS = (
    "@status",
    "content-digest",
    "@method;req",
    "@path;req",
    "@query;req",
    'signature;req;key="sig1"',
)
DEFAULT_MAX_SKEW_SECONDS = 300

# Bounds on what a peer can send us, checked before anything is parsed.
MAX_SIGNATURE_HEADER_CHARS = 4096  # each of Signature and Signature-Input
MAX_CONTENT_DIGEST_HEADER_CHARS = 1024
MAX_INTEGER_DIGITS = 15  # RFC 8941 §3.3.1

_KEYID = re.compile(r"[a-z2-7]{32}")  # protocol.identity.node_id: base32 of 20 bytes
_SESSION_ID = re.compile(r"[a-z2-7]{26}")  # SessionKey.id: base32 of 16 bytes
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_METHOD = re.compile(r"[A-Za-z]{1,32}")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


class SignatureMissingError(ProtocolError):
    """No Signature or Signature-Input header, or neither has a `sig1` member."""

    code = "signature-missing"


class MalformedSignatureError(ProtocolError):
    """Signature headers that do not parse, cover the wrong components, or carry bad params."""

    code = "malformed-signature"


class DigestMismatchError(ProtocolError):
    """Content-Digest missing, malformed, without sha-256, or not the digest of the body."""

    code = "digest-mismatch"


class ClockSkewError(ProtocolError):
    """A signature created further than the allowed skew from the verifier's clock."""

    code = "clock-skew"


class BadSignatureError(SignatureError):
    """A well-formed signature that does not verify under the signer's key."""

    code = "bad-signature"


@dataclass(frozen=True)
class SignatureParams:
    """The signature parameters of a `sig1` signature; constructing one checks their shapes."""

    keyid: str  # the signer's node id (ed25519), or the session id (hmac-sha256)
    created: int  # unix seconds
    nonce: str  # requests only; "" for responses, where the nonce param is omitted
    alg: str = ALG

    def __post_init__(self) -> None:
        if self.alg not in (ALG, ALG_HMAC):
            raise MalformedSignatureError(f"alg {self.alg!r} is not {ALG!r} or {ALG_HMAC!r}")
        pattern = _KEYID if self.alg == ALG else _SESSION_ID
        if not isinstance(self.keyid, str) or not pattern.fullmatch(self.keyid):
            raise MalformedSignatureError(
                f"keyid is not a {'node' if self.alg == ALG else 'session'} id"
            )
        if (
            isinstance(self.created, bool)
            or not isinstance(self.created, int)
            or not 0 <= self.created < 10**MAX_INTEGER_DIGITS
        ):
            raise MalformedSignatureError("created is not a unix time in seconds")
        if not isinstance(self.nonce, str) or (self.nonce and not _NONCE.fullmatch(self.nonce)):
            raise MalformedSignatureError("nonce is not 16 to 64 base64url characters")


@dataclass(frozen=True)
class SessionKey:
    """A secret two nodes share after a hello, and the id both call it by."""

    id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _SESSION_ID.fullmatch(self.id) or len(self.secret) != 32:
            raise MalformedSignatureError("a session is a 26-character id and a 32-byte secret")


Signer = Ed25519PrivateKey | SessionKey


@dataclass(frozen=True)
class PendingRequest:
    """A request whose headers, digest and clock check out; `verify` checks its signature."""

    params: SignatureParams
    signature: bytes
    base: bytes  # the signature base (RFC 9421 §2.5)
    signature_member: str  # the sig1 member of Signature, ':base64:', bound into the response
    method: str
    path: str
    query: str
    to: str  # the receiver's node id, or ANY_RECEIVER

    def verify(self, public_key: bytes) -> None:
        """Raise BadSignatureError unless `public_key` is the keyid's key and signed the base."""
        if self.params.alg != ALG:
            raise BadSignatureError("not an ed25519 signature")
        _verify_signature(public_key, self.params.keyid, self.base, self.signature)

    def verify_session(self, session: SessionKey) -> None:
        """Raise BadSignatureError unless the MAC is `session`'s over the base."""
        _verify_mac(session, self.params, self.base, self.signature)


# --- Content-Digest (RFC 9530) ------------------------------------------------------------------


def content_digest(body: bytes) -> str:
    """The Content-Digest header value of `body`: 'sha-256=:<base64>:'."""
    return f"sha-256={_serialize_bytes(hashlib.sha256(body).digest())}"


def check_content_digest(header: str | None, body: bytes) -> None:
    """Raise DigestMismatchError unless `header` has a sha-256 member that is `body`'s digest."""
    if header is None:
        raise DigestMismatchError("no Content-Digest header")
    if len(header) > MAX_CONTENT_DIGEST_HEADER_CHARS:
        raise DigestMismatchError("Content-Digest header is too long")
    fast = _FAST_DIGEST.fullmatch(header.strip(" \t"))
    if fast is not None:  # exactly what content_digest() writes
        given = base64.b64decode(fast.group(1), validate=True)
        if not hmac.compare_digest(given, hashlib.sha256(body).digest()):
            raise DigestMismatchError("Content-Digest does not match the body")
        return
    try:
        members = _parse_dictionary(header)
    except _SyntaxError as e:
        raise DigestMismatchError(f"Content-Digest does not parse: {e}") from None
    member = members.get("sha-256")
    if member is None:
        raise DigestMismatchError("Content-Digest has no sha-256 digest")
    value = member.value
    if not isinstance(value, _Item) or not isinstance(value.value, bytes) or value.params:
        raise DigestMismatchError("Content-Digest sha-256 is not a byte sequence")
    if not hmac.compare_digest(value.value, hashlib.sha256(body).digest()):
        raise DigestMismatchError("Content-Digest does not match the body")


# --- signing and verifying ----------------------------------------------------------------------


def signature_base(components: Sequence[tuple[str, str]], signature_params: str) -> bytes:
    """The bytes an RFC 9421 signature covers (§2.5); the only place they are built.

    `components` pairs each component (name plus serialized parameters, as in
    REQUEST_COMPONENTS) with its value; `signature_params` is the Signature-Input member value.
    """
    lines = [f"{_identifier(c)}: {value}" for c, value in components]
    lines.append(f'"@signature-params": {signature_params}')
    text = "\n".join(lines)
    # Every line printable ASCII, checked on the whole text at once: no newline may hide in a
    # value (it would forge a line), so the only ones are the separators.
    if text.count("\n") != len(lines) - 1 or not _PRINTABLE_ASCII.fullmatch(text.replace("\n", "")):
        raise MalformedSignatureError("a signed component is not printable ASCII")
    return text.encode("ascii")


def sign_request(
    key: Signer,
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    created: int,
    nonce: str,
    to: str,
) -> dict[str, str]:
    """Headers to add to a request: Content-Digest, Siku-To, Signature-Input and Signature.

    `to` is the receiving node's id, or ANY_RECEIVER when only its URL is known.

    The keyid is the node id of `key`. Use `signature_member` on the result to get the value
    `verify_response` needs to check that a response answers this request.
    """
    if not nonce:
        raise MalformedSignatureError("a request needs a nonce")
    params = _params_for(key, created, nonce)
    digest = content_digest(body)
    values = _request_values(method, path, query, digest, _check_to(to))
    return {**_sign(key, REQUEST_COMPONENTS, values, params, digest), "Siku-To": to}


def sign_response(
    key: Signer, *, status: int, body: bytes, created: int, request: PendingRequest
) -> dict[str, str]:
    """Headers to add to the response to `request`: Content-Digest, Signature-Input, Signature.
    A request MAC'd under a session is answered under the same session."""
    params = _params_for(key, created, "")
    digest = content_digest(body)
    values = _response_values(
        status, digest, request.method, request.path, request.query, request.signature_member
    )
    return _sign(key, RESPONSE_COMPONENTS, values, params, digest)


def signature_member(headers: Mapping[str, str]) -> str:
    """The ':base64:' value of the sig1 member of `headers`' Signature header.

    A client calls it on the headers `sign_request` returned, and passes the result to
    `verify_response` as `request_signature_member`.
    """
    return _serialize_bytes(_parse_signature(headers))


def parse_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
) -> PendingRequest:
    """Check a request's signature headers, Content-Digest and clock skew, not yet its signature.

    Covered components must be exactly REQUEST_COMPONENTS; the caller looks up the public key
    of `params.keyid` and calls `verify` on the result.
    """
    signature = _parse_signature(headers)
    params, params_text = _parse_signature_input(headers, REQUEST_COMPONENTS, with_nonce=True)
    _check_skew(params.created, now, max_skew)
    raw_to = _header(headers, "siku-to", MalformedSignatureError)
    to = _check_to(raw_to.strip(" \t") if raw_to is not None else None)
    values = _request_values(method, path, query, _checked_digest(headers, body), to)
    return PendingRequest(
        params=params,
        signature=signature,
        base=signature_base(tuple(zip(REQUEST_COMPONENTS, values, strict=True)), params_text),
        signature_member=_serialize_bytes(signature),
        method=method,
        path=path,
        query=query,
        to=to,
    )


def verify_response(
    *,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    public_key: bytes | SessionKey,
    request_method: str,
    request_path: str,
    request_query: str,
    request_signature_member: str,
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
) -> SignatureParams:
    """Check that `public_key`'s node signed this response to the request described by the
    `request_*` arguments (`request_signature_member` from `signature_member`)."""
    signature = _parse_signature(headers)
    params, params_text = _parse_signature_input(headers, RESPONSE_COMPONENTS, with_nonce=False)
    _check_skew(params.created, now, max_skew)
    values = _response_values(
        status,
        _checked_digest(headers, body),
        request_method,
        request_path,
        request_query,
        request_signature_member,
    )
    base = signature_base(tuple(zip(RESPONSE_COMPONENTS, values, strict=True)), params_text)
    if isinstance(public_key, SessionKey):
        _verify_mac(public_key, params, base, signature)
    elif params.alg != ALG:
        raise BadSignatureError("not an ed25519 signature")
    else:
        _verify_signature(public_key, params.keyid, base, signature)
    return params


def _params_for(key: Signer, created: int, nonce: str) -> SignatureParams:
    if isinstance(key, SessionKey):
        return SignatureParams(keyid=key.id, created=created, nonce=nonce, alg=ALG_HMAC)
    return SignatureParams(keyid=node_id(public_key_bytes(key)), created=created, nonce=nonce)


def _sign(
    key: Signer,
    components: tuple[str, ...],
    values: tuple[str, ...],
    params: SignatureParams,
    digest: str,
) -> dict[str, str]:
    params_text = _serialize_signature_params(components, params)
    base = signature_base(tuple(zip(components, values, strict=True)), params_text)
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params_text}",
        "Signature": f"{LABEL}={_serialize_bytes(_signature(key, base))}",
    }


def _signature(key: Signer, base: bytes) -> bytes:
    if isinstance(key, SessionKey):
        return hmac.new(key.secret, base, hashlib.sha256).digest()
    return sign(key, base)


def _verify_mac(session: SessionKey, params: SignatureParams, base: bytes, mac: bytes) -> None:
    if params.alg != ALG_HMAC or params.keyid != session.id:
        raise BadSignatureError("not a MAC under this session")
    expected = hmac.new(session.secret, base, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise BadSignatureError("signature does not verify")


def _verify_signature(public_key: bytes, keyid: str, base: bytes, signature: bytes) -> None:
    if len(public_key) != PUBLIC_KEY_BYTES or node_id(public_key) != keyid:
        raise BadSignatureError("the public key is not the key of the signature's keyid")
    try:
        verify(public_key, base, signature)
    except SignatureError as e:
        raise BadSignatureError("signature does not verify") from e


def _checked_digest(headers: Mapping[str, str], body: bytes) -> str:
    """The Content-Digest header as sent (trimmed), once it matches `body`."""
    digest = _header(headers, "content-digest", DigestMismatchError)
    check_content_digest(digest, body)
    return (digest or "").strip(" \t")


def _check_skew(created: int, now: int, max_skew: int) -> None:
    if abs(created - now) > max_skew:
        raise ClockSkewError(f"signature created {created - now:+d} s from now")


def _request_target(method: str, path: str, query: str) -> tuple[str, str, str]:
    """The values of @method, @path and @query (RFC 9421 §2.2.1, §2.2.6, §2.2.7)."""
    if not _METHOD.fullmatch(method):
        raise MalformedSignatureError("method is not a token of letters")
    if not path.startswith("/"):
        raise MalformedSignatureError("path is not absolute")
    return (method.upper(), path, f"?{query}")


def _request_values(method: str, path: str, query: str, digest: str, to: str) -> tuple[str, ...]:
    return (*_request_target(method, path, query), digest, to)


def _check_to(to: str | None) -> str:
    if to is None:
        raise MalformedSignatureError("no Siku-To header (the receiving node's id, or '*')")
    if to != ANY_RECEIVER and not _KEYID.fullmatch(to):
        raise MalformedSignatureError("Siku-To is not a node id or '*'")
    return to


def _response_values(
    status: int, digest: str, method: str, path: str, query: str, request_member: str
) -> tuple[str, ...]:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise MalformedSignatureError("status is not a three-digit code")
    return (str(status), digest, *_request_target(method, path, query), request_member)


def _header(headers: Mapping[str, str], name: str, error: type[ProtocolError]) -> str | None:
    """The one value of header `name` (lower case), looked up case-insensitively."""
    getall = getattr(headers, "getall", None)  # aiohttp's case-insensitive multidicts
    if getall is not None:
        found = getall(name, [])
    else:
        found = [value for key, value in headers.items() if key.lower() == name]
    if len(found) > 1:
        # Combining repeated field lines is legal HTTP, but our peers never send them.
        raise error(f"repeated {name} header")
    return found[0] if found else None


def _member(headers: Mapping[str, str], name: str) -> _Member:
    """The sig1 member of the dictionary header `name`."""
    text = _header(headers, name, MalformedSignatureError)
    if text is None:
        raise SignatureMissingError(f"no {name} header")
    if len(text) > MAX_SIGNATURE_HEADER_CHARS:
        raise MalformedSignatureError(f"{name} header is longer than {MAX_SIGNATURE_HEADER_CHARS}")
    try:
        members = _parse_dictionary(text)
    except _SyntaxError as e:
        raise MalformedSignatureError(f"{name} does not parse: {e}") from None
    member = members.get(LABEL)
    if member is None:
        raise SignatureMissingError(f"{name} has no {LABEL} member")
    return member


# Fast paths for the exact headers siku's own signers write (one `sig1` member, canonical form):
# a regular expression extracts the values and the text must equal what our serializer makes
# of them, so the fast path accepts nothing the strict parser below would refuse or read
# differently. Anything else (other members, other spacing) takes the strict parser.
_FAST_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
_FAST_SIGNATURE = re.compile(r"sig1=:([A-Za-z0-9+/]{86}==|[A-Za-z0-9+/]{43}=):")
_FAST_INPUT = re.compile(
    r'sig1=(\([^()]*\);created=([0-9]{1,15});keyid="([a-z2-7]{26}|[a-z2-7]{32})"'
    r'(?:;nonce="([A-Za-z0-9_-]{16,64})")?;alg="(ed25519|hmac-sha256)")'
)


def _fast_header(
    headers: Mapping[str, str], name: str, pattern: re.Pattern[str]
) -> re.Match[str] | None:
    text = _header(headers, name, MalformedSignatureError)
    if text is None or len(text) > MAX_SIGNATURE_HEADER_CHARS:
        return None  # the strict path reports it
    return pattern.fullmatch(text)


def _parse_signature(headers: Mapping[str, str]) -> bytes:
    fast = _fast_header(headers, "signature", _FAST_SIGNATURE)
    if fast is not None:
        raw = base64.b64decode(fast.group(1), validate=True)
        if len(raw) in (SIGNATURE_BYTES, MAC_BYTES) and (
            base64.b64encode(raw).decode("ascii") == fast.group(1)
        ):
            return raw
    value = _member(headers, "signature").value
    if not isinstance(value, _Item) or not isinstance(value.value, bytes) or value.params:
        raise MalformedSignatureError("signature is not a byte sequence")
    if len(value.value) not in (SIGNATURE_BYTES, MAC_BYTES):
        raise MalformedSignatureError(
            f"signature is not {SIGNATURE_BYTES} (ed25519) or {MAC_BYTES} (hmac) bytes"
        )
    return value.value


def _parse_signature_input(
    headers: Mapping[str, str], components: tuple[str, ...], *, with_nonce: bool
) -> tuple[SignatureParams, str]:
    """The sig1 parameters and the member's exact text, which goes into the signature base."""
    fast = _fast_header(headers, "signature-input", _FAST_INPUT)
    if fast is not None and bool(fast.group(4)) == with_nonce:
        text, created, keyid, nonce, alg = fast.groups()
        try:
            fast_params: SignatureParams | None = SignatureParams(
                keyid=keyid, created=int(created), nonce=nonce or "", alg=alg
            )
        except MalformedSignatureError:
            fast_params = None
        if fast_params is not None and text == _serialize_signature_params(components, fast_params):
            return fast_params, text
    member = _member(headers, "signature-input")
    value = member.value
    if not isinstance(value, _InnerList):
        raise MalformedSignatureError("signature input is not an inner list")
    covered = []
    for item in value.items:
        if not isinstance(item.value, str) or isinstance(item.value, _Token):
            raise MalformedSignatureError("a covered component is not a string")
        covered.append(item.value + _serialize_params(item.params))
    if tuple(covered) != components:
        raise MalformedSignatureError(f"covered components are not {' '.join(components)}")
    # Exactly these parameters: we reject even valid RFC 9421 ones such as `expires` or `tag`
    # rather than give them meaning; our signers never send them.
    expected = {"created", "keyid", "nonce", "alg"} if with_nonce else {"created", "keyid", "alg"}
    params = dict(value.params)
    if set(params) != expected:
        raise MalformedSignatureError(f"signature parameters are not {', '.join(sorted(expected))}")
    created = params["created"]
    if not isinstance(created, int) or isinstance(created, bool):
        raise MalformedSignatureError("created is not an integer")
    keyid, nonce, alg = (_string_param(params, k) for k in ("keyid", "nonce", "alg"))
    if with_nonce and not nonce:
        raise MalformedSignatureError("a request needs a nonce")
    return SignatureParams(keyid=keyid, created=created, nonce=nonce, alg=alg), member.text


def _string_param(params: dict[str, _BareItem], key: str) -> str:
    value = params.get(key, "")
    if not isinstance(value, str) or isinstance(value, _Token):
        raise MalformedSignatureError(f"{key} is not a string")
    return value


@functools.lru_cache(maxsize=64)
def _identifier(component: str) -> str:
    """'@path;req' -> '"@path";req': the component identifier as it appears in the base."""
    name, sep, params = component.partition(";")
    return f'"{name}"{sep}{params}'


def _serialize_signature_params(components: tuple[str, ...], params: SignatureParams) -> str:
    inner = " ".join(_identifier(c) for c in components)
    text = f'({inner});created={params.created};keyid="{params.keyid}"'
    if params.nonce:
        text += f';nonce="{params.nonce}"'
    return text + f';alg="{params.alg}"'


# --- structured fields (RFC 8941) ---------------------------------------------------------------
# Dictionaries, inner lists, parameters and every bare item type but decimals. Strict where the
# RFC allows leniency: duplicate keys and non-canonical base64 are errors.


class _SyntaxError(Exception):
    """Text that is not a structured field of the supported subset (translated by callers)."""


class _Token(str):
    """An sf-token, told apart from an sf-string."""

    __slots__ = ()


_BareItem = int | str | bytes | bool  # str includes _Token; bool is tested before int
_Params = tuple[tuple[str, _BareItem], ...]


@dataclass(frozen=True)
class _Item:
    value: _BareItem
    params: _Params


@dataclass(frozen=True)
class _InnerList:
    items: tuple[_Item, ...]
    params: _Params


@dataclass(frozen=True)
class _Member:
    value: _Item | _InnerList
    text: str  # the member value exactly as received


# Character classes are frozensets, so that peek()'s "" at the end of input is in none of them.
_DIGITS = frozenset("0123456789")
_KEY_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz*")
_KEY_CHARS = _KEY_FIRST | frozenset("0123456789_-.")
_TOKEN_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*")
_TOKEN_CHARS = _TOKEN_FIRST | frozenset("0123456789!#$%&'+-.^_`|~:/")
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
# The same classes as regular expressions, for scanning whole runs at C speed (a character loop
# in Python made header parsing the peer API's largest cost).
_KEY_RE = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN_RE = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_INTEGER_RE = re.compile(r"-?([0-9]+)")
_STRING_RE = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_UNESCAPE_RE = re.compile(r'\\(["\\])')
_BYTES_RE = re.compile(r":([A-Za-z0-9+/=]*):")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _SyntaxError(f"expected {char!r} at {self.pos}")
        self.pos += 1

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:  # "" is in every str
            self.pos += 1

    def dictionary(self) -> dict[str, _Member]:
        members: dict[str, _Member] = {}
        while self.pos < len(self.text):
            key = self.key()
            if key in members:
                raise _SyntaxError(f"duplicate key {key!r}")
            start = self.pos
            value: _Item | _InnerList
            if self.peek() == "=":
                self.pos += 1
                start = self.pos
                value = self.inner_list() if self.peek() == "(" else self.item()
            else:
                value = _Item(True, self.params())
            members[key] = _Member(value, self.text[start : self.pos])
            self.skip(" \t")
            if self.pos == len(self.text):
                break
            self.expect(",")
            self.skip(" \t")
            if self.pos == len(self.text):
                raise _SyntaxError("trailing comma")
        return members

    def inner_list(self) -> _InnerList:
        self.expect("(")
        items: list[_Item] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return _InnerList(tuple(items), self.params())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise _SyntaxError(f"expected ' ' or ')' at {self.pos}")

    def item(self) -> _Item:
        return _Item(self.bare_item(), self.params())

    def params(self) -> _Params:
        params: dict[str, _BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            if key in params:
                raise _SyntaxError(f"duplicate parameter {key!r}")
            if self.peek() == "=":
                self.pos += 1
                params[key] = self.bare_item()
            else:
                params[key] = True
        return tuple(params.items())

    def key(self) -> str:
        match = _KEY_RE.match(self.text, self.pos)
        if match is None:
            raise _SyntaxError(f"expected a key at {self.pos}")
        self.pos = match.end()
        return match.group()

    def bare_item(self) -> _BareItem:
        char = self.peek()
        if char == "-" or char in _DIGITS:
            return self.integer()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        match = _TOKEN_RE.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
            return _Token(match.group())
        raise _SyntaxError(f"expected an item at {self.pos}")

    def integer(self) -> int:
        start = self.pos
        match = _INTEGER_RE.match(self.text, self.pos)
        if match is None or len(match.group(1)) > MAX_INTEGER_DIGITS:
            raise _SyntaxError(f"bad integer at {start}")
        self.pos = match.end()
        if self.peek() == ".":
            raise _SyntaxError(f"decimals are not supported (at {start})")
        return int(match.group())

    def string(self) -> str:
        match = _STRING_RE.match(self.text, self.pos)
        if match is None:
            raise _SyntaxError(f"bad or unterminated string at {self.pos}")
        self.pos = match.end()
        return _UNESCAPE_RE.sub(r"\1", match.group(1))

    def byte_sequence(self) -> bytes:
        start = self.pos + 1
        match = _BYTES_RE.match(self.text, self.pos)
        if match is None:
            raise _SyntaxError(f"bad byte sequence at {self.pos}")
        self.pos = match.end()
        text = match.group(1)
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raise _SyntaxError(f"bad base64 at {start}") from None
        if base64.b64encode(raw).decode("ascii") != text:
            raise _SyntaxError(f"non-canonical base64 at {start}")
        return raw

    def boolean(self) -> bool:
        self.expect("?")
        char = self.peek()
        if char not in ("0", "1"):
            raise _SyntaxError(f"bad boolean at {self.pos}")
        self.pos += 1
        return char == "1"


def _parse_dictionary(text: str) -> dict[str, _Member]:
    return _Parser(text.strip(" \t")).dictionary()


def _serialize_bare(value: _BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return _serialize_bytes(value)
    if isinstance(value, _Token):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_params(params: _Params) -> str:
    return "".join(
        f";{key}" if value is True else f";{key}={_serialize_bare(value)}" for key, value in params
    )


def _serialize_bytes(value: bytes) -> str:
    return f":{base64.b64encode(value).decode('ascii')}:"
