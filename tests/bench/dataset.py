"""Deterministic inputs: a folder of 1 MiB scans with its CSV, and a Dublin Core catalogue CSV.

The catalogue rows imitate what a county library in Gansu exports from its ILS: Chinese and
English titles and subjects (title@zh, title@en, …), one to three creators, a Chinese and an
English description of 300–600 characters together, a date, type, language, a call number,
collection, access and sometimes a rights statement. The same seed gives the same rows.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import MIB

__all__ = [
    "CATALOGUE_COLUMNS",
    "CatalogueRow",
    "FileDataset",
    "catalogue_rows",
    "make_file_dataset",
    "write_catalogue_csv",
]

SEED = 620982

# --- the 1 MiB scans ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDataset:
    """`count` files of `size` random bytes in `root/scans/`, listed by `root/scans.csv`."""

    root: Path
    count: int
    size: int

    @property
    def scans(self) -> Path:
        return self.root / "scans"

    @property
    def csv(self) -> Path:
        return self.root / "scans.csv"

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def files(self) -> list[Path]:
        return [self.scans / _scan_name(i) for i in range(self.count)]


def _scan_name(i: int) -> str:
    return f"dh-{i + 1:05d}.tif"


def make_file_dataset(root: Path, count: int, size: int = MIB) -> FileDataset:
    """Write the scans (random, so incompressible and never deduplicated) and their CSV.

    One CSV row per scan, as a library digitising a run of single-page items would list them:
    header `title,files`, each path relative to the CSV's folder. Reused if already complete.
    """
    data = FileDataset(root, count, size)
    if data.csv.exists() and all(p.stat().st_size == size for p in data.files()):
        return data
    data.scans.mkdir(parents=True, exist_ok=True)
    for path in data.files():
        with path.open("wb") as handle:
            handle.write(os.urandom(size))
    with data.csv.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "files"])
        for i in range(count):
            writer.writerow([f"敦煌县档案扫描 第{i + 1}件", f"scans/{_scan_name(i)}"])
    os.sync()  # the scans are on disk, not dirty pages competing with the timed writes
    return data


# --- the catalogue -----------------------------------------------------------------------------

CATALOGUE_COLUMNS = (
    "title@zh",
    "title@en",
    "creator",
    "subject@zh",
    "subject@en",
    "description@zh",
    "description@en",
    "date",
    "type",
    "language",
    "identifier",
    "collection",
    "access",
    "rights",
)

# (Chinese, English) pairs the generator combines.
_PLACES = (
    ("敦煌", "Dunhuang"),
    ("酒泉", "Jiuquan"),
    ("张掖", "Zhangye"),
    ("武威", "Wuwei"),
    ("兰州", "Lanzhou"),
    ("天水", "Tianshui"),
    ("瓜州", "Guazhou"),
    ("玉门", "Yumen"),
    ("陇西", "Longxi"),
    ("临夏", "Linxia"),
    ("平凉", "Pingliang"),
    ("庆阳", "Qingyang"),
)
_ERAS = (
    ("康熙", "Kangxi", 1662, 1722),
    ("乾隆", "Qianlong", 1736, 1795),
    ("道光", "Daoguang", 1821, 1850),
    ("光绪", "Guangxu", 1875, 1908),
    ("民国", "Republican", 1912, 1949),
)
_KINDS = (
    ("县志", "county gazetteer", "Text", "地方志", "Local gazetteers"),
    ("府志", "prefectural gazetteer", "Text", "地方志", "Local gazetteers"),
    ("家谱", "family genealogy", "Text", "谱牒", "Genealogy"),
    ("写本", "manuscript", "Text", "敦煌学", "Dunhuang manuscripts"),
    ("金刚经", "Diamond Sutra", "Text", "佛教", "Buddhism"),
    ("碑帖", "stele rubbing", "Image", "金石", "Epigraphy"),
    ("舆图", "map", "Image", "地理", "Historical geography"),
    ("诗集", "collected poems", "Text", "文学", "Chinese poetry"),
    ("书信", "letters", "Text", "档案", "Correspondence"),
    ("报刊", "newspaper", "Text", "近代报刊", "Newspapers"),
    ("图书馆年报", "library annual report", "Text", "图书馆学", "Libraries"),
    ("地方文献丛书", "local documents series", "Text", "地方文献", "Local documents"),
)
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
_GIVEN = "文志明国华学书德清玉敬安永兴恩庆桂芳贤懋"
_INSTITUTIONS = ("敦煌县图书馆", "甘肃省图书馆", "敦煌研究院", "酒泉市博物馆")
_COLLECTIONS = ("dunhuang-local-docs", "gansu-gazetteers", "rare-books", "county-archives")
_ACCESS = ("open",) * 7 + ("onsite", "network", "restricted")
_RIGHTS = (
    "",
    "",
    "http://rightsstatements.org/vocab/NoC-US/1.0/",
    "http://rightsstatements.org/vocab/InC/1.0/",
)
_ZH_SENTENCES = (
    "本书为{era}年间{place}地方官员主持编纂的{kind}，记载{place}的建置沿革、山川形胜、物产风俗与人物事迹。",
    "原书藏于{inst}，经整理后影印出版，书前有序言，书后附跋语与校勘记。",
    "全书分为{n}卷，首卷为舆图，其余各卷依次为疆域、城池、田赋、学校、选举、艺文诸志。",
    "{place}地处河西走廊西端，为丝绸之路要冲，此书是研究当地历史地理与民族交往的重要文献。",
    "卷中保存了大量碑刻、诗文与档案资料，为敦煌学、边疆史地与地方文献研究提供了珍贵的第一手材料。",
    "本馆于{year}年完成数字化扫描，采用四百像素每英寸彩色图像，并按页编制目录以便检索利用。",
    "书中字迹清晰，间有虫蛀与水渍，个别页面残缺，已由本馆古籍修复室按传统工艺修补。",
    "此本与国家图书馆所藏刻本相校，文字略有出入，可资考订版本源流。",
)
_EN_SENTENCES = (
    "A {kind} of {place} compiled in the {era} era, recording its administrative history, "
    "mountains and rivers, local products, customs and notable people.",
    "The original is held by the {inst_en} and was digitised in {year} at 400 ppi in colour.",
    "In {n} volumes; the first holds the maps, the others cover territory, walls, taxes, "
    "schools, examinations and literature.",
    "An important source for the history of the Hexi Corridor and the Silk Road, "
    "and for Dunhuang studies and local history.",
    "Some leaves are damaged by insects and water; they were repaired by the library's "
    "conservation workshop using traditional methods.",
)
_INST_EN = {
    "敦煌县图书馆": "Dunhuang County Library",
    "甘肃省图书馆": "Gansu Provincial Library",
    "敦煌研究院": "Dunhuang Academy",
    "酒泉市博物馆": "Jiuquan Museum",
}


@dataclass(frozen=True)
class CatalogueRow:
    """One generated resource, its cells in CATALOGUE_COLUMNS order."""

    cells: tuple[str, ...]

    def get(self, column: str) -> str:
        return self.cells[CATALOGUE_COLUMNS.index(column)]


def _person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choices(_GIVEN, k=rng.choice((1, 2))))


def _description(
    rng: random.Random, zh_words: dict[str, object], en_words: dict[str, object]
) -> tuple[str, str]:
    """A Chinese and an English description, 300–600 characters together."""
    want = rng.randint(300, 600)
    zh_share = rng.uniform(0.35, 0.6)
    zh_sentences = list(_ZH_SENTENCES)
    en_sentences = list(_EN_SENTENCES)
    rng.shuffle(zh_sentences)
    rng.shuffle(en_sentences)
    zh = ""
    for sentence in (s.format(**zh_words) for s in zh_sentences):
        if zh and len(zh) + len(sentence) > want * zh_share:
            break
        zh += sentence
    en = ""
    for sentence in (s.format(**en_words) for s in en_sentences):
        if en and len(zh) + len(en) >= 300 and len(zh) + len(en) + len(sentence) > want:
            break
        en = f"{en} {sentence}" if en else sentence
    return zh, en


def _row(rng: random.Random, number: int) -> CatalogueRow:
    place, place_en = rng.choice(_PLACES)
    era, era_en, first, last = rng.choice(_ERAS)
    kind, kind_en, dc_type, subject, subject_en = rng.choice(_KINDS)
    year = rng.randint(first, last)
    volume = rng.randint(1, 24)
    inst = rng.choice(_INSTITUTIONS)
    common = {"n": rng.randint(4, 40), "year": rng.randint(2008, 2024)}
    zh_words = {"place": place, "era": era, "kind": kind, "inst": inst, **common}
    en_words = {
        "place": place_en,
        "era": era_en,
        "kind": kind_en,
        "inst_en": _INST_EN[inst],
        **common,
    }
    zh_desc, en_desc = _description(rng, zh_words, en_words)
    creators = [_person(rng) for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.3:
        creators.append(inst)
    subjects_zh = [subject, f"{place}", rng.choice(("历史", "文献", "古籍", "民俗"))]
    subjects_en = [subject_en, place_en, rng.choice(("History", "Rare books", "Folklore"))]
    date = str(year) if rng.random() < 0.6 else f"{year}-{rng.randint(1, 12):02d}"
    cells = (
        f"{era}{place}{kind} 卷{volume}",
        f"{place_en} {kind_en}, {era_en} era, vol. {volume}",
        "||".join(creators),
        "||".join(subjects_zh),
        "||".join(subjects_en),
        zh_desc,
        en_desc,
        date,
        dc_type,
        "zh",
        f"GZ/620982/{number:07d}",
        rng.choice(_COLLECTIONS),
        rng.choice(_ACCESS),
        rng.choice(_RIGHTS),
    )
    return CatalogueRow(cells)


def catalogue_rows(count: int, seed: int = SEED) -> Iterator[CatalogueRow]:
    """`count` rows, the same ones for the same seed."""
    rng = random.Random(seed)
    for number in range(1, count + 1):
        yield _row(rng, number)


def write_catalogue_csv(path: Path, count: int) -> Path:
    """The catalogue as a librarian's CSV (UTF-8, header row); reused if already written."""
    done = path.with_suffix(".done")
    if path.exists() and done.exists() and done.read_text() == str(count):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CATALOGUE_COLUMNS)
        for row in catalogue_rows(count):
            writer.writerow(row.cells)
    done.write_text(str(count))
    return path
