"""Text preparation for the FTS5 search index: CJK bigram tokens in, safe MATCH expressions out."""

# SQLite's tokenizers cannot search Chinese: `unicode61` makes a whole run of Han characters one
# token (图书馆 misses 数字图书馆推广工程) and `trigram` never matches 1-2 character queries (书,
# 县志). So, like Lucene's CJK analyzer, we tokenize in Python and `unicode61` only ever sees
# space-separated tokens. A CJK run ABCD is indexed as its overlapping bigrams AB BC CD, which take
# consecutive positions, followed by its unigrams A B C D. A query run of two or more characters
# becomes the phrase "AB" + "BC" + "CD", which matches only where those characters are contiguous
# within one run (a run's unigrams sit between its bigrams and the next run's, so a phrase never
# spans two runs); a one-character query is the unigram. Other words pass through for FTS5 to
# case-fold and stem. Only letters and digits survive (on both sides, so index and query agree
# even where `unicode61` and Python classify a character differently), and every query token is
# a quoted FTS5 string, so nothing a user types is FTS5 syntax.
#
# Every character in _CJK is a token character that `unicode61 remove_diacritics 2` keeps
# unchanged (checked exhaustively on SQLite 3.40.1), so each bigram is exactly one FTS5 token.

from __future__ import annotations

import re
import unicodedata
from operator import itemgetter
from typing import Final

__all__ = [
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "index_text",
    "match_expression",
]

MAX_QUERY_CHARS: Final = 256
MAX_QUERY_TERMS: Final = 16

# Han (URO, extension A, compatibility ideographs, planes 2-3 for extensions B-H), the ideographic
# iteration/closing marks and numerals, kana, bopomofo and hangul. NFKC folds half-width kana,
# compatibility jamo and most compatibility ideographs into these ranges before they are matched.
_CJK: Final = (
    "\u1100-\u11ff"  # Hangul jamo
    "\u3005-\u3007"  # 々 〆 〇
    "\u3021-\u3029"  # Hangzhou numerals
    "\u3031-\u3035"  # kana repeat marks
    "\u3038-\u303c"
    "\u3041-\u3096"  # hiragana
    "\u309d-\u309f"
    "\u30a1-\u30fa"  # katakana, without ・ (U+30FB, punctuation)
    "\u30fc-\u30ff"
    "\u3105-\u312f"  # bopomofo
    "\u31a0-\u31bf"
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97c"  # Hangul jamo extended-A
    "\uac00-\ud7a3"  # Hangul syllables
    "\ud7b0-\ud7c6"  # Hangul jamo extended-B
    "\ud7cb-\ud7fb"
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U0001b000-\U0001b16f"  # kana supplement and extensions
    "\U00020000-\U0003ffff"  # CJK extensions B-H, compatibility supplement
)
_CJK_SPLIT: Final = re.compile(f"([{_CJK}]+)")
# Letters and digits; everything else (punctuation, symbols, underscore, marks) separates tokens.
_WORD: Final = re.compile(r"[^\W_]+")
# Code points in _CJK that this Python's Unicode tables do not assign yet still count as CJK.
_SEPARATORS: Final = re.compile(f"(?:[^\\w{_CJK}]|_)+")
_ASCII_SEPARATORS: Final = re.compile(r"[^0-9A-Za-z]+")
# Common separators whose NFKC form holds no letter or digit: whitespace, ASCII, general, CJK and
# full-width punctuation. Replacing them first keeps the costly full NFKC pass for rare text (CJK
# text is full of full-width punctuation, which is not NFKC-stable).
_COMMON_SEPARATORS: Final = re.compile(
    "[\\s!-/:-@\\[-`{-~\u2010-\u2027\u2030-\u205e\u3000-\u3004\u3008-\u3020\u3030\u3036\u3037"
    "\u303d-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]+"
)

# _BIGRAMS[n](s) is the tuple of the n - 1 bigrams of a string of length n, built in C instead
# of a per-character Python loop; longer runs are cut into overlapping chunks.
_CHUNK: Final = 64
_BIGRAMS: Final = [
    itemgetter(*(slice(i, i + 2) for i in range(n - 1))) for n in range(3, _CHUNK + 1)
]


def _bigrams(run: str) -> str:
    n = len(run)
    if n == 2:
        return run
    if n <= _CHUNK:
        return " ".join(_BIGRAMS[n - 3](run))
    return " ".join(_bigrams(run[i : i + _CHUNK]) for i in range(0, n - 1, _CHUNK - 1))


def _expand_run(run: str) -> str:
    n = len(run)
    if n == 1:
        return run
    if 2 < n <= _CHUNK:  # the common case, inlined
        return " ".join(_BIGRAMS[n - 3](run)) + run.replace("", " ")
    return _bigrams(run) + run.replace("", " ")  # "AB BC" + " A B C "


def index_text(text: str) -> str:
    """Return `text` as space-separated tokens for one column of the FTS5 table."""
    if text.isascii():
        return _ASCII_SEPARATORS.sub(" ", text).strip()
    text = unicodedata.normalize("NFKC", _COMMON_SEPARATORS.sub(" ", text))
    if "  " in text or not text.replace(" ", "").isalnum():
        text = _SEPARATORS.sub(" ", text)
    # Now single spaces separate tokens, so below at most four spaces meet; two passes fold them.
    parts = _CJK_SPLIT.split(text)  # other text, CJK run, other text, ...
    parts[1::2] = map(_expand_run, parts[1::2])
    return " ".join(parts).replace("  ", " ").replace("  ", " ").strip()


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _term_phrases(term: str) -> list[str]:
    phrases = []
    for i, part in enumerate(_CJK_SPLIT.split(term)):
        if i % 2:  # a CJK run
            tokens = [part[j : j + 2] for j in range(len(part) - 1)] or [part]
        else:
            tokens = _WORD.findall(part)
        if tokens:
            phrases.append(" + ".join(map(_quote, tokens)))
    return phrases


def match_expression(query: str) -> str | None:
    """Turn a user's search query into an FTS5 MATCH expression, or None if nothing is searchable.

    Whitespace-separated terms are ANDed. Within a term, each CJK run and each stretch of other
    words is a phrase, and these are ANDed too: `敦煌manuscripts` is `"敦煌" AND "manuscripts"`.
    Quotes, operators and column filters in `query` are plain text.

    Raises ValueError if `query` is longer than MAX_QUERY_CHARS characters or has more than
    MAX_QUERY_TERMS terms with something searchable in them.
    """
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"search query is longer than {MAX_QUERY_CHARS} characters")
    phrases: dict[str, None] = {}
    terms = 0
    for term in unicodedata.normalize("NFKC", query).split():
        term_phrases = _term_phrases(term)
        if term_phrases:
            terms += 1
            phrases.update(dict.fromkeys(term_phrases))
    if terms > MAX_QUERY_TERMS:
        raise ValueError(f"search query has more than {MAX_QUERY_TERMS} terms")
    return " AND ".join(phrases) if phrases else None
