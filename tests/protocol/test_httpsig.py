"""HTTP Message Signatures: round trips, every rejection, response binding and a known answer."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError, SignatureError
from protocol.httpsig import (
    ALG_HMAC,
    ANY_RECEIVER,
    DEFAULT_MAX_SKEW_SECONDS,
    LABEL,
    MAX_CONTENT_DIGEST_HEADER_CHARS,
    MAX_SIGNATURE_HEADER_CHARS,
    REQUEST_COMPONENTS,
    RESPONSE_COMPONENTS,
    BadSignatureError,
    ClockSkewError,
    DigestMismatchError,
    MalformedSignatureError,
    PendingRequest,
    SessionKey,
    SignatureMissingError,
    SignatureParams,
    check_content_digest,
    content_digest,
    parse_request,
    sign_request,
    sign_response,
    signature_base,
    signature_member,
    verify_response,
)
from protocol.identity import node_id, public_key_bytes, sign, verify

from .strategies import KEYS

CLIENT, SERVER, STRANGER = KEYS
CLIENT_PUB, SERVER_PUB, STRANGER_PUB = (public_key_bytes(k) for k in KEYS)
NOW = 1_700_000_000
SERVER_ID = node_id(SERVER_PUB)
NONCE = "n0nce-N0NCE_nonce"
REQUEST: dict[str, Any] = {
    "method": "POST",
    "path": "/v1/records/ark:/13030/bc123",
    "query": "since=42&limit=10",
    "body": b'{"hello": "world"}',
}
RESPONSE_BODY = b'{"records": []}'

prop_settings = settings(max_examples=80, deadline=None)


def signed_request(**changes: Any) -> dict[str, str]:
    args = {**REQUEST, "created": NOW, "nonce": NONCE, "to": SERVER_ID, **changes}
    return sign_request(CLIENT, **args)


def parse(headers: dict[str, str], **changes: Any) -> PendingRequest:
    args = {**REQUEST, "headers": headers, "now": NOW, **changes}
    return parse_request(**args)


def receive(headers: dict[str, str], **changes: Any) -> PendingRequest:
    """Parse and verify under the client's key, as the server does."""
    pending = parse(headers, **changes)
    pending.verify(CLIENT_PUB)
    return pending


def respond(
    request_headers: dict[str, str] | None = None, status: int = 200, **changes: Any
) -> dict[str, str]:
    pending = receive(request_headers or signed_request())
    args = {"status": status, "body": RESPONSE_BODY, "created": NOW, "request": pending, **changes}
    return sign_response(SERVER, **args)


def check_response(
    headers: dict[str, str], request_headers: dict[str, str] | None = None, **changes: Any
) -> SignatureParams:
    args = {
        "status": 200,
        "headers": headers,
        "body": RESPONSE_BODY,
        "public_key": SERVER_PUB,
        "request_method": REQUEST["method"],
        "request_path": REQUEST["path"],
        "request_query": REQUEST["query"],
        "request_signature_member": signature_member(request_headers or signed_request()),
        "now": NOW,
        **changes,
    }
    return verify_response(**args)


def replace(headers: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    assert old in headers[name]
    return {**headers, name: headers[name].replace(old, new, 1)}


def signature_input_with(members: str) -> dict[str, str]:
    """A signed request whose Signature-Input is replaced by `members`."""
    return {**signed_request(), "Signature-Input": members}


VALID_PARAMS = f';created={NOW};keyid="{node_id(CLIENT_PUB)}";nonce="{NONCE}";alg="ed25519"'
VALID_LIST = '("@method" "@path" "@query" "content-digest" "siku-to")'


# --- Content-Digest -----------------------------------------------------------------------------


def test_content_digest_matches_rfc_9530_example() -> None:
    # RFC 9530 §2 example body and its sha-256 Content-Digest.
    body = b'{"hello": "world"}'
    assert content_digest(body) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    check_content_digest(content_digest(body), body)
    check_content_digest("sha-512=:AAAA:, " + content_digest(body), body)  # others are ignored


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        content_digest(b"other body"),
        "sha-512=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE:",  # no padding
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:;x=1",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:,",
        'sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="',
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-256=:AAAA:",
        "x=" + "a" * MAX_CONTENT_DIGEST_HEADER_CHARS + ", " + content_digest(b'{"hello": "world"}'),
    ],
)
def test_bad_content_digest_is_rejected(header: str | None) -> None:
    with pytest.raises(DigestMismatchError) as e:
        check_content_digest(header, b'{"hello": "world"}')
    assert e.value.code == "digest-mismatch"


