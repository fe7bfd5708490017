"""Hypothesis strategies for valid protocol values: ARKs, HLCs, rights, manifests and records."""

from __future__ import annotations

import datetime as dt
import unicodedata

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from protocol import ark
from protocol.hlc import MAX_COUNTER, MAX_WALL_MS, Hlc
from protocol.identity import private_key_from_bytes, public_key_bytes
from protocol.records import (
    ACCESS_VALUES,
    CHUNK_SIZE,
    DC_ELEMENTS,
    CatalogueRecord,
    ChunkRef,
    FileEntry,
    LangString,
    Rights,
)

# A few fixed signing keys (deterministic, so failures reproduce); records name one as origin.
KEYS: tuple[Ed25519PrivateKey, ...] = tuple(
    private_key_from_bytes(bytes([i]) * 32) for i in range(1, 4)
)
_KEY_BY_ORIGIN = {public_key_bytes(k): k for k in KEYS}


def key_for(record: CatalogueRecord) -> Ed25519PrivateKey:
    """The private key of a generated record's origin."""
    return _KEY_BY_ORIGIN[record.origin]


# --- identifiers and clocks ---------------------------------------------------------------------

entropy = st.binary(min_size=ark.ENTROPY_BYTES, max_size=ark.ENTROPY_BYTES)
naans = st.text(alphabet="0123456789", min_size=5, max_size=9)


# Strategies are built once, not inside composites: building and validating them per draw
# costs more than drawing from them.
_ROOM = {n: ark.MAX_CHECKED_LENGTH - n - 1 - ark.BLADE_LENGTH - 1 for n in range(5, 10)}
CODES_BY_ROOM = {
    room: st.text(alphabet=ark.ALPHABET, min_size=2, max_size=room)
    | st.text(alphabet=ark.ALPHABET, min_size=room, max_size=room)
    for room in _ROOM.values()
}


@st.composite
def naans_and_codes(draw: st.DrawFn) -> tuple[str, str]:
    """A NAAN and a library code that `mint` accepts together; the longest ids are favoured,
    since that is where a check character is weakest."""
    naan = draw(naans)
    return naan, draw(CODES_BY_ROOM[_ROOM[len(naan)]])


@st.composite
def arks(draw: st.DrawFn) -> ark.Ark:
    naan, code = draw(naans_and_codes())
    return ark.mint(naan, code, draw(entropy))


hlcs = st.builds(Hlc, st.integers(0, MAX_WALL_MS), st.integers(0, MAX_COUNTER))

# --- text ---------------------------------------------------------------------------------------

# Plain-string alphabets draw much faster than strategies of characters.
_ENGLISH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.;:'\"()-&?!éüç—’"
# Common characters plus a spread over the whole CJK Unified Ideographs block, and CJK punctuation.
_CHINESE = (
    "中华民国图书馆古籍善本地方志目录卷第一二三上下文史哲学北京清大"
    + "".join(chr(c) for c in range(0x4E00, 0x9FA6, 97))
    + "《》，。：；、（）「」·　"
)
# Combining marks too: NFC composes them with what precedes, which is what we store.
_COMBINING = "\u0301\u0308\u0327"


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _texts(alphabet: str, *, multiline: bool) -> st.SearchStrategy[str]:
    if multiline:
        alphabet += "\n\t"
    return (
        st.text(alphabet=alphabet + _COMBINING, min_size=1, max_size=16)
        .map(_nfc)
        .filter(lambda s: bool(s.strip()))
    )


_ZH_TAGS = st.sampled_from(["zh", "zh-Hans", "zh-Hant", "zh-Hans-CN", "zh-Hant-TW", "lzh", ""])
_EN_TAGS = st.sampled_from(["en", "en-GB", "en-US", "eng", ""])
_MIXED_TAGS = st.sampled_from(["", "mul", "und", "zh-Latn-pinyin", "yue-Hant-HK"]) | st.from_regex(
    r"[a-z]{2,3}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True
)


def lang_strings(*, multiline: bool = True) -> st.SearchStrategy[LangString]:
    """Dublin Core values in Chinese, English or both, with fitting (or no) language tags."""
    return st.one_of(
        st.builds(LangString, _texts(_CHINESE, multiline=multiline), _ZH_TAGS),
        st.builds(LangString, _texts(_ENGLISH, multiline=multiline), _EN_TAGS),
        st.builds(LangString, _texts(_CHINESE + _ENGLISH, multiline=multiline), _MIXED_TAGS),
    )


_ONE_LINE = st.lists(lang_strings(multiline=False), min_size=1, max_size=2).map(tuple)
_MULTILINE = st.lists(lang_strings(multiline=True), min_size=1, max_size=2).map(tuple)
_OTHER_ELEMENTS = st.lists(st.sampled_from(DC_ELEMENTS[1:]), max_size=3, unique=True)


