"""Full-text search over Chinese, Japanese, Korean and English records on a real FTS5 table."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.textindex import MAX_QUERY_CHARS, MAX_QUERY_TERMS, index_text, match_expression

CREATE = """
CREATE VIRTUAL TABLE search_fts USING fts5(title, creator, subject, description,
    tokenize = 'porter unicode61 remove_diacritics 2')
"""
RANK = "bm25(search_fts, 10.0, 5.0, 3.0, 1.0)"

# rowid: (title, creator, subject, description)
CORPUS: dict[int, tuple[str, str, str, str]] = {
    1: ("数字图书馆推广工程", "文化部", "公共文化服务", "国家图书馆主持的全国性文化工程。"),
    2: ("绍兴县志", "（清）李亨特 修", "地方志；浙江", "乾隆五十七年刻本。"),
    3: (
        "敦煌遗书：《金刚般若波罗蜜经》残卷",
        "佚名",
        "佛教经典",
        "Dunhuang manuscript from the Library Cave at Mogao.",
    ),
    4: (
        "Medieval Manuscripts of Europe",
        "Smith, John",
        "Illumination",
        "A survey of illuminated manuscripts, with notes on their scribes.",
    ),
    5: ("书", "", "", "A one-character title meaning 'book'."),
    6: ("书法艺术与博物馆", "王羲之", "书法", "历代书法名作，藏于各地博物馆。"),
    7: ("图书，馆藏目录", "", "", "书 馆"),
    8: ("ＵＮＥＳＣＯ Ｍｅｍｏｒｙ ｏｆ ｔｈｅ Ｗｏｒｌｄ", "", "", "全角字符的标题（２０２４年）"),
    9: ("碑帖拓片精选", "", "金石", ""),
    10: ("金石学研究", "", "", "收录大量拓片与题跋。"),
    11: ("国立国会図書館デジタルコレクション", "", "", ""),
    12: ("국립중앙도서관 고문헌", "", "", ""),
    13: ("Stone rubbings", "", "", ""),
    14: ("Epigraphy", "", "", "Includes rubbings of stelae."),
}
EVERYTHING = sorted(CORPUS)


def _create() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(CREATE)
    return db


def _insert(db: sqlite3.Connection, rowid: int, *columns: str) -> None:
    db.execute(
        "INSERT INTO search_fts (rowid, title, creator, subject, description)"
        " VALUES (?, ?, ?, ?, ?)",
        (rowid, *map(index_text, columns)),
    )


def _search(db: sqlite3.Connection, query: str) -> list[int]:
    expression = match_expression(query)
    if expression is None:
        return []
    rows = db.execute(
        f"SELECT rowid FROM search_fts WHERE search_fts MATCH ? ORDER BY {RANK}, rowid",
        (expression,),
    )
    return [rowid for (rowid,) in rows]


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    db = _create()
    for rowid, columns in CORPUS.items():
        _insert(db, rowid, *columns)
    yield db
    db.close()


# --- index_text -----------------------------------------------------------------------------------


def test_a_cjk_run_becomes_its_bigrams_then_its_unigrams() -> None:
    assert index_text("数字图书馆") == "数字 字图 图书 书馆 数 字 图 书 馆"
    assert index_text("县志") == "县志 县 志"
    assert index_text("书") == "书"


def test_punctuation_separates_runs_and_is_dropped() -> None:
    assert index_text("《敦煌》，书。") == "敦煌 敦 煌 书"
    assert index_text("「图书」、馆藏") == "图书 图 书 馆藏 馆 藏"
    assert index_text("e-mail, don't (2024)") == "e mail don t 2024"
    assert index_text("snake_case") == "snake case"


def test_cjk_and_other_words_are_split_apart() -> None:
    assert index_text("敦煌manuscripts 1990年") == "敦煌 敦 煌 manuscripts 1990 年"


def test_nfkc_folds_full_width_and_compatibility_forms() -> None:
    assert index_text("Ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ１２３") == "Full width ABC123"
    assert index_text("ｶﾀｶﾅ") == "カタ タカ カナ カ タ カ ナ"  # half-width katakana
    assert index_text("\uf900") == "豈"  # compatibility ideograph


def test_empty_and_punctuation_only_text_index_as_nothing() -> None:
    assert index_text("") == ""
    assert index_text(" ，。《》 ...") == ""


def test_a_run_longer_than_one_chunk_keeps_every_bigram() -> None:
    run = "".join(chr(0x4E00 + i) for i in range(500))
    assert index_text(run) == _reference_index_text(run)


# --- match_expression -----------------------------------------------------------------------------


def test_query_expressions() -> None:
    assert match_expression("书") == '"书"'
    assert match_expression("县志") == '"县志"'
    assert match_expression("图书馆") == '"图书" + "书馆"'
    assert match_expression("敦煌manuscripts") == '"敦煌" AND "manuscripts"'
    assert match_expression("Dunhuang manuscripts") == '"Dunhuang" AND "manuscripts"'
    assert match_expression("e-mail") == '"e" + "mail"'
    assert match_expression("图书，馆藏") == '"图书" AND "馆藏"'
    assert match_expression("ＡＢＣ") == '"ABC"'


def test_fts_syntax_in_a_query_is_plain_text() -> None:
    assert match_expression('title:敦煌 NEAR(a b) man* "x') == (
        '"title" AND "敦煌" AND "NEAR" + "a" AND "b" AND "man" AND "x"'
    )
    assert match_expression("AND OR NOT") == '"AND" AND "OR" AND "NOT"'


@pytest.mark.parametrize("query", ["", "   ", "，。《》", '"', '""', "*", "-", ":", "()", "_"])
def test_a_query_with_nothing_searchable_is_none(query: str) -> None:
    assert match_expression(query) is None


def test_queries_are_bounded() -> None:
    assert match_expression("书" * MAX_QUERY_CHARS) is not None
    with pytest.raises(ValueError, match="characters"):
        match_expression("书" * (MAX_QUERY_CHARS + 1))
    assert match_expression(" ".join(["word"] * MAX_QUERY_TERMS)) is not None
    with pytest.raises(ValueError, match="terms"):
        match_expression(" ".join(["word"] * (MAX_QUERY_TERMS + 1)))
    # Terms with nothing searchable in them do not count.
    assert match_expression(" , ".join(["word"] * MAX_QUERY_TERMS)) is not None


# --- searching a real FTS5 table ------------------------------------------------------------------


def test_one_character_query(db: sqlite3.Connection) -> None:
    assert set(_search(db, "书")) == {1, 3, 5, 6, 7}  # 图书馆, 遗书, 书, 书法, 图书


def test_two_character_queries(db: sqlite3.Connection) -> None:
    assert _search(db, "县志") == [2]
    assert _search(db, "敦煌") == [3]


def test_a_word_inside_a_longer_run(db: sqlite3.Connection) -> None:
    assert _search(db, "图书馆") == [1]
    assert _search(db, "推广工程") == [1]
    assert _search(db, "金刚般若波罗蜜经") == [3]


def test_characters_that_are_not_adjacent_do_not_match(db: sqlite3.Connection) -> None:
    # Record 6 has 书 and 馆 far apart, record 7 has them across punctuation and a space.
    assert _search(db, "书馆") == [1]
    assert _search(db, "图书馆藏") == []
    assert _search(db, "县志敦煌") == []
    assert _search(db, "馆藏目录") == [7]


def test_japanese_and_korean(db: sqlite3.Connection) -> None:
    assert _search(db, "図書館") == [11]
    assert _search(db, "デジタル") == [11]
    assert _search(db, "도서관") == [12]


def test_english_words_are_stemmed_and_case_folded(db: sqlite3.Connection) -> None:
    assert set(_search(db, "manuscripts")) == {3, 4}
    assert set(_search(db, "manuscript")) == {3, 4}
    assert _search(db, "MEDIEVAL manuscript") == [4]
    assert _search(db, "illuminated") == [4]


def test_mixed_language_queries(db: sqlite3.Connection) -> None:
    assert _search(db, "敦煌 manuscripts") == [3]
    assert _search(db, "敦煌manuscripts") == [3]
    assert _search(db, "敦煌 Europe") == []


def test_full_width_input_matches_both_ways(db: sqlite3.Connection) -> None:
    assert _search(db, "unesco") == [8]
    assert _search(db, "ＵＮＥＳＣＯ") == [8]
    assert _search(db, "2024年") == [8]


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"书',
        '书"',
        '"" OR 书',
        "NEAR(书 馆)",
        "NEAR(书 馆, 10)",
        "title:敦煌",
        "title : 书",
        "{title creator}:书",
        "-书",
        "^书",
        "*",
        "书*",
        "man*",
        "AND OR NOT",
        "书 OR 馆",
        "书 NOT 馆",
        "书 AND",
        "(书",
        "书 + 馆",
        "rowid:1",
        "'; DROP TABLE search_fts; --",
        "\x00书",
    ],
)
def test_fts_syntax_injection_is_harmless(db: sqlite3.Connection, query: str) -> None:
    found = _search(db, query)  # must not raise sqlite3.OperationalError
    assert found != EVERYTHING
    assert set(found) <= set(_search(db, "书"))  # at most what the literal 书 can find


def test_the_largest_expression_a_query_can_produce_is_accepted(db: sqlite3.Connection) -> None:
    # One term alternating 128 distinct letters and 128 distinct ideographs: 256 ANDed phrases.
    letters = [
        c
        for c in map(chr, range(0x21, 0x500))
        if c.isalnum() and unicodedata.normalize("NFKC", c) == c
    ][:128]
    query = "".join(letter + chr(0x4E00 + i) for i, letter in enumerate(letters))
    assert len(query) == MAX_QUERY_CHARS
    expression = match_expression(query)
    assert expression is not None
    assert expression.count(" AND ") == 255
    assert _search(db, query) == []
    # And the longest phrases: 16 terms of 15 characters each.
    query = " ".join("".join(chr(0x4E00 + 15 * i + j) for j in range(15)) for i in range(16))
    assert _search(db, query) == []


def test_a_title_hit_ranks_above_a_description_hit(db: sqlite3.Connection) -> None:
    assert _search(db, "拓片") == [9, 10]
    assert _search(db, "rubbings") == [13, 14]


# --- properties -----------------------------------------------------------------------------------

_CJK_RANGES = [
    (0x1100, 0x11FF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3031, 0x3035), (0x3038, 0x303C),
    (0x3041, 0x3096), (0x309D, 0x309F), (0x30A1, 0x30FA), (0x30FC, 0x30FF), (0x3105, 0x312F),
    (0x31A0, 0x31BF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97C),
    (0xAC00, 0xD7A3), (0xD7B0, 0xD7C6), (0xD7CB, 0xD7FB), (0xF900, 0xFAFF), (0x1B000, 0x1B16F),
    (0x20000, 0x3FFFF),
]  # fmt: skip
_REFERENCE_CJK = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES) + "]")


def _reference_index_text(text: str) -> str:
    """The obvious, slow version of index_text: one character at a time."""
    tokens: list[str] = []
    word = ""
    run = ""

    def flush() -> None:
        nonlocal word, run
        if word:
            tokens.append(word)
        if len(run) > 1:
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        tokens.extend(run)
        word = run = ""

    for char in unicodedata.normalize("NFKC", text):
        if _REFERENCE_CJK.match(char):
            if word:
                flush()
            run += char
        elif char.isalnum():
            if run:
                flush()
            word += char
        else:
            flush()
    flush()
    return " ".join(tokens)


def test_sqlite_keeps_every_cjk_character_as_one_unchanged_token() -> None:
    # The design relies on this: a bigram we emit must be exactly one FTS5 token.
    chars = [chr(c) for lo, hi in _CJK_RANGES for c in range(lo, hi + 1)]
    db = _create()
    db.execute("CREATE VIRTUAL TABLE vocab USING fts5vocab(search_fts, 'instance')")
    size = 5000
    for start in range(0, len(chars), size):
        db.execute(
            "INSERT INTO search_fts (rowid, title) VALUES (?, ?)",
            (start, " ".join(chars[start : start + size])),
        )
    tokens = db.execute("SELECT doc + offset, term FROM vocab ORDER BY 1").fetchall()
    assert [term for _, term in tokens] == chars
    db.close()


# Text that exercises the CJK paths: ideographs, kana, hangul, punctuation, full-width and
# half-width forms, compatibility ideographs, combining marks, Latin words and spaces.
_cjk_chars = st.one_of(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x4E40),  # few, so texts share bigrams
    st.characters(min_codepoint=0x3400, max_codepoint=0x4DBF),
    st.characters(min_codepoint=0x3041, max_codepoint=0x30FF),
    st.characters(min_codepoint=0xAC00, max_codepoint=0xAC20),
    st.characters(min_codepoint=0xF900, max_codepoint=0xFA6D),
    st.characters(min_codepoint=0xFF61, max_codepoint=0xFF9F),
    st.characters(min_codepoint=0x20000, max_codepoint=0x20040),
)
_mixed_text = st.text(
    st.one_of(
        _cjk_chars,
        st.sampled_from(" 　，。、《》「」：；！？…—·・\"'()-_*:^+Ａｚ０\u3099\u0301\u00a8\ufdfa"),
        st.characters(min_codepoint=0x41, max_codepoint=0x7A),
    ),
    max_size=80,
)
_any_text = st.one_of(st.text(), _mixed_text)
_TOKEN = re.compile(f"(?:[^\\W_]|{_REFERENCE_CJK.pattern})+")  # letters, digits, CJK
_EXPRESSION = re.compile(r'"[^"]+"(?: (?:\+|AND) "[^"]+")*')


@given(_any_text)
def test_index_text_equals_the_reference_and_yields_clean_tokens(text: str) -> None:
    indexed = index_text(text)
    assert indexed == _reference_index_text(text)
    assert indexed == "" or all(_TOKEN.fullmatch(t) for t in indexed.split(" "))


@given(_any_text)
@settings(max_examples=300)
def test_every_query_is_rejected_empty_or_accepted_by_sqlite(query: str) -> None:
    try:
        expression = match_expression(query)
    except ValueError:
        terms = [t for t in unicodedata.normalize("NFKC", query).split() if index_text(t)]
        assert len(query) > MAX_QUERY_CHARS or len(terms) > MAX_QUERY_TERMS
        return
    if expression is None:
        assert index_text(query) == ""
        return
    assert _EXPRESSION.fullmatch(expression)
    db = _create()
    _insert(db, 1, "图书馆", "", "", "manuscripts")
    db.execute("SELECT rowid FROM search_fts WHERE search_fts MATCH ?", (expression,)).fetchall()
    db.close()


@st.composite
def _text_and_cjk_substring(draw: st.DrawFn) -> tuple[str, str]:
    text = draw(
        _mixed_text.filter(lambda t: _REFERENCE_CJK.search(unicodedata.normalize("NFKC", t)))
    )
    runs = [
        m.group()
        for m in re.finditer(f"{_REFERENCE_CJK.pattern}+", unicodedata.normalize("NFKC", text))
    ]
    run = draw(st.sampled_from(runs))
    start = draw(st.integers(0, len(run) - 1))
    length = draw(st.integers(1, min(6, len(run) - start)))
    return text, run[start : start + length]


@given(_text_and_cjk_substring(), st.sampled_from(range(4)))
@settings(max_examples=300)
def test_any_cjk_substring_finds_the_text(case: tuple[str, str], column: int) -> None:
    text, substring = case
    columns = ["", "", "", ""]
    columns[column] = text
    db = _create()
    _insert(db, 1, *columns)
    _insert(db, 2, "无关", "unrelated", "", "")
    assert 1 in _search(db, substring)
    db.close()


@given(
    _mixed_text,
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x4E08), min_size=1, max_size=8),
)
@settings(max_examples=300)
def test_a_cjk_query_matches_exactly_the_texts_that_contain_it(text: str, query: str) -> None:
    runs = re.findall(f"{_REFERENCE_CJK.pattern}+", unicodedata.normalize("NFKC", text))
    db = _create()
    _insert(db, 1, text, "", "", "")
    assert (_search(db, query) == [1]) == any(query in run for run in runs)
    db.close()
