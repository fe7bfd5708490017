"""Tests of the file-backed chunk store: real files, real threads, real processes."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import random
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storage.chunks
from storage.chunks import ChunkStore, FileChunkStore
from storage.errors import ChunkNotFoundError, IntegrityError, QuotaExceededError, StorageError

REPO_ROOT = Path(__file__).resolve().parents[2]


def digest_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def chunk_path(root: Path, digest: bytes) -> Path:
    hexdigest = digest.hex()
    return root / hexdigest[:2] / hexdigest[2:4] / hexdigest


def temp_files(root: Path) -> list[Path]:
    return [p for p in (root / "tmp").rglob("*") if p.is_file()]


def damage(path: Path, edit: Callable[[bytearray], bytearray]) -> None:
    """Rewrite a stored (read-only) chunk file in place."""
    path.chmod(0o640)
    path.write_bytes(bytes(edit(bytearray(path.read_bytes()))))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileChunkStore]:
    with FileChunkStore(tmp_path / "chunks") as opened:
        yield opened


def test_file_store_satisfies_protocol(tmp_path: Path) -> None:
    with FileChunkStore(tmp_path) as concrete:
        opened: ChunkStore = concrete  # checked by mypy
        assert not opened.has(digest_of(b""))


def test_open_creates_layout_with_private_modes(tmp_path: Path) -> None:
    root = tmp_path / "new" / "chunks"
    FileChunkStore(root).close()
    for path in (root, root / "tmp", root / "quarantine"):
        assert path.is_dir()
        assert stat.S_IMODE(path.stat().st_mode) & ~0o750 == 0


def test_put_get_round_trip(store: FileChunkStore) -> None:
    data = os.urandom(100_000)
    digest = digest_of(data)
    assert not store.has(digest)
    assert store.put(digest, data) is True
    store.flush()
    assert store.has(digest)
    assert store.get(digest) == data
    assert store.size(digest) == len(data)


def test_put_accepts_memoryview_and_empty_chunk(store: FileChunkStore) -> None:
    buffer = bytearray(os.urandom(5000))
    view = memoryview(buffer)[1000:3000]
    assert store.put(digest_of(bytes(view)), view)
    assert store.get(digest_of(bytes(view))) == bytes(view)
    assert store.put(digest_of(b""), b"")
    assert store.get(digest_of(b"")) == b""
    assert store.size(digest_of(b"")) == 0


def test_stored_chunk_is_read_only_and_layout_is_fanned_out(store: FileChunkStore) -> None:
    data = b"fan-out"
    digest = digest_of(data)
    store.put(digest, data)
    path = chunk_path(Path(store.root), digest)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) & ~0o640 == 0
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) & ~0o750 == 0


def test_put_existing_returns_false_and_does_not_rewrite(store: FileChunkStore) -> None:
    data = os.urandom(4096)
    digest = digest_of(data)
    assert store.put(digest, data)
    before = chunk_path(Path(store.root), digest).stat()
    time.sleep(0.01)
    assert store.put(digest, data) is False
    assert store.put(digest, memoryview(data)) is False
    after = chunk_path(Path(store.root), digest).stat()
    # The same file, not a new one linked in its place; only touched (needed again: the
    # orphan sweep counts its grace from now).
    assert (after.st_ino, after.st_nlink, after.st_size) == (
        before.st_ino,
        before.st_nlink,
        before.st_size,
    )
    assert after.st_mtime_ns > before.st_mtime_ns
    assert temp_files(Path(store.root)) == []


def test_flipped_byte_is_integrity_error_and_quarantined(store: FileChunkStore) -> None:
    data = os.urandom(10_000)
    digest = digest_of(data)
    store.put(digest, data)
    path = chunk_path(Path(store.root), digest)

    def flip(b: bytearray) -> bytearray:
        b[1234] ^= 0x01
        return b

    damage(path, flip)
    with pytest.raises(IntegrityError, match=digest.hex()) as caught:
        store.get(digest)
    assert caught.value.code == "integrity-error"
    assert not path.exists()
    quarantined = list((Path(store.root) / "quarantine").iterdir())
    assert [p.name.split(".")[0] for p in quarantined] == [digest.hex()]
    assert quarantined[0].read_bytes() != data
    with pytest.raises(ChunkNotFoundError):
        store.get(digest)
    assert not store.has(digest)
    # A repair is an ordinary put.
    assert store.put(digest, data)
    assert store.get(digest) == data


def test_truncated_chunk_is_integrity_error(store: FileChunkStore) -> None:
    data = os.urandom(10_000)
    digest = digest_of(data)
    store.put(digest, data)
    damage(chunk_path(Path(store.root), digest), lambda b: b[:5000])
    with pytest.raises(IntegrityError, match=digest.hex()):
        store.get(digest)
    with pytest.raises(ChunkNotFoundError):
        store.get(digest)


def test_missing_chunk(store: FileChunkStore) -> None:
    digest = digest_of(b"never stored")
    assert not store.has(digest)
    with pytest.raises(ChunkNotFoundError, match=digest.hex()) as caught:
        store.get(digest)
    assert caught.value.code == "chunk-missing"
    with pytest.raises(ChunkNotFoundError, match=digest.hex()):
        store.size(digest)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x00" * 31, b"\x00" * 33, bytearray(32), "00" * 32, None],
)
def test_bad_digest_rejected(store: FileChunkStore, bad: object) -> None:
    calls: list[Callable[[Any], object]] = [
        store.has,
        store.get,
        store.size,
        lambda d: store.put(d, b"x"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="32 bytes"):
            call(bad)
    assert list(store.iter_digests()) == []


def test_oversize_chunk_rejected_on_put_and_not_read(tmp_path: Path) -> None:
    with FileChunkStore(tmp_path, max_chunk_size=16) as small:
        with pytest.raises(ValueError, match="limit"):
            small.put(digest_of(b"x" * 17), b"x" * 17)
        data = b"y" * 16
        digest = digest_of(data)
        assert small.put(digest, data)
        damage(chunk_path(tmp_path, digest), lambda b: b + b"appended")
        with pytest.raises(StorageError, match="limit") as caught:
            small.get(digest)
        assert not isinstance(caught.value, IntegrityError)
        assert chunk_path(tmp_path, digest).exists()


def test_iter_digests_lists_exactly_what_was_put(store: FileChunkStore) -> None:
    assert list(store.iter_digests()) == []
    digests = set()
    for i in range(300):
        data = f"chunk {i}".encode()
        digests.add(digest_of(data))
        store.put(digest_of(data), data)
    # Junk that is not a chunk must be ignored.
    root = Path(store.root)
    (root / "zz").mkdir()
    (root / "ab").mkdir(exist_ok=True)
    (root / "ab" / "README").write_text("not a chunk")
    some = next(iter(digests)).hex()
    (root / some[:2] / some[2:4] / (some + ".bak")).write_text("x")
    (root / some[:2] / some[2:4] / ("ff" * 32)).write_text("wrong folder")
    (root / "quarantine" / ("00" * 32)).write_text("quarantined")
    listed = list(store.iter_digests())
    assert listed == sorted(digests)


def test_cleanup_removes_leftovers_of_a_dead_writer(tmp_path: Path) -> None:
    FileChunkStore(tmp_path).close()
    tmp = tmp_path / "tmp"
    (tmp / "loose-temp").write_bytes(b"partial")
    dead_session = tmp / "12345-deadbeef0000"
    dead_session.mkdir()
    (dead_session / "0").write_bytes(b"partial")
    (dead_session / "1").write_bytes(b"partial")
    opened = FileChunkStore(tmp_path)  # opening cleans up
    assert list(tmp.iterdir()) == []
    assert opened.cleanup_temp() == 0
    (tmp / "another").write_bytes(b"partial")
    assert opened.cleanup_temp() == 1
    opened.close()


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


CRASH_DURING_PUT = """
import hashlib, os, sys
from storage.chunks import FileChunkStore
store = FileChunkStore(sys.argv[1])
data = os.urandom(100_000)
def crash(*args, **kwargs):
    os._exit(3)  # killed after the temp file is written and fsynced, before it is linked