@st.composite
def dublin_core(draw: st.DrawFn) -> dict[str, tuple[LangString, ...]]:
    """A title and up to three other elements, one or two values each; descriptions multiline."""
    return {
        element: draw(_MULTILINE if element == "description" else _ONE_LINE)
        for element in ["title", *draw(_OTHER_ELEMENTS)]
    }


collections = st.sampled_from(["", "rare-books", "maps.1930s", "oral_history"]) | st.from_regex(
    r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True
)

# --- rights -------------------------------------------------------------------------------------

STATEMENTS = (
    "http://rightsstatements.org/vocab/InC/1.0/",
    "http://rightsstatements.org/vocab/InC-EDU/1.0/",
    "http://rightsstatements.org/vocab/NoC-US/1.0/",
    "https://rightsstatements.org/vocab/CNE/1.0/",
)
LICENCES = (
    "https://creativecommons.org/licenses/by/4.0/",
    "https://creativecommons.org/licenses/by-nc-sa/4.0/deed.zh-hans",
    "https://creativecommons.org/publicdomain/zero/1.0/",
    "http://example.org/licence?id=42&lang=zh",
)


_ACCESS = st.sampled_from(ACCESS_VALUES)
_DATES = st.dates()
_STATEMENTS = st.sampled_from(("", *STATEMENTS))
_LICENCES = st.sampled_from(("", *LICENCES))


@st.composite
def rights(draw: st.DrawFn, access: str | None = None) -> Rights:
    """Rights in any access state; an embargo date exactly when embargoed."""
    if access is None:
        access = draw(_ACCESS)
    embargo = draw(_DATES) if access == "embargoed" else None
    return Rights(access, embargo, draw(_STATEMENTS), draw(_LICENCES))


# --- manifests ----------------------------------------------------------------------------------

digests = st.binary(min_size=32, max_size=32)
MEDIA_TYPES = (
    "application/pdf",
    "image/tiff",
    "image/jp2",
    "text/plain",
    "audio/flac",
    "application/vnd.ms-excel",
    "application/mets+xml",
)

_PATH_PART = (
    st.text(
        alphabet="abcxyz019_-. " + _CHINESE[:40],
        min_size=1,
        max_size=12,
    )
    .map(_nfc)
    .filter(lambda p: p not in (".", ".."))
)
file_paths = st.lists(_PATH_PART, min_size=1, max_size=3).map("/".join)


_FULL_CHUNKS = st.integers(0, 3)
_LAST_CHUNK = st.integers(0, CHUNK_SIZE - 1) | st.sampled_from([0, 1, CHUNK_SIZE])
_MEDIA_TYPES = st.sampled_from(MEDIA_TYPES)
_PATH_LISTS = st.lists(file_paths, max_size=4, unique=True)


def _file_entry(draw: st.DrawFn, path: str) -> FileEntry:
    full = draw(_FULL_CHUNKS)
    last = draw(_LAST_CHUNK)
    sizes = [CHUNK_SIZE] * full + ([last] if last else [])
    chunks = tuple(ChunkRef(draw(digests), size) for size in sizes)
    return FileEntry(path, sum(sizes), draw(_MEDIA_TYPES), draw(digests), chunks)


@st.composite
def file_entries(draw: st.DrawFn) -> FileEntry:
    """A file of 0 to 4 chunks: full CHUNK_SIZE chunks, then possibly one short last chunk."""
    return _file_entry(draw, draw(file_paths))


@st.composite
def manifests(draw: st.DrawFn) -> tuple[FileEntry, ...]:
    """Up to four files with distinct paths."""
    return tuple(_file_entry(draw, p) for p in draw(_PATH_LISTS))


# --- records ------------------------------------------------------------------------------------


_PIDS = arks().map(str)
_ORIGINS = st.sampled_from([public_key_bytes(k) for k in KEYS])
_DUBLIN_CORE = dublin_core()
_RIGHTS = rights()
_MANIFESTS = manifests()


@st.composite
def catalogue_records(draw: st.DrawFn) -> CatalogueRecord:
    """A live catalogue record with metadata, rights and a manifest."""
    return CatalogueRecord(
        pid=draw(_PIDS),
        origin=draw(_ORIGINS),
        version=draw(hlcs),
        dc=draw(_DUBLIN_CORE),
        collection=draw(collections),
        rights=draw(_RIGHTS),
        files=draw(_MANIFESTS),
    )


@st.composite
def tombstones(draw: st.DrawFn) -> CatalogueRecord:
    """A deletion record: identity and version only."""
    return CatalogueRecord(pid=draw(_PIDS), origin=draw(_ORIGINS), version=draw(hlcs), deleted=True)


records = catalogue_records() | tombstones()

# Dates around which `Rights.is_open_on` changes its answer.
embargo_dates = st.dates(min_value=dt.date(1, 1, 2), max_value=dt.date(9999, 12, 30))
