"""How answers are produced and bounded: real providers' ids, failures, time and turn limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Model

from agent.offline_model import OfflineModel
from agent.providers import Models, build_models
from agent.server import AssistantServer, TurnLimits
from store import DynamoDBStore, RequestContext
from store.tasks import TaskStore
from tests.agent.conftest import (
    add_message,
    all_items,
    assistant_text,
    compatible_settings,
    create_thread,
    of_type,
    offline_models,
    stream,
)
from tests.support.fake_openai import FakeOpenAI, Reply


async def test_chat_completions_answers_get_distinct_persisted_ids(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.replies = [Reply(["First ", "answer."]), Reply(["Second ", "answer."])]

    first = await stream(fake_model_server, create_thread("Hi"), alice)
    thread_id = first[0]["thread"]["id"]
    second = await stream(fake_model_server, add_message(thread_id, "Again"), alice)

    assert assistant_text(first) == "First answer."
    assert assistant_text(second) == "Second answer."
    answers = [
        item
        for item in await all_items(store, thread_id, alice)
        if item.type == "assistant_message"
    ]
    assert len(answers) == 2
    assert len({answer.id for answer in answers}) == 2
    assert "__fake_id__" not in {answer.id for answer in answers}
    # The second request carried the first turn to the model.
    contents = [message.get("content") for message in fake_openai.requests[1]["messages"]]
    assert "First answer." in str(contents)


async def test_provider_failing_mid_answer_leaves_nothing_half_written_and_retry_works(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.replies = [Reply(["Half ", "an ", "answer "], cut_after=2)]

    events = await stream(fake_model_server, create_thread("Tell me a story"), alice)

    error = of_type(events, "error")[0]
    assert error["allow_retry"] is True and error["message"]
    partial_ids = {event["item"]["id"] for event in of_type(events, "thread.item.added")}
    assert partial_ids and partial_ids <= {
        event["item_id"] for event in of_type(events, "thread.item.removed")
    }
    thread_id = events[0]["thread"]["id"]
    items = await all_items(store, thread_id, alice)
    assert [item.type for item in items] == ["user_message"]

    fake_openai.replies = [Reply(["A ", "whole ", "story."])]
    retried = await stream(
        fake_model_server,
        {
            "type": "threads.retry_after_item",
            "params": {"thread_id": thread_id, "item_id": items[0].id},
        },
        alice,
    )

    assert assistant_text(retried) == "A whole story."
    assert [item.type for item in await all_items(store, thread_id, alice)] == [
        "user_message",
        "assistant_message",
    ]


@pytest.mark.parametrize(
    ("status", "words", "allow_retry"),
    [
        (401, "API key", False),
        (429, "rate limiting", True),
        (500, "temporary error", True),
        (404, "MODEL_NAME", False),
    ],
)
async def test_provider_errors_become_error_events_people_understand(
    fake_model_server: AssistantServer,
    store: DynamoDBStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
    status: int,
    words: str,
    allow_retry: bool,
) -> None:
    fake_openai.replies = [Reply(status=status)]

    events = await stream(fake_model_server, create_thread("Hello"), alice)

    error = of_type(events, "error")[0]
    assert words in error["message"]
    assert error["allow_retry"] is allow_retry
    assert "test-key" not in str(events)
    thread_id = events[0]["thread"]["id"]
    assert [item.type for item in await all_items(store, thread_id, alice)] == ["user_message"]


class StallingModel(OfflineModel):
    """Streams a few words, then waits forever: only the server's time limit can end the turn."""

    def __init__(self) -> None:
        super().__init__(0)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        sent = 0
        async for event in super().stream_response(*args, **kwargs):
            if getattr(event, "type", "") == "response.output_text.delta":
                sent += 1
                if sent > 3:
                    await asyncio.Event().wait()
            yield event


