"""TaskStore: each user's numbered task list, isolated per user, in the single table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio.from_thread
import boto3
import pytest
from botocore.retries.standard import ExponentialBackoff
from chatkit.store import NotFoundError

from store import RequestContext, StoreUnavailableError, TableRecord, TaskStore
from tests.conftest import TABLE
from tests.support.dynamodb_faults import DynamoDBFaults

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """A clock that moves one minute each time it is read."""

    def __init__(self) -> None:
        self.moment = T0

    def __call__(self) -> datetime:
        self.moment += timedelta(minutes=1)
        return self.moment


@pytest.fixture
def tasks(table: type[TableRecord]) -> TaskStore:
    return TaskStore(table, now=Clock())


# -- numbering -------------------------------------------------------------------------------


async def test_first_task_is_number_one_and_open(tasks: TaskStore, alice: RequestContext) -> None:
    task = await tasks.add("buy milk", alice)

    assert (task.number, task.title, task.done, task.completed_at) == (1, "buy milk", False, None)
    assert task.created_at.tzinfo is not None and task.created_at.utcoffset() == timedelta(0)


async def test_numbers_count_up(tasks: TaskStore, alice: RequestContext) -> None:
    numbers = [(await tasks.add(f"task {n}", alice)).number for n in range(3)]

    assert numbers == [1, 2, 3]


async def test_each_user_numbers_from_one(
    tasks: TaskStore, alice: RequestContext, bob: RequestContext
) -> None:
    await tasks.add("alice's first", alice)
    await tasks.add("alice's second", alice)

    bobs = await tasks.add("bob's first", bob)

    assert bobs.number == 1


async def test_numbers_are_never_reused_after_delete(
    tasks: TaskStore, alice: RequestContext
) -> None:
    await tasks.add("one", alice)
    await tasks.add("two", alice)
    await tasks.delete(2, alice)
    await tasks.delete(1, alice)

    task = await tasks.add("three", alice)

    assert task.number == 3


async def test_an_add_during_another_add_gets_its_own_number(
    table: type[TableRecord], tasks: TaskStore, alice: RequestContext
) -> None:
    # The second add runs to completion after the first has its number but before its row
    # is written: the numbers come from the counter, not from the rows that exist.
    inner: list[int] = []

    def add_another() -> None:
        if not inner:
            inner.append(0)
            inner[0] = anyio.from_thread.run(tasks.add, "inner", alice).number

    DynamoDBFaults.of(table).observe("PutItem", add_another)

    outer = await tasks.add("outer", alice)

    assert sorted([outer.number, inner[0]]) == [1, 2]
    assert [task.title for task in await tasks.load_tasks(alice)] == (
        ["outer", "inner"] if outer.number == 1 else ["inner", "outer"]
    )


async def test_add_reserves_its_number_with_one_update_and_writes_one_row(
    table: type[TableRecord], tasks: TaskStore, alice: RequestContext
) -> None:
    injector = DynamoDBFaults.of(table)
    for operation in ("UpdateItem", "PutItem", "GetItem", "Query", "Scan"):
        injector.observe(operation, lambda: None)

    await tasks.add("buy milk", alice)

    assert injector.attempts == {"UpdateItem": 1, "PutItem": 1}


# -- titles ----------------------------------------------------------------------------------


async def test_title_is_stripped(tasks: TaskStore, alice: RequestContext) -> None:
    task = await tasks.add("  buy milk \n", alice)

    assert task.title == "buy milk"
    assert [saved.title for saved in await tasks.load_tasks(alice)] == ["buy milk"]


async def test_title_of_200_characters_is_accepted(tasks: TaskStore, alice: RequestContext) -> None:
    task = await tasks.add("x" * 200, alice)

    assert len(task.title) == 200


@pytest.mark.parametrize(
    ("title", "message"),
    [("", "empty"), ("   \t\n", "empty"), ("x" * 201, "at most 200 characters")],
)
async def test_bad_title_is_rejected_and_nothing_is_stored(
    tasks: TaskStore, alice: RequestContext, title: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await tasks.add(title, alice)

    assert await tasks.load_tasks(alice) == []
    assert (await tasks.add("next", alice)).number == 1


# -- listing ---------------------------------------------------------------------------------


async def test_list_is_in_number_order(tasks: TaskStore, alice: RequestContext) -> None:
    for n in range(1, 13):
        await tasks.add(f"task {n}", alice)

    listed = await tasks.load_tasks(alice)

    assert [task.number for task in listed] == list(range(1, 13))
    assert [task.title for task in listed] == [f"task {n}" for n in range(1, 13)]


async def test_list_is_one_query(
    table: type[TableRecord], tasks: TaskStore, alice: RequestContext
) -> None:
    await tasks.add("one", alice)
    await tasks.add("two", alice)
    injector = DynamoDBFaults.of(table)
    injector.observe("Query", lambda: None)

    await tasks.load_tasks(alice)

    assert injector.attempts == {"Query": 1}


async def test_empty_list(tasks: TaskStore, alice: RequestContext) -> None:
    assert await tasks.load_tasks(alice) == []


# -- complete, reopen, delete ----------------------------------------------------------------


async def test_complete_marks_the_task_done(tasks: TaskStore, alice: RequestContext) -> None:
    added = await tasks.add("buy milk", alice)

    done = await tasks.complete(1, alice)

    assert done.done is True
    assert done.completed_at is not None and done.completed_at > added.created_at
    assert await tasks.load_tasks(alice) == [done]


async def test_completing_a_done_task_keeps_its_completion_time(
    tasks: TaskStore, alice: RequestContext
) -> None:
    await tasks.add("buy milk", alice)
    first = await tasks.complete(1, alice)

    again = await tasks.complete(1, alice)

    assert again == first


async def test_reopen_marks_the_task_open(tasks: TaskStore, alice: RequestContext) -> None:
    added = await tasks.add("buy milk", alice)
    await tasks.complete(1, alice)

    reopened = await tasks.reopen(1, alice)

    assert reopened == added
    assert await tasks.load_tasks(alice) == [added]


async def test_delete_removes_the_task_and_returns_it(
    tasks: TaskStore, alice: RequestContext
) -> None:
    await tasks.add("buy milk", alice)
    second = await tasks.add("call mum", alice)

    deleted = await tasks.delete(2, alice)

    assert deleted == second
    assert [task.number for task in await tasks.load_tasks(alice)] == [1]


@pytest.mark.parametrize("change", ["complete", "reopen", "delete"])
@pytest.mark.parametrize("number", [2, 0, -1, 10**12])
async def test_missing_number_is_not_found_and_not_created(
    tasks: TaskStore, alice: RequestContext, change: str, number: int
) -> None:
    await tasks.add("only task", alice)

    with pytest.raises(NotFoundError):
        await getattr(tasks, change)(number, alice)

    assert [task.number for task in await tasks.load_tasks(alice)] == [1]


@pytest.mark.parametrize("change", ["complete", "reopen", "delete"])
async def test_deleted_task_is_not_found(
    tasks: TaskStore, alice: RequestContext, change: str
) -> None:
    await tasks.add("gone soon", alice)
    await tasks.delete(1, alice)

    with pytest.raises(NotFoundError):
        await getattr(tasks, change)(1, alice)

    assert await tasks.load_tasks(alice) == []


# -- isolation -------------------------------------------------------------------------------


@pytest.fixture
async def alices_tasks(tasks: TaskStore, alice: RequestContext) -> None:
    await tasks.add("alice's secret", alice)
    await tasks.add("alice's other", alice)
    await tasks.complete(2, alice)


@pytest.mark.usefixtures("alices_tasks")
async def test_other_users_tasks_are_not_listed(tasks: TaskStore, bob: RequestContext) -> None:
    assert await tasks.load_tasks(bob) == []


@pytest.mark.usefixtures("alices_tasks")
@pytest.mark.parametrize("change", ["complete", "reopen", "delete"])
async def test_other_users_task_numbers_are_not_found(
    tasks: TaskStore, alice: RequestContext, bob: RequestContext, change: str
) -> None:
    before = await tasks.load_tasks(alice)

    for number in (1, 2):
        with pytest.raises(NotFoundError):
            await getattr(tasks, change)(number, bob)

    assert await tasks.load_tasks(alice) == before
    assert await tasks.load_tasks(bob) == []


@pytest.mark.usefixtures("alices_tasks")
async def test_same_number_names_a_different_task_per_user(
    tasks: TaskStore, alice: RequestContext, bob: RequestContext
) -> None:
    await tasks.add("bob's own", bob)

    await tasks.delete(1, bob)

    assert [task.title for task in await tasks.load_tasks(alice)] == [
        "alice's secret",
        "alice's other",
    ]
    assert await tasks.load_tasks(bob) == []


async def test_rows_live_in_the_users_task_partition(
    tasks: TaskStore, alice: RequestContext, bob: RequestContext
) -> None:
    await tasks.add("alice's", alice)
    await tasks.add("bob's", bob)
    await tasks.add("bob's second", bob)

    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=TABLE)["Items"]
    rows = sorted((item["pk"]["S"], item["sk"]["S"], item["kind"]["S"]) for item in items)

    assert rows == [
        ("U#alice#TASKS", "COUNTER", "task_counter"),
        ("U#alice#TASKS", "K#0000000001", "task"),
        ("U#bob#TASKS", "COUNTER", "task_counter"),
        ("U#bob#TASKS", "K#0000000001", "task"),
        ("U#bob#TASKS", "K#0000000002", "task"),
    ]
    assert all("lsi1sk" not in item for item in items)


# -- throttling ------------------------------------------------------------------------------


async def test_throttling_beyond_the_retries_is_a_clear_error(
    table: type[TableRecord],
    tasks: TaskStore,
    alice: RequestContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)
    DynamoDBFaults.of(table).throttle("UpdateItem", times=100)  # more than any retry budget

    with pytest.raises(StoreUnavailableError, match="throttling"):
        await tasks.add("buy milk", alice)
