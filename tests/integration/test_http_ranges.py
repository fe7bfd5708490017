"""Pure rules of content serving: Range parsing (RFC 9110 §14) and entity-tag matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.http.content import ByteRange, Unsatisfiable, etag_matches, parse_range

TAG = '"' + "ab" * 32 + '"'


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, ByteRange(0, 1)),
        ("bytes=0-9", 10, ByteRange(0, 10)),
        ("bytes=2-", 10, ByteRange(2, 10)),
        ("bytes=-3", 10, ByteRange(7, 10)),
        ("bytes=-30", 10, ByteRange(0, 10)),
        ("bytes=5-500", 10, ByteRange(5, 10)),
        ("BYTES = 1 - 2", 10, ByteRange(1, 3)),
        ("bytes=3-2", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("bytes=x-1", 10, None),
        ("bytes=-", 10, None),
        ("pages=1-2", 10, None),
        ("bytes=0-1", 0, None),  # an empty file: Range ignored
        ("bytes=" + "9" * 30 + "-", 10, None),  # absurd numbers: ignored, not parsed
    ],
)
def test_parse_range(header: str, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=99-100"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 10)


@given(
    size=st.integers(1, 1 << 40),
    first=st.none() | st.integers(0, 1 << 41),
    last=st.none() | st.integers(0, 1 << 41),
)
def test_a_range_is_always_inside_the_file(size: int, first: int | None, last: int | None) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    try:
        selected = parse_range(header, size)
    except Unsatisfiable:
        assert (first is not None and first >= size) or (first is None and last == 0)
        return
    if selected is None:
        assert (first is None and last is None) or (
            first is not None and last is not None and last < first
        )
        return
    assert 0 <= selected.start < selected.stop <= size
    if first is not None:
        assert selected.start == first
    elif last is not None:
        assert selected.stop - selected.start == min(last, size)


def test_etag_matching() -> None:
    assert etag_matches(TAG, TAG, weak=False)
    assert etag_matches(f'"x", {TAG}', TAG, weak=False)
    assert etag_matches("*", TAG, weak=False)
    assert etag_matches(f"W/{TAG}", TAG, weak=True)
    assert not etag_matches(f"W/{TAG}", TAG, weak=False)
    assert not etag_matches('"x"', TAG, weak=True)
    assert not etag_matches(TAG[1:-1], TAG, weak=True)  # unquoted: malformed
    assert not etag_matches(f"{TAG} garbage", TAG, weak=True)
    assert not etag_matches("", TAG, weak=True)
