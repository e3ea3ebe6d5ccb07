"""Count the DynamoDB and S3 requests each Store method and ChatKit operation costs.

Runs fully offline against moto's in-process `mock_aws`. For threads of 10, 1,000 and
10,000 items it measures every `store.DynamoDBStore` method and every ChatKit operation
that touches the store (driven through `ChatKitServer.process`), counting at the botocore
level: one `before-call` event per API call, items read from the parsed responses.
Seeding is not counted. Prints a Markdown table and exits non-zero when a request budget
is exceeded (see `check`: a single-object call is 1 request, a page at most 2, and no cost
but a delete's grows with the thread; docs/architecture.md, "The table").

    uv run python bench/store_requests.py        # from the repository root
"""

from __future__ import annotations

import asyncio
import base64
import math
import random
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chatkit.server import ChatKitServer
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    FileAttachment,
    InferenceOptions,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
)
from moto.dynamodb.models.table import RESULT_SIZE_LIMIT

from counting import (
    Measurement,
    RequestCounter,
    call_chatkit,
    describe,
    offline_table_and_bucket,
    seed_item,
    use_offline_aws,
    user_input,
    verdict,
)

use_offline_aws()

from store import (  # noqa: E402
    DynamoDBStore,
    PayloadBucket,
    RequestContext,
    TableRecord,
)
from store.keys import created_sort_key  # noqa: E402
from store.table import table_connection  # noqa: E402

SIZES = (10, 1_000, 10_000)
TABLE_NAME = "chatkit-bench"
BUCKET = "chatkit-bench-payloads"
PAGE_LIMIT = 20  # chatkit's DEFAULT_PAGE_SIZE
RESPOND_HISTORY = 30  # what the bench server's respond() loads
FILLER_THREADS = 24  # so a user's thread list is more than one page
SAME_TIMESTAMP_RUN = 4  # consecutive seeded items sharing one created_at
BATCH_WRITE_MAX = 25
AWS_QUERY_PAGE_BYTES = 1_048_576  # DynamoDB's 1 MB Query page
MOTO_QUERY_PAGE_BYTES = RESULT_SIZE_LIMIT  # moto's (1,000,000)

USER_LINES = (
    "Can you summarize the quarterly report in three bullet points?",
    "What is the difference between a local and a global secondary index?",
    "Please draft a short reply to the customer asking for a refund.",
    "How do I rotate the API key without downtime?",
    "Translate the last paragraph into French, keeping the tone formal.",
    "Which of these two plans is cheaper for a team of twelve people?",
)
ASSISTANT_LINES = (
    "Revenue grew 12% quarter over quarter, driven by the enterprise tier. "
    "Churn fell slightly, while support costs stayed flat.",
    "A local secondary index shares the partition key of the table and supports consistent "
    "reads. A global one can use any key but is eventually consistent.",
    "Thanks for reaching out. I have issued a full refund, which should appear on your "
    "statement within five business days.",
    "Create the new key, deploy it alongside the old one, then revoke the old key once "
    "traffic has switched over.",
    "Voici le paragraphe traduit, en conservant un ton formel et précis.",
    "The annual plan is cheaper: it saves about 18% compared with twelve monthly seats.",
)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {message}", file=sys.stderr, flush=True)


START = time.perf_counter()


# -- counting ---------------------------------------------------------------------------


class RowSizes:
    """While seeding, add up the size of every row the store writes, per partition key.

    DynamoDB's accounting: attribute name + value bytes, binary counted raw. moto sizes
    rows the same way (it keeps binary values decoded) when it pages a Query.
    """

    def __init__(self, dynamodb: Any) -> None:
        self.active = False
        self.bytes: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        dynamodb.meta.events.register("provide-client-params.dynamodb.PutItem", self._params)
        dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", self._params)
        dynamodb.meta.events.register(
            "provide-client-params.dynamodb.TransactWriteItems", self._transaction
        )

    def _transaction(self, params: dict[str, Any], **_: Any) -> None:
        """Item writes go with a check of their thread row: count the rows written."""
        for entry in params.get("TransactItems", []):
            for kind in ("Put", "Update"):
                if kind in entry:
                    self._params(entry[kind])

    def _params(self, params: dict[str, Any], **_: Any) -> None:
        if not self.active:
            return
        item = params.get("Item") or _row_of_update(params)
        size = 0
        for name, value in item.items():
            (kind, raw), *_rest = value.items()
            if kind == "B":
                data = raw if isinstance(raw, bytes) else base64.b64decode(raw)
                size += len(name.encode()) + len(data)
            else:  # S, N
                size += len(name.encode()) + len(str(raw).encode())
        pk = item["pk"]["S"]
        self.bytes[pk] += size
        self.rows[pk] += 1


