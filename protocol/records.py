"""Catalogue records: Dublin Core + rights + content manifest, canonically encoded and signed.

Wire form of every signed record (the envelope), a msgpack array:

    [ENVELOPE_VERSION, kind, body, signer, signature]

`body` is the record's canonical msgpack encoding (arrays in a fixed field order, no maps, no
floats, bin for bytes, str for text), built only by `encode_body`. The signature covers
`signing_bytes(kind, body)` = domain tag + kind + body, so a signature for one kind of record can
never be replayed as another. Decoding is strict: a decoded object is a valid one, and the
input must be exactly the bytes our encoder would produce, so any change of any byte is either
rejected as malformed or changes signed bytes and fails verification.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import ark
from protocol.errors import DecodeError, SignatureError, UnsupportedVersionError, ValidationError
from protocol.hlc import Hlc
from protocol.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, public_key_bytes, sign, verify

__all__ = [
    "ACCESS_VALUES",
    "CHUNK_SIZE",
    "DC_ELEMENTS",
    "KIND_CATALOGUE",
    "MAX_RECORD_BYTES",
    "CatalogueRecord",
    "ChunkRef",
    "FileEntry",
    "LangString",
    "Rights",
    "SignedRecord",
    "canonical_pack",
    "canonical_unpack",
    "decode_catalogue",
    "decode_envelope",
    "encode_body",
    "encode_envelope",
    "hlc_field",
    "sign_catalogue",
    "signing_bytes",
    "validate_collection",
    "validate_file_path",
    "verified_fields",
]

ENVELOPE_VERSION = 1
CATALOGUE_VERSION = 1
KIND_CATALOGUE = "catalogue"
DOMAIN_TAG = b"siku/record/v1\x00"

# Fixed-size content chunks. Network-wide, never a per-node setting: two nodes must cut the
# same file into the same chunks for a chunk shared by two resources to be stored once.
CHUNK_SIZE = 1 << 20

# Bounds on everything a peer can send us.
MAX_RECORD_BYTES = 8 << 20
MAX_FILES = 100_000
MAX_VALUES_PER_ELEMENT = 1_000
MAX_VALUE_CHARS = 65_536
MAX_PATH_CHARS = 1_024
MAX_TEXT_CHARS = 2_048
MAX_CHUNKS_PER_FILE = 1 << 22  # 4 TiB files at 1 MiB chunks

DC_ELEMENTS = (
    "title",
    "creator",
    "subject",
    "description",
    "publisher",
    "contributor",
    "date",
    "type",
    "format",
    "identifier",
    "source",
    "language",
    "relation",
    "coverage",
    "rights",
)
ACCESS_VALUES = ("open", "network", "onsite", "restricted", "embargoed")

_LANG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
_COLLECTION = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_RIGHTS_STATEMENT = re.compile(r"https?://rightsstatements\.org/vocab/[A-Za-z-]+/[0-9.]+/")
_URI = re.compile(r"https?://[^\s\x00-\x1f\x7f]{1,2040}")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")


def _text(value: object, what: str, limit: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text")
    if len(value) > limit:
        raise ValidationError(f"{what} is longer than {limit} characters")
    bad = _CONTROL.search(value) or (not multiline and ("\n" in value or "\t" in value))
    if bad:
        raise ValidationError(f"{what} contains control characters")
    if not unicodedata.is_normalized("NFC", value):
        raise ValidationError(f"{what} is not in Unicode NFC form")
    return value


def validate_collection(collection: str) -> str:
    """A collection name: a short slug ("local-gazetteers"), or "" for none."""
    if collection and not _COLLECTION.fullmatch(collection):
        raise ValidationError(
            f"collection {collection!r} must be lower-case letters, digits, '.', '_', '-'"
            " (e.g. local-gazetteers), at most 128 characters"
        )
    return collection


def validate_file_path(path: str) -> str:
    """A file's path inside a resource: relative POSIX, no empty, '.' or '..' parts, NFC."""
    _text(path, "file path", MAX_PATH_CHARS)
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValidationError(f"file path {path!r} must be relative without '.' or '..' parts")
    if "\\" in path:
        raise ValidationError(f"file path {path!r} must use '/' separators")
    return path


@dataclass(frozen=True)
class LangString:
    """A Dublin Core value with its language tag ("" when unknown)."""

    value: str
    lang: str = ""

    def __post_init__(self) -> None:
        _text(self.value, "Dublin Core value", MAX_VALUE_CHARS, multiline=True)
        if not self.value.strip():
            raise ValidationError("Dublin Core value is empty")
        if self.lang and not _LANG.fullmatch(self.lang):
            raise ValidationError(f"language tag {self.lang!r} is not a BCP 47 tag")


