"""Throttling is survived with backoff and reported clearly only when retries run out."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from chatkit.store import NotFoundError

from store import DynamoDBStore, PayloadBucket, RequestContext, StoreUnavailableError, TableRecord
from tests.store.conftest import BUCKET
from tests.store.factories import thread, user_message
from tests.support.dynamodb_faults import DynamoDBFaults, blackhole

MAX_ATTEMPTS = 3


@pytest.fixture(autouse=True)
def no_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep botocore's retry decisions but skip its sleeps."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture
def throttled_table(aws: None) -> type[TableRecord]:
    from store import bind_table, create_table

    record = bind_table("chatkit-throttled", region="us-east-1", max_attempts=MAX_ATTEMPTS)
    create_table(record)
    return record


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
async def test_throttled_write_is_retried_until_it_succeeds(
    throttled_table: type[TableRecord], alice: RequestContext, code: str
) -> None:
    store = DynamoDBStore(throttled_table)
    injector = DynamoDBFaults.of(throttled_table)
    injector.throttle("UpdateItem", times=MAX_ATTEMPTS - 1, code=code)

    await store.save_thread(thread("thr_1", title="kept"), alice)

    assert injector.attempts["UpdateItem"] == MAX_ATTEMPTS
    assert (await store.load_thread("thr_1", alice)).title == "kept"


async def test_throttled_page_is_retried_until_it_succeeds(
    throttled_table: type[TableRecord], alice: RequestContext
) -> None:
    store = DynamoDBStore(throttled_table)
    await store.save_thread(thread("thr_1"), alice)
    injector = DynamoDBFaults.of(throttled_table)
    injector.throttle("Query", times=2)

    page = await store.load_threads(10, None, "desc", alice)

    assert [saved.id for saved in page.data] == ["thr_1"]
    assert injector.attempts["Query"] == 3


async def test_throttling_beyond_the_retries_is_a_clear_error(
    throttled_table: type[TableRecord], alice: RequestContext
) -> None:
    store = DynamoDBStore(throttled_table)
    injector = DynamoDBFaults.of(throttled_table)
    injector.throttle("GetItem", times=MAX_ATTEMPTS)

    with pytest.raises(StoreUnavailableError, match="throttling"):
        await store.load_thread("thr_1", alice)
    assert injector.attempts["GetItem"] == MAX_ATTEMPTS


async def test_unprocessed_deletes_are_retried_with_backoff(
    table: type[TableRecord], s3, alice: RequestContext
) -> None:  # type: ignore[no-untyped-def]
    waits: list[float] = []
    store = DynamoDBStore(table, PayloadBucket(s3, BUCKET), sleep=waits.append)
    await store.save_thread(thread("thr_1"), alice)
    for index in range(30):
        await store.add_thread_item("thr_1", user_message(f"msg_{index:02d}", "thr_1"), alice)
    injector = DynamoDBFaults.of(table)
    injector.leave_unprocessed(times=3)

    await store.delete_thread("thr_1", alice)

    # Batch 1 is left unprocessed 3 times, then succeeds; batch 2 succeeds at once.
    assert injector.attempts["BatchWriteItem"] == 5
    assert len(waits) == 3
    assert all(0 <= wait <= store.deleter.backoff_cap_seconds for wait in waits)
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_1", alice)
    assert (await store.load_thread_items("thr_1", None, 50, "asc", alice)).data == []


async def test_deletes_left_unprocessed_too_often_fail_clearly_and_resume(
    table: type[TableRecord], s3, alice: RequestContext
) -> None:  # type: ignore[no-untyped-def]
    store = DynamoDBStore(table, PayloadBucket(s3, BUCKET), batch_attempts=3, sleep=lambda _s: None)
    await store.save_thread(thread("thr_1"), alice)
    for index in range(5):
        await store.add_thread_item("thr_1", user_message(f"msg_{index}", "thr_1"), alice)
    DynamoDBFaults.of(table).leave_unprocessed(times=3)

    with pytest.raises(StoreUnavailableError, match="repeat the delete"):
        await store.delete_thread("thr_1", alice)
    assert len((await store.load_thread_items("thr_1", None, 10, "asc", alice)).data) == 5

    await store.delete_thread("thr_1", alice)

    with pytest.raises(NotFoundError):
        await store.load_thread("thr_1", alice)
    assert (await store.load_thread_items("thr_1", None, 10, "asc", alice)).data == []


def test_bound_table_uses_the_configured_attempts(aws: None) -> None:
    from store import bind_table
    from tests.support.dynamodb_faults import dynamodb_client

    record = bind_table("chatkit-attempts", region="us-east-1", max_attempts=6)

    assert dynamodb_client(record).meta.config.retries["total_max_attempts"] == 6


# -- connections and stalls ------------------------------------------------------------------


async def test_a_reset_connection_is_retried(
    throttled_table: type[TableRecord], alice: RequestContext
) -> None:
    store = DynamoDBStore(throttled_table)
    await store.save_thread(thread("thr_1", title="kept"), alice)
    faults = DynamoDBFaults.of(throttled_table)
    faults.reset("GetItem", times=MAX_ATTEMPTS - 1)

    assert (await store.load_thread("thr_1", alice)).title == "kept"
    assert faults.attempts["GetItem"] == MAX_ATTEMPTS


@pytest.mark.parametrize("fault", ["reset", "stall", "fail"])
async def test_dynamodb_not_answering_is_store_unavailable_for_every_kind_of_call(
    aws: None, alice: RequestContext, fault: str
) -> None:
    from store import bind_table, create_table

    record = bind_table("chatkit-down", region="us-east-1", max_attempts=2, read_timeout=0.05)
    create_table(record)
    store = DynamoDBStore(record)
    await store.save_thread(thread("thr_1"), alice)
    faults = DynamoDBFaults.of(record)
    for operation in ("GetItem", "UpdateItem", "Query", "TransactWriteItems"):
        getattr(faults, fault)(operation, times=100)

    calls = [
        store.load_thread("thr_1", alice),
        store.save_thread(thread("thr_1", title="new"), alice),
        store.load_thread_items("thr_1", None, 10, "asc", alice),
        store.add_thread_item("thr_1", user_message("msg_1", "thr_1"), alice),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            await call
    assert faults.attempts == {"GetItem": 2, "UpdateItem": 2, "Query": 2, "TransactWriteItems": 2}


async def test_a_dynamodb_that_accepts_but_never_answers_times_out(
    alice: RequestContext,
) -> None:
    from store import bind_table

    with blackhole() as endpoint:
        record = bind_table(
            "chatkit-stalled",
            region="us-east-1",
            host=endpoint,
            max_attempts=2,
            connect_timeout=0.2,
            read_timeout=0.2,
        )
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            await DynamoDBStore(record).load_thread("thr_1", alice)


def test_calls_are_bounded_to_about_ten_seconds_by_default(aws: None) -> None:
    from store import bind_table
    from store.table import worst_case_seconds
    from tests.support.dynamodb_faults import dynamodb_client

    config = dynamodb_client(bind_table("chatkit-bounds", region="us-east-1")).meta.config

    assert (config.connect_timeout, config.read_timeout) == (0.5, 2.0)
    assert config.retries["total_max_attempts"] == 3
    assert worst_case_seconds() <= 10.5


async def test_s3_not_answering_is_store_unavailable_and_no_row_points_at_nothing(
    store: DynamoDBStore, alice: RequestContext, s3: Any
) -> None:
    from botocore.exceptions import ConnectionClosedError

    from tests.store.test_large_items import megabyte_widget

    await store.save_thread(thread("thr_1"), alice)

    def closed(request: Any, **_kwargs: Any) -> None:
        raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register_first("before-send.s3.PutObject", closed)

    with pytest.raises(StoreUnavailableError, match="S3 is unavailable"):
        await store.add_thread_item("thr_1", megabyte_widget("wdg_1", "thr_1"), alice)
    assert (await store.load_thread_items("thr_1", None, 10, "asc", alice)).data == []


def test_s3_calls_are_bounded_too() -> None:
    from store.uploads import s3_client

    config = s3_client("us-east-1").meta.config

    assert (config.connect_timeout, config.read_timeout) == (1, 5)
    assert config.retries["total_max_attempts"] == 3
