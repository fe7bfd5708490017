"""Helpers for the catalogue-sync integration tests: real daemons read through their admin and
public HTTP APIs, and their stores read directly (read-only) as an auditor would."""

from __future__ import annotations

import csv
import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from node.demo import NodeSpec
from tests.peer_helpers import free_port_pair

__all__ = [
    "LIBRARIES",
    "Node",
    "catalogue_refs",
    "integrity",
    "poll",
    "specs",
    "store_ids",
    "store_items",
    "write_csv",
]

T = TypeVar("T")

# key, name, code, tier, region, parent: national; two provinces; a city; two of its counties
LIBRARIES: tuple[tuple[str, str, str, str, str, str | None], ...] = (
    ("national", "国家图书馆 National Library", "zg", "national", "000000", None),
    ("gansu", "甘肃省图书馆 Gansu", "gs", "provincial", "620000", None),
    ("guangdong", "广东省立中山图书馆 Guangdong", "gd", "provincial", "440000", None),
    ("jiuquan", "酒泉市图书馆 Jiuquan", "jq", "municipal", "620900", "gansu"),
    ("dunhuang", "敦煌市图书馆 Dunhuang", "dh", "county", "620982", "jiuquan"),
    ("guazhou", "瓜州县图书馆 Guazhou", "gz", "county", "620923", "jiuquan"),
)


def specs() -> list[NodeSpec]:
    taken: set[int] = set()
    return [NodeSpec(*row, port=free_port_pair(taken)) for row in LIBRARIES]


def poll(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.25,
    alive: Callable[[], None] | None = None,
) -> T:
    """Call `probe` until `done` accepts its result; fail with the last result at the deadline.
    `alive` (e.g. Processes.check_alive) is called every round, so a dead daemon fails fast."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {value!r}")
        time.sleep(interval)


@dataclass(frozen=True)
class Node:
    spec: NodeSpec
    home: Path
    node_id: str

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.spec.port + 1}"

    @property
    def token(self) -> str:
        return (self.home / "keys" / "admin.token").read_text(encoding="utf-8").strip()

    @property
    def db(self) -> Path:
        return self.home / "store" / "catalogue.db"

    def admin_json(self, path: str, timeout: float = 10) -> dict[str, Any]:
        request = urllib.request.Request(
            self.admin + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def sync(self) -> dict[str, Any]:
        return self.admin_json("/admin/api/v1/sync")

    def total(self) -> int | None:
        """Items in the node's reconciled set per its admin API; None if it does not answer."""
        try:
            return int(self.sync()["total"])
        except OSError:
            return None

    def up(self) -> bool:
        return self.total() is not None

    def connected(self) -> set[str]:
        """Node ids of the peers this node lists as connected."""
        peers = self.admin_json("/admin/api/v1/peers")["peers"]
        return {p["node_id"] for p in peers if p["node_id"] and p["state"] == "connected"}

    def public(self, path: str, timeout: float = 10) -> tuple[int, Any]:
        """(status, parsed JSON body) of a GET on the public listener."""
        try:
            with urllib.request.urlopen(self.spec.url + path, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read() or b"null")

    def search(self, query: str, per_page: int = 100) -> list[str]:
        """pids the public search API returns for `query` (first page)."""
        q = urllib.parse.urlencode({"q": query, "per_page": per_page})
        status, body = self.public(f"/api/v1/search?{q}")
        assert status == 200, body
        return [str(hit["pid"]) for hit in body["results"]]

    def record_status(self, pid: str) -> int:
        status, _ = self.public(f"/api/v1/records/{pid}")
        return status

    def log(self) -> str:
        return (self.home / "daemon.log").read_text(encoding="utf-8", errors="replace")


def _read_only(db: Path) -> sqlite3.Connection:
    # mode=ro: this process never writes to a daemon's store (not even a WAL checkpoint).
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA query_only = 1")
    return conn


def store_items(db: Path) -> dict[bytes, tuple[int, str, str]]:
    """id → (ts, kind, ref) of every row of `sync_items`: the set the node reconciles."""
    with _read_only(db) as conn:
        rows = conn.execute("SELECT id, ts, kind, ref FROM sync_items").fetchall()
    return {bytes(i): (int(t), str(k), str(r)) for i, t, k, r in rows}


def store_ids(db: Path) -> frozenset[bytes]:
    return frozenset(store_items(db))


def catalogue_refs(db: Path) -> tuple[set[str], set[str]]:
    """(pids in `records`, pids of catalogue rows in `sync_items`): equal in a consistent store,
    since both are written in one transaction."""
    with _read_only(db) as conn:
        records = {str(r[0]) for r in conn.execute("SELECT pid FROM records")}
        items = {
            str(r[0]) for r in conn.execute("SELECT ref FROM sync_items WHERE kind = 'catalogue'")
        }
    return records, items


def integrity(db: Path) -> list[str]:
    """PRAGMA integrity_check's rows (["ok"] for a sound database)."""
    with _read_only(db) as conn:
        return [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
