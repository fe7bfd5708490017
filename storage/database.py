"""The record database: aiosqlite over WAL, numbered SQL migrations, transactions.

Two connections, each with its own thread: `conn` does every write (and the reads that belong
with them), `reads` answers read-only questions that want the last commit and nothing newer:
the admin's status, console and metrics, public search, who holds a copy. WAL lets the reader
run while the writer commits, so a console poll or a reader's search does not queue behind
replication's fsync'd commits on the writer's thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import ParamSpec, TypeVar

import aiosqlite

from storage.errors import DatabaseError

__all__ = ["BUSY_TIMEOUT_MS", "Database", "migrations", "translate_errors"]

log = logging.getLogger(__name__)

# The daemon and a CLI ingest share the file; a writer waits this long for the other's commit.
BUSY_TIMEOUT_MS = 30_000


P = ParamSpec("P")
T = TypeVar("T")


def translate_errors(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorator: sqlite3 errors leave a storage method as DatabaseError (locked, disk full)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except sqlite3.Error as e:
            raise DatabaseError(f"{fn.__name__}: {e}") from e

    return wrapper


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every migration shipped in storage/migrations, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    if [n for n, _, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[n for n, _, _ in found]}")
    return found


def _statements(sql: str) -> list[str]:
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise RuntimeError("migration ends with an incomplete statement")
    return out


class Database:
    """Owns the connections. Writes go through `transaction()`; reads use `conn` (to see a
    transaction in progress) or `reads` (the last commit, never waiting for the writer)."""

    def __init__(
        self, conn: aiosqlite.Connection, path: Path, reads: aiosqlite.Connection | None = None
    ) -> None:
        self.conn = conn
        # Read-only (query_only); sees committed data only. Without it (a test's bare
        # Database), reads share `conn`.
        self.reads = reads if reads is not None else conn
        self.path = path
        # One writing connection: transactions of concurrent tasks take turns. (A read on
        # `conn` issued while another task's transaction is open sees that transaction's
        # writes; one on `reads` does not.)
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk before it is acknowledged (power loss included).
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as e:
            raise DatabaseError(f"cannot open the record database {path}: {e}") from e
        db = cls(conn, path)
        try:
            await db._migrate()
            # Opened after the migrations, so it never sees a schema older than the code's.
            reads = await aiosqlite.connect(path, isolation_level=None)
            db.reads = reads
            await reads.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await reads.execute("PRAGMA query_only = ON")
        except sqlite3.Error as e:
            await db.close()
            raise DatabaseError(f"cannot open the record database {path}: {e}") from e
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        try:
            if self.reads is not self.conn:
                await self.reads.close()
        finally:
            await self.conn.close()

    async def _migrate(self) -> None:
        # Take the write lock before reading the version, so two processes opening a new store
        # at once (daemon and CLI) cannot both apply the same migration.
        existed: bool | None = None  # whether the store had a schema when opened
        for number, name, sql in migrations():
            async with self.transaction():
                async with self.conn.execute("PRAGMA user_version") as cur:
                    row = await cur.fetchone()
                current = row[0] if row else 0
                if existed is None:
                    existed = current > 0
                if current >= number:
                    continue
                # An upgrade of an existing store is news for the admin; creating one is not.
                log.log(logging.INFO if existed else logging.DEBUG, "applying migration %s", name)
                for statement in _statements(sql):
                    await self.conn.execute(statement)
                await self.conn.execute(f"PRAGMA user_version = {number}")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (cancellation included)."""
        async with self._write_lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise DatabaseError(f"cannot start a transaction: {e}") from e
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            try:
                await self.conn.execute("COMMIT")
            except sqlite3.Error as e:
                await self.conn.execute("ROLLBACK")
                raise DatabaseError(f"commit failed: {e}") from e
