"""Copy a file into the chunk store: cut, hash, store each chunk, and describe it for a manifest.

Runs in worker threads: hashlib and file I/O release the GIL, so two files in two threads use
both cores (reading, hashing and fsyncing overlap). Nothing here is visible to readers until
the caller commits the record that refers to the chunks, after `ChunkStore.flush()`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from protocol.records import CHUNK_SIZE, ChunkRef, FileEntry
from storage.chunks import ChunkStore
from storage.errors import StorageError

__all__ = ["DigestMismatchError", "SourceReadError", "import_file", "new_bytes"]


class SourceReadError(StorageError):
    """The file being imported could not be read (vanished, unreadable, changed size)."""

    code = "source-unreadable"


class DigestMismatchError(StorageError):
    """The file's content does not match a digest it was declared with (e.g. a bag manifest)."""

    code = "digest-mismatch"


def _chunks_of(source: Path) -> Iterator[memoryview]:
    """The file's successive CHUNK_SIZE pieces (the last may be short), read into one reused
    buffer: each piece is valid only until the next is read."""
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise SourceReadError(f"{source}: cannot open: {e.strerror}") from e
    try:
        view = memoryview(bytearray(CHUNK_SIZE))
        while n := _read_full(fd, view, source):
            yield view[:n]
            if n < CHUNK_SIZE:
                break
    finally:
        os.close(fd)


def _read_full(fd: int, view: memoryview, source: Path) -> int:
    got = 0
    while got < len(view):
        try:
            n = os.readv(fd, [view[got:]])
        except OSError as e:
            raise SourceReadError(f"{source}: read failed: {e.strerror}") from e
        if n == 0:
            break
        got += n
    return got


def import_file(
    store: ChunkStore,
    source: Path,
    path: str,
    media_type: str,
    expected: Sequence[tuple[str, str]] = (),
    progress: Callable[[int], None] | None = None,
) -> FileEntry:
    """Store `source` as chunks and return its manifest entry (named `path` in the resource).

    `expected` holds (algorithm, hex digest) pairs declared for the file; each is checked while
    the file is read once. `progress` is called with the byte count of each chunk stored."""
    whole = hashlib.sha256()
    checks = [(alg, hashlib.new(alg), hexdigest.lower()) for alg, hexdigest in expected]
    chunks: list[ChunkRef] = []
    for data in _chunks_of(source):
        h = hashlib.sha256(data)
        # The whole-file hash starts as a copy of the first chunk's: a file of one chunk
        # (most files) is hashed once, not twice.
        if chunks:
            whole.update(data)
        else:
            whole = h.copy()
        digest = h.digest()
        store.put(digest, data)
        chunks.append(ChunkRef(digest, len(data)))
        for _, check, _ in checks:
            check.update(data)
        if progress is not None:
            progress(len(data))
    for alg, check, want in checks:
        if check.hexdigest() != want:
            raise DigestMismatchError(f"{source}: {alg} is {check.hexdigest()}, declared {want}")
    size = sum(c.size for c in chunks)
    return FileEntry(path, size, media_type, whole.digest(), tuple(chunks))


def new_bytes(store: ChunkStore, source: Path) -> int:
    """Bytes that importing `source` would add: the sizes of its chunks not yet stored.

    Reads and hashes the file without storing anything; used when a quota is nearly full,
    where an ingest of already-stored content must still be allowed."""
    total = 0
    seen: set[bytes] = set()
    for data in _chunks_of(source):
        digest = hashlib.sha256(data).digest()
        if digest not in seen and not store.has(digest):
            total += len(data)
        seen.add(digest)
    return total
