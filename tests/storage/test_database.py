"""storage.database.Database's two connections: the writer, and the read-only reader that sees
the last commit and never a transaction in progress."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage.database import Database


async def test_the_reader_sees_commits_only_and_cannot_write(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "catalogue.db")
    try:
        assert db.reads is not db.conn
        async with db.transaction() as c:
            await c.execute("CREATE TABLE t (x INTEGER)")
        entered, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with db.transaction() as c:
                await c.execute("INSERT INTO t VALUES (1)")
                entered.set()
                await release.wait()

        task = asyncio.create_task(writer())
        await entered.wait()
        # Mid-transaction: the writer's connection sees the row, the reader does not, and the
        # reader is not held up by the open write transaction.
        assert list(await db.conn.execute_fetchall("SELECT x FROM t")) == [(1,)]
        async with asyncio.timeout(2):
            assert list(await db.reads.execute_fetchall("SELECT x FROM t")) == []
        release.set()
        await task
        assert list(await db.reads.execute_fetchall("SELECT x FROM t")) == [(1,)]
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|query_only"):
            await db.reads.execute("INSERT INTO t VALUES (2)")
    finally:
        await db.close()
    with pytest.raises(ValueError, match="closed"):
        await db.reads.execute_fetchall("SELECT 1")
