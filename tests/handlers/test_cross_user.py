"""User B, holding every id of user A's threads, items, attachments and tasks, tries every
request type that takes an id, on the ChatKit endpoint and on the REST API: nothing of A's is
read, changed or deleted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import boto3
import httpx
import pytest

from devtools.tokens import mint_token
from handlers.paging import encode_cursor
from store import TableRecord
from tests.conftest import BUCKET, TABLE
from tests.handlers.conftest import app_client, app_settings
from tests.support.chatkit_http import post_turn
from tests.support.inputs import user_input

SECRET = "cross-user-test-secret-0123456789abcdef"
ALICE = {"authorization": f"Bearer {mint_token(SECRET, 'alice')}"}
BOB = {"authorization": f"Bearer {mint_token(SECRET, 'bob')}"}


@pytest.fixture
async def client(table: type[TableRecord], s3: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app_settings(auth_dev_secret=SECRET)) as client:
        yield client


async def send(
    client: httpx.AsyncClient, who: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    return await client.post("/chatkit", content=json.dumps(body), headers=who)


def snapshot(s3: Any) -> tuple[list[Any], list[str]]:
    rows = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=TABLE)["Items"]
    alices = sorted(
        (row for row in rows if row["pk"]["S"].startswith("U#alice")),
        key=lambda row: (row["pk"]["S"], row["sk"]["S"]),
    )
    listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return alices, sorted(entry["Key"] for entry in listing)


async def create_attachment(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """Alice's new attachment of 5 bytes of text (its upload not done yet)."""
    params = {"name": name, "size": 5, "mime_type": "text/plain"}
    response = await send(client, ALICE, {"type": "attachments.create", "params": params})
    attachment: dict[str, Any] = response.json()
    return attachment


@pytest.fixture
async def alices_ids(client: httpx.AsyncClient, s3: Any) -> dict[str, str]:
    """Alice's thread with messages, a task-list widget and a sent attachment."""
    created = await post_turn(client, ALICE, "add a task to buy milk")
    thread_id = created[0]["thread"]["id"]
    listed = await post_turn(client, ALICE, "show my tasks", thread_id)
    widget_id = done_item_id(listed, "widget")
    attachment = await create_attachment(client, "notes.txt")
    s3.put_object(
        Bucket=BUCKET,
        Key=f"uploads/alice/{attachment['id']}/notes.txt",
        Body=b"hello",
        Tagging="state=pending",
    )
    sent = await post_turn(client, ALICE, "read this", thread_id, attachments=[attachment["id"]])
    message_id = done_item_id(sent, "user_message")
    answer_id = done_item_id(sent, "assistant_message")
    unsent = await create_attachment(client, "draft.txt")
    return {
        "thread": thread_id,
        "widget": widget_id,
        "message": message_id,
        "answer": answer_id,
        "attachment": attachment["id"],
        "unsent_attachment": unsent["id"],
    }


def bobs_attempts(ids: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    thread = ids["thread"]
    action = {"type": "tasks.complete", "payload": {"number": 1}}
    return [
        ("get_by_id", {"type": "threads.get_by_id", "params": {"thread_id": thread}}),
        ("update", {"type": "threads.update", "params": {"thread_id": thread, "title": "pwned"}}),
        ("delete", {"type": "threads.delete", "params": {"thread_id": thread}}),
        (
            "add_user_message",
            {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread, "input": user_input("hi")},
            },
        ),
        (
            "retry_after_item",
            {
                "type": "threads.retry_after_item",
                "params": {"thread_id": thread, "item_id": ids["message"]},
            },
        ),
        (
            "custom_action",
            {
                "type": "threads.custom_action",
                "params": {"thread_id": thread, "item_id": ids["widget"], "action": action},
            },
        ),
        (
            "sync_custom_action",
            {
                "type": "threads.sync_custom_action",
                "params": {"thread_id": thread, "item_id": ids["widget"], "action": action},
            },
        ),
        (
            "add_structured_input",
            {
                "type": "threads.add_structured_input",
                "params": {"thread_id": thread, "item_id": ids["message"], "input": {}},
            },
        ),
        (
            "add_client_tool_output",
            {
                "type": "threads.add_client_tool_output",
                "params": {"thread_id": thread, "result": {}},
            },
        ),
        (
            "items.list after",
            {"type": "items.list", "params": {"thread_id": thread, "after": ids["message"]}},
        ),
        (
            "feedback",
            {
                "type": "items.feedback",
                "params": {"thread_id": thread, "item_ids": [ids["answer"]], "kind": "negative"},
            },
        ),
        ("threads.list after", {"type": "threads.list", "params": {"after": thread}}),
        (
            "attachments.delete sent",
            {"type": "attachments.delete", "params": {"attachment_id": ids["attachment"]}},
        ),
        (
            "attachments.delete unsent",
            {"type": "attachments.delete", "params": {"attachment_id": ids["unsent_attachment"]}},
        ),
        (
            "message with alice's attachment",
            {
                "type": "threads.create",
                "params": {"input": user_input("mine now", [ids["unsent_attachment"]])},
            },
        ),
    ]


