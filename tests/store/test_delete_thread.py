"""delete_thread removes the thread, every item and every S3 payload, and resumes if interrupted.

What stays is the thread row as a tombstone (expiring by TTL), so nothing written late can
bring the thread back.
"""

from __future__ import annotations

import pytest
from chatkit.store import NotFoundError

from store import DynamoDBStore, PayloadBucket, RequestContext, TableRecord
from tests.store.conftest import BUCKET
from tests.store.factories import thread, tied_times, user_message
from tests.store.test_large_items import megabyte_widget, payload_objects

ITEM_COUNT = 300
BIG_ITEMS = 3


async def fill_thread(store: DynamoDBStore, context: RequestContext) -> None:
    await store.save_thread(thread("thr_big"), context)
    for index, created_at in enumerate(tied_times(ITEM_COUNT - BIG_ITEMS)):
        await store.add_thread_item(
            "thr_big", user_message(f"msg_{index:03d}", "thr_big", created_at), context
        )
    for index in range(BIG_ITEMS):
        await store.add_thread_item("thr_big", megabyte_widget(f"wdg_{index}", "thr_big"), context)


def rows_of(table: type[TableRecord], user: str) -> list[str]:
    """Every row of the thread, the tombstone left by a delete excepted."""
    return [row.sk for row in table.query(f"U#{user}#T#thr_big", consistent_read=True)] + [
        row.sk
        for row in table.query(f"U#{user}", consistent_read=True)
        if row.kind != "thread_deleted"
    ]


async def test_thread_of_300_items_is_deleted_completely(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord], s3
) -> None:  # type: ignore[no-untyped-def]
    await fill_thread(store, alice)
    assert len(rows_of(table, "alice")) == ITEM_COUNT + 1
    assert len(payload_objects(s3)) == BIG_ITEMS

    await store.delete_thread("thr_big", alice)

    assert rows_of(table, "alice") == []
    assert payload_objects(s3) == []
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_big", alice)


async def test_a_deleted_thread_leaves_only_an_expiring_tombstone(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    await store.save_thread(thread("thr_big"), alice)

    await store.delete_thread("thr_big", alice)

    [tombstone] = list(table.query("U#alice", consistent_read=True))
    assert (tombstone.sk, tombstone.kind) == ("T#thr_big", "thread_deleted")
    assert tombstone.body is None and tombstone.lsi1sk is None
    assert tombstone.expires_at is not None
    assert (await store.load_threads(10, None, "desc", alice)).data == []


async def test_deleting_a_missing_thread_is_not_found(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await store.delete_thread("thr_missing", alice)


async def test_interrupted_delete_resumes_when_repeated(
    table: type[TableRecord], s3, alice: RequestContext
) -> None:  # type: ignore[no-untyped-def]
    class FailingOnce(PayloadBucket):
        failed = False

        def delete(self, keys: list[str]) -> None:
            if not self.failed:
                self.failed = True
                raise ConnectionError("S3 went away")
            super().delete(keys)

    await fill_thread(DynamoDBStore(table, PayloadBucket(s3, BUCKET)), alice)
    store = DynamoDBStore(table, FailingOnce(s3, BUCKET))
    # The payloads sort last (newest), so some batches of plain items go before the failure.
    with pytest.raises(ConnectionError):
        await store.delete_thread("thr_big", alice)
    # Gone for the user at once; some of its rows are still there to delete.
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_big", alice)
    assert 0 < len(rows_of(table, "alice")) < ITEM_COUNT + 1

    await store.delete_thread("thr_big", alice)

    assert rows_of(table, "alice") == []
    assert payload_objects(s3) == []
