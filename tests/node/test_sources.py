"""Tests of ingest input discovery: the four input kinds, their bounds and every rejection."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import IngestError
from node.ingest import sources
from node.ingest.bagit import verify_payload
from node.ingest.sources import LangValue, SourceResource, discover

REPO = Path(__file__).resolve().parents[2]
RIGHTS_INC = "http://rightsstatements.org/vocab/InC/1.0/"
CC_BY = "https://creativecommons.org/licenses/by/4.0/"


# --- fixture helpers ------------------------------------------------------------------------


def write(path: Path, content: str | bytes = "content\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def one(path: Path) -> SourceResource:
    items = list(discover(path))
    assert len(items) == 1
    item = items[0]
    assert isinstance(item, SourceResource), item
    return item


def raises(path: Path) -> IngestError:
    with pytest.raises(IngestError) as info:
        list(discover(path))
    return info.value


def make_bag(
    root: Path,
    payload: dict[str, bytes],
    *,
    info: str = "Bag-Software-Agent: hand-made\n",
    version: str = "1.0",
    algorithms: tuple[str, ...] = ("sha256",),
    tag_manifest: bool = True,
) -> Path:
    """A hand-made BagIt bag, written the way RFC 8493 describes (no bagit library)."""
    root.mkdir(parents=True)
    write(root / "bagit.txt", f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n")
    for rel, content in payload.items():
        write(root / "data" / rel, content)
    (root / "data").mkdir(exist_ok=True)
    oxum = f"Payload-Oxum: {sum(map(len, payload.values()))}.{len(payload)}\n"
    write(root / "bag-info.txt", info + oxum)
    for alg in algorithms:
        lines = [
            f"{hashlib.new(alg, content).hexdigest()}  data/{escape(rel)}\n"
            for rel, content in sorted(payload.items())
        ]
        write(root / f"manifest-{alg}.txt", "".join(lines))
    if tag_manifest:
        write_tag_manifest(root)
    return root


def write_tag_manifest(root: Path, alg: str = "sha256") -> None:
    names = sorted(
        p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("tagmanifest-")
    )
    lines = [f"{hashlib.new(alg, (root / n).read_bytes()).hexdigest()} {n}\n" for n in names]
    write(root / f"tagmanifest-{alg}.txt", "".join(lines))


def escape(rel: str) -> str:
    return rel.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def csv_items(path: Path) -> list[SourceResource | IngestError]:
    return list(discover(path))


def row_error(path: Path, header: str, row: str, line: int = 2) -> IngestError:
    """The error yielded for a single data row placed at `line` (rows before it are blank)."""
    csv_path = write_csv(path, header + "\n" + "\n" * (line - 2) + row + "\n")
    items = csv_items(csv_path)
    assert len(items) == 1
    assert isinstance(items[0], IngestError), items[0]
    assert items[0].source == f"{csv_path}:{line}"
    return items[0]


# --- kind 1: a single file ------------------------------------------------------------------


def test_single_file(tmp_path: Path) -> None:
    scan = write(tmp_path / "县志 卷一.pdf", b"%PDF-1.7\n")
    resource = one(scan)
    assert resource.origin_kind == "file"
    assert resource.label == str(scan)
    assert dict(resource.dc) == {"title": (LangValue("县志 卷一"),)}
    (file,) = resource.files
    assert (file.path, file.source, file.size) == ("县志 卷一.pdf", scan, 9)
    assert file.media_type == "application/pdf"
    assert file.expected == ()
    assert resource.access is resource.rights is resource.collection is None


def test_single_file_unknown_type_is_octet_stream(tmp_path: Path) -> None:
    resource = one(write(tmp_path / "blob.zzzunknown"))
    assert resource.files[0].media_type == "application/octet-stream"


def test_missing_path(tmp_path: Path) -> None:
    error = raises(tmp_path / "nope")
    assert error.source == str(tmp_path / "nope")
    assert "does not exist" in error.detail


def test_special_file_is_rejected(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    error = raises(fifo)
    assert error.source == str(fifo)


# --- kind 2: folder with a sidecar -----------------------------------------------------------


def test_folder_with_metadata_json(tmp_path: Path) -> None:
    folder = tmp_path / "coll"
    write(folder / "scans" / "p002.tif", b"22")
    write(folder / "scans" / "p001.tif", b"1")
    write(folder / "ocr.txt", "text")
    write(folder / ".DS_Store", "hidden")
    write(folder / ".git" / "config", "hidden")
    metadata = {
        "title": [
            {"value": "地方志", "lang": "zh-hans"},
            {"value": "Local gazetteer", "lang": "en"},
        ],
        "creator": "佚名",
        "Subject": ["方志", "历史"],
        "date": "1888",
        "collection": "local-history",
        "access": "Embargoed",
        "embargo_until": "2030-01-01",
        "rights": RIGHTS_INC,
        "license": None,
    }
    write(folder / "metadata.json", json.dumps(metadata, ensure_ascii=False))
    resource = one(folder)
    assert resource.origin_kind == "folder"
    assert resource.label == str(folder)
    assert resource.dc["title"] == (
        LangValue("地方志", "zh-Hans"),
        LangValue("Local gazetteer", "en"),
    )
    assert resource.dc["creator"] == (LangValue("佚名"),)
    assert resource.dc["subject"] == (LangValue("方志"), LangValue("历史"))
    assert list(resource.dc) == ["title", "creator", "subject", "date"]
    assert resource.collection == "local-history"
    assert resource.access == "embargoed"
    assert resource.embargo_until == date(2030, 1, 1)
    assert resource.rights == RIGHTS_INC
    assert resource.license is None
    assert [f.path for f in resource.files] == ["ocr.txt", "scans/p001.tif", "scans/p002.tif"]
    assert [f.size for f in resource.files] == [4, 1, 2]
    assert resource.files[1].media_type == "image/tiff"
    assert all(f.source.is_absolute() for f in resource.files)


def test_folder_with_dc_xml(tmp_path: Path) -> None:
    folder = tmp_path / "item"
    write(folder / "page.jpg", b"jpg")
    write(
        folder / "dc.xml",
        """<?xml version="1.0" encoding="UTF-8"?>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
           xmlns:dc="http://purl.org/dc/elements/1.1/"
           xmlns:dcterms="http://purl.org/dc/terms/" xml:lang="zh">
  <dc:title>四库全书</dc:title>
  <dc:title xml:lang="en">Complete Library of the Four Treasuries</dc:title>
  <dc:creator>纪昀 &amp; others</dc:creator>
  <dc:description>
  </dc:description>
  <dcterms:subject>丛书</dcterms:subject>
  <dcterms:abstract>ignored: not simple DC</dcterms:abstract>
  <dc:rights>http://rightsstatements.org/vocab/NoC-US/1.0/</dc:rights>
  <dc:rights xml:lang="en">Public domain in China</dc:rights>
