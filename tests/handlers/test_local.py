"""The local server for real: `python -m devtools.local` in a subprocess (moto, uvicorn, the
offline model), driven by the terminal client as a developer would drive it."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from devtools.local import dev_secret
from devtools.terminal_client import main as chat_main
from devtools.terminal_client import resolve_token
from devtools.tokens import token_main

REPO = Path(__file__).resolve().parents[2]
# An upper bound only: two servers importing the agent stack on a busy machine.
STARTUP_SECONDS = 240
COMMAND_SECONDS = 30
# Never inherited: the test must use the offline model, its own secret, and moto only.
INHERITED_NOT = ("MODEL_", "OPENAI_", "AUTH_", "OIDC_", "CHATKIT_", "AWS_ENDPOINT_URL")


@dataclass
class LocalServer:
    url: str
    env: dict[str, str]
    secret_file: Path
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def startup_text(self) -> str:
        return self.stdout.read_text()


def local_env(secret_file: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(INHERITED_NOT)}
    env.update(
        PYTHONPATH=str(REPO / "src"),
        CHATKIT_DEV_SECRET_FILE=str(secret_file),  # the repo's .cache is not touched
        OFFLINE_WORD_DELAY_MS="40",  # slow enough to see the answer arrive in pieces
        PYTHONUNBUFFERED="1",
    )
    return env


def start_server(directory: Path) -> LocalServer:
    """Launch the local server on ports it binds itself (0), its output in files (a full pipe
    would block it); its URL is known once it prints its startup text."""
    secret_file = directory / "dev-secret"
    env = local_env(secret_file)
    stdout, stderr = directory / "stdout.txt", directory / "stderr.txt"
    command = [sys.executable, "-m", "devtools.local", "--no-env-file", "--port", "0"]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=REPO)
    return LocalServer("", env, secret_file, process, stdout, stderr)


def wait_until_ready(server: LocalServer) -> None:
    """Wait for the startup text (printed once the socket listens), then check /health, for at
    most STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while "Ctrl-C stops the server" not in server.startup_text():
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the local server did not start:\n{server.stderr.read_text()}")
        time.sleep(0.05)  # polling the child's output file
    server.url = re.search(r"ChatKit API  (\S+)", server.startup_text()).group(1)  # type: ignore[union-attr]
    assert _healthy(server.url.removesuffix("/chatkit") + "/health")


def stop(server: LocalServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, LocalServer]]:
    """Two servers, started side by side to halve the wait: one shared by the tests, one for
    the test that stops it. Both are always stopped."""
    started: list[LocalServer] = []
    try:
        for name in ("shared", "spare"):
            started.append(start_server(tmp_path_factory.mktemp(name)))
        for each in started:
            wait_until_ready(each)
        yield started[0], started[1]
    finally:
        for each in started:
            stop(each)


@pytest.fixture
def server(servers: tuple[LocalServer, LocalServer]) -> LocalServer:
    return servers[0]


