"""DynamoDB calls run off the event loop, so token streaming goes on while they wait."""

from __future__ import annotations

import asyncio
import threading

from store import DynamoDBStore, RequestContext, TableRecord
from tests.store.factories import attachment, thread, user_message
from tests.support.dynamodb_faults import DynamoDBFaults

OPERATIONS = [
    "GetItem",
    "UpdateItem",
    "TransactWriteItems",
    "Query",
    "DeleteItem",
    "BatchWriteItem",
]


async def test_every_dynamodb_call_leaves_the_event_loop_running(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    loop = asyncio.get_running_loop()
    blocked: list[str] = []

    def loop_must_answer(operation: str) -> None:
        # The loop can only run this callback if the request is not being made on it.
        answered = threading.Event()
        loop.call_soon_threadsafe(answered.set)
        if not answered.wait(timeout=5):
            blocked.append(operation)

    injector = DynamoDBFaults.of(table)
    for operation in OPERATIONS:
        injector.observe(operation, lambda operation=operation: loop_must_answer(operation))

    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", user_message("msg_1", "thr_1"), alice)
    await store.load_thread("thr_1", alice)
    await store.load_thread_items("thr_1", "msg_1", 5, "desc", alice)
    await store.load_threads(5, None, "desc", alice)
    await store.save_attachment(attachment("atc_1"), alice)
    await store.delete_attachment("atc_1", alice)
    await store.delete_thread("thr_1", alice)

    assert blocked == []
    assert set(injector.attempts) == set(OPERATIONS)