os.link = crash
store.put(hashlib.sha256(data).digest(), data)
"""


def test_cleanup_after_a_real_crash(tmp_path: Path) -> None:
    with FileChunkStore(tmp_path) as live:
        result = run_python(CRASH_DURING_PUT, str(tmp_path))
        assert result.returncode == 3, result.stderr
        assert len(temp_files(tmp_path)) == 1
        assert live.cleanup_temp() == 1
        assert temp_files(tmp_path) == []
        assert list(live.iter_digests()) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_cleanup_never_touches_a_live_writers_temp_files(tmp_path: Path) -> None:
    writer = FileChunkStore(tmp_path)
    writer.put(digest_of(b"a"), b"a")
    (session,) = (tmp_path / "tmp").iterdir()
    in_flight = session / "in-flight"
    in_flight.write_bytes(b"being written")
    other = FileChunkStore(tmp_path)  # another process opening the same store
    assert in_flight.exists()
    assert other.cleanup_temp() == 0
    assert writer.cleanup_temp() == 0  # its own session is live too
    assert in_flight.exists()
    assert writer.put(digest_of(b"b"), b"b")
    writer.close()
    assert not session.exists()
    assert other.get(digest_of(b"b")) == b"b"
    other.close()


def test_forked_child_gets_its_own_temp_session(tmp_path: Path) -> None:
    with FileChunkStore(tmp_path) as parent:
        parent.put(digest_of(b"parent"), b"parent")
        (parent_session,) = (tmp_path / "tmp").iterdir()
        pid = os.fork()
        if pid == 0:  # child: must neither share nor, on close, remove the parent's session
            ok = False
            try:
                parent.put(digest_of(b"child"), b"child")
                sessions = len(list((tmp_path / "tmp").iterdir()))
                parent.close()
                ok = sessions == 2 and parent_session.exists()
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [p for p in (tmp_path / "tmp").iterdir()] == [parent_session]
        assert parent.get(digest_of(b"child")) == b"child"
        assert parent.put(digest_of(b"after fork"), b"after fork")


def test_closed_store_refuses_puts_but_serves_reads(tmp_path: Path) -> None:
    opened = FileChunkStore(tmp_path)
    opened.put(digest_of(b"a"), b"a")
    opened.close()
    opened.close()
    assert opened.get(digest_of(b"a")) == b"a"
    with pytest.raises(ValueError, match="closed"):
        opened.put(digest_of(b"b"), b"b")


def test_flush_without_syncfs_fsyncs_new_directories_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = storage.chunks._fsync_dir

    def record(path: str) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(storage.chunks, "_fsync_dir", record)
    store = FileChunkStore(tmp_path, use_syncfs=False)
    data = b"durable"
    digest = digest_of(data)
    leaf = str(chunk_path(tmp_path, digest).parent)
    store.put(digest, data)
    store.flush()
    # Leaf first, then the folders whose entries were created, then nothing more.
    assert synced == [leaf, os.path.dirname(leaf), store.root]
    synced.clear()
    store.flush()
    assert synced == []
    # A put that finds the chunk already there still makes its folder part of the next flush:
    # the writer that stored it (maybe another process) may not have flushed yet.
    assert store.put(digest, data) is False
    store.flush()
    assert synced == [leaf]
    store.close()


def test_failed_flush_without_syncfs_keeps_directories_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileChunkStore(tmp_path, use_syncfs=False)
    real = storage.chunks._fsync_dir

    def broken(path: str) -> None:
        raise OSError(errno.EIO, "Input/output error", path)

    data = b"pending"
    store.put(digest_of(data), data)
    monkeypatch.setattr(storage.chunks, "_fsync_dir", broken)
    with pytest.raises(StorageError, match="durable"):
        store.flush()
    synced: list[str] = []

    def record(path: str) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(storage.chunks, "_fsync_dir", record)
    store.flush()
    assert len(synced) == 3
    store.close()


@pytest.mark.skipif(storage.chunks._SYNCFS is None, reason="no syncfs(2) here")
def test_flush_syncs_the_filesystem_once_per_batch(
    store: FileChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = storage.chunks._SYNCFS
    assert real is not None
    calls: list[int] = []
    failing = [True]

    def record(fd: int) -> int:
        calls.append(fd)
        if failing[0]:
            ctypes.set_errno(errno.EIO)
            return -1
        return real(fd)

    monkeypatch.setattr(storage.chunks, "_SYNCFS", record)
    store.flush()
    assert calls == []  # nothing pending: no syscall
    for i in range(20):
        store.put(digest_of(b"%d" % i), b"%d" % i)
    with pytest.raises(StorageError, match="durable"):
        store.flush()
    failing[0] = False
    store.flush()  # the failed batch is still pending
    assert len(calls) == 2
    store.flush()
    assert len(calls) == 2
    assert store.put(digest_of(b"0"), b"0") is False
    store.flush()
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("code", "error"), [(errno.ENOSPC, QuotaExceededError), (errno.EIO, StorageError)]
)
def test_os_errors_are_translated_and_leave_no_temp_file(
    store: FileChunkStore,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[StorageError],
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    data = os.urandom(1000)
    digest = digest_of(data)
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(error, match=digest.hex()):
        store.put(digest, data)
    monkeypatch.undo()
    assert not store.has(digest)
    assert temp_files(Path(store.root)) == []
    assert store.put(digest, data)


def test_programming_errors_propagate(store: FileChunkStore) -> None:
    with pytest.raises(TypeError):
        store.put(digest_of(b""), "not bytes")  # type: ignore[arg-type]


def test_concurrent_puts_from_eight_threads(store: FileChunkStore) -> None:
    shared = [os.urandom(20_000) for _ in range(60)]
    own = [[os.urandom(20_000) for _ in range(20)] for _ in range(8)]
    barrier = threading.Barrier(8)
    stop_flushing = threading.Event()

    def worker(index: int) -> list[tuple[bytes, bool]]:
        order = shared[:] + own[index]
        random.Random(index).shuffle(order)
        barrier.wait()
        return [(digest_of(d), store.put(digest_of(d), d)) for d in order]

    def flusher() -> None:
        while not stop_flushing.is_set():
            store.flush()

    flushing = threading.Thread(target=flusher)
    flushing.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            results = [r for rs in pool.map(worker, range(8)) for r in rs]
    finally:
        stop_flushing.set()
        flushing.join()
    store.flush()
    wins = Counter(digest for digest, stored in results if stored)
    everything = shared + [d for ds in own for d in ds]
    assert wins == Counter({digest_of(d): 1 for d in everything})
    for data in everything:
        assert store.get(digest_of(data)) == data
    assert sorted(store.iter_digests()) == sorted(digest_of(d) for d in everything)
    assert temp_files(Path(store.root)) == []


def test_concurrent_puts_of_one_chunk_from_eight_threads(store: FileChunkStore) -> None:
    data = os.urandom(1 << 20)
    digest = digest_of(data)
    barrier = threading.Barrier(8)

    def worker(_: int) -> bool:
        barrier.wait()
        return store.put(digest, data)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert results.count(True) == 1
    assert store.get(digest) == data


WRITER_PROCESS = """
import hashlib, json, os, sys, time
from pathlib import Path
from storage.chunks import FileChunkStore
root, ready, go, count = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
chunks = [hashlib.sha256(b"seed %d" % i).digest() * 2048 for i in range(count)]
with FileChunkStore(root) as store:  # opening runs cleanup_temp while others may write
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    results = []
    for i, data in enumerate(chunks):
        digest = hashlib.sha256(data).digest()
        results.append([digest.hex(), store.put(digest, data)])
        if i % 10 == 0:
            store.cleanup_temp()  # must never remove a live writer's temp files
    store.flush()
