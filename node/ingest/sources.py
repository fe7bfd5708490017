"""Turn what a librarian points `siku ingest` at into validated, neutral resource descriptions.

`discover(path)` decides the input kind by what PATH is:

1. a regular file (not ``*.csv``)         → one resource holding that file;
2. a folder with ``metadata.json`` and/or ``dc.xml`` at its top → one resource, all files below;
3. a folder with ``bagit.txt`` (a BagIt bag, see `node.ingest.bagit`) → one resource, the payload
   (``bagit.txt`` wins over a sidecar);
4. a ``*.csv`` file                        → one resource per data row.

Nothing here stores or hashes content for storage: it reads metadata, validates structure and
lists files (each checked to be a readable regular file inside its allowed base folder).

Errors: a problem with the input as a whole (PATH missing, a bad sidecar, an invalid bag, a CSV
that is not UTF-8 or has a bad header or malformed quoting, too many rows) raises `IngestError`
from `discover()` itself, before anything is yielded. For a CSV, a problem confined to one row is
*yielded* as an `IngestError` in that row's place, so the caller can report it and carry on with
the other rows; every data row yields exactly one item, in file order, blank rows none. The
iterator itself raises only if the CSV changes on disk between the checking pass and the rows.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import mimetypes
import os
import re
import stat
import types
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO
from urllib.parse import urlsplit

from node.errors import IngestError
from protocol.records import ACCESS_VALUES, DC_ELEMENTS

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

__all__ = [
    "ACCESS_VALUES",
    "DC_ELEMENTS",
    "MAX_CSV_FIELD_CHARS",
    "MAX_CSV_ROWS",
    "MAX_DC_VALUE_BYTES",
    "MAX_FILES_PER_RESOURCE",
    "MAX_SIDECAR_BYTES",
    "RIGHTS_STATEMENT_IDS",
    "LangValue",
    "SourceFile",
    "SourceResource",
    "discover",
]

# The twelve statements of https://rightsstatements.org/page/1.0/ (the vocabulary is frozen).
RIGHTS_STATEMENT_IDS = frozenset(
    {
        "InC",
        "InC-OW-EU",
        "InC-EDU",
        "InC-NC",
        "InC-RUU",
        "NoC-CR",
        "NoC-NC",
        "NoC-OKLR",
        "NoC-US",
        "CNE",
        "UND",
        "NKC",
    }
)

MAX_SIDECAR_BYTES = 1024 * 1024  # metadata.json, dc.xml
MAX_CSV_FIELD_CHARS = 1024 * 1024  # csv.field_size_limit
MAX_CSV_LINE_CHARS = 8 * 1024 * 1024  # one physical line, read before the csv module sees it
MAX_CSV_COLUMNS = 256
MAX_CSV_ROWS = 1_000_000
MAX_FILES_PER_RESOURCE = 100_000
MAX_DC_VALUE_BYTES = 64 * 1024
MAX_SHORT_VALUE_BYTES = 1024  # collection
MAX_URI_CHARS = 2048
MAX_PATH_CHARS = 4096
DEFAULT_MEDIA_TYPE = "application/octet-stream"

SIDECARS = ("metadata.json", "dc.xml")
DC_NAMESPACE = "http://purl.org/dc/elements/1.1/"
DCTERMS_NAMESPACE = "http://purl.org/dc/terms/"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

_FIELDS = ("collection", "access", "embargo_until", "rights", "license")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LANG_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RIGHTS_URI = re.compile(r"https?://rightsstatements\.org/vocab/([A-Za-z-]+)/([0-9]+\.[0-9]+)/")
_RIGHTS_SITE = re.compile(r"https?://(www\.)?rightsstatements\.org/", re.IGNORECASE)
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LangValue:
    """One Dublin Core value with its BCP 47 language tag ("" when unknown)."""

    value: str
    lang: str = ""


@dataclass(frozen=True)
class SourceFile:
    """One file of a resource: where it is on disk and what it is called inside the resource."""

    path: str  # inside the resource: POSIX, relative, NFC, no '.' / '..' parts
    source: Path  # absolute, resolved, inside the allowed base folder
    size: int
    media_type: str
    # (algorithm, lowercase hex digest) from a bag manifest, strongest first, for the pipeline
    # to check while it hashes.
    expected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SourceResource:
    """One resource to ingest: Dublin Core, rights fields and files, all validated."""

    label: str  # the file, folder, bag, or "csvpath:line" to name in messages
    dc: Mapping[str, tuple[LangValue, ...]]  # DC element → non-empty values, in DC_ELEMENTS order
    collection: str | None
    access: str | None  # one of ACCESS_VALUES
    embargo_until: date | None  # set iff access == "embargoed"
    rights: str | None  # RightsStatements.org URI
    license: str | None  # absolute http(s) URI
    files: tuple[SourceFile, ...]
    origin_kind: Literal["file", "folder", "bag", "csv"]


def discover(path: Path) -> Iterator[SourceResource | IngestError]:
    """Validate PATH and describe the resources in it (see the module docstring for errors)."""
    path = Path(path).absolute()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IngestError(str(path), "does not exist") from None
    except OSError as exc:
        raise IngestError(str(path), f"cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        if os.path.lexists(path / "bagit.txt"):
            # bagit builds on this module's types and helpers; importing it here keeps the
            # import-time dependency one-way.
            from node.ingest.bagit import read_bag

            return iter([read_bag(path)])
        if any(os.path.lexists(path / name) for name in SIDECARS):
            return iter([_read_folder(path)])
        raise IngestError(
            str(path),
            "this folder is not something siku can ingest. Accepted forms: (1) a single file; "
            "(2) a folder with a metadata.json or dc.xml sidecar at its top; (3) a BagIt bag "
            "(a folder with bagit.txt); or point at a .csv file with one row per resource",
        )
    if stat.S_ISREG(st.st_mode):
        if path.suffix.lower() == ".csv":
            return _read_csv(path)
        return iter([_read_single_file(path)])
    raise IngestError(str(path), "is neither a regular file nor a folder")


# --- kind 1: a single file -------------------------------------------------------------------


def _read_single_file(path: Path) -> SourceResource:
    # The librarian named this file, so a symbolic link is followed wherever it points.
    resolved, size = check_file(path, path.resolve().parent)
    name = nfc(path.name)
    split_relpath(name, str(path))
    return build_resource(
        label=str(path),
        builder=DcBuilder(),
        fields=RightsFields(),
        files=(make_source_file(name, resolved, size),),
        origin_kind="file",
        default_title=Path(name).stem,
    )


# --- kind 2: a folder with a metadata sidecar -----------------------------------------------


def _read_folder(folder: Path) -> SourceResource:
    base = folder.resolve(strict=True)
    builder = DcBuilder()
    fields = RightsFields()
    json_path = folder / "metadata.json"
    if os.path.lexists(json_path):
        fields = _read_metadata_json(json_path, base, builder)
    xml_path = folder / "dc.xml"
    if os.path.lexists(xml_path):
        read_dc_xml(xml_path, base, builder)
        fields = fields.with_rights(builder.rights_uri, str(xml_path))
    found = collect_files(folder, base, skip_hidden=True, exclude=frozenset(SIDECARS))
    return build_resource(
        label=str(folder),
        builder=builder,
        fields=fields,
        files=tuple(make_source_file(rel, src, size) for rel, src, size in found),
        origin_kind="folder",
        default_title=nfc(folder.name),
    )


def _read_metadata_json(path: Path, base: Path, builder: DcBuilder) -> RightsFields:
    source = str(path)
    data = read_bounded(path, base, MAX_SIDECAR_BYTES)

    def no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key.lower() for key, _ in pairs]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise IngestError(source, f"key {pairs[i][0]!r} appears twice")
        return dict(pairs)

    try:
        doc = json.loads(data.decode("utf-8-sig"), object_pairs_hook=no_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise IngestError(source, f"is not UTF-8 (byte {exc.start}); re-save as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{source}:{exc.lineno}", f"is not valid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except RecursionError:
        raise IngestError(source, "is nested too deeply") from None
    if not isinstance(doc, dict):
        raise IngestError(source, "must hold a JSON object ({...}) at the top")
    raw_fields: dict[str, str] = {}
    for key, value in doc.items():
        name = key.lower()
        if name in _FIELDS:
            if value is None:
                continue
            if not isinstance(value, str):
                raise IngestError(source, f"{key!r} must be a string")
            raw_fields[name] = value
        elif name in DC_ELEMENTS and name != "rights":
            for text, lang in _json_dc_values(source, key, value):
                builder.add(name, text, lang, source, what=key)
        else:
            raise IngestError(
                source,
                f"unknown key {key!r}; accepted keys: the Dublin Core elements "
                f"({', '.join(e for e in DC_ELEMENTS if e != 'rights')}) and "
                f"{', '.join(_FIELDS)}",
            )
    return check_fields(source, raw_fields)


def _json_dc_values(source: str, key: str, value: object) -> Iterator[tuple[str, str]]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str):
            yield item, ""
        elif isinstance(item, dict):
            extra = set(item) - {"value", "lang"}
            text, lang = item.get("value"), item.get("lang", "")
            if extra or not isinstance(text, str) or not isinstance(lang, str):
                raise IngestError(
                    source,
                    f'{key!r}: an object value must be {{"value": "…", "lang": "zh"}} '
                    "with string members only",
                )
            yield text, lang
        else:
            raise IngestError(
                source,
                f'{key!r} must be a string, {{"value": …, "lang": …}} or a list of those '
                f"(got {type(item).__name__}; write numbers and dates as strings)",
            )


def read_dc_xml(path: Path, base: Path, builder: DcBuilder) -> None:
    """Add the Dublin Core elements of a simple-DC XML file (any root element) to `builder`."""
    source = str(path)
    data = read_bounded(path, base, MAX_SIDECAR_BYTES)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise IngestError(source, "DOCTYPE and ENTITY declarations are not accepted; remove them")
    if b"\x00" in data:
        raise IngestError(source, "must be encoded as UTF-8 (it looks like UTF-16)")
    try:
        # Safe: the bytes are bounded and hold no DOCTYPE, so expat expands no entities.
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError as exc:
        line, column = exc.position
        raise IngestError(f"{source}:{line}", f"is not well-formed XML (column {column})") from None
    stack: list[tuple[ET.Element, str]] = [(root, root.get(_XML_LANG, ""))]
    while stack:
        element, lang = stack.pop()
        children = [(child, child.get(_XML_LANG, lang)) for child in element]
        stack.extend(reversed(children))
        namespace, _, name = element.tag.rpartition("}")
        namespace = namespace.lstrip("{")
        if namespace not in (DC_NAMESPACE, DCTERMS_NAMESPACE):
            continue
        if name not in DC_ELEMENTS:
            if namespace == DC_NAMESPACE:
                raise IngestError(source, f"<{name}> is not a Dublin Core element")
            continue  # other DCMI terms (dcterms:abstract, …) are not part of simple DC
        builder.add(name, "".join(element.itertext()), lang, source, what=f"<{name}>")


# --- kind 4: a CSV of resources -------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    kind: Literal["dc", "field", "files"]
    name: str
    lang: str = ""


def _read_csv(path: Path) -> Iterator[SourceResource | IngestError]:
    check_file(path, path.resolve().parent)
    columns = _check_csv(path)
    return _csv_resources(path, columns)


def _bounded_lines(handle: TextIO, source: str) -> Iterator[str]:
    line_no = 0
    while line := handle.readline(MAX_CSV_LINE_CHARS + 1):
        line_no += 1
        if len(line) > MAX_CSV_LINE_CHARS:
            raise IngestError(
                f"{source}:{line_no}", f"line is over {MAX_CSV_LINE_CHARS} characters"
            )
        yield line


def _csv_reader(handle: TextIO, source: str) -> CsvReader:
    csv.field_size_limit(MAX_CSV_FIELD_CHARS)  # process-wide; every caller wants this bound
    return csv.reader(_bounded_lines(handle, source), strict=True)


def _check_csv(path: Path) -> list[_Column]:
    """First pass: encoding, header, quoting and row count, so all of these fail before any row
    is yielded."""
    source = str(path)
    reader: CsvReader | None = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = _csv_reader(handle, source)
            header = next(reader, None)
            if not header or _is_blank(header):
                raise IngestError(f"{source}:1", "line 1 must be the header row (column names)")
            columns = _parse_header(header, f"{source}:1")
            rows = 0
            for record in reader:
                rows += not _is_blank(record)
                if rows > MAX_CSV_ROWS:
                    raise IngestError(source, f"has over {MAX_CSV_ROWS} rows; split it")
            return columns
    except UnicodeDecodeError:
        raise _not_utf8_error(path) from None
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 1
        raise IngestError(f"{source}:{line}", f"is not well-formed CSV: {exc}") from None
    except OSError as exc:
        raise IngestError(source, f"cannot be read: {exc.strerror}") from None


def _csv_resources(path: Path, columns: list[_Column]) -> Iterator[SourceResource | IngestError]:
    base = path.resolve().parent
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = _csv_reader(handle, str(path))
            next(reader)
            last_line = 1
            for record in reader:
                line, last_line = last_line + 1, reader.line_num
                if _is_blank(record):
                    continue
                try:
                    yield _csv_row(f"{path}:{line}", base, columns, record)
                except IngestError as exc:
                    yield exc
    except (UnicodeDecodeError, csv.Error, OSError, StopIteration) as exc:
        raise IngestError(str(path), f"changed while being read ({exc}); run again") from None


def _is_blank(record: list[str]) -> bool:
    return all(not cell.strip() for cell in record)


def _parse_header(header: list[str], source: str) -> list[_Column]:
    if len(header) > MAX_CSV_COLUMNS:
        raise IngestError(source, f"has {len(header)} columns; at most {MAX_CSV_COLUMNS}")
    columns: list[_Column] = []
    for number, cell in enumerate(header, start=1):
        raw = cell.strip()
        name, at, lang = raw.partition("@")
        name = name.strip().lower()
        if not name:
            raise IngestError(source, f"column {number} has no name; name it or delete it")
        if name == "files" or name in _FIELDS:
            if at:
                raise IngestError(source, f"column {raw!r}: {name} takes no @language suffix")
            column = _Column("files" if name == "files" else "field", name)
        elif name in DC_ELEMENTS:
            column = _Column("dc", name, normalise_lang(lang.strip(), source) if at else "")
            if at and not column.lang:
                raise IngestError(source, f"column {raw!r}: empty language after '@'")
        else:
            raise IngestError(
                source,
                f"unknown column {raw!r} (column {number}); accepted: the Dublin Core elements "
                f"({', '.join(DC_ELEMENTS)}), each optionally with @<language> as in title@zh, "
                f"and {', '.join(_FIELDS)}, files",
            )
        if column in columns:
            raise IngestError(source, f"column {raw!r} (column {number}) appears twice")
        columns.append(column)
    if not any(c.kind == "dc" and c.name == "title" for c in columns):
        raise IngestError(source, "a title column (title or title@<language>) is required")
    return columns


def _csv_row(source: str, base: Path, columns: list[_Column], record: list[str]) -> SourceResource:
    if len(record) != len(columns):
        raise IngestError(
            source, f"has {len(record)} cells but the header has {len(columns)} columns"
        )
    builder = DcBuilder()
    raw_fields: dict[str, str] = {}
    file_cells: list[str] = []
    for column, cell in zip(columns, record, strict=True):
        if not cell.strip():
            continue
        where = f"{column.name}@{column.lang}" if column.lang else column.name
        if column.kind == "files":
            file_cells = _split_cell(cell)
        elif column.kind == "field":
            if "||" in cell:
                raise IngestError(source, f"{where}: takes one value, not a '||' list")
            raw_fields[column.name] = cell
        else:
            for part in _split_cell(cell):
                builder.add(column.name, part, column.lang, source, what=where)
    if not builder.has("title"):
        raise IngestError(source, "has no title; fill in the title (or title@<language>) column")
    fields = check_fields(source, raw_fields)
    return build_resource(
        label=source,
        builder=builder,
        fields=fields,
        files=_csv_files(source, base, file_cells),
        origin_kind="csv",
        default_title="",
    )


def _split_cell(cell: str) -> list[str]:
    return [part.strip() for part in cell.split("||") if part.strip()]


def _csv_files(source: str, base: Path, cells: list[str]) -> tuple[SourceFile, ...]:
    """Files named in one row, relative to the CSV's folder. Inside the resource each is named
    by its path below the deepest folder the row's files share (one file: its name)."""
    if len(cells) > MAX_FILES_PER_RESOURCE:
        raise IngestError(source, f"files: {len(cells)} files; at most {MAX_FILES_PER_RESOURCE}")
    found: list[tuple[list[str], Path, int]] = []
    for raw in cells:
        parts = split_relpath(raw, source, what=f"files: {raw!r}")
        resolved, size = check_file(base.joinpath(*parts), base, source=source, shown=raw)
        found.append(([nfc(p) for p in parts], resolved, size))
    common = 0
    if found:
        shortest = min(len(parts) for parts, _, _ in found)
        while common < shortest - 1 and len({parts[common] for parts, _, _ in found}) == 1:
            common += 1
    files: list[SourceFile] = []
    seen: set[str] = set()
    for (parts, resolved, size), raw in zip(found, cells, strict=True):
        rel = "/".join(parts[common:])
        if rel in seen:
            raise IngestError(source, f"files: {raw!r} is listed twice")
        seen.add(rel)
        files.append(make_source_file(rel, resolved, size))
    return tuple(files)


