"""Time windows for bulk replication ("22:00-06:00"): parsing and the pure questions about them.

A window is a daily stretch of local wall-clock minutes [start, end). When end < start it wraps
midnight; "00:00-24:00" is the whole day; start == end is rejected as meaningless. An empty tuple
of windows means "no restriction": `in_windows` is always true and `next_start` is None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["MINUTES_PER_DAY", "Window", "in_windows", "next_start", "parse_windows"]

MINUTES_PER_DAY = 24 * 60
_WINDOW = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")


@dataclass(frozen=True)
class Window:
    start_minute: int  # 0 .. 1439, minutes after local midnight
    end_minute: int  # 1 .. 1440; less than start_minute: the window wraps midnight

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < MINUTES_PER_DAY:
            raise ValueError(f"window start minute {self.start_minute} out of range")
        if not 0 < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError(f"window end minute {self.end_minute} out of range")
        if self.start_minute == self.end_minute:
            raise ValueError("a window's start and end must differ")

    @classmethod
    def parse(cls, text: str) -> Window:
        """`HH:MM-HH:MM`, 24-hour, end may be 24:00; ValueError names the text otherwise."""
        m = _WINDOW.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"time window {text!r} is not HH:MM-HH:MM")
        sh, sm, eh, em = (int(g) for g in m.groups())
        if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em != 0):
            raise ValueError(f"time window {text!r} has an impossible time")
        start, end = sh * 60 + sm, eh * 60 + em
        if start == end:
            raise ValueError(f"time window {text!r} is empty")
        return cls(start, end or MINUTES_PER_DAY)  # "22:00-00:00" runs until midnight

    @property
    def all_day(self) -> bool:
        return self.start_minute == 0 and self.end_minute == MINUTES_PER_DAY

    def contains(self, minute: int) -> bool:
        """Whether minute-of-day `minute` (0 .. 1439) lies inside."""
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute

    def __str__(self) -> str:
        s, e = self.start_minute, self.end_minute
        return f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}"


def parse_windows(text: str) -> tuple[Window, ...]:
    """A comma-separated list of windows; "" is no windows (always open)."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    return tuple(Window.parse(p) for p in parts)


def _minute(t: datetime) -> int:
    return t.hour * 60 + t.minute


def in_windows(windows: Sequence[Window], t: datetime) -> bool:
    """Whether background transfers may run at local time `t` (always, without windows)."""
    if not windows:
        return True
    minute = _minute(t)
    return any(w.contains(minute) for w in windows)


def next_start(windows: Sequence[Window], t: datetime) -> datetime | None:
    """The first moment strictly after `t` at which one of `windows` opens; None without windows
    or when they cover the whole day (nothing ever opens: it is always open)."""
    if not windows or any(w.all_day for w in windows):
        return None
    midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
    best: datetime | None = None
    for w in windows:
        for day in (0, 1):
            at = midnight + timedelta(days=day, minutes=w.start_minute)
            if at > t and (best is None or at < best):
                best = at
    return best