# --- requests -----------------------------------------------------------------------------------


def test_request_round_trip() -> None:
    headers = signed_request()
    assert set(headers) == {"Content-Digest", "Siku-To", "Signature-Input", "Signature"}
    pending = receive(headers)
    assert pending.params == SignatureParams(keyid=node_id(CLIENT_PUB), created=NOW, nonce=NONCE)
    assert pending.signature_member == signature_member(headers)
    assert headers["Signature"] == f"{LABEL}={pending.signature_member}"
    assert pending.base == signature_base(
        list(
            zip(
                REQUEST_COMPONENTS,
                [
                    "POST",
                    REQUEST["path"],
                    "?" + REQUEST["query"],
                    headers["Content-Digest"],
                    SERVER_ID,
                ],
                strict=True,
            )
        ),
        headers["Signature-Input"].removeprefix("sig1="),
    )
    verify(CLIENT_PUB, pending.base, pending.signature)


def test_request_signature_input_is_the_documented_shape() -> None:
    assert signed_request()["Signature-Input"] == f"sig1={VALID_LIST}{VALID_PARAMS}"


def test_header_names_are_case_insensitive_and_whitespace_is_trimmed() -> None:
    headers = signed_request()
    receive({k.lower(): v for k, v in headers.items()})
    receive({k.upper(): f" {v}\t" for k, v in headers.items()})


def test_empty_query_and_empty_body_round_trip() -> None:
    headers = signed_request(method="GET", query="", body=b"")
    pending = receive(headers, method="GET", query="", body=b"")
    assert b'\n"@query": ?\n' in pending.base


def test_method_is_compared_in_upper_case() -> None:
    receive(signed_request(method="post"), method="POST")


def test_other_members_are_ignored() -> None:
    headers = signed_request()
    headers["Signature-Input"] = f'sig0=("@method");created=1, {headers["Signature-Input"]}, x=?1'
    headers["Signature"] = f"{headers['Signature']}, other=:AAAA:, flag"
    receive(headers)


@pytest.mark.parametrize(
    ("field", "value"),
    [("method", "GET"), ("path", "/v1/records/other"), ("query", "since=43&limit=10")],
)
def test_tampered_request_target_fails_verification(field: str, value: str) -> None:
    pending = parse(signed_request(), **{field: value})
    with pytest.raises(BadSignatureError) as e:
        pending.verify(CLIENT_PUB)
    assert e.value.code == "bad-signature"
    assert isinstance(e.value, SignatureError)


def test_tampered_body_fails_the_digest_check() -> None:
    with pytest.raises(DigestMismatchError):
        parse(signed_request(), body=b'{"hello": "moon"}')


def test_replaced_digest_and_body_fail_verification() -> None:
    body = b'{"hello": "moon"}'
    headers = {**signed_request(), "Content-Digest": content_digest(body)}
    with pytest.raises(BadSignatureError):
        receive(headers, body=body)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (f"created={NOW}", f"created={NOW + 1}"),
        (f'nonce="{NONCE}"', 'nonce="another-nonce-value"'),
    ],
)
def test_tampered_signature_params_fail_verification(old: str, new: str) -> None:
    with pytest.raises(BadSignatureError):
        receive(replace(signed_request(), "Signature-Input", old, new))


