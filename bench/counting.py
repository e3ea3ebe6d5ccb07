"""What the benchmarks share: an offline AWS environment, botocore-level request counting, and
a way to run one ChatKit request to completion.

Counting happens on the clients the store itself uses: one `before-call` event is one API
call (retries of the same call are not counted twice), items read come from the parsed
responses.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatkit.server import NonStreamingResult, StreamingResult

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC.parent))

from tests.support.fake_aws import use_fake_aws  # noqa: E402
from tests.support.inputs import user_input  # noqa: E402

__all__ = ["user_input"]


def use_offline_aws() -> None:
    """Fake credentials, region us-east-1, no endpoint overrides: every call must hit moto.

    Call before the first AWS client is created; also puts `src` on `sys.path`.
    """
    use_fake_aws()
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))


@dataclass
class Measurement:
    calls: Counter[str] = field(default_factory=Counter)  # DynamoDB API calls by name
    items: Counter[str] = field(default_factory=Counter)  # items read by API name
    s3: Counter[str] = field(default_factory=Counter)  # S3 API calls by name

    @property
    def requests(self) -> int:
        return sum(self.calls.values())

    @property
    def s3_requests(self) -> int:
        return sum(self.s3.values())


class RequestCounter:
    """botocore event handlers on the store's DynamoDB and S3 clients; count inside `measure`."""

    def __init__(self, dynamodb: Any, s3: Any) -> None:
        self.dynamodb = dynamodb
        self.s3 = s3
        self.current: Measurement | None = None
        dynamodb.meta.events.register("before-call.dynamodb.*", self._dynamodb_call)
        dynamodb.meta.events.register("after-call.dynamodb.*", self._dynamodb_result)
        dynamodb.meta.events.register(
            "provide-client-params.dynamodb.BatchWriteItem", self._batch_params
        )
        s3.meta.events.register("before-call.s3.*", self._s3_call)

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        self.current = Measurement()
        try:
            yield self.current
        finally:
            self.current = None

    def _dynamodb_call(self, model: Any, **_: Any) -> None:
        if self.current is not None:
            self.current.calls[model.name] += 1

    def _dynamodb_result(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if self.current is None:
            return
        name = model.name
        if name in ("Query", "Scan"):
            self.current.items[name] += int(parsed.get("ScannedCount", parsed.get("Count", 0)))
        elif name == "GetItem":
            self.current.items[name] += 1 if "Item" in parsed else 0

    def _batch_params(self, params: dict[str, Any], **_: Any) -> None:
        # BatchWriteItem's response does not echo what was sent: count its requests going out.
        if self.current is not None:
            sent = sum(len(requests) for requests in params.get("RequestItems", {}).values())
            self.current.items["BatchWriteItem"] += sent

    def _s3_call(self, model: Any, **_: Any) -> None:
        if self.current is not None:
            self.current.s3[model.name] += 1


def describe(counter: Counter[str]) -> str:
    """`3 (GetItem, Query, UpdateItem)`, or with counts when a name repeats; `0` when empty."""
    total = sum(counter.values())
    if not total:
        return "0"
    if all(count == 1 for count in counter.values()):
        parts = list(counter)
    else:
        parts = [f"{count:,} {name}" for name, count in counter.items() if count]
    return f"{total:,} ({', '.join(parts)})"


async def call_chatkit(server: Any, request: dict[str, Any], ctx: Any) -> Any:
    """Run one ChatKit request to completion; return the JSON result or the list of events.

    Raises RuntimeError when the stream carries an `error` event.
    """
    result = await server.process(json.dumps(request).encode(), ctx)
    if isinstance(result, NonStreamingResult):
        return json.loads(result.json)
    assert isinstance(result, StreamingResult)
    events = []
    async for chunk in result:
        text = chunk.decode()
        assert text.startswith("data: "), text
        event = json.loads(text[len("data: ") :])
        if event.get("type") == "error":
            raise RuntimeError(f"{request['type']} streamed an error event: {event}")
        events.append(event)
    return events


async def call_asgi(app: Any, method: str, path: str, query: str = "") -> tuple[int, bytes]:
    """One request to an ASGI app, called directly (no HTTP client, no socket): the status
    and the whole body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"bench")],
        "server": ("bench", 80),
        "client": ("127.0.0.1", 50000),
    }
    status, body = 0, bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


@contextmanager
def offline_table_and_bucket(table_name: str, bucket: str) -> Iterator[tuple[Any, Any]]:
    """moto's in-process AWS holding the store's table and a bucket: (the table's record
    class, the S3 client)."""
    import boto3
    from moto import mock_aws

    from store import bind_table, create_table  # src is on the path by now (use_offline_aws)

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        record = bind_table(table_name, region="us-east-1")
        create_table(record)
        yield record, s3


def forget_moto_instances() -> None:
    """Let go of every object moto created so far that it no longer uses.

    moto keeps each instance of its models in a class-level list (`instances_tracked`, for
    its /moto-api/ view), forever; its TransactWriteItems deep-copies the whole table first
    (to roll back), so every transaction leaves a copy of the table alive. Over a long run
    that is gigabytes of live objects, and each full garbage collection scans them all: a
    pause of seconds that lands in whichever turn allocates (with the GIL held, every
    thread stalls). The bench calls this between turns, untimed."""
    from moto.core.base_backend import model_data

    for models in model_data.values():
        for model in models.values():
            model.instances_tracked.clear()


def verdict(problems: list[str], runtime: float) -> bool:
    """Print a FAIL line per problem (PASS without any) and the runtime; whether it passed."""
    for problem in problems:
        print(f"- FAIL: {problem}")
    if not problems:
        print("- PASS")
    print(f"\nruntime: {runtime:.1f} s")
    return not problems


def seed_item(store: Any, thread_id: str, item: Any, user_id: str) -> None:
    """Write an item's row exactly as the store would, as one UpdateItem without the check
    of its thread row (seeding thousands of rows through transactions is slow on moto)."""
    from store.table import table_connection  # src is on the path by now (use_offline_aws)

    row = store.bodies.item_row(thread_id, item, user_id, False, shrunk=True)
    table_connection(store.table).update_item(row.pk, range_key=row.sk, actions=row.actions)
