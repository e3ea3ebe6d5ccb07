"""The streaming Lambda entry point against a fake Runtime API: the wire format, streaming as the
model answers, error reporting, the loop's lifetime, the deadline, init and SnapStart.

The runtime loop runs in a thread of this process (moto's in-process `mock_aws`); only the
init-failure tests start `python -m handlers.lambda_streaming` in a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from chatkit.types import SDKHiddenContextItem
from starlette.requests import Request

from agent.offline_model import OfflineModel
from agent.providers import Models
from agent.server import AssistantServer, TurnLimits
from devtools.runtime_emulator import RuntimeApiEmulator, function_url_event
from handlers.app import create_app
from handlers.lambda_events import (
    TIMEOUT_EVENT,
    ASGIApp,
    LambdaContext,
    Scope,
    UnsupportedEventError,
    asgi_request,
    stream_http_response,
)
from handlers.lambda_streaming import (
    RuntimeApi,
    RuntimeApiError,
    collector_paused,
    initialize,
    serve,
)
from store import DynamoDBStore, PayloadBucket, RequestContext, TableRecord
from store.tasks import TaskStore
from tests.agent.conftest import create_thread
from tests.conftest import BUCKET
from tests.support.partial_answers import assert_partial_answer_kept
from tests.support.snapshot_hooks import snapshot_restore_stand_in

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
ALICE = RequestContext(user_id="alice")


async def as_alice(request: Request) -> RequestContext:
    return RequestContext(user_id="alice")


@pytest.fixture
def runtime() -> Iterator[RuntimeApiEmulator]:
    with RuntimeApiEmulator() as fake:
        yield fake


@contextmanager
def running(fake: RuntimeApiEmulator, app: ASGIApp, margin: float = 2.0) -> Iterator[None]:
    """The runtime loop serving `app` in a thread until the fake Runtime API closes."""

    def loop() -> None:
        # The loop's only way out: the fake closes and /invocation/next fails.
        with suppress(RuntimeApiError):
            asyncio.run(serve(RuntimeApi(fake.address), app, deadline_margin=margin))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        fake.close()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the runtime loop did not stop"


def chatkit_app(
    store: DynamoDBStore, table: type[TableRecord], model: OfflineModel | None = None
) -> ASGIApp:
    models = Models("offline", model or OfflineModel(0), None, None)
    return create_app(AssistantServer(store, TaskStore(table), models, TurnLimits()), as_alice)


def chatkit_event(request: dict[str, Any]) -> dict[str, Any]:
    return function_url_event("POST", "/chatkit", request)


async def scripted(scope: Scope, receive: Any, send: Any) -> None:
    """A raw ASGI app failing (or not) at the point its path names."""
    path = scope["path"]
    if path == "/fail-before-response":
        raise RuntimeError("exploded before the response")
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
    if path == "/fail-mid-stream":
        raise RuntimeError("exploded mid-stream")
    if path == "/trace":
        trace = os.environ.get("_X_AMZN_TRACE_ID", "")
        await send({"type": "http.response.body", "body": trace.encode(), "more_body": True})
    if path == "/loop":
        loop_id = str(id(asyncio.get_running_loop()))
        await send({"type": "http.response.body", "body": loop_id.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- event <-> ASGI -----------------------------------------------------------------------------


def test_function_url_event_becomes_an_asgi_request() -> None:
    event = function_url_event(
        "POST",
        "/chatkit",
        b"\x00binary",
        headers={"authorization": "Bearer t", "x-multi": "a,b"},
        cookies=["session=1", "theme=dark"],
        query="a=1&b=2",
    )

    scope, body = asgi_request(event, LambdaContext("req-1"))

    headers = {name.decode(): value.decode() for name, value in scope["headers"]}
    assert (scope["type"], scope["method"], scope["path"]) == ("http", "POST", "/chatkit")
    assert scope["raw_path"] == b"/chatkit"
    assert scope["query_string"] == b"a=1&b=2"
    assert headers["authorization"] == "Bearer t" and headers["x-multi"] == "a,b"
    assert headers["cookie"] == "session=1; theme=dark"
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["aws.context"].aws_request_id == "req-1"
    assert body == b"\x00binary"


def test_an_event_that_is_not_http_is_refused() -> None:
    with pytest.raises(UnsupportedEventError):
        asgi_request({"detail-type": "Scheduled Event"}, LambdaContext("req-1"))


async def test_prelude_carries_status_headers_and_cookies() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"set-cookie", b"a=1; Secure"),
            (b"set-cookie", b"b=2"),
            (b"vary", b"origin"),
            (b"vary", b"accept"),
        ]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    event = function_url_event("GET", "/")
    chunks = [chunk async for chunk in stream_http_response(app, event, LambdaContext("r"))]

    head, delimiter, body = chunks[0].partition(b"\0" * 8)
    assert delimiter and not body and chunks[1:] == [b"{}"]
    assert json.loads(head) == {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "vary": "origin,accept"},
        "cookies": ["a=1; Secure", "b=2"],
    }


async def test_closing_the_stream_early_cancels_the_app() -> None:
    cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    chunks = stream_http_response(app, function_url_event("GET", "/"), LambdaContext("r"))
    async with aclosing(chunks):
        await anext(chunks)

    await asyncio.wait_for(cancelled.wait(), timeout=5)


# -- the wire format ----------------------------------------------------------------------------


def test_response_is_posted_in_streaming_mode(runtime: RuntimeApiEmulator) -> None:
    with running(runtime, scripted):
        response = runtime.result(runtime.add_invocation(function_url_event("GET", "/ok")))

    assert response.kind == "response"
    names = [name.lower() for name, _ in response.raw_headers]
    assert names.count("content-length") == 0
    assert response.headers["lambda-runtime-function-response-mode"] == "streaming"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["content-type"] == "application/vnd.awslambda.http-integration-response"
    assert (
        response.headers["trailer"]
        == "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    )
    assert response.trailers == {}


def test_body_is_the_prelude_eight_nuls_then_the_sse_events(
    runtime: RuntimeApiEmulator, store: DynamoDBStore, table: type[TableRecord]
) -> None:
    with running(runtime, chatkit_app(store, table)):
        response = runtime.result(runtime.add_invocation(chatkit_event(create_thread("Hello"))))

    head, delimiter, payload = response.body.partition(b"\0" * 8)
    prelude = json.loads(head)
    assert delimiter == b"\0" * 8
    assert prelude["statusCode"] == 200 and prelude["cookies"] == []
    assert prelude["headers"]["content-type"].startswith("text/event-stream")
    assert prelude["headers"]["cache-control"] == "no-cache"
    assert payload.startswith(b'data: {"type":"thread.created"')
    assert response.chunks[0].data == head + delimiter
    assert "thread.item.done" in [event["type"] for event in response.sse_events()]


def test_each_event_travels_in_its_own_chunk(
    runtime: RuntimeApiEmulator, store: DynamoDBStore, table: type[TableRecord]
) -> None:
    with running(runtime, chatkit_app(store, table)):
        response = runtime.result(runtime.add_invocation(chatkit_event(create_thread("Hello"))))

    body_chunks = [chunk.data for chunk in response.chunks[1:]]
    assert len(body_chunks) == len(response.sse_events()) > 10
    for chunk in body_chunks:
        assert chunk.startswith(b"data: {") and chunk.endswith(b"\n\n")
        assert chunk.count(b"\n\n") == 1


def test_events_reach_the_wire_while_the_model_is_still_answering(
    runtime: RuntimeApiEmulator, store: DynamoDBStore, table: type[TableRecord]
) -> None:
    async def marked_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)
        runtime.mark("word")  # the model produces its next word now

    model = OfflineModel(0.05, sleep=marked_sleep)
    with running(runtime, chatkit_app(store, table, model)):
        request_id = runtime.add_invocation(chatkit_event(create_thread("Tell me a story")))
        response = runtime.result(request_id)

    delta = next(
        index
        for index, chunk in enumerate(response.chunks)
        if b"assistant_message.content_part.text_delta" in chunk.data
    )
    arrival = runtime.timeline.index(("chunk", f"{response.path}#{delta}"))
    last_word = max(i for i, (label, _) in enumerate(runtime.timeline) if label == "word")
    assert runtime.timeline.count(("word", "")) > 10
    assert arrival < last_word, "the first text delta arrived only after the answer was complete"


# -- failures -----------------------------------------------------------------------------------


def test_failure_mid_stream_is_reported_in_the_trailers(runtime: RuntimeApiEmulator) -> None:
    with running(runtime, scripted):
        event = function_url_event("GET", "/fail-mid-stream")
        response = runtime.result(runtime.add_invocation(event))

    assert response.kind == "response"
    assert response.payload() == b"data: {}\n\n"
    assert response.trailers["lambda-runtime-function-error-type"] == "RuntimeError"
    encoded = response.trailers["lambda-runtime-function-error-body"]
    assert json.loads(base64.b64decode(encoded)) == {
        "errorType": "RuntimeError",
        "errorMessage": "exploded mid-stream",
    }


def test_failure_before_the_first_byte_posts_to_error(runtime: RuntimeApiEmulator) -> None:
    with running(runtime, scripted):
        event = function_url_event("GET", "/fail-before-response")
        answer = runtime.result(runtime.add_invocation(event))

    assert answer.kind == "error"
    assert answer.headers["lambda-runtime-function-error-type"] == "RuntimeError"
    assert answer.error() == {
        "errorType": "RuntimeError",
        "errorMessage": "exploded before the response",
    }


def test_a_response_the_runtime_api_does_not_take_is_reported_on_error(
    runtime: RuntimeApiEmulator,
) -> None:
    runtime.responses_to_drop = 1
    with running(runtime, scripted):
        dropped = runtime.add_invocation(function_url_event("GET", "/ok"))
        after = runtime.add_invocation(function_url_event("GET", "/ok"))
        answers = [runtime.result(dropped), runtime.result(after)]

    assert [answer.kind for answer in answers] == ["error", "response"]
    assert answers[0].error()["errorType"] == "ResponseStreamError"


@pytest.mark.parametrize("event", [b"{not json", {"detail-type": "Scheduled Event"}])
def test_an_event_that_is_not_a_function_url_request_posts_to_error(
    runtime: RuntimeApiEmulator, event: Any
) -> None:
    with running(runtime, scripted):
        answer = runtime.result(runtime.add_invocation(event))

    assert answer.kind == "error"
    assert answer.error()["errorType"] in ("JSONDecodeError", "UnsupportedEventError")


# -- the loop -----------------------------------------------------------------------------------


def test_invocations_are_served_one_after_another_on_one_event_loop(
    runtime: RuntimeApiEmulator,
) -> None:
    with running(runtime, scripted):
        ids = [runtime.add_invocation(function_url_event("GET", "/loop")) for _ in range(3)]
        answers = [runtime.result(request_id) for request_id in ids]

    loops = {answer.payload().removeprefix(b"data: {}\n\n") for answer in answers}
    assert all(answer.kind == "response" for answer in answers)
    assert len(loops) == 1


def test_a_failed_invocation_does_not_stop_the_loop(
    runtime: RuntimeApiEmulator, store: DynamoDBStore, table: type[TableRecord]
) -> None:
    app = chatkit_app(store, table)

    async def sometimes_failing(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"].startswith("/fail"):
            await scripted(scope, receive, send)
        else:
            await app(scope, receive, send)

    with running(runtime, sometimes_failing):
        failures = [
            runtime.add_invocation(function_url_event("GET", "/fail-before-response")),
            runtime.add_invocation(function_url_event("GET", "/fail-mid-stream")),
            runtime.add_invocation(b"not an event"),
        ]
        after = runtime.add_invocation(chatkit_event(create_thread("Still there?")))
        answers = [runtime.result(request_id) for request_id in [*failures, after]]

    assert [answer.kind for answer in answers] == ["error", "response", "error", "response"]
    assert answers[-1].prelude()["statusCode"] == 200
    assert not answers[-1].trailers


def test_trace_id_is_exported_to_the_app(runtime: RuntimeApiEmulator) -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    with running(runtime, scripted):
        event = function_url_event("GET", "/trace")
        answer = runtime.result(runtime.add_invocation(event, trace_id=trace))

    assert answer.payload() == b"data: {}\n\n" + trace.encode()


# -- the deadline -------------------------------------------------------------------------------


def stalling_model(words: int) -> OfflineModel:
    """The offline model, answering `words` words and then never another: a deadline always
    falls mid-answer, however slow the machine."""
    produced = 0

    async def sleep(seconds: float) -> None:
        nonlocal produced
        produced += 1
        if produced > words:
            await asyncio.Event().wait()

    return OfflineModel(0.01, sleep=sleep)


class DelayedHiddenContextSaves(DynamoDBStore):
    """A store that saves the cancellation note only once `proceed` is set: the save outlives
    the cancel grace and the response."""

    proceed = threading.Event()

    async def add_thread_item(self, thread_id: str, item: Any, context: RequestContext) -> None:
        if isinstance(item, SDKHiddenContextItem):
            await asyncio.to_thread(self.proceed.wait, 30)
            await asyncio.sleep(0.3)  # a slow write: the loop would be asking for /next by now
        await super().add_thread_item(thread_id, item, context)


def test_deadline_ends_the_answer_with_an_error_event_and_keeps_the_partial_answer(
    runtime: RuntimeApiEmulator, store: DynamoDBStore, table: type[TableRecord]
) -> None:
    # Lambda's deadline is 6 s away, the margin 1 s: the answer stops after 5 s, 3 words in.
    with running(runtime, chatkit_app(store, table, stalling_model(3)), margin=1.0):
        deadline_ms = int(time.time() * 1000) + 6000
        event = chatkit_event(create_thread("Tell me a long story"))
        response = runtime.result(runtime.add_invocation(event, deadline_ms=deadline_ms))

    events = response.sse_events()
    assert response.kind == "response" and not response.trailers
    assert response.chunks[-1].data == TIMEOUT_EVENT
    assert events[-1] == {
        "type": "error",
        "code": "custom",
        "message": "The answer ran out of time (Lambda timeout) and was stopped.",
        "allow_retry": True,
    }
    assert "thread.item.updated" in [event["type"] for event in events]
    assert_partial_answer_kept(store, events[0]["thread"]["id"], ALICE)


def test_the_partial_answer_is_saved_before_the_environment_can_be_frozen(
    runtime: RuntimeApiEmulator, table: type[TableRecord], s3: Any
) -> None:
    store = DelayedHiddenContextSaves(table, PayloadBucket(s3, BUCKET), sleep=lambda _s: None)
    stored_when_frozen: list[list[str]] = []
    thread_ids: list[str] = []

    def at_next(call: int) -> None:  # the loop waits for its next event: nothing runs on
        if call == 2:
            page = store.load_thread_items(thread_ids[0], None, 20, "asc", ALICE)
            stored_when_frozen.append([item.type for item in asyncio.run(page).data])

    runtime.on_next = at_next
    # The answer is stopped 3 s before the deadline, 8 s away; the save may use 1.5 s of those.
    with running(runtime, chatkit_app(store, table, stalling_model(3)), margin=3.0):
        deadline_ms = int(time.time() * 1000) + 8000
        event = chatkit_event(create_thread("Tell me a long story"))
        response = runtime.result(runtime.add_invocation(event, deadline_ms=deadline_ms))
        thread_ids.append(response.sse_events()[0]["thread"]["id"])
        store.proceed.set()  # the answer has ended: only now may the note be saved
        runtime.add_invocation(function_url_event("GET", "/health"))

    assert stored_when_frozen == [
        ["user_message", "workflow", "assistant_message", "sdk_hidden_context"]
    ]


async def test_deadline_before_the_response_starts_answers_504() -> None:
    async def slow(scope: Scope, receive: Any, send: Any) -> None:
        await asyncio.sleep(30)

    deadline = asyncio.get_running_loop().time() + 0.2
    event = function_url_event("GET", "/")
    chunks = [
        chunk
        async for chunk in stream_http_response(
            slow, event, LambdaContext("r"), deadline=deadline, cancel_grace=0.1
        )
    ]

    head, _, body = chunks[0].partition(b"\0" * 8)
    assert json.loads(head)["statusCode"] == 504
    assert json.loads(body)["error"]["code"] == "timeout"


# -- init and SnapStart -------------------------------------------------------------------------


def test_init_failure_posts_init_error(runtime: RuntimeApiEmulator) -> None:
    def broken() -> ASGIApp:
        raise ValueError("MODEL_PROVIDER must be one of openai, openai-compatible, offline")

    with pytest.raises(SystemExit) as exit_info:
        initialize(RuntimeApi(runtime.address), broken)

    assert exit_info.value.code == 1
    assert runtime.wait_for_init_error().error() == {
        "errorType": "ValueError",
        "errorMessage": "MODEL_PROVIDER must be one of openai, openai-compatible, offline",
    }


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "handlers.lambda_streaming"],
        [str(SRC / "run-streaming.sh"), sys.executable, "/var/runtime/bootstrap.py"],
    ],
    ids=["module", "exec-wrapper"],
)
def test_entry_point_reports_a_bad_configuration_and_exits(
    runtime: RuntimeApiEmulator, command: list[str]
) -> None:
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": runtime.address,
        "LAMBDA_TASK_ROOT": str(SRC),
        "MODEL_PROVIDER": "not-a-provider",
    }
    finished = subprocess.run(command, cwd=SRC, env=env, capture_output=True, timeout=120)

    assert finished.returncode != 0
    init_error = runtime.wait_for_init_error(timeout=5)
    assert init_error.error()["errorType"] == "SettingsError"
    assert "MODEL_PROVIDER" in init_error.error()["errorMessage"]
    assert runtime.next_calls == 0


def test_the_exec_wrapper_runs_the_loop_module_with_the_collector_paused(tmp_path: Path) -> None:
    loop = tmp_path / "handlers" / "lambda_streaming.py"
    loop.parent.mkdir()
    (loop.parent / "__init__.py").write_text("")
    loop.write_text("import gc, sys\nprint(gc.isenabled(), __name__, sys.argv[0])\n")
    wrapper = [str(SRC / "run-streaming.sh"), sys.executable, "/var/runtime/bootstrap.py"]
    env = {**os.environ, "LAMBDA_TASK_ROOT": str(tmp_path)}

    finished = subprocess.run(wrapper, env=env, capture_output=True, text=True, timeout=60)

    assert finished.stdout.split() == ["False", "__main__", str(loop)]


def test_bad_deadline_margin_is_an_init_error(runtime: RuntimeApiEmulator) -> None:
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": runtime.address,
        "STREAM_DEADLINE_MARGIN_MS": "two seconds",
    }
    command = [sys.executable, "-m", "handlers.lambda_streaming"]
    finished = subprocess.run(command, cwd=SRC, env=env, capture_output=True, timeout=120)

    assert finished.returncode == 1
    assert "STREAM_DEADLINE_MARGIN_MS" in runtime.wait_for_init_error(5).error()["errorMessage"]


def test_snapstart_builds_the_app_after_the_restore(
    runtime: RuntimeApiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = snapshot_restore_stand_in()
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", hooks)
    steps: list[str] = []
    hooks.register_before_snapshot(steps.append, "before snapshot: first registered")
    hooks.register_before_snapshot(steps.append, "before snapshot: last registered")
    hooks.register_after_restore(steps.append, "after restore: first registered")
    hooks.register_after_restore(steps.append, "after restore: last registered")

    def preload() -> None:
        random.seed(7)  # the state every restored copy would share
        steps.append("preload")

    def build() -> ASGIApp:
        steps.append(f"build (restored: {runtime.restore_requested.is_set()})")
        return scripted

    app = initialize(RuntimeApi(runtime.address), build, preload=preload, snap_start=True)

    assert app is scripted
    assert steps == [
        "preload",
        "before snapshot: last registered",
        "before snapshot: first registered",
        "after restore: first registered",
        "after restore: last registered",
        "build (restored: True)",
    ]
    assert random.random() != random.Random(7).random(), "random was not reseeded"


def test_a_failed_restore_next_is_reported_on_restore_error(runtime: RuntimeApiEmulator) -> None:
    runtime.restore_next_status = 500

    with pytest.raises(SystemExit) as exit_info:
        initialize(RuntimeApi(runtime.address), lambda: scripted, snap_start=True)

    assert exit_info.value.code == 65
    assert runtime.restore_errors[0].error()["errorType"] == "RuntimeApiError"


def test_snapstart_restore_failure_posts_restore_error(runtime: RuntimeApiEmulator) -> None:
    def build() -> ASGIApp:
        raise ConnectionError("no credentials after restore")

    with pytest.raises(SystemExit) as exit_info:
        initialize(RuntimeApi(runtime.address), build, snap_start=True)

    assert exit_info.value.code == 65
    assert runtime.restore_requested.is_set()
    assert runtime.restore_errors[0].error()["errorType"] == "ConnectionError"


# -- logs and the import path -------------------------------------------------------------------


def run_entry_point(
    runtime: RuntimeApiEmulator, events: list[Any], **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m handlers.lambda_streaming` answering `events`, then stopped by the emulator."""
    settings = {
        "AWS_LAMBDA_RUNTIME_API": runtime.address,
        "LAMBDA_TASK_ROOT": str(SRC),
        "MODEL_PROVIDER": "offline",
        "AUTH_DEV_SECRET": "a-development-secret-long-enough-for-hs256",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    ids = [runtime.add_invocation(event) for event in events]
    command = [sys.executable, "-m", "handlers.lambda_streaming"]
    process = subprocess.Popen(
        command,
        cwd=SRC,
        env={**os.environ, **settings, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for request_id in ids:
        runtime.result(request_id, timeout=120)
    runtime.close()
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_each_log_record_is_one_json_line_with_its_traceback_and_extra_fields(
    runtime: RuntimeApiEmulator,
) -> None:
    finished = run_entry_point(runtime, [{"detail-type": "Scheduled Event"}], LOG_LEVEL="INFO")

    records = [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]
    [failure] = [r for r in records if r["message"] == "failed before the first byte"]
    assert failure["level"] == "ERROR"
    assert failure["request_id"]
    assert "Traceback" in failure["exception"] and "\n" in failure["exception"]
    assert failure["exception_name"] == "UnsupportedEventError"


def test_log_level_reaches_the_runtime_loop(runtime: RuntimeApiEmulator) -> None:
    finished = run_entry_point(runtime, [{"detail-type": "Scheduled Event"}], LOG_LEVEL="ERROR")

    records = [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]
    assert {record["level"] for record in records} == {"ERROR"}
    assert "failed before the first byte" in [record["message"] for record in records]


def test_the_loop_imports_from_layers_and_the_runtime_directory_like_the_managed_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.lambda_streaming import use_managed_runtime_path

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    layer_site = tmp_path / "opt" / "python" / "lib" / version / "site-packages"
    layer_site.mkdir(parents=True)
    (layer_site / "extra.pth").write_text(str(tmp_path / "pth-dir") + "\n")
    (tmp_path / "pth-dir").mkdir()
    task_root, runtime_dir = tmp_path / "task", tmp_path / "runtime"
    env = {"LAMBDA_TASK_ROOT": str(task_root), "LAMBDA_RUNTIME_DIR": str(runtime_dir)}
    monkeypatch.setattr(sys, "path", ["", "/usr/lib/python313.zip"])

    use_managed_runtime_path(env, opt_root=str(tmp_path / "opt"))

    assert sys.path[:4] == [
        str(task_root),
        str(layer_site),
        str(tmp_path / "opt" / "python"),
        str(runtime_dir),
    ]
    assert str(tmp_path / "pth-dir") in sys.path
    assert "" not in sys.path


def test_pythonpath_set_by_the_function_leaves_the_layers_off_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.lambda_streaming import use_managed_runtime_path

    env = {"LAMBDA_TASK_ROOT": "/var/task", "PYTHONPATH": "/var/task/lib"}
    monkeypatch.setattr(sys, "path", ["/var/task/lib", "/usr/lib/python313.zip"])

    use_managed_runtime_path(env, opt_root=str(tmp_path / "opt"))

    assert sys.path == ["/var/task", "/var/task/lib", "/usr/lib/python313.zip"]


def test_init_runs_without_collections_and_then_freezes_what_it_created() -> None:
    enabled: list[bool] = []
    try:
        with collector_paused():
            enabled.append(gc.isenabled())
            created = [{"made": "during init"} for _ in range(100)]
        frozen = gc.get_freeze_count()
        assert enabled == [False] and gc.isenabled()
        assert frozen >= len(created)
    finally:
        gc.unfreeze()
