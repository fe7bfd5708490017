"""Holdings pages and the replication policy (protocol/holdings.py): keys, page filing, signing,
and strict decoding (canonical form, signature, invariants)."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import (
    DecodeError,
    ProtocolError,
    SignatureError,
    UnsupportedVersionError,
    ValidationError,
)
from protocol.hlc import MAX_COUNTER, MAX_WALL_MS, Hlc
from protocol.holdings import (
    ENTRY_BYTES,
    KIND_HOLDINGS,
    KIND_POLICY,
    MAX_ENTRIES,
    PAGES_BY_TIER,
    Holding,
    HoldingsPage,
    ReplicationPolicy,
    content_key,
    decode_holdings,
    decode_policy,
    encode_entries,
    page_of,
    pid_key,
    sign_holdings,
    sign_policy,
)
from protocol.identity import public_key_bytes, sign
from protocol.records import (
    ChunkRef,
    FileEntry,
    SignedRecord,
    canonical_pack,
    decode_envelope,
    encode_envelope,
    signing_bytes,
)


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


HOLDER = key("holder")
HOLDER_PUB = public_key_bytes(HOLDER)
OTHER = key("other")
ROOT = key("root")
PAGE_COUNTS = sorted(PAGES_BY_TIER.values())
VERSION = Hlc(1_000, 2)


def keys_in_page(pages: int, page: int, n: int, salt: str = "") -> list[bytes]:
    """n distinct pid keys filed in `page` of `pages` (first 4 bytes forced into the page)."""
    span = (1 << 32) // pages
    out = []
    for i in range(n):
        tail = hashlib.sha256(f"{salt}{page}/{i}".encode()).digest()
        top = page * span + int.from_bytes(tail[:4], "big") % span
        out.append(top.to_bytes(4, "big") + tail[4:8])
    return sorted(set(out))


def holdings_for(pages: int, page: int, n: int) -> list[Holding]:
    return [
        Holding(k, hashlib.sha256(k).digest()[:8], 1_700_000_000 + i)
        for i, k in enumerate(keys_in_page(pages, page, n))
    ]


def page_with(n: int = 3, *, pages: int = 64, page: int = 5, hlc: Hlc = VERSION) -> HoldingsPage:
    return HoldingsPage(HOLDER_PUB, page, pages, hlc, encode_entries(holdings_for(pages, page, n)))


def resign(kind: str, body: bytes, signer: Ed25519PrivateKey = HOLDER) -> SignedRecord:
    """A body signed as is: how a forger would make one the encoder never would."""
    return SignedRecord(
        kind, body, public_key_bytes(signer), sign(signer, signing_bytes(kind, body))
    )


def holdings_body(fields: list[object]) -> bytes:
    return canonical_pack(fields)


def good_fields(page: HoldingsPage) -> list[object]:
    return [
        1,
        page.holder,
        page.page,
        page.pages,
        page.version.wall_ms,
        page.version.counter,
        page.entries,
    ]


# --- keys and filing -----------------------------------------------------------------------------


def test_pid_key_is_the_first_eight_bytes_of_sha256() -> None:
    pid = "ark:/13030/c2b0000000"
    assert pid_key(pid) == hashlib.sha256(pid.encode()).digest()[:8]
    assert pid_key("ark:/13030/县志") == hashlib.sha256("ark:/13030/县志".encode()).digest()[:8]
    assert len(pid_key("")) == 8


def file_entry(path: str, data: bytes) -> FileEntry:
    d = hashlib.sha256(data).digest()
    return FileEntry(path, len(data), "application/pdf", d, (ChunkRef(d, len(data)),))


def test_content_key_follows_file_digests_sizes_and_order_not_names() -> None:
    a, b = file_entry("a.pdf", b"alpha"), file_entry("b.pdf", b"beta!")
    expected = hashlib.sha256(
        a.sha256 + (5).to_bytes(8, "big") + b.sha256 + (5).to_bytes(8, "big")
    ).digest()[:8]
    assert content_key([a, b]) == expected
    assert content_key([b, a]) != expected  # order counts
    renamed = file_entry("renamed.pdf", b"alpha")
    assert content_key([renamed, b]) == expected  # a metadata-ish change keeps the key
    assert content_key([file_entry("a.pdf", b"alphA"), b]) != expected
    assert content_key([]) == hashlib.sha256(b"").digest()[:8]


@pytest.mark.parametrize("pages", PAGE_COUNTS)
def test_page_of_is_the_top_bits(pages: int) -> None:
    bits = pages.bit_length() - 1
    assert page_of(b"\x00" * 8, pages) == 0
    assert page_of(b"\xff" * 8, pages) == pages - 1
    assert page_of(b"\x80" + b"\x00" * 7, pages) == pages // 2
    for k in (pid_key(f"p{i}") for i in range(200)):
        assert page_of(k, pages) == int.from_bytes(k, "big") >> (64 - bits)


# --- Holding and HoldingsPage invariants ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pk", "ck", "verified"),
    [(b"\x00" * 7, b"\x00" * 8, 0), (b"\x00" * 8, b"\x00" * 9, 0), (b"\x00" * 8, b"\x00" * 8, -1),
     (b"\x00" * 8, b"\x00" * 8, 1 << 32)],
)  # fmt: skip
def test_holding_rejects_bad_keys_and_times(pk: bytes, ck: bytes, verified: int) -> None:
    with pytest.raises(ValidationError):
        Holding(pk, ck, verified)


def test_holding_accepts_the_edges() -> None:
    assert Holding(b"\x00" * 8, b"\xff" * 8, (1 << 32) - 1).verified_s == (1 << 32) - 1


def test_encode_entries_sorts_by_pid_key() -> None:
    hs = holdings_for(64, 9, 5)
    shuffled = [hs[3], hs[0], hs[4], hs[1], hs[2]]
    encoded = encode_entries(shuffled)
    assert len(encoded) == 5 * ENTRY_BYTES
    assert encoded == b"".join(
        h.pid_key + h.content_key + h.verified_s.to_bytes(4, "big") for h in hs
    )
    page = HoldingsPage(HOLDER_PUB, 9, 64, Hlc(1), encoded)
    assert list(page) == hs
    assert len(page) == 5


def test_page_rejects_unsorted_repeated_and_misfiled_entries() -> None:
    hs = holdings_for(64, 7, 3)
    raw = [h.pid_key + h.content_key + h.verified_s.to_bytes(4, "big") for h in hs]
    with pytest.raises(ValidationError, match="sorted"):
        HoldingsPage(HOLDER_PUB, 7, 64, Hlc(1), raw[1] + raw[0] + raw[2])
    with pytest.raises(ValidationError, match="sorted"):
        HoldingsPage(HOLDER_PUB, 7, 64, Hlc(1), raw[0] + raw[0])
    with pytest.raises(ValidationError, match="wrong page"):
        HoldingsPage(HOLDER_PUB, 8, 64, Hlc(1), b"".join(raw))
    with pytest.raises(ValidationError, match="length"):
        HoldingsPage(HOLDER_PUB, 7, 64, Hlc(1), b"".join(raw)[:-1])


@pytest.mark.parametrize("pages", [0, 1, 2, 63, 65, 128, 512, 2048, 8192])
def test_page_counts_are_only_the_tier_values(pages: int) -> None:
    with pytest.raises(ValidationError, match="page count"):
        HoldingsPage(HOLDER_PUB, 0, pages, Hlc(1), b"")


@pytest.mark.parametrize("pages", PAGE_COUNTS)
def test_page_index_bounds(pages: int) -> None:
    assert HoldingsPage(HOLDER_PUB, pages - 1, pages, Hlc(1), b"").page == pages - 1
    for bad in (-1, pages):
        with pytest.raises(ValidationError, match="outside"):
            HoldingsPage(HOLDER_PUB, bad, pages, Hlc(1), b"")


def test_holder_must_be_a_32_byte_key() -> None:
    for bad in (b"\x01" * 31, b"\x01" * 33, bytearray(32), "x" * 32):
        with pytest.raises(ValidationError, match="holder"):
            HoldingsPage(bad, 0, 64, Hlc(1), b"")  # type: ignore[arg-type]


def test_entry_count_bound() -> None:
    # Entries are validated before anything else is looked at past the length: a page of
    # MAX_ENTRIES + 1 zero entries fails on its count, not its order.
    with pytest.raises(ValidationError, match="too many"):
        HoldingsPage(HOLDER_PUB, 0, 4096, Hlc(1), bytes(ENTRY_BYTES * (MAX_ENTRIES + 1)))


def test_a_full_national_page_decodes() -> None:
    """MAX_ENTRIES entries in one national page, signed and decoded (4 MB)."""
    pages, page = 4096, 4095
    base = page << 52  # top 12 bits of 64
    entries = b"".join(
        (base + i).to_bytes(8, "big") + b"\x11" * 8 + (7).to_bytes(4, "big")
        for i in range(MAX_ENTRIES)
    )
    big = HoldingsPage(HOLDER_PUB, page, pages, Hlc(5), entries)
    envelope = encode_envelope(sign_holdings(big, HOLDER))
    decoded = decode_holdings(decode_envelope(envelope))
    assert len(decoded) == MAX_ENTRIES
    assert decoded == big


# --- signing and decoding holdings --------------------------------------------------------------


def test_sign_and_decode_round_trip() -> None:
    page = page_with(4)
    signed = sign_holdings(page, HOLDER)
    assert signed.kind == KIND_HOLDINGS
    assert signed.signer == HOLDER_PUB
    assert signed.body == holdings_body(good_fields(page))
    assert decode_holdings(signed) == page
    via_envelope = decode_envelope(encode_envelope(signed))
    assert decode_holdings(via_envelope) == page


def test_an_empty_page_round_trips() -> None:
    page = HoldingsPage(HOLDER_PUB, 0, 64, Hlc(MAX_WALL_MS, MAX_COUNTER), b"")
    assert decode_holdings(sign_holdings(page, HOLDER)) == page


def test_only_the_holder_signs_its_page() -> None:
    with pytest.raises(SignatureError):
        sign_holdings(page_with(), OTHER)
    # A page body signed by another key is refused on decoding, even though the signature is
    # valid for that key.
    forged = resign(KIND_HOLDINGS, sign_holdings(page_with(), HOLDER).body, OTHER)
    forged.verify()
    with pytest.raises(SignatureError, match="holder"):
        decode_holdings(forged)


def test_wrong_kind_is_refused() -> None:
    signed = sign_holdings(page_with(), HOLDER)
    as_policy = resign(KIND_POLICY, signed.body)
    with pytest.raises(UnsupportedVersionError):
        decode_holdings(as_policy)
    with pytest.raises(UnsupportedVersionError):
        decode_policy(signed)


def test_bad_signature_is_refused() -> None:
    signed = sign_holdings(page_with(), HOLDER)
    bad = SignedRecord(signed.kind, signed.body, signed.signer, bytes(64))
    with pytest.raises(SignatureError):
        decode_holdings(bad)


def test_unknown_version_is_refused() -> None:
    fields = good_fields(page_with())
    fields[0] = 2
    with pytest.raises(UnsupportedVersionError):
        decode_holdings(resign(KIND_HOLDINGS, holdings_body(fields)))


@pytest.mark.parametrize(
    ("index", "value"),
    [(1, "holder"), (2, True), (3, 64.0), (4, b"\x01"), (5, None), (6, "entries"), (0, False)],
)
def test_wrong_field_types_are_refused(index: int, value: object) -> None:
    fields = good_fields(page_with())
    fields[index] = value
    with pytest.raises(DecodeError):
        decode_holdings(resign(KIND_HOLDINGS, holdings_body(fields)))


def test_wrong_field_count_is_refused() -> None:
    fields = good_fields(page_with())
    for body in (fields[:-1], [*fields, 0], []):
        with pytest.raises(DecodeError):
            decode_holdings(resign(KIND_HOLDINGS, holdings_body(body)))
    with pytest.raises(DecodeError):
        decode_holdings(resign(KIND_HOLDINGS, canonical_pack(7)))


@pytest.mark.parametrize(
    ("wall", "counter"), [(-1, 0), (MAX_WALL_MS + 1, 0), (0, -1), (0, MAX_COUNTER + 1)]
)
def test_out_of_range_versions_are_refused(wall: int, counter: int) -> None:
    fields = good_fields(page_with())
    fields[4], fields[5] = wall, counter
    with pytest.raises(DecodeError, match="range"):
        decode_holdings(resign(KIND_HOLDINGS, holdings_body(fields)))


INVALID_PAGE = page_with(3)


@pytest.mark.parametrize(
    ("page", "pages", "entries"),
    [
        (0, 100, b""),  # not a tier's page count
        (64, 64, b""),  # page outside 0..63
        (INVALID_PAGE.page + 1, 64, INVALID_PAGE.entries),  # misfiled
        (INVALID_PAGE.page, 64, INVALID_PAGE.entries[20:40] + INVALID_PAGE.entries[:20]),
        (INVALID_PAGE.page, 64, INVALID_PAGE.entries + b"\x00"),  # not whole entries
    ],
    ids=["pages", "index", "misfiled", "unsorted", "length"],
)
def test_signed_but_invalid_pages_are_refused(page: int, pages: int, entries: bytes) -> None:
    """A holder can sign anything: decoding still enforces the page's invariants."""
    body = holdings_body([1, HOLDER_PUB, page, pages, 1, 0, entries])
    with pytest.raises(ValidationError):
        decode_holdings(resign(KIND_HOLDINGS, body))


