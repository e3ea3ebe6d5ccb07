"""DynamoDBStore: chatkit's Store contract on the single table (rows: store.keys, bodies:
store.bodies, the thread row as guard: store.thread_rows)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata
from pynamodb.exceptions import UpdateError

from logs import logger
from store import keys, thread_rows
from store.aws import condition_failed, in_worker
from store.bodies import ATTACHMENT, RowBodies, metadata_of
from store.context import RequestContext
from store.errors import StoreUnavailableError, ThreadDeletedError, ThreadLeaseLostError
from store.ids import ID_PREFIXES, random_id
from store.payloads import (
    CODEC_ZLIB_JSON,
    DEFAULT_OFFLOAD_THRESHOLD,
    PayloadBucket,
    compress,
    decompress,
    payload_key,
)
from store.rows import RowCheck, RowWrite, TransactionCancelledError, get_row, stored_json, transact
from store.table import TableRecord, table_connection
from store.thread_delete import ThreadRowsDeleter
from store.turns import Turn
from store.uploads import UploadBucket, upload_key

T = TypeVar("T")


MAX_PAGE_SIZE = 200


class DynamoDBStore(Store[RequestContext]):
    """Threads, items and attachment records of every user in one DynamoDB table.

    Every key embeds `context.user_id`; another user's object is never found. Reads that
    follow a write use consistent reads. Writes never bring back a deleted thread, and a
    request that answers in a thread (`context.turn`) holds the thread's lease while it
    writes. Calls run in a worker thread so the event loop keeps streaming tokens while
    DynamoDB answers; StoreUnavailableError means DynamoDB or S3 did not answer in time.
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
        self.bodies = RowBodies(table, payloads, uploads, offload_threshold)
        self.deleter = ThreadRowsDeleter(
            table,
            payloads,
            uploads,
            attempts=batch_attempts,
            backoff_base_seconds=backoff_base_seconds,
            backoff_cap_seconds=backoff_cap_seconds,
            sleep=sleep,
        )

    # -- ids -----------------------------------------------------------------------------

    def generate_thread_id(self, context: RequestContext) -> str:
        """A new thread id (128 random bits); a turn creating a thread learns its id here."""
        thread_id = random_id(ID_PREFIXES["thread"])
        turn = context.turn
        if turn is not None and turn.creating and turn.thread_id is None:
            turn.thread_id = thread_id
        return thread_id

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: RequestContext
    ) -> str:
        """A new item id (128 random bits); its row is created only if it does not exist."""
        item_id = random_id(ID_PREFIXES.get(item_type, item_type))
        context.new_ids.add(item_id)
        return item_id

    # -- turns ---------------------------------------------------------------------------

    async def begin_turn(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        """Take the thread's lease for `context.turn` and return the thread (one UpdateItem).

        The SDK's next `load_thread` of this thread is answered from it. Raises NotFoundError
        when the caller has no such thread, ThreadBusyError when another turn answers in it.
        """
        turn = _turn_of(context)
        row = await self._run(
            thread_rows.take_lease, self.table, context.user_id, thread_id, turn, context=context
        )
        turn.thread_id, turn.held = thread_id, True
        turn.loaded_thread = self.bodies.thread_of(row)
        return turn.loaded_thread.model_copy(deep=True)

    async def finish_turn(
        self,
        thread: ThreadMetadata | None,
        item: ThreadItem | None,
        context: RequestContext,
    ) -> None:
        """The turn's last write: `item` and the changed `thread` (either may be None) saved
        and the lease given back, in one request.

        Raises ThreadDeletedError or ThreadLeaseLostError (nothing written) when the turn no
        longer owns a live thread, StoreUnavailableError when DynamoDB does not answer.
        """
        turn = _turn_of(context)
        if turn.thread_id is None or not turn.held:
            return
        if item is None and thread is None:
            await self.end_turn(context)
            return
        await self._run_item_write(
            self._finish_turn, turn.thread_id, item, thread, context, context=context, item=item
        )

    async def end_turn(self, context: RequestContext) -> None:
        """Give the thread's lease back if the turn still holds it (a no-op otherwise).

        A DynamoDB that does not answer is logged, not raised: the lease expires by itself.
        """
        turn = context.turn
        if turn is None or turn.thread_id is None or not turn.held:
            return
        turn.held = False
        try:
            await self._run(
                thread_rows.release_lease, self.table, context.user_id, turn.thread_id, turn
            )
        except StoreUnavailableError:
            logger.warning("thread lease not released; it expires in %ss", turn.lease_seconds)

    # -- threads -------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        """Return the thread's metadata; NotFoundError if the caller has no such thread."""
        turn = context.turn
        if turn is not None and turn.loaded_thread is not None and turn.thread_id == thread_id:
            loaded, turn.loaded_thread = turn.loaded_thread, None
            return loaded
        return await self._run(self._load_thread, thread_id, context.user_id)

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        """Upsert the thread's metadata (a `Thread`'s items are not part of it).

        A deleted thread is never written again (ThreadDeletedError). A thread a turn is
        creating is written with its first row.
        """
        await self._run(self._save_thread, thread, context, context=context)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        """Return a page of the caller's threads by created_at.

        `after` is an exclusive cursor: the id of the last thread of the previous page.
        """
        return await self._run(self._load_threads, limit, after, order, context.user_id)

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        """Delete the thread, its items and their S3 payloads; NotFoundError if there was no thread.

        The thread row becomes a tombstone first, so no write brings the thread back and it
        is no longer listed; items go next. A call interrupted half way can be repeated.
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
        """Upsert the item (the SDK may add the same id twice); ThreadDeletedError if the
        thread is gone: an item never outlives its thread."""
        await self._run_item_write(
            self._save_item, thread_id, item, context, context=context, item=item
        )

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        """Upsert the item by id; ThreadDeletedError if the thread is gone."""
        await self._run_item_write(
            self._save_item, thread_id, item, context, context=context, item=item
        )

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        """Return the item; NotFoundError if the caller's thread has no such item."""
        return await self._run(self._load_item, thread_id, item_id, context.user_id)

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> None:
        """Delete the item and its S3 payload, if any (deleting a missing item is a no-op).

        An item this turn generated but never stored is not looked for.
        """
        turn = context.turn
        if item_id in context.new_ids or (turn is not None and item_id in turn.unsaved):
            return
        await self._run(self._delete_item, thread_id, item_id, context.user_id)

    async def save_feedback(
        self, thread_id: str, item_ids: list[str], kind: str, context: RequestContext
    ) -> None:
        """Record feedback `kind` and the time on each item (one UpdateItem per item).

        Raises NotFoundError, changing nothing further, at the first item the caller's
        thread does not have.
        """
        await self._run(self._save_feedback, thread_id, item_ids, kind, context.user_id)

    # -- attachments ---------------------------------------------------------------------

    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        """Upsert the attachment record (created only if new when it carries its upload URL).

        Sent in a thread, it is also referenced from the thread (ThreadDeletedError if the
        thread is gone), so deleting the thread deletes it.
        """
        await self._run(self._save_attachment, attachment, context, context=context)

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        """Return the attachment record; NotFoundError if the caller has none with this id."""
        return await self._run(self._load_attachment, attachment_id, context.user_id)

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Delete the attachment record (deleting a missing one is a no-op)."""
        await self._run(self._delete_attachment, attachment_id, context.user_id)

    # -- synchronous implementation (runs in a worker thread) ----------------------------

    async def _run(
        self, function: Callable[..., T], *args: Any, context: RequestContext | None = None
    ) -> T:
        """Run `function` in a worker thread (see `in_worker`); a turn whose store call found
        AWS unavailable remembers it."""
        try:
            return await in_worker(function, *args)
        except StoreUnavailableError:
            if context is not None and context.turn is not None:
                context.turn.store_unavailable = True
            raise

    async def _run_item_write(
        self,
        function: Callable[..., None],
        *args: Any,
        context: RequestContext,
        item: ThreadItem | None,
    ) -> None:
        """Run an item write; a failed one is remembered, so deleting the item sends nothing."""
        try:
            await self._run(function, *args, context=context)
        except (StoreUnavailableError, NotFoundError, ThreadLeaseLostError):
            if context.turn is not None and item is not None:
                context.turn.unsaved.add(item.id)
            raise

    def _load_thread(self, thread_id: str, user_id: str) -> ThreadMetadata:
        row = get_row(self.table, keys.user_pk(user_id), keys.thread_sk(thread_id))
        if row is None or not thread_rows.is_live(row):
            raise NotFoundError(f"Thread {thread_id} not found")
        return self.bodies.thread_of(row)

    def _save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        metadata = metadata_of(thread)
        turn = context.turn
        if turn is not None and turn.creating and turn.thread_id == metadata.id:
            turn.pending_thread = metadata  # written with the thread's first row
            return
        pk, sk = keys.user_pk(context.user_id), keys.thread_sk(metadata.id)
        json_text, _ = stored_json(metadata)
        ours = turn is not None and turn.thread_id == metadata.id
        if ours and turn is not None and turn.written.get(sk) == json_text:
            return  # the turn wrote exactly this already
        condition = (
            thread_rows.held_by(self.table, turn)
            if ours and turn is not None and turn.held
            else self.table.pk.does_not_exist() | thread_rows.live(self.table)
        )
        try:
            table_connection(self.table).update_item(
                pk, range_key=sk, actions=self.bodies.thread_actions(metadata), condition=condition
            )
        except UpdateError as error:
            if not condition_failed(error):
                raise
            raise self._thread_gone(context.user_id, metadata.id) from None
        if turn is not None and turn.thread_id == metadata.id:
            turn.written[sk] = json_text

    def _load_threads(
        self, limit: int, after: str | None, order: str, user_id: str
    ) -> Page[ThreadMetadata]:
        page = _PageRequest(keys.user_pk(user_id), after, limit, order)
        return self._load_page(page, keys.thread_sk, "Thread", self.bodies.thread_of)

    def _delete_thread(self, thread_id: str, user_id: str) -> None:
        if not thread_rows.mark_deleted(self.table, user_id, thread_id):
            raise NotFoundError(f"Thread {thread_id} not found")
        self.deleter.delete_rows_of(user_id, thread_id)

    def _load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, user_id: str
    ) -> Page[ThreadItem]:
        page = _PageRequest(keys.items_pk(user_id, thread_id), after, limit, order)
        return self._load_page(page, keys.item_sk, "Item", self.bodies.item_of)

    def _save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        self._write_item(thread_id, item, None, context, finish=False)

    def _finish_turn(
        self,
        thread_id: str,
        item: ThreadItem | None,
        thread: ThreadMetadata | None,
        context: RequestContext,
    ) -> None:
        self._write_item(thread_id, item, thread, context, finish=True)
        turn = _turn_of(context)
        turn.held = False

    def _write_item(
        self,
        thread_id: str,
        item: ThreadItem | None,
        thread: ThreadMetadata | None,
        context: RequestContext,
        *,
        finish: bool,
    ) -> None:
        """One transaction: the thread row guarded (or created, updated, released) and the
        item row written. A body that shrinks back into its row also loses its S3 object."""
        turn, user_id = context.turn, context.user_id
        if item is not None and self._already_written(turn, thread_id, item):
            item = None
        if item is None and thread is None and not finish:
            return
        new = item is not None and item.id in context.new_ids
        checks, writes = self._thread_guard(user_id, thread_id, turn, finish=finish, thread=thread)
        rows = [*writes, self.bodies.item_row(thread_id, item, user_id, new)] if item else writes
        try:
            transact(self.table, checks, rows)
        except TransactionCancelledError as cancelled:
            if item is None or not cancelled.failed(len(checks) + len(rows) - 1):
                raise self._thread_gone(user_id, thread_id) from None
            if new:
                raise RuntimeError(f"Item id {item.id} is already taken") from None
            # What failed is "no S3 payload": the body shrank back into its row.
            self._drop_payload(user_id, thread_id, item.id)
            shrunk = self.bodies.item_row(thread_id, item, user_id, new, shrunk=True)
            transact(self.table, checks, [*writes, shrunk])
        self._after_write(context, thread_id, item, thread)

    @staticmethod
    def _already_written(turn: Turn | None, thread_id: str, item: ThreadItem) -> bool:
        """Whether this turn already wrote exactly this item (the SDK saves what we saved)."""
        if turn is None or turn.thread_id != thread_id:
            return False
        return turn.written.get(keys.item_sk(item.id)) == stored_json(item)[0]

    def _thread_guard(
        self,
        user_id: str,
        thread_id: str,
        turn: Turn | None,
        *,
        finish: bool = False,
        thread: ThreadMetadata | None = None,
    ) -> tuple[list[RowCheck], list[RowWrite]]:
        """What a write to the thread's rows adds to its transaction: the live thread row
        checked, or this turn's lease checked, or the turn's new thread created with its
        lease, or the thread updated and its lease given back (`finish`)."""
        table = self.table
        pk, sk = keys.user_pk(user_id), keys.thread_sk(thread_id)
        if turn is None or turn.thread_id != thread_id or not (turn.held or turn.creating):
            return [RowCheck(pk, sk, thread_rows.live(table))], []
        if turn.creating:
            metadata = thread or turn.pending_thread
            if metadata is None:
                raise RuntimeError(f"Thread {thread_id} was not saved before its first row")
            actions = self.bodies.thread_actions(metadata)
            if not finish:
                actions += thread_rows.lease_actions(table, turn)
            return [], [RowWrite(pk, sk, actions, table.pk.does_not_exist())]
        if not finish and thread is None:
            return [RowCheck(pk, sk, thread_rows.held_by(table, turn))], []
        actions = self.bodies.thread_actions(thread) if thread is not None else []
        if finish:
            actions += thread_rows.release_actions(table)
        return [], [RowWrite(pk, sk, actions, thread_rows.held_by(table, turn))]

    @staticmethod
    def _after_write(
        context: RequestContext,
        thread_id: str,
        item: ThreadItem | None,
        thread: ThreadMetadata | None,
    ) -> None:
        """Remember what was written: a new id is taken; a turn's new thread now exists and
        its lease is held; what the turn wrote last of each row."""
        if item is not None:
            context.new_ids.discard(item.id)
        turn = context.turn
        if turn is None or turn.thread_id != thread_id:
            return
        if turn.creating:
            thread = thread or turn.pending_thread
            turn.creating, turn.pending_thread, turn.held = False, None, True
            turn.created = True
        if thread is not None:
            turn.written[keys.thread_sk(thread.id)] = stored_json(metadata_of(thread))[0]
        if item is not None:
            turn.written[keys.item_sk(item.id)] = stored_json(item)[0]
            turn.unsaved.discard(item.id)

    def _thread_gone(self, user_id: str, thread_id: str) -> Exception:
        """Why a write guarded by the thread row was refused (one GetItem, on failure only)."""
        row = get_row(self.table, keys.user_pk(user_id), keys.thread_sk(thread_id))
        if not thread_rows.is_live(row):
            return ThreadDeletedError(f"Thread {thread_id} was deleted")
        return ThreadLeaseLostError(f"Thread {thread_id} is being answered by another request")

    def _drop_payload(self, user_id: str, thread_id: str, item_id: str) -> None:
        if self.payloads is not None:
            self.payloads.delete([payload_key(user_id, thread_id, item_id)])

    def _load_item(self, thread_id: str, item_id: str, user_id: str) -> ThreadItem:
        row = get_row(self.table, keys.items_pk(user_id, thread_id), keys.item_sk(item_id))
        if row is None:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}")
        return self.bodies.item_of(row)

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
                if condition_failed(error):
                    raise NotFoundError(f"Item {item_id} not found in thread {thread_id}") from None
                raise

    def _save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        user_id, key = context.user_id, upload_key(attachment)
        metadata = dict(attachment.metadata or {})
        thread_id = attachment.thread_id
        record_sk = keys.attachment_sk(attachment.id)
        if not (thread_id and key and not metadata.get("attached")):
            new = attachment.id in context.new_ids
            try:
                table_connection(self.table).update_item(
                    keys.user_pk(user_id),
                    range_key=record_sk,
                    actions=self.bodies.attachment_actions(attachment),
                    condition=self.table.pk.does_not_exist() if new else None,
                )
            except UpdateError as error:
                if condition_failed(error):
                    raise RuntimeError(f"Attachment id {attachment.id} is already taken") from None
                raise
            context.new_ids.discard(attachment.id)
            return
        # Sent in a message: the upload is kept (no longer pending), its one-time upload URL
        # is dropped, and the thread references it so deleting the thread deletes it too.
        if self.uploads is not None and self.uploads.owns(user_id, key):
            self.uploads.mark_attached(key)
        metadata["attached"] = True
        sent = attachment.model_copy(update={"metadata": metadata, "upload_descriptor": None})
        reference = self.bodies.body_actions(
            "attachment_ref", compress("{}"), CODEC_ZLIB_JSON, None
        )
        reference.append(self.table.upload_key.set(key))
        checks, writes = self._thread_guard(user_id, thread_id, context.turn)
        writes += [
            RowWrite(keys.items_pk(user_id, thread_id), record_sk, reference),
            RowWrite(keys.user_pk(user_id), record_sk, self.bodies.attachment_actions(sent)),
        ]
        try:
            transact(self.table, checks, writes)
        except TransactionCancelledError:
            raise self._thread_gone(user_id, thread_id) from None
        self._after_write(context, thread_id, None, None)

    def _load_attachment(self, attachment_id: str, user_id: str) -> Attachment:
        row = get_row(self.table, keys.user_pk(user_id), keys.attachment_sk(attachment_id))
        if row is None:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        return self.bodies.attachment_of(row)

    def _delete_attachment(self, attachment_id: str, user_id: str) -> None:
        old = self._delete(keys.user_pk(user_id), keys.attachment_sk(attachment_id))
        if old is None or "body" not in old:
            return
        record = ATTACHMENT.validate_json(decompress(old["body"]["B"]))
        if record.thread_id:
            self._delete(keys.items_pk(user_id, record.thread_id), keys.attachment_sk(record.id))

    # -- rows ----------------------------------------------------------------------------

    def _load_page[M: _Identified](
        self,
        page: _PageRequest,
        sort_key: Callable[[str], str],
        what: str,
        read: Callable[[TableRecord], M],
    ) -> Page[M]:
        """A page of the partition's rows in created order, read with `read`. The cursor is an
        id, its row's sort key `sort_key(id)`; NotFoundError names `what` if there is no row."""
        cursor = None
        if page.after is not None:
            missing = f"{what} {page.after} not found"
            cursor = self._sort_key_of(page.pk, sort_key(page.after), missing)
        rows, has_more = self._query_page(page.pk, cursor, page.limit, page.order)
        data = [read(row) for row in rows]
        return Page(data=data, has_more=has_more, after=data[-1].id if has_more else None)

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

    def _delete(self, pk: str, sk: str) -> dict[str, Any] | None:
        """DeleteItem; returns the old row's raw attributes, or None if there was none."""
        response = table_connection(self.table).delete_item(
            pk, range_key=sk, return_values="ALL_OLD"
        )
        old: dict[str, Any] | None = response.get("Attributes")
        return old


@dataclass(frozen=True, slots=True)
class _PageRequest:
    """One page of a partition, as the SDK asks for it: after the id `after`, `limit` rows."""

    pk: str
    after: str | None
    limit: int
    order: str


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


def _turn_of(context: RequestContext) -> Turn:
    if context.turn is None:
        raise ValueError("a turn's store call needs a RequestContext made with for_turn")
    return context.turn


def _direction(order: str) -> Literal["asc", "desc"]:
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
    return "asc" if order == "asc" else "desc"


def _page_size(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    return min(limit, MAX_PAGE_SIZE)
