"""Catalogue records: canonical encoding, signatures, tamper evidence and invariants."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ark
from protocol.errors import (
    DecodeError,
    IdentifierError,
    ProtocolError,
    SignatureError,
    UnsupportedVersionError,
    ValidationError,
)
from protocol.hlc import Hlc
from protocol.identity import public_key_bytes, sign
from protocol.records import (
    ACCESS_VALUES,
    CHUNK_SIZE,
    KIND_CATALOGUE,
    MAX_RECORD_BYTES,
    CatalogueRecord,
    ChunkRef,
    FileEntry,
    LangString,
    Rights,
    SignedRecord,
    dc_from_pairs,
    decode_catalogue,
    decode_envelope,
    encode_body,
    encode_envelope,
    sign_catalogue,
    signing_bytes,
    validate_file_path,
)

from .strategies import KEYS, embargo_dates, key_for, records, rights

KEY, OTHER_KEY = KEYS[0], KEYS[1]
ORIGIN = public_key_bytes(KEY)
PID = str(ark.mint("13030", "bc", b"siku-pid"))
DAY = dt.timedelta(days=1)

# Record properties decode and verify a signature per example: fewer examples keep them quick.
record_settings = settings(max_examples=60, deadline=None)


def _sha(n: int) -> bytes:
    return bytes([n]) * 32


SCAN = FileEntry(
    "scans/0001.tif",
    2 * CHUNK_SIZE + 1234,
    "image/tiff",
    _sha(1),
    (ChunkRef(_sha(2), CHUNK_SIZE), ChunkRef(_sha(3), CHUNK_SIZE), ChunkRef(_sha(4), 1234)),
)
METS = FileEntry(
    "元数据/mets.xml", 5_000, "application/mets+xml", _sha(5), (ChunkRef(_sha(6), 5_000),)
)

# One fixed, moderately rich record: Chinese and English metadata, an embargo, a statement, a
# licence and a multi-chunk manifest.
RICH = CatalogueRecord(
    pid=PID,
    origin=ORIGIN,
    version=Hlc(1_700_000_000_000, 3),
    dc=dc_from_pairs(
        [
            ("title", "永乐大典", "zh-Hant"),
            ("title", "Yongle Encyclopedia", "en"),
            ("creator", "解缙", "zh"),
            ("subject", "类书", "zh-Hans"),
            ("subject", "Encyclopedias, Chinese", "en"),
            ("description", "明代类书。\nOne surviving volume, 卷 2272.", ""),
            ("date", "1408", ""),
            ("language", "lzh", ""),
        ]
    ),
    collection="rare-books",
    rights=Rights(
        "embargoed",
        dt.date(2030, 1, 1),
        "http://rightsstatements.org/vocab/InC/1.0/",
        "https://creativecommons.org/licenses/by-nc/4.0/",
    ),
    files=(SCAN, METS),
)
TOMBSTONE = CatalogueRecord(pid=PID, origin=ORIGIN, version=Hlc(1_700_000_000_001), deleted=True)


def _envelope(body: bytes, key: Ed25519PrivateKey = KEY, kind: str = KIND_CATALOGUE) -> bytes:
    """A correctly signed envelope around any body, so only the body's contents are at stake."""
    signer = public_key_bytes(key)
    return encode_envelope(SignedRecord(kind, body, signer, sign(key, signing_bytes(kind, body))))


def _signed(record: CatalogueRecord) -> bytes:
    return encode_envelope(sign_catalogue(record, key_for(record)))


# --- a hand-built msgpack writer, to make non-canonical encodings on purpose ---------------------


@dataclasses.dataclass(frozen=True)
class Raw:
    """Bytes spliced into `pack` output as they are."""

    data: bytes


def pack(obj: object) -> bytes:
    if isinstance(obj, Raw):
        return obj.data
    if isinstance(obj, list):
        n = len(obj)
        if n < 16:
            head = bytes([0x90 | n])
        elif n < 1 << 16:
            head = b"\xdc" + n.to_bytes(2, "big")
        else:
            head = b"\xdd" + n.to_bytes(4, "big")
        return head + b"".join(pack(x) for x in obj)
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def wire(record: CatalogueRecord) -> list[Any]:
    """The body's fields as the protocol lays them out, for editing."""
    r = record.rights
    return [
        1,
        record.pid,
        record.origin,
        record.version.wall_ms,
        record.version.counter,
        record.deleted,
        [[k, [[v.value, v.lang] for v in vs]] for k, vs in record.dc.items()],
        record.collection,
        [r.access, r.embargo_until.isoformat() if r.embargo_until else "", r.statement, r.license],
        [
            [f.path, f.size, f.media_type, f.sha256, [[c.digest, c.size] for c in f.chunks]]
            for f in record.files
        ],
    ]