def test_non_canonical_encodings_are_refused() -> None:
    page = page_with(2)
    fields = good_fields(page)
    # bin 8 for the 32-byte holder would be canonical; bin 16 is not.
    long_form = msgpack.packb(fields, use_bin_type=True)
    assert long_form == holdings_body(fields)
    holder_bin16 = long_form.replace(b"\xc4\x20" + HOLDER_PUB, b"\xc5\x00\x20" + HOLDER_PUB)
    assert holder_bin16 != long_form
    with pytest.raises(DecodeError, match="canonical"):
        decode_holdings(resign(KIND_HOLDINGS, holder_bin16))
    # An int written wider than needed (page 5 as uint 8, int 8, uint 16).
    prefix = canonical_pack([1, HOLDER_PUB])[1:]
    rest = canonical_pack([page.pages, 1000, 2, page.entries])[1:]
    for page_bytes in (b"\xcc\x05", b"\xd0\x05", b"\xcd\x00\x05"):
        body = b"\x97" + prefix + page_bytes + rest
        assert msgpack.unpackb(body)[2] == 5
        with pytest.raises(DecodeError, match="canonical"):
            decode_holdings(resign(KIND_HOLDINGS, body))
    # Trailing bytes after the array.
    with pytest.raises(DecodeError):
        decode_holdings(resign(KIND_HOLDINGS, holdings_body(fields) + b"\xc0"))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_property_holdings_round_trip(data: st.DataObject) -> None:
    pages = data.draw(st.sampled_from(PAGE_COUNTS))
    page = data.draw(st.integers(0, pages - 1))
    bits = pages.bit_length() - 1
    tails = data.draw(st.lists(st.integers(0, (1 << 64) - 1), max_size=20))
    keys = sorted({((page << (64 - bits)) | (t >> bits)).to_bytes(8, "big") for t in tails})
    holdings = [
        Holding(
            k,
            data.draw(st.binary(min_size=8, max_size=8)),
            data.draw(st.integers(0, (1 << 32) - 1)),
        )
        for k in keys
    ]
    version = Hlc(data.draw(st.integers(0, MAX_WALL_MS)), data.draw(st.integers(0, MAX_COUNTER)))
    original = HoldingsPage(HOLDER_PUB, page, pages, version, encode_entries(holdings))
    assert all(page_of(h.pid_key, pages) == page for h in original)
    envelope = encode_envelope(sign_holdings(original, HOLDER))
    decoded = decode_holdings(decode_envelope(envelope))
    assert decoded == original
    assert list(decoded) == sorted(holdings, key=lambda h: h.pid_key)


