"""Write-once store of content chunks addressed by their SHA-256 digest."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Protocol

from storage.errors import ChunkNotFoundError, IntegrityError, QuotaExceededError, StorageError

__all__ = [
    "DIGEST_SIZE",
    "MAX_CHUNK_SIZE",
    "ChunkStore",
    "FileChunkStore",
]

logger = logging.getLogger(__name__)

DIGEST_SIZE = 32
"""Length in bytes of a chunk address (a SHA-256 digest)."""

MAX_CHUNK_SIZE = 64 * 1024 * 1024
"""Default upper bound on one chunk; `get` never reads more than this into memory."""

_FILE_MODE = 0o440  # write-once: nobody, not even the owner, is meant to modify a stored chunk
_DIR_MODE = 0o750
_TMP_DIR = "tmp"
_QUARANTINE_DIR = "quarantine"
_HEX_DIGITS = frozenset("0123456789abcdef")
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class ChunkStore(Protocol):
    """Write-once chunk storage. Every method is synchronous and thread-safe.

    `put` trusts the caller's digest; `get` re-hashes and never returns bytes that do not
    match their address. A chunk is durable only after `put` has returned *and* a later
    `flush` has returned.
    """

    def has(self, digest: bytes) -> bool:
        """Whether a chunk is stored under `digest` (its content is not verified)."""
        ...

    def put(self, digest: bytes, data: bytes | memoryview) -> bool:
        """Store `data` under `digest` (== sha256(data)); False if it was already stored."""
        ...

    def put_many(self, items: Sequence[tuple[bytes, bytes | memoryview]]) -> int:
        """`put` for a batch, with one durability barrier for the whole batch instead of one
        per chunk; the number of chunks newly stored."""
        ...

    def remove(self, digest: bytes) -> bool:
        """Delete a chunk (no record refers to it any more); False if it was not stored."""
        ...

    def flush(self) -> None:
        """Make every chunk whose `put` returned before this call durable."""
        ...

    def get(self, digest: bytes) -> bytes:
        """The chunk's verified bytes; IntegrityError if damaged, ChunkNotFoundError if absent."""
        ...

    def size(self, digest: bytes) -> int:
        """Stored size in bytes of a chunk (not verified); ChunkNotFoundError if absent."""
        ...

    def cleanup_temp(self) -> int:
        """Remove partial writes left by crashed writers; return how many were removed."""
        ...

    def iter_digests(self) -> Iterator[bytes]:
        """Every stored digest, in ascending byte order."""
        ...

    def digests_under(self, top: int, older_than: float) -> list[bytes]:
        """The digests whose first byte is `top` (one 1/256 share of the store) of chunks last
        written or touched before `older_than` (Unix time), in ascending order."""
        ...

    def touch(self, digest: bytes) -> None:
        """Mark a stored chunk as needed now (its modified time), so the orphan sweep, which
        spares recently needed files, leaves it; nothing if it is not stored."""
        ...

    def close(self) -> None:
        """Release what the store holds open; reads may still work, puts do not."""
        ...


# Durability. A put writes a temp file and fsyncs it *before* linking it into place: otherwise
# a crash could leave a directory entry pointing at a file whose data never reached the disk
# (zero-length or garbage under a valid name, served as a chunk we believe we hold). The new
# directory entry itself is durable only once its directory is fsynced; instead of paying that
# (~0.2 ms) per chunk, put records the directory and `flush` makes the recorded directories
# durable once per batch, before the caller commits the database rows that refer to the chunks.
# Random digests spread a batch over ~one fan-out folder per chunk, so fsyncing each folder
# would still cost a cache flush per chunk; on Linux `flush` therefore makes one syncfs(2) call
# on the store's filesystem (one journal commit for the whole batch; it reports writeback errors
# since Linux 5.8, through a descriptor held open from the start), else fsyncs each folder.
#
# Placement uses os.link(temp, final) rather than os.replace: link fails with EEXIST instead of
# replacing, so an existing chunk is never overwritten and, of several threads or processes
# putting the same chunk at once, exactly one sees True (git finalises loose objects the same
# way). The temp name is then unlinked; a crash in between leaves only a temp file.
#
# Crash cleanup vs. live writers. Each store instance writes its temp files in its own session
# folder tmp/<pid>-<random>/ and holds an exclusive flock on that folder while open. The kernel
# drops the lock when the process dies, so `cleanup_temp` (run by every process that opens the
# store) removes exactly the sessions whose lock it can take: never a live writer's temp files.