def _row_of_update(params: dict[str, Any]) -> dict[str, Any]:
    """The row an UpdateItem of a new key writes: its key plus every `SET #name = :value`."""
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    row = dict(params["Key"])
    set_clause = params.get("UpdateExpression", "").split("REMOVE")[0]
    for name, value in re.findall(r"(#\w+) = (:\w+)", set_clause):
        row[names[name]] = values[value]
    return row


# -- realistic data ---------------------------------------------------------------------


def make_item(
    rng: random.Random, thread_id: str, index: int, created_at: datetime, used: set[str]
) -> ThreadItem:
    while True:
        item_id = f"msg_{rng.getrandbits(32):08x}"
        if item_id not in used:
            used.add(item_id)
            break
    if index % 2 == 0:
        return UserMessageItem(
            id=item_id,
            thread_id=thread_id,
            created_at=created_at,
            content=[UserMessageTextContent(text=rng.choice(USER_LINES))],
            inference_options=InferenceOptions(),
        )
    return AssistantMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=created_at,
        content=[AssistantMessageContent(text=rng.choice(ASSISTANT_LINES))],
    )


def order_key(item: ThreadItem | ThreadMetadata) -> str:
    return created_sort_key(item.created_at, item.id)


# -- the ChatKit server -----------------------------------------------------------------