def _bin32(b: bytes) -> Raw:
    return Raw(b"\xc6" + len(b).to_bytes(4, "big") + b)


def _str_as_bin(s: str) -> Raw:
    b = s.encode()
    return Raw(b"\xc4" + bytes([len(b)]) + b)


# --- round trips --------------------------------------------------------------------------------


@record_settings
@given(records)
def test_round_trip(record: CatalogueRecord) -> None:
    signed = sign_catalogue(record, key_for(record))
    data = encode_envelope(signed)
    assert decode_envelope(data) == signed
    again, decoded = decode_catalogue(data)
    assert again == signed
    assert decoded == record
    assert encode_body(decoded) == signed.body
    assert decode_catalogue(signed)[1] == record


@record_settings
@given(records)
def test_wire_layout_is_fixed(record: CatalogueRecord) -> None:
    # Pins the field order and types: a change here is a protocol version change.
    assert encode_body(record) == pack(wire(record))
    assert msgpack.unpackb(encode_body(record)) == wire(record)


def test_rich_record_round_trip_and_accessors() -> None:
    signed, decoded = decode_catalogue(_signed(RICH))
    assert decoded == RICH
    assert signed.signer == ORIGIN
    assert decoded.title == "永乐大典"
    assert [v.lang for v in decoded.values("title")] == ["zh-Hant", "en"]
    assert decoded.values("coverage") == ()
    assert decoded.file("元数据/mets.xml") == METS
    assert decoded.file("scans") is None
    assert decoded.content_size == 2 * CHUNK_SIZE + 1234 + 5_000
    assert decoded.rights.embargo_until == dt.date(2030, 1, 1)


def test_tombstone_round_trip() -> None:
    _, decoded = decode_catalogue(_signed(TOMBSTONE))
    assert decoded == TOMBSTONE
    assert decoded.deleted
    assert decoded.title == ""
    assert decoded.dc == {}


def test_dublin_core_is_normalised_to_element_order() -> None:
    title = (LangString("T"),)
    creator = (LangString("C"),)
    a = CatalogueRecord(PID, ORIGIN, Hlc(1), dc={"creator": creator, "title": title})
    b = CatalogueRecord(PID, ORIGIN, Hlc(1), dc={"title": title, "creator": creator, "date": ()})
    assert a == b
    assert list(a.dc) == ["title", "creator"]
    assert encode_body(a) == encode_body(b)


# --- tampering ----------------------------------------------------------------------------------


