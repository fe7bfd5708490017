"""The reconciled set on disk (storage/syncindex.py, sync_items): one item per record held, kept
by the record tables' own transactions, read by sync; backfilled for stores made before it.

Real SQLite in tmp_path, records signed by real keys (tests/sync/netbuild.py)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol import ark
from protocol.hlc import Hlc
from protocol.membership import (
    KIND_CERTIFICATE,
    KIND_REVOCATION,
    Revocation,
    decode_certificate,
    decode_revocation,
    sign_revocation,
)
from protocol.records import (
    KIND_CATALOGUE,
    CatalogueRecord,
    ChunkRef,
    FileEntry,
    LangString,
    decode_catalogue,
    decode_envelope,
    encode_envelope,
    sign_catalogue,
)
from storage import database
from storage.catalogue import StoredRecord, _record_row
from storage.errors import DatabaseError
from storage.store import Store, StoreSettings
from tests.sync.netbuild import NAAN, Library, TestNetwork, catalogue_record, deletion

QUOTA = 1 << 30


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def net() -> TestNetwork:
    return TestNetwork.build(1, 1, 1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(StoreSettings(tmp_path / "store", QUOTA))
    try:
        yield opened
    finally:
        await opened.close()


def stored(envelope: bytes, *, held: bool = True) -> StoredRecord:
    signed, record = decode_catalogue(envelope)
    return StoredRecord(signed, record, held=held)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def record_with_files(lib: Library, version: Hlc, digests: list[bytes], pid: str) -> bytes:
    files = tuple(
        FileEntry(f"f{n}.pdf", 100, "application/pdf", sha(d), (ChunkRef(d, 100),))
        for n, d in enumerate(digests)
    )
    record = CatalogueRecord(
        pid=pid,
        origin=lib.public_key,
        version=version,
        dc={"title": (LangString("文件", "zh"),)},
        files=files,
    )
    return encode_envelope(sign_catalogue(record, lib.member.key))


async def rows(store: Store) -> list[tuple[int, bytes, int, str, str]]:
    async with store.db.conn.execute(
        "SELECT seq, id, ts, kind, ref FROM sync_items ORDER BY seq"
    ) as cur:
        return [
            (int(s), bytes(i), int(t), str(k), str(r)) for s, i, t, k, r in await cur.fetchall()
        ]


async def check_consistent(store: Store) -> int:
    """Every record and membership row has exactly one item, id = sha256(envelope), ts = the
    record's own time; no item without its record. Returns the number of items."""
    expected: dict[tuple[str, str], tuple[bytes, int]] = {}
    async with store.db.conn.execute("SELECT pid, hlc_wall, envelope FROM records") as cur:
        for pid, wall, envelope in await cur.fetchall():
            expected[(KIND_CATALOGUE, pid)] = (sha(bytes(envelope)), int(wall))
    async with store.db.conn.execute(
        "SELECT kind, subject, signer, envelope FROM membership"
    ) as cur:
        for kind, subject, signer, envelope in await cur.fetchall():
            signed = decode_envelope(bytes(envelope))
            if kind == KIND_CERTIFICATE:
                ts = decode_certificate(signed).not_before_ms
            else:
                ts = decode_revocation(signed).revoked_ms
            ref = f"{kind}/{bytes(subject).hex()}/{bytes(signer).hex()}"
            expected[(kind, ref)] = (sha(bytes(envelope)), ts)
    items = await rows(store)
    got = {(kind, ref): (id_, ts) for _, id_, ts, kind, ref in items}
    assert len(got) == len(items), "two items for one record"
    assert got == expected
    return len(items)


# --- one item per record --------------------------------------------------------------------------