class BenchServer(ChatKitServer[RequestContext]):
    """Answers every message with one canned assistant message after loading recent history."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        history = await self.store.load_thread_items(
            thread.id, None, RESPOND_HISTORY, "desc", context
        )
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[
                    AssistantMessageContent(
                        text=f"I read the last {len(history.data)} messages. Here is my answer."
                    )
                ],
            )
        )


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Row:
    section: str
    operation: str
    size: int
    kind: str  # "single" | "page" | "turn" | "delete" | "extra"
    m: Measurement
    delete_info: dict[str, Any] | None = None


@dataclass
class Scenario:
    size: int
    ctx: RequestContext
    main: ThreadMetadata
    main_order: list[str]  # item ids in created order
    delete_threads: dict[str, ThreadMetadata]  # "store" / "chatkit" -> thread of `size` items
    thread_order: list[str]  # thread ids in created order


class Bench:
    def __init__(self, record: type[TableRecord], s3: Any) -> None:
        self.record = record
        self.store = DynamoDBStore(record, PayloadBucket(s3, BUCKET))
        self.server = BenchServer(self.store)
        client = table_connection(record).connection.client
        self.dynamodb_client = client
        self.counter = RequestCounter(client, s3)
        self.sizes = RowSizes(client)
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.large_rows: tuple[int, int, int] | None = None  # rows read, bytes each, Queries

    @contextmanager
    def measure(self, section: str, operation: str, size: int, kind: str) -> Iterator[Measurement]:
        # PynamoDB recreates its client if credentials vanish; the handlers would be lost.
        assert table_connection(self.record).connection.client is self.dynamodb_client
        with self.counter.measure() as m:
            yield m
        self.rows.append(Row(section, operation, size, kind, m))

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)
            log(f"FAILED: {message}")

    # -- seeding (not counted) ----------------------------------------------------------

    async def seed(self, size: int) -> Scenario:
        rng = random.Random(size)
        user = f"bench-user-{size}"
        ctx = RequestContext(user_id=user)
        base = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        threads: list[ThreadMetadata] = []
        for index in range(FILLER_THREADS + 3):
            thread = ThreadMetadata(
                id=f"thr_{rng.getrandbits(32):08x}",
                title=f"Conversation {index}",
                created_at=base + timedelta(minutes=index),
            )
            await self.store.save_thread(thread, ctx)
            threads.append(thread)
        main, delete_store, delete_chatkit = threads[-3:]
        used: set[str] = set()
        self.sizes.active = True
        main_items: list[ThreadItem] = []
        for thread in (main, delete_store, delete_chatkit):
            for index in range(size):
                created = thread.created_at + timedelta(seconds=index // SAME_TIMESTAMP_RUN)
                item = make_item(rng, thread.id, index, created, used)
                seed_item(self.store, thread.id, item, user)
                if thread is main:
                    main_items.append(item)
        self.sizes.active = False
        main_order = [item.id for item in sorted(main_items, key=order_key)]
        return Scenario(
            size=size,
            ctx=ctx,
            main=main,
            main_order=main_order,
            delete_threads={"store": delete_store, "chatkit": delete_chatkit},
            thread_order=[thread.id for thread in sorted(threads, key=order_key)],
        )

    def delete_target(self, scenario: Scenario, thread: ThreadMetadata) -> dict[str, Any]:
        pk = f"U#{scenario.ctx.user_id}#T#{thread.id}"
        items = self.sizes.rows[pk]
        size = self.sizes.bytes[pk]
        assert items == scenario.size, (items, scenario.size)
        batches = math.ceil(items / BATCH_WRITE_MAX)
        aws_pages = max(1, math.ceil(size / AWS_QUERY_PAGE_BYTES))
        moto_pages = max(1, math.ceil(size / MOTO_QUERY_PAGE_BYTES))
        return {
            "items": items,
            "bytes": size,
            "batches": batches,
            "aws_pages": aws_pages,
            "moto_pages": moto_pages,
            "target": batches + aws_pages + 1,
            "moto_target": batches + moto_pages + 1,
        }

    # -- store methods --------------------------------------------------------------------

    async def store_methods(self, sc: Scenario) -> None:
        store, ctx, n = self.store, sc.ctx, sc.size
        section = "Store"

        def page_check(name: str, page: Any, expected: list[str], more: bool) -> None:
            got = [element.id for element in page.data]
            self.expect(got == expected, f"{name} at {n}: page {got[:3]}... != {expected[:3]}")
            self.expect(page.has_more == more, f"{name} at {n}: has_more {page.has_more} != {more}")

        with self.measure(section, "load_thread", n, "single"):
            thread = await store.load_thread(sc.main.id, ctx)
        with self.measure(section, "save_thread", n, "single"):
            await store.save_thread(thread, ctx)

        threads_desc = list(reversed(sc.thread_order))
        with self.measure(section, "load_threads (no after)", n, "page"):
            page = await store.load_threads(PAGE_LIMIT, None, "desc", ctx)
        page_check("load_threads", page, threads_desc[:PAGE_LIMIT], True)
        cursor = threads_desc[4]
        with self.measure(section, "load_threads (after)", n, "page"):
            page = await store.load_threads(PAGE_LIMIT, cursor, "desc", ctx)
        rest = threads_desc[5:]
        page_check("load_threads after", page, rest[:PAGE_LIMIT], len(rest) > PAGE_LIMIT)

        asc = sc.main_order
        desc = list(reversed(asc))
        middle = asc[n // 2]
        cases = (
            ("asc", None, asc),
            ("desc", None, desc),
            ("asc", middle, asc[asc.index(middle) + 1 :]),
            ("desc", middle, desc[desc.index(middle) + 1 :]),
        )
        for order, after, expected in cases:
            label = f"load_thread_items ({'after' if after else 'no after'}, {order})"
            with self.measure(section, label, n, "page"):
                page = await store.load_thread_items(sc.main.id, after, PAGE_LIMIT, order, ctx)
            page_check(label, page, expected[:PAGE_LIMIT], len(expected) > PAGE_LIMIT)

        item = AssistantMessageItem(
            id="msg_benchadd",
            thread_id=sc.main.id,
            created_at=datetime.now(),
            content=[AssistantMessageContent(text="Working on it: I will check the logs first.")],
        )
        with self.measure(section, "add_thread_item", n, "single"):
            await store.add_thread_item(sc.main.id, item, ctx)
        item.content[0].text = "Done: the logs show two timeouts, both retried successfully."
        with self.measure(section, "save_item", n, "single"):
            await store.save_item(sc.main.id, item, ctx)
        with self.measure(section, "load_item", n, "single"):
            loaded = await store.load_item(sc.main.id, item.id, ctx)
        same = loaded == item.model_copy(update={"created_at": loaded.created_at})
        self.expect(same, f"load_item at {n}: returned another item")
        with self.measure(section, "delete_thread_item", n, "single"):
            await store.delete_thread_item(sc.main.id, item.id, ctx)

        attachment = FileAttachment(
            id="atc_bench01", name="report.pdf", mime_type="application/pdf", thread_id=None
        )
        with self.measure(section, "save_attachment", n, "single"):
            await store.save_attachment(attachment, ctx)
        with self.measure(section, "load_attachment", n, "single"):
            loaded_attachment = await store.load_attachment(attachment.id, ctx)
        self.expect(loaded_attachment == attachment, "load_attachment returned another record")
        with self.measure(section, "delete_attachment", n, "single"):
            await store.delete_attachment(attachment.id, ctx)

        target = sc.delete_threads["store"]
        info = self.delete_target(sc, target)
        with self.measure(section, "delete_thread", n, "delete"):
            await store.delete_thread(target.id, ctx)
        self.rows[-1].delete_info = info
        await self.expect_deleted(sc, target.id)

    async def expect_deleted(self, sc: Scenario, thread_id: str) -> None:
        try:
            await self.store.load_thread(thread_id, sc.ctx)
            self.expect(False, f"thread {thread_id} still exists after delete")
        except NotFoundError:
            pass
        left = await self.store.load_thread_items(thread_id, None, 10, "asc", sc.ctx)
        self.expect(not left.data, f"thread {thread_id} still has items after delete")

    # -- ChatKit operations -------------------------------------------------------------

    async def chatkit_operations(self, sc: Scenario) -> None:
        server, ctx, n = self.server, sc.ctx, sc.size
        section = "ChatKit"

        with self.measure(section, "threads.create", n, "turn"):
            events = await call_chatkit(
                server,
                {"type": "threads.create", "params": {"input": user_input("Hello! Who are you?")}},
                ctx,
            )
        created = next(e for e in events if e["type"] == "thread.created")["thread"]["id"]
        done = [e for e in events if e["type"] == "thread.item.done"]
        self.expect(len(done) == 2, f"threads.create at {n}: {len(done)} items done, not 2")
        sc.thread_order.append(created)

        with self.measure(section, "threads.add_user_message", n, "turn"):
            events = await call_chatkit(
                server,
                {
                    "type": "threads.add_user_message",
                    "params": {
                        "thread_id": sc.main.id,
                        "input": user_input("And what about the previous quarter?"),
                    },
                },
                ctx,
            )
        done = [e for e in events if e["type"] == "thread.item.done"]
        self.expect(len(done) == 2, f"add_user_message at {n}: {len(done)} items done, not 2")
        sc.main_order.extend(event["item"]["id"] for event in done)  # the newest two
        answer = done[-1]["item"]["content"][0]["text"]
        expected_history = min(RESPOND_HISTORY, n + 1)
        self.expect(
            f"last {expected_history} messages" in answer,
            f"add_user_message at {n}: respond saw {answer!r}, expected {expected_history}",
        )

        with self.measure(section, "threads.list (no after)", n, "page"):
            listed = await call_chatkit(server, {"type": "threads.list", "params": {}}, ctx)
        self.expect(listed["has_more"] is True, f"threads.list at {n}: has_more is not true")
        with self.measure(section, "threads.list (after)", n, "page"):
            listed = await call_chatkit(
                server, {"type": "threads.list", "params": {"after": listed["after"]}}, ctx
            )
        self.expect(len(listed["data"]) > 0, f"threads.list after at {n}: empty page")

        with self.measure(section, "threads.get_by_id", n, "page"):
            thread = await call_chatkit(
                server, {"type": "threads.get_by_id", "params": {"thread_id": sc.main.id}}, ctx
            )
        oldest = [item["id"] for item in thread["items"]["data"]]
        self.expect(oldest == sc.main_order[:PAGE_LIMIT], f"threads.get_by_id at {n}: wrong items")

        with self.measure(section, "items.list (no after)", n, "page"):
            items = await call_chatkit(
                server, {"type": "items.list", "params": {"thread_id": sc.main.id}}, ctx
            )
        self.expect(len(items["data"]) == min(PAGE_LIMIT, n + 2), f"items.list at {n}: size")
        after = items.get("after") or items["data"][-1]["id"]
        with self.measure(section, "items.list (after)", n, "page"):
            items = await call_chatkit(
                server,
                {"type": "items.list", "params": {"thread_id": sc.main.id, "after": after}},
                ctx,
            )

        target = sc.delete_threads["chatkit"]
        info = self.delete_target(sc, target)
        with self.measure(section, "threads.delete", n, "delete"):
            await call_chatkit(
                server, {"type": "threads.delete", "params": {"thread_id": target.id}}, ctx
            )
        self.rows[-1].delete_info = info
        await self.expect_deleted(sc, target.id)

    # -- an item too big for a row (S3 offload) -----------------------------------------

    async def offloaded_item(self) -> None:
        ctx = RequestContext(user_id="bench-user-offload")
        thread = ThreadMetadata(id="thr_offload", created_at=datetime.now(UTC))
        await self.store.save_thread(thread, ctx)
        rng = random.Random(7)
        # Random text barely compresses: ~400 KB compressed, above the 300 KB threshold.
        text = base64.b64encode(rng.randbytes(400_000)).decode()
        big = AssistantMessageItem(
            id="msg_bigpayload",
            thread_id=thread.id,
            created_at=datetime.now(),
            content=[AssistantMessageContent(text=text)],
        )
        section, n = "Large item (S3 offload)", 1
        with self.measure(section, "add_thread_item (offloaded)", n, "extra"):
            await self.store.add_thread_item(thread.id, big, ctx)
        with self.measure(section, "load_item (offloaded)", n, "extra"):
            await self.store.load_item(thread.id, big.id, ctx)
        with self.measure(section, "load_thread_items (page with it)", n, "extra"):
            await self.store.load_thread_items(thread.id, None, PAGE_LIMIT, "desc", ctx)
        with self.measure(section, "delete_thread_item (offloaded)", n, "extra"):
            await self.store.delete_thread_item(thread.id, big.id, ctx)

    async def large_rows_page(self) -> None:
        """A page of rows that stay in DynamoDB but are large: one page is several Queries."""
        ctx = RequestContext(user_id="bench-user-large-rows")
        thread = ThreadMetadata(id="thr_largerows", created_at=datetime.now(UTC))
        await self.store.save_thread(thread, ctx)
        rng = random.Random(11)
        count = PAGE_LIMIT + 1
        self.sizes.active = True
        for index in range(count):
            # ~350 KB of random text compresses to ~266 KB: below the offload threshold.
            text = base64.b64encode(rng.randbytes(262_500)).decode()
            item = AssistantMessageItem(
                id=f"msg_large{index:03d}",
                thread_id=thread.id,
                created_at=thread.created_at + timedelta(seconds=index),
                content=[AssistantMessageContent(text=text)],
            )
            seed_item(self.store, thread.id, item, ctx.user_id)
        self.sizes.active = False
        row_bytes = self.sizes.bytes[f"U#{ctx.user_id}#T#{thread.id}"] // count
        section = f"Large rows in the table ({row_bytes:,} bytes each, not offloaded)"
        with self.measure(section, "load_thread_items (no after, desc)", count, "extra"):
            page = await self.store.load_thread_items(thread.id, None, PAGE_LIMIT, "desc", ctx)
        self.expect(len(page.data) == PAGE_LIMIT and page.has_more, "large rows page")
        self.large_rows = (count, row_bytes, self.rows[-1].m.calls["Query"])


# -- report ---------------------------------------------------------------------------------


def report(bench: Bench, runtime: float) -> bool:
    print("# DynamoDB store: requests per operation (moto, offline)\n")
    print(
        "Counted with botocore `before-call`/`after-call` handlers on the store's own clients. "
        "Items read = Query `ScannedCount` + GetItem hits; for BatchWriteItem, the number of "
        "write requests sent (deletes). Seeding is not counted.\n"
    )
    print("| operation | items in thread | DynamoDB requests | items read | S3 requests |")
    print("|---|---:|---|---|---|")
    section = None
    for row in bench.rows:
        if row.section != section:
            section = row.section
            print(f"| **{section}** | | | | |")
        requests = describe(row.m.calls)
        if row.delete_info:
            info = row.delete_info
            requests += f" — target {info['target']:,}"
        items = describe(row.m.items)
        print(f"| {row.operation} | {row.size:,} | {requests} | {items} | {describe(row.m.s3)} |")

    if bench.large_rows:
        count, row_bytes, queries = bench.large_rows
        aws = math.ceil(count / (AWS_QUERY_PAGE_BYTES // row_bytes))
        moto = math.ceil(count / (MOTO_QUERY_PAGE_BYTES // row_bytes))
        print(
            f"\nA page reads limit+1 = {count} rows; at {row_bytes:,} bytes a row, a 1 MB Query "
            f"page holds few of them: {queries} Queries measured (DynamoDB would need {aws}, "
            f"moto's limit gives {moto}). The 'pages <= 2' budget holds only for small rows."
        )

    print("\n## delete: measured against ⌈items/25⌉ + ⌈bytes/1 MB⌉ + 1\n")
    print(
        "bytes = sum over the thread's item rows of attribute-name + value sizes (binary "
        "counted raw, as DynamoDB does), taken from the UpdateItem parameters the store sent "
        "while seeding. Target: 1 MB = 1,048,576 bytes (DynamoDB's Query page). moto pages a "
        f"Query at {MOTO_QUERY_PAGE_BYTES:,} bytes, sized the same way.\n"
    )
    print(
        "| operation | items | bytes | ⌈items/25⌉ | Query pages: target / at moto's limit / "
        "measured | requests: target / measured |"
    )
    print("|---|---:|---:|---:|---|---|")
    most_queries = 0
    moto_agrees = True
    for row in bench.rows:
        if not row.delete_info:
            continue
        info = row.delete_info
        queries = row.m.calls["Query"]
        most_queries = max(most_queries, queries)
        moto_agrees = moto_agrees and queries == info["moto_pages"]
        print(
            f"| {row.operation} | {info['items']:,} | {info['bytes']:,} | {info['batches']:,} | "
            f"{info['aws_pages']} / {info['moto_pages']} / {queries} | "
            f"{info['target']:,} / {row.m.requests:,} |"
        )
    print()
    if most_queries > 1:
        print(
            f"moto paginates Query at 1 MB: the largest deletes used {most_queries} Queries "
            "(PynamoDB follows LastEvaluatedKey)"
            + (
                f"; every delete used exactly ⌈bytes/{MOTO_QUERY_PAGE_BYTES:,}⌉ Queries."
                if moto_agrees
                else "; the count differs from ⌈bytes/1,000,000⌉ for some deletes."
            )
        )
    else:
        print("moto did NOT paginate Query at 1 MB: every delete used a single Query.")
    for row in bench.rows:
        info = row.delete_info
        if info and info["target"] != row.m.requests:
            print(
                f"note: {row.operation} at {row.size:,} items took {row.m.requests:,} requests, "
                f"target {info['target']:,} (at moto's page limit: {info['moto_target']:,})"
            )

    return check(bench, runtime)


def check(bench: Bench, runtime: float) -> bool:
    print("\n## check\n")
    problems = list(bench.failures)
    by_operation: dict[tuple[str, str], dict[int, Row]] = {}
    for row in bench.rows:
        if row.kind == "extra":
            continue
        by_operation.setdefault((row.section, row.operation), {})[row.size] = row
    smallest, largest = min(SIZES), max(SIZES)
    for (section, operation), rows in by_operation.items():
        kind = rows[smallest].kind
        total = {size: row.m.requests + row.m.s3_requests for size, row in rows.items()}
        if kind != "delete" and len(set(total.values())) != 1:
            problems.append(
                f"{section} {operation}: {total[smallest]} requests at {smallest:,} items but "
                f"{total[largest]} at {largest:,}"
            )
        if kind == "single" and max(total.values()) > 1:
            problems.append(f"{section} {operation}: {max(total.values())} requests (> 1)")
        if kind == "page" and max(total.values()) > 2:
            problems.append(f"{section} {operation}: {max(total.values())} requests (> 2)")
    print(
        "- every operation except delete costs the same requests (DynamoDB + S3) at "
        f"{largest:,} items as at {smallest:,}; single-object calls <= 1 request; "
        "pages (lists, get_by_id) <= 2; ChatKit turns (create, add_user_message) are only "
        "checked for constancy; the large-item sections are not checked"
    )
    return verdict(problems, runtime)


async def run() -> bool:
    with offline_table_and_bucket(TABLE_NAME, BUCKET) as (record, s3):
        bench = Bench(record, s3)
        for size in SIZES:
            log(f"seeding {size:,} items x 3 threads")
            scenario = await bench.seed(size)
            log(f"measuring store methods at {size:,} items")
            await bench.store_methods(scenario)
            log(f"measuring ChatKit operations at {size:,} items")
            await bench.chatkit_operations(scenario)
        log("measuring an offloaded item")
        await bench.offloaded_item()
        log("measuring a page of large rows")
        await bench.large_rows_page()
        log("done")
        return report(bench, time.perf_counter() - START)


def main() -> int:
    return 0 if asyncio.run(run()) else 1


if __name__ == "__main__":
    sys.exit(main())
