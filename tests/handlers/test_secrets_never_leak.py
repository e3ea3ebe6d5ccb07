"""Secrets come from SSM on first use, and never appear in a log line, an error event or a
response; message text never appears in the logs either."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import httpx
import pytest

from devtools.tokens import mint_token
from handlers.main import build_app
from settings import Settings
from store import TableRecord
from tests.conftest import BUCKET, TABLE
from tests.support.chatkit_http import turn_request
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.logs import logged_text

AUTH_SECRET = "AUTH-SECRET-never-to-be-seen-0123456789"
API_KEY = "sk-API-KEY-never-to-be-seen-9876543210"
MESSAGE = "MY-PRIVATE-MESSAGE-about-my-medical-results"
TOKEN = {"authorization": f"Bearer {mint_token(AUTH_SECRET, 'alice')}"}


def settings(fake: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "table_name": TABLE,
        "bucket_name": BUCKET,
        "region": "us-east-1",
        "provider": "openai-compatible",
        "base_url": fake.base_url,
        "api_key_parameter": "/chatkit/model-key",
        "auth_secret_parameter": "/chatkit/auth-secret",
        "model_max_retries": 0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def secrets(table: type[TableRecord], s3: Any) -> None:
    """The auth secret and the model key as SecureStrings in SSM; the table and bucket made."""
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/chatkit/auth-secret", Value=AUTH_SECRET, Type="SecureString")
    ssm.put_parameter(Name="/chatkit/model-key", Value=API_KEY, Type="SecureString")


async def test_a_whole_session_leaks_no_secret_and_logs_no_message_text(
    secrets: None,
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    app = build_app(settings(fake_openai))
    fake_openai.replies = [Reply(["Fine, ", "thanks."]), Reply(status=401), Reply(status=500)]
    responses: list[str] = []

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:

        async def send(body: dict[str, Any], headers: dict[str, str] = TOKEN) -> str:
            response = await client.post("/chatkit", content=json.dumps(body), headers=headers)
            responses.append(response.text)
            return response.text

        created = await send(turn_request(MESSAGE))
        thread_id = json.loads(created.splitlines()[0][6:])["thread"]["id"]
        await send(turn_request(MESSAGE, thread_id))
        await send(turn_request(MESSAGE, thread_id))
        await send({"type": "threads.get_by_id", "params": {"thread_id": thread_id}})
        await send({"type": "threads.list", "params": {}})
        await send(
            {"type": "threads.list", "params": {}}, {"authorization": "Bearer forged.token.here"}
        )
        await send({"type": "threads.get_by_id", "params": {"thread_id": "thr#bad"}})

    assert fake_openai.api_keys[0] == API_KEY  # the key did come from SSM
    assert any('"type":"error"' in text for text in responses)  # the failures were reported
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "chatkit request" in logs  # the session was logged
    for secret in (AUTH_SECRET, API_KEY):
        assert secret not in logs
        assert all(secret not in text for text in responses)
    assert MESSAGE not in logs


async def test_an_unreadable_model_key_parameter_is_named_in_the_logs_not_the_error(
    secrets: None,
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    app = build_app(settings(fake_openai, api_key_parameter="/chatkit/missing-key"))
    body = turn_request("hi")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post("/chatkit", content=json.dumps(body), headers=TOKEN)

    errors = [
        json.loads(line[6:]) for line in response.text.splitlines() if '"type":"error"' in line
    ]
    assert errors and "misconfigured" in errors[0]["message"]
    assert errors[0]["allow_retry"] is False
    assert "/chatkit/missing-key" not in response.text and "Traceback" not in response.text
    captured = capfd.readouterr()
    assert "/chatkit/missing-key" in captured.out + captured.err + logged_text(caplog)