print(json.dumps(results))
"""


def test_processes_putting_the_same_chunks_concurrently(tmp_path: Path) -> None:
    root = tmp_path / "chunks"
    go = tmp_path / "go"
    count = 100
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = []
    for i in range(4):
        ready = tmp_path / f"ready-{i}"
        args = [str(root), str(ready), str(go), str(count)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER_PROCESS, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline, [p.poll() for p in procs]
        time.sleep(0.005)
    go.touch()
    wins: Counter[str] = Counter()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        wins.update(hexdigest for hexdigest, stored in json.loads(out) if stored)
    assert len(wins) == count
    assert set(wins.values()) == {1}
    with FileChunkStore(root) as store:
        digests = list(store.iter_digests())
        assert sorted(d.hex() for d in digests) == sorted(wins)
        for digest in digests:
            assert digest_of(store.get(digest)) == digest
    assert list((root / "tmp").iterdir()) == []


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileChunkStore]:
    with FileChunkStore(tmp_path_factory.mktemp("hypothesis-chunks")) as opened:
        yield opened


@settings(deadline=None)
@given(data=st.binary(max_size=5000))
def test_property_put_then_get_returns_same_bytes(
    shared_store: FileChunkStore, data: bytes
) -> None:
    digest = digest_of(data)
    shared_store.put(digest, data)
    assert shared_store.get(digest) == data
    assert shared_store.size(digest) == len(data)


@settings(deadline=None)
@given(data=st.binary(min_size=1, max_size=5000), where=st.floats(0, 1), mask=st.integers(1, 255))
def test_property_any_single_byte_flip_is_detected(
    shared_store: FileChunkStore, data: bytes, where: float, mask: int
) -> None:
    digest = digest_of(data)
    shared_store.put(digest, data)
    index = min(int(where * len(data)), len(data) - 1)

    def flip(b: bytearray) -> bytearray:
        b[index] ^= mask
        return b

    damage(chunk_path(Path(shared_store.root), digest), flip)
    with pytest.raises(IntegrityError):
        shared_store.get(digest)
    assert not shared_store.has(digest)


def test_put_of_a_damaged_chunk_repairs_it(store: FileChunkStore, tmp_path: Path) -> None:
    data = os.urandom(5000)
    digest = digest_of(data)
    assert store.put(digest, data) is True
    damage(chunk_path(tmp_path / "chunks", digest), lambda b: b[:-1] + bytes([b[-1] ^ 1]))
    # The caller holds the right bytes: the damaged copy is moved aside and replaced.
    assert store.put(digest, data) is True
    assert store.get(digest) == data
    assert len(list((tmp_path / "chunks" / "quarantine").iterdir())) == 1
    # An intact chunk is left alone.
    assert store.put(digest, data) is False


# --- put_many and remove ------------------------------------------------------------------------


def blobs(n: int, size: int = 3000, tag: bytes = b"") -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        data = tag + b"%d:" % i + os.urandom(size)
        out.append((digest_of(data), data))
    return out


def test_put_many_stores_a_batch_and_counts_what_is_new(store: FileChunkStore) -> None:
    batch = blobs(30)
    assert store.put_many(batch) == 30
    for digest, data in batch:
        assert store.get(digest) == data
        assert store.size(digest) == len(data)
    assert sorted(store.iter_digests()) == sorted(d for d, _ in batch)
    assert store.put_many(batch) == 0  # all there already
    more = blobs(5, tag=b"more")
    assert store.put_many(batch[:3] + more) == 5
    assert store.put_many([]) == 0
    assert temp_files(Path(store.root)) == []


def test_put_many_counts_a_chunk_repeated_in_its_batch_once(store: FileChunkStore) -> None:
    (one,) = blobs(1)
    memory = (one[0], memoryview(one[1]))
    assert store.put_many([one, memory, one]) == 1
    assert store.get(one[0]) == one[1]
    assert temp_files(Path(store.root)) == []
    assert store.put(one[0], one[1]) is False


def test_put_many_accepts_empty_and_memoryview_chunks(store: FileChunkStore) -> None:
    data = os.urandom(100)
    assert store.put_many([(digest_of(b""), b""), (digest_of(data), memoryview(data))]) == 2
    assert store.get(digest_of(b"")) == b""
    assert store.get(digest_of(data)) == data


@pytest.mark.skipif(storage.chunks._SYNCFS is None, reason="no syncfs(2) here")
def test_put_many_makes_one_durability_call_per_batch(
    store: FileChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = storage.chunks._SYNCFS
    assert real is not None
    syncs: list[int] = []
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_syncfs(fd: int) -> int:
        syncs.append(fd)
        return real(fd)

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(storage.chunks, "_SYNCFS", counting_syncfs)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    batch = blobs(50)
    assert store.put_many(batch) == 50
    assert (len(syncs), len(fsyncs)) == (1, 0)
    assert store.put_many(batch) == 0
    assert len(syncs) == 1  # nothing new: no barrier at all
    assert store.put_many([]) == 0
    assert len(syncs) == 1
    # The new names' folders are left for the caller's flush, as with put.
    store.flush()
    assert len(syncs) == 2
    store.flush()
    assert len(syncs) == 2


def test_put_many_without_syncfs_fsyncs_each_new_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    with FileChunkStore(tmp_path / "chunks", use_syncfs=False) as plain:
        batch = blobs(7)
        plain.put(*batch[0])
        monkeypatch.setattr(os, "fsync", counting_fsync)
        assert plain.put_many(batch) == 6
        assert len(fsyncs) == 6
        monkeypatch.undo()
        for digest, data in batch:
            assert plain.get(digest) == data


@pytest.mark.skipif(storage.chunks._SYNCFS is None, reason="no syncfs(2) here")
def test_a_failed_batch_barrier_links_nothing_and_leaves_no_temp_file(
    store: FileChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    batch = blobs(10)
    monkeypatch.setattr(storage.chunks, "_SYNCFS", failing)
    with pytest.raises(StorageError, match="batch"):
        store.put_many(batch)
    monkeypatch.undo()
    assert not any(store.has(d) for d, _ in batch)
    assert temp_files(Path(store.root)) == []
    assert store.put_many(batch) == 10


@pytest.mark.skipif(storage.chunks._SYNCFS is None, reason="no syncfs(2) here")
def test_a_full_disk_during_a_batch_is_a_quota_error(
    store: FileChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> int:
        ctypes.set_errno(errno.ENOSPC)
        return -1

    monkeypatch.setattr(storage.chunks, "_SYNCFS", full)
    with pytest.raises(QuotaExceededError):
        store.put_many(blobs(2))
    monkeypatch.undo()
    assert temp_files(Path(store.root)) == []


def test_put_many_refuses_bad_items_before_linking_any(tmp_path: Path) -> None:
    with FileChunkStore(tmp_path / "chunks", max_chunk_size=4096) as small:
        batch = blobs(3, size=100)
        too_big = os.urandom(5000)
        with pytest.raises(ValueError, match="limit"):
            small.put_many([*batch, (digest_of(too_big), too_big)])
        assert not any(small.has(d) for d, _ in batch)
        assert temp_files(tmp_path / "chunks") == []
        with pytest.raises(ValueError, match="digest"):
            small.put_many([*batch, (b"short", b"x")])
        assert not any(small.has(d) for d, _ in batch)
        assert temp_files(tmp_path / "chunks") == []


def test_put_many_repairs_a_damaged_chunk(store: FileChunkStore, tmp_path: Path) -> None:
    batch = blobs(3)
    store.put_many(batch)
    digest, data = batch[1]
    damage(chunk_path(tmp_path / "chunks", digest), lambda b: b[:-1] + bytes([b[-1] ^ 1]))
    assert store.put_many(batch) == 1
    assert store.get(digest) == data
    assert len(list((tmp_path / "chunks" / "quarantine").iterdir())) == 1


def test_closed_store_refuses_put_many(tmp_path: Path) -> None:
    closed = FileChunkStore(tmp_path / "chunks")
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        closed.put_many(blobs(1))
    assert closed.put_many([]) == 0


def test_remove_deletes_a_chunk_once(store: FileChunkStore, tmp_path: Path) -> None:
    batch = blobs(3)
    store.put_many(batch)
    digest, data = batch[0]
    assert store.remove(digest) is True
    assert not store.has(digest)
    assert not chunk_path(tmp_path / "chunks", digest).exists()
    with pytest.raises(ChunkNotFoundError):
        store.get(digest)
    assert store.remove(digest) is False
    assert sorted(store.iter_digests()) == sorted(d for d, _ in batch[1:])
    assert all(store.get(d) == b for d, b in batch[1:])
    assert store.put(digest, data) is True  # stored again from scratch
    assert store.get(digest) == data


def test_remove_refuses_a_malformed_digest(store: FileChunkStore) -> None:
    for bad in (b"", b"\x00" * 31, "00" * 32):
        with pytest.raises(ValueError):
            store.remove(bad)  # type: ignore[arg-type]


def test_remove_translates_os_errors(
    store: FileChunkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (one,) = blobs(1)
    store.put(*one)

    def denied(path: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "unlink", denied)
    with pytest.raises(StorageError, match=one[0].hex()):
        store.remove(one[0])
    monkeypatch.undo()
    assert store.has(one[0])
