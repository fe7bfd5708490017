"""Serving a file's bytes over HTTP: conditional requests, one byte range, a verified stream.

Request evaluation follows RFC 9110 §13.2.2: If-Match, then If-None-Match (→ 304), then Range
only if If-Range (when sent) matches the strong ETag. One range is honoured; a malformed or
multi-range Range header is ignored and the whole file is sent (§14.2 allows that).

Integrity: every chunk is verified by `Store.iter_range` before any of its bytes are yielded.
The first piece is fetched before the status line goes out, so damage there is an ordinary 500
problem. Damage found later, after headers went out, aborts the connection: the client sees a
truncated transfer (Content-Length is always set), never wrong bytes and never a clean finish.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from node.http.problems import RESPONSE_STARTED, Problem
from protocol.records import FileEntry
from storage.errors import IntegrityError, StorageError
from storage.store import Store
from sync.transfer import TransferError

__all__ = [
    "ByteRange",
    "Unsatisfiable",
    "content_disposition",
    "etag_for",
    "etag_matches",
    "parse_range",
    "send_file",
]

log = logging.getLogger(__name__)

# Media types a browser would run as a document of our origin: sandboxed when served.
_ACTIVE_TYPES = re.compile(
    r"text/html|application/xhtml\+xml|image/svg\+xml|text/xml|application/xml"
    r"|application/[a-z0-9.+-]*\+xml|text/javascript|application/javascript"
)
_SANDBOX_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d{0,19})\s*-\s*(\d{0,19})\s*", re.IGNORECASE)
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


@dataclass(frozen=True)
class ByteRange:
    start: int
    stop: int  # exclusive


class Unsatisfiable(Exception):
    """A syntactically valid range that selects nothing of the file."""


def etag_for(entry: FileEntry) -> str:
    """Strong validator: the whole-file SHA-256 identifies the bytes exactly."""
    return f'"{entry.sha256.hex()}"'


def _entity_tags(header: str) -> list[tuple[bool, str]] | None:
    """(weak, opaque-tag) of each entity-tag in a list; None if the list is malformed."""
    tags, pos = [], 0
    while pos < len(header):
        m = _ENTITY_TAG.match(header, pos)
        if m is None or m.end() == pos:
            return None
        tags.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return tags


def etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    """Does an If-Match / If-None-Match field value match `etag` (`*` matches anything)?"""
    if header.strip() == "*":
        return True
    tags = _entity_tags(header) or []
    return any(tag == etag and (weak or not is_weak) for is_weak, tag in tags)


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one byte range a Range header asks for, or None to send the whole file.

    Raises Unsatisfiable for a valid single range that starts at or beyond the end, or asks
    for the last 0 bytes."""
    if size == 0:
        return None
    m = _RANGE.fullmatch(header)
    if m is None:
        return None  # malformed, another unit, or several ranges: ignore
    first, last = m.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignore
    if start >= size:
        raise Unsatisfiable
    stop = min(int(last) + 1, size) if last else size
    return ByteRange(start, stop)


def content_disposition(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return f"inline; filename*=UTF-8''{quote(name, safe='')}"


def _base_headers(resp: web.StreamResponse, etag: str) -> None:
    resp.headers["ETag"] = etag
    resp.headers["Accept-Ranges"] = "bytes"
    # Rights can change (an embargo imposed, access restricted): caches revalidate each time,
    # which costs a 304 thanks to the ETag.
    resp.headers["Cache-Control"] = "no-cache"


def _select(request: web.Request, entry: FileEntry, etag: str) -> ByteRange | None:
    """Apply the preconditions; return the range to send (None: the whole file)."""
    if_match = request.headers.get("If-Match")
    if if_match is not None and not etag_matches(if_match, etag, weak=False):
        raise Problem(
            412,
            "precondition-failed",
            "Precondition failed",
            "The file does not match the ETag in If-Match.",
            headers={"ETag": etag},
        )
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and etag_matches(if_none_match, etag, weak=True):
        raise web.HTTPNotModified(
            headers={"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
        )
    range_header = request.headers.get("Range")
    if range_header is None:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return None  # a different (or weak, or date) validator: send the whole current file
    try:
        return parse_range(range_header, entry.size)
    except Unsatisfiable:
        raise Problem(
            416,
            "range-not-satisfiable",
            "Range not satisfiable",
            f"The file is {entry.size} bytes long; the requested range is outside it.",
            headers={"Content-Range": f"bytes */{entry.size}", "Accept-Ranges": "bytes"},
        ) from None


async def send_file(
    request: web.Request,
    store: Store,
    pid: str,
    entry: FileEntry,
    remote: Callable[[int, int], AsyncIterator[bytes]] | None = None,
) -> web.StreamResponse:
    """Answer GET/HEAD for one file the caller has already allowed the reader to have: from the
    store, or from `remote(start, stop)` (content held by other nodes, verified as it comes)."""
    etag = etag_for(entry)
    selected = _select(request, entry, etag)
    start, stop = (selected.start, selected.stop) if selected else (0, entry.size)
    resp = web.StreamResponse(status=206 if selected else 200)
    _base_headers(resp, etag)
    resp.headers["Content-Type"] = entry.media_type
    resp.headers["Content-Disposition"] = content_disposition(entry.path)
    if _ACTIVE_TYPES.fullmatch(entry.media_type):
        resp.headers["Content-Security-Policy"] = _SANDBOX_CSP
    if selected:
        resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{entry.size}"
    resp.content_length = stop - start
    if request.method == "HEAD" or stop == start:
        await resp.prepare(request)
        await resp.write_eof()
        return resp

    pieces = remote(start, stop) if remote is not None else store.iter_range(entry, start, stop)
    try:
        try:
            first = await anext(pieces)  # raises before any header is sent if it is damaged
        except TransferError as e:
            raise Problem(
                502,
                "content-unavailable",
                "Content unavailable",
                f"No library holding {pid} could deliver it intact just now ({e.message}).",
            ) from e
        await resp.prepare(request)
        request[RESPONSE_STARTED] = True
        sent = 0
        try:
            await resp.write(first)
            sent += len(first)
            async for piece in pieces:
                await resp.write(piece)
                sent += len(piece)
        except TransferError as e:
            log.warning("%s of %s aborted mid-stream: %s", entry.path, pid, e.message)
            _abort(request)
            return resp
        except StorageError as e:
            log.error(
                "%s: aborted %s of %s after %d of %d bytes: %s",
                "INTEGRITY FAILURE" if isinstance(e, IntegrityError) else "storage failure",
                entry.path,
                pid,
                sent,
                stop - start,
                e.message,
                extra={"pid": pid},
            )
            _abort(request)
            return resp
        except ConnectionError:
            log.debug("reader went away during %s of %s", entry.path, pid, extra={"pid": pid})
            _abort(request)
            return resp
    finally:
        if isinstance(pieces, AsyncGenerator):
            await pieces.aclose()
    await resp.write_eof()
    return resp


def _abort(request: web.Request) -> None:
    """Drop the connection without finishing the response: no clean end, no further bytes."""
    transport = request.transport
    if transport is not None:
        transport.abort()
