"""Check a node's store the way an auditor would: every visible resource complete and valid."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from protocol.records import decode_catalogue
from storage.store import Store, StoreSettings


def temp_files(home: Path) -> list[Path]:
    """Whatever is left under the chunk store's temp folder (files or per-writer folders)."""
    tmp = home / "store" / "chunks" / "tmp"
    return sorted(tmp.rglob("*")) if tmp.exists() else []


async def _audit(home: Path) -> tuple[int, list[str]]:
    """(live records, problems). Opening the store is the restart: it clears temp files."""
    store = await Store.open(StoreSettings(home / "store", 1 << 40))
    problems: list[str] = []
    live = 0
    try:
        async with store.db.conn.execute("PRAGMA integrity_check") as cur:
            row = await cur.fetchone()
        if row is None or row[0] != "ok":
            problems.append(f"sqlite integrity_check: {row}")
        async with store.db.conn.execute("SELECT pid, envelope, deleted FROM records") as cur:
            rows = await cur.fetchall()
        for pid, envelope, deleted in rows:
            _, record = decode_catalogue(bytes(envelope))  # signature re-verified
            if deleted:
                continue
            live += 1
            for entry in record.files:
                try:
                    await store.verify_file(entry)
                except Exception as e:
                    problems.append(f"{pid} {entry.path}: {type(e).__name__}: {e}")
    finally:
        await store.close()
    return live, problems


def audit(home: Path) -> tuple[int, list[str]]:
    return asyncio.run(_audit(home))


def record_count(home: Path) -> int:
    with sqlite3.connect(home / "store" / "catalogue.db") as conn:
        return int(conn.execute("SELECT count(*) FROM records WHERE deleted = 0").fetchone()[0])