FIXED_PAGE_ENVELOPE = encode_envelope(sign_holdings(page_with(3), HOLDER))


def decode_holdings_envelope(data: bytes) -> HoldingsPage:
    return decode_holdings(decode_envelope(data))


@settings(max_examples=300, deadline=None)
@given(where=st.integers(0, len(FIXED_PAGE_ENVELOPE) - 1), mask=st.integers(1, 255))
def test_property_any_byte_flip_of_a_holdings_envelope_is_refused(where: int, mask: int) -> None:
    damaged = bytearray(FIXED_PAGE_ENVELOPE)
    damaged[where] ^= mask
    with pytest.raises(ProtocolError):
        decode_holdings_envelope(bytes(damaged))


# --- the policy ----------------------------------------------------------------------------------


def test_policy_round_trip_and_defaults() -> None:
    policy = ReplicationPolicy("net-1", Hlc(5_000, 1))
    assert (policy.min_copies, policy.min_higher_in_province, policy.min_outside_province) == (
        3,
        1,
        1,
    )
    signed = sign_policy(policy, ROOT)
    assert signed.kind == KIND_POLICY
    assert signed.signer == public_key_bytes(ROOT)
    assert signed.body == canonical_pack([1, "net-1", 5_000, 1, 3, 1, 1])
    assert decode_policy(decode_envelope(encode_envelope(signed))) == policy
    # Who signed is the receiver's business: any key's signature decodes.
    other = ReplicationPolicy("net-1", Hlc(1), 16, 16, 0)
    assert decode_policy(sign_policy(other, OTHER)) == other


