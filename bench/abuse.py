"""What one hostile or costly request can make the server do, and whether the limits hold.

Serves the real app (`handlers.main.build_app`) on uvicorn at 127.0.0.1, over moto's in-process
AWS, and sends one request per cost vector: a long message to the offline model, feedback and
attachment lists, one file listed many times, dictation past the daily quota and over the
size limit, and a client that stops reading. For each it prints the wall time, the DynamoDB
and S3 requests, the peak memory, and the longest stall of the event loop and of a concurrent
`/health` probe. Then PASS/FAIL: no request may hold the event loop for more than 50 ms, and
none may cost more than the documented limits allow.

    uv run python bench/abuse.py                       # this checkout (~1 minute)
    uv run python bench/abuse.py --compare 62b506b     # and, side by side, the code of a commit

`--compare REV` measures `git archive REV src` in a child process with this same script, so
both columns come from the same requests (REV's column can take several minutes: it is the
unbounded code). Only this checkout's figures are checked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fake_aws import FAKE_CREDENTIALS  # noqa: E402
from tests.support.inputs import user_input  # noqa: E402

SECRET = "abuse-benchmark-secret-of-enough-length"
TABLE, BUCKET, REGION = "chatkit-bench-abuse", "chatkit-bench-abuse-uploads", "us-east-1"
LOOP_BLOCK_TARGET_MS = 50.0
SHORT_TURN_SECONDS = 3  # the slow reader's server: MAX_TURN_SECONDS
STALL_SECONDS = 15  # how long the slow reader stops reading
QUOTA_PROBES = 5
# The defaults the README documents (what this checkout's figures are checked against).
MAX_FEEDBACK_ITEMS = 50
MAX_ATTACHMENTS_PER_MESSAGE = 10
RESPONSE_GRACE_SECONDS = 2
# The cost vectors, in the order they run.
LONG = "a message of 40 KB of command words"
FEEDBACK_3000 = "feedback naming 3,000 ids"
FEEDBACK_50 = f"feedback naming {MAX_FEEDBACK_ITEMS} items (the limit)"
ATTACHMENTS_1000 = "a message naming 1,000 attachments"
FILE_40_TIMES = "one 2 MB file listed 40 times"
FILE_40_NEXT = "  the next turn in that thread"
TEN_FILES = f"{MAX_ATTACHMENTS_PER_MESSAGE} files of 2 MB (the limit)"
TEN_FILES_NEXT = "  the next turn in that thread "
DICTATION_SPENT = f"{QUOTA_PROBES} dictations past the daily quota"
RECORDING = "a recording of 4 MB"
SLOW_READER = f"a client that stops reading for {STALL_SECONDS} s"


@dataclass
class Figures:
    """What one request did."""

    status: str = ""
    wall_ms: float = 0.0
    dynamodb: dict[str, int] = field(default_factory=dict)
    s3: dict[str, int] = field(default_factory=dict)
    peak_mb: float | None = None
    loop_block_ms: float = 0.0
    health_wait_ms: float = 0.0
    note: str = ""

    @property
    def requests(self) -> int:
        return sum(self.dynamodb.values())


# -- counting --------------------------------------------------------------------------------


class Calls:
    """DynamoDB calls as moto receives them, S3 calls as the app's clients send them."""

    def __init__(self) -> None:
        self.dynamodb: Counter[str] = Counter()
        self.s3: Counter[str] = Counter()
        self._lock = threading.Lock()

    def install(self) -> None:
        import boto3
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler.call_action
        calls = self

        def counted(handler: Any) -> Any:
            target = str(handler.headers.get("X-Amz-Target", "")).rpartition(".")[2]
            with calls._lock:
                calls.dynamodb[target or "?"] += 1
            return original(handler)

        DynamoHandler.call_action = counted  # type: ignore[method-assign]
        boto3.setup_default_session(region_name=REGION)
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("before-call.s3.*", self._s3_call)

    def _s3_call(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.s3[model.name] += 1

    def reset(self) -> None:
        with self._lock:
            self.dynamodb.clear()
            self.s3.clear()


# -- the server, its event loop, and a probe -----------------------------------------------------


class LoopWatch:
    """Runs in the server's event loop: the longest time a 5 ms sleep overslept."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, loop.time() - start - 0.005)


class Server:
    """The app for `env` on uvicorn, in a thread with its own event loop."""

    def __init__(self, env: dict[str, str]) -> None:
        import uvicorn

        from handlers.main import build_app
        from settings import Settings

        self.watch = LoopWatch()
        app = build_app(Settings.from_env({**os.environ, **env}))
        REQUEST_LOG.install()
        config = uvicorn.Config(app, port=0, log_level="error", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        new_thread(self.url, "warm-up")  # first-request costs (imports, schemas) are not counted

    async def _serve(self) -> None:
        watching = asyncio.create_task(self.watch.run())
        await self._server.serve()
        watching.cancel()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class HealthProbe:
    """GET /health every 10 ms from another thread: the longest answer while measuring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                client.get(f"{self.url}/health")
                self.worst = max(self.worst, time.perf_counter() - started)
                self._stop.wait(0.01)


# -- requests ----------------------------------------------------------------------------------


def token(user: str) -> str:
    from devtools.tokens import mint_token

    return mint_token(SECRET, user)


def post(url: str, user: str, request: dict[str, Any], timeout: float = 600) -> httpx.Response:
    headers = {"authorization": f"Bearer {token(user)}"}
    return httpx.post(f"{url}/chatkit", json=request, headers=headers, timeout=timeout)


def events(response: httpx.Response) -> list[dict[str, Any]]:
    lines = response.text.splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def outcome(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        found = [event for event in events(response) if event["type"] == "error"]
        return f"{response.status_code}, error event" if found else f"{response.status_code}"
    return str(response.status_code)


def new_thread(url: str, user: str, text: str = "hello") -> tuple[str, list[str]]:
    """A thread of `user`: its id and the ids of its items."""
    request = {"type": "threads.create", "params": {"input": user_input(text)}}
    found = events(post(url, user, request))
    items = [event["item"]["id"] for event in found if event["type"] == "thread.item.done"]
    return str(found[0]["thread"]["id"]), items


def uploaded_file(url: str, user: str, size: int, name: str) -> str:
    """attachments.create, then the browser's PUT (straight to moto: it is in this process)."""
    import boto3

    from store.uploads import UploadBucket

    declared = {"name": name, "size": size, "mime_type": "text/plain"}
    attachment = post(url, user, {"type": "attachments.create", "params": declared}).json()
    s3 = boto3.client("s3", region_name=REGION)
    key = UploadBucket(s3, BUCKET).object_key(user, attachment["id"], name)  # type: ignore[arg-type]
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * size, Tagging="state=pending")
    return str(attachment["id"])


# -- measuring -----------------------------------------------------------------------------------


def measure(server: Server, calls: Calls, send: Callable[[], str], memory: bool) -> Figures:
    """Run `send` (one request; returns its outcome) with the counters, the loop watch and the
    health probe on; a second run under tracemalloc gives the peak memory."""
    calls.reset()
    server.watch.worst = 0.0
    with HealthProbe(server.url) as probe:
        started = time.perf_counter()
        status = send()
        wall = time.perf_counter() - started
    figures = Figures(
        status=status,
        wall_ms=wall * 1000,
        dynamodb=dict(calls.dynamodb),
        s3=dict(calls.s3),
        loop_block_ms=server.watch.worst * 1000,
        health_wait_ms=probe.worst * 1000,
    )
    if memory:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        send()
        figures.peak_mb = (tracemalloc.get_traced_memory()[1] - base) / 1e6
        tracemalloc.stop()
    return figures


def long_message(server: Server, calls: Calls) -> Figures:
    text = ("show what add mark task " * 2_000)[:40_000]
    request = {"type": "threads.create", "params": {"input": user_input(text)}}
    return measure(server, calls, lambda: outcome(post(server.url, "long", request)), True)


def feedback(server: Server, calls: Calls, ids: int, distinct: bool) -> Figures:
    thread_id, items = new_thread(server.url, f"feedback-{ids}-{distinct}")
    if distinct:
        for n in range(ids // 2):
            post(server.url, f"feedback-{ids}-{distinct}", add_message(thread_id, f"note {n}"))
        found = post(server.url, f"feedback-{ids}-{distinct}", list_items(thread_id, 200)).json()
        items = [item["id"] for item in found["data"]][:ids]
    item_ids = items[:ids] if distinct else [items[-1]] * ids
    request = {
        "type": "items.feedback",
        "params": {"thread_id": thread_id, "item_ids": item_ids, "kind": "positive"},
    }
    user = f"feedback-{ids}-{distinct}"
    return measure(server, calls, lambda: outcome(post(server.url, user, request)), False)


def add_message(thread_id: str, text: str, attachments: list[str] | None = None) -> dict[str, Any]:
    params = {"thread_id": thread_id, "input": user_input(text, attachments)}
    return {"type": "threads.add_user_message", "params": params}


def list_items(thread_id: str, limit: int) -> dict[str, Any]:
    return {"type": "items.list", "params": {"thread_id": thread_id, "limit": limit}}


def attachments(
    server: Server, calls: Calls, user: str, ids: list[str]
) -> tuple[Figures, Figures | None]:
    """A new thread whose message names `ids`, then the next turn in that thread."""
    created: list[str] = []

    def create() -> str:
        request = {"type": "threads.create", "params": {"input": user_input("see files", ids)}}
        response = post(server.url, user, request)
        found = events(response) if response.status_code == 200 else []
        created.extend(
            event["thread"]["id"] for event in found if event["type"] == "thread.created"
        )
        return outcome(response)

    first = measure(server, calls, create, True)
    if not created:
        return first, None

    def next_turn() -> str:
        return outcome(post(server.url, user, add_message(created[0], "and now?")))

    return first, measure(server, calls, next_turn, True)


def dictation(server: Server, calls: Calls, fake: Any) -> tuple[Figures, Figures]:
    """Five dictations after the day's quota is spent, then one recording of 4 MB."""
    small = {"audio_base64": base64.b64encode(b"OggS" * 25).decode(), "mime_type": "audio/ogg"}
    post(server.url, "dictation", {"type": "input.transcribe", "params": small})  # the quota
    fake.transcripts.clear()

    def over_quota() -> str:
        request = {"type": "input.transcribe", "params": small}
        statuses = [post(server.url, "dictation", request).status_code for _ in range(QUOTA_PROBES)]
        return f"{statuses.count(200)} of {QUOTA_PROBES} served"

    spent = measure(server, calls, over_quota, False)
    spent.note = f"{len(fake.transcripts)} paid transcriptions"
    fake.transcripts.clear()
    big = {"audio_base64": base64.b64encode(b"\0" * 4_000_000).decode(), "mime_type": "audio/ogg"}
    sent: list[int] = []

    def large() -> str:
        request = {"type": "input.transcribe", "params": big}
        answer = outcome(post(server.url, "dictation-big", request))
        sent.append(len(fake.transcripts))  # the first run's count (a second one measures memory)
        return answer

    recording = measure(server, calls, large, True)
    recording.note = f"{sent[0]} sent to the provider"
    return spent, recording


def slow_reader(server: Server, calls: Calls) -> Figures:
    """A client that reads the response headers, then nothing for STALL_SECONDS."""
    # Its answer quotes the first message: ~19,000 events, ~5 MB of SSE, more than the socket
    # buffers of 127.0.0.1 absorb, so the server's sends block while the client does not read.
    first = "word " * 19_000
    thread_id, _ = new_thread(server.url, "slow", first)
    request = add_message(thread_id, "what was my first message?")
    REQUEST_LOG.durations.clear()

    def stall() -> str:
        with socket.socket() as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
            connection.connect(("127.0.0.1", server.port))
            body = json.dumps(request).encode()
            connection.sendall(
                b"POST /chatkit HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                + f"authorization: Bearer {token('slow')}\r\n".encode()
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = connection.recv(64).split(b"\r\n")[0].decode()
            time.sleep(STALL_SECONDS)  # the client stops reading: this is the attack itself
            connection.settimeout(30)
            while connection.recv(65536):
                pass
        return status.removeprefix("HTTP/1.1 ")

    figures = measure(server, calls, stall, False)
    held = REQUEST_LOG.durations.get("threads.add_user_message")
    figures.note = f"response held {held:.1f} s" if held else "response never finished"
    return figures


class RequestLog(logging.Handler):
    """The app's own request log, kept off stdout: how long each request held the server."""

    def __init__(self) -> None:
        super().__init__()
        self.durations: dict[str, float] = {}

    def install(self) -> None:
        logger = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "chatkit-lambda"))
        logger.handlers = [self]
        logger.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "chatkit request":
            kind = str(getattr(record, "request_type", ""))
            self.durations[kind] = float(getattr(record, "duration_ms", 0)) / 1000


REQUEST_LOG = RequestLog()


# -- the run -----------------------------------------------------------------------------------


@contextmanager
def offline_aws() -> Iterator[Calls]:
    from moto import mock_aws

    env = {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "CHATKIT_TABLE_NAME": TABLE,
        "CHATKIT_BUCKET_NAME": BUCKET,
        "AUTH_DEV_SECRET": SECRET,
        "OFFLINE_WORD_DELAY_MS": "0",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    for name in [
        name for name in os.environ if name.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))
    ]:
        del os.environ[name]
    os.environ.update(env)
    calls = Calls()
    with mock_aws():
        calls.install()
        import boto3

        from store import bind_table, create_table

        create_table(bind_table(TABLE, region=REGION))
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield calls


