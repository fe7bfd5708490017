"""The protocol's 8-byte keys (protocol.holdings) as SQLite stores them: signed 64-bit integers."""

from __future__ import annotations

__all__ = ["int_key", "key_int"]


def key_int(key: bytes) -> int:
    return int.from_bytes(key, "big", signed=True)


def int_key(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)
