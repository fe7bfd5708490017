"""Recent significant events (peers coming and going, copies made and dropped, faults), kept in a
bounded in-memory ring for the console's events view; a restart starts it empty.

A message is short plain text made by the code that records it: names, node ids, pids and
error codes, never tokens, keys or request bodies. A burst of the same event (same level, kind,
node, pid and message) within COALESCE_MS of the last one is one event with a count, so a
misbehaving peer cannot push everything else out of the ring.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "COALESCE_MS",
    "DEFAULT_LIMIT",
    "KINDS",
    "LEVELS",
    "MAX_EVENTS",
    "MAX_LIMIT",
    "MAX_MESSAGE_CHARS",
    "Event",
    "EventQuery",
    "Events",
    "parse_query",
]

MAX_EVENTS = 2000
MAX_MESSAGE_CHARS = 300
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
COALESCE_MS = 60_000
_COALESCE_LOOKBACK = 8  # how many of the newest events a repeat may be folded into

LEVELS = ("info", "warning", "error")  # in increasing seriousness
KINDS = frozenset(
    {
        "node-started",
        "peer-connected",
        "peer-lost",
        "peer-refused",
        "sync-error",
        "records-refused",
        "copy-complete",
        "copy-dropped",
        "transfer-failed",
        "transfer-cancelled",
        "corrupt-chunk",
        "policy-changed",
    }
)


@dataclass(frozen=True)
class Event:
    seq: int  # increases by one per event recorded (a folded repeat keeps its number)
    at_ms: int  # wall time of the latest occurrence
    level: str
    kind: str
    message: str
    node: str | None = None  # node id or peer URL the event is about
    pid: str | None = None
    count: int = 1  # occurrences folded into this one
    first_ms: int = 0  # wall time of the first occurrence

    def json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at_ms": self.at_ms,
            "first_ms": self.first_ms,
            "level": self.level,
            "kind": self.kind,
            "message": self.message,
            "node": self.node,
            "pid": self.pid,
            "count": self.count,
        }


@dataclass(frozen=True)
class EventQuery:
    level: str | None = None  # this level and more serious ones
    kind: str | None = None
    limit: int = DEFAULT_LIMIT


def _clean(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    flat = "".join(c if c.isprintable() else " " for c in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_query(args: Mapping[str, str]) -> EventQuery:
    """The events route's query (level, kind, limit); ValueError names the bad one."""
    level = args.get("level") or None
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    kind = args.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(sorted(KINDS))}")
    raw = args.get("limit") or str(DEFAULT_LIMIT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return EventQuery(level, kind, int(raw))


class Events:
    """The ring. Recording is synchronous and cheap: call it where the event happens."""

    def __init__(
        self, capacity: int = MAX_EVENTS, *, clock_ms: Callable[[], int] | None = None
    ) -> None:
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._seq = 0
        self._seen: dict[str, str] = {}
        self.recorded = 0  # occurrences, folded ones included

    @property
    def capacity(self) -> int:
        return self._ring.maxlen or 0

    def __len__(self) -> int:
        return len(self._ring)

    def record(
        self,
        level: str,
        kind: str,
        message: str,
        *,
        node: str | None = None,
        pid: str | None = None,
    ) -> Event:
        if level not in LEVELS or kind not in KINDS:
            raise ValueError(f"unknown event level or kind: {level!r}, {kind!r}")
        now = self._clock_ms()
        message = _clean(message)
        node = _clean(node, 200) if node else None
        pid = _clean(pid, 200) if pid else None
        self.recorded += 1
        for i in range(1, min(_COALESCE_LOOKBACK, len(self._ring)) + 1):
            e = self._ring[-i]
            if (e.level, e.kind, e.node, e.pid, e.message) == (level, kind, node, pid, message):
                if now - e.at_ms <= COALESCE_MS:
                    folded = replace(e, at_ms=now, count=e.count + 1)
                    del self._ring[-i]
                    self._ring.append(folded)
                    return folded
                break
        self._seq += 1
        event = Event(self._seq, now, level, kind, message, node, pid, 1, now)
        self._ring.append(event)
        return event

    def query(self, q: EventQuery = EventQuery()) -> list[Event]:
        """The newest events first, at most q.limit of them."""
        least = LEVELS.index(q.level) if q.level else 0
        out: list[Event] = []
        for e in reversed(self._ring):
            if LEVELS.index(e.level) >= least and (q.kind is None or e.kind == q.kind):
                out.append(e)
                if len(out) >= q.limit:
                    break
        return out

    def counts(self) -> dict[str, int]:
        """Events in the ring by level."""
        out = dict.fromkeys(LEVELS, 0)
        for e in self._ring:
            out[e.level] += 1
        return out

    # --- helpers the hooks call ----------------------------------------------------------

    def peer_state(self, who: str, before: str | None, after: str, error: str | None) -> None:
        """A dial ended: record it if the peer's state changed in a way an admin cares about."""
        if after == before:
            return
        if after == "connected":
            self.record("info", "peer-connected", f"connected to {who}", node=who)
        elif after == "rejected":
            self.record(
                "warning", "peer-refused", f"{who} refused: {error or 'no reason'}", node=who
            )
        elif after == "failed" and before == "connected":
            self.record("warning", "peer-lost", f"lost {who}: {error or 'no answer'}", node=who)

    def changed(self, kind: str, value: str, message: str) -> None:
        """Record `kind` when `value` differs from the one last seen (not the first time)."""
        last = self._seen.get(kind)
        self._seen[kind] = value
        if last is not None and last != value:
            self.record("info", kind, message)
