"""DynamoDBStore: chatkit's Store contract on the single table (see store.table)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, TypeVar

import anyio.to_thread
from botocore.exceptions import ClientError
from chatkit.store import NotFoundError, Store
from chatkit.types import Attachment, Page, Thread, ThreadItem, ThreadMetadata, UserMessageItem
from pydantic import TypeAdapter
from pynamodb.exceptions import PynamoDBException, UpdateError

from store import table as keys
from store.context import RequestContext
from store.errors import StoreUnavailableError
from store.payloads import (
    CODEC_S3_ZLIB_JSON,
    CODEC_ZLIB_JSON,
    DEFAULT_OFFLOAD_THRESHOLD,
    PayloadBucket,
    compress,
    decompress,
    payload_key,
)
from store.table import TableRecord
from store.uploads import UploadBucket, upload_key

T = TypeVar("T")

THREAD_ITEM = TypeAdapter[ThreadItem](ThreadItem)
ATTACHMENT = TypeAdapter[Attachment](Attachment)

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
MAX_BATCH_WRITE = 25
MAX_PAGE_SIZE = 200


@dataclass
class _DeleteBatch:
    """Rows (pk, sk) to delete in one BatchWriteItem, and the S3 objects that go with them."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    payload_keys: list[str] = field(default_factory=list)
    upload_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a user said about an item ("positive" or "negative") and when."""

    kind: str
    at: datetime


@contextmanager
def _unavailable_when_throttled() -> Iterator[None]:
    """Turn a throttling error that outlived botocore's retries into StoreUnavailableError."""
    try:
        yield
    except PynamoDBException as error:
        if error.cause_response_code in THROTTLING_CODES:
            raise StoreUnavailableError(
                "DynamoDB is throttling requests and retries are exhausted; try again shortly"
            ) from error
        raise
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in THROTTLING_CODES:
            raise StoreUnavailableError(
                "S3 is throttling requests and retries are exhausted; try again shortly"
            ) from error
        raise