def run_vectors() -> dict[str, Figures | None]:
    results: dict[str, Figures | None] = {}
    with offline_aws() as calls:
        main = Server({})
        results[LONG] = long_message(main, calls)
        results[FEEDBACK_3000] = feedback(main, calls, 3_000, distinct=False)
        results[FEEDBACK_50] = feedback(main, calls, MAX_FEEDBACK_ITEMS, distinct=True)
        print("  long message, feedback", file=sys.stderr)
        small = uploaded_file(main.url, "many", 1_000, "small.txt")
        results[ATTACHMENTS_1000], _ = attachments(main, calls, "many", [small] * 1_000)
        big = uploaded_file(main.url, "big", 2_000_000, "big.txt")
        results[FILE_40_TIMES], results[FILE_40_NEXT] = attachments(main, calls, "big", [big] * 40)
        files = [uploaded_file(main.url, "ten", 2_000_000, f"f{n}.txt") for n in range(10)]
        results[TEN_FILES], results[TEN_FILES_NEXT] = attachments(main, calls, "ten", files)
        print("  attachments", file=sys.stderr)
        main.stop()
        results[DICTATION_SPENT], results[RECORDING] = dictation_vectors(calls)
        print("  dictation", file=sys.stderr)
        short = Server({"MAX_TURN_SECONDS": str(SHORT_TURN_SECONDS)})
        results[SLOW_READER] = slow_reader(short, calls)
        short.stop()
    return results


