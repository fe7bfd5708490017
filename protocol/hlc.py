"""Hybrid logical clock: versions that follow wall time but never go backwards."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_COUNTER", "MAX_WALL_MS", "Hlc", "receive", "tick"]

MAX_WALL_MS = 2**48 - 1  # milliseconds since the Unix epoch: good until the year 10889
MAX_COUNTER = 2**16 - 1


@dataclass(frozen=True, order=True)
class Hlc:
    """(wall milliseconds, counter), ordered lexicographically."""

    wall_ms: int
    counter: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.wall_ms <= MAX_WALL_MS and 0 <= self.counter <= MAX_COUNTER):
            raise ValueError(f"HLC out of range: {self.wall_ms}.{self.counter}")

    def __str__(self) -> str:
        return f"{self.wall_ms}.{self.counter}"


def tick(last: Hlc, now_ms: int) -> Hlc:
    """The next local version after `last`, given the wall clock reading `now_ms`."""
    if now_ms > last.wall_ms:
        return Hlc(now_ms, 0)
    if last.counter == MAX_COUNTER:
        return Hlc(last.wall_ms + 1, 0)
    return Hlc(last.wall_ms, last.counter + 1)


def receive(last: Hlc, remote: Hlc, now_ms: int) -> Hlc:
    """Advance the local clock past a version seen from elsewhere (used by sync)."""
    return tick(max(last, remote), now_ms)
