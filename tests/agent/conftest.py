"""An AssistantServer on the moto-backed store, and helpers to speak the protocol to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chatkit.server import NonStreamingResult, StreamingResult
from chatkit.types import ThreadItem

from agent.offline_model import OfflineModel
from agent.providers import Models, build_models
from agent.server import AssistantServer, TurnLimits
from settings import Settings
from store import DynamoDBStore, RequestContext, TableRecord
from store.tasks import TaskStore
from tests.support.fake_openai import FakeOpenAI
from tests.support.inputs import user_input


def offline_models(word_delay_seconds: float = 0) -> Models:
    return Models("offline", OfflineModel(word_delay_seconds), None, None)


@pytest.fixture
def tasks(table: type[TableRecord]) -> TaskStore:
    return TaskStore(table)


@pytest.fixture
def server(store: DynamoDBStore, tasks: TaskStore) -> AssistantServer:
    return AssistantServer(store, tasks, offline_models(), TurnLimits())


def compatible_settings(fake: FakeOpenAI, **overrides: Any) -> Settings:
    """Settings for an OpenAI-compatible provider at the fake server, without client retries."""
    values: dict[str, Any] = {
        "provider": "openai-compatible",
        "base_url": fake.base_url,
        "api_key": "test-key",
        "model": "fake-model",
        "model_max_retries": 0,
        **overrides,
    }
    return Settings(**values)


def compatible_server(
    store: DynamoDBStore, tasks: TaskStore, fake: FakeOpenAI, limits: TurnLimits | None = None
) -> AssistantServer:
    models = build_models(compatible_settings(fake))
    # Titles come from the offline truncation, so every scripted reply is an answer.
    chat_only = Models(models.provider, models.chat, None, None)
    return AssistantServer(store, tasks, chat_only, limits or TurnLimits())


@pytest.fixture
def fake_model_server(
    store: DynamoDBStore, tasks: TaskStore, fake_openai: FakeOpenAI
) -> AssistantServer:
    """The server answering with the fake OpenAI-compatible model (`compatible_server`)."""
    return compatible_server(store, tasks, fake_openai)


def create_thread(text: str) -> dict[str, Any]:
    return {"type": "threads.create", "params": {"input": user_input(text)}}


def add_message(thread_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "threads.add_user_message",
        "params": {"thread_id": thread_id, "input": user_input(text)},
    }


async def stream(
    server: AssistantServer, request: dict[str, Any], context: RequestContext
) -> list[dict[str, Any]]:
    """Send a streaming request; return the decoded SSE events."""
    result = await server.process(json.dumps(request), context)
    assert isinstance(result, StreamingResult)
    return [event async for event in decode(result)]


async def decode(result: StreamingResult) -> AsyncIterator[dict[str, Any]]:
    async for chunk in result:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        yield json.loads(chunk[len(b"data: ") : -2])


async def call(server: AssistantServer, request: dict[str, Any], context: RequestContext) -> Any:
    """Send a JSON request; return the decoded answer."""
    result = await server.process(json.dumps(request), context)
    assert isinstance(result, NonStreamingResult)
    return json.loads(result.json)


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == event_type]


def assistant_text(events: list[dict[str, Any]]) -> str:
    done = [
        event["item"]
        for event in of_type(events, "thread.item.done")
        if event["item"]["type"] == "assistant_message"
    ]
    assert done, f"no assistant message in {[event['type'] for event in events]}"
    return "".join(part["text"] for part in done[-1]["content"])


async def all_items(
    store: DynamoDBStore, thread_id: str, context: RequestContext
) -> list[ThreadItem]:
    return (await store.load_thread_items(thread_id, None, 200, "asc", context)).data


def widget_item(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The widget item the stream finished (the task list)."""
    return next(
        event["item"]
        for event in of_type(events, "thread.item.done")
        if event["item"]["type"] == "widget"
    )
