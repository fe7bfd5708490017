"""Holdings on disk (storage/holdings.py, migration 0004, and what storage/catalogue.py does for
it): pages and their entries, the policy, this node's copies and their chunk references,
garbage collection, this node's own entries by page, and the key backfill of older stores.

Real SQLite and a real chunk store in tmp_path, records signed by real keys."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ark
from protocol.hlc import Hlc
from protocol.holdings import (
    KIND_HOLDINGS,
    KIND_POLICY,
    Holding,
    HoldingsPage,
    ReplicationPolicy,
    content_key,
    encode_entries,
    page_of,
    pid_key,
    sign_holdings,
    sign_policy,
)
from protocol.records import (
    CatalogueRecord,
    ChunkRef,
    FileEntry,
    LangString,
    decode_catalogue,
    encode_envelope,
    sign_catalogue,
)
from storage import database
from storage.catalogue import StoredRecord, _record_row
from storage.errors import DatabaseError
from storage.holdings import _page_range, holdings_ref
from storage.keys import int_key, key_int
from storage.store import Store, StoreSettings
from tests.sync.netbuild import NAAN, Library, TestNetwork

QUOTA = 1 << 30
COUNTY = 3


def now_ms() -> int:
    return int(time.time() * 1000)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture(scope="module")
def net() -> TestNetwork:
    return TestNetwork.build(1, 1, 1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(StoreSettings(tmp_path / "store", QUOTA))
    try:
        yield opened
    finally:
        await opened.close()


def new_pid(lib: Library) -> str:
    return str(ark.mint(NAAN, lib.code, secrets.token_bytes(8)))


def files_of(blobs: list[bytes]) -> tuple[FileEntry, ...]:
    return tuple(
        FileEntry(
            f"f{n}.bin", len(b), "application/octet-stream", sha(b), (ChunkRef(sha(b), len(b)),)
        )
        for n, b in enumerate(blobs)
    )


def record(
    lib: Library, pid: str, blobs: list[bytes], *, title: str = "文件", deleted: bool = False
) -> bytes:
    """A signed record of `lib` with one single-chunk file per blob, as an envelope."""
    body = CatalogueRecord(
        pid=pid,
        origin=lib.public_key,
        version=lib.next_version(now_ms()),
        dc={} if deleted else {"title": (LangString(title, "zh"),)},
        files=() if deleted else files_of(blobs),
        deleted=deleted,
    )
    return encode_envelope(sign_catalogue(body, lib.member.key))


def stored(envelope: bytes, *, held: bool) -> StoredRecord:
    signed, rec = decode_catalogue(envelope)
    return StoredRecord(signed, rec, held=held)


def ckey(envelope: bytes) -> bytes:
    return content_key(decode_catalogue(envelope)[1].files)


async def fetch(store: Store, sql: str, *args: object) -> list[tuple[Any, ...]]:
    async with store.db.conn.execute(sql, args) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def state(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row replication keeps, to compare before and after."""
    return {
        "records": await fetch(
            store, "SELECT pid, held, pid_key, content_key FROM records ORDER BY pid"
        ),
        "chunks": await fetch(store, "SELECT digest, size, refs FROM chunks ORDER BY digest"),
        "copies": await fetch(store, "SELECT pid, class, dark, bytes FROM copies ORDER BY pid"),
        "dirty": await fetch(store, "SELECT pid_key FROM holdings_dirty ORDER BY pid_key"),
        "items": await fetch(store, "SELECT id, kind, ref FROM sync_items ORDER BY seq"),
    }  # fmt: skip


async def refs(store: Store, blob: bytes) -> int | None:
    rows = await fetch(store, "SELECT refs FROM chunks WHERE digest = ?", sha(blob))
    return int(rows[0][0]) if rows else None


async def dirty(store: Store) -> set[bytes]:
    return set(await store.holdings.dirty_keys())


async def received(store: Store, lib: Library, blobs: list[bytes]) -> tuple[str, bytes]:
    """A record learned from the network (content elsewhere), its chunks fetched here."""
    pid = new_pid(lib)
    envelope = record(lib, pid, blobs)
    await store.catalogue.put([stored(envelope, held=False)])
    for b in blobs:
        store.chunks.put(sha(b), b)
    store.chunks.flush()
    return pid, envelope


async def copied(
    store: Store, lib: Library, blobs: list[bytes], klass: str = "preservation"
) -> tuple[str, bytes]:
    pid, envelope = await received(store, lib, blobs)
    ok = await store.holdings.commit_copy(
        pid, klass, dark=False, expected_content=ckey(envelope), chunks=store.chunks
    )
    assert ok
    return pid, envelope