@record_settings
@given(records, st.data())
def test_any_change_of_any_byte_is_rejected(record: CatalogueRecord, data: st.DataObject) -> None:
    signed = bytearray(_signed(record))
    position = data.draw(st.integers(0, len(signed) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    signed[position] ^= mask
    with pytest.raises(ProtocolError):
        decode_catalogue(bytes(signed))


def test_every_single_bit_flip_of_a_rich_record_is_rejected() -> None:
    data = _signed(RICH)
    assert 600 < len(data) < 2_000
    decode_catalogue(data)
    missed = []
    caught: Counter[str] = Counter()
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            try:
                decode_catalogue(bytes(flipped))
            except ProtocolError as e:
                caught[type(e).__name__] += 1
            else:
                missed.append((position, bit))
    assert missed == []
    # Both layers are exercised: flips in the framing are malformed, flips in the content fail
    # their signature.
    assert caught["DecodeError"] > 0
    assert caught["SignatureError"] > 8 * (len(data) // 2)


def test_truncation_is_rejected() -> None:
    data = _signed(RICH)
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            decode_catalogue(data[:n])


@pytest.mark.parametrize("extra", [b"\x00", b"\xc0", b"\x90", b"\x95", b"\xff" * 3, b"ark"])
def test_appended_bytes_are_rejected(extra: bytes) -> None:
    data = _signed(RICH)
    with pytest.raises(DecodeError):
        decode_catalogue(data + extra)
    with pytest.raises(DecodeError):
        decode_catalogue(data + data)
    # Extra bytes after a body are refused too, even when they are properly signed.
    with pytest.raises(DecodeError):
        decode_catalogue(_envelope(encode_body(RICH) + extra))


def test_a_record_signed_by_a_key_other_than_its_origin_is_rejected() -> None:
    with pytest.raises(SignatureError):
        sign_catalogue(RICH, OTHER_KEY)
    # A valid signature by another node over the same body is still not the origin's.
    forged = _envelope(encode_body(RICH), key=OTHER_KEY)
    assert decode_envelope(forged).signer == public_key_bytes(OTHER_KEY)
    decode_envelope(forged).verify()
    with pytest.raises(SignatureError, match="origin"):
        decode_catalogue(forged)


def test_a_different_body_under_a_valid_envelope_fails() -> None:
    good = sign_catalogue(RICH, KEY)
    other_body = encode_body(dataclasses.replace(RICH, version=Hlc(1_700_000_000_000, 4)))
    for forged in [
        dataclasses.replace(good, body=other_body),
        dataclasses.replace(good, body=encode_body(TOMBSTONE)),
        dataclasses.replace(good, signature=sign_catalogue(TOMBSTONE, KEY).signature),
        dataclasses.replace(good, signer=public_key_bytes(OTHER_KEY)),
    ]:
        with pytest.raises(SignatureError):
            decode_catalogue(encode_envelope(forged))
        with pytest.raises(SignatureError):
            decode_catalogue(forged)


def test_signatures_cover_the_domain_tag_and_kind() -> None:
    body = encode_body(RICH)
    bare = encode_envelope(SignedRecord(KIND_CATALOGUE, body, ORIGIN, sign(KEY, body)))
    with pytest.raises(SignatureError):
        decode_catalogue(bare)
    # A catalogue signature cannot be replayed as another kind of record.
    good = sign_catalogue(RICH, KEY)
    with pytest.raises(SignatureError):
        dataclasses.replace(good, kind="manifest").verify()
    good.verify()


def test_the_signature_is_checked_before_the_body_is_parsed() -> None:
    garbage = SignedRecord(KIND_CATALOGUE, b"\xc1 not msgpack", ORIGIN, bytes(64))
    with pytest.raises(SignatureError):
        decode_catalogue(encode_envelope(garbage))
    with pytest.raises(DecodeError):
        decode_catalogue(_envelope(b"\xc1 not msgpack"))


# --- envelopes ----------------------------------------------------------------------------------


def _raw_envelope(*fields: object) -> bytes:
    return pack(list(fields))


@pytest.mark.parametrize("version", [0, 2, 255, 65_536])
def test_unknown_envelope_version(version: int) -> None:
    good = sign_catalogue(RICH, KEY)
    data = _raw_envelope(version, good.kind, good.body, good.signer, good.signature)
    assert _raw_envelope(1, good.kind, good.body, good.signer, good.signature) == _signed(RICH)
    with pytest.raises(UnsupportedVersionError):
        decode_envelope(data)
    with pytest.raises(UnsupportedVersionError):
        decode_catalogue(data)


@pytest.mark.parametrize("kind", ["manifest", "catalogue2", "catalog", "tombstone"])
def test_unknown_kind(kind: str) -> None:
    data = _envelope(encode_body(RICH), kind=kind)
    assert decode_envelope(data).kind == kind
    with pytest.raises(UnsupportedVersionError):
        decode_catalogue(data)


def test_unknown_body_version() -> None:
    fields = wire(RICH)
    fields[0] = 2
    with pytest.raises(UnsupportedVersionError):
        decode_catalogue(_envelope(pack(fields)))
    # A future version may change everything after the version number.
    with pytest.raises(UnsupportedVersionError):
        decode_catalogue(_envelope(pack([2, "anything", [b"at", "all"]])))


@pytest.mark.parametrize("kind", ["", "Catalogue", "cat\x00alogue", "catalogue\x00", "kätalog"])
def test_malformed_kinds_are_refused_before_verification(kind: str) -> None:
    s = sign_catalogue(RICH, KEY)
    data = _raw_envelope(1, kind, s.body, s.signer, s.signature)
    with pytest.raises(DecodeError):
        decode_envelope(data)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(lambda s: s.body, id="not-an-array"),
        pytest.param(lambda s: [1, s.kind, s.body, s.signer], id="four-fields"),
        pytest.param(lambda s: [1, s.kind, s.body, s.signer, s.signature, b""], id="six-fields"),
        pytest.param(lambda s: [1, s.kind.encode(), s.body, s.signer, s.signature], id="kind-bin"),
        pytest.param(lambda s: [1, s.kind, [], s.signer, s.signature], id="body-array"),
        pytest.param(lambda s: [1, s.kind, s.body, s.signer[:31], s.signature], id="short-key"),
        pytest.param(lambda s: [1, s.kind, s.body, s.signer, s.signature + b"\0"], id="long-sig"),
        pytest.param(lambda s: [1, s.kind, s.body, None, s.signature], id="nil-signer"),
        pytest.param(
            lambda s: [Raw(b"\xcc\x01"), s.kind, s.body, s.signer, s.signature], id="uint8-version"
        ),
        pytest.param(lambda s: [True, s.kind, s.body, s.signer, s.signature], id="true-version"),
        pytest.param(lambda s: [1.0, s.kind, s.body, s.signer, s.signature], id="float-version"),
        pytest.param(
            lambda s: [1, s.kind, _bin32(s.body), s.signer, s.signature],
            id="bin32-body",
        ),
    ],
)
def test_malformed_envelopes(fields: Callable[[SignedRecord], object]) -> None:
    data = pack(fields(sign_catalogue(RICH, KEY)))
    with pytest.raises(DecodeError) as info:
        decode_catalogue(data)
    assert not isinstance(info.value, UnsupportedVersionError)


def test_oversized_records_are_refused_unread() -> None:
    with pytest.raises(DecodeError, match="limit"):
        decode_envelope(b"\x00" * (MAX_RECORD_BYTES + 1))
    with pytest.raises(DecodeError, match="limit"):
        decode_catalogue(_signed(RICH) + b"\x00" * MAX_RECORD_BYTES)


# --- canonical form -----------------------------------------------------------------------------

# Each edit keeps the record's values but encodes one of them in a way our encoder never would.
# (index path into `wire(RICH)`, replacement, whether msgpack reads back the very same values).
_NON_CANONICAL: list[tuple[str, tuple[int, ...], object, bool]] = [
    ("version-as-uint8", (0,), Raw(b"\xcc\x01"), True),
    ("counter-as-uint8", (4,), Raw(b"\xcc\x03"), True),
    ("counter-as-uint16", (4,), Raw(b"\xcd\x00\x03"), True),
    ("counter-as-uint32", (4,), Raw(b"\xce\x00\x00\x00\x03"), True),
    ("counter-as-uint64", (4,), Raw(b"\xcf" + (3).to_bytes(8, "big")), True),
    ("counter-as-int8", (4,), Raw(b"\xd0\x03"), True),
    ("wall-as-int64", (3,), Raw(b"\xd3" + (1_700_000_000_000).to_bytes(8, "big")), True),
    ("file-size-as-uint64", (9, 0, 1), Raw(b"\xcf" + SCAN.size.to_bytes(8, "big")), True),
    ("chunk-size-as-uint64", (9, 0, 4, 0, 1), Raw(b"\xcf" + CHUNK_SIZE.to_bytes(8, "big")), True),
    ("pid-as-str8", (1,), Raw(b"\xd9" + bytes([len(PID)]) + PID.encode()), True),
    ("lang-as-str16", (6, 0, 1, 1, 1), Raw(b"\xda\x00\x02en"), True),
    ("origin-as-bin16", (2,), Raw(b"\xc5\x00\x20" + ORIGIN), True),
    ("top-array-as-array16", (), None, True),
    ("dc-as-array32", (6,), None, True),
    ("pid-as-bin", (1,), _str_as_bin(PID), False),
    ("element-as-bin", (6, 0, 0), _str_as_bin("title"), False),
    ("title-as-bin", (6, 0, 1, 0, 0), _str_as_bin("永乐大典"), False),
    ("lang-as-bin", (6, 0, 1, 0, 1), _str_as_bin("zh-Hant"), False),
    ("collection-as-bin", (7,), _str_as_bin("rare-books"), False),
    ("access-as-bin", (8, 0), _str_as_bin("embargoed"), False),
    ("path-as-bin", (9, 1, 0), _str_as_bin(METS.path), False),
    ("media-type-as-bin", (9, 0, 2), _str_as_bin("image/tiff"), False),
    ("origin-as-str", (2,), "x" * 32, False),
    ("deleted-as-int", (5,), 0, False),
    ("counter-as-float", (4,), 3.0, False),
    ("counter-as-true", (4,), True, False),
    ("chunk-size-as-float", (9, 1, 4, 0, 1), 5_000.0, False),
    ("file-size-as-float", (9, 1, 1), 5_000.0, False),
    ("lang-as-nil", (6, 2, 1, 0, 1), None, False),
    ("lang-as-empty-array", (6, 2, 1, 0, 1), [], False),
    ("collection-as-nil", (7,), None, False),
    ("collection-as-false", (7,), False, False),
    ("statement-as-nil", (8, 2), None, False),
    ("licence-as-zero", (8, 3), 0, False),
    ("embargo-as-basic-date", (8, 1), "20300101", False),
    ("embargo-as-week-date", (8, 1), "2030-W01-2", False),
    ("embargo-as-nil", (8, 1), None, False),
    ("rights-as-map", (8,), Raw(msgpack.packb({"access": "embargoed"})), False),
]


def _edit(fields: list[Any], path: tuple[int, ...], value: object) -> list[Any]:
    node = fields
    for i in path[:-1]:
        node = node[i]
    node[path[-1]] = value
    return fields


def _non_canonical_body(path: tuple[int, ...], value: object) -> bytes:
    fields = wire(RICH)
    if not path:  # the top-level array header itself
        return b"\xdc\x00\x0a" + pack(fields)[1:]
    if path == (6,):  # the Dublin Core array header
        dc = fields[6]
        header = b"\xdd" + len(dc).to_bytes(4, "big")
        return pack(_edit(fields, path, Raw(header + b"".join(pack(x) for x in dc))))
    return pack(_edit(fields, path, value))


def test_the_unedited_wire_form_is_canonical() -> None:
    assert pack(wire(RICH)) == encode_body(RICH)
    decode_catalogue(_envelope(pack(wire(RICH))))


@pytest.mark.parametrize(
    ("path", "value", "same_values"),
    [pytest.param(p, v, s, id=name) for name, p, v, s in _NON_CANONICAL],
)
def test_non_canonical_encodings_are_rejected(
    path: tuple[int, ...], value: object, same_values: bool
) -> None:
    body = _non_canonical_body(path, value)
    canonical = encode_body(RICH)
    assert body != canonical
    if same_values:
        assert msgpack.unpackb(body) == msgpack.unpackb(canonical)
    with pytest.raises(DecodeError) as info:
        decode_catalogue(_envelope(body))
    assert not isinstance(info.value, UnsupportedVersionError)


@pytest.mark.parametrize(
    "dc",
    [
        pytest.param([["creator", [["解缙", "zh"]]], ["title", [["T", ""]]]], id="out-of-order"),
        pytest.param([["title", [["T", ""]]], ["title", [["U", ""]]]], id="repeated"),
        pytest.param([["title", [["T", ""]]], ["creator", []]], id="empty-element"),
        pytest.param([["title", [["T", "", "extra"]]]], id="three-part-value"),
    ],
)
def test_non_canonical_dublin_core_is_rejected(dc: list[Any]) -> None:
    fields = wire(RICH)
    fields[6] = dc
    with pytest.raises(DecodeError):
        decode_catalogue(_envelope(pack(fields)))


# --- invariants ---------------------------------------------------------------------------------


def _file(path: str, size: int, media_type: str = "image/tiff") -> FileEntry:
    sizes = [CHUNK_SIZE] * (size // CHUNK_SIZE) + ([size % CHUNK_SIZE] if size % CHUNK_SIZE else [])
    return FileEntry(path, size, media_type, _sha(7), tuple(ChunkRef(_sha(8), n) for n in sizes))


def _record(**changes: Any) -> CatalogueRecord:
    fields: dict[str, Any] = {
        "pid": PID,
        "origin": ORIGIN,
        "version": Hlc(1),
        "dc": {"title": (LangString("书名", "zh"),)},
    }
    return CatalogueRecord(**{**fields, **changes})


def test_the_invariant_fixtures_are_valid_as_they_stand() -> None:
    _record()
    _record(deleted=True, dc={})
    _file("a/b.tif", 3 * CHUNK_SIZE - 1)
    Rights("embargoed", dt.date(2030, 1, 1))
    LangString("x", "zh-Hant-TW")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: _record(dc={"title": (LangString("T"),), "author": (LangString("A"),)}),
            id="unknown-element",
        ),
        pytest.param(lambda: _record(dc={"Title": (LangString("T"),)}), id="capitalised-element"),
        pytest.param(lambda: _record(dc={}), id="no-dc"),
        pytest.param(lambda: _record(dc={"creator": (LangString("C"),)}), id="no-title"),
        pytest.param(lambda: _record(dc={"title": ()}), id="empty-title"),
        pytest.param(lambda: _record(deleted=True), id="tombstone-with-dc"),
        pytest.param(
            lambda: _record(deleted=True, dc={}, collection="x"), id="tombstone-with-collection"
        ),
        pytest.param(
            lambda: _record(deleted=True, dc={}, files=(_file("a", 1),)), id="tombstone-with-files"
        ),
        pytest.param(
            lambda: _record(deleted=True, dc={}, rights=Rights("restricted")),
            id="tombstone-with-rights",
        ),
        pytest.param(lambda: _record(files=(_file("a", 1), _file("a", 2))), id="duplicate-paths"),
        pytest.param(lambda: _record(origin=ORIGIN[:31]), id="short-origin"),
        pytest.param(lambda: _record(origin=ORIGIN.hex()), id="origin-as-text"),
        pytest.param(lambda: _record(pid=PID.replace("ark:", "ark:/")), id="pid-with-slash"),
        pytest.param(lambda: _record(pid=PID.upper().replace("ARK", "ark")), id="pid-upper-case"),
        pytest.param(lambda: _record(pid=PID[:-3] + "-" + PID[-3:]), id="pid-with-hyphen"),
    ]
    + [
        pytest.param(lambda c=c: _record(collection=c), id=f"collection-{c!r}")
        for c in ["Rare", "-x", ".x", "_x", "a b", "a/b", "x" * 129, "é", "a\n"]
    ],
)
def test_record_invariants(build: Callable[[], CatalogueRecord]) -> None:
    with pytest.raises(ValidationError):
        build()


