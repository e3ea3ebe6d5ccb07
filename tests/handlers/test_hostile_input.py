"""Hostile and malformed requests through the real HTTP app: every one gets a 4xx with a JSON
body (or an `error` event), never a 5xx or a stack trace, and the table is left unchanged."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import boto3
import httpx
import jwt
import pytest

from devtools.tokens import mint_token
from store import TableRecord
from tests.conftest import TABLE
from tests.handlers.conftest import app_client, app_settings

SECRET = "hostile-input-test-secret-0123456789"


@pytest.fixture
async def client(table: type[TableRecord], s3: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(
        app_settings(auth_dev_secret=SECRET, max_request_bytes=100_000, upload_max_bytes=5_000_000)
    ) as client:
        yield client


def table_rows() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return sorted(
        client.scan(TableName=TABLE)["Items"], key=lambda row: (row["pk"]["S"], row["sk"]["S"])
    )


AUTH = {"authorization": f"Bearer {mint_token(SECRET, 'alice')}"}


def user_input(text: str = "hi", attachments: list[Any] | None = None) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments or [],
        "inference_options": {},
    }


def req(request_type: str, /, **params: Any) -> dict[str, Any]:
    return {"type": request_type, "params": params}


def nested(depth: int) -> str:
    return (
        '{"type":"threads.create","params":{"input":{"content":' + "[" * depth + "]" * depth + "}}}"
    )


# (name, body, headers override); bodies are JSON-encoded unless already bytes/str.
HOSTILE: list[tuple[str, Any, dict[str, str] | None]] = [
    ("not json", "hello there", None),
    ("empty body", b"", None),
    ("invalid utf-8", b"\xff\xfe\xfd", None),
    ("json array", [], None),
    ("json number", 42, None),
    ("type is a number", {"type": 5, "params": {}}, None),
    ("unknown request type", req("threads.hack"), None),
    ("missing params", {"type": "threads.list"}, None),
    ("params is a string", {"type": "threads.list", "params": "x"}, None),
    ("limit is a word", req("threads.list", limit="ten"), None),
    ("order is sideways", req("threads.list", order="sideways"), None),
    ("negative limit", req("threads.list", limit=-5), None),
    ("cursor with separator", req("threads.list", after="thr#1"), None),
    ("unknown cursor", req("threads.list", after="thr_nope"), None),
    ("thread id is a number", req("threads.get_by_id", thread_id=42), None),
    ("thread id is null", req("threads.get_by_id", thread_id=None), None),
    ("thread id with separator", req("threads.get_by_id", thread_id="thr#x"), None),
    ("empty thread id", req("threads.get_by_id", thread_id=""), None),
    ("very long thread id", req("threads.get_by_id", thread_id="t" * 300), None),
    ("path-like thread id", req("threads.get_by_id", thread_id="../../etc/passwd"), None),
    (
        "items of a missing thread cursor",
        req("items.list", thread_id="thr_1", after="msg_nope"),
        None,
    ),
    ("items with separator", req("items.list", thread_id="U#bob#T#thr_1"), None),
    (
        "feedback of unknown kind",
        req("items.feedback", thread_id="thr_1", item_ids=["m"], kind="awesome"),
        None,
    ),
    (
        "feedback ids not a list",
        req("items.feedback", thread_id="thr_1", item_ids="m", kind="positive"),
        None,
    ),
    (
        "feedback id with separator",
        req("items.feedback", thread_id="thr_1", item_ids=["a#b"], kind="positive"),
        None,
    ),
    (
        "feedback on missing item",
        req("items.feedback", thread_id="thr_1", item_ids=["msg_x"], kind="positive"),
        None,
    ),
    ("title is not text", req("threads.update", thread_id="thr_1", title=["x"]), None),
    ("title missing", req("threads.update", thread_id="thr_1"), None),
    ("rename missing thread", req("threads.update", thread_id="thr_nope", title="x"), None),
    ("delete with separator", req("threads.delete", thread_id="a#b"), None),
    ("delete missing thread", req("threads.delete", thread_id="thr_nope"), None),
    (
        "content is not a list",
        req("threads.create", input={"content": "x", "attachments": [], "inference_options": {}}),
        None,
    ),
    (
        "unknown content part",
        req("threads.create", input={**user_input(), "content": [{"type": "video"}]}),
        None,
    ),
    (
        "attachment id with separator",
        req("threads.create", input=user_input(attachments=["atc#1"])),
        None,
    ),
    (
        "attachment that does not exist",
        req("threads.create", input=user_input(attachments=["atc_nope"])),
        None,
    ),
    (
        "message to missing thread",
        req("threads.add_user_message", thread_id="thr_nope", input=user_input()),
        None,
    ),
    (
        "message with separator",
        req("threads.add_user_message", thread_id="x#y", input=user_input()),
        None,
    ),
    (
        "retry after missing item",
        req("threads.retry_after_item", thread_id="thr_nope", item_id="msg_1"),
        None,
    ),
    (
        "action on missing item",
        req(
            "threads.custom_action",
            thread_id="thr_nope",
            item_id="w",
            action={"type": "tasks.delete"},
        ),
        None,
    ),
    ("action without type", req("threads.custom_action", thread_id="thr_1", action={}), None),
    (
        "structured input for missing item",
        req("threads.add_structured_input", thread_id="thr_1", item_id="si", input={}),
        None,
    ),
    (
        "tool output with no pending call",
        req("threads.add_client_tool_output", thread_id="thr_nope", result=1),
        None,
    ),
    (
        "huge declared upload",
        req("attachments.create", name="big.pdf", size=10**12, mime_type="application/pdf"),
        None,
    ),
    (
        "negative upload size",
        req("attachments.create", name="a.pdf", size=-1, mime_type="application/pdf"),
        None,
    ),
    (
        "upload size is a word",
        req("attachments.create", name="a.pdf", size="big", mime_type="application/pdf"),
        None,
    ),
    (
        "disallowed upload type",
        req("attachments.create", name="run.sh", size=10, mime_type="application/x-sh"),
        None,
    ),
    ("html upload", req("attachments.create", name="x.html", size=10, mime_type="text/html"), None),
    (
        "path-like file name",
        req("attachments.create", name="../../etc/passwd", size=10, mime_type="text/plain"),
        None,
    ),
    (
        "windows path file name",
        req("attachments.create", name="..\\..\\boot.ini", size=10, mime_type="text/plain"),
        None,
    ),
    (
        "hidden file name",
        req("attachments.create", name=".env", size=10, mime_type="text/plain"),
        None,
    ),
    ("delete attachment with separator", req("attachments.delete", attachment_id="atc#1"), None),
    ("delete missing attachment", req("attachments.delete", attachment_id="atc_nope"), None),
    (
        "audio not base64",
        req("input.transcribe", audio_base64="%%%not base64%%%", mime_type="audio/webm"),
        None,
    ),
    ("audio without type", req("input.transcribe", audio_base64="AAAA"), None),
    (
        "dictation without a provider",
        req("input.transcribe", audio_base64="AAAA", mime_type="audio/webm"),
        None,
    ),
    (
        "sync action of unknown type",
        req("threads.sync_custom_action", thread_id="thr_nope", action={"type": "x"}),
        None,
    ),
    ("deeply nested json", nested(100_000), None),
    ("oversized body", "x" * 200_000, None),
    ("no token", req("threads.list"), {}),
    (
        "forged token",
        req("threads.list"),
        {
            "authorization": "Bearer "
            + jwt.encode(
                {"sub": "alice", "exp": int(time.time()) + 60},
                "wrong-secret-wrong-secret-wrong!!",
                "HS256",
            )
        },
    ),
    (
        "expired token",
        req("threads.list"),
        {
            "authorization": "Bearer "
            + jwt.encode({"sub": "alice", "exp": int(time.time()) - 60}, SECRET, "HS256")
        },
    ),
    (
        "unsigned token",
        req("threads.list"),
        {
            "authorization": "Bearer eyJhbGciOiJub25lIn0."
            "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0."
        },
    ),
    ("basic auth", req("threads.list"), {"authorization": "Basic YWxpY2U6c2VjcmV0"}),
]


def test_the_suite_is_at_least_forty_requests() -> None:
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize(("name", "body", "headers"), HOSTILE, ids=[case[0] for case in HOSTILE])
async def test_hostile_request_gets_a_clear_4xx_and_changes_nothing(
    client: httpx.AsyncClient, name: str, body: Any, headers: dict[str, str] | None
) -> None:
    # Something of alice's exists, so "changes nothing" is a real check.
    await client.post(
        "/chatkit", json=req("threads.create", input=user_input("hello")), headers=AUTH
    )
    before = table_rows()
    content = body if isinstance(body, bytes | str) else json.dumps(body)

    response = await client.post(
        "/chatkit", content=content, headers=AUTH if headers is None else headers
    )

    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert table_rows() == before
