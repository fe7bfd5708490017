"""Headers every response of both listeners carries, whatever handler produced it; the admin
listener's throttle on wrong tokens."""

from __future__ import annotations

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

SERVER_HEADER = "siku"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: no MIME sniffing, no software versions in `Server`."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers["Server"] = SERVER_HEADER


class AuthFailures:
    """Wrong admin tokens, over all clients (the listener is local, so an address says nothing
    about who asks). Once AUTH_FAILURE_LIMIT wrong tokens fall within the window, every token
    is refused unchecked until the oldest of them leaves it: at most AUTH_FAILURE_LIMIT guesses
    a minute, and a guess that happens to be right is not told apart while refused. Console
    sessions already open go on working; the admin's own token waits at most a window."""

    def __init__(
        self,
        limit: int = AUTH_FAILURE_LIMIT,
        window_seconds: float = AUTH_FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._at: deque[float] = deque(maxlen=limit)
        self.refused = 0  # attempts refused unchecked

    def retry_after(self) -> int:
        """0 when a token may be checked now, else the whole seconds to wait."""
        if len(self._at) < (self._at.maxlen or 0):
            return 0
        wait = self._at[0] + self.window_seconds - self._clock()
        if wait <= 0:
            return 0
        self.refused += 1
        return max(1, math.ceil(wait))

    def failed(self) -> None:
        self._at.append(self._clock())