def test_tampered_keyid_fails_under_either_key() -> None:
    stranger = node_id(STRANGER_PUB)
    headers = replace(signed_request(), "Signature-Input", node_id(CLIENT_PUB), stranger)
    pending = parse(headers)
    assert pending.params.keyid == stranger
    with pytest.raises(BadSignatureError, match="keyid"):
        pending.verify(CLIENT_PUB)
    with pytest.raises(BadSignatureError):
        pending.verify(STRANGER_PUB)


def test_wrong_key_fails_verification() -> None:
    headers = sign_request(STRANGER, **REQUEST, created=NOW, nonce=NONCE, to=SERVER_ID)
    with pytest.raises(BadSignatureError):
        receive(headers)  # keyid names the stranger, we expected the client
    with pytest.raises(BadSignatureError):
        parse(signed_request()).verify(b"\x00" * 31)


@pytest.mark.parametrize("missing", ["Signature", "Signature-Input"])
def test_missing_signature_header(missing: str) -> None:
    headers = signed_request()
    del headers[missing]
    with pytest.raises(SignatureMissingError) as e:
        parse(headers)
    assert e.value.code == "signature-missing"


@pytest.mark.parametrize("name", ["Signature", "Signature-Input"])
def test_missing_sig1_member(name: str) -> None:
    headers = signed_request()
    headers[name] = headers[name].replace("sig1=", "sig2=", 1)
    with pytest.raises(SignatureMissingError):
        parse(headers)


def test_missing_content_digest() -> None:
    headers = signed_request()
    del headers["Content-Digest"]
    with pytest.raises(DigestMismatchError):
        parse(headers)


def test_repeated_headers_are_rejected() -> None:
    headers = signed_request()
    with pytest.raises(MalformedSignatureError, match="repeated"):
        parse({**headers, "signature": headers["Signature"]})
    with pytest.raises(DigestMismatchError, match="repeated"):
        parse({**headers, "content-digest": headers["Content-Digest"]})


@pytest.mark.parametrize(
    "components",
    [
        '("@method" "@path" "@query" "content-digest" "siku-to" "date")',  # extra
        '("@path" "@method" "@query" "content-digest" "siku-to")',  # reordered
        '("@method" "@path" "content-digest" "siku-to")',  # missing
        '("@method" "@path" "@query" "content-digest")',  # the receiver not covered
        "()",
        '("@method" "@path" "@query" "content-digest";req "siku-to")',  # component parameters
        '("@method" "@path" "@query" "Content-Digest" "siku-to")',
        '("@method" "@path" "@query" content-digest "siku-to")',  # a token, not a string
        '("@method" "@path" "@query" "content-digest" "siku-to" "siku-to")',
    ],
)
def test_wrong_covered_components_are_rejected(components: str) -> None:
    with pytest.raises(MalformedSignatureError, match="component"):
        parse(signature_input_with(f"sig1={components}{VALID_PARAMS}"))


KEYID = node_id(CLIENT_PUB)


@pytest.mark.parametrize(
    "params",
    [
        f';created={NOW};keyid="{KEYID}";nonce="{NONCE}";alg="rsa-pss-sha512"',  # unknown alg
        f';created={NOW};keyid="{KEYID}";nonce="{NONCE}";alg=ed25519',  # token, not string
        f';created={NOW};keyid="{KEYID}";nonce="{NONCE}"',  # no alg
        f';created={NOW};keyid="{KEYID}";alg="ed25519"',  # no nonce on a request
        f';created={NOW};keyid="{KEYID}";nonce="";alg="ed25519"',
        f';keyid="{KEYID}";nonce="{NONCE}";alg="ed25519"',  # no created
        f';created="{NOW}";keyid="{KEYID}";nonce="{NONCE}";alg="ed25519"',
        f';created=?1;keyid="{KEYID}";nonce="{NONCE}";alg="ed25519"',
        f';created=-1;keyid="{KEYID}";nonce="{NONCE}";alg="ed25519"',
        f';created={NOW};nonce="{NONCE}";alg="ed25519"',  # no keyid
        f';created={NOW};keyid="{KEYID.upper()}";nonce="{NONCE}";alg="ed25519"',
        f';created={NOW};keyid="{KEYID[:-1]}";nonce="{NONCE}";alg="ed25519"',
        f';created={NOW};keyid=:AAAA:;nonce="{NONCE}";alg="ed25519"',
        f';created={NOW};keyid="{KEYID}";nonce="short";alg="ed25519"',
        f';created={NOW};keyid="{KEYID}";nonce="{"n" * 65}";alg="ed25519"',
        f';created={NOW};keyid="{KEYID}";nonce="not base64url!!!!";alg="ed25519"',
        f';created={NOW};keyid="{KEYID}";nonce=123456789012345;alg="ed25519"',
        f';created={NOW};keyid="{KEYID}";nonce="{NONCE}";alg="ed25519";expires={NOW + 60}',
        f';created={NOW};keyid="{KEYID}";nonce="{NONCE}";alg="ed25519";tag="siku"',
    ],
)
def test_bad_signature_params_are_rejected(params: str) -> None:
    with pytest.raises(MalformedSignatureError) as e:
        parse(signature_input_with(f"sig1={VALID_LIST}{params}"))
    assert e.value.code == "malformed-signature"


