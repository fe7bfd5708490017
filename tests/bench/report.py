"""The results as a plain-text table (stdout) and as JSON (results.json)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from tests.bench.common import Figure, fmt

__all__ = ["render", "write_json"]

COLUMNS: tuple[tuple[str, int], ...] = (
    ("benchmark", 34),
    ("figure", 25),
    ("baseline(s)", 40),
    ("ratio", 20),
    ("target", 14),
    ("met?", 4),
)


def _width(text: str) -> int:
    """Display width: CJK characters take two terminal columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _split_long(word: str, width: int) -> list[str]:
    pieces, current = [], ""
    for ch in word:
        if current and _width(current + ch) > width:
            pieces.append(current)
            current = ""
        current += ch
    return [*pieces, current] if current else pieces


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap by display width; explicit newlines are kept."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            for piece in _split_long(word, width) if _width(word) > width else [word]:
                candidate = f"{line} {piece}" if line else piece
                if _width(candidate) <= width:
                    line = candidate
                else:
                    lines.append(line)
                    line = piece
        lines.append(line)
    return lines


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _figure_cell(f: Figure) -> str:
    if f.shown is not None:
        return f.shown
    m = f.figure
    if not m.samples:
        return "not measured"
    text = f"{fmt(m.value)} {m.unit}"
    if len(m.samples) > 1:
        return f"{text}\nmedian of {len(m.samples)} ({fmt(min(m.samples))}–{fmt(max(m.samples))})"
    return f"{text}\n(1 run)"


def _cells(f: Figure) -> list[str]:
    met = "n/a" if f.met is None else ("yes" if f.met else "NO")
    return [
        f.benchmark,
        _figure_cell(f),
        "\n".join(b.show() for b in f.baselines) or "–",
        "\n".join(f"{name} {value:.2f}" for name, value in f.ratios) or "–",
        f.target or "–",
        met,
    ]


def _rule(char: str = "-") -> str:
    return "+".join(char * (width + 2) for _, width in COLUMNS)


def _table_row(cells: Sequence[str]) -> list[str]:
    wrapped = [_wrap(cell, width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)]
    height = max(len(w) for w in wrapped)
    out = []
    for i in range(height):
        parts = [
            _pad(w[i] if i < len(w) else "", width)
            for w, (_, width) in zip(wrapped, COLUMNS, strict=True)
        ]
        out.append(" " + " | ".join(parts))
    return out


def render(machine: dict[str, str], figures: Sequence[Figure], extra: Sequence[str]) -> str:
    """The report printed on stdout: machine facts, the table, then the notes."""
    lines = ["siku benchmark", ""]
    key_width = max(len(k) for k in machine)
    lines += [f"  {k:<{key_width}}  {v}" for k, v in machine.items()]
    lines += ["", *_table_row([name for name, _ in COLUMNS]), _rule("=")]
    for f in figures:
        lines += _table_row(_cells(f))
        lines.append(_rule())
    notes = [(f.benchmark, n) for f in figures for n in f.notes]
    if notes or extra:
        lines += ["", "Notes:"]
        lines += [f"  - {benchmark}: {note}" for benchmark, note in notes]
        lines += [f"  - {note}" for note in extra]
    return "\n".join(lines)


def write_json(
    path: Path,
    machine: dict[str, str],
    figures: Sequence[Figure],
    extra: Sequence[str],
    profile: str | None,
) -> None:
    doc = {
        "machine": machine,
        "figures": [f.as_json() for f in figures],
        "notes": list(extra),
        "profile": profile,
    }
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
