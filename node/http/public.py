"""The public listener: catalogue search, records, content downloads, /id/ landing pages.

Routes (all GET, HEAD too):
    /api/v1/search?q=&page=&per_page=   ranked search, JSON
    /api/v1/records/<pid>               the record as JSON, or the signed envelope as msgpack
    /api/v1/content/<pid>/<file path>   the file's verified bytes (Range, ETag), if rights allow
    /id/<pid>                           HTML landing page
    /  and  /search?q=                  HTML search form and results

A pid is `ark:NAAN/name` and so spans two path segments; a non-canonical spelling (`ark:/…`,
upper case, hyphens) is redirected to the canonical URL. Rights are checked on every content
request: for now only content open on today's date is served to anyone.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import web

from node.context import NodeContext
from node.http import content, pages
from node.http.peer import add_peer_routes
from node.http.problems import Problem, dumps, problem_middleware
from node.http.security import add_security_headers
from protocol import ark
from protocol.errors import ProtocolError
from protocol.identity import node_id
from protocol.records import CatalogueRecord, SignedRecord, encode_envelope
from storage.catalogue import MAX_OFFSET, MAX_PAGE_SIZE, SearchPage
from storage.errors import IntegrityError, NotFoundError
from storage.textindex import match_expression

__all__ = [
    "DEFAULT_PER_PAGE",
    "RECORD_MSGPACK",
    "build_public_app",
    "content_url",
    "landing_url",
    "record_url",
]

log = logging.getLogger(__name__)

RECORD_MSGPACK = "application/vnd.siku.record+msgpack"
DEFAULT_PER_PAGE = 20
_NUMBER = re.compile(r"[0-9]{1,9}")


def record_url(pid: str) -> str:
    return f"/api/v1/records/{pid}"


def landing_url(pid: str) -> str:
    return f"/id/{pid}"


def content_url(pid: str, path: str) -> str:
    return f"/api/v1/content/{pid}/{quote(path, safe='/')}"


def today() -> dt.date:
    """The date rights are judged on: the node's local calendar (the library's own)."""
    return dt.date.today()


# --- request helpers --------------------------------------------------------------------------


def _canonical_pid(request: web.Request, raw: str, prefix: str, suffix: str = "") -> str:
    """The checked pid; redirect a non-canonical spelling to the canonical URL."""
    pid = str(ark.parse(raw))  # IdentifierError → 400 problem (says "probably mistyped")
    if pid != raw:
        location = prefix + pid + (("/" + quote(suffix, safe="/")) if suffix else "")
        if request.rel_url.raw_query_string:  # kept encoded: decoding would change it
            location += "?" + request.rel_url.raw_query_string
        raise web.HTTPMovedPermanently(location)
    return pid


async def stored_record(ctx: NodeContext, pid: str) -> tuple[SignedRecord, CatalogueRecord]:
    """The record held for `pid`, a tombstone included; NotFoundError if there is none."""
    try:
        found = await ctx.store.catalogue.get(pid)
    except ProtocolError as e:
        # The database re-verifies every record it returns: failing here means a damaged row.
        raise IntegrityError(f"stored record {pid} fails verification: {e.message}") from e
    if found is None:
        raise NotFoundError(f"This node's catalogue has no record {pid}.")
    return found


async def _live_record(ctx: NodeContext, pid: str) -> tuple[SignedRecord, CatalogueRecord]:
    signed, record = await stored_record(ctx, pid)
    if record.deleted:
        raise Problem(
            410, "deleted", "Record deleted", f"The record {pid} was withdrawn by its library."
        )
    return signed, record


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    if not _NUMBER.fullmatch(raw) or not (low <= int(raw) <= high):
        raise Problem(
            400,
            "bad-parameter",
            "Bad parameter",
            f"{name} must be a whole number from {low} to {high}.",
            extra={"parameter": name},
        )
    return int(raw)


def _search_params(request: web.Request) -> tuple[str, int, int]:
    q = request.query.get("q", "")
    if not q.strip():
        raise Problem(400, "missing-query", "Missing query", "Give a search query in q.")
    try:
        match_expression(q)  # the catalogue's own bounds on length and number of terms
    except ValueError as e:
        raise Problem(400, "bad-query", "Query too large", f"{e}.") from e
    per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PAGE_SIZE)
    page = _int_param(request, "page", 1, 1, MAX_OFFSET // per_page + 1)
    return q, page, per_page


def _json(data: object, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=dumps(data), content_type="application/json", charset="utf-8"
    )


def _wants_msgpack(request: web.Request) -> bool:
    fmt = request.query.get("format", "")
    if fmt:
        if fmt not in ("json", "msgpack"):
            raise Problem(400, "bad-parameter", "Bad parameter", "format is json or msgpack.")
        return fmt == "msgpack"
    for media_range in request.headers.get("Accept", "").split(","):
        media, *params = (p.strip() for p in media_range.split(";"))
        if media.lower() == RECORD_MSGPACK:
            return not any(
                p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params
            )
    return False


# --- JSON shapes ------------------------------------------------------------------------------


def record_json(signed: SignedRecord, record: CatalogueRecord, day: dt.date) -> dict[str, Any]:
    """The record as JSON; `open_now` says whether its content is served on `day`."""
    rights = record.rights
    return {
        "pid": record.pid,
        "origin": node_id(record.origin),
        "version": str(record.version),
        "deleted": record.deleted,
        "dc": {
            element: [{"value": v.value, "lang": v.lang} for v in values]
            for element, values in record.dc.items()
        },
        "collection": record.collection,
        "rights": {
            "access": rights.access,
            "embargo_until": rights.embargo_until.isoformat() if rights.embargo_until else None,
            "statement": rights.statement,
            "license": rights.license,
            "open_now": rights.is_open_on(day),
        },
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "media_type": f.media_type,
                "sha256": f.sha256.hex(),
                "chunks": len(f.chunks),
                "content_url": content_url(record.pid, f.path),
            }
            for f in record.files
        ],
        "signature": {"signer": signed.signer.hex(), "signature": signed.signature.hex()},
        "landing_url": landing_url(record.pid),
    }


def _first(values: object) -> tuple[str, str]:
    if isinstance(values, list) and values and isinstance(values[0], dict):
        return str(values[0].get("value", "")), str(values[0].get("lang", ""))
    return "", ""


def _all(values: object) -> list[str]:
    if not isinstance(values, list):
        return []
    return [str(v.get("value", "")) for v in values if isinstance(v, dict)]


# --- handlers ---------------------------------------------------------------------------------


class _PublicApi:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def _search(self, request: web.Request) -> tuple[int, int, SearchPage]:
        q, page, per_page = _search_params(request)
        result = await self.ctx.store.catalogue.search(
            q, limit=per_page, offset=(page - 1) * per_page
        )
        return page, per_page, result

    async def search(self, request: web.Request) -> web.Response:
        page, per_page, result = await self._search(request)
        results = []
        for hit in result.hits:
            s = hit.summary
            results.append(
                {
                    "pid": hit.pid,
                    "title": _first(s.get("title"))[0],
                    "creator": _all(s.get("creator")),
                    "date": _first(s.get("date"))[0] or None,
                    "collection": s.get("collection", ""),
                    "access": s.get("access", ""),
                    "score": round(hit.score, 6),
                    "record_url": record_url(hit.pid),
                    "landing_url": landing_url(hit.pid),
                }
            )
        return _json(
            {
                "query": result.query,
                "total": result.total,
                "total_is_lower_bound": result.total_is_lower_bound,
                "page": page,
                "per_page": per_page,
                "results": results,
            }
        )

    async def record(self, request: web.Request) -> web.Response:
        pid = _canonical_pid(request, request.match_info["pid"], "/api/v1/records/")
        wants_msgpack = _wants_msgpack(request)
        signed, record = await _live_record(self.ctx, pid)
        if wants_msgpack:
            resp = web.Response(body=encode_envelope(signed), content_type=RECORD_MSGPACK)
        else:
            resp = _json(record_json(signed, record, today()))
        resp.headers["Vary"] = "Accept"
        return resp

    async def content(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        parts = tail.split("/")
        n = 3 if parts[0].lower() == "ark:" else 2  # `ark:/NAAN/name` has one more segment
        raw_pid, path = "/".join(parts[:n]), "/".join(parts[n:])
        pid = _canonical_pid(request, raw_pid, "/api/v1/content/", path)
        _, record = await _live_record(self.ctx, pid)
        entry = record.file(path) if path else None
        if entry is None:
            raise NotFoundError(f"The record {pid} has no file {path!r}.")
        self._check_rights(record)
        if await self.ctx.store.catalogue.is_held(pid):
            if self.ctx.replication is not None:
                self.ctx.replication.used(pid)  # cache eviction: least recently used first
            return await content.send_file(request, self.ctx.store, pid, entry)
        replication = self.ctx.replication
        if replication is None:
            raise Problem(
                404,
                "content-not-held",
                "Content held elsewhere",
                f"This node has the catalogue record of {pid} but not its files;"
                " they are held by the library that catalogued it.",
            )
        # Open content held elsewhere: streamed from the nearest holder, verified chunk by
        # chunk, and cached here for the next reader.
        files = record.files

        def remote(start: int, stop: int) -> AsyncIterator[bytes]:
            assert replication is not None and entry is not None
            return replication.stream_remote(pid, files, entry, start, stop)

        return await content.send_file(request, self.ctx.store, pid, entry, remote)

    @staticmethod
    def _check_rights(record: CatalogueRecord) -> None:
        rights = record.rights
        if rights.is_open_on(today()):
            return
        if rights.access == "embargoed" and rights.embargo_until is not None:
            until = rights.embargo_until.isoformat()
            detail = f"This file is embargoed until {until}; it can be downloaded from that date."
        else:
            detail = f"This file's access status is {rights.access!r}: " + {
                "network": "it is available only inside the library network.",
                "onsite": "it is available only on site, in the library's reading rooms.",
                "restricted": "it is not available to readers.",
            }.get(rights.access, "it is not available here.")
        raise Problem(
            403,
            "access-denied",
            "Access denied",
            detail,
            extra={
                "access": rights.access,
                "embargo_until": (
                    rights.embargo_until.isoformat() if rights.embargo_until else None
                ),
            },
        )

    async def landing(self, request: web.Request) -> web.Response:
        pid = _canonical_pid(request, request.match_info["pid"], "/id/")
        _, record = await _live_record(self.ctx, pid)
        body = pages.landing_page(
            self.ctx.config.name,
            record,
            today=today(),
            record_url=record_url(pid),
            files=[(f, content_url(pid, f.path)) for f in record.files],
        )
        return pages.html_response(body)

    async def home(self, request: web.Request) -> web.Response:
        return pages.html_response(pages.home_page(self.ctx.config.name))

    async def search_page(self, request: web.Request) -> web.Response:
        if not request.query.get("q", "").strip():
            return await self.home(request)
        page, per_page, result = await self._search(request)
        q, total, hits = result.query, result.total, result.hits
        rows = []
        for hit in hits:
            title, lang = _first(hit.summary.get("title"))
            rows.append(
                pages.SearchRow(
                    pid=hit.pid,
                    title=title,
                    title_lang=lang,
                    creators=_all(hit.summary.get("creator")),
                    date=_first(hit.summary.get("date"))[0],
                    access=str(hit.summary.get("access", "")),
                )
            )
        body = pages.search_page(self.ctx.config.name, q, total, page, per_page, rows)
        return pages.html_response(body)


def build_public_app(ctx: NodeContext) -> web.Application:
    """The reader-facing application; the daemon runs it on `ctx.config.listen`."""
    app = web.Application(
        client_max_size=ctx.config.max_body_bytes, middlewares=[problem_middleware]
    )
    api = _PublicApi(ctx)
    app.router.add_get("/api/v1/search", api.search)
    app.router.add_get("/api/v1/records/{pid:.+}", api.record)
    app.router.add_get("/api/v1/content/{tail:.+}", api.content)
    app.router.add_get("/id/{pid:.+}", api.landing)
    app.router.add_get("/", api.home)
    app.router.add_get("/search", api.search_page)
    add_peer_routes(app, ctx)
    app.on_response_prepare.append(add_security_headers)
    return app
