"""Cursor paging for the REST API, over the store's pages.

A cursor is opaque to clients: it encodes the id of the last element of the page it came
from (the store's exclusive `after`), so the next page starts right behind it whatever was
added or deleted meanwhile. Each page is one store call, whatever the collection's size.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

from chatkit.types import Page

from store.keys import MAX_ID_LENGTH, SEPARATOR

Order = Literal["asc", "desc"]
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# What one store call returns at most (the store's own cap): an export reads this many a time.
EXPORT_PAGE_SIZE = 200


def encode_cursor(after: str) -> str:
    """The cursor of a page that ends at the element with id `after`."""
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor made by `encode_cursor` ends at; ValueError (with a message for the
    client) when `cursor` is not one."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor this API returned") from None
    if not after or len(after) > MAX_ID_LENGTH or SEPARATOR in after:
        raise ValueError("not a cursor this API returned")
    if encode_cursor(after) != cursor:
        raise ValueError("not a cursor this API returned")
    return after


def next_cursor[T](page: Page[T]) -> str | None:
    """The cursor of the page after `page`, or None when it is the last one."""
    return encode_cursor(page.after) if page.has_more and page.after else None


async def every_page[T](
    load: Callable[[str | None], Awaitable[Page[T]]], *, first: Page[T] | None = None
) -> AsyncIterator[list[T]]:
    """Each page `load(after)` returns, from the first (`first`, if already loaded, else
    `load(None)`) to the last."""
    page = first if first is not None else await load(None)
    while True:
        yield page.data
        if not page.has_more or page.after is None:
            return
        page = await load(page.after)