def _check_digest(digest: bytes) -> str:
    if type(digest) is not bytes or len(digest) != DIGEST_SIZE:
        raise ValueError(
            f"chunk digest must be {DIGEST_SIZE} bytes (a SHA-256 digest), got {digest!r:.80}"
        )
    return digest.hex()


def _translate(exc: OSError, what: str) -> StorageError:
    """A StorageError for an OSError raised while doing `what` (which names the chunk)."""
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE_ERRNOS:
        return QuotaExceededError(f"{what}: out of space ({reason})")
    return StorageError(f"{what}: {reason}")


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_SYNCFS = _load_syncfs()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_exactly(fd: int, n: int) -> bytes:
    parts = []
    while n > 0 and (part := os.read(fd, n)):
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FileChunkStore:
    """ChunkStore on a local filesystem: `root/ab/cd/<64 hex>`, plus `tmp/` and `quarantine/`.

    Several instances, in one process or several, may use the same root at the same time.
    `use_syncfs=False` makes `flush` fsync each touched folder instead of the filesystem.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        use_syncfs: bool = True,
    ) -> None:
        self._root = os.path.abspath(os.fspath(root))
        self._tmp = os.path.join(self._root, _TMP_DIR)
        self._quarantine = os.path.join(self._root, _QUARANTINE_DIR)
        self._max_chunk_size = max_chunk_size
        self._names = itertools.count()  # next() is atomic under the GIL
        self._session_lock = threading.Lock()
        self._session: str | None = None
        self._session_fd = -1
        self._session_pid = -1
        self._closed = False
        # Directories whose new entries are not yet known to be durable; see `flush`.
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._syncfs_fd = -1
        try:
            for path in (self._root, self._tmp, self._quarantine):
                os.makedirs(path, mode=_DIR_MODE, exist_ok=True)
            if use_syncfs and _SYNCFS is not None:
                self._syncfs_fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _translate(exc, f"cannot create chunk store at {self._root}") from exc
        self.cleanup_temp()

    def __repr__(self) -> str:
        return f"FileChunkStore({self._root!r})"

    def __enter__(self) -> FileChunkStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def root(self) -> str:
        return self._root

    def close(self) -> None:
        """Release this instance's temp session. Reads keep working; `put` no longer does."""
        with self._flush_lock:
            if self._syncfs_fd >= 0:
                os.close(self._syncfs_fd)
                self._syncfs_fd = -1
        with self._session_lock:
            self._closed = True
            if self._session is None:
                return
            session, fd, pid = self._session, self._session_fd, self._session_pid
            self._session, self._session_fd = None, -1
        if pid != os.getpid():  # a forked child: the session belongs to its parent
            os.close(fd)
            return
        try:
            self._remove_tree(session)
        except OSError:
            logger.warning("could not remove temp session %s", session, exc_info=True)
        finally:
            os.close(fd)

    # -- paths -------------------------------------------------------------------------------

    def _path(self, hexdigest: str) -> str:
        return f"{self._root}/{hexdigest[:2]}/{hexdigest[2:4]}/{hexdigest}"

    # -- reading -----------------------------------------------------------------------------

    def has(self, digest: bytes) -> bool:
        return self._on_file(digest, os.stat, "look up")

    def _on_file(self, digest: bytes, op: Callable[[str], object], what: str) -> bool:
        """`op` on the chunk's file: False if there is none, StorageError if `op` fails."""
        hexdigest = _check_digest(digest)
        try:
            op(self._path(hexdigest))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _translate(exc, f"cannot {what} chunk {hexdigest}") from exc
        return True

    def size(self, digest: bytes) -> int:
        hexdigest = _check_digest(digest)
        try:
            return os.stat(self._path(hexdigest)).st_size
        except FileNotFoundError:
            raise ChunkNotFoundError(f"chunk {hexdigest} is not stored") from None
        except OSError as exc:
            raise _translate(exc, f"cannot stat chunk {hexdigest}") from exc

    def get(self, digest: bytes) -> bytes:
        hexdigest = _check_digest(digest)
        path = self._path(hexdigest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ChunkNotFoundError(f"chunk {hexdigest} is not stored") from None
        except OSError as exc:
            raise _translate(exc, f"cannot open chunk {hexdigest}") from exc
        try:
            stat = os.fstat(fd)
            if stat.st_size > self._max_chunk_size:
                # Not a chunk this store wrote, unless the limit was lowered since: refuse to
                # load it into memory, but leave it in place for an admin to look at.
                raise StorageError(
                    f"chunk {hexdigest} is {stat.st_size} bytes, over the"
                    f" {self._max_chunk_size}-byte limit; not read"
                )
            data = os.read(fd, stat.st_size)
            if len(data) < stat.st_size:  # short read: rare, but allowed by POSIX
                parts = [data]
                remaining = stat.st_size - len(data)
                while remaining > 0 and (part := os.read(fd, remaining)):
                    parts.append(part)
                    remaining -= len(part)
                data = b"".join(parts)
        except OSError as exc:
            raise _translate(exc, f"cannot read chunk {hexdigest}") from exc
        finally:
            os.close(fd)
        if hashlib.sha256(data).digest() == digest:
            return data
        if self._quarantine_file(hexdigest, path, stat):
            raise IntegrityError(f"chunk {hexdigest} does not match its SHA-256; quarantined")
        raise IntegrityError(f"chunk {hexdigest} does not match its SHA-256")

    def _quarantine_file(self, hexdigest: str, path: str, read: os.stat_result) -> bool:
        """Move a damaged chunk aside so it is never served again (and is kept for analysis).

        True if this call moved it.
        """
        target = os.path.join(
            self._quarantine, f"{hexdigest}.{time.time_ns()}.{os.getpid()}.{next(self._names)}"
        )
        try:
            # Only move the file we read: another thread may already have quarantined it and a
            # repair may have put a good copy in its place. (A repair landing between this check
            # and the rename would be quarantined too: harmless, the chunk is fetched again.)
            if not os.path.samestat(os.stat(path), read):
                return False
            os.rename(path, target)
        except FileNotFoundError:
            return False  # quarantined concurrently
        except OSError:
            # Still never served: the next read fails verification again.
            logger.error(
                "chunk %s failed verification and could not be quarantined",
                hexdigest,
                exc_info=True,
                extra={"chunk": hexdigest},
            )
            return False
        logger.warning(
            "chunk %s failed verification; moved to %s",
            hexdigest,
            target,
            extra={"chunk": hexdigest},
        )
        return True

    def iter_digests(self) -> Iterator[bytes]:
        for top in self._hex_entries(self._root, 2):
            top_path = os.path.join(self._root, top)
            for sub in self._hex_entries(top_path, 2):
                prefix = top + sub
                for name in self._hex_entries(os.path.join(top_path, sub), 2 * DIGEST_SIZE):
                    if name.startswith(prefix):
                        yield bytes.fromhex(name)

    def digests_under(self, top: int, older_than: float) -> list[bytes]:
        if not 0 <= top <= 0xFF:
            raise ValueError(f"fan-out folder {top} is not 0-255")
        top_hex = f"{top:02x}"
        top_path = os.path.join(self._root, top_hex)
        out: list[bytes] = []
        for sub in self._hex_entries(top_path, 2):
            folder = os.path.join(top_path, sub)
            for name in self._hex_entries(folder, 2 * DIGEST_SIZE):
                if not name.startswith(top_hex + sub):
                    continue
                try:
                    written = os.stat(os.path.join(folder, name)).st_mtime
                except FileNotFoundError:
                    continue  # removed meanwhile
                except OSError as exc:
                    raise _translate(exc, f"cannot inspect chunk {name}") from exc
                if written < older_than:
                    out.append(bytes.fromhex(name))
        return out

    def touch(self, digest: bytes) -> None:
        self._on_file(digest, os.utime, "touch")

    def _hex_entries(self, path: str, length: int) -> list[str]:
        """Sorted names in `path` that are `length` lowercase hex digits."""
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return []  # removed concurrently (a future GC)
        except OSError as exc:
            raise _translate(exc, f"cannot list chunk folder {path}") from exc
        return sorted(n for n in names if len(n) == length and _HEX_DIGITS.issuperset(n))

    # -- writing -----------------------------------------------------------------------------

    def put(self, digest: bytes, data: bytes | memoryview) -> bool:
        hexdigest = _check_digest(digest)
        view = memoryview(data).cast("B")
        if len(view) > self._max_chunk_size:
            raise ValueError(
                f"chunk {hexdigest} is {len(view)} bytes, over the {self._max_chunk_size} limit"
            )
        final = self._path(hexdigest)
        if self._holds(hexdigest, final, view):
            stored = False
        else:
            stored = self._write_new(hexdigest, view, final)
        # Even when another writer stored the chunk, our caller's next flush must cover it: that
        # writer (maybe another process) may not have flushed yet.
        with self._dirty_lock:
            self._dirty.add(os.path.dirname(final))
        return stored

    def put_many(self, items: Sequence[tuple[bytes, bytes | memoryview]]) -> int:
        # Same guarantee as `put` (no name ever points at bytes that are not durable), paid
        # once per batch: every temp file is written, then one syncfs makes them all durable,
        # then they are linked into place. At ~0.2 ms per fsync, 1,000 small chunks cost 0.2 s
        # one by one and a few ms this way. Without syncfs, each temp is fsynced as by `put`.
        pending: list[tuple[str, str]] = []
        try:
            for digest, data in items:
                hexdigest = _check_digest(digest)
                view = memoryview(data).cast("B")
                if len(view) > self._max_chunk_size:
                    raise ValueError(
                        f"chunk {hexdigest} is {len(view)} bytes, over the"
                        f" {self._max_chunk_size} limit"
                    )
                final = self._path(hexdigest)
                if self._holds(hexdigest, final, view):
                    with self._dirty_lock:
                        self._dirty.add(os.path.dirname(final))
                    continue
                fd, temp = self._create_temp()
                pending.append((temp, final))
                try:
                    _write_all(fd, view)
                    if self._syncfs_fd < 0 or _SYNCFS is None:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            if pending and self._syncfs_fd >= 0 and _SYNCFS is not None:
                with self._flush_lock:
                    if _SYNCFS(self._syncfs_fd) != 0:
                        code = ctypes.get_errno()
                        raise OSError(code, os.strerror(code))
            stored = 0
            for temp, final in pending:
                if self._link(temp, final):
                    stored += 1
                with self._dirty_lock:
                    self._dirty.add(os.path.dirname(final))
            return stored
        except OSError as exc:
            raise _translate(exc, "cannot store a batch of chunks") from exc
        finally:
            for temp, _ in pending:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

    def remove(self, digest: bytes) -> bool:
        return self._on_file(digest, os.unlink, "remove")

    def _holds(self, hexdigest: str, final: str, view: memoryview) -> bool:
        """True if `final` already holds exactly these bytes. A stored chunk that differs
        (damaged since it was written) is quarantined, so the caller's good bytes replace it:
        re-ingesting the original repairs the store instead of trusting the damaged copy."""
        try:
            fd = os.open(final, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _translate(exc, f"cannot look up chunk {hexdigest}") from exc
        try:
            stat = os.fstat(fd)
            same = stat.st_size == len(view) and _read_exactly(fd, len(view)) == view
        except OSError as exc:
            raise _translate(exc, f"cannot read chunk {hexdigest}") from exc
        finally:
            os.close(fd)
        if not same:
            self._quarantine_file(hexdigest, final, stat)
        else:
            # Needed again (an ingest or a transfer storing the same bytes): the orphan sweep
            # counts its grace from now.
            with contextlib.suppress(OSError):
                os.utime(final)
        return same

    def _write_new(self, hexdigest: str, view: memoryview, final: str) -> bool:
        fd, temp = self._create_temp()
        try:
            try:
                _write_all(fd, view)
                os.fsync(fd)
            finally:
                os.close(fd)
            return self._link(temp, final)
        except OSError as exc:
            raise _translate(exc, f"cannot store chunk {hexdigest}") from exc
        finally:
            # After a successful link this only drops the temp name; if it fails, the file
            # stays in our session folder until close() or the next cleanup_temp.
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def _create_temp(self) -> tuple[int, str]:
        session = self._ensure_session()
        while True:
            temp = f"{session}/{next(self._names)}"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
            except FileExistsError:
                continue  # not expected: the session folder is ours alone
            except OSError as exc:
                raise _translate(exc, f"cannot create a temp file in {session}") from exc
            return fd, temp

    def _link(self, temp: str, final: str) -> bool:
        """Give `temp` the name `final` unless that exists; True if this call created it."""
        try:
            os.link(temp, final)
        except FileExistsError:
            return False
        except FileNotFoundError:
            self._make_fanout_dirs(os.path.dirname(final))
        else:
            return True
        try:
            os.link(temp, final)
        except FileExistsError:
            return False
        return True

    def _make_fanout_dirs(self, leaf: str) -> None:
        """Create `root/ab/cd`, tolerating concurrent creators, and mark parents for `flush`."""
        parent = os.path.dirname(leaf)
        try:
            os.mkdir(leaf, _DIR_MODE)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(parent, _DIR_MODE)
            with self._dirty_lock:
                self._dirty.add(self._root)
            with contextlib.suppress(FileExistsError):
                os.mkdir(leaf, _DIR_MODE)
        except FileExistsError:
            pass  # a concurrent creator, which may not have flushed yet: fsync its parent too
        with self._dirty_lock:
            self._dirty.add(parent)

    def flush(self) -> None:
        # The flush lock makes a concurrent flush wait for the one already syncing the
        # directories it took, so no flush returns before every earlier put is durable.
        with self._flush_lock:
            with self._dirty_lock:
                pending, self._dirty = self._dirty, set()
            if not pending:
                return
            try:
                if self._syncfs_fd >= 0 and _SYNCFS is not None:
                    if _SYNCFS(self._syncfs_fd) != 0:
                        code = ctypes.get_errno()
                        raise OSError(code, os.strerror(code))
                else:
                    # Parents last: a fan-out folder's entry matters once its contents are safe.
                    for path in sorted(pending, key=len, reverse=True):
                        _fsync_dir(path)
            except OSError as exc:
                with self._dirty_lock:
                    self._dirty.update(pending)
                raise _translate(exc, f"cannot make new chunks in {self._root} durable") from exc

    # -- temp files --------------------------------------------------------------------------

    def _ensure_session(self) -> str:
        session, pid = self._session, os.getpid()
        if session is not None and self._session_pid == pid:
            return session
        with self._session_lock:
            if self._closed:
                raise ValueError(f"{self!r} is closed")
            if self._session is None or self._session_pid != pid:
                # First put, or first put in a forked child: it must not share (and later
                # remove) its parent's session. The inherited descriptor stays open.
                self._session, self._session_fd = self._open_session()
                self._session_pid = pid
            return self._session

    def _open_session(self) -> tuple[str, int]:
        """Create and lock a fresh tmp/<pid>-<random>/ folder for this instance's temp files."""
        while True:
            path = os.path.join(self._tmp, f"{os.getpid()}-{os.urandom(6).hex()}")
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _translate(exc, f"cannot create a temp folder in {self._tmp}") from exc
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # taken by another process's cleanup before we could lock it
            except OSError as exc:
                raise _translate(exc, f"cannot open temp folder {path}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # Another process's cleanup may have locked and removed the brand-new folder
                # between our mkdir and flock; then start again with a new one.
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    return path, fd
            except (BlockingIOError, FileNotFoundError):
                pass
            except OSError as exc:
                os.close(fd)
                raise _translate(exc, f"cannot lock temp folder {path}") from exc
            os.close(fd)

    def cleanup_temp(self) -> int:
        removed = 0
        try:
            entries = list(os.scandir(self._tmp))
        except OSError as exc:
            raise _translate(exc, f"cannot list temp folder {self._tmp}") from exc
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    removed += self._remove_dead_session(entry.path)
                else:
                    os.unlink(entry.path)  # no writer puts files directly in tmp/
                    removed += 1
            except FileNotFoundError:
                continue  # removed by a concurrent cleanup
            except OSError as exc:
                raise _translate(exc, f"cannot remove temp files in {entry.path}") from exc
        if removed:
            logger.info("removed %d leftover temp files from %s", removed, self._tmp)
        return removed

    def _remove_dead_session(self, path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live writer (maybe this very instance) owns it
            return self._remove_tree(path)
        finally:
            os.close(fd)

    @staticmethod
    def _remove_tree(path: str) -> int:
        """Remove the files in a session folder, then the folder; return how many files."""
        removed = 0
        for name in os.listdir(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
                removed += 1
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)
        return removed
