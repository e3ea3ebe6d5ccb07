"""The built artifact, started as Lambda's managed python3.13 runtime starts it, answers real
turns: streaming, a tool turn with its widget, an upload. It fails when a module is missing from
the artifact, when anything under the (read-only) task root is written, and when any module is
compiled from source at import (see tests/support/lambda_harness.py).

The function talks to a moto server (DynamoDB, S3, SSM) and to the Runtime API emulator; its
HS256 secret is read from SSM as on AWS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.runtime_emulator import Recorded, RuntimeApiEmulator, function_url_event
from devtools.tokens import mint_token
from tests.agent.conftest import add_message, create_thread
from tests.support.fake_aws import FAKE_CREDENTIALS
from tests.support.lambda_harness import (
    compiled_from_source,
    harness_artifact,
    lambda_environment,
    make_writable,
    runtime_dir,
    task_root_copy,
    tree_state,
    written_files,
)
from tests.support.moto_server import moto_server

TABLE = "chatkit-artifact"
BUCKET = "chatkit-artifact-uploads"
SECRET_PARAMETER = "/chatkit-lambda/auth-secret"
SECRET = "artifact-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server(TABLE, BUCKET, {SECRET_PARAMETER: SECRET}) as url:
        yield url


def function_configuration(moto_url: str, **overrides: str) -> dict[str, str]:
    """The function's variables as the template sets them (offline model), on moto."""
    return {
        "CHATKIT_TABLE_NAME": TABLE,
        "CHATKIT_BUCKET_NAME": BUCKET,
        "AUTH_MODE": "hs256",
        "AUTH_SECRET_PARAMETER": SECRET_PARAMETER,
        "MODEL_PROVIDER": "offline",
        "OFFLINE_WORD_DELAY_MS": "5",
        "POWERTOOLS_SERVICE_NAME": "chatkit-lambda",
        "POWERTOOLS_METRICS_NAMESPACE": "ChatKitLambda",
        "LOG_LEVEL": "INFO",
        "AWS_ENDPOINT_URL": moto_url,
        **FAKE_CREDENTIALS,
        **overrides,
    }


@dataclass
class Function:
    """One started function: its task root, runtime dir, process and Runtime API."""

    task_root: Path
    runtime: Path
    process: subprocess.Popen[bytes]
    api: RuntimeApiEmulator
    log: Path

    def invoke(self, request: dict[str, Any] | None, user: str = "alice") -> Recorded:
        token = {"authorization": f"Bearer {mint_token(SECRET, user)}"}
        if request is None:
            event = function_url_event("GET", "/health", headers=token)
        else:
            event = function_url_event("POST", "/chatkit", request, headers=token)
        return self.api.result(self.api.add_invocation(event), timeout=120)


@contextmanager
def started(
    artifact: Path, workspace: Path, moto_url: str, *, bytecode: bool = True, **overrides: str
) -> Iterator[Function]:
    """The function from a read-only copy of `artifact`, under the Runtime API emulator."""
    task_root = task_root_copy(artifact, workspace / "task", bytecode=bytecode)
    runtime = runtime_dir(workspace / "runtime")
    log = workspace / "function.log"
    with RuntimeApiEmulator() as api, log.open("wb") as output:
        env = lambda_environment(
            task_root, runtime, api.address, function_configuration(moto_url, **overrides)
        )
        process = subprocess.Popen(
            [str(runtime / "bootstrap")], cwd=task_root, env=env, stdout=output, stderr=output
        )
        try:
            yield Function(task_root, runtime, process, api, log)
        finally:
            api.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            make_writable(task_root)


@pytest.fixture(scope="module")
def artifact() -> Path:
    return harness_artifact()


@pytest.fixture(scope="module")
def function(
    artifact: Path, moto_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Function]:
    with started(artifact, tmp_path_factory.mktemp("function"), moto_url) as running:
        yield running


