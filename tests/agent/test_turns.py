"""A thread answers one turn at a time, and what the client saw is what is stored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from chatkit.server import StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import ThreadMetadata
from starlette.requests import Request

from agent.server import AssistantServer, TurnLimits
from handlers.app import create_app
from store import DynamoDBStore, PayloadBucket, RequestContext, TableRecord
from store.tasks import TaskStore
from tests.agent.conftest import (
    add_message,
    all_items,
    assistant_text,
    call,
    create_thread,
    decode,
    of_type,
    offline_models,
    stream,
)
from tests.conftest import BUCKET
from tests.support.asgi_stream import stream_then_leave
from tests.support.dynamodb_faults import DynamoDBFaults
from tests.support.fake_openai import FakeOpenAI, Reply


class ObservedStore(DynamoDBStore):
    """Tells the test when a turn has given its thread back (its very last store call)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turn_ended = asyncio.Event()

    async def end_turn(self, context: RequestContext) -> None:
        await super().end_turn(context)
        self.turn_ended.set()


@pytest.fixture
def observed(table: type[TableRecord], s3: Any) -> ObservedStore:
    return ObservedStore(table, PayloadBucket(s3, BUCKET))


async def until_first_delta(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events up to the first text delta: the answer is then under way."""
    seen = []
    async for event in events:
        seen.append(event)
        if event["type"] == "thread.item.updated":
            return seen
    raise AssertionError(f"no delta in {[event['type'] for event in seen]}")


async def start(
    server: AssistantServer, request: dict[str, Any], context: RequestContext
) -> tuple[AsyncIterator[dict[str, Any]], list[dict[str, Any]]]:
    """Start a streaming request and read it until its answer is under way."""
    result = await server.process(json.dumps(request), context)
    assert isinstance(result, StreamingResult)
    events = decode(result)
    return events, await until_first_delta(events)


async def test_a_second_turn_on_a_busy_thread_is_refused_and_nothing_crosses(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.replies = [Reply(["Hello."])]
    thread_id = (await stream(fake_model_server, create_thread("Hi"), alice))[0]["thread"]["id"]
    fake_openai.replies = [Reply(["Answer ", "to ", "A."], pause_after=1), Reply(["To B."])]

    first, seen = await start(fake_model_server, add_message(thread_id, "Question A"), alice)
    second = await stream(fake_model_server, add_message(thread_id, "Question B"), alice)
    fake_openai.released.set()
    seen += [event async for event in first]

    assert [event["type"] for event in second] == ["error"]
    assert "still being written" in second[0]["message"] and second[0]["allow_retry"] is True
    assert assistant_text(seen) == "Answer to A."
    texts = [
        item.content[0].text  # type: ignore[union-attr]
        for item in await all_items(store, thread_id, alice)
    ]
    assert texts == ["Hi", "Hello.", "Question A", "Answer to A."]


async def test_after_a_turn_the_thread_answers_the_next_one(
    server: AssistantServer, alice: RequestContext
) -> None:
    first = await stream(server, create_thread("Hi"), alice)
    thread_id = first[0]["thread"]["id"]

    second = await stream(server, add_message(thread_id, "Again"), alice)

    assert of_type(second, "error") == []
    assert 'you said "Again"' in assistant_text(second)


async def test_a_thread_deleted_during_its_first_turn_does_not_come_back(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.replies = [Reply(["A ", "long ", "answer."], pause_after=1)]

    events, seen = await start(fake_model_server, create_thread("Plan my week"), alice)
    thread_id = seen[0]["thread"]["id"]
    await call(
        fake_model_server, {"type": "threads.delete", "params": {"thread_id": thread_id}}, alice
    )
    fake_openai.released.set()
    seen += [event async for event in events]

    error = of_type(seen, "error")[-1]
    assert "deleted" in error["message"] and error["allow_retry"] is False
    answer_id = of_type(seen, "thread.item.added")[-1]["item"]["id"]
    assert answer_id in {event["item_id"] for event in of_type(seen, "thread.item.removed")}
    assert of_type(seen, "thread.updated") == []
    assert (await store.load_threads(10, None, "desc", alice)).data == []
    assert await all_items(store, thread_id, alice) == []
    with pytest.raises(NotFoundError):
        await store.load_thread(thread_id, alice)


async def test_a_thread_deleted_during_a_turn_gets_no_more_items(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
    table: type[TableRecord],
) -> None:
    fake_openai.replies = [Reply(["Hello."])]
    thread_id = (await stream(fake_model_server, create_thread("Hi"), alice))[0]["thread"]["id"]
    fake_openai.replies = [Reply(["More ", "words."], pause_after=1)]

    events, seen = await start(fake_model_server, add_message(thread_id, "Go on"), alice)
    await store.delete_thread(thread_id, alice)
    fake_openai.released.set()
    seen += [event async for event in events]

    assert "deleted" in of_type(seen, "error")[-1]["message"]
    assert list(table.query(f"U#alice#T#{thread_id}", consistent_read=True)) == []


@pytest.mark.parametrize("stop_reading", [True, False], ids=["stops-reading", "disconnects"])
async def test_the_partial_answer_kept_is_exactly_what_the_client_received(
    observed: ObservedStore, tasks: TaskStore, alice: RequestContext, stop_reading: bool
) -> None:
    server = AssistantServer(observed, tasks, offline_models(0.01), TurnLimits())
    app = create_app(server, as_alice)
    request = create_thread("Tell me a long story about the sea and the wind")

    received = await stream_then_leave(
        app, request, leave_when=lambda events: deltas(events) >= 3, stop_reading=stop_reading
    )
    await asyncio.wait_for(observed.turn_ended.wait(), timeout=30)

    thread_id = received[0]["thread"]["id"]
    [answer] = [
        item
        for item in await all_items(observed, thread_id, alice)
        if item.type == "assistant_message"
    ]
    shown = "".join(
        event["update"]["delta"]
        for event in of_type(received, "thread.item.updated")
        if event["update"]["type"] == "assistant_message.content_part.text_delta"
    )
    assert answer.type == "assistant_message"
    assert answer.content[0].text == shown  # type: ignore[union-attr]


async def left_new_thread(
    observed: ObservedStore, tasks: TaskStore, alice: RequestContext, text: str
) -> ThreadMetadata:
    """The thread of a first message `text` whose client left two words into the answer,
    once its turn has ended."""
    server = AssistantServer(observed, tasks, offline_models(0.01), TurnLimits())
    received = await stream_then_leave(
        create_app(server, as_alice),
        create_thread(text),
        leave_when=lambda events: deltas(events) >= 2,
        stop_reading=True,
    )
    await asyncio.wait_for(observed.turn_ended.wait(), timeout=30)
    return await observed.load_thread(received[0]["thread"]["id"], alice)


async def test_a_new_thread_left_before_its_title_is_titled_from_its_first_message(
    observed: ObservedStore, tasks: TaskStore, alice: RequestContext
) -> None:
    thread = await left_new_thread(observed, tasks, alice, "help me plan a picnic this weekend")

    assert thread.title == "Help me plan a picnic this weekend"


async def test_a_client_that_leaves_after_a_handoff_keeps_the_specialist_for_the_next_turn(
    observed: ObservedStore, tasks: TaskStore, alice: RequestContext
) -> None:
    thread = await left_new_thread(observed, tasks, alice, "tell me a long story")

    assert thread.metadata.get("specialist") == "general"


@pytest.fixture
def los_angeles(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_every_created_at_sent_is_utc_and_the_same_when_loaded(
    server: AssistantServer, alice: RequestContext, los_angeles: None
) -> None:
    events = await stream(server, create_thread("Hi"), alice)
    thread_id = events[0]["thread"]["id"]
    loaded = await call(
        server, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}, alice
    )
    listed = await call(server, {"type": "threads.list", "params": {}}, alice)

    streamed = {events[0]["thread"]["id"]: events[0]["thread"]["created_at"]}
    for event in of_type(events, "thread.item.added") + of_type(events, "thread.item.done"):
        streamed.setdefault(event["item"]["id"], event["item"]["created_at"])
        assert instant(event["item"]["created_at"]) == instant(streamed[event["item"]["id"]])
    later = {
        loaded["id"]: loaded["created_at"],
        listed["data"][0]["id"]: listed["data"][0]["created_at"],
    }
    later.update({item["id"]: item["created_at"] for item in loaded["items"]["data"]})

    assert set(later) == set(streamed)
    for key, sent in streamed.items():
        assert (
            instant(sent).utcoffset() is not None and instant(sent).utcoffset().total_seconds() == 0
        )  # type: ignore[union-attr]
        assert instant(later[key]) == instant(sent)


async def test_a_text_turn_is_four_dynamodb_requests_with_the_lease(
    server: AssistantServer, alice: RequestContext, table: type[TableRecord]
) -> None:
    thread_id = (await stream(server, create_thread("Hi"), alice))[0]["thread"]["id"]
    faults = DynamoDBFaults.of(table)

    await stream(server, add_message(thread_id, "Again"), alice)

    # The lease comes with the thread; the answer gives it back.
    assert faults.attempts == {"UpdateItem": 1, "TransactWriteItems": 2, "Query": 1}


async def test_a_first_turn_is_three_dynamodb_requests(
    server: AssistantServer, alice: RequestContext, table: type[TableRecord]
) -> None:
    faults = DynamoDBFaults.of(table)

    events = await stream(server, create_thread("Hi"), alice)

    assert of_type(events, "thread.updated")[-1]["thread"]["title"] == "Hi"
    # The thread with its first message; triage's handoff (a workflow item); the answer with
    # the title, the specialist and the lease given back.
    assert faults.attempts == {"TransactWriteItems": 3}


def deltas(events: list[dict[str, Any]]) -> int:
    """The answer's text deltas received (the workflow's updates aside)."""
    return sum(
        1
        for event in of_type(events, "thread.item.updated")
        if event["update"]["type"] == "assistant_message.content_part.text_delta"
    )


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def as_alice(request: Request) -> RequestContext:
    return RequestContext(user_id="alice")


_ = UTC
