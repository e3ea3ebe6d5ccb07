"""One turn per thread: the lease in the thread row, taken, checked, given back, reclaimed."""

from __future__ import annotations

import pytest
from chatkit.store import NotFoundError
from chatkit.types import ThreadItem

from store import (
    DynamoDBStore,
    RequestContext,
    StoreUnavailableError,
    TableRecord,
    ThreadBusyError,
    ThreadDeletedError,
    ThreadLeaseLostError,
    Turn,
)
from tests.store.factories import assistant_message, thread, user_message
from tests.support.dynamodb_faults import DynamoDBFaults


def turn_of(context: RequestContext, lease_seconds: float = 60.0) -> RequestContext:
    return context.for_turn(Turn(lease_seconds=lease_seconds))


async def creating_a_thread(
    store: DynamoDBStore, context: RequestContext
) -> tuple[RequestContext, str]:
    """A turn creating a thread, as `threads.create` does: its id generated, the thread saved."""
    turn = turn_of(context)
    assert turn.turn is not None
    turn.turn.creating = True
    thread_id = store.generate_thread_id(turn)
    await store.save_thread(thread(thread_id), turn)
    return turn, thread_id


@pytest.fixture
async def thread_1(store: DynamoDBStore, alice: RequestContext) -> str:
    await store.save_thread(thread("thr_1", title="Plans"), alice)
    return "thr_1"


async def test_taking_the_lease_returns_the_thread_in_one_request(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord], thread_1: str
) -> None:
    faults = DynamoDBFaults.of(table)
    turn = turn_of(alice)

    loaded = await store.begin_turn(thread_1, turn)

    assert loaded.title == "Plans"
    assert (await store.load_thread(thread_1, turn)).title == "Plans"  # answered from the lease
    assert faults.attempts == {"UpdateItem": 1}


async def test_a_second_turn_on_a_thread_is_busy(
    store: DynamoDBStore, alice: RequestContext, thread_1: str
) -> None:
    await store.begin_turn(thread_1, turn_of(alice))

    with pytest.raises(ThreadBusyError):
        await store.begin_turn(thread_1, turn_of(alice))


async def test_the_last_write_gives_the_lease_back(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord], thread_1: str
) -> None:
    first = turn_of(alice)
    await store.begin_turn(thread_1, first)
    faults = DynamoDBFaults.of(table)

    answer = assistant_message("msg_a", thread_1, text="Done")
    titled = thread(thread_1, title="New title")
    await store.finish_turn(titled, answer, first)

    assert faults.attempts == {"TransactWriteItems": 1}
    await store.begin_turn(thread_1, turn_of(alice))
    assert (await store.load_item(thread_1, "msg_a", alice)) == answer
    assert (await store.load_thread(thread_1, alice)).title == "New title"


async def test_a_turn_that_ends_without_writing_gives_the_lease_back(
    store: DynamoDBStore, alice: RequestContext, thread_1: str
) -> None:
    first = turn_of(alice)
    await store.begin_turn(thread_1, first)

    await store.end_turn(first)

    await store.begin_turn(thread_1, turn_of(alice))


async def test_a_lease_left_by_a_crashed_turn_is_taken_over_once_expired(
    store: DynamoDBStore, alice: RequestContext, thread_1: str
) -> None:
    await store.begin_turn(thread_1, turn_of(alice, lease_seconds=-1))  # never given back

    second = turn_of(alice)
    await store.begin_turn(thread_1, second)
    await store.add_thread_item(thread_1, user_message("msg_2", thread_1), second)

    assert [item.id for item in await items_of(store, thread_1, alice)] == ["msg_2"]


async def test_a_turn_whose_lease_was_taken_over_writes_nothing_more(
    store: DynamoDBStore, alice: RequestContext, thread_1: str
) -> None:
    stale = turn_of(alice, lease_seconds=-1)
    await store.begin_turn(thread_1, stale)
    await store.begin_turn(thread_1, turn_of(alice))

    with pytest.raises(ThreadLeaseLostError):
        await store.add_thread_item(thread_1, assistant_message("msg_late", thread_1), stale)
    with pytest.raises(ThreadLeaseLostError):
        await store.finish_turn(thread(thread_1, title="Late"), None, stale)

    assert await items_of(store, thread_1, alice) == []
    assert (await store.load_thread(thread_1, alice)).title == "Plans"


async def test_a_turn_on_a_thread_deleted_under_it_writes_nothing_more(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord], thread_1: str
) -> None:
    turn = turn_of(alice)
    await store.begin_turn(thread_1, turn)
    await store.delete_thread(thread_1, alice)

    with pytest.raises(ThreadDeletedError):
        await store.add_thread_item(thread_1, assistant_message("msg_late", thread_1), turn)
    with pytest.raises(ThreadDeletedError):
        await store.finish_turn(thread(thread_1, title="Late"), None, turn)

    assert list(table.query(f"U#alice#T#{thread_1}", consistent_read=True)) == []
    with pytest.raises(NotFoundError):
        await store.load_thread(thread_1, alice)


async def test_a_turn_on_a_missing_thread_is_not_found(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await store.begin_turn("thr_missing", turn_of(alice))


async def test_a_new_thread_is_written_with_its_first_row(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    faults = DynamoDBFaults.of(table)
    turn, thread_id = await creating_a_thread(store, alice)

    assert faults.attempts == {}  # not yet: a thread without a message would be an orphan
    await store.add_thread_item(thread_id, user_message("msg_1", thread_id), turn)

    assert faults.attempts == {"TransactWriteItems": 1}
    assert (await store.load_thread(thread_id, alice)).id == thread_id
    with pytest.raises(ThreadBusyError):  # and the creating turn holds it
        await store.begin_turn(thread_id, turn_of(alice))


async def test_a_new_thread_whose_first_write_fails_does_not_exist(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    turn, thread_id = await creating_a_thread(store, alice)
    DynamoDBFaults.of(table).fail("TransactWriteItems", times=10)

    with pytest.raises(StoreUnavailableError):
        await store.add_thread_item(thread_id, user_message("msg_1", thread_id), turn)

    assert (await store.load_threads(10, None, "desc", alice)).data == []


async def items_of(
    store: DynamoDBStore, thread_id: str, context: RequestContext
) -> list[ThreadItem]:
    return (await store.load_thread_items(thread_id, None, 50, "asc", context)).data