def _not_utf8_error(path: Path) -> IngestError:
    """Locate the first byte that is not UTF-8 and say what the file probably is."""
    with path.open("rb") as handle:
        head = handle.read(2)
    if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return IngestError(f"{path}:1", 'is UTF-16 ("Unicode text"); re-save it as CSV UTF-8')
    line, offset = _first_bad_utf8(path)
    hint = "re-save it as UTF-8"
    if _decodes_as(path, "gb18030"):
        hint = "it looks like GB18030/GBK; re-save as UTF-8 (e.g. Excel: CSV UTF-8)"
    return IngestError(
        f"{path}:{line}",
        f"is not valid UTF-8 (first bad byte at line {line}, offset {offset}); " + hint,
    )


def _first_bad_utf8(path: Path) -> tuple[int, int]:
    line, offset, pending = 1, 0, b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_READ_CHUNK)
            buffer = pending + chunk
            try:
                buffer.decode("utf-8")
                good = len(buffer)
            except UnicodeDecodeError as exc:
                if not (chunk and exc.reason == "unexpected end of data"):
                    return line + buffer.count(b"\n", 0, exc.start), offset + exc.start
                good = exc.start  # a character split across chunks: finish it next round
            line += buffer.count(b"\n", 0, good)
            offset += good
            pending = buffer[good:]
            if not chunk:
                return line, offset


