"""The real entry points, configured from the environment like on Lambda, over a moto server.

- The streaming entry point runs from the built artifact (tests/support/lambda_harness.py: the
  Makefile's recipe for this machine, a read-only task root, the managed runtime's bootstrap and
  variables) under the AWS Runtime Interface Emulator, the `aws-lambda-rie` binary shipped in the
  aws-sam-cli wheel. RIE accepts the streaming-mode response and returns it buffered, prelude and
  NULs included (it ignores trailers and timing: those are tested against the fake Runtime API).
- The buffered entry point (`handlers.lambda_buffered.handler`) is called like Lambda would.

The RIE binary comes from the pinned SAM CLI in uv's tool cache (`scripts/aws-tools rie`, which
installs it on first use; `scripts/test` does that before pytest and passes the path in
CHATKIT_RIE_BINARY). Without it the RIE tests fail, saying why: CI must run them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.runtime_emulator import function_url_event
from devtools.tokens import mint_token
from handlers.lambda_events import LambdaContext
from tests.agent.conftest import create_thread
from tests.support.fake_aws import FAKE_CREDENTIALS
from tests.support.lambda_harness import (
    harness_artifact,
    lambda_environment,
    listening_ports,
    make_writable,
    runtime_dir,
    task_root_copy,
)
from tests.support.moto_server import moto_server
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
TABLE = "chatkit-rie"
BUCKET = "chatkit-rie-uploads"
SECRET = "rie-test-secret-that-is-long-enough-for-hs256"


def rie_binary() -> Path:
    """The emulator for this machine, from the pinned SAM CLI."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "aarch64"):
        pytest.skip(f"the RIE binary runs on Linux x86_64/arm64, not {platform.platform()}")
    if configured := os.environ.get("CHATKIT_RIE_BINARY"):
        return Path(configured)
    try:
        found = subprocess.run(
            [str(ROOT / "scripts" / "aws-tools"), "rie"],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as error:
        pytest.fail(
            f"cannot install the SAM CLI for its RIE binary (scripts/aws-tools rie): {error}"
        )
    return Path(found.stdout.strip())


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server with the table and bucket, reachable from other processes."""
    with moto_server(TABLE, BUCKET) as url:
        yield url


def function_configuration(moto_url: str) -> dict[str, str]:
    """The function's configuration, as template.yaml would set it (offline model)."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        **FAKE_CREDENTIALS,
        "AWS_REGION": "us-east-1",
        "CHATKIT_TABLE_NAME": TABLE,
        "CHATKIT_BUCKET_NAME": BUCKET,
        "AUTH_DEV_SECRET": SECRET,
        "MODEL_PROVIDER": "offline",
        "OFFLINE_WORD_DELAY_MS": "0",
    }


