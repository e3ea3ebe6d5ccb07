"""The HTTP app over a real uvicorn connection: status codes, SSE headers, cancelled streams."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from chatkit.types import AssistantMessageItem, ThreadItem, ThreadMetadata
from starlette.requests import Request

from agent.server import AssistantServer, TurnLimits
from handlers.app import create_app
from store import DynamoDBStore, RequestContext
from store.tasks import TaskStore
from tests.agent.conftest import create_thread, offline_models
from tests.support.partial_answers import assert_partial_answer_kept


class CancelAwareServer(AssistantServer):
    """Signals when the SDK has finished handling a cancelled stream."""

    cancelled = threading.Event()

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: RequestContext
    ) -> None:
        await super().handle_stream_cancelled(thread, pending_items, context)
        self.cancelled.set()


async def as_alice(request: Request) -> RequestContext:
    return RequestContext(user_id="alice")


@pytest.fixture
def server(store: DynamoDBStore, tasks: TaskStore) -> CancelAwareServer:
    # A slow offline model, so the client can leave in the middle of the answer.
    return CancelAwareServer(store, tasks, offline_models(word_delay_seconds=0.05), TurnLimits())


@pytest.fixture
def base_url(server: CancelAwareServer) -> Iterator[str]:
    config = uvicorn.Config(
        create_app(server, as_alice), host="127.0.0.1", port=0, log_level="warning"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # bounded wait for the socket to listen
            if running.started:
                break
            threading.Event().wait(0.01)
        port = running.servers[0].sockets[0].getsockname()[1]  # bound by uvicorn itself
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def tasks(table: Any) -> TaskStore:
    return TaskStore(table)


def post(base_url: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{base_url}/chatkit", content=content, timeout=30)


def test_health_answers_ok(base_url: str) -> None:
    assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}


def test_stream_has_sse_headers(base_url: str) -> None:
    response = post(base_url, create_thread("Hello"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.text.startswith('data: {"type":"thread.created"')


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("this is not json", 400),
        ({"type": "threads.unknown", "params": {}}, 400),
        ({"type": "threads.get_by_id", "params": {"thread_id": "thr_missing"}}, 404),
        ({"type": "threads.get_by_id", "params": {"thread_id": "thr#1"}}, 400),
        (
            {
                "type": "threads.add_user_message",
                "params": {
                    "thread_id": "thr_missing",
                    "input": {
                        "content": [{"type": "input_text", "text": "hi"}],
                        "attachments": [],
                        "inference_options": {},
                    },
                },
            },
            404,
        ),
        (
            {
                "type": "input.transcribe",
                "params": {"audio_base64": "AAAA", "mime_type": "audio/webm"},
            },
            400,
        ),
        (
            {
                "type": "attachments.create",
                "params": {"name": "a.txt", "size": 1, "mime_type": "text/plain"},
            },
            400,
        ),
    ],
)
def test_client_errors_are_json_4xx(base_url: str, body: Any, status: int) -> None:
    response = post(base_url, body)

    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in error["message"]


def test_cancelled_stream_keeps_the_partial_answer(
    base_url: str, server: CancelAwareServer, store: DynamoDBStore
) -> None:
    deltas = 0
    thread_id = None
    with httpx.stream(
        "POST",
        f"{base_url}/chatkit",
        content=json.dumps(create_thread("Tell me a long story")),
        timeout=30,
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: ") :])
            thread_id = thread_id or event.get("thread", {}).get("id")
            if event["type"] == "thread.item.updated" and "delta" in event["update"]:
                deltas += 1
                if deltas == 3:
                    break  # leave in the middle of the answer
    assert server.cancelled.wait(timeout=10), "the server never noticed the client leaving"

    assert_partial_answer_kept(store, str(thread_id), RequestContext(user_id="alice"))


async def test_a_client_that_stops_reading_cannot_hold_the_response_past_the_turn_limit(
    store: DynamoDBStore, tasks: TaskStore
) -> None:
    server = AssistantServer(store, tasks, offline_models(), TurnLimits(max_turn_seconds=1))
    app = create_app(server, as_alice, max_turn_seconds=1)
    body = json.dumps(create_thread("Tell me what I said")).encode()
    never = asyncio.Event()  # the client stops reading, and never leaves
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and len(sent) > 10:
            await never.wait()  # stuck, as a send to a full socket is

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/chatkit",
        "headers": [],
        "query_string": b"",
    }
    # Without a bound on the whole response this call never returns: the test fails on the
    # safety timeout instead of hanging.
    await asyncio.wait_for(app(scope, receive, send), timeout=60)

    assert sent[0]["status"] == 200
    events = [
        json.loads(chunk.removeprefix(b"data: "))
        for message in sent[1:10]  # the sends that returned
        for chunk in message["body"].split(b"\n\n")
        if chunk.startswith(b"data: ")
    ]
    shown = "".join(
        event["update"]["delta"]
        for event in events
        if event["type"] == "thread.item.updated" and "delta" in event["update"]
    )
    alice = RequestContext(user_id="alice")
    [thread] = (await store.load_threads(5, None, "asc", alice)).data
    items = (await store.load_thread_items(thread.id, None, 20, "asc", alice)).data
    # What is kept is what reached the client before it stopped reading.
    assert [item.type for item in items][:3] == ["user_message", "workflow", "assistant_message"]
    answer = items[2]
    assert isinstance(answer, AssistantMessageItem)
    assert shown.strip() and answer.content[0].text == shown