@pytest.mark.parametrize(
    "value",
    [
        f"sig1 = {VALID_LIST}{VALID_PARAMS}",
        f"sig1={VALID_LIST}{VALID_PARAMS},",
        f"sig1={VALID_LIST}{VALID_PARAMS}, sig1={VALID_LIST}{VALID_PARAMS}",  # duplicate key
        f"Sig1={VALID_LIST}{VALID_PARAMS}",
        f"sig1={VALID_LIST[:-1]}{VALID_PARAMS}",  # unclosed inner list
        f'sig1=("@method""@path" "@query" "content-digest" "siku-to"){VALID_PARAMS}',
        f"sig1={VALID_LIST}{VALID_PARAMS};created={NOW}",  # duplicate parameter
        f"sig1={VALID_LIST};created=1.5" + VALID_PARAMS.split(";", 2)[2],  # decimal
        f"sig1={VALID_LIST};created=1234567890123456" + VALID_PARAMS.split(";", 2)[2],
        "sig1=" + VALID_LIST + VALID_PARAMS.replace("ed25519", "ed25519\\x"),  # bad escape
        "sig1=" + VALID_LIST + VALID_PARAMS.replace("ed25519", "ed25519é"),  # not ASCII
        "sig1=" + VALID_LIST + VALID_PARAMS.replace("ed25519", "ed25519\n"),
        "sig1=" + VALID_LIST + VALID_PARAMS.removesuffix('"'),  # unterminated string
        f"sig1={VALID_LIST} {VALID_PARAMS}",
        f'sig1="a string"{VALID_PARAMS}',
        f"sig1=:AAAA:{VALID_PARAMS}",
        f"sig1{VALID_PARAMS}",  # a bare key is boolean true, not an inner list
        "sig1=?2",
        "sig1=(",
        "sig1=",
        "=x",
        ",",
    ],
)
def test_malformed_signature_input_is_rejected(value: str) -> None:
    with pytest.raises(MalformedSignatureError):
        parse(signature_input_with(value))


@pytest.mark.parametrize(
    "value",
    [
        "sig1=:AAAA:",  # not 64 bytes
        "sig1=AAAA",
        '"sig1"=:AAAA:',
        "sig1=:" + base64.b64encode(b"\x00" * 64).decode().rstrip("=") + ":",  # no padding
        "sig1=:" + base64.urlsafe_b64encode(b"\xff" * 64).decode() + ":",  # base64url
        "sig1=:" + base64.b64encode(b"\x00" * 64).decode() + ":;p=1",
        "sig1=(:" + base64.b64encode(b"\x00" * 64).decode() + ":)",
        "sig1=?1",
        "sig1",
        "sig1=:" + base64.b64encode(b"\x00" * 64).decode()[:-3] + "B==:",  # non-canonical
    ],
)
def test_malformed_signature_is_rejected(value: str) -> None:
    with pytest.raises(MalformedSignatureError):
        parse({**signed_request(), "Signature": value})