def dictation_vectors(calls: Calls) -> tuple[Figures, Figures]:
    from tests.support.fake_openai import fake_openai_server

    with fake_openai_server() as fake:
        server = Server(
            {
                "MODEL_PROVIDER": "openai-compatible",
                "MODEL_BASE_URL": fake.base_url,
                "MODEL_API_KEY": "sk-bench",
                "TRANSCRIPTION_MODEL_NAME": "whisper-1",
                "DAILY_TURN_LIMIT": "1",
            }
        )
        try:
            return dictation(server, calls, fake)
        finally:
            server.stop()


def checks(results: dict[str, Figures | None]) -> list[str]:
    """What this checkout must satisfy; returns the failures."""
    failures = []
    for name, figures in results.items():
        if figures is not None and figures.loop_block_ms > LOOP_BLOCK_TARGET_MS:
            failures.append(f"{name.strip()}: event loop held {figures.loop_block_ms:.0f} ms")
    limit = results[FEEDBACK_50]
    if limit is None or limit.dynamodb.get("UpdateItem", 0) > MAX_FEEDBACK_ITEMS:
        failures.append("feedback wrote more rows than it names")
    for name in (FEEDBACK_3000, ATTACHMENTS_1000, FILE_40_TIMES):
        figures = results[name]
        if figures is None or not figures.status.startswith("4") or _writes(figures):
            failures.append(f"{name}: not refused before writing")
    ten = results[TEN_FILES]
    if ten is None or ten.s3.get("GetObject", 0) > MAX_ATTACHMENTS_PER_MESSAGE:
        failures.append("files at the limit: a file was read more than once in a turn")
    spent = results[DICTATION_SPENT]
    if spent is None or not spent.status.startswith("0 of") or not spent.note.startswith("0 "):
        failures.append("dictation past the quota was served")
    recording = results[RECORDING]
    if recording is None or not recording.note.startswith("0 "):
        failures.append("a recording over the size limit reached the provider")
    slow = results[SLOW_READER]
    held = _held_seconds(slow)
    if held is None or held > SHORT_TURN_SECONDS + RESPONSE_GRACE_SECONDS + 1:
        failures.append(f"the slow reader held the response: {slow.note if slow else '-'}")
    return failures


