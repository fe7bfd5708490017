"""Bodies of the content peer route, /peer/v1/content/chunks (msgpack, strictly bounded).

    request: [CONTENT_VERSION, pid, max_bytes, [bin 32, ...]]   chunks of `pid`, in order
    answer:  [CONTENT_VERSION, [bin, ...]]                   the chunks, in the same order

The answer is a prefix of what was asked: the responder stops before the first chunk it does
not hold, that is not part of the resource `pid` it holds, or before `max_bytes` would be passed
(one chunk always fits). Naming the resource lets the responder apply its rights: it answers
only for resources it holds, and dark content (restricted, on site only, under embargo) only
to the nodes that may keep a copy of it. Every chunk is checked
against its digest by the receiver (sync.transfer), so the answer's bytes need no canonical
check beyond their shape: a wrong byte anywhere is a chunk that fails its hash.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from protocol.errors import DecodeError, UnsupportedVersionError
from protocol.records import CHUNK_SIZE, canonical_pack, canonical_unpack

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_CHUNKS",
    "decode_chunk_request",
    "decode_chunks",
    "encode_chunk_request",
    "encode_chunks",
]

CONTENT_VERSION = 1
DIGEST_BYTES = 32
MAX_CHUNKS = 4_096  # digests in one request (~140 KB)
MAX_ANSWER_BYTES = 16 << 20  # chunk bytes in one answer, at most
MAX_PID_CHARS = 256
MAX_REQUEST_BYTES = MAX_CHUNKS * (DIGEST_BYTES + 2) + MAX_PID_CHARS * 4 + 64


def encode_chunk_request(pid: str, digests: Sequence[bytes], max_bytes: int) -> bytes:
    if len(digests) > MAX_CHUNKS or any(len(d) != DIGEST_BYTES for d in digests):
        raise ValueError(f"at most {MAX_CHUNKS} digests of {DIGEST_BYTES} bytes")
    if type(max_bytes) is not int or max_bytes <= 0:
        raise ValueError("max_bytes is a positive integer")
    if not isinstance(pid, str) or not 0 < len(pid) <= MAX_PID_CHARS:
        raise ValueError("pid is a non-empty string")
    return canonical_pack([CONTENT_VERSION, pid, max_bytes, list(digests)])


def decode_chunk_request(data: bytes) -> tuple[str, list[bytes], int]:
    """(pid, digests, max_bytes) of a request; max_bytes is capped at MAX_ANSWER_BYTES. The
    pid is only checked to be short text: the caller looks it up."""
    if len(data) > MAX_REQUEST_BYTES:
        raise DecodeError("chunk request too large")
    value = canonical_unpack(data, "chunk request")
    if not (isinstance(value, list) and len(value) == 4 and type(value[0]) is int):
        raise DecodeError("chunk request is not [version, pid, max_bytes, digests]")
    version, pid, max_bytes, digests = value
    if version != CONTENT_VERSION:
        raise UnsupportedVersionError(f"chunk request version {version}")
    if not isinstance(pid, str) or not 0 < len(pid) <= MAX_PID_CHARS:
        raise DecodeError("chunk request names no pid")
    if type(max_bytes) is not int or max_bytes <= 0 or not isinstance(digests, list):
        raise DecodeError("chunk request is not [version, pid, max_bytes, digests]")
    if len(digests) > MAX_CHUNKS:
        raise DecodeError(f"more than {MAX_CHUNKS} digests")
    if not all(isinstance(d, bytes) and len(d) == DIGEST_BYTES for d in digests):
        raise DecodeError(f"a digest is not {DIGEST_BYTES} bytes")
    if canonical_pack(value) != data:
        raise DecodeError("chunk request is not in canonical form")
    return pid, digests, min(max_bytes, MAX_ANSWER_BYTES)


def encode_chunks(chunks: Sequence[bytes]) -> bytes:
    return canonical_pack([CONTENT_VERSION, list(chunks)])


def decode_chunks(data: bytes, asked: int) -> list[bytes]:
    """The chunks of an answer to a request for `asked` digests."""
    if len(data) > MAX_ANSWER_BYTES + MAX_CHUNKS * 8 + 64:
        raise DecodeError("chunk answer too large")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            max_bin_len=CHUNK_SIZE,
            max_str_len=0,
            max_array_len=MAX_CHUNKS,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.FormatError, msgpack.StackError) as e:
        raise DecodeError(f"chunk answer is not valid msgpack: {e}") from e
    if not (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) is int
        and isinstance(value[1], list)
    ):
        raise DecodeError("chunk answer is not [version, chunks]")
    if value[0] != CONTENT_VERSION:
        raise UnsupportedVersionError(f"chunk answer version {value[0]}")
    chunks = value[1]
    if len(chunks) > asked or not all(isinstance(c, bytes) for c in chunks):
        raise DecodeError("chunk answer has more chunks than asked, or one is not bytes")
    return chunks