async def test_every_catalogue_put_keeps_one_item_per_record(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    envelopes = [catalogue_record(lib, now_ms()) for _ in range(7)]
    await store.catalogue.put([stored(e) for e in envelopes[:3]])
    await store.catalogue.put([stored(e) for e in envelopes[3:]])
    assert await check_consistent(store) == 7
    by_id = {id_: (ts, ref) for _, id_, ts, _, ref in await rows(store)}
    for envelope in envelopes:
        record = decode_catalogue(envelope)[1]
        assert by_id[sha(envelope)] == (record.version.wall_ms, record.pid)
    assert await store.sync.counts() == {KIND_CATALOGUE: 7}


async def test_a_newer_version_swaps_the_item_and_an_older_changes_nothing(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    v1 = catalogue_record(lib, now_ms(), title="初版")
    pid = decode_catalogue(v1)[1].pid
    v2 = catalogue_record(lib, now_ms(), title="再版", pid=pid)
    await store.catalogue.put([stored(v1)])
    (outcome,) = await store.catalogue.put([stored(v2)])
    assert outcome.applied
    assert [r[1] for r in await rows(store)] == [sha(v2)]
    assert await store.sync.have([sha(v1), sha(v2)]) == {sha(v2)}
    before = await rows(store)
    (outcome,) = await store.catalogue.put([stored(v1)])
    assert not outcome.applied
    assert await rows(store) == before
    got = await store.catalogue.get(pid)
    assert got is not None and got[1].title == "再版"
    await check_consistent(store)


async def test_a_batch_with_two_versions_of_one_record_keeps_one_item(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    v1 = catalogue_record(lib, now_ms())
    v2 = catalogue_record(lib, now_ms(), pid=decode_catalogue(v1)[1].pid)
    await store.catalogue.put([stored(v2), stored(v1)])
    assert [r[1] for r in await rows(store)] == [sha(v2)]
    await check_consistent(store)


async def test_replacement_and_item_share_one_transaction(store: Store, net: TestNetwork) -> None:
    """A failure after the record row is written (here: the item's insert) rolls back both."""
    lib = net.libraries[3]
    v1 = catalogue_record(lib, now_ms(), title="初版")
    pid = decode_catalogue(v1)[1].pid
    v2 = catalogue_record(lib, now_ms(), title="再版", pid=pid)
    await store.catalogue.put([stored(v1)])
    cert = decode_record_parts(net.certificates(3)[0])
    await store.membership.put(*cert)
    before = await rows(store)
    await store.db.conn.execute(
        "CREATE TEMP TRIGGER fail_items BEFORE INSERT ON main.sync_items"
        " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    with pytest.raises(DatabaseError, match="injected failure"):
        await store.catalogue.put([stored(v2)])
    newer_cert = decode_record_parts(net.certificates(3)[0], ts_ms=cert[4] + 1)
    with pytest.raises(DatabaseError, match="injected failure"):
        await store.membership.put(
            newer_cert[0], newer_cert[1], newer_cert[2], b"\x93changed", newer_cert[4]
        )
    await store.db.conn.execute("DROP TRIGGER fail_items")
    assert await rows(store) == before
    got = await store.catalogue.get(pid)
    assert got is not None and got[1].title == "初版"
    assert await store.membership.get(*cert[:3]) == cert[3]
    await check_consistent(store)


def decode_record_parts(
    envelope: bytes, ts_ms: int | None = None
) -> tuple[str, bytes, bytes, bytes, int]:
    """(kind, subject, signer, envelope, ts_ms): MembershipStore.put's arguments."""
    signed = decode_envelope(envelope)
    cert = decode_certificate(signed)
    ts = cert.not_before_ms if ts_ms is None else ts_ms
    return KIND_CERTIFICATE, cert.subject.public_key, signed.signer, envelope, ts


async def test_membership_put_keeps_one_item_per_record(store: Store, net: TestNetwork) -> None:
    for envelope in net.all_certificates():
        assert await store.membership.put(*decode_record_parts(envelope))
    # The same record again changes nothing.
    before = await rows(store)
    assert not await store.membership.put(*decode_record_parts(net.certificates(3)[0]))
    assert await rows(store) == before
    county = net.libraries[3]
    municipal = net.libraries[2]
    revocations = []
    for n in range(2):
        revocation = Revocation(
            net.network, county.public_key, municipal.public_key, now_ms() + n, f"r{n}"
        )
        envelope = encode_envelope(sign_revocation(revocation, municipal.member.key))
        revocations.append(envelope)
        assert await store.membership.put(
            KIND_REVOCATION,
            county.public_key,
            municipal.public_key,
            envelope,
            revocation.revoked_ms,
        )
    # The second revocation of the same (subject, signer) replaced the first, item included.
    assert await store.sync.have([sha(e) for e in revocations]) == {sha(revocations[1])}
    assert await check_consistent(store) == len(net.all_certificates()) + 1
    assert await store.sync.counts() == {
        KIND_CERTIFICATE: len(net.all_certificates()),
        KIND_REVOCATION: 1,
    }
    assert await store.sync.envelopes([sha(revocations[1])], 1 << 20) == [revocations[1]]


# --- since, version, snapshot ---------------------------------------------------------------------


async def test_since_is_increasing_and_never_reuses_a_seq(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[3]
    others = [catalogue_record(lib, now_ms()) for _ in range(3)]
    await store.catalogue.put([stored(e) for e in others])
    first = await store.sync.since(0, 100)
    assert [i.seq for i in first] == sorted({i.seq for i in first})
    assert {i.id for i in first} == {sha(e) for e in others}
    assert all(i.kind == KIND_CATALOGUE for i in first)
    pid = decode_catalogue(others[-1])[1].pid  # the newest item's record, replaced twice
    seen = {i.seq for i in first}
    top = first[-1].seq
    for title in ("二", "三"):
        newer = catalogue_record(lib, now_ms(), title=title, pid=pid)
        await store.catalogue.put([stored(newer)])
        new = await store.sync.since(top, 100)
        assert [i.id for i in new] == [sha(newer)], "a replacement is news, with a new seq"
        assert new[0].seq > top and new[0].seq not in seen
        seen.add(new[0].seq)
        top = new[0].seq
    assert await store.sync.since(top, 100) == []
    # Limit and order.
    assert [i.seq for i in await store.sync.since(0, 2)] == sorted(
        i.seq for i in await store.sync.since(0, 100)
    )[:2]


async def test_snapshot_is_rebuilt_when_the_set_changes(store: Store, net: TestNetwork) -> None:
    lib = net.libraries[3]
    envelopes = [catalogue_record(lib, now_ms()) for _ in range(3)]
    await store.catalogue.put([stored(e) for e in envelopes])

    async def ids() -> set[bytes]:
        snap = await store.sync.snapshot()
        return {snap.item(i).id for i in range(snap.size())}

    assert await ids() == {sha(e) for e in envelopes}
    first = await store.sync.snapshot()
    assert await store.sync.snapshot() is first, "an unchanged set is not read again"
    # The newest record replaced by its tombstone: same count, and its item had the top seq.
    pid = decode_catalogue(envelopes[-1])[1].pid
    tombstone = deletion(lib, pid, now_ms())
    await store.catalogue.put([stored(tombstone)])
    assert await ids() == {sha(envelopes[0]), sha(envelopes[1]), sha(tombstone)}
    # A membership record joining changes it too.
    await store.membership.put(*decode_record_parts(net.certificates(3)[0]))
    assert sha(net.certificates(3)[0]) in await ids()
    # Items carry the record time, so peers order them alike.
    snap = await store.sync.snapshot()
    tomb_record = decode_catalogue(tombstone)[1]
    assert any(
        snap.item(i).id == sha(tombstone) and snap.item(i).timestamp == tomb_record.version.wall_ms
        for i in range(snap.size())
    )


# --- envelopes, have ------------------------------------------------------------------------------


async def test_envelopes_follow_the_order_asked_within_max_bytes(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    envelopes = [catalogue_record(lib, now_ms(), title="题" * (10 + n)) for n in range(5)]
    cert = net.certificates(3)[0]
    await store.catalogue.put([stored(e) for e in envelopes])
    await store.membership.put(*decode_record_parts(cert))
    wanted = [sha(cert), sha(envelopes[3]), bytes(32), sha(envelopes[0]), sha(envelopes[4])]
    assert await store.sync.envelopes(wanted, 1 << 20) == [cert, envelopes[3], *envelopes[::4]]
    # Stops before max_bytes would be exceeded...
    budget = len(cert) + len(envelopes[3]) + len(envelopes[0]) - 1
    assert await store.sync.envelopes(wanted, budget) == [cert, envelopes[3]]
    # ...but always returns one, however small the budget.
    assert await store.sync.envelopes(wanted, 1) == [cert]
    assert await store.sync.envelopes([bytes(32)], 1 << 20) == []
    assert await store.sync.have(wanted) == {sha(cert), *(sha(e) for e in envelopes[::3])} | {
        sha(envelopes[4])
    }
    assert await store.sync.have([]) == set()


async def test_have_and_envelopes_answer_more_ids_than_one_query_binds(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    envelopes = [catalogue_record(lib, now_ms()) for _ in range(30)]
    await store.catalogue.put([stored(e) for e in envelopes])
    wanted = [hashlib.sha256(b"%d" % n).digest() for n in range(1200)] + [sha(e) for e in envelopes]
    assert await store.sync.have(wanted) == {sha(e) for e in envelopes}
    assert await store.sync.envelopes(wanted, 1 << 30) == envelopes


# --- held content, clock --------------------------------------------------------------------------


async def test_foreign_records_add_no_chunk_references(store: Store, net: TestNetwork) -> None:
    own, other = net.libraries[3], net.libraries[2]
    mine = record_with_files(own, Hlc(now_ms()), [sha(b"a"), sha(b"b")], pid=_pid(own))
    theirs = record_with_files(other, Hlc(now_ms()), [sha(b"b"), sha(b"c")], pid=_pid(other))
    await store.catalogue.put([stored(mine)])
    await store.catalogue.put([stored(theirs, held=False)])
    counts = await store.catalogue.counts()
    assert (counts.records, counts.chunks, counts.chunk_bytes) == (2, 2, 200)
    async with store.db.conn.execute("SELECT digest, refs FROM chunks ORDER BY digest") as cur:
        refs = {bytes(d): int(n) for d, n in await cur.fetchall()}
    assert refs == {sha(b"a"): 1, sha(b"b"): 1}
    assert await store.catalogue.is_held(decode_catalogue(mine)[1].pid)
    assert not await store.catalogue.is_held(decode_catalogue(theirs)[1].pid)
    assert not await store.catalogue.is_held(_pid(own))  # unknown
    await check_consistent(store)


async def test_a_foreign_version_with_other_chunks_releases_the_held_ones(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    pid = _pid(lib)
    await store.catalogue.put([stored(record_with_files(lib, Hlc(now_ms()), [sha(b"a")], pid))])
    newer = record_with_files(lib, Hlc(now_ms() + 10), [sha(b"z")], pid)
    await store.catalogue.put([stored(newer, held=False)])
    assert not await store.catalogue.is_held(pid)
    assert (await store.catalogue.counts()).chunks == 0


async def test_the_clock_moves_past_foreign_versions(store: Store, net: TestNetwork) -> None:
    other = net.libraries[2]
    future = Hlc(now_ms() + 3_600_000, 7)
    theirs = record_with_files(other, future, [], pid=_pid(other))
    await store.catalogue.put([stored(theirs, held=False)])
    assert await store.catalogue.next_version(now_ms()) > future
    # An older foreign version does not move the clock back.
    older = record_with_files(other, Hlc(now_ms() - 1000), [], pid=_pid(other))
    await store.catalogue.put([stored(older, held=False)])
    assert await store.catalogue.next_version(now_ms()) > future


async def test_the_clock_moves_past_a_foreign_version_of_a_held_record(
    store: Store, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    pid = _pid(lib)
    await store.catalogue.put([stored(record_with_files(lib, Hlc(now_ms()), [sha(b"a")], pid))])
    future = Hlc(now_ms() + 3_600_000, 3)
    newer = record_with_files(lib, future, [sha(b"a")], pid)
    await store.catalogue.put([stored(newer, held=False)])
    assert await store.catalogue.is_held(pid)  # same content: still held here
    assert await store.catalogue.next_version(now_ms()) > future


def _pid(lib: Library) -> str:
    return str(ark.mint(NAAN, lib.code, secrets.token_bytes(8)))


# --- backfill -------------------------------------------------------------------------------------


async def _schema_2_store(root: Path, records: list[bytes], members: list[bytes]) -> None:
    """A store as a node before catalogue sync left it: migrations 1-2 only, rows written by
    hand as that version's code wrote them (no sync_items, no `held`)."""
    await asyncio.to_thread(root.mkdir, parents=True)
    shipped = database.migrations()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(database, "migrations", lambda: shipped[:2])
        db = await database.Database.open(root / "catalogue.db")
    try:
        async with db.transaction() as conn:
            for envelope in records:
                row = _record_row(stored(envelope), now_ms())[:15]  # without `held` and keys
                await conn.execute(
                    "INSERT INTO records (pid, kind, origin, hlc_wall, hlc_counter, deleted,"
                    " collection, access, embargo_until, title, summary, content_size,"
                    " file_count, envelope, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            for envelope in members:
                kind, subject, signer, _, _ = decode_record_parts(envelope)
                await conn.execute(
                    "INSERT INTO membership VALUES (?, ?, ?, ?, ?)",
                    (kind, subject, signer, envelope, now_ms()),
                )
    finally:
        await db.close()


async def test_a_store_made_before_sync_gets_its_items_on_open(
    tmp_path: Path, net: TestNetwork
) -> None:
    lib = net.libraries[3]
    records = [catalogue_record(lib, now_ms()) for _ in range(4)]
    records.append(deletion(lib, decode_catalogue(records[0])[1].pid, now_ms()))
    del records[0]
    members = net.all_certificates()
    root = tmp_path / "store"
    await _schema_2_store(root, records, members)
    with sqlite3.connect(root / "catalogue.db") as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (2,)
        assert not raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sync_items'").fetchall()
    settings = StoreSettings(root, QUOTA)
    opened = await Store.open(settings)
    try:
        assert await check_consistent(opened) == len(records) + len(members)
        first = await rows(opened)
        # Records stored before sync are this node's own: their content is here.
        assert await opened.catalogue.is_held(decode_catalogue(records[0])[1].pid)
        assert await opened.sync.envelopes([sha(members[0]), sha(records[1])], 1 << 20) == [
            members[0],
            records[1],
        ]
    finally:
        await opened.close()
    again = await Store.open(settings)
    try:
        assert await rows(again) == first, "a second open adds nothing"
        assert await again.sync.backfill() == 0
    finally:
        await again.close()
