"""Specialists and visible tool work through the HTTP app with the offline model: triage hands
each conversation to the specialist for it, the handoff and every tool call are shown while
they run and stored with the thread, and the next turn continues with the same specialist."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from devtools.tokens import mint_token
from handlers.main import build_app
from store import DynamoDBStore, RequestContext, TableRecord
from tests.agent.conftest import assistant_text
from tests.handlers.conftest import app_client, app_settings, fake_model_settings
from tests.support.chatkit_http import post_turn, sse_events, thread_items, turn_request
from tests.support.fake_openai import FakeOpenAI, Reply

SECRET = "s" * 40
TOKEN = {"authorization": f"Bearer {mint_token(SECRET, 'alice')}"}


@pytest.fixture
async def client(table: type[TableRecord], s3: Any) -> Any:
    transport = httpx.ASGITransport(app=build_app(app_settings(auth_dev_secret=SECRET)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def send(
    client: httpx.AsyncClient, text: str, thread_id: str | None = None, **input: Any
) -> list[dict[str, Any]]:
    events = await post_turn(client, TOKEN, text, thread_id, **input)
    assert [e for e in events if e["type"] == "error"] == []
    return events


async def items_of(client: httpx.AsyncClient, thread_id: str) -> list[dict[str, Any]]:
    return await thread_items(client, TOKEN, thread_id)


def workflow_titles(events: list[dict[str, Any]]) -> list[str]:
    """The workflow tasks as each one was last shown (added, then updated in place)."""
    tasks: list[str] = []
    for event in events:
        item = event.get("item", {})
        if event["type"] == "thread.item.added" and item.get("type") == "workflow":
            tasks = [task.get("title") for task in item["workflow"]["tasks"]]
        elif event["type"] == "thread.item.updated" and "task" in event["update"]:
            index, title = event["update"]["task_index"], event["update"]["task"].get("title")
            if event["update"]["type"] == "workflow.task.added":
                tasks.insert(index, title)
            else:
                tasks[index] = title
    return tasks


def shown_while_running(events: list[dict[str, Any]]) -> list[str]:
    """Tasks that appeared as loading (the progress line of a running tool call)."""
    shown = []
    for event in events:
        update = event.get("update", {})
        item = event.get("item", {})
        for task in [update.get("task"), *item.get("workflow", {}).get("tasks", [])]:
            if task and task.get("status_indicator") == "loading":
                shown.append(task["title"])
    return shown


def stored_workflows(items: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [task["title"] for task in item["workflow"]["tasks"]]
        for item in items
        if item["type"] == "workflow"
    ]


async def test_a_task_request_is_handed_to_the_task_assistant_and_the_handoff_is_stored(
    client: httpx.AsyncClient,
) -> None:
    events = await send(client, "add a task to buy milk")
    thread_id = events[0]["thread"]["id"]

    assert workflow_titles(events) == ["Task assistant is answering", "Added task #1 “buy milk”"]
    assert assistant_text(events) == "Added task #1: buy milk."
    # A reload shows the same: the workflow is an item of the thread.
    items = await items_of(client, thread_id)
    assert [item["type"] for item in items] == ["user_message", "workflow", "assistant_message"]
    assert stored_workflows(items) == [["Task assistant is answering", "Added task #1 “buy milk”"]]


async def test_a_tool_call_shows_its_progress_while_it_runs_then_what_it_did(
    client: httpx.AsyncClient,
) -> None:
    events = await send(client, "add a task to buy milk")

    assert shown_while_running(events) == ["Adding “buy milk”…"]
    finished = [
        e["update"]["task"]
        for e in events
        if e["type"] == "thread.item.updated" and e["update"]["type"] == "workflow.task.updated"
    ]
    assert [(t["title"], t["status_indicator"]) for t in finished] == [
        ("Added task #1 “buy milk”", "complete")
    ]


async def test_the_next_turn_continues_with_the_specialist_that_answered_last(
    client: httpx.AsyncClient,
) -> None:
    thread_id = (await send(client, "add a task to buy milk"))[0]["thread"]["id"]

    events = await send(client, "complete task 1", thread_id)

    # No handoff this time: the task assistant answers at once.
    assert workflow_titles(events) == ["Completed task #1 “buy milk”"]
    assert assistant_text(events).startswith("Completed task #1: buy milk (done ")


async def test_a_request_for_another_specialist_goes_back_through_triage(
    client: httpx.AsyncClient,
) -> None:
    thread_id = (await send(client, "add a task to buy milk"))[0]["thread"]["id"]

    events = await send(client, "tell me a joke", thread_id)

    assert workflow_titles(events) == ["General assistant is answering"]
    assert "offline model" in assistant_text(events)
    third = await send(client, "show my tasks", thread_id)
    assert workflow_titles(third)[0] == "Task assistant is answering"


async def test_the_task_list_is_shown_after_its_progress_line(client: httpx.AsyncClient) -> None:
    thread_id = (await send(client, "add a task to buy milk"))[0]["thread"]["id"]

    events = await send(client, "show my tasks", thread_id)

    done = [e["item"]["type"] for e in events if e["type"] == "thread.item.done"]
    assert done == ["user_message", "workflow", "widget", "assistant_message"]
    assert workflow_titles(events) == ["Read your task list: 1 task, 0 done"]


async def test_a_question_about_files_is_answered_by_the_files_assistant_from_the_thread(
    client: httpx.AsyncClient, store: DynamoDBStore, s3: Any
) -> None:
    declared = {"name": "notes.txt", "size": 11, "mime_type": "text/plain"}
    created = await client.post(
        "/chatkit",
        content=json.dumps({"type": "attachments.create", "params": declared}),
        headers=TOKEN,
    )
    attachment = created.json()
    record = await store.load_attachment(attachment["id"], RequestContext(user_id="alice"))
    key = (record.metadata or {})["s3_key"]
    s3.put_object(Bucket=app_settings().bucket_name, Key=key, Body=b"hello world")
    first = await send(client, "keep this", attachments=[attachment["id"]])
    thread_id = first[0]["thread"]["id"]

    events = await send(client, "what was in the file I sent?", thread_id)

    assert workflow_titles(first) == ["Files assistant is answering", "Found 1 file"]
    assert workflow_titles(events) == ["Found 1 file"]  # the same specialist continues
    assert 'notes.txt (text/plain, 11 bytes) starting "hello world"' in assistant_text(events)


async def test_a_failed_turn_keeps_the_specialist_its_handoff_chose(
    table: type[TableRecord], s3: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.replies = [
        Reply(tool_call=("transfer_to_tasks", "{}")),
        Reply(status=500),  # the task assistant's model fails
        Reply(chunks=["Here are your tasks."]),
    ]
    body = turn_request("show my tasks")

    async with app_client(fake_model_settings(fake_openai.base_url, auth_dev_secret=SECRET)) as c:
        failed = await c.post("/chatkit", content=json.dumps(body), headers=TOKEN)
        events = sse_events(failed.text)
        assert [e for e in events if e["type"] == "error"]
        answer = await send(c, "show my tasks again", events[0]["thread"]["id"])

    # No handoff this time: the task assistant answers at once, with its own instructions.
    assert workflow_titles(answer) == []
    assert assistant_text(answer) == "Here are your tasks."
    answers = [r for r in fake_openai.requests if "Write a short title" not in str(r)]
    assert answers[-1]["messages"][0]["content"].startswith("You are the Task assistant")