@dataclass(frozen=True)
class Rights:
    """Who may be served, and under what terms: separate fields, never merged into one string."""

    access: str = "open"
    embargo_until: dt.date | None = None
    statement: str = ""  # a RightsStatements.org URI
    license: str = ""  # a licence URI, e.g. Creative Commons

    def __post_init__(self) -> None:
        if self.access not in ACCESS_VALUES:
            raise ValidationError(
                f"access {self.access!r} is not one of {', '.join(ACCESS_VALUES)}"
            )
        if (self.access == "embargoed") != (self.embargo_until is not None):
            raise ValidationError("an embargo date is given exactly when access is 'embargoed'")
        if self.statement and not _RIGHTS_STATEMENT.fullmatch(self.statement):
            raise ValidationError(f"{self.statement!r} is not a RightsStatements.org URI")
        if self.license and not _URI.fullmatch(self.license):
            raise ValidationError(f"licence {self.license!r} is not an http(s) URI")

    def is_open_on(self, today: dt.date) -> bool:
        """Open to anonymous readers on `today` (an embargo ends at the start of its date)."""
        if self.access == "open":
            return True
        return (
            self.access == "embargoed"
            and self.embargo_until is not None
            and (today >= self.embargo_until)
        )


@dataclass(frozen=True)
class ChunkRef:
    digest: bytes  # SHA-256 of the chunk
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes) or len(self.digest) != 32:
            raise ValidationError("a chunk digest is 32 bytes")
        if not (0 < self.size <= CHUNK_SIZE):
            raise ValidationError(f"chunk size {self.size} out of range")


@dataclass(frozen=True)
class FileEntry:
    """One file of a resource: the whole-file SHA-256 is the fixity value BagIt and PREMIS use."""

    path: str
    size: int
    media_type: str
    sha256: bytes
    chunks: tuple[ChunkRef, ...]

    def __post_init__(self) -> None:
        validate_file_path(self.path)
        if not _MEDIA_TYPE.fullmatch(self.media_type):
            raise ValidationError(f"{self.path}: media type {self.media_type!r} is malformed")
        if not isinstance(self.sha256, bytes) or len(self.sha256) != 32:
            raise ValidationError(f"{self.path}: file SHA-256 is 32 bytes")
        if len(self.chunks) > MAX_CHUNKS_PER_FILE:
            raise ValidationError(f"{self.path}: too many chunks")
        # Every chunk but the last is exactly CHUNK_SIZE, so offsets are computable.
        if any(c.size != CHUNK_SIZE for c in self.chunks[:-1]):
            raise ValidationError(f"{self.path}: only the last chunk may be short")
        if sum(c.size for c in self.chunks) != self.size:
            raise ValidationError(f"{self.path}: chunk sizes do not add up to the file size")


@dataclass(frozen=True)
class CatalogueRecord:
    """A catalogue entry, or its tombstone when `deleted` (then it carries no metadata)."""

    pid: str
    origin: bytes  # Ed25519 public key of the library that owns the entry
    version: Hlc
    deleted: bool = False
    dc: Mapping[str, tuple[LangString, ...]] = field(default_factory=dict)
    collection: str = ""
    rights: Rights = field(default_factory=Rights)
    files: tuple[FileEntry, ...] = ()

    def __post_init__(self) -> None:
        if str(ark.parse(self.pid)) != self.pid:
            raise ValidationError(f"pid {self.pid!r} is not in canonical form")
        if not isinstance(self.origin, bytes) or len(self.origin) != PUBLIC_KEY_BYTES:
            raise ValidationError("origin is a 32-byte public key")
        # Normalise to a plain dict in DC order so equal records compare and encode equal.
        dc = {k: tuple(self.dc[k]) for k in DC_ELEMENTS if self.dc.get(k)}
        unknown = set(self.dc) - set(DC_ELEMENTS)
        if unknown:
            raise ValidationError(f"not Dublin Core elements: {', '.join(sorted(unknown))}")
        if any(len(v) > MAX_VALUES_PER_ELEMENT for v in dc.values()):
            raise ValidationError("too many values for one Dublin Core element")
        object.__setattr__(self, "dc", dc)
        validate_collection(self.collection)
        if len(self.files) > MAX_FILES:
            raise ValidationError(f"more than {MAX_FILES} files")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValidationError("two files share a path")
        if self.deleted:
            if dc or self.files or self.collection or self.rights != Rights():
                raise ValidationError("a deletion record carries no metadata")
        elif "title" not in dc:
            raise ValidationError("a catalogue record needs at least one title")

    @property
    def title(self) -> str:
        titles = self.dc.get("title", ())
        return titles[0].value if titles else ""

    def values(self, element: str) -> tuple[LangString, ...]:
        return self.dc.get(element, ())

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)

    @property
    def content_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class SignedRecord:
    """A record body as signed by `signer`. Obtain one from `sign_*` or `decode_envelope`."""

    kind: str
    body: bytes
    signer: bytes
    signature: bytes

    def verify(self) -> None:
        verify(self.signer, signing_bytes(self.kind, self.body), self.signature)


