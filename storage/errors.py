"""Typed errors of the storage layer; foreign exceptions (OSError, sqlite3) are translated here."""

from __future__ import annotations

__all__ = [
    "ChunkNotFoundError",
    "DatabaseError",
    "IntegrityError",
    "NotFoundError",
    "QuotaExceededError",
    "StorageError",
]


class StorageError(Exception):
    """Root of every error raised by `storage/`. `code` is stable and machine-readable."""

    code = "storage-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IntegrityError(StorageError):
    """Stored bytes no longer match their SHA-256: never served, quarantined for repair."""

    code = "integrity-error"


class ChunkNotFoundError(StorageError):
    """A chunk the catalogue refers to is not in the chunk store."""

    code = "chunk-missing"


class NotFoundError(StorageError):
    """A record or file that this store does not hold."""

    code = "not-found"


class QuotaExceededError(StorageError):
    """Storing this would take the node past its configured quota."""

    code = "quota-exceeded"


class DatabaseError(StorageError):
    """The record database failed (locked too long, corrupt, disk full)."""

    code = "database-error"