async def test_answer_over_the_time_limit_is_stopped_and_its_part_kept(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    model: Model = StallingModel()
    limits = TurnLimits(max_turn_seconds=0.5)
    server = AssistantServer(store, tasks, Models("offline", model, None, None), limits)

    events = await stream(server, create_thread("Tell me everything"), alice)

    assert "took longer than 0.5 seconds" in of_type(events, "error")[0]["message"]
    thread_id = events[0]["thread"]["id"]
    items = await all_items(store, thread_id, alice)
    assert [item.type for item in items] == ["user_message", "workflow", "assistant_message"]
    partial = items[2].content[0].text  # type: ignore[union-attr]
    assert partial and partial == assistant_text(events)


async def test_tool_loops_beyond_the_turn_limit_are_stopped(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    server = AssistantServer(store, tasks, offline_models(), TurnLimits(max_agent_turns=1))

    events = await stream(server, create_thread("add a task to buy milk"), alice)

    error = of_type(events, "error")[0]
    assert "too many steps" in error["message"] and error["allow_retry"] is True


async def test_real_provider_titles_new_threads_with_a_model_call(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext, fake_openai: FakeOpenAI
) -> None:
    server = AssistantServer(store, tasks, build_models(compatible_settings(fake_openai)))
    fake_openai.replies = [Reply(["Sure."])]
    fake_openai.titles = ["Weekend picnic plans"]

    events = await stream(server, create_thread("help me plan a picnic this weekend"), alice)

    assert of_type(events, "thread.updated")[-1]["thread"]["title"] == "Weekend picnic plans"
    assert (
        await store.load_thread(events[0]["thread"]["id"], alice)
    ).title == "Weekend picnic plans"


async def test_failed_title_call_falls_back_to_the_first_message(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext, fake_openai: FakeOpenAI
) -> None:
    server = AssistantServer(store, tasks, build_models(compatible_settings(fake_openai)))
    fake_openai.replies = [Reply(["Sure."])]
    fake_openai.titles = []  # the fake answers title requests with "A title" unless told...

    original = fake_openai.next_reply

    def failing_titles(request: dict[str, Any]) -> Reply:
        if "Write a short title" in str(request.get("messages", [])[:1]):
            return Reply(status=500)
        return original(request)

    fake_openai.next_reply = failing_titles  # type: ignore[method-assign]

    events = await stream(server, create_thread("help me plan a picnic"), alice)

    assert assistant_text(events) == "Sure."
    assert of_type(events, "thread.updated")[-1]["thread"]["title"] == "Help me plan a picnic"


async def test_bad_tool_arguments_from_the_model_do_not_break_the_turn(
    fake_model_server: AssistantServer,
    tasks: TaskStore,
    alice: RequestContext,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.replies = [
        Reply(tool_call=("transfer_to_tasks", "{}")),  # triage hands over
        Reply(tool_call=("add_task", "{this is not json")),
        Reply(["Sorry, ", "I could not add that."]),
    ]

    events = await stream(fake_model_server, create_thread("add a task"), alice)

    assert assistant_text(events) == "Sorry, I could not add that."
    assert of_type(events, "error") == []
    assert await tasks.load_tasks(alice) == []
    tool_result = fake_openai.requests[2]["messages"][-1]
    assert tool_result["role"] == "tool" and "error" in tool_result["content"].lower()


async def test_openai_transcription_is_used_for_dictation(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext, fake_openai: FakeOpenAI
) -> None:
    import base64

    from tests.agent.conftest import call

    settings = compatible_settings(
        fake_openai, provider="openai", transcription_model="gpt-4o-mini-transcribe"
    )
    server = AssistantServer(store, tasks, build_models(settings))
    audio = base64.b64encode(b"OggS-fake-audio").decode()

    result = await call(
        server,
        {"type": "input.transcribe", "params": {"audio_base64": audio, "mime_type": "audio/ogg"}},
        alice,
    )

    assert result == {"text": "buy milk"}
    assert b"OggS-fake-audio" in fake_openai.transcripts[0]


async def test_over_the_daily_quota_no_model_is_called_and_nothing_is_stored(
    store: DynamoDBStore, tasks: TaskStore, table: Any, alice: RequestContext
) -> None:
    from errors import QuotaExceededError
    from store.quota import TurnQuota

    calls: list[int] = []

    class CountingModel(OfflineModel):
        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return super().stream_response(*args, **kwargs)

    models = Models("offline", CountingModel(0), None, None)
    server = AssistantServer(store, tasks, models, quota=TurnQuota(table, limit=1))
    first = await stream(server, create_thread("hello"), alice)
    thread_id = first[0]["thread"]["id"]
    calls.clear()
    stored = await all_items(store, thread_id, alice)

    with pytest.raises(QuotaExceededError, match="limit of 1 messages") as refused:
        await server.process(json.dumps(add_message(thread_id, "again")), alice)

    assert refused.value.status == 429 and refused.value.retry_after_seconds > 0
    assert calls == []
    assert await all_items(store, thread_id, alice) == stored