@pytest.mark.parametrize("name", ["Signature", "Signature-Input"])
def test_oversized_header_is_rejected(name: str) -> None:
    headers = signed_request()
    padding = "x" * (MAX_SIGNATURE_HEADER_CHARS - len(headers[name]))
    # Right at the bound it parses (other members are ignored); one more character does not.
    receive({**headers, name: f"{headers[name]}, {padding[2:]}"})
    with pytest.raises(MalformedSignatureError, match="longer"):
        parse({**headers, name: f"{headers[name]}, {padding[1:]}"})


@pytest.mark.parametrize(
    ("created", "ok"),
    [
        (NOW - DEFAULT_MAX_SKEW_SECONDS, True),
        (NOW + DEFAULT_MAX_SKEW_SECONDS, True),
        (NOW - DEFAULT_MAX_SKEW_SECONDS - 1, False),
        (NOW + DEFAULT_MAX_SKEW_SECONDS + 1, False),
    ],
)
def test_clock_skew(created: int, ok: bool) -> None:
    headers = signed_request(created=created)
    if ok:
        receive(headers)
    else:
        with pytest.raises(ClockSkewError) as e:
            parse(headers)
        assert e.value.code == "clock-skew"


def test_max_skew_is_an_argument() -> None:
    headers = signed_request(created=NOW - 10)
    receive(headers, max_skew=10)
    with pytest.raises(ClockSkewError):
        parse(headers, max_skew=9)


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": ""},
        {"nonce": "too-short"},
        {"nonce": "has space in the nonce"},
        {"created": -1},
        {"method": "GE T"},
        {"path": "relative/path"},
        {"path": "/with\nnewline"},
        {"path": "/caf\u00e9"},  # must be sent percent-encoded
        {"query": "a=\u00e9"},
    ],
)
def test_signing_rejects_values_it_cannot_represent(changes: dict[str, Any]) -> None:
    with pytest.raises(MalformedSignatureError):
        signed_request(**changes)


def test_verifying_rejects_request_targets_it_cannot_represent() -> None:
    with pytest.raises(MalformedSignatureError):
        parse(signed_request(), path="/a\r\nb")


# --- responses ----------------------------------------------------------------------------------


def test_response_round_trip() -> None:
    request_headers = signed_request()
    headers = respond(request_headers)
    params = check_response(headers, request_headers)
    assert params == SignatureParams(keyid=node_id(SERVER_PUB), created=NOW, nonce="")
    assert "nonce" not in headers["Signature-Input"]
    assert headers["Signature-Input"].startswith(
        'sig1=("@status" "content-digest" "@method";req "@path";req "@query";req'
        ' "signature";req;key="sig1");created='
    )
    assert RESPONSE_COMPONENTS[-1] == 'signature;req;key="sig1"'


def test_response_to_a_different_request_fails() -> None:
    headers = respond(signed_request())
    replayed_on = signed_request(nonce="a-different-nonce")
    with pytest.raises(BadSignatureError):
        check_response(headers, replayed_on)
    for field, value in [("method", "PUT"), ("path", "/v1/other"), ("query", "")]:
        with pytest.raises(BadSignatureError):
            changes: dict[str, Any] = {f"request_{field}": value}
            check_response(headers, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"status": 500},
        {"public_key": CLIENT_PUB},
        {"public_key": b"short"},
    ],
)
def test_tampered_response_fails_verification(changes: dict[str, Any]) -> None:
    with pytest.raises(BadSignatureError):
        check_response(respond(), **changes)


def test_tampered_response_body_fails_the_digest_check() -> None:
    with pytest.raises(DigestMismatchError):
        check_response(respond(), body=b"{}")


