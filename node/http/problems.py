"""The one place HTTP errors are rendered: RFC 9457 `application/problem+json` (or a small HTML
page for a browser on an HTML route), from typed errors raised anywhere below a handler.

Every problem has `type` (a `https://siku.invalid/problems/<code>` URI, or "about:blank" for a
plain HTTP status), `title`, `status`, `detail`, `instance` and a stable `code`. Internal errors
are logged with their traceback and answered with a generic detail: nothing internal leaks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from node.http import pages
from protocol.errors import IdentifierError, ProtocolError
from storage.errors import (
    ChunkNotFoundError,
    DatabaseError,
    IntegrityError,
    NotFoundError,
    QuotaExceededError,
    StorageError,
)

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_JSON",
    "RESPONSE_STARTED",
    "Problem",
    "dumps",
    "problem_middleware",
    "problem_response",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://siku.invalid/problems/"
DATABASE_RETRY_AFTER_SECONDS = 5

# Set on a request by a handler once it has sent response headers: after that, an error can
# no longer be reported as a problem, only by aborting the connection.
RESPONSE_STARTED = web.RequestKey("siku.response_started", bool)


def dumps(obj: object) -> str:
    """Compact JSON with non-ASCII text kept readable (Chinese titles stay Chinese)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class Problem(Exception):
    """An HTTP error a handler raises on purpose, with a stable `code` and a reader-facing
    `detail`. `extra` adds members to the problem object; `headers` go on the response."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def _wants_html(request: web.Request) -> bool:
    if request.path.startswith(("/api/", "/admin/")):
        return False
    return "text/html" in request.headers.get("Accept", "")


def problem_response(
    request: web.Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    type_uri: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    """Render one problem; HTML instead of JSON only for a browser on a non-API route."""
    body: dict[str, object] = {
        "type": type_uri or PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.rel_url.raw_path,
        "code": code,
    }
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    if _wants_html(request):
        resp = pages.html_response(pages.error_page(status, title, detail), status=status)
    else:
        resp = web.Response(
            status=status, text=dumps(body), content_type=PROBLEM_JSON, charset="utf-8"
        )
    resp.headers.update(headers or {})
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    title = exc.reason or f"HTTP {exc.status}"
    code = "-".join(title.lower().replace("'", "").split()) or f"http-{exc.status}"
    default_text = f"{exc.status}: {exc.reason}"
    detail = exc.text if exc.text and exc.text != default_text else title
    keep = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    return problem_response(
        request, exc.status, code, title, detail, type_uri="about:blank", headers=keep
    )


def _translate(request: web.Request, exc: Exception) -> web.Response:
    """Map a typed error to its problem; log what an operator must see."""
    if isinstance(exc, Problem):
        return problem_response(
            request,
            exc.status,
            exc.code,
            exc.title,
            exc.detail,
            headers=exc.headers,
            extra=exc.extra,
        )
    if isinstance(exc, IdentifierError):
        return problem_response(request, 400, exc.code, "Bad identifier", exc.message)
    if isinstance(exc, ProtocolError):
        return problem_response(request, 400, exc.code, "Malformed input", exc.message)
    if isinstance(exc, NotFoundError):
        return problem_response(request, 404, exc.code, "Not found", exc.message)
    if isinstance(exc, ChunkNotFoundError):
        log.warning("content missing from the chunk store for %s: %s", request.path, exc.message)
        return problem_response(
            request,
            404,
            exc.code,
            "Content not held here",
            "This node does not hold this file's content; another library may hold it.",
        )
    if isinstance(exc, IntegrityError):
        log.error(
            "INTEGRITY FAILURE serving %s: %s (not served; needs repair)",
            request.path,
            exc.message,
        )
        return problem_response(
            request,
            500,
            exc.code,
            "Stored data failed its integrity check",
            "The stored copy failed its integrity check and was not served; the node has"
            " recorded the damage in its log.",
        )
    if isinstance(exc, DatabaseError):
        log.error("database error serving %s: %s", request.path, exc.message)
        return problem_response(
            request,
            503,
            exc.code,
            "Catalogue temporarily unavailable",
            "The catalogue database is busy or failing; try again shortly.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, QuotaExceededError):
        log.error("storage full serving %s: %s", request.path, exc.message)
        return problem_response(
            request, 507, exc.code, "Storage full", "The node has no room to store this."
        )
    if isinstance(exc, StorageError):
        log.error("storage error serving %s", request.path, exc_info=exc)
        return problem_response(
            request, 500, exc.code, "Storage error", "The node could not read its storage."
        )
    log.error("unexpected error serving %s %s", request.method, request.path, exc_info=exc)
    return problem_response(
        request, 500, "internal-error", "Internal error", "The node failed to answer this request."
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error a handler raises into a problem response (redirects and 304 pass)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(request, exc)
    except Exception as exc:
        if request.get(RESPONSE_STARTED):
            # Headers (maybe some body) are out: a problem now would corrupt the stream. Drop
            # the connection so the client sees a failed transfer, never a finished one.
            log.error("error after the response started for %s", request.path, exc_info=exc)
            if request.transport is not None:
                request.transport.abort()
            raise
        return _translate(request, exc)