def test_a_malformed_pid_is_an_identifier_error() -> None:
    with pytest.raises(IdentifierError):
        _record(pid=PID[:-1] + ("0" if PID[-1] != "0" else "1"))


@pytest.mark.parametrize(
    "value",
    [
        "",
        " \n\t",
        "a\x00b",
        "bell\x07",
        "esc\x1b[31m",
        "del\x7f",
        "cr\r\n",
        "c1\x85",
        "csi\x9b",
        "e\u0301",  # decomposed é
        "\u212b",  # Angstrom sign, NFC is U+00C5
        "\u1112\u1161\u11ab",  # conjoining jamo that NFC composes to 한
        "x" * 65_537,
    ],
)
def test_bad_dublin_core_values(value: str) -> None:
    with pytest.raises(ValidationError):
        LangString(value, "en")


def test_dublin_core_values_may_span_lines() -> None:
    assert LangString("第一行\n\tsecond line", "mul").value == "第一行\n\tsecond line"
    assert LangString("x" * 65_536).lang == ""


@pytest.mark.parametrize(
    "lang",
    [
        "e",
        "english_",
        "zh_CN",
        "-en",
        "en-",
        "en--gb",
        "123",
        "en-toolongsubtag",
        "中文",
        "en gb",
        "en\n",
        "*",
    ],
)
def test_bad_language_tags(lang: str) -> None:
    with pytest.raises(ValidationError):
        LangString("x", lang)