def test_response_needs_its_headers_and_exact_shape() -> None:
    headers = respond()
    with pytest.raises(SignatureMissingError):
        check_response({k: v for k, v in headers.items() if k != "Signature"})
    with pytest.raises(MalformedSignatureError, match="component"):
        check_response(replace(headers, "Signature-Input", ' "@query";req', ""))
    with pytest.raises(MalformedSignatureError, match="parameters"):
        check_response(replace(headers, "Signature-Input", ";alg=", f';nonce="{NONCE}";alg='))
    with pytest.raises(ClockSkewError):
        check_response(headers, now=NOW + DEFAULT_MAX_SKEW_SECONDS + 1)
    with pytest.raises(MalformedSignatureError):
        check_response(headers, status=42)


def test_a_request_signature_is_not_a_response_signature() -> None:
    with pytest.raises(MalformedSignatureError):
        check_response(signed_request(), body=REQUEST["body"], public_key=CLIENT_PUB)


# --- errors -------------------------------------------------------------------------------------


def test_error_codes_are_stable_and_rooted() -> None:
    codes = {
        SignatureMissingError: "signature-missing",
        MalformedSignatureError: "malformed-signature",
        DigestMismatchError: "digest-mismatch",
        ClockSkewError: "clock-skew",
        BadSignatureError: "bad-signature",
    }
    for cls, code in codes.items():
        assert cls.code == code
        assert issubclass(cls, ProtocolError)
    assert issubclass(BadSignatureError, SignatureError)


# --- properties ---------------------------------------------------------------------------------

paths = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(
    lambda s: "/" + s
)
queries = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
nonces = st.text(BASE64URL, min_size=16, max_size=64)


@prop_settings
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=paths,
    query=queries,
    body=st.binary(max_size=256),
    nonce=nonces,
    status=st.integers(100, 599),
)
def test_any_request_and_response_round_trip(
    method: str, path: str, query: str, body: bytes, nonce: str, status: int
) -> None:
    target: dict[str, Any] = {"method": method, "path": path, "query": query}
    headers = sign_request(CLIENT, **target, body=body, created=NOW, nonce=nonce, to=SERVER_ID)
    pending = parse_request(**target, headers=headers, body=body, now=NOW)
    pending.verify(CLIENT_PUB)
    response = sign_response(SERVER, status=status, body=b"", created=NOW, request=pending)
    verify_response(
        status=status,
        headers=response,
        body=b"",
        public_key=SERVER_PUB,
        request_method=method,
        request_path=path,
        request_query=query,
        request_signature_member=signature_member(headers),
        now=NOW,
    )


@prop_settings
@given(index=st.integers(0, 63), flip=st.integers(1, 255))
def test_flipping_any_signature_byte_fails(index: int, flip: int) -> None:
    headers = signed_request()
    signature = bytearray(parse(headers).signature)
    signature[index] ^= flip
    headers["Signature"] = f"sig1=:{base64.b64encode(bytes(signature)).decode()}:"
    with pytest.raises(BadSignatureError):
        receive(headers)


@prop_settings
@given(data=st.data(), response=st.booleans())
def test_changing_any_signature_input_character_fails(data: st.DataObject, response: bool) -> None:
    request_headers = signed_request()
    headers = respond(request_headers) if response else request_headers
    text = headers["Signature-Input"]
    index = data.draw(st.integers(0, len(text) - 1), label="index")
    char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != text[index]), label="char")
    headers = {**headers, "Signature-Input": text[:index] + char + text[index + 1 :]}
    with pytest.raises(ProtocolError):
        if response:
            check_response(headers, request_headers)
        else:
            receive(headers)


# --- known answer: RFC 9421 Appendix B.2.6 ------------------------------------------------------

# RFC 9421 Appendix B.1.4 test-key-ed25519 (private key) and the B.2.6 example.
RFC_ED25519_KEY = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_B26_BASE = b"""\
"date": Tue, 20 Apr 2021 02:07:55 GMT
"@method": POST
"@path": /foo
"@authority": example.com
"content-type": application/json
"content-length": 18
"@signature-params": ("date" "@method" "@path" "@authority" "content-type" \
"content-length");created=1618884473;keyid="test-key-ed25519\""""
RFC_B26_SIGNATURE = (
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
)


