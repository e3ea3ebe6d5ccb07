"""Every ChatKit request type through AssistantServer.process(), happy path and bad input."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from chatkit.store import NotFoundError
from chatkit.types import (
    InferenceOptions,
    StructuredInputFreeform,
    StructuredInputItem,
    UserMessageItem,
    UserMessageTextContent,
)
from pydantic import ValidationError

from agent.providers import Models
from agent.server import AssistantServer, TranscriptionUnavailableError, UploadsDisabledError
from errors import InvalidRequestError
from store import DynamoDBStore, InvalidIdError, RequestContext
from store.tasks import TaskStore
from tests.agent.conftest import (
    add_message,
    all_items,
    assistant_text,
    call,
    create_thread,
    of_type,
    offline_models,
    stream,
)
from tests.support.feedback import load_feedback


async def new_thread(
    server: AssistantServer, context: RequestContext, text: str = "Hello there"
) -> str:
    events = await stream(server, create_thread(text), context)
    return str(of_type(events, "thread.created")[0]["thread"]["id"])


# -- threads.create / threads.add_user_message -----------------------------------------


async def test_create_streams_the_answer_and_persists_both_messages(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    events = await stream(server, create_thread("Plan a picnic for Saturday"), alice)

    types = [event["type"] for event in events]
    assert types[:3] == ["thread.created", "thread.item.done", "stream_options"]
    assert "offline model" in assistant_text(events)
    assert len(of_type(events, "thread.item.updated")) > 3  # word by word
    thread_id = events[0]["thread"]["id"]
    items = await all_items(store, thread_id, alice)
    # The workflow shows (and keeps) triage handing the thread to a specialist.
    assert [item.type for item in items] == ["user_message", "workflow", "assistant_message"]


async def test_new_thread_gets_a_title_saved_and_sent(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    events = await stream(
        server, create_thread("plan a picnic for saturday with friends and family"), alice
    )

    updated = of_type(events, "thread.updated")
    assert updated and updated[-1]["thread"]["title"] == "Plan a picnic for saturday with friends…"
    thread = await store.load_thread(events[0]["thread"]["id"], alice)
    assert thread.title == updated[-1]["thread"]["title"]


async def test_titled_thread_keeps_its_title(
    server: AssistantServer, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)

    events = await stream(server, add_message(thread_id, "Another question"), alice)

    assert of_type(events, "thread.updated") == []


async def test_model_receives_the_earlier_turns(
    server: AssistantServer, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice, "My favourite colour is teal")
    await stream(server, add_message(thread_id, "Nice weather today"), alice)

    events = await stream(server, add_message(thread_id, "What was my first message?"), alice)

    assert "My favourite colour is teal" in assistant_text(events)


async def test_model_receives_only_the_newest_history_items(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    from agent.server import TurnLimits

    server = AssistantServer(store, tasks, offline_models(), TurnLimits(history_items=3))
    thread_id = await new_thread(server, alice, "My favourite colour is teal")
    await stream(server, add_message(thread_id, "Nice weather today"), alice)

    events = await stream(server, add_message(thread_id, "What was my first message?"), alice)

    answer = assistant_text(events)
    assert "teal" not in answer and "Nice weather today" in answer


async def test_message_to_unknown_thread_is_not_found(
    server: AssistantServer, alice: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await stream(server, add_message("thr_missing", "hello"), alice)


async def test_message_to_another_users_thread_is_not_found(
    server: AssistantServer, alice: RequestContext, bob: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    with pytest.raises(NotFoundError):
        await stream(server, add_message(thread_id, "hello"), bob)


@pytest.mark.parametrize(
    "request_body",
    [
        "not json",
        json.dumps({"type": "threads.explode", "params": {}}),
        json.dumps({"type": "threads.create", "params": {"input": {"content": "oops"}}}),
        json.dumps({"type": "threads.get_by_id", "params": {"thread_id": 42}}),
    ],
)
async def test_malformed_requests_are_client_errors(
    server: AssistantServer, alice: RequestContext, request_body: str
) -> None:
    with pytest.raises((ValidationError, InvalidRequestError)):
        await server.process(request_body, alice)


# -- JSON requests ----------------------------------------------------------------------


async def test_get_by_id_returns_the_thread_with_its_items_and_no_metadata(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    saved = await store.load_thread(thread_id, alice)
    saved.metadata = {"internal": "never for the client"}
    await store.save_thread(saved, alice)

    thread = await call(
        server, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}, alice
    )

    assert thread["id"] == thread_id
    assert [item["type"] for item in thread["items"]["data"]] == [
        "user_message",
        "workflow",
        "assistant_message",
    ]
    assert "never for the client" not in json.dumps(thread)


async def test_get_by_id_of_unknown_thread_is_not_found(
    server: AssistantServer, alice: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await call(
            server, {"type": "threads.get_by_id", "params": {"thread_id": "thr_missing"}}, alice
        )


async def test_list_returns_the_users_threads_newest_first(
    server: AssistantServer, alice: RequestContext, bob: RequestContext
) -> None:
    first = await new_thread(server, alice, "first")
    second = await new_thread(server, alice, "second")
    await new_thread(server, bob, "bob's")

    page = await call(server, {"type": "threads.list", "params": {"limit": 10}}, alice)

    assert [thread["id"] for thread in page["data"]] == [second, first]


async def test_list_with_a_bad_cursor_is_not_found(
    server: AssistantServer, alice: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await call(server, {"type": "threads.list", "params": {"after": "thr_missing"}}, alice)


async def test_update_renames_the_thread(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)

    thread = await call(
        server,
        {"type": "threads.update", "params": {"thread_id": thread_id, "title": "Renamed"}},
        alice,
    )

    assert thread["title"] == "Renamed"
    assert (await store.load_thread(thread_id, alice)).title == "Renamed"


async def test_update_of_unknown_thread_is_not_found(
    server: AssistantServer, alice: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await call(
            server,
            {"type": "threads.update", "params": {"thread_id": "thr_x", "title": "x"}},
            alice,
        )


async def test_delete_removes_the_thread(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)

    assert (
        await call(server, {"type": "threads.delete", "params": {"thread_id": thread_id}}, alice)
        == {}
    )

    with pytest.raises(NotFoundError):
        await store.load_thread(thread_id, alice)


async def test_delete_of_unknown_thread_is_not_found(
    server: AssistantServer, alice: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await call(
            server, {"type": "threads.delete", "params": {"thread_id": "thr_missing"}}, alice
        )


async def test_items_list_pages_with_after(server: AssistantServer, alice: RequestContext) -> None:
    thread_id = await new_thread(server, alice)
    await stream(server, add_message(thread_id, "second question"), alice)
    params: dict[str, Any] = {"thread_id": thread_id, "limit": 3, "order": "asc"}

    first = await call(server, {"type": "items.list", "params": params}, alice)
    rest = await call(
        server, {"type": "items.list", "params": {**params, "after": first["after"]}}, alice
    )

    assert first["has_more"] is True and len(first["data"]) == 3
    assert rest["has_more"] is False and len(rest["data"]) == 2
    assert [item["type"] for item in rest["data"]] == ["user_message", "assistant_message"]


async def test_items_list_with_an_id_containing_the_separator_is_refused(
    server: AssistantServer, alice: RequestContext
) -> None:
    with pytest.raises(InvalidIdError):
        await call(server, {"type": "items.list", "params": {"thread_id": "thr#1"}}, alice)


async def test_feedback_is_persisted_on_the_items(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    answer = (await all_items(store, thread_id, alice))[-1]

    result = await call(
        server,
        {
            "type": "items.feedback",
            "params": {"thread_id": thread_id, "item_ids": [answer.id], "kind": "positive"},
        },
        alice,
    )

    assert result == {}
    feedback = load_feedback(store, thread_id, answer.id, alice)
    assert feedback is not None and feedback.kind == "positive"


async def test_feedback_on_unknown_item_is_not_found(
    server: AssistantServer, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    with pytest.raises(NotFoundError):
        await call(
            server,
            {
                "type": "items.feedback",
                "params": {"thread_id": thread_id, "item_ids": ["msg_x"], "kind": "negative"},
            },
            alice,
        )


async def test_attachments_without_an_upload_store_are_refused_clearly(
    server: AssistantServer, alice: RequestContext
) -> None:
    create = {
        "type": "attachments.create",
        "params": {"name": "a.txt", "size": 3, "mime_type": "text/plain"},
    }
    with pytest.raises(UploadsDisabledError):
        await call(server, create, alice)
    with pytest.raises(UploadsDisabledError):
        await call(
            server, {"type": "attachments.delete", "params": {"attachment_id": "atc_1"}}, alice
        )


def transcribe_request() -> dict[str, Any]:
    audio = base64.b64encode(b"RIFF....WAVE").decode()
    return {
        "type": "input.transcribe",
        "params": {"audio_base64": audio, "mime_type": "audio/webm"},
    }


async def test_transcribe_uses_the_providers_transcription(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    heard: list[bytes] = []

    async def transcribe(audio: Any) -> str:
        heard.append(audio.data)
        return "buy milk"

    offline = offline_models()
    server = AssistantServer(store, tasks, Models("openai", offline.chat, None, transcribe))

    assert await call(server, transcribe_request(), alice) == {"text": "buy milk"}
    assert heard == [b"RIFF....WAVE"]


async def test_transcribe_without_a_transcription_model_is_a_clear_error(
    server: AssistantServer, alice: RequestContext
) -> None:
    with pytest.raises(TranscriptionUnavailableError, match="not available with the offline"):
        await call(server, transcribe_request(), alice)


# -- the other streaming requests ---------------------------------------------------------


async def test_retry_after_item_answers_again(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    user, _handoff, first_answer = await all_items(store, thread_id, alice)

    events = await stream(
        server,
        {
            "type": "threads.retry_after_item",
            "params": {"thread_id": thread_id, "item_id": user.id},
        },
        alice,
    )

    assert assistant_text(events)
    items = await all_items(store, thread_id, alice)
    # The retry continues with the specialist that answered: no handoff this time.
    assert [item.type for item in items] == ["user_message", "assistant_message"]
    assert items[1].id != first_answer.id


async def test_retry_after_a_non_user_item_is_refused(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    answer = (await all_items(store, thread_id, alice))[-1]

    with pytest.raises(InvalidRequestError, match="Only a user message"):
        await stream(
            server,
            {
                "type": "threads.retry_after_item",
                "params": {"thread_id": thread_id, "item_id": answer.id},
            },
            alice,
        )


async def test_client_tool_output_without_a_pending_call_is_refused(
    server: AssistantServer, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)

    with pytest.raises(InvalidRequestError, match="client tool call"):
        await stream(
            server,
            {
                "type": "threads.add_client_tool_output",
                "params": {"thread_id": thread_id, "result": {"ok": True}},
            },
            alice,
        )


async def test_structured_input_answer_is_recorded_and_answered(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    question = StructuredInputItem(
        id="si_1",
        thread_id=thread_id,
        created_at=datetime.now(UTC),
        inputs=[StructuredInputFreeform(id="q1", question="Which day?")],
    )
    await store.add_thread_item(thread_id, question, alice)

    events = await stream(
        server,
        {
            "type": "threads.add_structured_input",
            "params": {
                "thread_id": thread_id,
                "item_id": "si_1",
                "input": {"answers": {"q1": {"values": ["Friday"]}}},
            },
        },
        alice,
    )

    assert of_type(events, "thread.item.replaced")[0]["item"]["status"] == "answered"
    saved = await store.load_item(thread_id, "si_1", alice)
    assert isinstance(saved, StructuredInputItem) and saved.inputs[0].answer is not None
    assert saved.inputs[0].answer.values == ["Friday"]
    assert assistant_text(events)


async def test_structured_input_for_a_plain_message_is_refused(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    user = (await all_items(store, thread_id, alice))[0]

    with pytest.raises(InvalidRequestError, match="not a question"):
        await stream(
            server,
            {
                "type": "threads.add_structured_input",
                "params": {"thread_id": thread_id, "item_id": user.id, "input": {}},
            },
            alice,
        )


async def test_unknown_custom_action_is_an_error_event(
    server: AssistantServer, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)

    events = await stream(
        server,
        {
            "type": "threads.custom_action",
            "params": {"thread_id": thread_id, "action": {"type": "rockets.launch"}},
        },
        alice,
    )

    assert of_type(events, "error")[0]["message"] == "Unknown action 'rockets.launch'."


async def test_unknown_sync_action_is_refused(
    server: AssistantServer, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)

    with pytest.raises(InvalidRequestError, match="Unknown action"):
        await call(
            server,
            {
                "type": "threads.sync_custom_action",
                "params": {"thread_id": thread_id, "action": {"type": "x.y"}},
            },
            alice,
        )


async def test_user_message_items_keep_naive_sdk_timestamps_in_order(
    server: AssistantServer, store: DynamoDBStore, alice: RequestContext
) -> None:
    thread_id = await new_thread(server, alice)
    late = UserMessageItem(
        id="msg_late",
        thread_id=thread_id,
        created_at=datetime.now(),
        content=[UserMessageTextContent(text="later")],
        inference_options=InferenceOptions(),
    )
    await store.add_thread_item(thread_id, late, alice)

    assert (await all_items(store, thread_id, alice))[-1].id == "msg_late"
