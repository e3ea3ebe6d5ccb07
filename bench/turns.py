"""What one chat turn costs the server: CPU and wall time, DynamoDB and S3 requests.

Runs fully offline: the real `AssistantServer` with the offline model at zero word delay, on
the real `DynamoDBStore` / `TaskStore` over moto's in-process `mock_aws`. Four kinds of turn
(`threads.add_user_message`) on threads already holding 10 and 1,000 items, plus the first
turn of a new thread (`threads.create`):

- text: "Tell me something nice", answered in text by the general assistant, which answered
  the thread last;
- tool: "show my tasks" by a user with 5 tasks, to the task assistant: the model calls
  list_tasks, whose progress line is shown, the tool streams the task list widget, the model
  answers;
- handoff: "Tell me something nice" on a thread no specialist answered yet: triage hands it
  to the general assistant (a workflow entry naming it), which answers;
- progress: "add a task to buy milk" to the task assistant: add_task runs with its progress
  line ("Adding “buy milk”…", then what it did), the model answers;
- REST page: `GET /api/conversations/{id}` with a cursor, 8 items from the middle of the
  thread, through the real FastAPI app (called directly as ASGI; the bearer token check is
  replaced by a fixed user).

Each turn is driven through `ChatKitServer.process` and its stream consumed, like a client
would. After every turn the items it added are deleted again (not timed, not counted), so
every measured turn sees a thread of exactly the seeded size. Every turn holds its thread's
lease (taken with the request that reads the thread, given back with the last write), as in
production. Prints Markdown and exits non-zero when a turn's requests depend on the thread's
size, a text turn takes more than four DynamoDB requests, a first turn more than three or a
REST page more than three (see `check`).

    uv run python bench/turns.py        # from the repository root
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    InferenceOptions,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
)

from counting import (
    Measurement,
    RequestCounter,
    call_asgi,
    call_chatkit,
    describe,
    forget_moto_instances,
    offline_table_and_bucket,
    seed_item,
    use_offline_aws,
    user_input,
    verdict,
)

use_offline_aws()

from agent.offline_model import OfflineModel  # noqa: E402
from agent.providers import Models  # noqa: E402
from agent.server import AssistantServer, TurnLimits  # noqa: E402
from handlers.app import create_app  # noqa: E402
from handlers.paging import encode_cursor  # noqa: E402
from logs import logger  # noqa: E402
from store import (  # noqa: E402
    DynamoDBStore,
    PayloadBucket,
    RequestContext,
    TableRecord,
    TaskStore,
)
from store.table import table_connection  # noqa: E402

SIZES = (10, 1_000)
WARMUP_TURNS = 3
MEASURED_TURNS = 50
TEXT_BUDGET = 4  # DynamoDB requests a text turn may take, lease included
FIRST_TURN_BUDGET = 3  # and the first turn of a new thread: title and handoff included
REST_BUDGET = 3  # and a REST page after a cursor: the thread, the cursor, the page
REST_PAGE_LIMIT = 8
REST_CURSOR_INDEX = 1  # the page starts after the second seeded item
TABLE_NAME = "chatkit-bench-turns"
BUCKET = "chatkit-bench-turns-payloads"
USER = "bench-turns-user"
TEXT_MESSAGE = "Tell me something nice"
TOOL_MESSAGE = "show my tasks"
ADD_MESSAGE = "add a task to buy milk"
KINDS = ("text", "tool", "handoff", "progress")
MESSAGES = {
    "text": TEXT_MESSAGE,
    "tool": TOOL_MESSAGE,
    "handoff": TEXT_MESSAGE,
    "progress": ADD_MESSAGE,
}
# The specialist that answered each kind's thread last (None: triage decides).
SPECIALISTS = {"text": "general", "tool": "tasks", "handoff": None, "progress": "tasks"}
# What each kind of turn adds to its thread.
ADDED = {
    "text": ["user_message", "assistant_message"],
    "tool": ["user_message", "workflow", "widget", "assistant_message"],
    "handoff": ["user_message", "workflow", "assistant_message"],
    "progress": ["user_message", "workflow", "assistant_message"],
}
TASK_TITLES = ("buy milk", "call mom", "water the plants", "book the dentist", "renew passport")
SEED_PREFIX = "msg_seed"  # seeded item ids; generated ids are hex after "msg_", never "seed"

USER_LINES = (
    "Can you summarize the quarterly report in three bullet points?",
    "What is the difference between a local and a global secondary index?",
    "How do I rotate the API key without downtime?",
)
ASSISTANT_LINES = (
    "Revenue grew 12% quarter over quarter, driven by the enterprise tier. "
    "Churn fell slightly, while support costs stayed flat.",
    "A local secondary index shares the partition key of the table and supports consistent "
    "reads. A global one can use any key but is eventually consistent.",
    "Create the new key, deploy it alongside the old one, then revoke the old key once "
    "traffic has switched over.",
)

START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- what moto costs ----------------------------------------------------------------------


class MotoClock:
    """CPU seconds spent inside moto answering requests, summed over all threads.

    moto answers from a botocore `before-send` handler, in the thread making the call (the
    store's worker threads). A handler registered first and one registered last around it
    read `time.thread_time()`, which is per thread, so other threads running meanwhile are
    not subtracted. Request serialisation and response parsing stay on the server's side.
    """

    def __init__(self, *clients: Any) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        for client in clients:
            client.meta.events.register_first("before-send", self._start)
            client.meta.events.register_last("before-send", self._stop)

    def _start(self, **_: Any) -> None:
        self._local.started = time.thread_time()

    def _stop(self, **_: Any) -> None:
        spent = time.thread_time() - self._local.started
        with self._lock:
            self.seconds += spent
            self.calls += 1


class RequestTrace:
    """The DynamoDB calls of a turn in order, each named by the rows it touches."""

    def __init__(self, dynamodb: Any) -> None:
        self.current: list[str] | None = None
        dynamodb.meta.events.register("provide-client-params.dynamodb.*", self._call)

    @contextmanager
    def trace(self) -> Iterator[list[str]]:
        self.current = []
        try:
            yield self.current
        finally:
            self.current = None

    def _call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.current is not None:
            self.current.append(f"{model.name} {what(params)}")


def what(params: dict[str, Any]) -> str:
    """`thread`, `item`, `task`, `items (Limit 31)`, `tasks`…: which rows a call is about."""
    if "Key" in params:
        sk = params["Key"]["sk"]["S"]
        kinds = {"T#": "thread", "I#": "item", "A#": "attachment", "K#": "task"}
        return next((kind for prefix, kind in kinds.items() if sk.startswith(prefix)), sk)
    values = [value.get("S", "") for value in params.get("ExpressionAttributeValues", {}).values()]
    pk = next((value for value in values if value.startswith("U#")), "")
    if pk.endswith("#TASKS"):
        rows = "tasks"
    elif "#T#" in pk:
        rows = "items"
    else:
        rows = "threads"
    return f"{rows} (Limit {params['Limit']})" if "Limit" in params else rows


# -- one turn -------------------------------------------------------------------------------


@dataclass
class Sample:
    cpu: float  # process CPU seconds, all threads, moto included
    moto_cpu: float  # of which inside moto
    wall: float
    m: Measurement
    trace: list[str]


@dataclass
class Row:
    turn: str  # as printed
    kind: str  # one of KINDS, or "rest"
    size: int | None  # items in the thread before the turn; None: a new thread
    request: dict[str, Any]
    thread: ThreadMetadata | None  # None: the request creates a thread
    samples: list[Sample] = field(default_factory=list)

    def ms(self, attribute: str) -> list[float]:
        return [getattr(sample, attribute) * 1000 for sample in self.samples]

    def cpu_without_moto(self) -> list[float]:
        return [(sample.cpu - sample.moto_cpu) * 1000 for sample in self.samples]

    @property
    def label(self) -> str:
        return "new thread" if self.size is None else f"{self.size:,}"


class Bench:
    def __init__(self, record: type[TableRecord], s3: Any) -> None:
        self.record = record
        self.store = DynamoDBStore(record, PayloadBucket(s3, BUCKET))
        self.tasks = TaskStore(record)
        models = Models("offline", OfflineModel(0), None, None)
        self.server = AssistantServer(self.store, self.tasks, models, TurnLimits())
        self.ctx = RequestContext(user_id=USER)
        self.app = create_app(self.server, self.authenticate)
        client = table_connection(record).connection.client
        self.dynamodb_client = client
        self.counter = RequestCounter(client, s3)
        self.trace = RequestTrace(client)
        self.moto = MotoClock(client, s3)
        self.rows: list[Row] = []
        self.failures: list[str] = []

    async def authenticate(self, request: Any) -> RequestContext:
        return self.ctx

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)
            log(f"FAILED: {message}")

    # -- seeding (not counted) ----------------------------------------------------------

    async def seed_tasks(self) -> None:
        for title in TASK_TITLES:
            await self.tasks.add(title, self.ctx)

    async def seed_thread(self, size: int) -> ThreadMetadata:
        """A thread of `size` alternating user / assistant messages, written row by row."""
        base = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        thread = ThreadMetadata(id=f"thr_seeded{size}", title="Seeded", created_at=base)
        await self.store.save_thread(thread, self.ctx)
        for index in range(size):
            created = base + timedelta(seconds=index)
            item_id = f"{SEED_PREFIX}{index:06d}"
            item: ThreadItem
            if index % 2 == 0:
                item = UserMessageItem(
                    id=item_id,
                    thread_id=thread.id,
                    created_at=created,
                    content=[UserMessageTextContent(text=USER_LINES[index // 2 % 3])],
                    inference_options=InferenceOptions(),
                )
            else:
                item = AssistantMessageItem(
                    id=item_id,
                    thread_id=thread.id,
                    created_at=created,
                    content=[AssistantMessageContent(text=ASSISTANT_LINES[index // 2 % 3])],
                )
            seed_item(self.store, thread.id, item, USER)
        return thread

    async def restore(self, thread: ThreadMetadata) -> int:
        """Delete the items and tasks turns added after the seeded ones; return how many
        items there were."""
        newest = await self.store.load_thread_items(thread.id, None, 20, "desc", self.ctx)
        added = [item for item in newest.data if not item.id.startswith(SEED_PREFIX)]
        for item in added:
            await self.store.delete_thread_item(thread.id, item.id, self.ctx)
        for task in (await self.tasks.load_tasks(self.ctx))[len(TASK_TITLES) :]:
            await self.tasks.delete(task.number, self.ctx)
        return len(added)

    async def prepare(self, row: Row) -> None:
        """Make the thread's last specialist the one of the row's kind (not counted)."""
        if row.thread is not None and row.kind != "rest":
            specialist = SPECIALISTS[row.kind]
            metadata = {"specialist": specialist} if specialist else {}
            update = {"metadata": metadata}
            await self.store.save_thread(row.thread.model_copy(update=update), self.ctx)

    # -- measuring ------------------------------------------------------------------------

    async def turn(self, row: Row) -> tuple[Sample, list[dict[str, Any]]]:
        # PynamoDB recreates its client if credentials vanish; the handlers would be lost.
        assert table_connection(self.record).connection.client is self.dynamodb_client
        request = row.request
        with self.counter.measure() as m, self.trace.trace() as trace:
            moto_before = self.moto.seconds
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            if row.kind == "rest":
                status, body = await call_asgi(self.app, "GET", request["path"], request["query"])
                events = [{"http_status": status, "body": json.loads(body)}]
            else:
                events = await call_chatkit(self.server, request, self.ctx)
            cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
            moto_cpu = self.moto.seconds - moto_before
        return Sample(cpu, moto_cpu, wall, m, list(trace)), events

    def add_row(self, kind: str, thread: ThreadMetadata | None, size: int | None) -> None:
        """A turn to measure: on `thread` (restored after each turn), or a new thread if None."""
        message = MESSAGES[kind]
        if thread is None:
            request = {"type": "threads.create", "params": {"input": user_input(message)}}
            label = f"{kind}, first turn (threads.create)"
        else:
            request = {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread.id, "input": user_input(message)},
            }
            label = kind
        self.rows.append(Row(label, kind, size, request, thread))

    def add_rest_row(self, thread: ThreadMetadata, size: int) -> None:
        """A page of the thread's items through the REST API, after a cursor."""
        cursor = encode_cursor(f"{SEED_PREFIX}{REST_CURSOR_INDEX:06d}")
        request = {
            "path": f"/api/conversations/{thread.id}",
            "query": f"limit={REST_PAGE_LIMIT}&cursor={cursor}",
        }
        label = f"REST page ({REST_PAGE_LIMIT} items after a cursor)"
        self.rows.append(Row(label, "rest", size, request, thread))

    async def measure(self) -> None:
        """Round-robin over the rows, so that load from outside spreads over all of them."""
        # What is alive now (moto's table, imports) stays alive: frozen, a collection during
        # a turn scans what turns allocate, not moto's seeded rows.
        gc.collect()
        gc.freeze()
        for round_index in range(WARMUP_TURNS + MEASURED_TURNS):
            for row in self.rows:
                await self.prepare(row)
                sample, events = await self.turn(row)
                if round_index == WARMUP_TURNS:
                    self.check_answer(row, events)
                if round_index >= WARMUP_TURNS:
                    row.samples.append(sample)
                forget_moto_instances()  # or the table copies moto keeps slow every GC
                if row.thread is not None and row.kind != "rest":
                    added = await self.restore(row.thread)
                    expected = len(ADDED[row.kind])
                    where = f"{row.kind} turn at {row.label}"
                    self.expect(added == expected, f"{where}: {added} items, not {expected}")

    def check_page(self, row: Row, events: list[dict[str, Any]]) -> None:
        [answer] = events
        status, page = answer["http_status"], answer["body"]
        ids = [item["id"] for item in page.get("items", {}).get("data", [])]
        first = REST_CURSOR_INDEX + 1
        indexes = range(first, first + REST_PAGE_LIMIT)
        wanted = [f"{SEED_PREFIX}{index:06d}" for index in indexes]
        where = f"{row.turn} at {row.label}"
        self.expect(status == 200 and ids == wanted, f"{where}: {status} {ids}")

    def check_answer(self, row: Row, events: list[dict[str, Any]]) -> None:
        """The turn did what it should: its items; the answer; the widget with every task;
        the workflow naming the specialist or the tool's work; on a new thread the title; a
        REST page holds the items after its cursor."""
        if row.kind == "rest":
            self.check_page(row, events)
            return
        done = [e["item"] for e in events if e["type"] == "thread.item.done"]
        types = [item["type"] for item in done]
        answer = "".join(part["text"] for part in done[-1].get("content", []))
        steps = [
            task.get("title")
            for item in done
            if item["type"] == "workflow"
            for task in item["workflow"]["tasks"]
        ]
        where = f"{row.turn} at {row.label}"
        expected_answer, expected_steps = {
            "text": (f'you said "{TEXT_MESSAGE}"', []),
            "tool": ("That's your task list above.", ["Read your task list: 5 tasks, 0 done"]),
            "handoff": (f'you said "{TEXT_MESSAGE}"', ["General assistant is answering"]),
            "progress": ("Added task #", ["Added task #"]),
        }[row.kind]
        expected_types = ADDED[row.kind]
        if row.thread is None:
            titles = [e["thread"].get("title") for e in events if e["type"] == "thread.updated"]
            self.expect(titles == [TEXT_MESSAGE], f"{where}: titles {titles}")
            expected_types = ADDED["handoff"]
            expected_steps = ["General assistant is answering"]
        self.expect(types == expected_types, f"{where}: {types}")
        self.expect(expected_answer in answer, f"{where}: answer {answer!r}")
        matching = len(steps) == len(expected_steps) and all(
            str(step).startswith(want) for step, want in zip(steps, expected_steps, strict=True)
        )
        self.expect(matching, f"{where}: workflow {steps}")
        if row.kind == "tool":
            widget = str(done[2].get("widget")) if len(done) > 2 else ""
            shown = [title for title in TASK_TITLES if title in widget]
            self.expect(len(shown) == len(TASK_TITLES), f"{where}: widget shows {shown}")


# -- report -------------------------------------------------------------------------------


def fmt(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} / {statistics.median(values):.2f}"


def report(bench: Bench, runtime: float) -> bool:
    print("# One turn: server CPU, wall time and requests (offline model, moto)\n")
    print(
        f"`AssistantServer.process` + consuming the stream, offline model at zero word delay. "
        f"{WARMUP_TURNS} warm-up rounds, then {MEASURED_TURNS} measured rounds of one turn per "
        "row. After each turn its items are deleted again (not timed), so every turn sees the "
        "seeded thread size (and the thread's last specialist, the task list). What is alive "
        "before the first turn is frozen (`gc.freeze()`), so garbage collections do not scan "
        "moto's seeded table. The tool turn's user has 5 tasks.\n"
    )
    print(
        "CPU = `time.process_time()`: every thread of the process, so the store's worker "
        "threads and moto, which answers in-process, are included. *moto* = CPU spent inside "
        "moto's `before-send` handler (`time.thread_time()` in the calling thread); "
        "*without moto* = CPU - moto: the server, the Agents SDK, ChatKit, PynamoDB and "
        "botocore (serialising requests, parsing responses), but no HTTP or TLS. moto answers "
        "a Query on the index by scanning every row of the table, so its share grows with the "
        "table (both threads are seeded before any turn is measured); DynamoDB reads only the "
        "page. Wall time is close to CPU time: nothing waits, the model streams without delay. "
        "Values are mean / median ms per turn.\n"
    )
    print("| turn | items in thread | CPU ms | of which moto | CPU ms without moto | wall ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in bench.rows:
        moto = [sample.moto_cpu * 1000 for sample in row.samples]
        print(
            f"| {row.turn} | {row.label} | {fmt(row.ms('cpu'))} | {fmt(moto)} | "
            f"{fmt(row.cpu_without_moto())} | {fmt(row.ms('wall'))} |"
        )

    print("\n## Requests per turn\n")
    print(
        "Counted with botocore `before-call` / `after-call` handlers on the store's own "
        "clients (as in `store_requests.py`), on every measured turn; the table shows the "
        "first. Items read = Query `ScannedCount` + GetItem hits.\n"
    )
    print(
        "| turn | items in thread | DynamoDB requests | items read | S3 requests | "
        f"same on all {MEASURED_TURNS} turns |"
    )
    print("|---|---:|---|---|---|---|")
    for row in bench.rows:
        first = row.samples[0].m
        same = all(counts(sample.m) == counts(first) for sample in row.samples)
        print(
            f"| {row.turn} | {row.label} | {describe(first.calls)} | {describe(first.items)} | "
            f"{describe(first.s3)} | {'yes' if same else 'NO'} |"
        )

    print("\n## The requests, in order\n")
    shown: set[str] = set()
    for row in bench.rows:
        if row.turn in shown or (row.size is not None and row.size != max(SIZES)):
            continue
        shown.add(row.turn)
        where = "a new thread" if row.size is None else f"{row.label} items"
        print(f"- {row.turn} ({where}): " + " → ".join(row.samples[0].trace))
    return check(bench, runtime)


def counts(m: Measurement) -> tuple[Counter[str], Counter[str]]:
    return m.calls, m.s3


def budget_of(row: Row) -> int | None:
    """The most DynamoDB requests the row may take (None: no budget)."""
    if row.kind == "rest":
        return REST_BUDGET
    if row.kind == "text":
        return TEXT_BUDGET if row.thread is not None else FIRST_TURN_BUDGET
    return None


def check(bench: Bench, runtime: float) -> bool:
    print("\n## check\n")
    problems = list(bench.failures)
    smallest, largest = min(SIZES), max(SIZES)
    for kind in (*KINDS, "rest"):
        by_size = {row.size: row for row in bench.rows if row.kind == kind and row.thread}
        small, large = by_size[smallest].samples[0].m, by_size[largest].samples[0].m
        if counts(small) != counts(large):
            problems.append(
                f"{kind} turn: {describe(small.calls + small.s3)} at {smallest:,} items but "
                f"{describe(large.calls + large.s3)} at {largest:,}"
            )
    for row in bench.rows:
        if any(counts(sample.m) != counts(row.samples[0].m) for sample in row.samples):
            problems.append(f"{row.turn} at {row.label}: requests differ between turns")
        budget = budget_of(row)
        if budget is not None:
            worst = max(sample.m.requests for sample in row.samples)
            if worst > budget:
                problems.append(
                    f"{row.turn} at {row.label} items: {worst} DynamoDB requests (> {budget})"
                )
    print(
        f"- each turn kind makes the same DynamoDB and S3 requests at {largest:,} items as at "
        f"{smallest:,}, on every measured turn; a text turn takes at most {TEXT_BUDGET} DynamoDB "
        f"requests with the thread's lease, a first turn at most {FIRST_TURN_BUDGET}, a REST page "
        f"at most {REST_BUDGET}; every "
        "answer has the expected items (and the widget shows all 5 tasks)"
    )
    return verdict(problems, runtime)


async def run() -> bool:
    with offline_table_and_bucket(TABLE_NAME, BUCKET) as (record, s3):
        bench = Bench(record, s3)
        await bench.seed_tasks()
        threads = {}
        for size in SIZES:
            log(f"seeding a thread of {size:,} items")
            threads[size] = await bench.seed_thread(size)
        for kind in KINDS:
            for size in SIZES:
                bench.add_row(kind, threads[size], size)
        bench.add_row("text", None, None)
        for size in SIZES:
            bench.add_rest_row(threads[size], size)
        rounds = WARMUP_TURNS + MEASURED_TURNS
        log(f"measuring {rounds} rounds of {len(bench.rows)} turns ({WARMUP_TURNS} warm-up)")
        # The REST pages log their request records and print their metrics, as in production:
        # to stderr here, since stdout is the report.
        handler = logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):
            await bench.measure()
        log(f"done; moto answered {bench.moto.calls:,} requests")
        return report(bench, time.perf_counter() - START)


def main() -> int:
    return 0 if asyncio.run(run()) else 1


if __name__ == "__main__":
    sys.exit(main())