@pytest.mark.parametrize("lang", ["", "en", "zh-Hans", "zh-Hant-TW", "yue", "sgn-CH-DE", "es-419"])
def test_good_language_tags(lang: str) -> None:
    assert LangString("x", lang).lang == lang


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: Rights("public"), id="unknown-access"),
        pytest.param(lambda: Rights("Open"), id="access-case"),
        pytest.param(lambda: Rights(""), id="empty-access"),
        pytest.param(lambda: Rights("embargoed"), id="embargoed-without-date"),
        pytest.param(lambda: Rights("open", dt.date(2030, 1, 1)), id="date-without-embargo"),
        pytest.param(lambda: Rights("restricted", dt.date(2030, 1, 1)), id="restricted-with-date"),
    ]
    + [
        pytest.param(lambda u=u: Rights(statement=u), id=f"statement-{u}")
        for u in [
            "https://rightsstatements.org/vocab/InC/1.0",
            "http://rightsstatements.org/page/InC/1.0/",
            "http://example.org/vocab/InC/1.0/",
            "https://rightsstatements.org/vocab/InC/1.0/?language=zh",
            "http://rightsstatements.org/vocab/InC/v1/",
            "InC",
            " http://rightsstatements.org/vocab/InC/1.0/",
        ]
    ]
    + [
        pytest.param(lambda u=u: Rights(license=u), id=f"licence-{u!r}")
        for u in [
            "CC-BY-4.0",
            "ftp://example.org/licence",
            "https://",
            "https://creativecommons.org/licenses/by /4.0/",
            "https://example.org/\n",
            "https://example.org/\x00",
            "//example.org/licence",
            "https://example.org/" + "x" * 2048,
        ]
    ],
)
def test_rights_invariants(build: Callable[[], Rights]) -> None:
    with pytest.raises(ValidationError):
        build()


