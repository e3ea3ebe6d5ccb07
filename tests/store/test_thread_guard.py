"""A deleted thread stays deleted: no write brings it back or leaves rows behind it."""

from __future__ import annotations

import anyio.from_thread
import pytest
from chatkit.store import NotFoundError

from store import DynamoDBStore, RequestContext, TableRecord, ThreadDeletedError
from tests.store.factories import attachment, thread, user_message
from tests.support.dynamodb_faults import DynamoDBFaults


def rows_in(table: type[TableRecord], pk: str) -> list[str]:
    return [row.sk for row in table.query(pk, consistent_read=True)]


async def test_an_item_added_to_a_deleted_thread_is_refused_and_not_stored(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.delete_thread("thr_1", alice)

    with pytest.raises(ThreadDeletedError):
        await store.add_thread_item("thr_1", user_message("msg_1", "thr_1"), alice)

    assert rows_in(table, "U#alice#T#thr_1") == []


async def test_saving_a_deleted_thread_does_not_bring_it_back(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1", title="Before"), alice)
    await store.delete_thread("thr_1", alice)

    with pytest.raises(ThreadDeletedError):
        await store.save_thread(thread("thr_1", title="After"), alice)

    with pytest.raises(NotFoundError):
        await store.load_thread("thr_1", alice)
    assert (await store.load_threads(10, None, "desc", alice)).data == []


async def test_an_item_of_a_thread_that_never_existed_is_refused(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    with pytest.raises(ThreadDeletedError):
        await store.save_item("thr_never", user_message("msg_1", "thr_never"), alice)

    assert rows_in(table, "U#alice#T#thr_never") == []


async def test_an_attachment_sent_to_a_deleted_thread_leaves_no_reference(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    sent = attachment("atc_1", thread_id="thr_1").model_copy(
        update={"metadata": {"s3_key": "uploads/alice/atc_1/notes.txt"}}
    )
    await store.delete_thread("thr_1", alice)

    with pytest.raises(ThreadDeletedError):
        await store.save_attachment(sent, alice)

    assert rows_in(table, "U#alice#T#thr_1") == []


async def test_a_write_arriving_while_the_thread_is_deleted_is_refused(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", user_message("msg_1", "thr_1"), alice)
    refused: list[BaseException] = []
    tried: list[bool] = []

    def write_during_the_delete() -> None:
        # Runs once the thread row is a tombstone, before its items are listed.
        if tried:
            return
        tried.append(True)
        try:
            anyio.from_thread.run(
                store.add_thread_item, "thr_1", user_message("msg_late", "thr_1"), alice
            )
        except ThreadDeletedError as error:
            refused.append(error)

    faults = DynamoDBFaults.of(table)
    faults.observe("Query", write_during_the_delete)

    await store.delete_thread("thr_1", alice)

    assert len(refused) == 1
    assert rows_in(table, "U#alice#T#thr_1") == []