def chat(server: LocalServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the terminal client against the server; each test uses its own --user."""
    return subprocess.run(
        [sys.executable, "-m", "devtools.terminal_client", "--url", server.url, *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def thread_id_of(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("thread: ")]
    assert lines, output
    return lines[-1].removeprefix("thread: ")


def test_startup_text_gives_url_token_model_and_how_to_connect(server: LocalServer) -> None:
    text = server.startup_text()
    assert f"ChatKit API  {server.url}" in text
    assert "offline" in text
    assert 'domainKey: "local-dev"' in text
    assert "Authorization: `Bearer ${token}`" in text
    assert "./scripts/chat" in text
    token = text.split("Token", 1)[1].split()[0]
    claims = jwt.decode(token, server.secret_file.read_text().strip(), ["HS256"])
    assert claims["sub"] == "local-user"
    assert 11.9 * 3600 < claims["exp"] - claims["iat"] <= 12 * 3600


def test_printed_token_is_accepted(server: LocalServer) -> None:
    token = server.startup_text().split("Token", 1)[1].split()[0]

    result = chat(server, "--token", token, "--list")

    assert result.returncode == 0, result.stderr


def test_answer_streams_to_the_terminal_as_it_is_written(server: LocalServer) -> None:
    command = [sys.executable, "-m", "devtools.terminal_client", "--url", server.url]
    command += ["--user", "streamer", "add a task to buy milk"]
    client = subprocess.Popen(command, env=server.env, stdout=subprocess.PIPE)
    assert client.stdout is not None
    watchdog = threading.Timer(COMMAND_SECONDS, client.kill)  # a hung client ends the reads
    watchdog.start()
    chunks: list[bytes] = []
    try:
        # os.read returns whatever has arrived so far: one chunk per flush the client made.
        while chunk := os.read(client.stdout.fileno(), 4096):
            chunks.append(chunk)
        assert client.wait(timeout=COMMAND_SECONDS) == 0
    finally:
        watchdog.cancel()
        client.kill()
        client.wait()
        client.stdout.close()

    output = b"".join(chunks).decode()
    workflow = "[workflow] Task assistant is answering\n           Added task #1 “buy milk”\n"
    assert output.startswith(workflow + "Added task #1: buy milk.\nthread: thr_")
    assert sum(1 for chunk in chunks if b"thread:" not in chunk) >= 3, chunks


def test_continuing_a_thread_keeps_its_id(server: LocalServer) -> None:
    first = chat(server, "--user", "continuer", "add a task to buy milk")
    thread_id = thread_id_of(first.stdout)

    second = chat(server, "--user", "continuer", "--thread", thread_id, "add a task to call mom")

    assert second.returncode == 0, second.stderr
    assert "Added task #2: call mom." in second.stdout
    assert thread_id_of(second.stdout) == thread_id


def test_task_list_prints_as_the_widget_copy_text(server: LocalServer) -> None:
    chat(server, "--user", "lister", "add a task to buy milk")

    result = chat(server, "--user", "lister", "show my tasks")

    assert result.returncode == 0, result.stderr
    assert "[widget] 1 task, 0 done\n         #1 [ ] buy milk\n" in result.stdout


def test_an_attached_file_is_uploaded_and_answered_from(
    server: LocalServer, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello world")

    result = chat(server, "--user", "attacher", "--attach", str(notes), "what is in my file?")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[attached] notes.txt (text/plain, 11 bytes)\n")
    assert "[workflow] Files assistant is answering" in result.stdout
    assert 'notes.txt (text/plain, 11 bytes) starting "hello world"' in result.stdout


def test_an_unreadable_attachment_fails_before_anything_is_sent(
    server: LocalServer, tmp_path: Path
) -> None:
    result = chat(server, "--user", "attacher", "--attach", str(tmp_path / "missing.txt"), "hi")

    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read ")


def test_list_shows_the_users_threads(server: LocalServer) -> None:
    thread_id = thread_id_of(chat(server, "--user", "threads", "add a task to buy milk").stdout)

    result = chat(server, "--user", "threads", "--list")

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{thread_id}  20")
    assert line.endswith("Add a task to buy milk")


def test_history_prints_the_threads_items(server: LocalServer) -> None:
    thread_id = thread_id_of(chat(server, "--user", "historian", "add a task to buy milk").stdout)

    result = chat(server, "--user", "historian", "--thread", thread_id, "--history")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "you: add a task to buy milk",
        "[workflow] Task assistant is answering",
        "           Added task #1 “buy milk”",
        "assistant: Added task #1: buy milk.",
    ]


def test_request_without_token_is_unauthorized(server: LocalServer) -> None:
    response = httpx.post(server.url, json={"type": "threads.list", "params": {}}, timeout=10)

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "missing bearer token"


def test_http_error_prints_the_servers_message_and_fails(server: LocalServer) -> None:
    result = chat(server, "--token", "not-a-jwt", "--list")

    assert result.returncode == 1
    assert result.stderr == "error: HTTP 401: malformed token\n"


def test_unknown_thread_fails_with_not_found(server: LocalServer) -> None:
    result = chat(server, "--user", "lost", "--thread", "thr_missing", "hello")

    assert result.returncode == 1
    assert "HTTP 404: Thread thr_missing not found" in result.stderr


def test_cors_preflight_from_localhost_is_allowed(server: LocalServer) -> None:
    response = httpx.options(
        server.url,
        headers={
            "origin": "http://localhost:3000",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
        timeout=10,
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "authorization" in response.headers["access-control-allow-headers"]


def test_cors_preflight_from_another_site_is_refused(server: LocalServer) -> None:
    response = httpx.options(
        server.url,
        headers={"origin": "https://example.com", "access-control-request-method": "POST"},
        timeout=10,
    )

    assert "access-control-allow-origin" not in response.headers


def test_upload_url_takes_a_browser_put_from_localhost(server: LocalServer) -> None:
    token = resolve_token(server.url, None, "uploader", server.env)
    attachment = httpx.post(
        server.url,
        json={
            "type": "attachments.create",
            "params": {"name": "notes.txt", "size": 11, "mime_type": "text/plain"},
        },
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    upload = attachment["upload_descriptor"]
    browser = {"origin": "http://localhost:3000"}

    preflight = httpx.options(
        upload["url"],
        headers={**browser, "access-control-request-method": "PUT"},
        timeout=10,
    )
    put = httpx.put(
        upload["url"], content=b"hello world", headers={**browser, **upload["headers"]}, timeout=10
    )

    assert upload["url"].startswith("http://127.0.0.1:")
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert put.status_code == 200


def moto_endpoint(server: LocalServer) -> str:
    match = re.search(r"Moto\s+(http://127\.0\.0\.1:\d+)", server.startup_text())
    assert match, server.startup_text()
    return match.group(1)


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example"])
def test_moto_refuses_a_web_page_of_another_origin(server: LocalServer, origin: str) -> None:
    list_tables = {
        "x-amz-target": "DynamoDB_20120810.ListTables",
        "content-type": "application/x-amz-json-1.0",
        "authorization": "AWS4-HMAC-SHA256 "
        "Credential=testing/20250101/us-east-1/dynamodb/aws4_request",
    }
    endpoint = moto_endpoint(server)

    preflight = httpx.options(
        endpoint, headers={"origin": origin, "access-control-request-method": "POST"}, timeout=10
    )
    read = httpx.post(
        endpoint, content=b"{}", headers={**list_tables, "origin": origin}, timeout=10
    )

    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert read.status_code == 403 and "TableNames" not in read.text


def test_moto_refuses_a_request_for_another_host(server: LocalServer) -> None:
    # DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1.
    response = httpx.get(moto_endpoint(server), headers={"host": "evil.example"}, timeout=10)

    assert response.status_code == 403


def test_scripts_token_mints_a_token_the_server_accepts(
    server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert token_main(["--user", "minted", "--secret-file", str(server.secret_file)]) == 0
    token = capsys.readouterr().out.strip()

    result = chat(server, "--token", token, "add a task to buy milk")

    assert result.returncode == 0, result.stderr
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "minted"


def test_ctrl_c_stops_everything_cleanly(servers: tuple[LocalServer, LocalServer]) -> None:
    spare = servers[1]

    spare.process.send_signal(signal.SIGINT)

    assert spare.process.wait(timeout=15) == 0
    assert "Traceback" not in spare.stderr.read_text()
    assert "Finished server process" in spare.stderr.read_text()


def test_client_without_a_token_for_a_remote_url_says_what_to_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHATKIT_TOKEN", raising=False)
    err = io.StringIO()

    assert chat_main(["--url", "https://example.com/chatkit", "hi"], io.StringIO(), err) == 1
    assert "pass --token or set CHATKIT_TOKEN" in err.getvalue()


def test_dev_secret_is_created_once_and_kept_private(tmp_path: Path) -> None:
    secret_file = tmp_path / "cache" / "dev-secret"

    first = dev_secret({}, secret_file)

    assert dev_secret({}, secret_file) == first  # tokens survive a restart
    assert len(first) >= 32
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert dev_secret({"AUTH_DEV_SECRET": "from-env"}, secret_file) == "from-env"


def test_full_upload_reaches_the_model_and_is_deleted_with_its_thread(server: LocalServer) -> None:
    import json
    import re

    import boto3

    headers = {"authorization": f"Bearer {resolve_token(server.url, None, 'filer', server.env)}"}

    def call(body: dict[str, object]) -> httpx.Response:
        return httpx.post(server.url, json=body, headers=headers, timeout=30)

    created = call(
        {
            "type": "attachments.create",
            "params": {"name": "notes.txt", "size": 11, "mime_type": "text/plain"},
        }
    ).json()
    upload = created["upload_descriptor"]
    assert httpx.put(upload["url"], content=b"hello world", headers=upload["headers"]).is_success

    answer = call(
        {
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": "what is in this file?"}],
                    "attachments": [created["id"]],
                    "inference_options": {},
                }
            },
        }
    )
    events = [
        json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")
    ]
    text = json.dumps([e for e in events if e["type"] == "thread.item.done"])
    assert 'notes.txt (text/plain, 11 bytes) starting \\"hello world\\"' in text
    assert "upload_descriptor" not in text  # the one-time upload URL is not echoed back

    moto_url = re.search(r"Moto\s+(http://127\.0\.0\.1:\d+)", server.startup_text())
    assert moto_url is not None
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url.group(1),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )

    def uploads() -> list[str]:
        listing = s3.list_objects_v2(Bucket="chatkit-lambda-uploads", Prefix="uploads/filer/")
        return [entry["Key"] for entry in listing.get("Contents", [])]

    assert uploads() == [f"uploads/filer/{created['id']}/notes.txt"]
    call({"type": "threads.delete", "params": {"thread_id": events[0]["thread"]["id"]}})
    assert uploads() == []
