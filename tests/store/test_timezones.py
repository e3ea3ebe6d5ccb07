"""Naive local timestamps (the SDK's datetime.now()) order correctly among aware ones, in any TZ,
and every timestamp comes back as it was saved: naive ones naive, aware ones aware."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from chatkit.types import ThreadItem

from store import DynamoDBStore, RequestContext
from tests.store.factories import thread, user_message

INSTANTS = [datetime(2026, 11, 1, 6, 0, tzinfo=UTC) + timedelta(minutes=7 * i) for i in range(12)]


@pytest.fixture
def local_timezone(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def as_the_sdk_makes_it(instant: datetime, index: int) -> datetime:
    """Alternate naive local wall-clock times (datetime.now()) and aware UTC times."""
    return instant.astimezone().replace(tzinfo=None) if index % 2 == 0 else instant


async def save_and_list(store: DynamoDBStore, context: RequestContext) -> list[ThreadItem]:
    await store.save_thread(thread("thr_tz"), context)
    # Saved newest first, so insertion order cannot explain a correct result.
    for index in reversed(range(len(INSTANTS))):
        created_at = as_the_sdk_makes_it(INSTANTS[index], index)
        await store.add_thread_item(
            "thr_tz", user_message(f"msg_{index:02d}", "thr_tz", created_at), context
        )
    return (await store.load_thread_items("thr_tz", None, 50, "asc", context)).data


@pytest.mark.parametrize(
    "local_timezone", ["UTC", "America/Los_Angeles", "Asia/Kolkata"], indirect=True
)
async def test_items_order_by_instant_whatever_the_local_timezone(
    store: DynamoDBStore, alice: RequestContext, local_timezone: str
) -> None:
    items = await save_and_list(store, alice)

    assert [item.id for item in items] == [f"msg_{index:02d}" for index in range(len(INSTANTS))]
    saved = [as_the_sdk_makes_it(instant, index) for index, instant in enumerate(INSTANTS)]
    assert [item.created_at for item in items] == saved
    assert [item.created_at.tzinfo is None for item in items] == [
        moment.tzinfo is None for moment in saved
    ]


@pytest.mark.parametrize("local_timezone", ["Asia/Kolkata"], indirect=True)
async def test_a_naive_time_keeps_its_instant_when_read_in_another_timezone(
    store: DynamoDBStore, alice: RequestContext, local_timezone: str
) -> None:
    written_in_kolkata = INSTANTS[0].astimezone().replace(tzinfo=None)
    await store.save_thread(thread("thr_tz", created_at=written_in_kolkata), alice)
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()

    loaded = await store.load_thread("thr_tz", alice)

    assert loaded.created_at.tzinfo is None
    assert loaded.created_at.astimezone(UTC) == INSTANTS[0]
