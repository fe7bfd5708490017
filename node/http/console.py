"""The admin console: a login that trades the admin token for a session cookie, and the static
single-page console (HTML, CSS, JS from node/http/static) that reads the admin JSON API.

A session id is random and means nothing outside this process: the token itself never goes
into a cookie. Sessions live in memory (a restart logs everyone out), expire after
SESSION_SECONDS, and at most MAX_SESSIONS exist at once (the oldest is dropped first). The
cookie is HttpOnly and SameSite=Strict; logins and logouts from another origin are refused.
Wrong tokens count with the admin API's (node.http.security.AuthFailures): after too many, a
wrong one is answered slowly and the page says how long to wait; the right one always works.
Every console page carries a strict Content-Security-Policy: scripts only from files served
here, no inline code, nothing from elsewhere.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable
from importlib import resources

from aiohttp import web

from node.context import NodeContext
from node.http.console_api import add_console_api
from node.http.problems import Problem
from node.http.security import AuthFailures

__all__ = [
    "CONSOLE_CSP",
    "MAX_SESSIONS",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "ConsoleSessions",
    "add_console_routes",
    "is_open_path",
    "login_redirect",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "siku_console"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 32
MAX_LOGIN_BODY_BYTES = 4096
CONSOLE = "/console/"
LOGIN = "/console/login"
LOGOUT = "/console/logout"
STATIC = "/console/static/"

CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
# The pages behind which the console lives: without a session they send the browser to LOGIN.
_PAGES = ("/", "/console", CONSOLE)


class ConsoleSessions:
    """Live console sessions: random id → monotonic expiry."""

    def __init__(
        self,
        *,
        ttl_seconds: float = SESSION_SECONDS,
        limit: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.limit = limit
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def open(self) -> str:
        now = self._clock()
        self._expiry = {s: e for s, e in self._expiry.items() if e > now}
        while len(self._expiry) >= self.limit:
            del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
        session = secrets.token_urlsafe(32)
        self._expiry[session] = now + self.ttl_seconds
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        expiry = self._expiry.get(session)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._expiry[session]
            return False
        return True

    def close(self, session: str | None) -> None:
        if session:
            self._expiry.pop(session, None)

    def __len__(self) -> int:
        return len(self._expiry)

    def of(self, request: web.Request) -> bool:
        """Whether the request carries a live session cookie."""
        return self.valid(request.cookies.get(SESSION_COOKIE))


def is_open_path(path: str) -> bool:
    """Paths served without a session or token: the login page and the static assets."""
    return path == LOGIN or path.startswith(STATIC)


def login_redirect(request: web.Request) -> web.Response | None:
    """For a browser asking for a console page without credentials: the way to the login."""
    if request.method in ("GET", "HEAD") and request.path in _PAGES:
        return _see_other(LOGIN)
    return None


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("node.http").joinpath("static")
    out: dict[str, tuple[bytes, str]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            out[item.name] = (item.read_bytes(), _TYPES[suffix])
    return out


def _page(body: bytes, content_type: str, status: int = 200) -> web.Response:
    resp = web.Response(body=body, status=status, content_type=content_type, charset="utf-8")
    resp.headers["Content-Security-Policy"] = CONSOLE_CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "same-origin"  # "no-referrer" sends Origin: null
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _see_other(location: str) -> web.Response:
    resp = web.Response(status=303, headers={"Location": location})
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _same_origin(request: web.Request) -> None:
    """A login or logout must come from the console's own page (CSRF, login CSRF)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Problem(403, "cross-origin", "Cross-origin request", "Use the console's own page.")


def add_console_routes(
    app: web.Application, ctx: NodeContext, sessions: ConsoleSessions, failures: AuthFailures
) -> None:
    """The console's pages, assets, login and logout, and its JSON routes, on the admin app."""
    static = _load_static()
    expected = ctx.admin_token.encode("utf-8")

    async def root(request: web.Request) -> web.Response:
        return _see_other(CONSOLE)

    async def console(request: web.Request) -> web.Response:
        body, ctype = static["console.html"]
        return _page(body, ctype)

    async def login_page(request: web.Request) -> web.Response:
        if sessions.of(request):
            return _see_other(CONSOLE)
        body, ctype = static["login.html"]
        return _page(body, ctype)

    async def login(request: web.Request) -> web.Response:
        _same_origin(request)
        if (request.content_length or 0) > MAX_LOGIN_BODY_BYTES:
            raise Problem(413, "too-large", "Request too large", "A login is a token, no more.")
        form = await request.post()
        given = form.get("token")
        token = given.strip().encode("utf-8", "surrogateescape") if isinstance(given, str) else b""
        if not token or not hmac.compare_digest(token, expected):
            log.warning("console login refused from %s", request.remote)
            wait = failures.failed()
            if wait:
                await failures.tarpit()
                return _see_other(f"{LOGIN}?wait={wait}")
            return _see_other(LOGIN + "?failed=1")
        session = sessions.open()
        log.info("console login from %s", request.remote)
        resp = _see_other(CONSOLE)
        resp.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=int(sessions.ttl_seconds),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return resp

    async def logout(request: web.Request) -> web.Response:
        _same_origin(request)
        sessions.close(request.cookies.get(SESSION_COOKIE))
        resp = _see_other(LOGIN)
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in static or name.endswith(".html"):
            raise web.HTTPNotFound()
        body, ctype = static[name]
        resp = _page(body, ctype)
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    app.router.add_get("/", root)
    app.router.add_get("/console", root)
    app.router.add_get(CONSOLE, console)
    app.router.add_get(LOGIN, login_page)
    app.router.add_post(LOGIN, login)
    app.router.add_post(LOGOUT, logout)
    app.router.add_get(STATIC + "{name}", asset)
    add_console_api(app, ctx)
