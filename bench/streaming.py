"""Streaming latency of the streaming Lambda entry point.

One run, the same request every time (`threads.create` "Tell me a story", offline model with a
fixed 20 ms between words, store on moto's in-process `mock_aws`), through three entry points:

  (a) the streaming entry point (`handlers.lambda_streaming.serve`) behind the fake Runtime API
      of the tests: time from queueing the event to each chunk's arrival at the fake;
  (b) uvicorn on 127.0.0.1, read with `httpx.stream`: time from sending the request to each
      event's arrival;
  (c) Mangum (the buffered entry point): the whole response comes back when it is complete.

Each path runs `RUNS` times after one warm-up, interleaved; medians are printed. The GIL
switch interval is lowered to 0.5 ms, since arrivals are timestamped by threads of this process.

The cold start is measured on the built artifact by `bench/cold_start.py`.
Prints Markdown and PASS/FAIL lines; exits 1 on a FAIL.

    uv run python bench/streaming.py        # from the repository root
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import boto3
import httpx
import uvicorn
from fastapi import FastAPI
from mangum import Mangum
from moto import mock_aws
from starlette.requests import Request

from counting import SRC, use_offline_aws

ROOT = SRC.parent
use_offline_aws()
sys.path.insert(1, str(ROOT))

from agent.offline_model import OfflineModel  # noqa: E402
from agent.providers import Models  # noqa: E402
from agent.server import AssistantServer, TurnLimits  # noqa: E402
from devtools.runtime_emulator import RuntimeApiEmulator, function_url_event  # noqa: E402
from handlers.app import create_app  # noqa: E402
from handlers.lambda_events import ASGIApp, LambdaContext  # noqa: E402
from handlers.lambda_streaming import RuntimeApi, RuntimeApiError, serve  # noqa: E402
from store import DynamoDBStore, PayloadBucket, RequestContext, bind_table, create_table  # noqa: E402
from store.tasks import TaskStore  # noqa: E402

WORD_DELAY_SECONDS = 0.020
RUNS = 9
REQUEST = {
    "type": "threads.create",
    "params": {
        "input": {
            "content": [{"type": "input_text", "text": "Tell me a story"}],
            "attachments": [],
            "inference_options": {},
        }
    },
}
STREAMING_TARGET = 1.1


@dataclass(frozen=True)
class Timing:
    """When the events of one answer arrived, in seconds after the request was sent."""

    arrivals: list[float]

    @property
    def first(self) -> float:
        return self.arrivals[0]

    @property
    def mean_gap(self) -> float:
        gaps = [
            later - earlier
            for earlier, later in zip(self.arrivals, self.arrivals[1:], strict=False)
        ]
        return statistics.fmean(gaps) if gaps else 0.0

    @property
    def spread(self) -> float:
        return self.arrivals[-1] - self.arrivals[0]


async def as_alice(request: Request) -> RequestContext:
    return RequestContext(user_id="alice")


def build_app(store: DynamoDBStore, tasks: TaskStore) -> FastAPI:
    models = Models("offline", OfflineModel(WORD_DELAY_SECONDS), None, None)
    return create_app(AssistantServer(store, tasks, models, TurnLimits()), as_alice)


def event_count(body: bytes) -> int:
    return body.count(b"\n\n")


# -- the three entry points ---------------------------------------------------------------------


@contextmanager
def streaming_entry_point(app: ASGIApp) -> Iterator[Callable[[], Timing]]:
    """(a): our runtime loop in a thread, behind the fake Runtime API."""
    fake = RuntimeApiEmulator()

    def loop() -> None:
        with suppress(RuntimeApiError):
            asyncio.run(serve(RuntimeApi(fake.address), app))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def measure() -> Timing:
        sent = time.perf_counter()
        answer = fake.result(fake.add_invocation(function_url_event("POST", "/chatkit", REQUEST)))
        assert answer.kind == "response" and not answer.trailers
        return Timing([chunk.arrived - sent for chunk in answer.chunks[1:]])

    try:
        yield measure
    finally:
        fake.close()
        thread.join(timeout=30)


@contextmanager
def uvicorn_entry_point(app: ASGIApp) -> Iterator[Callable[[], Timing]]:
    """(b): uvicorn in a thread, read with httpx as a browser would."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = httpx.Client(timeout=60)

    def measure() -> Timing:
        arrivals: list[float] = []
        pending = b""
        sent = time.perf_counter()
        with client.stream("POST", f"http://127.0.0.1:{port}/chatkit", json=REQUEST) as response:
            for piece in response.iter_raw():
                now = time.perf_counter() - sent
                pending += piece
                complete = event_count(pending)
                arrivals += [now] * complete
                pending = pending.rsplit(b"\n\n", 1)[-1] if complete else pending
        return Timing(arrivals)

    try:
        yield measure
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def mangum_entry_point(app: FastAPI) -> Iterator[Callable[[], Timing]]:
    """(c): Mangum, as `handlers.lambda_buffered` runs it."""
    handler = Mangum(app, lifespan="off")

    def measure() -> Timing:
        sent = time.perf_counter()
        answer = handler(function_url_event("POST", "/chatkit", REQUEST), LambdaContext("bench"))
        done = time.perf_counter() - sent
        return Timing([done] * event_count(answer["body"].encode()))

    yield measure