def signing_bytes(kind: str, body: bytes) -> bytes:
    """The only bytes any record signature covers: domain tag, kind, then the canonical body."""
    return DOMAIN_TAG + kind.encode("ascii") + b"\x00" + body


# --- encoding ---------------------------------------------------------------------------------


def _pack(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True, strict_types=True)
    return packed


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_VALUE_CHARS * 4,
            max_bin_len=MAX_RECORD_BYTES,
            max_array_len=MAX_CHUNKS_PER_FILE,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.FormatError, msgpack.StackError) as e:
        raise DecodeError(f"{what} is not valid msgpack: {e}") from e
    except UnicodeDecodeError as e:
        raise DecodeError(f"{what} has invalid UTF-8") from e


# Every record kind's body is built and parsed with these two, so all share the same canonical
# form (arrays only, no floats, bin for bytes) and the same decoding bounds.
canonical_pack = _pack
canonical_unpack = _unpack


def verified_fields(
    signed: SignedRecord, kind: str, version: int, shape: Sequence[type]
) -> list[object]:
    """Check kind and signature, then unpack the body to fields of exactly `shape`'s types, the
    first being `version`: how every record kind but the catalogue's is read."""
    if signed.kind != kind:
        raise UnsupportedVersionError(f"expected a {kind} record, got {signed.kind!r}")
    signed.verify()
    fields = _unpack(signed.body, f"{kind} body")
    if not (isinstance(fields, list) and fields and type(fields[0]) is int):
        raise DecodeError(f"{kind} body is not an array that starts with its version")
    if fields[0] != version:
        raise UnsupportedVersionError(f"{kind} version {fields[0]!r}")
    if len(fields) != len(shape) or any(
        type(v) is not t for v, t in zip(fields, shape, strict=True)
    ):
        raise DecodeError(f"{kind} body has the wrong shape or field types")
    return fields


def hlc_field(wall: object, counter: object, what: str) -> Hlc:
    """A decoded record's version: a DecodeError, not a ValueError, when out of range."""
    try:
        return Hlc(wall, counter)  # type: ignore[arg-type]
    except ValueError as e:
        raise DecodeError(f"{what} version out of range: {e}") from e


def encode_body(record: CatalogueRecord) -> bytes:
    """Canonical bytes of a catalogue record: the one place its field order is defined."""
    r = record.rights
    return _pack(
        [
            CATALOGUE_VERSION,
            record.pid,
            record.origin,
            record.version.wall_ms,
            record.version.counter,
            record.deleted,
            [[k, [[v.value, v.lang] for v in vs]] for k, vs in record.dc.items()],
            record.collection,
            [
                r.access,
                r.embargo_until.isoformat() if r.embargo_until else "",
                r.statement,
                r.license,
            ],
            [
                [f.path, f.size, f.media_type, f.sha256, [[c.digest, c.size] for c in f.chunks]]
                for f in record.files
            ],
        ]
    )


# Wire types of a catalogue body, checked before any value is used: a type stands for exactly
# that type (bool is not int, bin is not str), a list for an array of exactly those fields, a
# 1-tuple for an array of any length whose items all have its one shape.
_CATALOGUE_SHAPE = [
    int,
    str,
    bytes,
    int,
    int,
    bool,
    ([str, ([str, str],)],),
    str,
    [str, str, str, str],
    ([str, int, str, bytes, ([bytes, int],)],),
]


def _has_shape(value: object, shape: object) -> bool:
    if isinstance(shape, type):
        return type(value) is shape
    if not isinstance(value, list):
        return False
    if isinstance(shape, tuple):
        return all(_has_shape(v, shape[0]) for v in value)
    return (
        isinstance(shape, list)
        and len(value) == len(shape)
        and all(_has_shape(v, s) for v, s in zip(value, shape, strict=True))
    )