</oai_dc:dc>
""",
    )
    resource = one(folder)
    assert resource.dc["title"] == (
        LangValue("四库全书", "zh"),
        LangValue("Complete Library of the Four Treasuries", "en"),
    )
    assert resource.dc["creator"] == (LangValue("纪昀 & others", "zh"),)
    assert resource.dc["subject"] == (LangValue("丛书", "zh"),)
    assert "description" not in resource.dc  # empty values are dropped
    assert resource.dc["rights"] == (LangValue("Public domain in China", "en"),)
    assert resource.rights == "http://rightsstatements.org/vocab/NoC-US/1.0/"
    assert [f.path for f in resource.files] == ["page.jpg"]


def test_folder_with_both_sidecars_merges_them(tmp_path: Path) -> None:
    folder = tmp_path / "item"
    write(folder / "a.txt")
    write(folder / "metadata.json", json.dumps({"title": "Same", "access": "open"}))
    write(
        folder / "dc.xml",
        '<r xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Same</dc:title>'
        "<dc:creator>X</dc:creator></r>",
    )
    resource = one(folder)
    assert resource.dc["title"] == (LangValue("Same"),)
    assert resource.dc["creator"] == (LangValue("X"),)
    assert resource.access == "open"


def test_folder_sidecars_with_contradicting_rights(tmp_path: Path) -> None:
    folder = tmp_path / "item"
    write(folder / "a.txt")
    write(folder / "metadata.json", json.dumps({"rights": RIGHTS_INC}))
    xml = write(
        folder / "dc.xml",
        '<r xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:rights>http://rightsstatements.org/vocab/NoC-US/1.0/</dc:rights></r>",
    )
    error = raises(folder)
    assert error.source == str(xml)
    assert "contradicts" in error.detail


def test_dc_xml_rights_page_url_is_not_a_statement(tmp_path: Path) -> None:
    folder = tmp_path / "item"
    write(folder / "a.txt")
    write(
        folder / "dc.xml",
        '<r xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:rights>https://rightsstatements.org/page/InC/1.0/</dc:rights></r>",
    )
    assert "not a RightsStatements.org URI" in raises(folder).detail


def test_folder_file_count_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_FILES_PER_RESOURCE", 2)
    folder = tmp_path / "item"
    write(folder / "metadata.json", "{}")
    for name in ("a", "b", "c"):
        write(folder / name)
    error = raises(folder)
    assert error.source == str(folder)
    assert "over 2 files" in error.detail


def test_folder_without_title_uses_folder_name(tmp_path: Path) -> None:
    folder = tmp_path / "Box 12"
    write(folder / "a.txt")
    write(folder / "metadata.json", json.dumps({"creator": "Someone"}))
    assert one(folder).dc["title"] == (LangValue("Box 12"),)


def test_folder_without_sidecar(tmp_path: Path) -> None:
    write(tmp_path / "plain" / "a.txt")
    error = raises(tmp_path / "plain")
    assert error.source == str(tmp_path / "plain")
    for form in ("metadata.json", "dc.xml", "bagit.txt", ".csv"):
        assert form in error.detail


def test_metadata_json_unknown_key(tmp_path: Path) -> None:
    write(tmp_path / "f" / "a.txt")
    sidecar = write(tmp_path / "f" / "metadata.json", json.dumps({"title": "T", "titel": "x"}))
    error = raises(tmp_path / "f")
    assert error.source == str(sidecar)
    assert "'titel'" in error.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"title": "a", "Title": "b"}', "appears twice"),
        ('{"title": "a",\n "creator": }', "not valid JSON"),
        ('["title"]', "JSON object"),
        ('{"date": 1888}', "as strings"),
        ('{"title": {"value": "x", "language": "zh"}}', "string members"),
        ('{"access": "public"}', "not one of"),
        ('{"embargo_until": "2030-01-01"}', "not embargoed"),
        ('{"title": "\\u0007bell"}', "U+0007"),
        ('{"title": {"value": "x", "lang": "zh_CN"}}', "language tag"),
    ],
)
def test_metadata_json_rejections(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path / "f" / "a.txt")
    sidecar = write(tmp_path / "f" / "metadata.json", text)
    error = raises(tmp_path / "f")
    assert error.source.startswith(str(sidecar))
    assert expected in error.detail


def test_metadata_json_size_bound(tmp_path: Path) -> None:
    write(tmp_path / "f" / "a.txt")
    write(tmp_path / "f" / "metadata.json", '{"title": "' + "x" * (1024 * 1024) + '"}')
    error = raises(tmp_path / "f")
    assert error.source == str(tmp_path / "f" / "metadata.json")
    assert "at most" in error.detail


def test_dc_xml_doctype_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "f" / "a.txt")
    sidecar = write(
        tmp_path / "f" / "dc.xml",
        '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x "boom">]>\n'
        '<r xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&x;</dc:title></r>',
    )
    error = raises(tmp_path / "f")
    assert error.source == str(sidecar)
    assert "DOCTYPE" in error.detail


def test_dc_xml_malformed_names_line(tmp_path: Path) -> None:
    write(tmp_path / "f" / "a.txt")
    sidecar = write(tmp_path / "f" / "dc.xml", "<r>\n<a>\n</r>\n")
    error = raises(tmp_path / "f")
    assert error.source == f"{sidecar}:3"


def test_dc_xml_unknown_dc_element(tmp_path: Path) -> None:
    write(tmp_path / "f" / "a.txt")
    write(
        tmp_path / "f" / "dc.xml",
        '<r xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:titel>x</dc:titel></r>',
    )
    assert "<titel>" in raises(tmp_path / "f").detail


def test_folder_symlink_out_is_rejected(tmp_path: Path) -> None:
    outside = write(tmp_path / "secret.txt")
    folder = tmp_path / "f"
    write(folder / "metadata.json", "{}")
    (folder / "link.txt").symlink_to(outside)
    error = raises(folder)
    assert error.source == str(folder / "link.txt")
    assert "outside" in error.detail


def test_folder_symlink_inside_is_followed(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    write(folder / "metadata.json", "{}")
    target = write(folder / "real.txt", "abc")
    (folder / "alias.txt").symlink_to("real.txt")
    resource = one(folder)
    assert [(f.path, f.source) for f in resource.files] == [
        ("alias.txt", target),
        ("real.txt", target),
    ]


def test_folder_dangling_symlink_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    write(folder / "metadata.json", "{}")
    (folder / "gone.tif").symlink_to(folder / "missing.tif")
    error = raises(folder)
    assert error.source == str(folder / "gone.tif")
    assert "does not exist" in error.detail


def test_folder_link_to_folder_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    write(folder / "metadata.json", "{}")
    write(folder / "sub" / "a.txt")
    (folder / "again").symlink_to(folder / "sub")
    error = raises(folder)
    assert error.source == str(folder / "again")


def test_folder_fifo_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    write(folder / "metadata.json", "{}")
    os.mkfifo(folder / "pipe")
    error = raises(folder)
    assert error.source == str(folder / "pipe")
    assert "named pipe" in error.detail


def test_folder_names_equal_after_nfc_are_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    write(folder / "metadata.json", "{}")
    write(folder / "caf\u00e9.txt")
    write(folder / "cafe\u0301.txt")
    error = raises(folder)
    assert "normalisation" in error.detail


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """A file without read permission. Root ignores permissions, so as root the check runs in a
    child process whose capability bounding set lacks CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH."""
    folder = tmp_path / "f"
    write(folder / "metadata.json", "{}")
    locked = write(folder / "locked.tif")
    locked.chmod(0)
    code = (
        "import sys; from pathlib import Path; from node.ingest.sources import discover\n"
        "from node.errors import IngestError\n"
        "try:\n    list(discover(Path(sys.argv[1])))\n"
        "except IngestError as e:\n    print(e.source); print(e.detail)\n"
    )
    command = [sys.executable, "-c", code, str(folder)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *command]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    source, detail = result.stdout.splitlines()
    assert source == str(locked)
    assert "permission denied" in detail


# --- kind 3: BagIt bags ---------------------------------------------------------------------


def test_bag_made_with_bagit_library(tmp_path: Path) -> None:
    bagit = pytest.importorskip("bagit")
    folder = tmp_path / "gazetteer"
    write(folder / "vol1" / "p001.tif", b"page one")
    write(folder / "vol1" / "p002.tif", b"page two!")
    write(folder / "说明.txt", "中文说明")
    bagit.make_bag(
        str(folder),
        {
            "DC-Title": "嘉靖县志",
            "DC-Creator": "佚名",
            "DC-Subject": "方志",
            "External-Description": "Digitised 2024",
            "External-Identifier": "ark:/13030/xf93gt2q",
            "Source-Organization": "某县图书馆",
        },
        checksums=["sha256", "sha512"],
    )
    resource = one(folder)
    assert resource.origin_kind == "bag"
    assert resource.label == str(folder)
    assert resource.dc["title"] == (LangValue("嘉靖县志"),)
    assert resource.dc["creator"] == (LangValue("佚名"),)
    assert resource.dc["subject"] == (LangValue("方志"),)
    assert resource.dc["description"] == (LangValue("Digitised 2024"),)
    assert resource.dc["identifier"] == (LangValue("ark:/13030/xf93gt2q"),)
    assert resource.dc["publisher"] == (LangValue("某县图书馆"),)
    assert len(resource.dc["date"]) == 1  # from Bagging-Date
    assert [f.path for f in resource.files] == ["vol1/p001.tif", "vol1/p002.tif", "说明.txt"]
    first = resource.files[0]
    assert first.source == folder / "data" / "vol1" / "p001.tif"
    assert first.expected == (
        ("sha512", hashlib.sha512(b"page one").hexdigest()),
        ("sha256", hashlib.sha256(b"page one").hexdigest()),
    )
    verify_payload(resource)


def test_hand_made_bag(tmp_path: Path) -> None:
    bag = make_bag(
        tmp_path / "bag",
        {"a.txt": b"alpha", "sub/100% done.txt": b"pct", "图/页.png": b"png"},
        info="DC-Title: 手工\r\nDC-Description: first line\r\n  continued here\r\n"
        "Bagging-Date: 2024-05-01\r\nDC-Date: 1930\r\n"
        f"dc-rights: {RIGHTS_INC}\r\nDC-Rights: Copyright the library\r\n",
        algorithms=("md5", "sha256"),
    )
    write(bag / "manifest-blake3.txt", "ignored because a known algorithm exists\n")
    write(
        bag / "metadata" / "dc.xml",
        '<m xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<dc:title xml:lang="en">Hand made</dc:title></m>',
    )
    resource = one(bag)
    assert resource.dc["title"] == (LangValue("手工"), LangValue("Hand made", "en"))
    assert resource.dc["description"] == (LangValue("first line continued here"),)
    assert resource.dc["date"] == (LangValue("1930"),)  # DC-Date wins over Bagging-Date
    assert resource.rights == RIGHTS_INC
    assert resource.dc["rights"] == (LangValue("Copyright the library"),)
    assert [f.path for f in resource.files] == ["a.txt", "sub/100% done.txt", "图/页.png"]
    assert [alg for alg, _ in resource.files[0].expected] == ["sha256", "md5"]
    verify_payload(resource)


def test_bag_without_title_uses_folder_name(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "MS 42", {"a.txt": b"a"}, version="0.97")
    assert one(bag).dc["title"] == (LangValue("MS 42"),)


def test_bag_empty_payload_is_a_catalogue_record(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "empty", {})
    assert one(bag).files == ()


def test_bag_without_data_folder(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, tag_manifest=False)
    shutil.rmtree(bag / "data")
    error = raises(bag)
    assert error.source == str(bag / "data")


def test_bag_missing_payload_file(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a", "b.txt": b"b"}, tag_manifest=False)
    (bag / "data" / "b.txt").unlink()
    error = raises(bag)
    assert error.source == f"{bag / 'manifest-sha256.txt'}:2"
    assert "data/b.txt" in error.detail


def test_bag_extra_unlisted_file(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    write(bag / "data" / "stray.txt")
    error = raises(bag)
    assert error.source == str(bag / "data" / "stray.txt")
    assert "manifest-sha256.txt" in error.detail


@pytest.mark.parametrize("listed", ["data/../bagit.txt", "/etc/passwd", "../outside.txt"])
def test_bag_manifest_path_escaping(tmp_path: Path, listed: str) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, tag_manifest=False)
    with (bag / "manifest-sha256.txt").open("a") as manifest:
        manifest.write(f"{'0' * 64}  {listed}\n")
    error = raises(bag)
    assert error.source == f"{bag / 'manifest-sha256.txt'}:2"


def test_bag_manifest_entry_outside_data(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, tag_manifest=False)
    with (bag / "manifest-sha256.txt").open("a") as manifest:
        manifest.write(f"{hashlib.sha256(b'x').hexdigest()}  bag-info.txt\n")
    error = raises(bag)
    assert error.source == f"{bag / 'manifest-sha256.txt'}:2"
    assert "outside data/" in error.detail


def test_bag_symlink_escaping_data(tmp_path: Path) -> None:
    outside = write(tmp_path / "secret.txt", "s")
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    (bag / "data" / "link.txt").symlink_to(outside)
    error = raises(bag)
    assert error.source == str(bag / "data" / "link.txt")
    assert "outside" in error.detail


def test_bag_bad_payload_oxum(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, tag_manifest=False)
    write(bag / "bag-info.txt", "DC-Title: x\nPayload-Oxum: 99.1\n")
    error = raises(bag)
    assert error.source == f"{bag / 'bag-info.txt'}:2"
    assert "99 octets" in error.detail


def test_bag_fetch_txt_is_refused(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    write(bag / "fetch.txt", "https://example.org/b.tif 10 data/b.tif\n")
    error = raises(bag)
    assert error.source == str(bag / "fetch.txt")
    assert "does not fetch" in error.detail


def test_bag_empty_fetch_txt_is_fine(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    write(bag / "fetch.txt", "\n")
    assert one(bag).origin_kind == "bag"


@pytest.mark.parametrize(
    ("declaration", "expected"),
    [
        ("BagIt-Version: 2.0\nTag-File-Character-Encoding: UTF-8\n", "not supported"),
        ("BagIt-Version: 1.0\n", "exactly two lines"),
        ("Tag-File-Character-Encoding: UTF-8\nBagIt-Version 1.0\n", "Label: value"),
        ("BagIt-Version: 1.0\nTag-File-Character-Encoding: ISO-8859-1\n", "only UTF-8"),
        ("\ufeffBagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", "byte-order mark"),
    ],
)
def test_bag_bad_declaration(tmp_path: Path, declaration: str, expected: str) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, tag_manifest=False)
    write(bag / "bagit.txt", declaration)
    error = raises(bag)
    assert error.source.startswith(str(bag / "bagit.txt"))
    assert expected in error.detail


def test_bag_tag_manifest_mismatch(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, info="DC-Title: before\n")
    write(bag / "bag-info.txt", "DC-Title: edited after bagging\n")
    error = raises(bag)
    assert error.source == str(bag / "bag-info.txt")
    assert "tagmanifest-sha256.txt" in error.detail


def test_bag_without_known_manifest(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, tag_manifest=False)
    (bag / "manifest-sha256.txt").rename(bag / "manifest-sha3-256.txt")
    error = raises(bag)
    assert error.source == str(bag)
    assert "manifest-sha3-256.txt" in error.detail


def test_bag_bad_manifest_line(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, tag_manifest=False)
    write(bag / "manifest-sha256.txt", "nothex  data/a.txt\n")
    assert raises(bag).source == f"{bag / 'manifest-sha256.txt'}:1"


def test_bag_unknown_dc_label(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, info="DC-Titel: x\n", tag_manifest=False)
    error = raises(bag)
    assert error.source == f"{bag / 'bag-info.txt'}:1"


def test_verify_payload_mismatch(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a", "b.txt": b"b"})
    resource = one(bag)
    write(bag / "data" / "b.txt", b"B")  # damaged after discovery, same size
    with pytest.raises(IngestError) as info:
        verify_payload(resource)
    assert info.value.source == str(bag / "data" / "b.txt")
    assert "does not match" in info.value.detail


# --- kind 4: CSV ----------------------------------------------------------------------------


def test_csv_happy_path(tmp_path: Path) -> None:
    write(tmp_path / "scans" / "item1" / "p1.tif", b"11")
    write(tmp_path / "scans" / "item1" / "p2.tif", b"2")
    write(tmp_path / "scans" / "item2" / "master" / "0001.tif", b"m")
    write(tmp_path / "scans" / "item2" / "access" / "0001.jpg", b"a")
    csv_path = write_csv(
        tmp_path / "collection.csv",
        "\ufeffTitle@ZH,title@en,Creator,subject,access,embargo_until,rights,license,"
        "collection,files\n"
        "地方志,Local gazetteer,佚名 || 纪昀 ||,方志,open,,"
        f"{RIGHTS_INC},{CC_BY},local,scans/item1/p1.tif || ./scans/item1/p2.tif\n"
        "\n"
        ",,,,,,,,,\n"
        '"多行\n标题",,,,embargoed,2031-12-31,,,,scans/item2/master/0001.tif||'
        "scans/item2/access/0001.jpg\n"
        "Catalogue only,,,,,,,,,\n",
    )
    items = csv_items(csv_path)
    assert all(isinstance(item, SourceResource) for item in items), items
    first, second, third = (item for item in items if isinstance(item, SourceResource))
    assert first.label == f"{csv_path}:2"
    assert first.origin_kind == "csv"
    assert first.dc["title"] == (LangValue("地方志", "zh"), LangValue("Local gazetteer", "en"))
    assert first.dc["creator"] == (LangValue("佚名"), LangValue("纪昀"))
    assert (first.access, first.rights, first.license, first.collection) == (
        "open",
        RIGHTS_INC,
        CC_BY,
        "local",
    )
    assert [(f.path, f.size) for f in first.files] == [("p1.tif", 2), ("p2.tif", 1)]
    assert first.files[0].source == tmp_path / "scans" / "item1" / "p1.tif"
    assert second.label == f"{csv_path}:5"  # blank rows skipped, line numbers kept
    assert second.dc["title"] == (LangValue("多行\n标题", "zh"),)
    assert second.embargo_until == date(2031, 12, 31)
    assert [f.path for f in second.files] == ["master/0001.tif", "access/0001.jpg"]
    assert third.label == f"{csv_path}:7"
    assert third.files == ()


def test_csv_bad_rows_are_yielded_and_others_kept(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "c.csv", "title,access\nGood,open\nBad,public\nAlso good,\n,open\n"
    )
    items = csv_items(csv_path)
    assert [type(item).__name__ for item in items] == [
        "SourceResource",
        "IngestError",
        "SourceResource",
        "IngestError",
    ]
    bad, no_title = items[1], items[3]
    assert isinstance(bad, IngestError) and isinstance(no_title, IngestError)
    assert bad.source == f"{csv_path}:3"
    assert "public" in bad.detail
    assert no_title.source == f"{csv_path}:5"
    assert "no title" in no_title.detail


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        ("title,creator", ",someone", "no title"),
        ("title,access", "T,public", "not one of"),
        ("title,access", "T,embargoed", "embargo_until"),
        ("title,access,embargo_until", "T,open,2030-01-01", "not embargoed"),
        ("title,access,embargo_until", "T,embargoed,2030-02-30", "YYYY-MM-DD"),
        ("title,access,embargo_until", "T,embargoed,2030/01/01", "YYYY-MM-DD"),
        ("title,rights", "T,http://rightsstatements.org/vocab/Free/1.0/", "RightsStatements"),
        ("title,rights", "T,https://rightsstatements.org/page/InC/1.0/", "RightsStatements"),
        ("title,license", "T,creativecommons by", "absolute http(s) URI"),
        ("title,collection", "T,a||b", "one value"),
        ("title,files", "T,missing.tif", "does not exist"),
        ("title,files", "T,../outside.tif", "'..'"),
        ("title,files", "T,/etc/passwd", "absolute"),
        ("title,files", "T,C:\\scans\\a.tif", "absolute"),
        ("title,files", "T,a.tif||a.tif", "listed twice"),
        ("title,creator", "T,a,extra", "3 cells"),
        ("title,creator", "T", "1 cells"),
        ("title", '"bell\x07"', "U+0007"),
    ],
)
def test_csv_row_errors(tmp_path: Path, header: str, row: str, expected: str) -> None:
    write(tmp_path / "a.tif")
    error = row_error(tmp_path / "c.csv", header, row, line=3)
    assert expected in error.detail


def test_csv_value_size_bound(tmp_path: Path) -> None:
    error = row_error(tmp_path / "c.csv", "title,description", "T," + "长" * 30_000)
    assert "description: value is over 64 KiB" in error.detail


def test_csv_row_count_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_CSV_ROWS", 2)
    csv_path = write_csv(tmp_path / "c.csv", "title\na\n\nb\n")
    assert len(csv_items(csv_path)) == 2  # blank rows do not count
    write_csv(csv_path, "title\na\nb\nc\n")
    error = raises(csv_path)
    assert error.source == str(csv_path)
    assert "over 2 rows" in error.detail


def test_csv_field_size_bound_raises(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "c.csv", 'title,description\nok,\nT,"' + "x" * (1024 * 1024 + 1) + '"\n'
    )
    error = raises(csv_path)
    assert error.source == f"{csv_path}:3"
    assert "field larger than field limit" in error.detail


def test_csv_row_symlink_out(tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere" / "secret.tif")
    write(tmp_path / "coll" / "ok.tif")
    (tmp_path / "coll" / "link.tif").symlink_to(outside)
    error = row_error(tmp_path / "coll" / "c.csv", "title,files", "T,ok.tif||link.tif")
    assert "link.tif" in error.detail
    assert "outside" in error.detail


def test_csv_row_folder_where_file_expected(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    error = row_error(tmp_path / "c.csv", "title,files", "T,scans")
    assert "is a folder, not a regular file" in error.detail


def test_csv_row_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    error = row_error(tmp_path / "c.csv", "title,files", "T,gone.tif")
    assert "gone.tif" in error.detail
    assert "does not exist" in error.detail


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("title,titel", "'titel'"),
        ("title,Title", "appears twice"),
        ("title@zh,title@ZH", "appears twice"),
        ("title,,creator", "column 2 has no name"),
        ("creator,files", "title column"),
        ("title,access@en", "no @language"),
        ("title@zh_CN", "language tag"),
        ("title,rights@en", "no @language"),
    ],
)
def test_csv_bad_header_raises(tmp_path: Path, header: str, expected: str) -> None:
    csv_path = write_csv(tmp_path / "c.csv", header + "\nx,y,z\n")
    error = raises(csv_path)
    assert error.source == f"{csv_path}:1"
    assert expected in error.detail


def test_csv_gbk_encoded(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "title,creator\nTitle,x\n县志,佚名\n", "gbk")
    error = raises(csv_path)
    assert error.source == f"{csv_path}:3"
    assert "GB18030" in error.detail
    assert "line 3" in error.detail


def test_csv_invalid_bytes_not_gbk(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "title\nok\n")
    with csv_path.open("ab") as handle:
        handle.write(b"bad \xff\xff\n")
    error = raises(csv_path)
    assert error.source == f"{csv_path}:3"
    assert "GB18030" not in error.detail


def test_csv_utf8_character_split_across_read_chunks(tmp_path: Path) -> None:
    # A valid multi-byte character straddling the 1 MiB read boundary, then a bad byte.
    prefix = "title\n" + "x" * (1024 * 1024 - 7) + "\n"
    csv_path = write_csv(tmp_path / "c.csv", prefix + "县\n")
    with csv_path.open("ab") as handle:
        handle.write(b"\xff\n")
    error = raises(csv_path)
    assert error.source == f"{csv_path}:4"


def test_csv_utf16_is_explained(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "\ufefftitle\n县志\n", "utf-16")
    assert "UTF-16" in raises(csv_path).detail


def test_csv_malformed_quoting_raises(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", 'title\nok\n"a"b\n')
    error = raises(csv_path)
    assert error.source == f"{csv_path}:3"


def test_csv_empty_file(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "c.csv", "")
    assert raises(csv_path).source == f"{csv_path}:1"


def test_csv_structural_errors_raise_before_any_row(tmp_path: Path) -> None:
    # Rows 2..3 are fine, but the file is broken at line 4: nothing may be yielded first.
    csv_path = write_csv(tmp_path / "c.csv", "title\nA\nB\n")
    with csv_path.open("ab") as handle:
        handle.write("县\n".encode("gbk"))
    with pytest.raises(IngestError):
        discover(csv_path)  # raised by the call itself, not while iterating


# --- properties -----------------------------------------------------------------------------


@given(st.text(max_size=40))
def test_split_relpath_only_returns_safe_relative_parts(raw: str) -> None:
    try:
        parts = sources.split_relpath(raw, "test")
    except IngestError:
        return
    assert parts
    for part in parts:
        assert part not in ("", ".", "..")
        assert "/" not in part and "\\" not in part
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in part)
    assert not raw.startswith("/")


@given(st.from_regex(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}", fullmatch=True))
def test_normalise_lang_is_idempotent(tag: str) -> None:
    once = sources.normalise_lang(tag, "test")
    assert once.lower() == tag.lower()
    assert sources.normalise_lang(once, "test") == once
