"""Cursors are opaque, round-trip any id, and refuse anything this API did not make."""

from __future__ import annotations

import pytest
from chatkit.types import Page

from handlers.paging import decode_cursor, encode_cursor, every_page, next_cursor


@pytest.mark.parametrize("after", ["thr_1a2b3c", "msg_seed000001", "é/ü?+=", "x" * 255])
def test_a_cursor_round_trips_its_id(after: str) -> None:
    cursor = encode_cursor(after)

    assert decode_cursor(cursor) == after
    assert cursor.replace("-", "").replace("_", "").isalnum()  # safe in a query string


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "dGhy X2Ex",  # a space is not base64url
        "dGhyX2Ex==",  # padding is never sent
        "/w",  # not UTF-8 once decoded
        encode_cursor("thr#1").replace("=", ""),  # a key separator is never an id
        encode_cursor("x" * 256),  # longer than any id
    ],
)
def test_a_cursor_this_api_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(cursor)


def test_next_cursor_only_when_there_is_more() -> None:
    assert next_cursor(Page(data=["a"], has_more=False, after=None)) is None
    assert next_cursor(Page(data=["a"], has_more=True, after="a")) == encode_cursor("a")


async def test_every_page_follows_the_cursor_to_the_end() -> None:
    data = [str(n) for n in range(5)]
    asked: list[str | None] = []

    async def load(after: str | None) -> Page[str]:
        asked.append(after)
        start = 0 if after is None else data.index(after) + 1
        chunk = data[start : start + 2]
        more = start + 2 < len(data)
        return Page(data=chunk, has_more=more, after=chunk[-1] if more else None)

    pages = [page async for page in every_page(load)]

    assert pages == [["0", "1"], ["2", "3"], ["4"]]
    assert asked == [None, "1", "3"]
