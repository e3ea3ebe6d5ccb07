"""How long a user waits for an error when DynamoDB stops answering, with production settings.

The store's DynamoDB client is bound as in production (connect 0.5 s, read 2 s, 3 attempts,
botocore's standard retry mode with its real, random backoff: for DynamoDB up to 25 then
50 ms after a timeout, up to 1 then 2 s after throttling). Two stalls:

- mid-turn: the thread exists and the answer streams; then DynamoDB accepts the request that
  saves the answer and never answers (each attempt lasts the read timeout, then times out).
  Measured: from the last streamed text to the `error` event, which must say storage is
  unavailable (not that the model was slow) and take the answer back (`thread.item.removed`);
- at the start: the table's endpoint is a TCP socket that accepts connections and never
  answers (a real network stall). Measured: from the request to StoreUnavailableError (the
  503 with retry-after of the HTTP layer).

RUNS runs of each; prints the median and the worst, against the bound the settings give
(`store.table.worst_case_seconds`); PASS when every run ends in the right error within it.

    uv run python bench/stall.py        # from the repository root (~2 min)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import boto3
from moto import mock_aws

from counting import SRC, use_offline_aws

use_offline_aws()
sys.path.insert(1, str(SRC.parent))

from chatkit.server import StreamingResult  # noqa: E402

from agent.server import AssistantServer, TurnLimits  # noqa: E402
from store import (  # noqa: E402
    DynamoDBStore,
    PayloadBucket,
    RequestContext,
    StoreUnavailableError,
    TaskStore,
    bind_table,
    create_table,
)
from store.table import worst_case_seconds  # noqa: E402
from tests.agent.conftest import add_message, create_thread, offline_models  # noqa: E402
from tests.support.dynamodb_faults import DynamoDBFaults, blackhole  # noqa: E402

RUNS = 5
REGION = "us-east-1"
USER = RequestContext(user_id="bench-stall")


async def events_of(
    server: AssistantServer, request: dict[str, Any]
) -> list[tuple[float, dict[str, Any]]]:
    """The request's events, each with the time it arrived."""
    result = await server.process(json.dumps(request), USER)
    assert isinstance(result, StreamingResult)
    return [(time.perf_counter(), json.loads(chunk[len(b"data: ") : -2])) async for chunk in result]


async def stall_mid_turn() -> tuple[float, str]:
    """Seconds from the last text delta to the error event, and the error's message."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="bench-stall")
        table = bind_table("bench-stall", region=REGION)  # production timeouts and attempts
        create_table(table)
        store = DynamoDBStore(table, PayloadBucket(s3, "bench-stall"))
        server = AssistantServer(store, TaskStore(table), offline_models(), TurnLimits())
        created = await events_of(server, create_thread("Hello"))
        thread_id = created[0][1]["thread"]["id"]
        faults = DynamoDBFaults.of(table)
        faults.stall("TransactWriteItems", times=100, after=1)  # the message goes, the answer not
        try:
            events = await events_of(server, add_message(thread_id, "Again"))
        finally:
            faults.released.set()
    deltas = [at for at, event in events if event["type"] == "thread.item.updated"]
    errors = [(at, event) for at, event in events if event["type"] == "error"]
    removed = [event for _, event in events if event["type"] == "thread.item.removed"]
    if not deltas or not errors or not removed:
        return float("inf"), f"unexpected events: {[event['type'] for _, event in events]}"
    return errors[-1][0] - deltas[-1], errors[-1][1].get("message", "")


async def stall_at_start() -> tuple[float, str]:
    """Seconds from the request to the error, with DynamoDB a socket that never answers."""
    with blackhole() as endpoint:
        table = bind_table("bench-stall", region=REGION, host=endpoint)
        server = AssistantServer(
            DynamoDBStore(table), TaskStore(table), offline_models(), TurnLimits()
        )
        started = time.perf_counter()
        try:
            await events_of(server, add_message("thr_stalled", "Hello"))
        except StoreUnavailableError as error:
            return time.perf_counter() - started, str(error)
    return float("inf"), "no error"


def main() -> int:
    bound = worst_case_seconds()
    print("# Time to an error when DynamoDB stalls\n")
    print(
        "Production settings: connect 0.5 s, read 2 s, 3 attempts, botocore's standard retry "
        "mode (random backoff; after a timeout up to 25 then 50 ms). Bound: "
        f"{bound:g} s per call (every attempt slow to connect and then silent, throttling-length "
        f"backoffs). {RUNS} runs of each stall.\n"
    )
    print("| stall | median s | worst s | error |")
    print("|---|---:|---:|---|")
    failed = False
    for name, stall, expected in (
        ("answer's save, mid-turn (error event)", stall_mid_turn, "Storage is unavailable"),
        ("every request, at the start (HTTP 503)", stall_at_start, "unavailable"),
    ):
        results = [asyncio.run(stall()) for _ in range(RUNS)]
        print(f"[stall] {name}: {[round(seconds, 2) for seconds, _ in results]}", file=sys.stderr)
        seconds = [value for value, _ in results]
        message = results[-1][1]
        print(f"| {name} | {statistics.median(seconds):.2f} | {max(seconds):.2f} | {message} |")
        wrong = [text for _, text in results if expected not in text or "model" in text]
        if max(seconds) > bound or wrong:
            failed = True
    print("\n## check\n")
    print(f"- every run ends in a storage error within {bound:g} s")
    print("- FAIL" if failed else "- PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
