"""Transfer time windows (sync/windows.py): parsing and the pure questions about them."""

from __future__ import annotations

from datetime import datetime

import pytest

from sync.windows import Window, in_windows, next_start, parse_windows


def at(hh: int, mm: int, day: int = 10) -> datetime:
    return datetime(2024, 3, day, hh, mm, 30)


def test_parse() -> None:
    assert Window.parse("22:00-06:00") == Window(22 * 60, 6 * 60)
    assert Window.parse(" 00:00-24:00 ") == Window(0, 1440)
    assert Window.parse("22:30-00:00") == Window(22 * 60 + 30, 1440)
    assert str(Window.parse("09:05-17:45")) == "09:05-17:45"
    assert parse_windows("") == ()
    assert parse_windows("01:00-02:00, 22:00-23:00") == (Window(60, 120), Window(1320, 1380))


@pytest.mark.parametrize(
    "text",
    ["", "22-06", "22:00", "22:00-6:00", "24:00-01:00", "10:60-11:00", "10:00-24:01", "25:00-01:00",
     "10:00-10:00", "00:00-00:00", "10:00 - 11:00", "x10:00-11:00"],
)  # fmt: skip
def test_parse_rejects_with_the_text(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        Window.parse(text)
    assert repr(text) in str(raised.value)


def test_parse_windows_names_the_bad_part() -> None:
    with pytest.raises(ValueError, match="'7:00-08:00'"):
        parse_windows("01:00-02:00,7:00-08:00")


def test_window_constructor_checks_range() -> None:
    for start, end in [(-1, 10), (1440, 10), (0, 0), (0, 1441), (10, 10)]:
        with pytest.raises(ValueError):
            Window(start, end)


def test_in_windows_plain_wrapping_and_all_day() -> None:
    night = (Window.parse("22:00-06:00"),)
    assert in_windows(night, at(22, 0))
    assert in_windows(night, at(23, 59))
    assert in_windows(night, at(0, 0))
    assert in_windows(night, at(5, 59))
    assert not in_windows(night, at(6, 0))
    assert not in_windows(night, at(21, 59))
    lunch = (Window.parse("12:00-13:00"),)
    assert in_windows(lunch, at(12, 0)) and in_windows(lunch, at(12, 59))
    assert not in_windows(lunch, at(13, 0)) and not in_windows(lunch, at(11, 59))
    whole = (Window.parse("00:00-24:00"),)
    assert all(in_windows(whole, at(h, m)) for h in range(24) for m in (0, 59))
    assert in_windows((), at(3, 0))  # no windows: always
    both = night + lunch
    assert in_windows(both, at(12, 30)) and in_windows(both, at(1, 0))
    assert not in_windows(both, at(9, 0))


def test_next_start() -> None:
    night = (Window.parse("22:00-06:00"),)
    assert next_start(night, at(9, 0)) == datetime(2024, 3, 10, 22, 0)
    assert next_start(night, at(23, 0)) == datetime(2024, 3, 11, 22, 0)  # strictly after
    two = (Window.parse("22:00-06:00"), Window.parse("12:00-13:00"))
    assert next_start(two, at(9, 0)) == datetime(2024, 3, 10, 12, 0)
    assert next_start(two, at(12, 10)) == datetime(2024, 3, 10, 22, 0)
    assert next_start(two, at(22, 10)) == datetime(2024, 3, 11, 12, 0)
    assert next_start(two, datetime(2024, 3, 31, 23, 0)) == datetime(2024, 4, 1, 12, 0)
    assert next_start((), at(9, 0)) is None
    assert next_start((Window.parse("00:00-24:00"),), at(9, 0)) is None
