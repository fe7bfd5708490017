"""BagIt bags (RFC 8493, versions 1.0 and 0.97): validate a bag's structure and describe it.

`read_bag` does every check that is cheap: the bag declaration, fetch.txt, bag-info.txt,
completeness of every payload manifest in both directions, paths confined to data/, the
Payload-Oxum, and the tag manifests (tag files are small, so they are hashed here). Payload
checksums are *not* computed: each `SourceFile.expected` carries the manifests' digests,
strongest first, for the ingest pipeline to check while it hashes the file anyway (one read per
file). `verify_payload` does that check on its own, for a standalone verification and tests.

Metadata: bag-info.txt labels map to Dublin Core (`Title`/`DC-Title` → title,
`External-Description` → description, `External-Identifier` → identifier, `Source-Organization`
→ publisher, any `DC-<Element>` → that element, `Bagging-Date` → date when no other date is
given), merged with a `dc.xml` tag file at the bag's top or in `metadata/dc.xml`.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from node.errors import IngestError
from node.ingest.sources import (
    DC_ELEMENTS,
    DcBuilder,
    RightsFields,
    SourceResource,
    build_resource,
    check_file,
    collect_files,
    make_source_file,
    nfc,
    read_bounded,
    read_dc_xml,
    split_relpath,
)

__all__ = [
    "ALGORITHMS",
    "BAGIT_VERSIONS",
    "MAX_MANIFEST_BYTES",
    "MAX_TAG_FILE_BYTES",
    "read_bag",
    "verify_payload",
]

ALGORITHMS = ("sha512", "sha256", "sha1", "md5")  # the ones checked, strongest first
BAGIT_VERSIONS = ("1.0", "0.97")
MAX_TAG_FILE_BYTES = 1024 * 1024  # bagit.txt, bag-info.txt, fetch.txt
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # 100,000 files × sha512 lines fit comfortably
HASH_CHUNK_BYTES = 1024 * 1024

_HEX_LENGTH = {"sha512": 128, "sha256": 64, "sha1": 40, "md5": 32}
_MANIFEST_NAME = re.compile(r"(tag)?manifest-([A-Za-z0-9-]+)\.txt")
_LINE_END = re.compile(r"\r\n|\r|\n")
_HEX = re.compile(r"[0-9a-f]+")
_PERCENT = re.compile(r"%(0[AaDd]|25)")  # the only escapes RFC 8493 defines for manifest paths
_OXUM = re.compile(r"([0-9]+)\.([0-9]+)")
_BAG_INFO_DC = {
    "title": "title",
    "external-description": "description",
    "external-identifier": "identifier",
    "source-organization": "publisher",
}
_DC_XML_TAG_FILES = ("dc.xml", "metadata/dc.xml")


@dataclass(frozen=True)
class _Label:
    name: str  # lower-case
    value: str
    line: int


def read_bag(bag: Path) -> SourceResource:
    """Validate the bag folder `bag` and describe its payload as one resource."""
    root = bag.resolve(strict=True)
    _read_declaration(bag, root)
    _reject_fetch(bag, root)
    info_path = bag / "bag-info.txt"
    info = _read_labels(info_path, root) if os.path.lexists(info_path) else []
    payload_manifests, tag_manifests = _find_manifests(bag)

    data = bag / "data"
    if data.is_symlink() or not data.is_dir():
        raise IngestError(str(data), "a bag needs a data/ folder (not a link) holding its payload")
    payload = {
        f"data/{rel}": (src, size)
        for rel, src, size in collect_files(data, root / "data", skip_hidden=False)
    }
    expected: dict[str, list[tuple[str, str]]] = {rel: [] for rel in payload}
    for alg, manifest in payload_manifests:
        for rel, digest in _check_completeness(bag, root, alg, manifest, payload):
            expected[rel].append((alg, digest))
    _check_oxum(info_path, info, payload.values())
    for alg, manifest in tag_manifests:
        _check_tag_manifest(bag, root, alg, manifest)

    builder = _bag_metadata(bag, root, info_path, info)
    strength = {alg: i for i, alg in enumerate(ALGORITHMS)}
    files = [
        make_source_file(
            rel.removeprefix("data/"),
            src,
            size,
            tuple(sorted(expected[rel], key=lambda pair: strength[pair[0]])),
        )
        for rel, (src, size) in payload.items()
    ]
    return build_resource(
        label=str(bag),
        builder=builder,
        fields=RightsFields().with_rights(builder.rights_uri, str(bag)),
        files=files,
        origin_kind="bag",
        default_title=nfc(bag.name),
    )


def _bag_metadata(bag: Path, root: Path, info_path: Path, info: list[_Label]) -> DcBuilder:
    """Dublin Core from bag-info.txt labels, merged with dc.xml / metadata/dc.xml if present."""
    builder = DcBuilder()
    for label in info:
        element = label.name[3:] if label.name.startswith("dc-") else _BAG_INFO_DC.get(label.name)
        if label.name.startswith("dc-") and element not in DC_ELEMENTS:
            raise IngestError(
                f"{info_path}:{label.line}", f"DC-{element} is not a Dublin Core element label"
            )
        if element is not None:
            builder.add(element, label.value, "", f"{info_path}:{label.line}")
    for name in _DC_XML_TAG_FILES:
        if os.path.lexists(bag / name):
            read_dc_xml(bag / name, root, builder)
    if not builder.has("date"):
        for label in info:
            if label.name == "bagging-date":
                builder.add("date", label.value, "", f"{info_path}:{label.line}")
    return builder


def verify_payload(resource: SourceResource) -> None:
    """Hash every file that has expected digests; raise IngestError naming the first mismatch."""
    for file in resource.files:
        if not file.expected:
            continue
        actual = _digest_file(file.source, [alg for alg, _ in file.expected], str(file.source))
        for alg, digest in file.expected:
            if actual[alg] != digest:
                raise IngestError(
                    str(file.source),
                    f"{alg} checksum does not match the bag manifest (expected {digest}, "
                    f"found {actual[alg]}); the file changed or was damaged after bagging",
                )


# --- tag files ------------------------------------------------------------------------------


def _read_declaration(bag: Path, root: Path) -> None:
    path = bag / "bagit.txt"
    data = read_bounded(path, root, MAX_TAG_FILE_BYTES)
    if data.startswith(codecs.BOM_UTF8):
        raise IngestError(str(path), "must not start with a byte-order mark (RFC 8493 §2.1.1)")
    labels = {label.name: label for label in _parse_labels(_decode(path, data), path)}
    version = labels.pop("bagit-version", None)
    encoding = labels.pop("tag-file-character-encoding", None)
    if version is None or encoding is None or labels:
        raise IngestError(
            str(path),
            "must hold exactly two lines: 'BagIt-Version: 1.0' and "
            "'Tag-File-Character-Encoding: UTF-8'",
        )
    if version.value not in BAGIT_VERSIONS:
        raise IngestError(
            f"{path}:{version.line}",
            f"BagIt-Version {version.value!r} is not supported ({' or '.join(BAGIT_VERSIONS)})",
        )
    if encoding.value.upper() not in ("UTF-8", "UTF8"):
        raise IngestError(
            f"{path}:{encoding.line}",
            f"Tag-File-Character-Encoding {encoding.value!r} is not supported; only UTF-8 tag "
            "files are accepted: re-create the bag with UTF-8 tag files",
        )


def _reject_fetch(bag: Path, root: Path) -> None:
    path = bag / "fetch.txt"
    if os.path.lexists(path) and read_bounded(path, root, MAX_TAG_FILE_BYTES).strip():
        raise IngestError(
            str(path),
            "this bag lists remote files to fetch; siku does not fetch remote files. Download "
            "them into data/ (e.g. with your bagging tool), delete fetch.txt and ingest again",
        )


def _read_labels(path: Path, root: Path) -> list[_Label]:
    data = read_bounded(path, root, MAX_TAG_FILE_BYTES)
    return _parse_labels(_decode(path, data.removeprefix(codecs.BOM_UTF8)), path)


def _parse_labels(text: str, path: Path) -> list[_Label]:
    """`Label: value` lines; a line starting with a space or tab continues the previous value."""
    labels: list[_Label] = []
    for number, line in enumerate(_LINE_END.split(text), start=1):
        if not line.strip():
            continue
        if line[0] in " \t":
            if not labels:
                raise IngestError(f"{path}:{number}", "starts with a continuation line")
            last = labels[-1]
            labels[-1] = _Label(last.name, f"{last.value} {line.strip()}", last.line)
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise IngestError(f"{path}:{number}", "expected 'Label: value'")
        labels.append(_Label(name.strip().lower(), value.strip(), number))
    return labels


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IngestError(f"{path}:{line}", "is not valid UTF-8") from None


def _check_oxum(info_path: Path, info: list[_Label], payload: Iterable[tuple[Path, int]]) -> None:
    oxums = [label for label in info if label.name == "payload-oxum"]
    if not oxums:
        return
    where = f"{info_path}:{oxums[-1].line}"
    match = _OXUM.fullmatch(oxums[0].value)
    if len(oxums) > 1 or match is None:
        raise IngestError(where, "Payload-Oxum must appear once, as <octets>.<file count>")
    sizes = [size for _, size in payload]
    octets, count = int(match.group(1)), int(match.group(2))
    if (octets, count) != (sum(sizes), len(sizes)):
        raise IngestError(
            where,
            f"Payload-Oxum says {octets} octets in {count} files but data/ holds "
            f"{sum(sizes)} octets in {len(sizes)} files; the bag is incomplete or was changed",
        )


# --- manifests ------------------------------------------------------------------------------


def _find_manifests(bag: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    payload: list[tuple[str, Path]] = []
    tag: list[tuple[str, Path]] = []
    unknown: list[str] = []
    try:
        names = sorted(os.listdir(bag))
    except OSError as exc:
        raise IngestError(str(bag), f"cannot be listed: {exc.strerror}") from None
    for name in names:
        match = _MANIFEST_NAME.fullmatch(name)
        if match is None:
            continue
        alg = match.group(2).lower()
        if alg not in _HEX_LENGTH:
            unknown.append(name)
            continue
        (tag if match.group(1) else payload).append((alg, bag / name))
    if not payload:
        found = f" (found only {', '.join(unknown)})" if unknown else ""
        raise IngestError(
            str(bag),
            f"a bag needs a payload manifest: manifest-<alg>.txt with alg one of "
            f"{', '.join(ALGORITHMS)}{found}",
        )
    return payload, tag


def _parse_manifest(path: Path, root: Path, alg: str) -> dict[str, tuple[str, int]]:
    """`<checksum> <path>` lines → {NFC path relative to the bag: (lowercase digest, line)}."""
    data = read_bounded(path, root, MAX_MANIFEST_BYTES)
    entries: dict[str, tuple[str, int]] = {}
    text = _decode(path, data.removeprefix(codecs.BOM_UTF8))
    for number, line in enumerate(_LINE_END.split(text), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split(maxsplit=1)
        digest = fields[0].lower()
        if len(fields) != 2 or len(digest) != _HEX_LENGTH[alg] or not _HEX.fullmatch(digest):
            raise IngestError(where, f"expected '<{alg} checksum in hex> <path>'")
        decoded = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), fields[1])
        rel = nfc("/".join(split_relpath(decoded, where, what=repr(decoded))))
        if rel in entries:
            raise IngestError(where, f"{rel} is listed twice (line {entries[rel][1]})")
        entries[rel] = (digest, number)
    return entries


def _check_completeness(
    bag: Path, root: Path, alg: str, manifest: Path, payload: dict[str, tuple[Path, int]]
) -> list[tuple[str, str]]:
    """Every payload file is listed and every listed file exists; returns (path, digest)."""
    entries = _parse_manifest(manifest, root, alg)
    for rel, (_, line) in entries.items():
        if not rel.startswith("data/"):
            raise IngestError(
                f"{manifest}:{line}", f"{rel} is outside data/; payload files live in data/"
            )
        if rel not in payload:
            raise IngestError(
                f"{manifest}:{line}", f"lists {rel}, which is not in the bag (missing file)"
            )
    for rel in payload:
        if rel not in entries:
            raise IngestError(
                str(bag.joinpath(*rel.split("/"))),
                f"is in data/ but not listed in {manifest.name}; the bag is not complete "
                "(remove the file or re-create the bag)",
            )
    return [(rel, digest) for rel, (digest, _) in entries.items()]


def _check_tag_manifest(bag: Path, root: Path, alg: str, manifest: Path) -> None:
    for rel, (digest, line) in _parse_manifest(manifest, root, alg).items():
        where = f"{manifest}:{line}"
        if rel == "data" or rel.startswith("data/"):
            raise IngestError(where, f"{rel}: a tag manifest lists tag files, not payload")
        target = bag.joinpath(*rel.split("/"))
        resolved, _ = check_file(target, root, source=where, shown=rel)
        actual = _digest_file(resolved, [alg], str(target))[alg]
        if actual != digest:
            raise IngestError(
                str(target),
                f"{alg} checksum does not match {manifest.name} (expected {digest}, found "
                f"{actual}); the tag file changed after bagging",
            )


def _digest_file(path: Path, algorithms: Iterable[str], source: str) -> dict[str, str]:
    hashers = {alg: hashlib.new(alg, usedforsecurity=False) for alg in algorithms}
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                for hasher in hashers.values():
                    hasher.update(chunk)
    except OSError as exc:
        raise IngestError(source, f"cannot be read: {exc.strerror}") from None
    return {alg: hasher.hexdigest() for alg, hasher in hashers.items()}