@pytest.mark.parametrize(
    ("network", "copies", "higher", "outside"),
    [("", 3, 1, 1), ("n" * 65, 3, 1, 1), ("n", 0, 0, 0), ("n", 17, 1, 1), ("n", 3, 4, 1),
     ("n", 3, 1, 4), ("n", 3, -1, 1), ("n", 3, 1, -1)],
)  # fmt: skip
def test_policy_invariants(network: str, copies: int, higher: int, outside: int) -> None:
    with pytest.raises(ValidationError):
        ReplicationPolicy(network, Hlc(1), copies, higher, outside)
    body = canonical_pack([1, network, 1, 0, copies, higher, outside])
    with pytest.raises(ValidationError):
        decode_policy(resign(KIND_POLICY, body, ROOT))


def test_policy_edges_are_valid() -> None:
    assert ReplicationPolicy("n" * 64, Hlc(0), 1, 1, 1).min_copies == 1
    assert ReplicationPolicy("n", Hlc(0), 16, 16, 16).min_outside_province == 16


@pytest.mark.parametrize(
    "fields",
    [[2, "n", 1, 0, 3, 1, 1], [1, "n", 1, 0, 3, 1], [1, "n", 1, 0, 3, 1, 1, 0],
     [1, b"n", 1, 0, 3, 1, 1], [1, "n", 1, 0, True, 1, 1], [1, "n", -1, 0, 3, 1, 1],
     [1, "n", 1, 1 << 16, 3, 1, 1]],
)  # fmt: skip
def test_malformed_policies_are_refused(fields: list[object]) -> None:
    with pytest.raises(DecodeError):
        decode_policy(resign(KIND_POLICY, canonical_pack(fields), ROOT))


