"""What the function tells its operator: per request, one JSON log record and EMF metric
documents, checked for every request type and every error class as CloudWatch would read them
(schema, units, bounded dimensions) and for what they must never hold (message text, the raw
user id, a token).

The app is the real one (`build_app`) on moto, the offline model or the fake OpenAI server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from botocore.retries.standard import ExponentialBackoff

import telemetry
from agent.request_limits import REQUEST_TYPES
from agent.server import AssistantServer
from devtools.tokens import mint_token
from handlers import conversations
from handlers.recorded_route import API_TYPE_PREFIX
from logs import logger
from settings import Settings
from store import TableRecord, bind_table, create_table
from telemetry import ERROR_CLASSES, METRICS, pseudonym
from tests.conftest import TABLE
from tests.handlers.conftest import app_client, app_settings, fake_model_settings
from tests.support.dynamodb_faults import DynamoDBFaults
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.inputs import user_input

SECRET = "telemetry-test-secret-0123456789abcdef"
RAW_USER = "sub-7f3a9c-raw-user-id"
TOKEN = mint_token(SECRET, RAW_USER)
AUTH = {"authorization": f"Bearer {TOKEN}"}
SECRET_TEXT = "zebra-quartz-marmalade"  # message text that must not reach logs or metrics
NAMESPACE, SERVICE = "ChatKitLambda", "chatkit-test-stack"
USER_ID_KEY = "arn:aws:cloudformation:us-east-1:123:stack/x/uuid"
# The settings every app here runs with: what its records and metrics are named and keyed by.
OBSERVED: dict[str, Any] = {
    "auth_dev_secret": SECRET,
    "metrics_namespace": NAMESPACE,
    "service_name": SERVICE,
    "log_user_id_key": USER_ID_KEY,
}


@pytest.fixture(autouse=True)
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture
def record_class(aws: None, monkeypatch: pytest.MonkeyPatch) -> type[TableRecord]:
    """The app's table, bound here so that faults can be injected on its client."""
    telemetry.watch_dynamodb()  # as build_app does, before the client exists
    record = bind_table(TABLE, region="us-east-1")
    create_table(record)
    monkeypatch.setattr("handlers.main.bind_table", lambda *args, **kwargs: record)
    return record


@pytest.fixture
def settings() -> Settings:
    return app_settings(**OBSERVED)


