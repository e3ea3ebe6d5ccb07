"""Reasoning models through the HTTP app, against the fake OpenAI server: the configured effort
and summaries are asked for (and nothing is, by default), and the reasoning the model streams
is shown as its thoughts in the turn's workflow and stored with the thread."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from handlers.main import build_app
from settings import Settings, SettingsError
from store import TableRecord
from tests.handlers.conftest import app_settings
from tests.handlers.test_specialists import SECRET, TOKEN
from tests.support.chatkit_http import post_turn, thread_items
from tests.support.fake_openai import FakeOpenAI, Reply

REASONING = ["The user wants ", "a task added."]


def openai_settings(fake: FakeOpenAI, provider: str = "openai", **overrides: Any) -> Settings:
    return app_settings(
        provider=provider,
        base_url=fake.base_url,
        api_key="test-key",
        model="fake-model",
        model_max_retries=0,
        auth_dev_secret=SECRET,
        **overrides,
    )


@pytest.fixture
def reasoning_model(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.replies = [
        Reply(reasoning=REASONING, tool_call=("transfer_to_tasks", "{}")),
        Reply(chunks=["On it."]),
    ]
    return fake_openai


def thoughts(workflow: dict[str, Any]) -> list[str]:
    return [task["content"] for task in workflow["tasks"] if task["type"] == "thought"]


def streamed_thoughts(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["update"]["task"]["content"]
        for e in events
        if e["type"] == "thread.item.updated"
        and e["update"]["type"] in ("workflow.task.added", "workflow.task.updated")
        and e["update"]["task"]["type"] == "thought"
    ]


async def answer_and_items(
    settings: Settings, text: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    transport = httpx.ASGITransport(app=build_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        events = await post_turn(client, TOKEN, text)
        assert [e for e in events if e["type"] == "error"] == []
        return events, await thread_items(client, TOKEN, events[0]["thread"]["id"])


async def test_openai_asks_for_reasoning_summaries_and_shows_them_as_thoughts(
    table: type[TableRecord], s3: Any, reasoning_model: FakeOpenAI
) -> None:
    settings = openai_settings(reasoning_model, reasoning_effort="low", reasoning_summary="auto")

    events, items = await answer_and_items(settings, "remind me to call mum")

    answers = [r for r in reasoning_model.requests if "Write a short title" not in str(r)]
    assert {str(r.get("reasoning")) for r in answers} == {str({"effort": "low", "summary": "auto"})}
    assert streamed_thoughts(events)[-1] == "The user wants a task added."
    [workflow] = [item["workflow"] for item in items if item["type"] == "workflow"]
    assert thoughts(workflow) == ["The user wants a task added."]
    assert "Task assistant is answering" in [task.get("title") for task in workflow["tasks"]]


async def test_openai_asks_for_no_reasoning_by_default(
    table: type[TableRecord], s3: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.replies = [Reply(tool_call=("transfer_to_general", "{}")), Reply(chunks=["Hi."])]

    await answer_and_items(openai_settings(fake_openai), "hello")

    assert fake_openai.requests and all("reasoning" not in r for r in fake_openai.requests)


async def test_openai_compatible_sends_the_effort_and_shows_the_reasoning_it_streams(
    table: type[TableRecord], s3: Any, reasoning_model: FakeOpenAI
) -> None:
    settings = openai_settings(
        reasoning_model, provider="openai-compatible", reasoning_effort="high"
    )

    _events, items = await answer_and_items(settings, "remind me to call mum")

    answers = [r for r in reasoning_model.requests if "Write a short title" not in str(r)]
    assert {r.get("reasoning_effort") for r in answers} == {"high"}
    [workflow] = [item["workflow"] for item in items if item["type"] == "workflow"]
    assert thoughts(workflow) == ["The user wants a task added."]


def test_reasoning_settings_are_read_from_their_variables() -> None:
    variables = {"MODEL_REASONING_EFFORT": "medium", "MODEL_REASONING_SUMMARY": "detailed"}

    settings = Settings.from_env(variables)

    assert (settings.reasoning_effort, settings.reasoning_summary) == ("medium", "detailed")
    with pytest.raises(SettingsError, match="MODEL_REASONING_SUMMARY"):
        Settings.from_env({"MODEL_REASONING_SUMMARY": "always"})