def _writes(figures: Figures) -> int:
    return sum(
        figures.dynamodb.get(name, 0) for name in ("UpdateItem", "PutItem", "BatchWriteItem")
    )


def _held_seconds(figures: Figures | None) -> float | None:
    if figures is None or not figures.note.startswith("response held "):
        return None
    return float(figures.note.split()[2])


def report(columns: dict[str, dict[str, Figures | None]]) -> str:
    lines = []
    for title, results in columns.items():
        lines += [
            f"### {title}",
            "",
            "| request | outcome | wall ms | DynamoDB requests | S3 requests | peak MB "
            "| loop held ms | /health waited ms |",
            "|---|---|---:|---|---|---:|---:|---:|",
        ]
        for name, figures in results.items():
            if figures is None:
                lines.append(f"| {name.strip()} | (not reached: refused before) | | | | | | |")
                continue
            peak = "" if figures.peak_mb is None else f"{figures.peak_mb:,.1f}"
            outcome_text = figures.status + (f"; {figures.note}" if figures.note else "")
            lines.append(
                f"| {name.strip()} | {outcome_text} | {figures.wall_ms:,.0f} | "
                f"{_calls(figures.dynamodb)} | {_calls(figures.s3)} | {peak} | "
                f"{figures.loop_block_ms:,.1f} | {figures.health_wait_ms:,.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _calls(counter: dict[str, int]) -> str:
    total = sum(counter.values())
    if not total:
        return "0"
    return (
        f"{total:,} ("
        + ", ".join(f"{count:,} {name}" for name, count in sorted(counter.items()))
        + ")"
    )


def compare(revision: str) -> dict[str, Figures | None]:
    """This script, run on `revision`'s src in a child process."""
    with tempfile.TemporaryDirectory() as directory:
        archive = subprocess.run(
            ["git", "archive", revision, "src"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", directory], input=archive.stdout, check=True)
        child = subprocess.run(
            [sys.executable, __file__, "--src", f"{directory}/src", "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    raw: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return {name: None if value is None else Figures(**value) for name, value in raw.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", metavar="REV", help="also measure the src of this commit")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    sys.path[:0] = [str(options.src), str(ROOT)]
    before = compare(options.compare) if options.compare else None
    print("measuring this checkout", file=sys.stderr)
    results = run_vectors()
    if options.json:
        print(json.dumps({name: None if f is None else asdict(f) for name, f in results.items()}))
        return 0
    columns = {"this checkout": results}
    if before is not None:
        columns = {f"before ({options.compare})": before, "after (this checkout)": results}
    print(report(columns))
    failures = checks(results)
    for failure in failures:
        print(f"FAIL {failure}")
    print("PASS" if not failures else f"{len(failures)} FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
