"""Imports point one way: protocol ← storage ← sync ← node (house style §1, §2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["protocol", "storage", "sync", "node"]
# Third-party and stdlib modules a layer must not touch, beyond the layers above it.
FORBIDDEN = {
    "protocol": {
        "asyncio",
        "aiohttp",
        "aiosqlite",
        "zeroconf",
        "uvloop",
        "socket",
        "logging",
        "os",
        "time",
        "random",
        "secrets",
        "sqlite3",
        "pathlib",
        "io",
        "threading",
    },
    "storage": {"aiohttp", "zeroconf", "uvloop"},
    "sync": {"aiohttp", "zeroconf", "uvloop", "aiosqlite", "sqlite3"},
    "node": set(),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(layer: str) -> list[str]:
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for lineno, name in _imports(path):
            top = name.split(".")[0]
            if top in above or top in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    return bad


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_one_way(layer: str) -> None:
    assert _violations(layer) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom storage.store import Store\n")
    names = [name for _, name in _imports(bad)]
    assert "storage.store" in names and "asyncio" in names
