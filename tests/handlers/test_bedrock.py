"""The bedrock provider through the HTTP app, against a fake Bedrock runtime on 127.0.0.1 that
speaks the real event-stream wire format (tests/support/fake_bedrock.py): text streamed delta
by delta, task tools run, throttling and a cut stream become error events with nothing lost,
requests signed with the function's AWS credentials (no API key)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.eventstream import EventStreamBuffer

from devtools.tokens import mint_token
from handlers.main import build_app
from settings import Settings, SettingsError
from store import TableRecord
from tests.handlers.conftest import app_settings
from tests.support.chatkit_http import post_turn, thread_items
from tests.support.fake_bedrock import (
    FakeBedrock,
    Reply,
    stream_frames,
)

SRC = Path(__file__).resolve().parents[2] / "src"
SECRET = "x" * 40
MODEL_ID = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
TOKEN = {"authorization": f"Bearer {mint_token(SECRET, 'alice')}"}


def bedrock_settings() -> Settings:
    return app_settings(
        provider="bedrock",
        bedrock_model_id=MODEL_ID,
        auth_dev_secret=SECRET,
        model_max_retries=0,
    )


def text_deltas(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["update"]["delta"]
        for e in events
        if e["type"] == "thread.item.updated"
        and e["update"]["type"] == "assistant_message.content_part.text_delta"
    ]


async def turn(
    client: httpx.AsyncClient, text: str, thread_id: str | None = None
) -> list[dict[str, Any]]:
    return await post_turn(client, TOKEN, text, thread_id)


async def items_of(client: httpx.AsyncClient, thread_id: str) -> list[dict[str, Any]]:
    return await thread_items(client, TOKEN, thread_id)


def app_client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(bedrock_settings()))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def test_the_fakes_frames_are_real_event_stream_messages() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(stream_frames(Reply(chunks=["Hel", "lo"]))))

    messages = list(buffer)  # raises on a bad prelude, header or CRC

    assert [m.headers[":event-type"] for m in messages] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert json.loads(messages[1].payload)["delta"] == {"text": "Hel"}


async def test_text_streams_token_by_token_signed_with_aws_credentials(
    table: type[TableRecord], s3: Any, bedrock: FakeBedrock
) -> None:
    bedrock.replies = [Reply(chunks=["Hello", ", ", "Alice", "!"])]

    async with app_client() as client:
        events = await turn(client, "hi there")
        thread_id = events[0]["thread"]["id"]
        items = await items_of(client, thread_id)

    assert text_deltas(events) == ["Hello", ", ", "Alice", "!"]  # one SSE event per token
    # The title came from the same model (the fake's answer to a title request).
    titles = [e["thread"]["title"] for e in events if e["type"] == "thread.updated"]
    assert titles == ["Groceries for the week"]
    assert not [e for e in events if e["type"] == "error"]
    [answer] = [i for i in items if i["type"] == "assistant_message"]
    assert answer["content"][0]["text"] == "Hello, Alice!"
    # ConverseStream on the configured model, SigV4-signed with the role's credentials.
    assert f"/model/{MODEL_ID}/converse-stream" in bedrock.paths
    # (moto, active for the table, hands botocore its own fake keys: FOOBARKEY)
    for authorization in bedrock.authorizations:
        assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
        assert "/us-east-1/bedrock/aws4_request" in authorization
    [answered] = [r for r in bedrock.requests if "toolConfig" in r]
    assert answered["messages"] == [{"role": "user", "content": [{"text": "hi there"}]}]
    # Triage's instructions: it answered this one itself rather than hand it over.
    assert "transfer_to_tasks" in answered["system"][0]["text"]


async def test_a_tool_use_runs_the_task_tool_and_the_answer_follows(
    table: type[TableRecord], s3: Any, bedrock: FakeBedrock
) -> None:
    bedrock.replies = [
        Reply(tool_use=("transfer_to_tasks", ["{}"])),  # triage hands over
        Reply(chunks=["Adding it."], tool_use=("add_task", ['{"title": ', '"buy milk"}'])),
        Reply(chunks=["Added ", "buy milk."]),
    ]

    async with app_client() as client:
        events = await turn(client, "remind me to buy milk")
        thread_id = events[0]["thread"]["id"]
        listed = await turn(client, "what are my tasks?", thread_id)
        items = await items_of(client, thread_id)

    assert not [e for e in events if e["type"] == "error"]
    assert "Added " in text_deltas(events) and "buy milk." in text_deltas(events)
    # Triage offered the handoffs; the task assistant its tools and the way back.
    answers = [r for r in bedrock.requests if "toolConfig" in r]
    names = [{t["toolSpec"]["name"] for t in r["toolConfig"]["tools"]} for r in answers]
    assert {"transfer_to_tasks", "transfer_to_files", "transfer_to_general"} == names[0]
    assert {"add_task", "list_tasks", "transfer_to_triage"} <= names[1]
    # The tool's result went back to Bedrock as a toolResult for the toolUse's id.
    second = answers[2]["messages"]
    use = second[-2]["content"][-1]["toolUse"]
    result = second[-1]["content"][0]["toolResult"]
    assert use["name"] == "add_task" and use["input"] == {"title": "buy milk"}
    assert result["toolUseId"] == use["toolUseId"]
    # The task exists: the next turn's default answer came after a widget listing it, or the
    # stored items show the widget the tool added.
    assert "buy milk" in json.dumps(items)
    assert not [e for e in listed if e["type"] == "error"]
    # The handoff and the tool call are shown and stored with the thread (in two workflows:
    # the text before the tool call ended the first).
    titles = [
        [task["title"] for task in item["workflow"]["tasks"]]
        for item in items
        if item["type"] == "workflow"
    ]
    assert titles == [["Task assistant is answering"], ["Added task #1 “buy milk”"]]


async def test_reasoning_from_the_model_is_shown_as_its_thoughts_and_stored(
    table: type[TableRecord], s3: Any, bedrock: FakeBedrock
) -> None:
    bedrock.replies = [
        Reply(
            reasoning=["The user wants ", "a task added."], tool_use=("transfer_to_tasks", ["{}"])
        ),
        Reply(chunks=["On it."]),
    ]

    async with app_client() as client:
        events = await turn(client, "remind me to call mum")
        items = await items_of(client, events[0]["thread"]["id"])

    assert not [e for e in events if e["type"] == "error"]
    [workflow] = [i["workflow"] for i in items if i["type"] == "workflow"]
    thoughts = [t["content"] for t in workflow["tasks"] if t["type"] == "thought"]
    assert thoughts == ["The user wants a task added."]
    assert "Task assistant is answering" in [t.get("title") for t in workflow["tasks"]]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=429, error_type="ThrottlingException"),
        Reply(chunks=["Half ", "an "], exception="throttlingException"),
    ],
    ids=["http-429", "exception-event"],
)
async def test_throttling_is_an_error_event_and_nothing_is_lost(
    table: type[TableRecord], s3: Any, bedrock: FakeBedrock, reply: Reply
) -> None:
    async with app_client() as client:
        first = await turn(client, "hello")
        thread_id = first[0]["thread"]["id"]
        bedrock.replies = [reply]
        events = await turn(client, "and now?", thread_id)
        items = await items_of(client, thread_id)

    [error] = [e for e in events if e["type"] == "error"]
    assert "rate limiting" in error["message"] and error["allow_retry"] is True
    # The question is kept, no half answer is stored, the earlier answer is intact.
    assert [i["type"] for i in items] == ["user_message", "assistant_message", "user_message"]
    assert items[2]["content"][0]["text"] == "and now?"
    assert "Half" not in json.dumps(items)


async def test_a_cut_stream_is_an_error_event_and_nothing_is_lost(
    table: type[TableRecord], s3: Any, bedrock: FakeBedrock
) -> None:
    async with app_client() as client:
        first = await turn(client, "hello")
        thread_id = first[0]["thread"]["id"]
        bedrock.replies = [Reply(chunks=["Once ", "upon ", "a ", "time"], cut_after=3)]
        events = await turn(client, "tell me a story", thread_id)
        items = await items_of(client, thread_id)

    [error] = [e for e in events if e["type"] == "error"]
    assert "cut off" in error["message"] and error["allow_retry"] is True
    # The answer had started; its half is taken back from the client's view.
    started = {e["item"]["id"] for e in events if e["type"] == "thread.item.added"}
    removed = {e["item_id"] for e in events if e["type"] == "thread.item.removed"}
    assert started and started <= removed
    assert [i["type"] for i in items] == ["user_message", "assistant_message", "user_message"]
    assert "Once" not in json.dumps(items)


def test_bedrock_needs_a_model_id() -> None:
    with pytest.raises(SettingsError, match="BEDROCK_MODEL_ID"):
        Settings.from_env({"MODEL_PROVIDER": "bedrock"})

    settings = Settings.from_env(
        {"MODEL_PROVIDER": "bedrock", "BEDROCK_MODEL_ID": MODEL_ID, "AWS_REGION": "eu-west-1"}
    )
    assert (settings.provider, settings.bedrock_model_id) == ("bedrock", MODEL_ID)
    assert settings.region == "eu-west-1" and settings.api_key is None


def test_only_the_bedrock_provider_imports_the_bedrock_module() -> None:
    code = (
        "import sys\n"
        "from handlers.main import build_app\n"
        "from settings import Settings\n"
        "build_app(Settings(auth_dev_secret='x' * 40, region='us-east-1'))\n"
        "assert 'agent.bedrock' not in sys.modules\n"
        "build_app(Settings(auth_dev_secret='x' * 40, region='us-east-1',"
        " provider='bedrock', bedrock_model_id='m'))\n"
        "assert 'agent.bedrock' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SRC)