def _decodes_as(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


# --- shared by all kinds (and by node.ingest.bagit) -----------------------------------------


class DcBuilder:
    """Collects validated Dublin Core values, dropping empty values and exact duplicates.

    A dc:rights value from a DC source (dc.xml, bag-info.txt) that points at rightsstatements.org
    must be a valid statement URI and becomes `rights_uri` (the resource's rights status);
    any other dc:rights value is kept as a free-text statement.
    """

    def __init__(self) -> None:
        self._values: dict[str, list[LangValue]] = {}
        self.rights_uri: str | None = None

    def add(self, element: str, value: str, lang: str, source: str, *, what: str = "") -> None:
        """Add one value; errors name `source` and, in the message, `what` (key, column…)."""
        text = clean_text(value, source, MAX_DC_VALUE_BYTES, what=what or element)
        if not text:
            return
        if element == "rights" and _RIGHTS_SITE.match(text) is not None:
            uri = check_rights_uri(source, text, what=what or element)
            if self.rights_uri not in (None, uri):
                raise IngestError(source, f"two different rights statements: {self.rights_uri}")
            self.rights_uri = uri
            return
        item = LangValue(text, normalise_lang(lang.strip(), source, what=what or element))
        values = self._values.setdefault(element, [])
        if item not in values:
            values.append(item)

    def has(self, element: str) -> bool:
        return bool(self._values.get(element))

    def freeze(self) -> Mapping[str, tuple[LangValue, ...]]:
        return types.MappingProxyType(
            {e: tuple(self._values[e]) for e in DC_ELEMENTS if self._values.get(e)}
        )


@dataclass(frozen=True)
class RightsFields:
    """The non-DC fields, validated: collection, access, embargo date, rights and licence."""

    collection: str | None = None
    access: str | None = None
    embargo_until: date | None = None
    rights: str | None = None
    license: str | None = None

    def with_rights(self, uri: str | None, source: str) -> RightsFields:
        if uri is None or uri == self.rights:
            return self
        if self.rights is not None:
            raise IngestError(source, f"rights statement {uri} contradicts {self.rights}")
        return RightsFields(self.collection, self.access, self.embargo_until, uri, self.license)


def check_fields(source: str, raw: Mapping[str, str]) -> RightsFields:
    """Validate collection/access/embargo_until/rights/license as written by a librarian."""
    collection = (
        clean_text(raw.get("collection", ""), source, MAX_SHORT_VALUE_BYTES, what="collection")
        or None
    )
    access = raw.get("access", "").strip().lower() or None
    if access is not None and access not in ACCESS_VALUES:
        raise IngestError(
            source, f"access: {raw['access']!r} is not one of {', '.join(ACCESS_VALUES)}"
        )
    embargo_text = raw.get("embargo_until", "").strip()
    embargo: date | None = None
    if embargo_text:
        try:
            if not _ISO_DATE.fullmatch(embargo_text):
                raise ValueError
            embargo = date.fromisoformat(embargo_text)
        except ValueError:
            raise IngestError(
                source, f"embargo_until: {embargo_text!r} is not a date written YYYY-MM-DD"
            ) from None
    if access == "embargoed" and embargo is None:
        raise IngestError(source, "access is embargoed but embargo_until (YYYY-MM-DD) is empty")
    if embargo is not None and access != "embargoed":
        raise IngestError(source, "embargo_until is set but access is not embargoed")
    rights_text = raw.get("rights", "").strip()
    rights = check_rights_uri(source, rights_text, what="rights") if rights_text else None
    license_text = raw.get("license", "").strip()
    license_uri = _check_license(source, license_text) if license_text else None
    return RightsFields(collection, access, embargo, rights, license_uri)


def check_rights_uri(source: str, text: str, *, what: str = "rights") -> str:
    match = _RIGHTS_URI.fullmatch(text)
    if match is None or match.group(1) not in RIGHTS_STATEMENT_IDS:
        raise IngestError(
            source,
            f"{what}: {text!r} is not a RightsStatements.org URI such as "
            "http://rightsstatements.org/vocab/InC/1.0/ (statements: "
            f"{', '.join(sorted(RIGHTS_STATEMENT_IDS))})",
        )
    return text


def _check_license(source: str, text: str) -> str:
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(text) > MAX_URI_CHARS
        or re.search(r"[\s\x00-\x1f\x7f]", text)
    ):
        raise IngestError(
            source,
            f"license: {text!r} is not an absolute http(s) URI such as "
            "https://creativecommons.org/licenses/by/4.0/",
        )
    return text


