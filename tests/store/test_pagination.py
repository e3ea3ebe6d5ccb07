"""Pages of items and threads: created_at order both ways, exclusive cursors, exact has_more."""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import pytest
from chatkit.store import NotFoundError

from store import DynamoDBStore, RequestContext
from tests.store.factories import thread, tied_times, user_message

ITEM_COUNT = 105
THREAD_COUNT = 103
PAGE_SIZES = range(1, 8)


async def collect_pages(load_page: Any, size: int, order: str) -> tuple[list[str], int]:
    """Walk every page, checking the has_more/after contract on each; return ids and page count."""
    ids: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = await load_page(after, size, order)
        pages += 1
        if page.has_more:
            assert len(page.data) == size
            assert page.after == page.data[-1].id
        else:
            assert len(page.data) <= size
            assert page.after is None
        ids.extend(entity.id for entity in page.data)
        if not page.has_more:
            return ids, pages
        after = page.after


@pytest.fixture
async def shuffled_items(store: DynamoDBStore, alice: RequestContext) -> list[str]:
    """105 items with tied timestamps, saved in random order; returns their ids in created order."""
    await store.save_thread(thread("thr_pages"), alice)
    items = [
        user_message(f"msg_{uuid.uuid4().hex[:8]}", "thr_pages", created_at)
        for created_at in tied_times(ITEM_COUNT)
    ]
    saved = items[:]
    random.Random(7).shuffle(saved)
    for item in saved:
        await store.add_thread_item("thr_pages", item, alice)
    return [item.id for item in sorted(items, key=lambda item: (item.created_at, item.id))]


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("size", PAGE_SIZES)
async def test_item_pages_visit_every_item_once_in_created_order(
    store: DynamoDBStore, alice: RequestContext, shuffled_items: list[str], size: int, order: str
) -> None:
    async def load_page(after: str | None, limit: int, direction: str) -> Any:
        return await store.load_thread_items("thr_pages", after, limit, direction, alice)

    ids, pages = await collect_pages(load_page, size, order)

    expected = shuffled_items if order == "asc" else shuffled_items[::-1]
    assert ids == expected
    assert pages == math.ceil(ITEM_COUNT / size)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("size", PAGE_SIZES)
async def test_thread_pages_visit_every_thread_once_in_created_order(
    store: DynamoDBStore, alice: RequestContext, size: int, order: str
) -> None:
    threads = [
        thread(f"thr_{uuid.uuid4().hex[:8]}", created_at) for created_at in tied_times(THREAD_COUNT)
    ]
    for saved in random.Random(11).sample(threads, len(threads)):
        await store.save_thread(saved, alice)
    created_order = [
        saved.id for saved in sorted(threads, key=lambda saved: (saved.created_at, saved.id))
    ]

    async def load_page(after: str | None, limit: int, direction: str) -> Any:
        return await store.load_threads(limit, after, direction, alice)

    ids, pages = await collect_pages(load_page, size, order)

    assert ids == (created_order if order == "asc" else created_order[::-1])
    assert pages == math.ceil(THREAD_COUNT / size)


async def test_page_exactly_filling_the_rest_has_no_more(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    for index, created_at in enumerate(tied_times(4)):
        await store.add_thread_item(
            "thr_1", user_message(f"msg_{index}", "thr_1", created_at), alice
        )

    page = await store.load_thread_items("thr_1", None, 4, "asc", alice)

    assert [item.id for item in page.data] == ["msg_0", "msg_1", "msg_2", "msg_3"]
    assert page.has_more is False
    assert page.after is None


async def test_cursor_after_the_last_item_gives_an_empty_page(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", user_message("msg_only", "thr_1"), alice)

    page = await store.load_thread_items("thr_1", "msg_only", 5, "asc", alice)

    assert page.data == [] and page.has_more is False and page.after is None


async def test_unknown_cursor_is_not_found(store: DynamoDBStore, alice: RequestContext) -> None:
    await store.save_thread(thread("thr_1"), alice)

    with pytest.raises(NotFoundError):
        await store.load_thread_items("thr_1", "msg_missing", 5, "asc", alice)
    with pytest.raises(NotFoundError):
        await store.load_threads(5, "thr_missing", "desc", alice)


@pytest.mark.parametrize("limit", [0, -1])
async def test_non_positive_limit_is_refused(
    store: DynamoDBStore, alice: RequestContext, limit: int
) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.load_threads(limit, None, "desc", alice)


async def test_unknown_order_is_refused(store: DynamoDBStore, alice: RequestContext) -> None:
    with pytest.raises(ValueError, match="order"):
        await store.load_thread_items("thr_1", None, 5, "sideways", alice)


async def test_huge_limit_is_capped_and_still_reports_more(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    from store.dynamodb_store import MAX_PAGE_SIZE

    for index in range(MAX_PAGE_SIZE + 1):
        await store.save_thread(thread(f"thr_{index:04d}"), alice)

    page = await store.load_threads(10**9, None, "asc", alice)

    assert len(page.data) == MAX_PAGE_SIZE
    assert page.has_more is True
    assert page.after == page.data[-1].id
