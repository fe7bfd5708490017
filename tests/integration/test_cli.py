"""The `siku` CLI end to end, as an admin or a librarian uses it: init, ingest, get, search."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import bagit

from tests.conftest import SikuRunner
from tests.integration.check_store import audit, record_count

EX_DATAERR = 65
EX_CONFIG = 78


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _results(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# --- init ---------------------------------------------------------------------------------------


def test_init_writes_config_keys_and_store(home: Path) -> None:
    config = tomllib.loads((home / "node.toml").read_text(encoding="utf-8"))
    assert config["node"]["tier"] == "county" and config["node"]["code"] == "620982"
    for secret in ("keys/node.key", "keys/admin.token"):
        mode = stat.S_IMODE((home / secret).stat().st_mode)
        assert mode == 0o600, f"{secret} has mode {oct(mode)}"
    assert (home / "store" / "catalogue.db").exists()
    # Every key in the generated file is commented.
    lines = (home / "node.toml").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"key without a comment: {line}"


def test_init_refuses_an_existing_home_unless_forced(home: Path, siku: SikuRunner) -> None:
    key_before = (home / "keys" / "node.key").read_bytes()
    args = ["init", "--home", str(home), "--name", "X", "--code", "620982", "--tier", "county"]
    proc = siku(*args, check=False)
    assert proc.returncode == EX_CONFIG and "--force" in proc.stderr
    assert (home / "keys" / "node.key").read_bytes() == key_before
    siku(*args, "--force")
    assert (home / "keys" / "node.key").read_bytes() != key_before
    assert list(home.glob("store.replaced-*")), "the old store must be kept aside"
    # ...and the key that signed its records with it.
    (kept,) = home.glob("keys.replaced-*")
    assert (kept / "node.key").read_bytes() == key_before


def test_init_rejects_bad_settings_and_writes_nothing(tmp_path: Path, siku: SikuRunner) -> None:
    base = ["--name", "X", "--code", "620982", "--tier", "county"]
    cases = {
        "code": ["--code", "ABC-1"],
        "tier": ["--tier", "village"],
        "admin_listen": ["--admin-listen", "0.0.0.0:8471"],
        "listen": ["--listen", "nohost"],
        "parent": ["--parent", "ftp://x"],
    }
    for name, override in cases.items():
        target = tmp_path / name
        proc = siku("init", "--home", str(target), *base, *override, check=False)
        assert proc.returncode != 0, name
        assert proc.stderr.strip(), f"{name}: no error message"
        assert not (target / "node.toml").exists(), f"{name}: wrote a config anyway"


def test_repo_node_toml_is_a_valid_documented_example() -> None:
    from node.config import parse_config

    root = Path(__file__).resolve().parents[2]
    config = parse_config(tomllib.loads((root / "node.toml").read_text("utf-8")), root)
    assert config.zeroconf is False and config.admin_listen.is_loopback


# --- ingest -------------------------------------------------------------------------------------


def test_ingest_all_four_kinds_then_again_unchanged(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    single = _write(tmp_path / "in" / "report.pdf", b"%PDF-1.4 tiny\n")
    folder = tmp_path / "in" / "oral-history"
    _write(folder / "transcript.txt", "李家口述史\n")
    _write(
        folder / "metadata.json",
        json.dumps({"title": [{"value": "李家口述史", "lang": "zh"}], "access": "onsite"}),
    )
    bag_dir = tmp_path / "in" / "bag"
    _write(bag_dir / "scan.png", b"\x89PNG fake")
    bagit.make_bag(str(bag_dir), {"DC-Title": "Dunhuang survey 1987"}, checksums=["sha256"])
    csv = _write(
        tmp_path / "in" / "c.csv",
        "title@zh,title@en,files\n敦煌县志,Dunhuang gazetteer,report.pdf\n家谱,Genealogy,\n",
    )
    paths = [str(single), str(folder), str(bag_dir), str(csv)]
    first = siku("ingest", "--json", "--home", str(home), *paths)
    statuses = [r["status"] for r in _results(first.stdout)]
    # report.pdf alone and as a CSV row with other metadata are two different resources.
    assert statuses == ["added"] * 5, first.stdout
    again = siku("ingest", "--home", str(home), *paths)
    lines = again.stdout.splitlines()
    assert sum(line.startswith("unchanged ") for line in lines) == 5
    assert "nothing changed" in again.stdout
    assert record_count(home) == 5
    live, problems = audit(home)
    assert (live, problems) == (5, [])


def test_changed_metadata_updates_the_same_identifier(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    folder = tmp_path / "item"
    _write(folder / "a.txt", "content")
    _write(folder / "metadata.json", json.dumps({"title": "Old title"}))
    pid = _results(siku("ingest", "--json", "--home", str(home), str(folder)).stdout)[0]["pid"]
    _write(folder / "metadata.json", json.dumps({"title": "Corrected title"}))
    second = _results(siku("ingest", "--json", "--home", str(home), str(folder)).stdout)[0]
    assert second["status"] == "updated" and second["pid"] == pid
    shown = json.loads(siku("get", "--json", "--home", str(home), str(pid)).stdout)
    assert shown["dc"]["title"][0]["value"] == "Corrected title"
    assert record_count(home) == 1


def test_bad_rows_are_named_and_the_rest_is_ingested(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    _write(tmp_path / "ok.txt", "ok")
    _write(tmp_path / "outside.txt", "secret")
    csv = _write(
        tmp_path / "in" / "c.csv",
        "title,access,embargo_until,files\n"
        "Good one,open,,\n"
        "Bad access,secret,,\n"
        ",open,,\n"
        "Escapes,open,,../outside.txt\n"
        "No date,embargoed,,\n"
        "Missing file,open,,nothere.pdf\n"
        "Good two,restricted,,\n",
    )
    proc = siku("ingest", "--home", str(home), str(csv), check=False)
    assert proc.returncode == EX_DATAERR
    for row in (3, 4, 5, 6, 7):
        assert f"c.csv:{row}" in proc.stderr, f"row {row} not named:\n{proc.stderr}"
    assert record_count(home) == 2


def test_bag_with_a_damaged_payload_stores_nothing(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    bag_dir = tmp_path / "bag"
    _write(bag_dir / "page1.txt", "original page one")
    _write(bag_dir / "page2.bin", os.urandom(3_000_000))
    bagit.make_bag(str(bag_dir), {"DC-Title": "Damaged"}, checksums=["sha256"])
    # Same size, different bytes: only the checksum can tell (Payload-Oxum still matches).
    _write(bag_dir / "data" / "page1.txt", "ORIGINAL PAGE ONE")
    proc = siku("ingest", "--home", str(home), str(bag_dir), check=False)
    assert proc.returncode == EX_DATAERR
    assert "page1.txt" in proc.stderr and "sha256" in proc.stderr
    assert record_count(home) == 0


def test_non_utf8_csv_and_missing_path_are_refused(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("title\n敦煌县志\n".encode("gbk"))
    proc = siku("ingest", "--home", str(home), str(gbk), check=False)
    assert proc.returncode == EX_DATAERR and "gbk.csv" in proc.stderr
    assert "GB18030" in proc.stderr
    proc = siku("ingest", "--home", str(home), str(tmp_path / "nothing"), check=False)
    assert proc.returncode == EX_DATAERR and "no such file" in proc.stderr
    assert record_count(home) == 0


def test_cli_options_fill_in_rights_and_are_validated(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    item = _write(tmp_path / "law.txt", "regulation text")
    proc = siku("ingest", "--home", str(home), str(item), "--access", "embargoed", check=False)
    assert proc.returncode != 0 and "--embargo-until" in proc.stderr
    proc = siku("ingest", "--home", str(home), str(item), "--rights", "http://x.org/", check=False)
    assert proc.returncode != 0 and "RightsStatements" in proc.stderr
    proc = siku(
        "ingest", "--home", str(home), str(item), "--collection", "Local History", check=False
    )
    assert proc.returncode != 0 and "collection" in proc.stderr
    assert record_count(home) == 0
    out = siku(
        "ingest",
        "--json",
        "--home",
        str(home),
        str(item),
        "--access",
        "embargoed",
        "--embargo-until",
        "2031-01-01",
        "--collection",
        "government-information",
        "--rights",
        "http://rightsstatements.org/vocab/InC/1.0/",
    )
    pid = _results(out.stdout)[0]["pid"]
    shown = json.loads(siku("get", "--json", "--home", str(home), str(pid)).stdout)
    assert shown["rights"]["access"] == "embargoed"
    assert shown["rights"]["embargo_until"] == "2031-01-01"
    assert shown["collection"] == "government-information"


# --- get, search, status ------------------------------------------------------------------------


def test_get_search_and_status_offline(tmp_path: Path, home: Path, siku: SikuRunner) -> None:
    data = os.urandom(2_500_000)  # three chunks
    _write(tmp_path / "scan.bin", data)
    csv = _write(
        tmp_path / "c.csv",
        "title@zh,title@en,files\n数字图书馆推广工程,Digital library promotion,scan.bin\n",
    )
    pid = str(_results(siku("ingest", "--json", "--home", str(home), str(csv)).stdout)[0]["pid"])
    out = tmp_path / "copy.bin"
    siku("get", "--home", str(home), pid, "--file", "scan.bin", "-o", str(out))
    assert out.read_bytes() == data
    hits = json.loads(siku("search", "--json", "--home", str(home), "图书馆").stdout)
    assert [h["pid"] for h in hits["results"]] == [pid]
    hits = json.loads(siku("search", "--json", "--home", str(home), "promotion").stdout)
    assert hits["total"] == 1
    status = json.loads(siku("status", "--json", "--home", str(home)).stdout)
    assert status["daemon"]["running"] is False
    assert status["counts"]["records"] == 1 and status["storage"]["used_bytes"] == len(data)
    # A one-character typo is caught by the check character.
    typo = pid[:-3] + ("b" if pid[-3] != "b" else "c") + pid[-2:]
    proc = siku("get", "--home", str(home), typo, check=False)
    assert proc.returncode != 0 and "mistyped" in proc.stderr


def test_same_files_elsewhere_are_a_new_resource_and_updates_keep_rights(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    folder = tmp_path / "r"
    _write(folder / "secret.txt", "secret")
    _write(folder / "metadata.json", json.dumps({"title": "Closed file", "access": "restricted"}))
    first = _results(siku("ingest", "--json", "--home", str(home), str(folder)).stdout)[0]
    # The same bytes ingested as a lone file are another resource, never an update of the first.
    alone = _results(
        siku("ingest", "--json", "--home", str(home), str(folder / "secret.txt")).stdout
    )[0]
    assert alone["status"] == "added" and alone["pid"] != first["pid"]
    # A new version that does not mention access keeps the old access status.
    _write(folder / "metadata.json", json.dumps({"title": "Closed file, retitled"}))
    again = _results(siku("ingest", "--json", "--home", str(home), str(folder)).stdout)[0]
    assert again["status"] == "updated" and again["pid"] == first["pid"]
    shown = json.loads(siku("get", "--json", "--home", str(home), str(first["pid"])).stdout)
    assert shown["rights"]["access"] == "restricted"
    assert shown["dc"]["title"][0]["value"] == "Closed file, retitled"


def test_csv_rows_with_an_identifier_are_updated_in_place(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    csv = tmp_path / "c.csv"
    _write(csv, "identifier,title\nDHX-1,Old\nDHX-2,Other\n")
    pids = {
        r["label"]: r["pid"]
        for r in _results(siku("ingest", "--json", "--home", str(home), str(csv)).stdout)
    }
    _write(csv, "identifier,title\nDHX-1,New\nDHX-2,Other\n")
    second = _results(siku("ingest", "--json", "--home", str(home), str(csv)).stdout)
    assert sorted(r["status"] for r in second) == ["unchanged", "updated"]
    assert {r["pid"] for r in second} == set(pids.values())
    assert record_count(home) == 2


def test_two_ingests_of_one_input_at_once_add_it_once(
    tmp_path: Path, home: Path, siku: SikuRunner
) -> None:
    import subprocess

    from tests.conftest import siku_command, siku_env

    folder = tmp_path / "dup"
    _write(folder / "a.bin", os.urandom(3_000_000))
    _write(folder / "metadata.json", json.dumps({"title": "One volume"}))
    procs = [
        subprocess.Popen(
            siku_command("ingest", "--json", "--home", str(home), str(folder)),
            env=siku_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    statuses = sorted(r["status"] for out in outputs for r in _results(out))
    assert statuses == ["added", "unchanged"]
    assert record_count(home) == 1


def test_status_require_daemon_fails_when_it_is_down(home: Path, siku: SikuRunner) -> None:
    proc = siku("status", "--require-daemon", "--home", str(home), check=False)
    assert proc.returncode == 69 and "not answering" in proc.stderr


def test_errors_reach_the_user_as_sentences(tmp_path: Path, home: Path, siku: SikuRunner) -> None:
    data = _write(tmp_path / "x.txt", "x")
    pid = _results(siku("ingest", "--json", "--home", str(home), str(data)).stdout)[0]["pid"]
    proc = siku(
        "get",
        "--home",
        str(home),
        str(pid),
        "--file",
        "x.txt",
        "-o",
        str(tmp_path / "no" / "such" / "dir" / "x.txt"),
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "No such file" in proc.stderr
    proc = siku(
        "init",
        "--home",
        "/proc/siku-cannot-be-here",
        "--name",
        "X",
        "--code",
        "620982",
        "--tier",
        "county",
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
