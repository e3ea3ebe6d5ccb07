"""The real entry points, configured from the environment like on Lambda, over a moto server.

- The streaming entry point runs under the AWS Runtime Interface Emulator (the `aws-lambda-rie`
  binary shipped in the aws-sam-cli wheel), started the way the managed python3.13 runtime
  starts it: `run-streaming.sh <python> /var/runtime/bootstrap.py`. RIE accepts the
  streaming-mode response and returns it buffered, prelude and NULs included (it ignores
  trailers and timing: those are tested against the fake Runtime API).
- The buffered entry point (`handlers.lambda_buffered.handler`) is called like Lambda would.

The RIE binary is downloaded once (`pip download --no-deps aws-sam-cli`) into `.cache/`; the
RIE tests are skipped, saying why, only when that download is impossible.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from devtools.runtime_emulator import function_url_event
from devtools.tokens import mint_token
from handlers.lambda_events import LambdaContext
from store import bind_table, create_table
from tests.agent.conftest import create_thread

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
CACHE = ROOT / ".cache"
TABLE = "chatkit-rie"
BUCKET = "chatkit-rie-uploads"
SECRET = "rie-test-secret-that-is-long-enough-for-hs256"
RIE_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rie_binary() -> Path:
    """The emulator for this machine, from the cache or freshly extracted from aws-sam-cli."""
    architecture = RIE_ARCHITECTURES.get(platform.machine().lower())
    if sys.platform != "linux" or architecture is None:
        pytest.skip(f"the RIE binary runs on Linux x86_64/arm64, not {platform.platform()}")
    name = f"aws-lambda-rie-{architecture}"
    binary = CACHE / "aws-lambda-rie" / name
    if binary.exists():
        return binary
    CACHE.mkdir(exist_ok=True)
    (CACHE / ".gitignore").write_text("# Downloaded by the tests; never committed.\n*\n")
    with tempfile.TemporaryDirectory() as download:
        reasons = []
        for pip in _pip_commands():
            command = [*pip, "download", "--no-deps", "--only-binary=:all:", "aws-sam-cli"]
            try:
                subprocess.run(
                    [*command, "-d", download], check=True, capture_output=True, timeout=300
                )
                break
            except (OSError, subprocess.SubprocessError) as error:
                reasons.append(f"{' '.join(pip)}: {_reason(error)}")
        wheels = list(Path(download).glob("aws_sam_cli-*.whl"))
        if not wheels:
            pytest.skip("cannot download the aws-sam-cli wheel for RIE: " + "; ".join(reasons))
        binary.parent.mkdir(exist_ok=True)
        partial = binary.with_suffix(".partial")
        with zipfile.ZipFile(wheels[0]) as wheel, partial.open("wb") as target:
            shutil.copyfileobj(wheel.open(f"samcli/local/rapid/{name}"), target)
        partial.chmod(0o755)
        partial.rename(binary)
    return binary


def _pip_commands() -> list[list[str]]:
    commands = [[sys.executable, "-m", "pip"]]
    commands += [[found] for found in filter(None, map(shutil.which, ("pip3", "pip")))]
    if uv := shutil.which("uv"):
        commands.append([uv, "tool", "run", "pip"])
    return commands


def _reason(error: BaseException) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        lines = error.stderr.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit {error.returncode}"
    return str(error)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server with the table and bucket, reachable from other processes."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        create_table(bind_table(TABLE, region="us-east-1", host=url))
        boto3.client("s3", region_name="us-east-1", endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


def lambda_environment(moto_url: str) -> dict[str, str]:
    """The function's configuration, as template.yaml would set it (offline model)."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": "us-east-1",
        "CHATKIT_TABLE_NAME": TABLE,
        "CHATKIT_BUCKET_NAME": BUCKET,
        "AUTH_DEV_SECRET": SECRET,
        "MODEL_PROVIDER": "offline",
        "OFFLINE_WORD_DELAY_MS": "0",
    }


@pytest.fixture(scope="module")
def rie(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The invoke URL of RIE running our exec wrapper as the runtime."""
    binary = rie_binary()
    port = free_port()
    log = (tmp_path_factory.mktemp("rie") / "rie.log").open("wb")
    env = {
        **os.environ,
        **lambda_environment(moto_url),
        "LAMBDA_TASK_ROOT": str(SRC),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
    }
    command = [
        str(binary),
        "--runtime-interface-emulator-address",
        f"127.0.0.1:{port}",
        "--runtime-api-address",
        f"127.0.0.1:{free_port()}",
        str(SRC / "run-streaming.sh"),
        sys.executable,  # what the managed runtime passes: its interpreter and bootstrap
        "/var/runtime/bootstrap.py",
    ]
    process = subprocess.Popen(command, cwd=SRC, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"RIE exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError("RIE did not listen within 10 s")


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

    for name, value in lambda_environment(moto_url).items():
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