@pytest.fixture(scope="module")
def rie(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The invoke URL of RIE running the artifact through the managed runtime's bootstrap."""
    binary = rie_binary()
    workspace = tmp_path_factory.mktemp("rie")
    task_root = task_root_copy(harness_artifact(), workspace / "task")
    runtime = runtime_dir(workspace / "runtime")
    env = lambda_environment(task_root, runtime, "", function_configuration(moto_url))
    del env["AWS_LAMBDA_RUNTIME_API"]  # RIE sets it for the runtime it starts
    env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = "60"
    process, port = _start_rie(binary, runtime / "bootstrap", task_root, env, workspace)
    try:
        yield f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    finally:
        process.terminate()
        process.wait(timeout=30)
        make_writable(task_root)


def _start_rie(
    binary: Path, bootstrap: Path, task_root: Path, env: dict[str, str], workspace: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """RIE serving invocations on a port it binds itself (port 0, read back from /proc).

    Its Runtime API needs a concrete port (RIE passes the address on as given): a free one is
    picked, and if another process takes it first RIE exits at once and another is tried.
    """
    for attempt in range(5):
        api_port = free_port()
        log = workspace / f"rie-{attempt}.log"
        command = [
            str(binary),
            "--runtime-interface-emulator-address",
            "127.0.0.1:0",
            "--runtime-api-address",
            f"127.0.0.1:{api_port}",
            str(bootstrap),
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=task_root, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        port = _invoke_port(process, api_port)
        if port is not None:
            return process, port
    raise RuntimeError(f"RIE did not start: {log.read_text()[-2000:]}")


def _invoke_port(process: subprocess.Popen[bytes], api_port: int) -> int | None:
    """The port RIE serves invocations on, or None if it exited (its Runtime API port taken)."""
    for _ in range(400):
        if process.poll() is not None:
            return None
        ports = listening_ports(process.pid) - {api_port}
        if api_port in listening_ports(process.pid) and len(ports) == 1:
            return ports.pop()
        time.sleep(0.05)  # polling RIE's start-up, not synchronising the test's own steps
    process.kill()
    raise TimeoutError("RIE did not listen within 20 s")


def invoke(url: str, event: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Invoke through RIE; return the prelude and the body after the 8 NULs."""
    response = httpx.post(url, content=json.dumps(event), timeout=120)
    assert response.status_code == 200, response.text
    head, delimiter, body = response.content.partition(b"\0" * 8)
    assert delimiter == b"\0" * 8, f"no prelude delimiter in {response.content[:300]!r}"
    prelude: dict[str, Any] = json.loads(head)
    return prelude, body


def sse_events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(block.removeprefix(b"data: ")) for block in body.split(b"\n\n") if block]


def bearer(user_id: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(SECRET, user_id)}"}


def sample_event(name: str, user_id: str) -> dict[str, Any]:
    """One of the repository's sample events (events/), with a real token for `user_id`."""
    event: dict[str, Any] = json.loads((ROOT / "events" / f"{name}.json").read_text())
    event["headers"].update(bearer(user_id))
    return event


# -- streaming entry point under RIE ------------------------------------------------------------


def test_health_through_rie(rie: str) -> None:
    prelude, body = invoke(rie, sample_event("health", "alice"))

    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"] == "application/json"
    assert prelude["cookies"] == []
    assert json.loads(body) == {"status": "ok"}


def test_threads_create_streams_sse_through_rie(rie: str) -> None:
    prelude, body = invoke(rie, sample_event("threads-create", "alice"))

    events = sse_events(body)
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"].startswith("text/event-stream")
    assert body.startswith(b'data: {"type":"thread.created"')
    assert any(
        event["type"] == "thread.item.done" and event["item"]["type"] == "assistant_message"
        for event in events
    )


def test_request_without_token_is_401_through_rie(rie: str) -> None:
    event = function_url_event("POST", "/chatkit", create_thread("Hello"))

    prelude, body = invoke(rie, event)

    assert prelude["statusCode"] == 401
    assert prelude["headers"]["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]["code"] == "unauthorized"


# -- buffered entry point -----------------------------------------------------------------------


@pytest.fixture
def buffered(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from handlers import lambda_buffered

    for name, value in function_configuration(moto_url).items():
        monkeypatch.setenv(name, value)
    lambda_buffered._mangum.cache_clear()
    yield lambda_buffered.handler
    lambda_buffered._mangum.cache_clear()


def test_buffered_entry_point_answers_health(buffered: Any) -> None:
    answer = buffered(function_url_event("GET", "/health"), LambdaContext("req-1"))

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"status": "ok"}


def test_buffered_entry_point_returns_the_whole_stream_at_once(buffered: Any) -> None:
    event = function_url_event("POST", "/chatkit", create_thread("Hello"), headers=bearer("bob"))

    answer = buffered(event, LambdaContext("req-2"))

    assert answer["statusCode"] == 200
    assert answer["headers"]["content-type"].startswith("text/event-stream")
    events = sse_events(answer["body"].encode())
    assert events[0]["type"] == "thread.created"
    assert events[-1]["type"] in ("thread.item.done", "thread.updated")


REST_EVENTS = sorted(path.stem for path in (ROOT / "events").glob("conversations-*.json"))
SAMPLE_THREAD_ID = "thr_8c2f4a91"  # the conversation the sample events name


@pytest.mark.parametrize("name", REST_EVENTS)
def test_buffered_entry_point_answers_the_rest_sample_events(buffered: Any, name: str) -> None:
    created = buffered(
        function_url_event("POST", "/chatkit", create_thread("Hello"), headers=bearer("carol")),
        LambdaContext("req-3"),
    )
    thread_id = sse_events(created["body"].encode())[0]["thread"]["id"]
    event = sample_event(name, "carol")
    path = event["rawPath"].replace(SAMPLE_THREAD_ID, thread_id)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path

    answer = buffered(event, LambdaContext("req-4"))

    assert 200 <= answer["statusCode"] < 300, answer.get("body")
    # Each answer is about the conversation just created; a delete's has no body.
    expected = {"conversations-rename": "Dentist and receipts", "conversations-delete": ""}
    assert expected.get(name, "Hello") in answer.get("body", "")