class DynamoDBStore(Store[RequestContext]):
    """Threads, items and attachment records of every user in one DynamoDB table.

    Every key embeds `context.user_id`; another user's object is never found.
    Reads that follow a write use consistent reads. Calls run in a worker thread
    so the event loop keeps streaming tokens while DynamoDB answers.
    """

    def __init__(
        self,
        table: type[TableRecord],
        payloads: PayloadBucket | None = None,
        uploads: UploadBucket | None = None,
        *,
        offload_threshold: int = DEFAULT_OFFLOAD_THRESHOLD,
        batch_attempts: int = 8,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self.payloads = payloads
        self.uploads = uploads
        self.offload_threshold = offload_threshold
        self.batch_attempts = batch_attempts
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_cap_seconds = backoff_cap_seconds
        self._sleep = sleep

    # -- threads -------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        """Return the thread's metadata; NotFoundError if the caller has no such thread."""
        return await self._run(self._load_thread, thread_id, context.user_id)

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        """Upsert the thread's metadata (a `Thread`'s items are not part of it)."""
        await self._run(self._save_thread, thread, context.user_id)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        """Return a page of the caller's threads by created_at.

        `after` is an exclusive cursor: the id of the last thread of the previous page.
        """
        return await self._run(self._load_threads, limit, after, order, context.user_id)

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        """Delete the thread, its items and their S3 payloads; NotFoundError if there was no thread.

        Items go first, the thread row last, so a call interrupted half way can be repeated.
        """
        await self._run(self._delete_thread, thread_id, context.user_id)

    # -- items ---------------------------------------------------------------------------

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: RequestContext,
    ) -> Page[ThreadItem]:
        """Return a page of the thread's items by created_at; `after` is an exclusive cursor.

        Another user's thread has no items for the caller: the page is empty.
        """
        return await self._run(
            self._load_thread_items, thread_id, after, limit, order, context.user_id
        )

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: RequestContext
    ) -> None:
        """Upsert the item (the SDK may add the same id twice)."""
        await self._run(self._save_item, thread_id, item, context.user_id)

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        """Upsert the item by id."""
        await self._run(self._save_item, thread_id, item, context.user_id)

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        """Return the item; NotFoundError if the caller's thread has no such item."""
        return await self._run(self._load_item, thread_id, item_id, context.user_id)

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> None:
        """Delete the item and its S3 payload, if any (deleting a missing item is a no-op)."""
        await self._run(self._delete_item, thread_id, item_id, context.user_id)

    async def save_feedback(
        self, thread_id: str, item_ids: list[str], kind: str, context: RequestContext
    ) -> None:
        """Record feedback `kind` and the time on each item (one UpdateItem per item).

        Raises NotFoundError, changing nothing further, at the first item the caller's
        thread does not have.
        """
        await self._run(self._save_feedback, thread_id, item_ids, kind, context.user_id)

    async def load_feedback(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> Feedback | None:
        """Return the feedback recorded on the item, or None; NotFoundError if there is no item."""
        return await self._run(self._load_feedback, thread_id, item_id, context.user_id)

    # -- attachments ---------------------------------------------------------------------

    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        """Upsert the attachment record."""
        await self._run(self._save_attachment, attachment, context.user_id)

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        """Return the attachment record; NotFoundError if the caller has none with this id."""
        return await self._run(self._load_attachment, attachment_id, context.user_id)

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Delete the attachment record (deleting a missing one is a no-op)."""
        await self._run(self._delete_attachment, attachment_id, context.user_id)

    # -- synchronous implementation (runs in a worker thread) ----------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(self._guarded, function, *args))

    @staticmethod
    def _guarded(function: Callable[..., T], *args: Any) -> T:
        with _unavailable_when_throttled():
            return function(*args)

    def _load_thread(self, thread_id: str, user_id: str) -> ThreadMetadata:
        row = self._get(keys.user_pk(user_id), keys.thread_sk(thread_id))
        if row is None:
            raise NotFoundError(f"Thread {thread_id} not found")
        return ThreadMetadata.model_validate_json(self._read_body(row))

    def _save_thread(self, thread: ThreadMetadata, user_id: str) -> None:
        fields = thread.model_dump(exclude={"items"} if isinstance(thread, Thread) else None)
        metadata = ThreadMetadata.model_validate(fields)
        metadata.created_at = keys.as_utc(metadata.created_at)
        self._put(
            keys.user_pk(user_id),
            keys.thread_sk(metadata.id),
            kind="thread",
            json_text=metadata.model_dump_json(),
            lsi1sk=keys.created_sort_key(metadata.created_at, metadata.id),
        )

    def _load_threads(
        self, limit: int, after: str | None, order: str, user_id: str
    ) -> Page[ThreadMetadata]:
        pk = keys.user_pk(user_id)
        cursor = None
        if after is not None:
            cursor = self._sort_key_of(pk, keys.thread_sk(after), f"Thread {after} not found")
        rows, has_more = self._query_page(pk, cursor, limit, order)
        threads = [ThreadMetadata.model_validate_json(self._read_body(row)) for row in rows]
        return Page(data=threads, has_more=has_more, after=threads[-1].id if has_more else None)

    def _delete_thread(self, thread_id: str, user_id: str) -> None:
        pk = keys.items_pk(user_id, thread_id)
        batch = _DeleteBatch()
        # Only keys and S3 pointers are needed to delete; DynamoDB pages them by 1 MB.
        rows = self.table.query(
            pk, consistent_read=True, attributes_to_get=["pk", "sk", "payload_key", "upload_key"]
        )
        for row in rows:
            doomed = [(row.pk, row.sk)]
            if row.sk.startswith(keys.ATTACHMENT_PREFIX):
                # A reference to an attachment sent in this thread: its record goes too.
                doomed.append((keys.user_pk(user_id), row.sk))
            if len(batch.rows) + len(doomed) > MAX_BATCH_WRITE:
                self._delete_rows(batch)
                batch = _DeleteBatch()
            batch.rows.extend(doomed)
            if row.payload_key:
                batch.payload_keys.append(row.payload_key)
            if row.upload_key:
                batch.upload_keys.append(row.upload_key)
        if batch.rows:
            self._delete_rows(batch)
        old = self._delete(keys.user_pk(user_id), keys.thread_sk(thread_id))
        if old is None:
            raise NotFoundError(f"Thread {thread_id} not found")

    def _load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, user_id: str
    ) -> Page[ThreadItem]:
        pk = keys.items_pk(user_id, thread_id)
        cursor = None
        if after is not None:
            cursor = self._sort_key_of(pk, keys.item_sk(after), f"Item {after} not found")
        rows, has_more = self._query_page(pk, cursor, limit, order)
        items = [self._fresh_item(THREAD_ITEM.validate_json(self._read_body(row))) for row in rows]
        return Page(data=items, has_more=has_more, after=items[-1].id if has_more else None)

    def _save_item(self, thread_id: str, item: ThreadItem, user_id: str) -> None:
        stored = item.model_copy(update={"created_at": keys.as_utc(item.created_at)})
        self._put(
            keys.items_pk(user_id, thread_id),
            keys.item_sk(item.id),
            kind="item",
            json_text=stored.model_dump_json(),
            lsi1sk=keys.created_sort_key(stored.created_at, item.id),
            offload_key=payload_key(user_id, thread_id, item.id),
        )

    def _load_item(self, thread_id: str, item_id: str, user_id: str) -> ThreadItem:
        row = self._get(keys.items_pk(user_id, thread_id), keys.item_sk(item_id))
        if row is None:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")
        return self._fresh_item(THREAD_ITEM.validate_json(self._read_body(row)))

    def _delete_item(self, thread_id: str, item_id: str, user_id: str) -> None:
        old = self._delete(keys.items_pk(user_id, thread_id), keys.item_sk(item_id))
        if old is not None and old.get("payload_key") and self.payloads is not None:
            self.payloads.delete([old["payload_key"]["S"]])

    def _save_feedback(self, thread_id: str, item_ids: list[str], kind: str, user_id: str) -> None:
        pk = keys.items_pk(user_id, thread_id)
        for item_id in item_ids:
            row = self.table(pk, keys.item_sk(item_id))
            try:
                row.update(
                    actions=[
                        self.table.feedback_kind.set(kind),
                        self.table.feedback_at.set(datetime.now(UTC)),
                    ],
                    condition=self.table.pk.exists(),
                )
            except UpdateError as error:
                if error.cause_response_code == "ConditionalCheckFailedException":
                    raise NotFoundError(f"Item {item_id} not found in thread {thread_id}") from None
                raise

    def _load_feedback(self, thread_id: str, item_id: str, user_id: str) -> Feedback | None:
        row = self._get(keys.items_pk(user_id, thread_id), keys.item_sk(item_id))
        if row is None:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")
        if row.feedback_kind is None or row.feedback_at is None:
            return None
        return Feedback(kind=row.feedback_kind, at=row.feedback_at)

    def _save_attachment(self, attachment: Attachment, user_id: str) -> None:
        key = upload_key(attachment)
        metadata = dict(attachment.metadata or {})
        thread_id = attachment.thread_id
        if thread_id and key and not metadata.get("attached"):
            # Sent in a message: the upload is kept (no longer pending), its one-time
            # upload URL is dropped, and the thread references it so deleting the
            # thread deletes the attachment too.
            if self.uploads is not None and self.uploads.owns(user_id, key):
                self.uploads.mark_attached(key)
            metadata["attached"] = True
            attachment = attachment.model_copy(
                update={"metadata": metadata, "upload_descriptor": None}
            )
            self._put(
                keys.items_pk(user_id, thread_id),
                keys.attachment_sk(attachment.id),
                kind="attachment_ref",
                json_text="{}",
                upload_key=key,
            )
        self._put(
            keys.user_pk(user_id),
            keys.attachment_sk(attachment.id),
            kind="attachment",
            json_text=attachment.model_dump_json(),
        )

    def _load_attachment(self, attachment_id: str, user_id: str) -> Attachment:
        row = self._get(keys.user_pk(user_id), keys.attachment_sk(attachment_id))
        if row is None:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        attachment = ATTACHMENT.validate_json(self._read_body(row))
        # The one-time upload URL is for the attachments.create answer only.
        return self._fresh_attachment(attachment.model_copy(update={"upload_descriptor": None}))

    def _delete_attachment(self, attachment_id: str, user_id: str) -> None:
        old = self._delete(keys.user_pk(user_id), keys.attachment_sk(attachment_id))
        if old is None or "body" not in old:
            return
        record = ATTACHMENT.validate_json(decompress(old["body"]["B"]))
        if record.thread_id:
            self._delete(keys.items_pk(user_id, record.thread_id), keys.attachment_sk(record.id))

    def _fresh_attachment(self, attachment: Attachment) -> Attachment:
        return self.uploads.with_fresh_preview(attachment) if self.uploads else attachment

    def _fresh_item(self, item: ThreadItem) -> ThreadItem:
        """Items are served with newly presigned image previews."""
        if isinstance(item, UserMessageItem) and item.attachments and self.uploads:
            fresh = [self._fresh_attachment(attachment) for attachment in item.attachments]
            return item.model_copy(update={"attachments": fresh})
        return item

    # -- rows ----------------------------------------------------------------------------

    def _get(self, pk: str, sk: str) -> TableRecord | None:
        try:
            return self.table.get(pk, sk, consistent_read=True)
        except self.table.DoesNotExist:
            return None

    def _sort_key_of(self, pk: str, sk: str, missing: str) -> str:
        """Resolve a cursor id to its position in the created order (one GetItem)."""
        try:
            row = self.table.get(pk, sk, consistent_read=True, attributes_to_get=["lsi1sk"])
        except self.table.DoesNotExist:
            raise NotFoundError(missing) from None
        if row.lsi1sk is None:
            raise NotFoundError(missing)
        return row.lsi1sk

    def _query_page(
        self, pk: str, cursor: str | None, limit: int, order: str
    ) -> tuple[list[TableRecord], bool]:
        """One Query of limit+1 rows after `cursor` in `order`; returns (rows, has_more)."""
        direction = _direction(order)
        size = _page_size(limit)
        condition = None
        if cursor is not None:
            index_key = self.table.lsi1sk
            condition = index_key > cursor if direction == "asc" else index_key < cursor
        rows = list(
            self.table.by_created.query(  # type: ignore[attr-defined]
                pk,
                range_key_condition=condition,
                scan_index_forward=direction == "asc",
                consistent_read=True,
                limit=size + 1,
                page_size=size + 1,
            )
        )
        return rows[:size], len(rows) > size

    def _put(
        self,
        pk: str,
        sk: str,
        *,
        kind: str,
        json_text: str,
        lsi1sk: str | None = None,
        offload_key: str | None = None,
        upload_key: str | None = None,
    ) -> None:
        body: bytes | None = compress(json_text)
        codec, stored_key = CODEC_ZLIB_JSON, None
        if offload_key is not None and body is not None and len(body) > self.offload_threshold:
            if self.payloads is None:
                raise ValueError(f"item of {len(body)} compressed bytes needs an S3 payload bucket")
            # The object is written before the row, so a row never points at nothing.
            self.payloads.put(offload_key, body)
            codec, stored_key, body = CODEC_S3_ZLIB_JSON, offload_key, None
        # UpdateItem rather than PutItem: an upsert that keeps attributes set elsewhere
        # (feedback), and returns the old payload pointer so a replaced S3 body is removed.
        table = self.table
        actions = [
            table.kind.set(kind),
            table.codec.set(codec),
            table.lsi1sk.set(lsi1sk) if lsi1sk is not None else table.lsi1sk.remove(),
            table.body.set(body) if body is not None else table.body.remove(),
            table.payload_key.set(stored_key) if stored_key else table.payload_key.remove(),
            table.upload_key.set(upload_key) if upload_key else table.upload_key.remove(),
        ]
        response = table._get_connection().update_item(
            pk, range_key=sk, actions=actions, return_values="UPDATED_OLD"
        )
        old_key = (response.get("Attributes") or {}).get("payload_key", {}).get("S")
        if old_key and old_key != stored_key and self.payloads is not None:
            self.payloads.delete([old_key])

    def _delete(self, pk: str, sk: str) -> dict[str, Any] | None:
        """DeleteItem; returns the old row's raw attributes, or None if there was none."""
        response = self.table._get_connection().delete_item(
            pk, range_key=sk, return_values="ALL_OLD"
        )
        old: dict[str, Any] | None = response.get("Attributes")
        return old

    def _delete_rows(self, batch: _DeleteBatch) -> None:
        """Delete up to 25 rows and their S3 objects (one BatchWriteItem, unprocessed retried)."""
        # S3 first: if we stop here the rows remain and a repeated delete finds them again.
        if batch.payload_keys and self.payloads is not None:
            self.payloads.delete(batch.payload_keys)
        if batch.upload_keys and self.uploads is not None:
            self.uploads.delete(batch.upload_keys)
        requests = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in batch.rows]
        connection = self.table._get_connection()
        for attempt in range(self.batch_attempts):
            response = connection.batch_write_item(delete_items=requests)
            unprocessed = (response.get("UnprocessedItems") or {}).get(self.table.Meta.table_name)
            if not unprocessed:
                return
            requests = [request["DeleteRequest"]["Key"] for request in unprocessed]
            if attempt + 1 < self.batch_attempts:
                self._sleep(self._backoff(attempt))
        raise StoreUnavailableError(
            f"DynamoDB left {len(requests)} deletes unprocessed after "
            f"{self.batch_attempts} attempts; repeat the delete to resume"
        )

    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2**attempt)
        return random.uniform(0, ceiling)

    def _read_body(self, row: TableRecord) -> str:
        if row.codec == CODEC_ZLIB_JSON and row.body is not None:
            return decompress(row.body)
        if row.codec == CODEC_S3_ZLIB_JSON and row.payload_key and self.payloads is not None:
            return decompress(self.payloads.get(row.payload_key))
        raise ValueError(f"row {row.pk}/{row.sk} has an unreadable codec {row.codec!r}")


def _direction(order: str) -> Literal["asc", "desc"]:
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    return "asc" if order == "asc" else "desc"


def _page_size(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    return min(limit, MAX_PAGE_SIZE)
