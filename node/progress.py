"""A progress line on a terminal (stderr), silent when not a terminal; safe from worker threads."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress", "format_size"]

REDRAW_SECONDS = 0.1


def format_size(n: float) -> str:
    """Bytes for people: 512 B, 1.5 MiB, 3.9 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None, *, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.items = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._drawn = 0.0

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n
        self._maybe_draw()

    def add_item(self) -> None:
        with self._lock:
            self.items += 1
        self._maybe_draw()

    def _maybe_draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        elapsed = max(now - self._start, 1e-6)
        rate = self.bytes / elapsed
        line = (
            f"\r{self.label}: {self.items} resources, {format_size(self.bytes)}"
            f" ({format_size(rate)}/s, {self.items / elapsed:.0f}/s) "
        )
        self.stream.write(line)
        self.stream.flush()

    def clear(self) -> None:
        """Erase the progress line before ordinary output is printed."""
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._maybe_draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