async def test_bob_with_alices_ids_gets_not_found_everywhere(
    client: httpx.AsyncClient, alices_ids: dict[str, str], s3: Any
) -> None:
    before = snapshot(s3)

    for name, body in bobs_attempts(alices_ids):
        response = await send(client, BOB, body)
        assert response.status_code == 404, (name, response.status_code, response.text[:200])

    assert snapshot(s3) == before


async def test_bob_sees_nothing_of_alices_in_lists(
    client: httpx.AsyncClient, alices_ids: dict[str, str]
) -> None:
    items = (
        await send(
            client, BOB, {"type": "items.list", "params": {"thread_id": alices_ids["thread"]}}
        )
    ).json()
    threads = (await send(client, BOB, {"type": "threads.list", "params": {}})).json()

    assert items["data"] == [] and threads["data"] == []


async def test_bobs_task_commands_never_touch_alices_tasks(
    client: httpx.AsyncClient, alices_ids: dict[str, str], s3: Any
) -> None:
    before = snapshot(s3)

    completed = await post_turn(client, BOB, "complete task 1")
    listed = await post_turn(client, BOB, "show my tasks")

    assert "does not exist" in json.dumps(completed) or "no task" in json.dumps(completed).lower()
    widget = next(
        e["item"]
        for e in listed
        if e["type"] == "thread.item.done" and e["item"]["type"] == "widget"
    )
    assert "buy milk" not in json.dumps(widget)
    assert snapshot(s3) == before


def done_item_id(events: list[dict[str, Any]], item_type: str) -> str:
    """The id of the first item of `item_type` the stream finished."""
    return str(
        next(
            event["item"]["id"]
            for event in events
            if event["type"] == "thread.item.done" and event["item"]["type"] == item_type
        )
    )


def bobs_rest_attempts(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    conversation = f"/api/conversations/{ids['thread']}"
    return [
        ("GET", conversation, {}),
        ("GET", conversation, {"params": {"cursor": encode_cursor(ids["message"])}}),
        ("PATCH", conversation, {"json": {"title": "pwned"}}),
        ("DELETE", conversation, {}),
        ("GET", f"{conversation}/export", {}),
        ("GET", f"{conversation}/export", {"params": {"format": "markdown"}}),
    ]


async def test_bob_with_alices_ids_gets_not_found_on_the_rest_api(
    client: httpx.AsyncClient, alices_ids: dict[str, str], s3: Any
) -> None:
    before = snapshot(s3)

    for method, path, extra in bobs_rest_attempts(alices_ids):
        response = await client.request(method, path, headers=BOB, **extra)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert "buy milk" not in response.text and "content-disposition" not in response.headers

    assert snapshot(s3) == before
    mine = await client.get(f"/api/conversations/{alices_ids['thread']}", headers=ALICE)
    assert mine.status_code == 200 and "buy milk" in mine.text


async def test_bob_sees_nothing_of_alices_in_rest_lists(
    client: httpx.AsyncClient, alices_ids: dict[str, str]
) -> None:
    listed = await client.get("/api/conversations", headers=BOB)
    from_alices_cursor = await client.get(
        "/api/conversations", params={"cursor": encode_cursor(alices_ids["thread"])}, headers=BOB
    )

    assert listed.json() == {"data": [], "has_more": False, "next_cursor": None}
    assert from_alices_cursor.status_code == 400  # not a cursor into bob's list
    assert alices_ids["thread"] not in from_alices_cursor.text