def clean_text(value: str, source: str, max_bytes: int, *, what: str = "") -> str:
    """Normalise line ends, strip, NFC; reject control characters and over-long values."""
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    text = value.strip()
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    label = f"{what}: " if what else ""
    bad = _CONTROL.search(text)
    if bad is not None:
        raise IngestError(
            source, f"{label}contains the control character U+{ord(bad.group()):04X}; remove it"
        )
    # At most 4 bytes a character: only long values need encoding to be measured.
    if len(text) * 4 > max_bytes and len(text.encode("utf-8")) > max_bytes:
        raise IngestError(source, f"{label}value is over {max_bytes // 1024} KiB")
    return text


def normalise_lang(tag: str, source: str, *, what: str = "") -> str:
    """Check a BCP 47 tag's shape and give it the conventional case (zh-hans → zh-Hans)."""
    if not tag:
        return ""
    if len(tag) > 64 or _LANG_TAG.fullmatch(tag) is None:
        label = f"{what}: " if what else ""
        raise IngestError(source, f"{label}{tag!r} is not a language tag such as zh, zh-Hans or en")
    return _conventional_case(tag)


@functools.lru_cache(maxsize=256)  # a collection uses a handful of tags, row after row
def _conventional_case(tag: str) -> str:
    subtags = tag.lower().split("-")
    for i in range(1, len(subtags)):
        if len(subtags[i - 1]) == 1:  # after a singleton (x-, u-, …) leave the rest alone
            break
        if len(subtags[i]) == 4 and subtags[i].isalpha():
            subtags[i] = subtags[i].title()
        elif len(subtags[i]) == 2 and subtags[i].isalpha():
            subtags[i] = subtags[i].upper()
    return "-".join(subtags)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def split_relpath(raw: str, source: str, *, what: str = "path") -> list[str]:
    """Split a relative POSIX path; reject absolute paths, '..', backslashes and control
    characters. '.' and empty parts are dropped. Parts are returned as written (not NFC)."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise IngestError(source, f"{what}: the file name is not valid UTF-8; rename it") from None
    if _PATH_CONTROL.search(raw):
        raise IngestError(source, f"{what}: contains a control character; rename the file")
    if raw.startswith("/") or _WINDOWS_DRIVE.match(raw):
        raise IngestError(source, f"{what}: absolute paths are not accepted; give a relative path")
    if "\\" in raw:
        raise IngestError(source, f"{what}: use '/' (not '\\') between folder names")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise IngestError(source, f"{what}: '..' is not accepted in a path")
    if not parts or len(raw) > MAX_PATH_CHARS:
        raise IngestError(source, f"{what}: not a usable file path")
    return parts


def check_file(
    path: Path, base: Path, *, source: str | None = None, shown: str | None = None
) -> tuple[Path, int]:
    """Require `path` to be a readable regular file that resolves inside `base` (resolved).

    Returns (resolved path, size). Errors name `source` (default: the path itself); when a
    source is given, the message names the file as `shown`.
    """
    where = source or str(path)
    prefix = f"{shown or path}: " if source else ""

    def fail(problem: str) -> IngestError:
        return IngestError(where, prefix + problem)

    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        if path.is_symlink():
            raise fail(f"is a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise fail("does not exist") from None
    except (OSError, RuntimeError):
        raise fail("cannot be resolved (symbolic link loop?)") from None
    if not resolved.is_relative_to(base):
        raise fail(f"resolves to {resolved}, outside {base}; links must stay inside it")
    try:
        st = resolved.stat()
        if not stat.S_ISREG(st.st_mode):
            raise fail(f"is {_describe_mode(st.st_mode)}, not a regular file")
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        raise fail("cannot be read (permission denied)") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror}") from None
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return resolved, size


def _describe_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def read_bounded(path: Path, base: Path, limit: int) -> bytes:
    """Read a small file (a sidecar or tag file) checked like any other, at most `limit` bytes."""
    resolved, size = check_file(path, base)
    if size > limit:
        raise IngestError(str(path), f"is {size} bytes; at most {limit} are accepted")
    try:
        with resolved.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise IngestError(str(path), f"cannot be read: {exc.strerror}") from None
    if len(data) > limit:
        raise IngestError(str(path), f"is over {limit} bytes")
    return data


def collect_files(
    root: Path, base: Path, *, skip_hidden: bool, exclude: frozenset[str] = frozenset()
) -> list[tuple[str, Path, int]]:
    """All regular files below `root` as (NFC relative path, resolved path, size), sorted.

    `exclude` names top-level entries to leave out; `skip_hidden` leaves out names starting
    with '.'. Symbolic links to files are followed if they stay inside `base`; links to folders
    and special files are errors, as are two names equal after NFC normalisation.
    """
    found: dict[str, tuple[Path, int]] = {}
    for rel_parts, path in _walk(root, skip_hidden=skip_hidden, exclude=exclude):
        rel = "/".join(rel_parts)
        split_relpath(rel, str(path))
        key = nfc(rel)
        if key in found:
            raise IngestError(
                str(path), f"has the same name as {found[key][0]} after Unicode normalisation"
            )
        found[key] = check_file(path, base)
        if len(found) > MAX_FILES_PER_RESOURCE:
            raise IngestError(str(root), f"holds over {MAX_FILES_PER_RESOURCE} files")
    return [(rel, src, size) for rel, (src, size) in sorted(found.items())]


def _walk(
    root: Path, *, skip_hidden: bool, exclude: frozenset[str]
) -> Iterator[tuple[list[str], Path]]:
    stack: list[tuple[list[str], Path]] = [([], root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            raise IngestError(str(folder), f"cannot be listed: {exc.strerror}") from None
        for entry in entries:
            if (skip_hidden and entry.name.startswith(".")) or (
                not prefix and entry.name in exclude
            ):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                stack.append(([*prefix, entry.name], path))
            elif entry.is_symlink() and path.is_dir():
                raise IngestError(
                    str(path),
                    "is a symbolic link to a folder, which is not followed; "
                    "replace it by the folder itself",
                )
            else:
                yield [*prefix, entry.name], path


def make_source_file(
    rel: str, resolved: Path, size: int, expected: tuple[tuple[str, str], ...] = ()
) -> SourceFile:
    media_type, _ = mimetypes.guess_type(rel, strict=False)
    return SourceFile(rel, resolved, size, media_type or DEFAULT_MEDIA_TYPE, expected)


def build_resource(
    *,
    label: str,
    builder: DcBuilder,
    fields: RightsFields,
    files: Iterable[SourceFile],
    origin_kind: Literal["file", "folder", "bag", "csv"],
    default_title: str,
) -> SourceResource:
    if not builder.has("title") and default_title:
        builder.add("title", default_title, "", label)
    files = tuple(files)
    if len(files) > MAX_FILES_PER_RESOURCE:
        raise IngestError(label, f"holds over {MAX_FILES_PER_RESOURCE} files")
    return SourceResource(
        label=label,
        dc=builder.freeze(),
        collection=fields.collection,
        access=fields.access,
        embargo_until=fields.embargo_until,
        rights=fields.rights,
        license=fields.license,
        files=files,
        origin_kind=origin_kind,
    )