def test_non_canonical_policy_is_refused() -> None:
    canonical = canonical_pack([1, "n", 1, 0, 3, 1, 1])
    assert decode_policy(resign(KIND_POLICY, canonical, ROOT)).min_copies == 3
    wide = canonical.replace(b"\x03\x01\x01", b"\xcc\x03\x01\x01")
    assert msgpack.unpackb(wide) == [1, "n", 1, 0, 3, 1, 1]
    with pytest.raises(DecodeError, match="canonical"):
        decode_policy(resign(KIND_POLICY, wide, ROOT))
    str8 = canonical.replace(b"\xa1n", b"\xd9\x01n")
    assert msgpack.unpackb(str8) == [1, "n", 1, 0, 3, 1, 1]
    with pytest.raises(DecodeError, match="canonical"):
        decode_policy(resign(KIND_POLICY, str8, ROOT))


FIXED_POLICY_ENVELOPE = encode_envelope(
    sign_policy(ReplicationPolicy("net", Hlc(9, 9), 4, 2, 1), ROOT)
)


@settings(max_examples=300, deadline=None)
@given(where=st.integers(0, len(FIXED_POLICY_ENVELOPE) - 1), mask=st.integers(1, 255))
def test_property_any_byte_flip_of_a_policy_envelope_is_refused(where: int, mask: int) -> None:
    damaged = bytearray(FIXED_POLICY_ENVELOPE)
    damaged[where] ^= mask
    with pytest.raises(ProtocolError):
        decode_policy(decode_envelope(bytes(damaged)))


@settings(max_examples=100, deadline=None)
@given(
    network=st.text(min_size=1, max_size=64),
    wall=st.integers(0, MAX_WALL_MS),
    counter=st.integers(0, MAX_COUNTER),
    copies=st.integers(1, 16),
    data=st.data(),
)
def test_property_policy_round_trip(
    network: str, wall: int, counter: int, copies: int, data: st.DataObject
) -> None:
    higher = data.draw(st.integers(0, copies))
    outside = data.draw(st.integers(0, copies))
    policy = ReplicationPolicy(network, Hlc(wall, counter), copies, higher, outside)
    assert decode_policy(decode_envelope(encode_envelope(sign_policy(policy, ROOT)))) == policy