def test_rfc_9421_b26_known_answer() -> None:
    key = load_pem_private_key(RFC_ED25519_KEY, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    components = [
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("@method", "POST"),
        ("@path", "/foo"),
        ("@authority", "example.com"),
        ("content-type", "application/json"),
        ("content-length", "18"),
    ]
    params = (
        '("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"'
    )
    base = signature_base(components, params)
    assert base == RFC_B26_BASE
    signature = sign(key, base)  # Ed25519 is deterministic: the RFC's exact signature
    assert base64.b64encode(signature).decode() == RFC_B26_SIGNATURE
    verify(public_key_bytes(key), base, signature)
    # The RFC's signature value, as a sig1 member, parses and re-serializes unchanged.
    assert signature_member({"signature": f"sig1=:{RFC_B26_SIGNATURE}:"}) == (
        f":{RFC_B26_SIGNATURE}:"
    )


# --- the receiver ------------------------------------------------------------------------------


def test_the_receiver_is_signed_and_checked() -> None:
    headers = signed_request()
    assert headers["Siku-To"] == SERVER_ID
    assert receive(headers).to == SERVER_ID
    # Pointing a request at another node breaks the signature.
    other = node_id(STRANGER_PUB)
    with pytest.raises(BadSignatureError):
        receive({**headers, "Siku-To": other})
    first_contact = signed_request(to=ANY_RECEIVER)
    assert receive(first_contact).to == ANY_RECEIVER


@pytest.mark.parametrize("value", [None, "", "someone", "*" * 2, SERVER_ID.upper()])
def test_a_missing_or_malformed_receiver_is_refused(value: str | None) -> None:
    headers = {k: v for k, v in signed_request().items() if k != "Siku-To"}
    if value is not None:
        headers["Siku-To"] = value
    with pytest.raises(MalformedSignatureError, match="Siku-To"):
        parse(headers)
    with pytest.raises(MalformedSignatureError, match="Siku-To"):
        signed_request(to=value if value is not None else "")


# --- sessions (hmac-sha256) ----------------------------------------------------------------------

SESSION = SessionKey("a" * 26, bytes(range(32)))
OTHER_SESSION = SessionKey("b" * 26, bytes(range(1, 33)))


def test_a_session_request_and_its_answer_round_trip() -> None:
    headers = sign_request(SESSION, **REQUEST, created=NOW, nonce=NONCE, to=SERVER_ID)
    pending = parse(headers)
    assert (pending.params.alg, pending.params.keyid) == (ALG_HMAC, SESSION.id)
    pending.verify_session(SESSION)
    with pytest.raises(BadSignatureError):
        pending.verify_session(OTHER_SESSION)
    with pytest.raises(BadSignatureError):
        pending.verify(CLIENT_PUB)  # an HMAC is not an Ed25519 signature
    answer = sign_response(SESSION, status=200, body=RESPONSE_BODY, created=NOW, request=pending)
    check_response(answer, headers, public_key=SESSION)
    with pytest.raises(BadSignatureError):
        check_response(answer, headers, public_key=OTHER_SESSION)
    with pytest.raises(BadSignatureError):
        check_response(answer, headers, public_key=SERVER_PUB)  # not signed by the node key


def test_an_ed25519_request_does_not_pass_as_a_session_one() -> None:
    pending = parse(signed_request())
    with pytest.raises(BadSignatureError):
        pending.verify_session(SessionKey(pending.params.keyid[:26], bytes(32)))


def test_session_ids_and_algorithms_must_agree() -> None:
    with pytest.raises(MalformedSignatureError):
        SignatureParams(keyid=SESSION.id, created=NOW, nonce=NONCE)  # a session id as node id
    with pytest.raises(MalformedSignatureError):
        SignatureParams(keyid=node_id(CLIENT_PUB), created=NOW, nonce=NONCE, alg=ALG_HMAC)
    with pytest.raises(MalformedSignatureError):
        SessionKey("short", bytes(32))