@pytest.mark.parametrize(
    "path",
    [
        "",
        ".",
        "..",
        "../x",
        "a/../b",
        "a/..",
        "./a",
        "a/./b",
        "/abs",
        "/",
        "a//b",
        "a/",
        "a\\b",
        "..\\x",
        "a\x00b",
        "a\nb",
        "a\tb",
        "e\u0301.txt",
        "x" * 1025,
    ],
)
def test_bad_file_paths(path: str) -> None:
    with pytest.raises(ValidationError):
        validate_file_path(path)
    with pytest.raises(ValidationError):
        _file(path, 1)


@pytest.mark.parametrize(
    "path", ["a", "a/b/c.tif", "卷一/第1页.jp2", "..a", "a..", "a b/.hidden", "x" * 1024]
)
def test_good_file_paths(path: str) -> None:
    assert validate_file_path(path) == path


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: FileEntry("a", 2, "text/plain", _sha(1), (ChunkRef(_sha(2), 1),)),
            id="sizes-do-not-add-up",
        ),
        pytest.param(
            lambda: FileEntry("a", 0, "text/plain", _sha(1), (ChunkRef(_sha(2), 1),)),
            id="chunks-for-empty-file",
        ),
        pytest.param(
            lambda: FileEntry("a", 1, "text/plain", _sha(1), ()), id="no-chunks-for-content"
        ),
        pytest.param(
            lambda: FileEntry(
                "a",
                CHUNK_SIZE + 2,
                "text/plain",
                _sha(1),
                (ChunkRef(_sha(2), 1), ChunkRef(_sha(3), CHUNK_SIZE + 1)),
            ),
            id="oversized-chunk",
        ),
        pytest.param(
            lambda: FileEntry(
                "a",
                CHUNK_SIZE + 1,
                "text/plain",
                _sha(1),
                (ChunkRef(_sha(2), 1), ChunkRef(_sha(3), CHUNK_SIZE)),
            ),
            id="short-chunk-first",
        ),
        pytest.param(
            lambda: FileEntry(
                "a",
                2 * CHUNK_SIZE - 2,
                "text/plain",
                _sha(1),
                (ChunkRef(_sha(2), CHUNK_SIZE - 1), ChunkRef(_sha(3), CHUNK_SIZE - 1)),
            ),
            id="two-short-chunks",
        ),
        pytest.param(lambda: ChunkRef(_sha(2), 0), id="empty-chunk"),
        pytest.param(lambda: ChunkRef(_sha(2), -1), id="negative-chunk"),
        pytest.param(lambda: ChunkRef(_sha(2), CHUNK_SIZE + 1), id="chunk-too-big"),
        pytest.param(lambda: ChunkRef(b"\x00" * 31, 1), id="digest-31"),
        pytest.param(lambda: ChunkRef(b"\x00" * 33, 1), id="digest-33"),
        pytest.param(lambda: ChunkRef(b"", 1), id="digest-empty"),
        pytest.param(lambda: ChunkRef("0" * 32, 1), id="digest-text"),  # type: ignore[arg-type]
        pytest.param(lambda: FileEntry("a", 0, "text/plain", b"\x00" * 31, ()), id="sha-31"),
        pytest.param(lambda: FileEntry("a", 0, "text/plain", b"\x00" * 33, ()), id="sha-33"),
        pytest.param(lambda: FileEntry("a", 0, "text/plain", b"\x00" * 64, ()), id="sha-64-sha512"),
    ]
    + [
        pytest.param(lambda m=m: FileEntry("a", 0, m, _sha(1), ()), id=f"media-type-{m!r}")
        for m in [
            "",
            "PDF",
            "application",
            "application/",
            "/pdf",
            "Application/PDF",
            "text/plain; charset=utf-8",
            "text/ plain",
            "text/plain/x",
            "image/*",
        ]
    ],
)
def test_manifest_invariants(build: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        build()


def test_manifest_edge_cases_that_are_valid() -> None:
    assert FileEntry("empty", 0, "text/plain", _sha(1), ()).chunks == ()
    assert _file("exact", 2 * CHUNK_SIZE).chunks[-1].size == CHUNK_SIZE
    assert _file("one-byte", 1).size == 1
    assert FileEntry("a", 0, "application/vnd.oasis.opendocument.text+zip", _sha(1), ()).size == 0


# Invariants are checked when decoding too: a properly signed body that breaks one is refused.
_WIRE_INVARIANTS: list[tuple[str, Callable[[list[Any]], object]]] = [
    ("unknown-element", lambda f: f[6].append(["author", [["A", ""]]])),
    ("no-title", lambda f: f[6].pop(0)),
    ("tombstone-with-metadata", lambda f: f.__setitem__(5, True)),
    ("bad-language-tag", lambda f: f[6][0][1][0].__setitem__(1, "zh_TW")),
    ("control-char", lambda f: f[6][0][1][0].__setitem__(0, "永乐\x1b大典")),
    ("non-nfc", lambda f: f[6][0][1][1].__setitem__(0, "Yongle Encyclope\u0301dia")),
    ("bad-collection", lambda f: f.__setitem__(7, "Rare Books")),
    ("unknown-access", lambda f: f[8].__setitem__(0, "secret")),
    ("embargo-without-date", lambda f: f[8].__setitem__(1, "")),
    ("date-without-embargo", lambda f: f[8].__setitem__(0, "open")),
    ("bad-statement", lambda f: f[8].__setitem__(2, "http://rightsstatements.org/vocab/InC")),
    ("bad-licence", lambda f: f[8].__setitem__(3, "CC BY-NC 4.0")),
    ("duplicate-paths", lambda f: f[9][1].__setitem__(0, SCAN.path)),
    ("dotdot-path", lambda f: f[9][1].__setitem__(0, "../mets.xml")),
    ("absolute-path", lambda f: f[9][1].__setitem__(0, "/mets.xml")),
    ("backslash-path", lambda f: f[9][1].__setitem__(0, "元数据\\mets.xml")),
    ("empty-path-part", lambda f: f[9][1].__setitem__(0, "元数据//mets.xml")),
    ("sizes-do-not-add-up", lambda f: f[9][1].__setitem__(1, 5_001)),
    ("short-chunk-not-last", lambda f: f[9][0][4].reverse()),
    ("bad-media-type", lambda f: f[9][0].__setitem__(2, "image/TIFF")),
    ("chunk-digest-31", lambda f: f[9][0][4][0].__setitem__(0, _sha(2)[:31])),
    ("file-sha-33", lambda f: f[9][0].__setitem__(3, _sha(1) + b"\x00")),
]


@pytest.mark.parametrize("edit", [pytest.param(e, id=name) for name, e in _WIRE_INVARIANTS])
def test_decoding_checks_invariants(edit: Callable[[list[Any]], object]) -> None:
    fields = wire(RICH)
    edit(fields)
    assert fields != wire(RICH)
    with pytest.raises(ValidationError):
        decode_catalogue(_envelope(pack(fields)))


@pytest.mark.parametrize(
    ("wall", "counter"), [(-1, 0), (2**48, 0), (0, -1), (0, 2**16), (2**64 - 1, 0)]
)
def test_out_of_range_versions_are_refused(wall: int, counter: int) -> None:
    fields = wire(RICH)
    fields[3:5] = [wall, counter]
    with pytest.raises(DecodeError):
        decode_catalogue(_envelope(pack(fields)))


# --- rights over time ---------------------------------------------------------------------------


@given(embargo_dates)
def test_an_embargo_ends_at_the_start_of_its_date(until: dt.date) -> None:
    embargoed = Rights("embargoed", until)
    assert not embargoed.is_open_on(until - DAY)
    assert embargoed.is_open_on(until)
    assert embargoed.is_open_on(until + DAY)


@given(st.sampled_from(ACCESS_VALUES).flatmap(lambda a: rights(access=a)), embargo_dates)
def test_only_open_and_lapsed_embargoes_are_open(r: Rights, today: dt.date) -> None:
    expected = r.access == "open" or (
        r.access == "embargoed" and r.embargo_until is not None and today >= r.embargo_until
    )
    assert r.is_open_on(today) is expected
    if r.access in ("network", "onsite", "restricted"):
        assert not r.is_open_on(dt.date.max)


# --- hostile msgpack ----------------------------------------------------------------------------

_BOMBS = {
    "array32-4G": b"\xdd\xff\xff\xff\xff",
    "array32-at-limit": b"\xdd\x00\x40\x00\x00" + b"\x00" * 16,
    "nested-arrays-at-limit": b"\xdd\x00\x40\x00\x00" * 1_000,
    "deep-nesting": b"\x91" * 100_000,
    "str32-4G": b"\xdb\xff\xff\xff\xff" + b"a" * 16,
    "str32-256K": b"\xdb\x00\x03\xff\xff" + b"a" * 16,
    "bin32-8M": b"\xc6\x00\x7f\xff\xff" + b"a" * 16,
    "map32-4G": b"\xdf\xff\xff\xff\xff",
    "ext32-4G": b"\xc9\xff\xff\xff\xff\x01",
    "envelope-with-bin32-body": b"\x95\x01\xa9catalogue\xc6\x00\x7f\xff\x00" + b"\x00" * 64,
    "envelope-with-array32-body": b"\x95\x01\xa9catalogue\xdd\x00\x40\x00\x00" * 200,
}


@pytest.mark.parametrize("bomb", list(_BOMBS.values()), ids=list(_BOMBS))
@pytest.mark.parametrize("where", ["envelope", "body"])
def test_msgpack_bombs_are_rejected_quickly(bomb: bytes, where: str) -> None:
    data = bomb if where == "envelope" else _envelope(bomb)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DecodeError):
            decode_catalogue(data)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    # Nothing is allocated for what the input only claims to hold. (msgpack pre-sizes a list by
    # at most ~10k slots, so 1,000 nested arrays cost some 80 MB at worst.)
    assert peak < (128 << 20 if bomb.count(b"\xdd") > 10 else 4 << 20)