def _decode_catalogue_body(body: bytes) -> CatalogueRecord:
    fields = _unpack(body, "record body")
    if not (isinstance(fields, list) and fields and type(fields[0]) is int):
        raise DecodeError("record body is not an array that starts with its version")
    if fields[0] != CATALOGUE_VERSION:
        raise UnsupportedVersionError(f"catalogue record version {fields[0]!r}")
    if not _has_shape(fields, _CATALOGUE_SHAPE):
        raise DecodeError("record body has the wrong shape or field types")
    try:
        version, pid, origin, wall, counter, deleted, dc, collection, rights, files = fields
        if version != CATALOGUE_VERSION:
            raise UnsupportedVersionError(f"catalogue record version {version!r}")
        access, embargo, statement, license_ = rights
        embargo_until = dt.date.fromisoformat(embargo) if embargo else None
        if embargo and embargo_until and embargo_until.isoformat() != embargo:
            raise DecodeError("embargo date is not in canonical form")
        if not isinstance(deleted, bool) or not isinstance(wall, int):
            raise DecodeError("record field has the wrong type")
        record = CatalogueRecord(
            pid=pid,
            origin=origin,
            version=Hlc(wall, counter),
            deleted=deleted,
            dc={k: tuple(LangString(v, lang) for v, lang in vs) for k, vs in dc},
            collection=collection,
            rights=Rights(access, embargo_until, statement, license_),
            files=tuple(
                FileEntry(p, size, mt, sha, tuple(ChunkRef(d, n) for d, n in chunks))
                for p, size, mt, sha, chunks in files
            ),
        )
    except (ValueError, TypeError) as e:  # wrong shape: unpacking, fromisoformat, int ranges
        if isinstance(e, ValidationError):
            raise
        raise DecodeError(f"record body has the wrong shape: {e}") from e
    if len(record.dc) != len(dc):
        raise DecodeError("Dublin Core elements repeated or empty")
    if encode_body(record) != body:
        raise DecodeError("record body is not in canonical form")
    return record


def encode_envelope(signed: SignedRecord) -> bytes:
    return _pack([ENVELOPE_VERSION, signed.kind, signed.body, signed.signer, signed.signature])


def decode_envelope(data: bytes) -> SignedRecord:
    """Parse an envelope (no signature check yet: call `.verify()` or a `decode_*`)."""
    if len(data) > MAX_RECORD_BYTES:
        raise DecodeError("record larger than the limit")
    fields = _unpack(data, "record envelope")
    if not isinstance(fields, list) or len(fields) != 5:
        raise DecodeError("record envelope has the wrong shape")
    version, kind, body, signer, signature = fields
    if version != ENVELOPE_VERSION:
        raise UnsupportedVersionError(f"record envelope version {version!r}")
    if not (isinstance(kind, str) and _KIND.fullmatch(kind) and isinstance(body, bytes)):
        raise DecodeError("record envelope has the wrong types or a malformed kind")
    if not (isinstance(signer, bytes) and len(signer) == PUBLIC_KEY_BYTES):
        raise DecodeError("signer is not a 32-byte key")
    if not (isinstance(signature, bytes) and len(signature) == SIGNATURE_BYTES):
        raise DecodeError("signature is not 64 bytes")
    signed = SignedRecord(kind, body, signer, signature)
    if encode_envelope(signed) != data:
        raise DecodeError("record envelope is not in canonical form")
    return signed


def sign_catalogue(
    record: CatalogueRecord, key: Ed25519PrivateKey, *, delegated: bool = False
) -> SignedRecord:
    """Sign as the record's origin; `delegated`: as a catalogue authority editing it."""
    signer = public_key_bytes(key)
    if signer != record.origin and not delegated:
        raise SignatureError("only the origin library signs its catalogue records")
    body = encode_body(record)
    if len(body) > MAX_RECORD_BYTES - 256:
        raise ValidationError("record larger than the limit")
    return SignedRecord(
        KIND_CATALOGUE, body, signer, sign(key, signing_bytes(KIND_CATALOGUE, body))
    )


def decode_catalogue(
    data: bytes | SignedRecord, *, delegated: bool = False
) -> tuple[SignedRecord, CatalogueRecord]:
    """Verify a signed catalogue record and decode it. Signature first: nothing unverified is
    parsed beyond the envelope. The signer must be the record's origin, unless `delegated`:
    then the caller judges whether the signer may edit the origin's records (a catalogue
    authority named by the network policy, sync.authority)."""
    signed = data if isinstance(data, SignedRecord) else decode_envelope(data)
    if signed.kind != KIND_CATALOGUE:
        raise UnsupportedVersionError(f"expected a catalogue record, got {signed.kind!r}")
    signed.verify()
    record = _decode_catalogue_body(signed.body)
    if record.origin != signed.signer and not delegated:
        raise SignatureError("catalogue record signed by a node other than its origin")
    return signed, record


def dc_from_pairs(pairs: Iterable[tuple[str, str, str]]) -> dict[str, tuple[LangString, ...]]:
    """Build a DC mapping from (element, value, lang) triples, keeping their order."""
    out: dict[str, list[LangString]] = {}
    for element, value, lang in pairs:
        out.setdefault(element, []).append(LangString(value, lang))
    return {k: tuple(v) for k, v in out.items()}
