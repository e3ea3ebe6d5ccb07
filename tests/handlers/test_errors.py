"""Errors are mapped once: a client's mistake is a 4xx saying what to fix; anything of ours is a
generic 500 with the request id, the details in the logs only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import boto3
import httpx
import pytest

from devtools.tokens import mint_token
from store import TableRecord
from tests.conftest import TABLE
from tests.handlers.conftest import app_client, app_settings
from tests.support.logs import logged_text

SECRET = "error-mapping-test-secret-0123456789"
AUTH = {"authorization": f"Bearer {mint_token(SECRET, 'alice')}"}


@pytest.fixture
async def client(table: type[TableRecord], s3: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app_settings(auth_dev_secret=SECRET)) as client:
        yield client


async def new_thread(client: httpx.AsyncClient) -> str:
    user_input = {"content": [{"type": "input_text", "text": "hi"}], "attachments": []}
    body = {"type": "threads.create", "params": {"input": {**user_input, "inference_options": {}}}}
    response = await client.post("/chatkit", json=body, headers=AUTH)
    return str(json.loads(response.text.splitlines()[0][len("data: ") :])["thread"]["id"])


async def test_an_internal_error_is_a_generic_500_with_the_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    thread_id = await new_thread(client)
    # A row the store cannot read: its error names the row's keys, which no client may see.
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName=TABLE,
        Key={"pk": {"S": "U#alice"}, "sk": {"S": f"T#{thread_id}"}},
        UpdateExpression="SET codec = :bad",
        ExpressionAttributeValues={":bad": {"S": "unknown-codec"}},
    )

    response = await client.post(
        "/chatkit",
        json={"type": "threads.get_by_id", "params": {"thread_id": thread_id}},
        headers={**AUTH, "x-request-id": "req-123"},
    )

    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal_error",
        "message": "Something went wrong on the server.",
        "request_id": "req-123",
    }
    assert response.headers["x-request-id"] == "req-123"
    logs = logged_text(caplog)
    assert "req-123" in logs and "unknown-codec" in logs  # the details, for the operator


async def test_an_odd_request_id_header_is_not_echoed(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/chatkit",
        json={"type": "threads.get_by_id", "params": {"thread_id": "thr_1"}},
        headers={**AUTH, "x-request-id": "<script>" + "x" * 300},
    )

    assert response.status_code == 404
    assert "script" not in response.text


async def test_an_unknown_request_type_is_measured_as_one_value(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    for n in range(3):
        await client.post("/chatkit", json={"type": f"made.up.{n}", "params": {}}, headers=AUTH)

    metrics = capfd.readouterr().out
    assert metrics.count('"RequestType":"unknown"') == 3
    assert "made.up" not in metrics
