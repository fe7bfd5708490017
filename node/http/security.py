"""Headers every response of both listeners carries, whatever handler produced it; the admin
listener's throttle on wrong tokens."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

__all__ = [
    "AUTH_FAILURE_LIMIT",
    "AUTH_FAILURE_WINDOW_SECONDS",
    "SERVER_HEADER",
    "AuthFailures",
    "add_security_headers",
]

AUTH_FAILURE_LIMIT = 10
AUTH_FAILURE_WINDOW_SECONDS = 60.0
TARPIT_SECONDS = 1.0
MAX_TARPITTED = 16

SERVER_HEADER = "siku"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: no MIME sniffing, no software versions in `Server`."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers["Server"] = SERVER_HEADER


class AuthFailures:
    """Wrong admin tokens, over all clients (the listener is local, so an address says nothing
    about who asks).

    The right token always passes: a flood of wrong ones must not lock out the admin, the
    health check or Prometheus. Once AUTH_FAILURE_LIMIT wrong tokens fall within the window,
    each further wrong one is answered 429 with a Retry-After, and only after TARPIT_SECONDS
    (at most MAX_TARPITTED answers wait at once; beyond that they are answered at once, so the
    waits cannot pile up). That slows a guesser who waits for answers and makes an attack plain
    in the log and in siku_admin_auth_failures_total. The token is 256 random bits: guessing it
    is hopeless with or without this."""

    def __init__(
        self,
        limit: int = AUTH_FAILURE_LIMIT,
        window_seconds: float = AUTH_FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        tarpit_seconds: float = TARPIT_SECONDS,
    ) -> None:
        self.window_seconds = window_seconds
        self.tarpit_seconds = tarpit_seconds
        self._clock = clock
        self._at: deque[float] = deque(maxlen=limit)
        self._tarpitted = 0
        self.total = 0  # wrong tokens since the daemon started
        self.over_limit = 0  # of which answered 429

    def failed(self) -> int:
        """Count a wrong token: 0 while under the limit, else the whole seconds until the
        oldest failure in the window leaves it (the Retry-After)."""
        now = self._clock()
        self.total += 1
        full = len(self._at) == self._at.maxlen and now - self._at[0] < self.window_seconds
        oldest = self._at[0] if full else now
        self._at.append(now)
        if not full:
            return 0
        self.over_limit += 1
        return max(1, math.ceil(oldest + self.window_seconds - now))

    async def tarpit(self) -> None:
        """Hold an over-limit refusal back for a while (a few at a time)."""
        if self._tarpitted >= MAX_TARPITTED:
            return
        self._tarpitted += 1
        try:
            await asyncio.sleep(self.tarpit_seconds)
        finally:
            self._tarpitted -= 1
