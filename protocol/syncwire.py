"""Bodies of the catalogue-sync peer routes (canonical msgpack, strictly decoded, bounded).

    ids:       [SYNCWIRE_VERSION, [bin 32, ...]]          fetch requests, offers
    envelopes: [SYNCWIRE_VERSION, [bin, ...]]             fetch answers, pushes

Reconciliation messages are protocol.reconcile's own format, carried as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.errors import DecodeError, UnsupportedVersionError
from protocol.records import MAX_RECORD_BYTES, canonical_pack, canonical_unpack

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_IDS",
    "decode_envelopes",
    "decode_ids",
    "encode_envelopes",
    "encode_ids",
]

SYNCWIRE_VERSION = 1
ID_BYTES = 32
MAX_IDS = 4_096  # ids in one fetch or offer (~140 KB)
# Envelopes in one push or fetch answer: at most this many bytes, except that a single record of
# up to MAX_RECORD_BYTES always fits on its own.
MAX_BATCH_BYTES = 2 << 20
MAX_ENVELOPES = 8_192
MAX_BODY_BYTES = MAX_RECORD_BYTES + 64 * 1024


def encode_ids(ids: Sequence[bytes]) -> bytes:
    if len(ids) > MAX_IDS or any(len(i) != ID_BYTES for i in ids):
        raise ValueError(f"at most {MAX_IDS} ids of {ID_BYTES} bytes")
    return canonical_pack([SYNCWIRE_VERSION, list(ids)])


def _list(data: bytes, what: str) -> list[object]:
    if len(data) > MAX_BODY_BYTES:
        raise DecodeError(f"{what} larger than {MAX_BODY_BYTES} bytes")
    value = canonical_unpack(data, what)
    if not (isinstance(value, list) and len(value) == 2 and type(value[0]) is int):
        raise DecodeError(f"{what} is not [version, list]")
    if value[0] != SYNCWIRE_VERSION:
        raise UnsupportedVersionError(f"{what} version {value[0]} is not supported")
    if not isinstance(value[1], list):
        raise DecodeError(f"{what} is not [version, list]")
    # One encoding per value, as for records: a body our encoder would not write is refused.
    if canonical_pack(value) != data:
        raise DecodeError(f"{what} is not in canonical form")
    return value[1]


def decode_ids(data: bytes) -> list[bytes]:
    items = _list(data, "id list")
    if len(items) > MAX_IDS:
        raise DecodeError(f"more than {MAX_IDS} ids")
    if not all(isinstance(i, bytes) and len(i) == ID_BYTES for i in items):
        raise DecodeError(f"an id is not {ID_BYTES} bytes")
    return [i for i in items if isinstance(i, bytes)]


def encode_envelopes(envelopes: Sequence[bytes]) -> bytes:
    return canonical_pack([SYNCWIRE_VERSION, list(envelopes)])


def decode_envelopes(data: bytes) -> list[bytes]:
    items = _list(data, "record list")
    if len(items) > MAX_ENVELOPES:
        raise DecodeError(f"more than {MAX_ENVELOPES} records")
    if not all(isinstance(i, bytes) and 0 < len(i) <= MAX_RECORD_BYTES for i in items):
        raise DecodeError("a record is empty, too large or not bytes")
    return [i for i in items if isinstance(i, bytes)]