@pytest.fixture
async def client(
    record_class: type[TableRecord], s3: Any, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as client:
        yield client


class Output:
    """What requests wrote: EMF documents (stdout) and the request log records."""

    def __init__(self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):
        self.capsys, self.caplog = capsys, caplog

    def clear(self) -> None:
        self.capsys.readouterr()
        self.caplog.clear()

    def documents(self) -> list[dict[str, Any]]:
        lines = self.capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"_aws"')]

    def requests(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.getMessage() == "chatkit request"]

    def formatted(self) -> list[dict[str, Any]]:
        """The request records as CloudWatch receives them (Powertools' JSON formatter)."""
        formatter = logger.registered_formatter
        return [json.loads(formatter.format(record)) for record in self.requests()]


@pytest.fixture
def output(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[Output]:
    caplog.set_level(logging.INFO)
    yield Output(capsys, caplog)


async def send(
    client: httpx.AsyncClient, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body)
    return await client.post(
        "/chatkit", content=content, headers=AUTH if headers is None else headers
    )


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]


def check_document(document: dict[str, Any]) -> dict[str, float]:
    """One EMF document as CloudWatch parses it; returns its metric values."""
    directives = document["_aws"]["CloudWatchMetrics"]
    assert isinstance(document["_aws"]["Timestamp"], int) and len(directives) == 1
    directive = directives[0]
    assert directive["Namespace"] == NAMESPACE
    values: dict[str, float] = {}
    for definition in directive["Metrics"]:
        metric = METRICS[definition["Name"]]
        assert definition["Unit"] == metric.unit
        dimension_sets = {tuple(sorted(names)) for names in directive["Dimensions"]}
        assert dimension_sets == {tuple(sorted(names)) for names in metric.dimensions}
        [value] = document[metric.name]
        assert isinstance(value, float) and value >= 0
        values[metric.name] = value
    for names in directive["Dimensions"]:
        for name in names:
            assert name in BOUNDED, f"unbounded dimension {name}"
            assert document[name] in BOUNDED[name], f"{name}={document[name]!r}"
    return values


API_TYPES = {API_TYPE_PREFIX + route.name for route in conversations.router.routes}  # type: ignore[attr-defined]
BOUNDED = {
    "service": {SERVICE},
    "RequestType": {*REQUEST_TYPES, *API_TYPES, telemetry.UNKNOWN_TYPE, telemetry.INVALID_TYPE},
    "ErrorClass": set(ERROR_CLASSES),
}


def metrics_of(output: Output) -> dict[str, float]:
    """Every metric of the documents written since the last clear, checked, merged."""
    merged: dict[str, float] = {}
    text = ""
    for document in output.documents():
        text += json.dumps(document)
        for name, value in check_document(document).items():
            assert name not in merged, f"{name} twice for one request"
            merged[name] = value
        if "ErrorClass" in document:
            merged[f"ErrorClass={document['ErrorClass']}"] = 1
        if "RequestType" in document:
            merged[f"RequestType={document['RequestType']}"] = 1
    assert_private(text)
    return merged


def the_request(output: Output) -> dict[str, Any]:
    """The one request record written since the last clear, as CloudWatch receives it."""
    [record] = output.formatted()
    output.caplog.clear()
    assert_private(json.dumps(record))
    return record


def assert_private(text: str) -> None:
    assert SECRET_TEXT not in text
    assert RAW_USER not in text
    assert TOKEN not in text and TOKEN.split(".")[1] not in text


# -- every request type -------------------------------------------------------------------


async def thread_with_answer(client: httpx.AsyncClient) -> dict[str, str]:
    events = sse(await send(client, create_thread(f"add a task to {SECRET_TEXT}")))
    done = [e["item"] for e in events if e["type"] == "thread.item.done"]
    return {
        "thread": events[0]["thread"]["id"],
        "message": next(item["id"] for item in done if item["type"] == "user_message"),
        "answer": next(item["id"] for item in done if item["type"] == "assistant_message"),
    }


def create_thread(text: str) -> dict[str, Any]:
    return {"type": "threads.create", "params": {"input": user_input(text)}}


def requests_of(ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    thread = ids["thread"]
    return {
        "threads.create": create_thread(SECRET_TEXT),
        "threads.add_user_message": {
            "type": "threads.add_user_message",
            "params": {"thread_id": thread, "input": user_input(f"show my tasks {SECRET_TEXT}")},
        },
        "threads.retry_after_item": {
            "type": "threads.retry_after_item",
            "params": {"thread_id": thread, "item_id": ids["message"]},
        },
        "threads.get_by_id": {"type": "threads.get_by_id", "params": {"thread_id": thread}},
        "threads.list": {"type": "threads.list", "params": {}},
        "threads.update": {
            "type": "threads.update",
            "params": {"thread_id": thread, "title": SECRET_TEXT},
        },
        "items.list": {"type": "items.list", "params": {"thread_id": thread}},
        "items.feedback": {
            "type": "items.feedback",
            "params": {"thread_id": thread, "item_ids": [ids["answer"]], "kind": "positive"},
        },
        "attachments.create": {
            "type": "attachments.create",
            "params": {"name": f"{SECRET_TEXT}.txt", "size": 5, "mime_type": "text/plain"},
        },
        "threads.delete": {"type": "threads.delete", "params": {"thread_id": thread}},
    }


STREAMING = {"threads.create", "threads.add_user_message", "threads.retry_after_item"}


@pytest.mark.parametrize(
    "request_type", sorted(requests_of(dict.fromkeys(("thread", "message", "answer"), "")))
)
async def test_each_request_type_is_logged_and_measured_once(
    client: httpx.AsyncClient, output: Output, request_type: str
) -> None:
    ids = await thread_with_answer(client)
    output.clear()

    response = await send(
        client, requests_of(ids)[request_type], {**AUTH, "x-request-id": "req-42"}
    )

    assert response.status_code == 200
    metrics = metrics_of(output)
    assert metrics["Requests"] == 1 and metrics[f"RequestType={request_type}"] == 1
    assert metrics["RequestLatency"] > 0
    assert ("TimeToFirstEvent" in metrics) == (request_type in STREAMING)
    assert not any(name.startswith("ErrorClass=") for name in metrics)
    assert "DynamoDBRetries" in metrics and "DynamoDBThrottles" in metrics
    record = the_request(output)
    assert record["request_id"] == "req-42" and record["request_type"] == request_type
    assert record["user"] == pseudonym(RAW_USER, USER_ID_KEY) and record["status"] == 200
    assert record["outcome"] == "ok" and record["duration_ms"] > 0
    assert ("first_event_ms" in record) == (request_type in STREAMING)
    if request_type in STREAMING:
        assert metrics["Turns"] == 1 and metrics["ModelCalls"] >= 1
        assert metrics["InputTokens"] > 0 and metrics["OutputTokens"] > 0
        assert metrics["HistoryItems"] >= 1
        for name in ("model_calls", "input_tokens", "output_tokens", "history_items"):
            assert record[name] > 0
    else:
        assert "Turns" not in metrics and "input_tokens" not in record


@pytest.mark.parametrize(
    ("method", "path", "status", "route"),
    [
        ("GET", "", 200, "list_conversations"),
        ("GET", "/{id}", 200, "read_conversation"),
        ("PATCH", "/{id}", 200, "rename_conversation"),
        ("GET", "/{id}/export?format=markdown", 200, "export_conversation"),
        ("DELETE", "/{id}", 204, "delete_conversation"),
        ("GET", "/{id}", 404, "read_conversation"),
    ],
    ids=["list", "read", "rename", "export", "delete", "not-found"],
)
async def test_each_rest_request_is_logged_and_measured_once(
    client: httpx.AsyncClient, output: Output, method: str, path: str, status: int, route: str
) -> None:
    thread_id = (await thread_with_answer(client))["thread"] if status != 404 else "thr_unknown"
    output.clear()

    response = await client.request(
        method,
        "/api/conversations" + path.format(id=thread_id),
        json={"title": "Groceries"} if method == "PATCH" else None,
        headers={**AUTH, "x-request-id": "req-43"},
    )

    assert response.status_code == status
    record = the_request(output)
    assert record["request_id"] == "req-43" and record["request_type"] == f"api.{route}"
    assert record["route"] == f"{method} /api/conversations{path.split('?')[0]}".replace(
        "{id}", "{conversation_id}"
    )
    assert record["user"] == pseudonym(RAW_USER, USER_ID_KEY) and record["status"] == status
    assert record["outcome"] == ("ok" if status < 400 else "client")
    assert record["duration_ms"] > 0 and "first_event_ms" not in record
    assert record.get("thread_id") == (thread_id if "{id}" in path else None)
    metrics = metrics_of(output)
    assert metrics["Requests"] == 1 and metrics[f"RequestType=api.{route}"] == 1


async def test_a_rest_request_with_a_refused_token_is_logged_without_a_user(
    client: httpx.AsyncClient, output: Output
) -> None:
    response = await client.get("/api/conversations", headers={"authorization": "Bearer x.y.z"})

    assert response.status_code == 401
    record = the_request(output)
    assert record["request_type"] == "api.list_conversations" and record["status"] == 401
    assert record["outcome"] == "auth" and "user" not in record
    assert metrics_of(output)["ErrorClass=auth"] == 1


async def test_a_turn_counts_its_tool_calls_and_tokens(
    client: httpx.AsyncClient, output: Output
) -> None:
    await send(client, create_thread("add a task to buy milk"))
    metrics = metrics_of(output)
    record = the_request(output)

    assert metrics["ToolCalls"] == record["tool_calls"] == 1
    assert metrics["Handoffs"] == record["handoffs"] == 1  # triage to the task assistant
    # The answer's calls (the handoff, the tool call, then the text) and the title's.
    assert metrics["ModelCalls"] == record["model_calls"] >= 3
    assert metrics["InputTokens"] == record["input_tokens"] > 0


def test_the_user_pseudonym_is_stable_keyed_and_not_the_user_id() -> None:
    assert pseudonym("alice", "key-1") == pseudonym("alice", "key-1")
    assert pseudonym("alice", "key-1") != pseudonym("alice", "key-2")
    assert pseudonym("alice", "key-1") != pseudonym("bob", "key-1")
    assert "alice" not in pseudonym("alice", "key-1")


async def test_the_request_record_carries_the_trace_id(
    client: httpx.AsyncClient, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)

    await send(client, {"type": "threads.list", "params": {}})

    assert the_request(output)["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"


# -- every error class --------------------------------------------------------------------


def assert_failed(output: Output, error_class: str, status: int) -> dict[str, Any]:
    metrics = metrics_of(output)
    assert metrics["Errors"] == 1 and metrics[f"ErrorClass={error_class}"] == 1
    record = the_request(output)
    assert record["outcome"] == error_class and record["status"] == status
    return record


async def test_client_errors(client: httpx.AsyncClient, output: Output) -> None:
    response = await send(client, {"type": "threads.get_by_id", "params": {"thread_id": "thr_x"}})
    assert response.status_code == 404
    assert assert_failed(output, "client", 404)["request_type"] == "threads.get_by_id"

    response = await send(client, b"{" + SECRET_TEXT.encode())
    assert response.status_code == 400
    assert assert_failed(output, "client", 400)["request_type"] == "invalid"


async def test_auth_errors(client: httpx.AsyncClient, output: Output) -> None:
    response = await send(client, create_thread(SECRET_TEXT), headers={})
    assert response.status_code == 401
    record = assert_failed(output, "auth", 401)
    assert "user" not in record and record["request_type"] == "unknown"

    forged = mint_token("another-secret-0123456789abcdef-xyz", RAW_USER)
    response = await send(client, create_thread(SECRET_TEXT), {"authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert_failed(output, "auth", 401)
    assert forged not in json.dumps(output.formatted())


@pytest.mark.parametrize("settings", [app_settings(**OBSERVED, daily_turn_limit=1)])
async def test_quota_refusals(client: httpx.AsyncClient, output: Output) -> None:
    await send(client, create_thread("first"))
    output.clear()

    response = await send(client, create_thread(SECRET_TEXT))

    assert response.status_code == 429
    assert assert_failed(output, "quota", 429)["request_type"] == "threads.create"


async def test_model_errors(
    record_class: type[TableRecord], s3: Any, fake_openai: FakeOpenAI, output: Output
) -> None:
    settings = fake_model_settings(fake_openai.base_url, **OBSERVED)
    fake_openai.replies = [Reply(status=500)]
    async with app_client(settings) as client:
        events = sse(await send(client, create_thread(SECRET_TEXT)))

    assert any(event["type"] == "error" for event in events)
    record = assert_failed(output, "model", 200)
    assert record["error"] == "InternalServerError" and "first_event_ms" in record


async def test_store_errors_and_dynamodb_retries(
    client: httpx.AsyncClient, record_class: type[TableRecord], output: Output
) -> None:
    faults = DynamoDBFaults.of(record_class)
    faults.throttle("Query", times=1)

    response = await send(client, {"type": "threads.list", "params": {}})

    assert response.status_code == 200
    metrics = metrics_of(output)
    assert metrics["DynamoDBThrottles"] == 1 and metrics["DynamoDBRetries"] == 1
    record = the_request(output)
    assert record["dynamodb_throttles"] == 1 and record["dynamodb_retries"] == 1

    faults.fail("Query", times=10)
    response = await send(client, {"type": "threads.list", "params": {}})
    assert response.status_code == 503
    assert assert_failed(output, "store", 503)["dynamodb_retries"] == 2


@pytest.mark.parametrize(
    "settings",
    [app_settings(**OBSERVED, max_turn_seconds=1, offline_word_delay_ms=200)],
)
async def test_deadline_errors(client: httpx.AsyncClient, output: Output) -> None:
    events = sse(await send(client, create_thread(" ".join(["word"] * 30) + SECRET_TEXT)))

    errors = [event["message"] for event in events if event["type"] == "error"]
    assert any("took longer than 1 seconds" in message for message in errors)
    assert assert_failed(output, "deadline", 200)["error"] == "MaxTurnSeconds"


async def test_internal_errors(
    client: httpx.AsyncClient, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(SECRET_TEXT)

    monkeypatch.setattr(AssistantServer, "process", broken)

    response = await send(client, {"type": "threads.list", "params": {}})

    assert response.status_code == 500
    assert assert_failed(output, "internal", 500)["error"] == "RuntimeError"


# -- the execution environment ------------------------------------------------------------


async def test_the_first_request_after_init_reports_the_cold_start(
    record_class: type[TableRecord],
    s3: Any,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry, "_environment", telemetry._Environment())
    async with app_client(app_settings(**OBSERVED)) as client:
        await send(client, {"type": "threads.list", "params": {}})
        first, first_record = metrics_of(output), the_request(output)
        await send(client, {"type": "threads.list", "params": {}})
        second, second_record = metrics_of(output), the_request(output)

    assert first["ColdStart"] == 1 and first["InitDuration"] > 0
    assert first_record["cold_start"] is True and first_record["init_duration_ms"] > 0
    assert "ColdStart" not in second and second_record["cold_start"] is False
