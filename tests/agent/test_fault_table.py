"""The fault table: for each fault, what the client sees and what is stored.

DynamoDB faults are injected in front of moto (tests/support/dynamodb_faults.py), provider
faults by the fake OpenAI-compatible server (tests/support/fake_openai.py). The rows about
concurrent turns, deleted threads and clients that leave are in test_turns.py. The README's
testing section has the whole table.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from botocore.retries.standard import ExponentialBackoff
from chatkit.types import WorkflowItem
from starlette.requests import Request

from agent.server import AssistantServer, TurnLimits
from handlers.app import create_app
from store import (
    DynamoDBStore,
    PayloadBucket,
    RequestContext,
    TableRecord,
    bind_table,
    create_table,
)
from store.tasks import TaskStore
from tests.agent.conftest import (
    add_message,
    all_items,
    assistant_text,
    compatible_server,
    create_thread,
    of_type,
    offline_models,
    stream,
)
from tests.conftest import BUCKET
from tests.support.dynamodb_faults import DynamoDBFaults
from tests.support.fake_openai import FakeOpenAI, Reply

# A text turn's writes: the user's message, then the answer (each one TransactWriteItems).
ANSWER_SAVE = 1  # TransactWriteItems calls before the answer's, on an existing thread
# What a first turn stores: the message, triage handing over (a workflow), the answer.
FIRST_TURN = ["user_message", "workflow", "assistant_message"]
ANSWERED = ["user_message", "assistant_message"]  # a later message, answered by the same agent


@pytest.fixture(autouse=True)
def no_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry decisions stay; its sleeps between attempts are skipped."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture
def quick_table(aws: None) -> type[TableRecord]:
    """The table with tiny timeouts, so a stalled DynamoDB times out at once."""
    record = bind_table("chatkit-quick", region="us-east-1", read_timeout=0.05)
    create_table(record)
    return record


@pytest.fixture
def faults(table: type[TableRecord]) -> DynamoDBFaults:
    return DynamoDBFaults.of(table)


async def existing_thread(server: AssistantServer, context: RequestContext) -> str:
    events = await stream(server, create_thread("Hi"), context)
    assert of_type(events, "error") == []
    thread_id: str = events[0]["thread"]["id"]
    return thread_id


async def stored_types(store: DynamoDBStore, thread_id: str, context: RequestContext) -> list[str]:
    return [item.type for item in await all_items(store, thread_id, context)]


def answer_taken_back(events: list[dict[str, Any]]) -> bool:
    """The answer the client saw streaming was removed from its view."""
    added = {event["item"]["id"] for event in of_type(events, "thread.item.added")}
    removed = {event["item_id"] for event in of_type(events, "thread.item.removed")}
    return bool(added) and added <= removed


# -- DynamoDB ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["throttle", "reset"])
async def test_an_answer_save_throttled_or_reset_within_the_retries_is_saved(
    server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    faults: DynamoDBFaults,
    fault: str,
) -> None:
    thread_id = await existing_thread(server, alice)
    getattr(faults, fault)("TransactWriteItems", times=2, after=ANSWER_SAVE)

    events = await stream(server, add_message(thread_id, "Again"), alice)

    assert of_type(events, "error") == [] and 'you said "Again"' in assistant_text(events)
    assert await stored_types(store, thread_id, alice) == [*FIRST_TURN, *ANSWERED]


async def test_an_answer_save_cancelled_by_a_concurrent_write_is_tried_again(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext, faults: DynamoDBFaults
) -> None:
    thread_id = await existing_thread(server, alice)
    # Say the thread was renamed while the answer was saved (and its lease given back).
    faults.conflict(rows=2, times=2, after=ANSWER_SAVE)

    events = await stream(server, add_message(thread_id, "Again"), alice)

    assert of_type(events, "error") == []
    assert await stored_types(store, thread_id, alice) == [*FIRST_TURN, *ANSWERED]


async def test_an_answer_that_cannot_be_saved_is_taken_back_and_said(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext, faults: DynamoDBFaults
) -> None:
    thread_id = await existing_thread(server, alice)
    faults.fail("TransactWriteItems", times=3, after=ANSWER_SAVE)  # every attempt

    events = await stream(server, add_message(thread_id, "Again"), alice)

    assert answer_taken_back(events)
    error = of_type(events, "error")[-1]
    assert error["message"].startswith("The answer could not be saved. Storage is unavailable")
    assert error["allow_retry"] is True
    types = await stored_types(store, thread_id, alice)
    assert types == [*FIRST_TURN, "user_message"]
    # The thread was given back: the next message is answered.
    assert of_type(await stream(server, add_message(thread_id, "Once more"), alice), "error") == []


async def test_a_stalled_answer_save_is_reported_as_storage_not_as_the_model(
    quick_table: type[TableRecord], s3: Any, tasks: TaskStore, alice: RequestContext
) -> None:
    store = DynamoDBStore(quick_table, PayloadBucket(s3, BUCKET))
    server = AssistantServer(store, tasks, offline_models(), TurnLimits())
    thread_id = await existing_thread(server, alice)
    DynamoDBFaults.of(quick_table).stall("TransactWriteItems", times=3, after=ANSWER_SAVE)

    events = await stream(server, add_message(thread_id, "Again"), alice)

    message = of_type(events, "error")[-1]["message"]
    assert "Storage is unavailable" in message
    assert "model" not in message and "longer than" not in message
    assert answer_taken_back(events)
    assert await stored_types(store, thread_id, alice) == [*FIRST_TURN, "user_message"]


async def test_history_that_cannot_be_read_is_a_storage_error_and_keeps_the_message(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext, faults: DynamoDBFaults
) -> None:
    thread_id = await existing_thread(server, alice)
    faults.fail("Query", times=3)

    events = await stream(server, add_message(thread_id, "Again"), alice)

    error = of_type(events, "error")[-1]
    assert error["message"].startswith("Storage is unavailable") and error["allow_retry"] is True
    assert of_type(events, "thread.item.added") == []
    assert await stored_types(store, thread_id, alice) == [*FIRST_TURN, "user_message"]


async def test_a_first_message_that_cannot_be_saved_leaves_no_thread(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext, faults: DynamoDBFaults
) -> None:
    faults.fail("TransactWriteItems", times=3)

    events = await stream(server, create_thread("Hello"), alice)

    assert [event["type"] for event in events] == ["thread.created", "error"]
    assert events[-1]["message"].startswith("Your message could not be saved. Storage is")
    assert (await store.load_threads(10, None, "desc", alice)).data == []


@pytest.mark.parametrize(
    ("operation", "request_of"),
    [
        ("UpdateItem", lambda thread_id: add_message(thread_id, "Again")),  # taking the thread
        ("TransactWriteItems", lambda thread_id: add_message(thread_id, "Again")),  # the message
        ("Query", lambda thread_id: {"type": "threads.list", "params": {}}),
    ],
    ids=["turn-start", "user-message", "json-request"],
)
async def test_dynamodb_down_before_anything_is_sent_is_a_503_with_retry_after(
    server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    faults: DynamoDBFaults,
    operation: str,
    request_of: Any,
) -> None:
    thread_id = await existing_thread(server, alice)
    faults.reset(operation, times=3)

    async with http_client(server) as client:
        response = await client.post("/chatkit", content=json.dumps(request_of(thread_id)))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "unavailable"
    assert await stored_types(store, thread_id, alice) == FIRST_TURN


# -- the model provider -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(["Three ", "words ", "only"], truncated=True), "cut off"),
        (Reply(empty=True), "empty answer"),
    ],
    ids=["no-finish-reason", "only-done"],
)
async def test_an_unfinished_or_empty_provider_stream_is_an_error_and_stores_no_answer(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
    reply: Reply,
    words: str,
) -> None:
    fake_openai.replies = [reply]

    events = await stream(fake_model_server, create_thread("Hello"), alice)

    error = of_type(events, "error")[-1]
    assert words in error["message"] and error["allow_retry"] is True
    assert of_type(events, "thread.item.added") == [] or answer_taken_back(events)
    thread_id = events[0]["thread"]["id"]
    assert await stored_types(store, thread_id, alice) == ["user_message"]


async def test_a_provider_that_hangs_is_stopped_and_what_was_shown_is_kept(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext, fake_openai: FakeOpenAI
) -> None:
    server = compatible_server(store, tasks, fake_openai, TurnLimits(max_turn_seconds=1))
    fake_openai.replies = [Reply(["Part ", "of ", "it ", "and more"], pause_after=3)]

    events = await stream(server, create_thread("Hello"), alice)

    assert "took longer than 1 seconds" in of_type(events, "error")[-1]["message"]
    items = await all_items(store, events[0]["thread"]["id"], alice)
    assert [item.type for item in items] == ["user_message", "assistant_message"]
    assert items[1].content[0].text == "Part of it " == assistant_text(events)  # type: ignore[union-attr]


async def test_a_retry_after_a_provider_error_does_not_repeat_the_tool_and_says_so(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    tasks: TaskStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.replies = [
        Reply(tool_call=("transfer_to_tasks", "{}")),
        Reply(tool_call=("add_task", '{"title": "buy milk"}')),
        Reply(status=500),
    ]

    failed = await stream(fake_model_server, create_thread("add a task to buy milk"), alice)

    message = of_type(failed, "error")[-1]["message"]
    assert "added task #1 “buy milk”" in message and "will not repeat" in message
    thread_id = failed[0]["thread"]["id"]
    user_message = (await all_items(store, thread_id, alice))[0]
    # The failed turn kept what it showed: the handoff and the task added.
    kept = (await all_items(store, thread_id, alice))[1]
    assert isinstance(kept, WorkflowItem)
    assert [task.title for task in kept.workflow.tasks] == [  # type: ignore[union-attr]
        "Task assistant is answering",
        "Added task #1 “buy milk”",
    ]
    # The retry starts with the task assistant the failed turn handed to.
    fake_openai.replies = [
        Reply(tool_call=("add_task", '{"title": "buy milk"}')),
        Reply(["It is on your list."]),
    ]

    retried = await stream(
        fake_model_server,
        {
            "type": "threads.retry_after_item",
            "params": {"thread_id": thread_id, "item_id": user_message.id},
        },
        alice,
    )

    assert assistant_text(retried) == "It is on your list."
    assert [task.title for task in await tasks.load_tasks(alice)] == ["buy milk"]
    tool_result = fake_openai.requests[-1]["messages"][-1]
    assert tool_result["role"] == "tool" and "already added" in tool_result["content"]


def http_client(server: AssistantServer) -> httpx.AsyncClient:
    async def as_alice(request: Request) -> RequestContext:
        return RequestContext(user_id="alice")

    transport = httpx.ASGITransport(app=create_app(server, as_alice))
    return httpx.AsyncClient(transport=transport, base_url="http://test")