async def own(store: Store, lib: Library, blobs: list[bytes]) -> tuple[str, bytes]:
    """The library's own ingest: chunks here, the record held, no copies row."""
    for b in blobs:
        store.chunks.put(sha(b), b)
    store.chunks.flush()
    pid = new_pid(lib)
    envelope = record(lib, pid, blobs)
    await store.catalogue.put([stored(envelope, held=True)])
    return pid, envelope


# --- keys ----------------------------------------------------------------------------------------


def test_keys_as_stored_round_trip_and_keep_order_within_a_sign() -> None:
    for k in (b"\x00" * 8, b"\x7f" + b"\xff" * 7, b"\x80" + b"\x00" * 7, b"\xff" * 8):
        assert int_key(key_int(k)) == k
    assert key_int(b"\x80" + b"\x00" * 7) == -(1 << 63)
    assert key_int(b"\xff" * 8) == -1


@pytest.mark.parametrize("pages", [64, 256, 1024, 4096])
def test_page_ranges_tile_the_key_space_in_page_order(pages: int) -> None:
    """Page p covers the unsigned keys [p·2^64/pages, (p+1)·2^64/pages), stored signed."""
    covered = 0
    for p in range(pages):
        lo, hi = _page_range(pages, p)
        assert lo <= hi
        assert hi - lo + 1 == (1 << 64) // pages
        assert int_key(lo)[:4] == int_key(hi)[:4] or pages < (1 << 32)
        assert page_of(int_key(lo), pages) == p and page_of(int_key(hi), pages) == p
        covered += hi - lo + 1
    assert covered == 1 << 64
    assert _page_range(pages, pages // 2)[0] == -(1 << 63)  # the top bit set: negative keys
    assert _page_range(pages, pages - 1)[1] == -1


@settings(max_examples=500, deadline=None)
@given(key=st.binary(min_size=8, max_size=8), pages=st.sampled_from([64, 256, 1024, 4096]))
def test_property_a_key_is_in_the_range_of_its_page_and_no_other(key: bytes, pages: int) -> None:
    page = page_of(key, pages)
    lo, hi = _page_range(pages, page)
    assert lo <= key_int(key) <= hi
    for other in {(page - 1) % pages, (page + 1) % pages} - {page}:
        lo, hi = _page_range(pages, other)
        assert not lo <= key_int(key) <= hi


async def test_records_carry_their_pid_and_content_keys(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    pid, envelope = await own(store, lib, [b"one", b"two"])
    rows = await fetch(store, "SELECT pid_key, content_key FROM records WHERE pid = ?", pid)
    assert rows == [(key_int(pid_key(pid)), key_int(ckey(envelope)))]
    (resource,) = await store.holdings.resources()
    assert resource.pid == pid
    assert resource.pid_key == pid_key(pid)
    assert resource.content_key == ckey(envelope)
    assert resource.origin == lib.public_key
    assert resource.size == 6
    assert resource.held is True


async def test_resources_are_the_live_records_with_content(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    with_content, _ = await own(store, lib, [b"x"])
    elsewhere, _ = await received(store, lib, [b"y"])
    empty = new_pid(lib)
    await store.catalogue.put([stored(record(lib, empty, []), held=True)])
    gone, _ = await own(store, lib, [b"z"])
    await store.catalogue.put([stored(record(lib, gone, [], deleted=True), held=True)])
    got = {r.pid: r.held for r in await store.holdings.resources()}
    assert got == {with_content: True, elsewhere: False}


# --- pages and the policy ------------------------------------------------------------------------


def page_record(
    holder: Library, page: int, pids: list[str], version: Hlc, *, pages: int = 64, verified: int = 7
) -> tuple[bytes, HoldingsPage]:
    entries = [Holding(pid_key(p), pid_key(p)[::-1], verified) for p in pids]
    body = HoldingsPage(holder.public_key, page, pages, version, encode_entries(entries))
    return encode_envelope(sign_holdings(body, holder.member.key)), body


def pids_in_page(page: int, n: int, pages: int = 64, prefix: str = "p") -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        pid = f"ark:/{NAAN}/{prefix}{i}"
        if page_of(pid_key(pid), pages) == page:
            out.append(pid)
        i += 1
    return out


def page_row(
    envelope: bytes, body: HoldingsPage
) -> tuple[bytes, bytes, int, int, int, list[Holding]]:
    v = body.version
    return envelope, body.holder, body.page, v.wall_ms, v.counter, list(body)


async def test_put_pages_keeps_envelope_entries_and_one_item(
    store: Store, net: TestNetwork
) -> None:
    holder = net.libraries[COUNTY]
    pids = pids_in_page(40, 3)  # page 40 of 64: keys with the top bit set
    envelope, body = page_record(holder, 40, pids, Hlc(1_000, 3))
    await store.holdings.put_pages([page_row(envelope, body)], local=False)
    assert await store.holdings.page_envelope(holder.public_key, 40) == envelope
    assert await store.holdings.page_envelope(holder.public_key, 41) is None
    assert await store.holdings.page_envelope(net.libraries[0].public_key, 40) is None
    for pid in pids:
        assert await store.holdings.holders_of(pid) == [(holder.public_key, pid_key(pid)[::-1], 7)]
    assert await store.holdings.holders() == {
        pid_key(p): [(holder.public_key, pid_key(p)[::-1], 7)] for p in pids
    }
    ref = holdings_ref(holder.public_key, 40)
    assert ref == f"holdings/{holder.public_key.hex()}/40"
    items = await fetch(store, "SELECT id, ts, kind, ref, local FROM sync_items")
    assert items == [(sha(envelope), 1_000, KIND_HOLDINGS, ref, 0)]
    assert await store.sync.envelopes([sha(envelope)], 1 << 20) == [envelope]
    assert await store.sync.counts() == {KIND_HOLDINGS: 1}
    assert await store.holdings.own_pages(holder.public_key) == {40: (1_000, 3, envelope)}
    assert await store.holdings.own_pages(net.libraries[0].public_key) == {}


async def test_a_page_replaces_its_entries_and_item(store: Store, net: TestNetwork) -> None:
    holder, other = net.libraries[COUNTY], net.libraries[0]
    pids = pids_in_page(3, 4)
    old, old_body = page_record(holder, 3, pids[:3], Hlc(1_000))
    others, others_body = page_record(other, 3, pids[:2], Hlc(500))
    await store.holdings.put_pages(
        [page_row(old, old_body), page_row(others, others_body)], local=False
    )
    new, new_body = page_record(holder, 3, pids[2:], Hlc(2_000), verified=9)
    await store.holdings.put_pages([page_row(new, new_body)], local=True)
    assert await store.holdings.page_envelope(holder.public_key, 3) == new
    got = await store.holdings.holders()
    assert got == {
        pid_key(pids[0]): [(other.public_key, pid_key(pids[0])[::-1], 7)],
        pid_key(pids[1]): [(other.public_key, pid_key(pids[1])[::-1], 7)],
        pid_key(pids[2]): [(holder.public_key, pid_key(pids[2])[::-1], 9)],
        pid_key(pids[3]): [(holder.public_key, pid_key(pids[3])[::-1], 9)],
    }
    items = await fetch(store, "SELECT id, ts, ref, local FROM sync_items ORDER BY seq")
    assert items == [
        (sha(others), 500, holdings_ref(other.public_key, 3), 0),
        (sha(new), 2_000, holdings_ref(holder.public_key, 3), 1),
    ]
    # An empty page withdraws every entry of the page.
    empty, empty_body = page_record(holder, 3, [], Hlc(3_000))
    await store.holdings.put_pages([page_row(empty, empty_body)], local=False)
    assert set(await store.holdings.holders()) == {pid_key(pids[0]), pid_key(pids[1])}
    assert await store.sync.have([sha(new), sha(empty)]) == {sha(empty)}


async def test_put_pages_is_one_transaction(store: Store, net: TestNetwork) -> None:
    holder = net.libraries[COUNTY]
    first, first_body = page_record(holder, 1, pids_in_page(1, 2), Hlc(1_000))
    await store.holdings.put_pages([page_row(first, first_body)], local=False)
    before = await state(store)
    newer, newer_body = page_record(holder, 1, pids_in_page(1, 1), Hlc(2_000))
    second, second_body = page_record(holder, 2, pids_in_page(2, 2), Hlc(2_000))
    await store.db.conn.execute(
        "CREATE TEMP TRIGGER fail_second BEFORE INSERT ON main.holding_pages"
        " WHEN NEW.page = 2 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    with pytest.raises(DatabaseError, match="injected failure"):
        await store.holdings.put_pages(
            [page_row(newer, newer_body), page_row(second, second_body)], local=False
        )
    await store.db.conn.execute("DROP TRIGGER fail_second")
    assert await state(store) == before
    assert await store.holdings.page_envelope(holder.public_key, 1) == first
    assert len(await store.holdings.holders()) == 2


async def test_policy_is_one_row_and_one_item(store: Store, net: TestNetwork) -> None:
    assert await store.holdings.policy_envelope() is None
    first = encode_envelope(sign_policy(ReplicationPolicy(net.network, Hlc(1_000)), net.root.key))
    second = encode_envelope(
        sign_policy(ReplicationPolicy(net.network, Hlc(2_000), 4), net.root.key)
    )
    await store.holdings.put_policy(first, 1_000, local=False)
    assert await store.holdings.policy_envelope() == first
    await store.holdings.put_policy(second, 2_000, local=True)
    assert await store.holdings.policy_envelope() == second
    items = await fetch(store, "SELECT id, ts, kind, ref, local FROM sync_items")
    assert items == [(sha(second), 2_000, KIND_POLICY, "policy", 1)]
    assert await store.sync.envelopes([sha(first), sha(second)], 1 << 20) == [second]


async def test_sync_backfill_counts_pages_and_the_policy(store: Store, net: TestNetwork) -> None:
    """A store whose items are complete needs no backfill, pages and policy included."""
    holder = net.libraries[COUNTY]
    envelope, body = page_record(holder, 0, pids_in_page(0, 1), Hlc(1_000))
    await store.holdings.put_pages([page_row(envelope, body)], local=False)
    policy = encode_envelope(sign_policy(ReplicationPolicy(net.network, Hlc(1)), net.root.key))
    await store.holdings.put_policy(policy, 1, local=False)
    await own(store, holder, [b"own"])
    before = await state(store)
    assert await store.sync.backfill() == 0
    assert await state(store) == before


# --- copies --------------------------------------------------------------------------------------


async def test_commit_copy_holds_counts_and_marks(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    blobs = [b"alpha", b"beta", b"alpha"]  # a chunk twice counts once
    pid, envelope = await received(store, lib, blobs)
    assert await store.catalogue.is_held(pid) is False
    assert await refs(store, b"alpha") is None
    await store.holdings.clear_dirty(await store.holdings.dirty_keys())
    before_ms = now_ms()
    ok = await store.holdings.commit_copy(
        pid, "subscription", dark=True, expected_content=ckey(envelope), chunks=store.chunks
    )
    assert ok is True
    assert await store.catalogue.is_held(pid) is True
    assert (await refs(store, b"alpha"), await refs(store, b"beta")) == (1, 1)
    copy = await store.holdings.copy(pid)
    assert copy is not None
    assert (copy.pid, copy.klass, copy.dark, copy.size) == (pid, "subscription", True, 14)
    assert before_ms <= copy.verified_ms == copy.stored_ms == copy.last_used_ms <= now_ms()
    assert await store.holdings.copies() == [copy]
    assert await dirty(store) == {pid_key(pid)}


async def test_commit_copy_shares_chunks_with_own_content(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    await own(store, lib, [b"shared"])
    assert await refs(store, b"shared") == 1
    pid, _ = await copied(store, lib, [b"shared", b"mine"])
    assert (await refs(store, b"shared"), await refs(store, b"mine")) == (2, 1)
    assert await store.holdings.drop_copy(pid) is True
    assert (await refs(store, b"shared"), await refs(store, b"mine")) == (1, 0)


async def test_commit_copy_refuses_changing_nothing(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    pid, envelope = await received(store, lib, [b"one", b"two"])
    own_pid, own_envelope = await own(store, lib, [b"three"])
    held_copy, held_envelope = await copied(store, lib, [b"four"])
    withdrawn, withdrawn_envelope = await received(store, lib, [b"five"])
    await store.catalogue.put([stored(record(lib, withdrawn, [], deleted=True), held=False)])
    missing, missing_envelope = await received(store, lib, [b"six", b"seven"])
    store.chunks.remove(sha(b"seven"))
    before = await state(store)

    async def commit(p: str, expected: bytes) -> bool:
        return await store.holdings.commit_copy(
            p, "preservation", dark=False, expected_content=expected, chunks=store.chunks
        )

    assert await commit(pid, ckey(record(lib, pid, [b"one", b"two!"]))) is False  # changed
    assert await commit(new_pid(lib), ckey(envelope)) is False  # unknown
    assert await commit(own_pid, ckey(own_envelope)) is False  # the library's own
    assert await commit(held_copy, ckey(held_envelope)) is False  # already a copy
    assert await commit(withdrawn, ckey(withdrawn_envelope)) is False
    assert await commit(missing, ckey(missing_envelope)) is False
    assert await state(store) == before
    with pytest.raises(ValueError, match="class"):
        await store.holdings.commit_copy(
            pid, "hoard", dark=False, expected_content=ckey(envelope), chunks=store.chunks
        )
    assert await state(store) == before
    assert await commit(pid, ckey(envelope)) is True


async def test_drop_copy_reverses_commit(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    pid, envelope = await received(store, lib, [b"a", b"b"])
    await store.holdings.clear_dirty(await store.holdings.dirty_keys())
    before = await state(store)
    assert await store.holdings.commit_copy(
        pid, "cache", dark=False, expected_content=ckey(envelope), chunks=store.chunks
    )
    assert await store.holdings.drop_copy(pid) is True
    after = await state(store)
    assert after["records"] == before["records"]
    assert after["copies"] == []
    assert after["chunks"] == sorted([(sha(b"a"), 1, 0), (sha(b"b"), 1, 0)])
    assert after["dirty"] == [(key_int(pid_key(pid)),)]
    assert after["items"] == before["items"]
    assert await store.holdings.drop_copy(pid) is False  # dropped already
    assert await state(store) == after


async def test_drop_copy_never_drops_the_librarys_own_content(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[COUNTY]
    pid, _ = await own(store, lib, [b"ours"])
    before = await state(store)
    assert await store.holdings.drop_copy(pid) is False
    assert await store.holdings.drop_copy(new_pid(lib)) is False
    assert await state(store) == before
    assert await store.catalogue.is_held(pid)


async def test_reclassify_and_touch(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    pid, _ = await copied(store, lib, [b"c"], "cache")
    first = await store.holdings.copy(pid)
    assert first is not None and (first.klass, first.dark) == ("cache", False)
    await store.holdings.reclassify(pid, "preservation", dark=True)
    got = await store.holdings.copy(pid)
    assert got is not None and (got.klass, got.dark) == ("preservation", True)
    with pytest.raises(ValueError):
        await store.holdings.reclassify(pid, "museum", dark=False)
    await asyncio.sleep(0.002)
    await store.holdings.touch({pid: first.last_used_ms + 1000})
    touched = await store.holdings.copy(pid)
    assert touched is not None and touched.last_used_ms > first.last_used_ms
    assert touched.stored_ms == first.stored_ms
    assert await store.holdings.copy(new_pid(lib)) is None


@pytest.mark.parametrize("write", ["touch", "reclassify"])
async def test_copy_updates_do_not_commit_another_writers_transaction(
    store: Store, net: TestNetwork, write: str
) -> None:
    """touch and reclassify write outside Database.transaction and call commit(): run while
    another coroutine's transaction is open (commit_copy awaits a thread inside its own), they
    commit that transaction half done, and its rollback then fails and undoes nothing."""
    lib = net.libraries[COUNTY]
    pid, _ = await copied(store, lib, [b"t"], "cache")

    class Injected(Exception):
        pass

    raised: BaseException | None = None
    update: asyncio.Task[None] | None = None
    try:
        async with store.db.transaction() as conn:
            await conn.execute("INSERT INTO holdings_dirty (pid_key) VALUES (?)", (12345,))
            # Another coroutine's write, while this transaction is open: it must wait for it.
            if write == "touch":
                update = asyncio.create_task(store.holdings.touch({pid: 1}))
            else:
                update = asyncio.create_task(
                    store.holdings.reclassify(pid, "subscription", dark=False)
                )
            await asyncio.sleep(0.05)
            raise Injected
    except BaseException as e:
        raised = e
    assert update is not None
    await asyncio.wait_for(update, 10)  # then it runs, in its own transaction
    rows = await fetch(store, "SELECT pid_key FROM holdings_dirty WHERE pid_key = 12345")
    assert rows == [], "the other writer's rolled-back insert was committed"
    assert isinstance(raised, Injected), f"rollback failed: {raised!r}"


async def test_touch_during_commit_copy_leaves_commit_copy_whole(
    store: Store, net: TestNetwork
) -> None:
    """The real interleaving: a reader touches a copy while commit_copy checks its chunks (in a
    thread, inside its transaction). commit_copy must still succeed as one transaction."""
    lib = net.libraries[COUNTY]
    touched, _ = await copied(store, lib, [b"read"], "cache")
    pid, envelope = await received(store, lib, [b"committing"])
    checking = threading.Event()
    go_on = threading.Event()
    real_has = store.chunks.has

    class SlowChunks:
        def has(self, digest: bytes) -> bool:
            checking.set()
            go_on.wait(10)
            return real_has(digest)

    task: asyncio.Task[bool] = asyncio.create_task(
        store.holdings.commit_copy(
            pid, "preservation", dark=False, expected_content=ckey(envelope),
            chunks=SlowChunks(),  # type: ignore[arg-type]
        )
    )  # fmt: skip
    await asyncio.to_thread(checking.wait, 10)
    try:
        await store.holdings.touch({touched: 10**13})
    finally:
        go_on.set()
    assert await task is True
    assert await store.holdings.copy(pid) is not None


async def test_a_new_version_with_other_content_ends_the_copy(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[COUNTY]
    pid, _ = await copied(store, lib, [b"old-1", b"old-2"])
    await store.holdings.clear_dirty(await store.holdings.dirty_keys())
    newer = record(lib, pid, [b"old-1", b"new-2"])
    await store.catalogue.put([stored(newer, held=False)])
    assert await store.catalogue.is_held(pid) is False
    assert await store.holdings.copy(pid) is None
    assert (await refs(store, b"old-1"), await refs(store, b"old-2")) == (0, 0)
    assert await refs(store, b"new-2") is None
    assert await dirty(store) == {pid_key(pid)}
    rows = await fetch(store, "SELECT pid_key, content_key FROM records WHERE pid = ?", pid)
    assert rows == [(key_int(pid_key(pid)), key_int(ckey(newer)))]


async def test_a_metadata_edit_keeps_the_copy(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    pid, envelope = await copied(store, lib, [b"keep"], "subscription")
    copy = await store.holdings.copy(pid)
    await store.holdings.clear_dirty(await store.holdings.dirty_keys())
    edited = record(lib, pid, [b"keep"], title="新题名")
    await store.catalogue.put([stored(edited, held=False)])
    assert ckey(edited) == ckey(envelope)
    assert await store.catalogue.is_held(pid) is True
    assert await store.holdings.copy(pid) == copy
    assert await refs(store, b"keep") == 1
    # Still marked: the page is republished (same entry), harmless.
    assert await dirty(store) == {pid_key(pid)}


async def test_a_withdrawal_ends_the_copy(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    pid, _ = await copied(store, lib, [b"gone"])
    await store.holdings.clear_dirty(await store.holdings.dirty_keys())
    await store.catalogue.put([stored(record(lib, pid, [], deleted=True), held=False)])
    assert await store.holdings.copy(pid) is None
    assert await store.catalogue.is_held(pid) is False
    assert await refs(store, b"gone") == 0
    assert await dirty(store) == {pid_key(pid)}
    assert await store.holdings.drop_copy(pid) is False


async def test_records_from_elsewhere_mark_nothing(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    await received(store, lib, [b"far"])
    assert await dirty(store) == set()


# --- garbage -------------------------------------------------------------------------------------


async def test_collect_garbage_removes_unreferenced_chunks_only(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[COUNTY]
    await own(store, lib, [b"shared", b"own"])
    pid, _ = await copied(store, lib, [b"shared", b"copy-only", b"protected"])
    assert await store.holdings.collect_garbage(store.chunks) == (0, 0)
    assert await store.holdings.drop_copy(pid)
    freed = await store.holdings.collect_garbage(store.chunks, protected=[sha(b"protected")])
    assert freed == (1, len(b"copy-only"))
    assert not store.chunks.has(sha(b"copy-only"))
    assert await refs(store, b"copy-only") is None
    for kept in (b"shared", b"own", b"protected"):
        assert store.chunks.has(sha(kept)), kept
    assert await refs(store, b"protected") == 0
    assert await store.holdings.collect_garbage(store.chunks) == (1, len(b"protected"))
    assert not store.chunks.has(sha(b"protected"))
    assert await store.holdings.collect_garbage(store.chunks) == (0, 0)


async def _sweep_all(store: Store, protected: list[bytes], older_than: float) -> tuple[int, int]:
    removed = size = 0
    for top in range(256):
        n, b = await store.holdings.sweep_orphans(store.chunks, top, protected, older_than)
        removed, size = removed + n, size + b
    return removed, size


async def test_the_sweep_removes_old_chunk_files_no_row_refers_to(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[COUNTY]
    await own(store, lib, [b"own"])
    pid, _ = await copied(store, lib, [b"copied"])
    await store.holdings.drop_copy(pid)  # its row stays (refs 0) until the collector runs
    # A cancelled transfer's chunks (no row), one of them needed again by a planned transfer,
    # and one just written.
    for blob in (b"orphan-1", b"orphan-22", b"replanned", b"fresh"):
        store.chunks.put(sha(blob), blob)
    hour_ago = time.time() - 3600
    for blob in (b"own", b"copied", b"orphan-1", b"orphan-22", b"replanned"):
        path = store.chunks.root + "/" + sha(blob).hex()[:2] + "/" + sha(blob).hex()[2:4]
        os.utime(f"{path}/{sha(blob).hex()}", (hour_ago, hour_ago))
    # Needed again since: touched by a transfer that found it, or stored again.
    for blob in (b"again-touched", b"again-stored"):
        store.chunks.put(sha(blob), blob)
        path = store.chunks.root + "/" + sha(blob).hex()[:2] + "/" + sha(blob).hex()[2:4]
        os.utime(f"{path}/{sha(blob).hex()}", (hour_ago, hour_ago))
    store.chunks.touch(sha(b"again-touched"))
    store.chunks.put(sha(b"again-stored"), b"again-stored")
    store.chunks.touch(sha(b"never-stored"))  # nothing to touch: no error, no file
    assert await _sweep_all(store, [sha(b"replanned")], hour_ago + 60) == (2, 8 + 9)
    for gone in (b"orphan-1", b"orphan-22", b"never-stored"):
        assert not store.chunks.has(sha(gone)), gone
    for kept in (b"own", b"copied", b"replanned", b"fresh", b"again-touched", b"again-stored"):
        assert store.chunks.has(sha(kept)), kept
    assert await _sweep_all(store, [], hour_ago + 60) == (1, len(b"replanned"))
    assert await _sweep_all(store, [], time.time() + 60) == (
        3,
        len(b"fresh") + len(b"again-touched") + len(b"again-stored"),
    )
    assert await _sweep_all(store, [], time.time() + 60) == (0, 0)
    assert await refs(store, b"own") == 1 and await refs(store, b"copied") == 0
    with pytest.raises(ValueError, match="0-255"):
        await store.holdings.sweep_orphans(store.chunks, 256, [], time.time())


async def test_collect_garbage_respects_its_limit_and_missing_files(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[COUNTY]
    blobs = [b"g%d" % i for i in range(5)]
    pid, _ = await copied(store, lib, blobs)
    await store.holdings.drop_copy(pid)
    store.chunks.remove(sha(blobs[0]))  # already gone: its row still goes
    total = 0
    rounds = 0
    while True:
        removed, _ = await store.holdings.collect_garbage(store.chunks, limit=2)
        rounds += 1
        if (removed, _) == (0, 0):
            break
        total += removed
    assert total == 4
    assert rounds == 4  # 2 + 2 + 1 rows, then nothing
    assert await fetch(store, "SELECT count(*) FROM chunks") == [(0,)]
    assert all(not store.chunks.has(sha(b)) for b in blobs)


async def test_collect_garbage_keeps_a_chunk_referenced_meanwhile(
    store: Store, net: TestNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk whose count rises between the collector's read and its delete (an ingest of the
    same bytes in between) keeps its row: it must keep its file too."""
    lib = net.libraries[COUNTY]
    pid, _ = await copied(store, lib, [b"contested"])
    await store.holdings.drop_copy(pid)
    real = store.db.transaction

    @asynccontextmanager
    async def racing() -> AsyncIterator[Any]:
        await store.db.conn.execute(
            "UPDATE chunks SET refs = refs + 1 WHERE digest = ?", (sha(b"contested"),)
        )
        async with real() as conn:
            yield conn

    monkeypatch.setattr(store.db, "transaction", racing)
    await store.holdings.collect_garbage(store.chunks)
    monkeypatch.undo()
    assert await refs(store, b"contested") == 1
    assert store.chunks.has(sha(b"contested")), "a referenced chunk's file was deleted"


# --- this node's own entries ---------------------------------------------------------------------


async def test_own_entries_lists_held_live_records_by_page(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    rng = random.Random(4)
    held: dict[str, bytes] = {}
    for i in range(150):
        blob = b"own-%d" % i
        if i % 3 == 0:
            pid, envelope = await copied(store, lib, [blob])
        else:
            pid, envelope = await own(store, lib, [blob])
        held[pid] = envelope
    for i in range(20):
        await received(store, lib, [b"not-held-%d" % i])
    gone, _ = await own(store, lib, [b"gone"])
    await store.catalogue.put([stored(record(lib, gone, [], deleted=True), held=True)])
    empty = new_pid(lib)
    await store.catalogue.put([stored(record(lib, empty, []), held=True)])
    assert sum(1 for p in held if pid_key(p)[0] & 0x80) > 40  # both halves of the key space
    for pages in (64, 4096):
        by_page: dict[int, set[bytes]] = {}
        for p in held:
            by_page.setdefault(page_of(pid_key(p), pages), set()).add(pid_key(p))
        checked = list(by_page) + rng.sample(range(pages), 20)
        if pages == 64:
            checked = list(range(64))
        for page in checked:
            entries = await store.holdings.own_entries(pages, page)
            assert {h.pid_key for h in entries} == by_page.get(page, set()), (pages, page)
            for h in entries:
                assert page_of(h.pid_key, pages) == page
    # Content keys and verification times: a copy's from its verification, the library's own
    # from when the record was stored.
    copies = {c.pid: c for c in await store.holdings.copies()}
    stored_at = dict(await fetch(store, "SELECT pid, stored_at FROM records"))
    for pid, envelope in held.items():
        (entry,) = [
            h for h in await store.holdings.own_entries(64, page_of(pid_key(pid), 64))
            if h.pid_key == pid_key(pid)
        ]  # fmt: skip
        assert entry.content_key == ckey(envelope)
        expected_ms = copies[pid].verified_ms if pid in copies else stored_at[pid]
        assert entry.verified_s == expected_ms // 1000


async def test_own_entries_make_a_valid_signed_page(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    for i in range(40):
        await own(store, lib, [b"page-%d" % i])
    for page in range(64):
        entries = await store.holdings.own_entries(64, page)
        body = HoldingsPage(lib.public_key, page, 64, Hlc(1), encode_entries(entries))
        assert len(body) == len(entries)
        sign_holdings(body, lib.member.key)


# --- dirty keys ----------------------------------------------------------------------------------


async def test_dirty_keys_and_clear(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[COUNTY]
    pids = [(await own(store, lib, [b"d%d" % i]))[0] for i in range(5)]
    keys = {pid_key(p) for p in pids}
    assert await dirty(store) == keys
    assert len(await store.holdings.dirty_keys(limit=2)) == 2
    await store.holdings.clear_dirty([pid_key(pids[0]), pid_key(pids[1])])
    assert await dirty(store) == keys - {pid_key(pids[0]), pid_key(pids[1])}
    await store.holdings.clear_dirty([])
    await store.holdings.clear_dirty(list(keys))
    assert await dirty(store) == set()


# --- stores made before replication ------------------------------------------------------------


async def _schema_3_store(root: Path, records: list[bytes], held: list[bool]) -> None:
    """A store as a node before replication left it: migrations 1-3, rows as that code wrote
    them (no keys, no holdings tables)."""
    await asyncio.to_thread(root.mkdir, parents=True)
    shipped = database.migrations()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(database, "migrations", lambda: shipped[:3])
        db = await database.Database.open(root / "catalogue.db")
    try:
        async with db.transaction() as conn:
            for envelope, h in zip(records, held, strict=True):
                row = _record_row(stored(envelope, held=h), now_ms())[:16]  # without the keys
                await conn.execute(
                    "INSERT INTO records (pid, kind, origin, hlc_wall, hlc_counter, deleted,"
                    " collection, access, embargo_until, title, summary, content_size,"
                    " file_count, envelope, stored_at, held)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                await conn.execute(
                    "INSERT INTO sync_items (id, ts, kind, ref, local) VALUES (?, ?, ?, ?, 0)",
                    (sha(envelope), row[3], "catalogue", row[0]),
                )
    finally:
        await db.close()


async def test_a_store_made_before_replication_gets_its_keys_on_open(
    tmp_path: Path, net: TestNetwork
) -> None:
    lib = net.libraries[COUNTY]
    n = 1_100  # more than one backfill batch
    envelopes = [record(lib, new_pid(lib), [b"old-%d" % i]) for i in range(n)]
    held = [i % 2 == 0 for i in range(n)]
    root = tmp_path / "store"
    await _schema_3_store(root, envelopes, held)
    with sqlite3.connect(root / "catalogue.db") as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (3,)
    settings_ = StoreSettings(root, QUOTA)
    opened = await Store.open(settings_)
    try:
        rows = dict(
            (pid, (pk, ck))
            for pid, pk, ck in await fetch(opened, "SELECT pid, pid_key, content_key FROM records")
        )
        assert len(rows) == n
        for envelope in envelopes:
            r = decode_catalogue(envelope)[1]
            assert rows[r.pid] == (key_int(pid_key(r.pid)), key_int(content_key(r.files)))
        assert await dirty(opened) == {pid_key(decode_catalogue(e)[1].pid) for e in envelopes}
        assert len(await opened.holdings.resources()) == n
        page0 = {
            pid_key(decode_catalogue(e)[1].pid)
            for e, h in zip(envelopes, held, strict=True)
            if h and page_of(pid_key(decode_catalogue(e)[1].pid), 64) == 0
        }
        assert {h.pid_key for h in await opened.holdings.own_entries(64, 0)} == page0
        assert await opened.holdings.backfill_keys() == 0
    finally:
        await opened.close()
    again = await Store.open(settings_)
    try:
        assert await again.holdings.backfill_keys() == 0
    finally:
        await again.close()