def measure_streaming() -> dict[str, list[Timing]]:
    """RUNS timings of each entry point (after one warm-up), interleaved."""
    with mock_aws():
        table = bind_table("chatkit-bench", region="us-east-1")
        create_table(table)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="chatkit-bench")
        store = DynamoDBStore(table, PayloadBucket(s3, "chatkit-bench"))
        tasks = TaskStore(table)
        timings: dict[str, list[Timing]] = {"a": [], "b": [], "c": []}
        with (
            streaming_entry_point(build_app(store, tasks)) as streaming,
            uvicorn_entry_point(build_app(store, tasks)) as local,
            mangum_entry_point(build_app(store, tasks)) as buffered,
        ):
            paths = {"a": streaming, "b": local, "c": buffered}
            for run in range(RUNS + 1):
                for name, measure in paths.items():
                    timing = measure()
                    if run:
                        timings[name].append(timing)
        return timings


# -- report -------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def main() -> int:
    # The fake Runtime API, uvicorn and the clients timestamp arrivals in threads of this
    # process: hand the GIL over faster than the default 5 ms so waiting for it does not
    # dominate millisecond figures (in Lambda the Runtime API is another process).
    sys.setswitchinterval(0.0005)
    timings = measure_streaming()
    first = {name: statistics.median(t.first for t in runs) for name, runs in timings.items()}
    gap = {name: statistics.median(t.mean_gap for t in runs) for name, runs in timings.items()}
    spread = {name: statistics.median(t.spread for t in runs) for name, runs in timings.items()}
    events = {name: len(runs[0].arrivals) for name, runs in timings.items()}
    labels = {
        "a": "(a) streaming entry point, fake Runtime API",
        "b": "(b) uvicorn",
        "c": "(c) Mangum (buffered)",
    }
    print(f"## Streaming: threads.create, offline model at {ms(WORD_DELAY_SECONDS)} ms/word")
    print(f"\nMedians of {RUNS} runs (after a warm-up).\n")
    print(
        "| entry point | first SSE byte (ms) | mean gap between events (ms) "
        "| first to last event (ms) | events |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, label in labels.items():
        print(
            f"| {label} | {ms(first[name])} | {ms(gap[name])} | {ms(spread[name])} "
            f"| {events[name]} |"
        )
    first_ratio, gap_ratio = first["a"] / first["b"], gap["a"] / gap["b"]
    print(f"\n(a)/(b): first SSE byte {first_ratio:.2f}x, mean gap {gap_ratio:.2f}x")
    print(
        f"(c): first byte after {ms(first['c'])} ms, when (a) had already delivered its last "
        f"event after {ms(first['a'] + spread['a'])} ms; all {events['c']} events at once "
        f"(first to last: {ms(spread['c'])} ms)"
    )

    checks = [
        (
            f"(a)/(b) first SSE byte {first_ratio:.2f}x <= {STREAMING_TARGET}x",
            first_ratio <= STREAMING_TARGET,
        ),
        (
            f"(a)/(b) mean gap {gap_ratio:.2f}x <= {STREAMING_TARGET}x",
            gap_ratio <= STREAMING_TARGET,
        ),
        (
            "(a) streams: its first event arrives before half of the answer's time",
            first["a"] < (first["a"] + spread["a"]) / 2,
        ),
        (
            "(c) buffers: its first byte comes after (a)'s last event, all events at once",
            first["c"] >= 0.9 * (first["a"] + spread["a"]) and spread["c"] == 0,
        ),
    ]
    for description, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {description}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