def sse(response: Recorded) -> list[dict[str, Any]]:
    assert response.kind == "response" and not response.trailers, response.body[:500]
    return response.sse_events()


# -- real turns ---------------------------------------------------------------------------------


def test_a_turn_streams_from_the_artifact(function: Function) -> None:
    response = function.invoke(create_thread("Tell me a story"))

    events = sse(response)
    deltas = [c for c in response.chunks if b"content_part.text_delta" in c.data]
    assert response.prelude()["statusCode"] == 200
    assert events[0]["type"] == "thread.created"
    assert len(deltas) > 3  # one chunk per event, as the model produces them


def test_a_tool_turn_streams_its_widget_from_the_artifact(function: Function) -> None:
    created = sse(function.invoke(create_thread("add a task to buy milk"), user="bob"))
    thread_id = created[0]["thread"]["id"]

    events = sse(function.invoke(add_message(thread_id, "show my tasks"), user="bob"))

    widgets = [
        e for e in events if e["type"] == "thread.item.done" and e["item"]["type"] == "widget"
    ]
    assert len(widgets) == 1
    assert "buy milk" in json.dumps(widgets[0]["item"]["widget"])


def test_an_upload_reaches_the_model_from_the_artifact(function: Function) -> None:
    request = {
        "type": "attachments.create",
        "params": {"name": "notes.txt", "size": 11, "mime_type": "text/plain"},
    }
    attachment = json.loads(function.invoke(request, user="carol").payload())
    upload = attachment["upload_descriptor"]
    put = httpx.put(upload["url"], content=b"hello world", headers=upload["headers"], timeout=10)
    message = create_thread("What did I send?")
    message["params"]["input"]["attachments"] = [attachment["id"]]

    events = sse(function.invoke(message, user="carol"))

    assert put.status_code == 200
    answers = [
        e["item"]
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
    ]
    assert "notes.txt" in answers[-1]["content"][0]["text"]


# -- what the artifact must never do ------------------------------------------------------------


def test_nothing_is_compiled_from_source_and_nothing_written_under_the_task_root(
    artifact: Path, moto_url: str, tmp_path: Path
) -> None:
    with started(artifact, tmp_path, moto_url) as fresh:
        before = tree_state(fresh.task_root)
        sse(fresh.invoke(create_thread("Hello")))
        written = written_files(before, fresh.task_root)
        compiled = compiled_from_source(fresh.runtime)

    assert compiled == []
    assert written == []


def test_an_artifact_without_bytecode_is_caught_compiling(
    artifact: Path, moto_url: str, tmp_path: Path
) -> None:
    with started(artifact, tmp_path, moto_url, bytecode=False) as fresh:
        assert fresh.invoke(None).prelude()["statusCode"] == 200
        compiled = compiled_from_source(fresh.runtime)

    assert any(path.endswith("/handlers/main.py") for path in compiled)
    assert any("/chatkit/" in path for path in compiled)


def test_a_module_missing_from_the_artifact_fails_the_init(
    artifact: Path, moto_url: str, tmp_path: Path
) -> None:
    incomplete = tmp_path / "incomplete"
    shutil.copytree(artifact, incomplete, ignore=shutil.ignore_patterns("jwt"))

    with started(incomplete, tmp_path / "run", moto_url) as broken:
        error = broken.api.wait_for_init_error(timeout=120).error()
        broken.process.wait(timeout=30)

    assert error["errorType"] == "ModuleNotFoundError"
    assert "jwt" in error["errorMessage"]


def test_snapshot_restore_py_comes_from_the_runtime_directory(
    artifact: Path, moto_url: str, tmp_path: Path
) -> None:
    with started(artifact, tmp_path, moto_url, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start") as f:
        assert f.api.restore_requested.wait(timeout=120)
        health = f.invoke(None)
        marks = (f.runtime / "marks.txt").read_text().splitlines()

    assert health.prelude()["statusCode"] == 200
    assert marks == ["snapshot_restore_py imported"]
