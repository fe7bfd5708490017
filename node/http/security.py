"""Headers every response of both listeners carries, whatever handler produced it."""

from __future__ import annotations

from aiohttp import web

__all__ = ["SERVER_HEADER", "add_security_headers"]

SERVER_HEADER = "siku"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: no MIME sniffing, no software versions in `Server`."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers["Server"] = SERVER_HEADER
