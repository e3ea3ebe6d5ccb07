"""How threads, items and attachment records become row updates, and how rows are read back.

A body is zlib-compressed JSON in the row, or in S3 when it is too big for a row (the row
then holds its S3 key). Items and attachment records are served with fresh presigned
preview URLs.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatkit.types import Attachment, Thread, ThreadItem, ThreadMetadata, UserMessageItem
from pydantic import ConfigDict, TypeAdapter
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from store import keys
from store.payloads import (
    CODEC_S3_ZLIB_JSON,
    CODEC_ZLIB_JSON,
    PayloadBucket,
    compress,
    decompress,
    payload_key,
)
from store.rows import RowWrite, naive_again, stored_json
from store.table import TableRecord
from store.uploads import UploadBucket

# Their validators are built on first use, not at import: a cold start that serves no item yet
# (a thread list, the REST API) never builds them.
THREAD_ITEM = TypeAdapter[ThreadItem](ThreadItem, config=ConfigDict(defer_build=True))
ATTACHMENT = TypeAdapter[Attachment](Attachment, config=ConfigDict(defer_build=True))


@dataclass(frozen=True)
class RowBodies:
    """Row bodies of one table: written in the row or offloaded to `payloads` above
    `offload_threshold` compressed bytes; previews presigned by `uploads`."""

    table: type[TableRecord]
    payloads: PayloadBucket | None
    uploads: UploadBucket | None
    offload_threshold: int

    # -- reading -------------------------------------------------------------------------

    def thread_of(self, row: TableRecord) -> ThreadMetadata:
        thread = ThreadMetadata.model_validate_json(self.read_body(row))
        if row.naive_created_at:
            thread.created_at = naive_again(thread.created_at)
        return thread

    def item_of(self, row: TableRecord) -> ThreadItem:
        item = THREAD_ITEM.validate_json(self.read_body(row))
        if row.naive_created_at:
            item.created_at = naive_again(item.created_at)
        return self.fresh_item(item)

    def attachment_of(self, row: TableRecord) -> Attachment:
        """The attachment record without its one-time upload URL (that is for the
        attachments.create answer only), with a fresh preview."""
        attachment = ATTACHMENT.validate_json(self.read_body(row))
        return self.fresh_attachment(attachment.model_copy(update={"upload_descriptor": None}))

    def read_body(self, row: TableRecord) -> str:
        if row.codec == CODEC_ZLIB_JSON and row.body is not None:
            return decompress(row.body)
        if row.codec == CODEC_S3_ZLIB_JSON and row.payload_key and self.payloads is not None:
            return decompress(self.payloads.get(row.payload_key))
        raise ValueError(f"row {row.pk}/{row.sk} has an unreadable codec {row.codec!r}")

    def fresh_attachment(self, attachment: Attachment) -> Attachment:
        return self.uploads.with_fresh_preview(attachment) if self.uploads else attachment

    def fresh_item(self, item: ThreadItem) -> ThreadItem:
        """Items are served with newly presigned image previews."""
        if isinstance(item, UserMessageItem) and item.attachments and self.uploads:
            fresh = [self.fresh_attachment(attachment) for attachment in item.attachments]
            return item.model_copy(update={"attachments": fresh})
        return item

    # -- writing -------------------------------------------------------------------------

    def thread_actions(self, thread: ThreadMetadata) -> list[Action]:
        json_text, naive = stored_json(metadata_of(thread))
        actions = self.body_actions("thread", compress(json_text), CODEC_ZLIB_JSON, naive)
        actions.append(self.table.lsi1sk.set(keys.created_sort_key(thread.created_at, thread.id)))
        return actions

    def attachment_actions(self, attachment: Attachment) -> list[Action]:
        body = compress(attachment.model_dump_json())
        return self.body_actions("attachment", body, CODEC_ZLIB_JSON, None)

    def body_actions(
        self, kind: str, body: bytes | None, codec: str, naive: bool | None
    ) -> list[Action]:
        table = self.table
        return [
            table.kind.set(kind),
            table.codec.set(codec),
            table.body.set(body) if body is not None else table.body.remove(),
            table.naive_created_at.set(True) if naive else table.naive_created_at.remove(),
        ]

    def item_row(
        self, thread_id: str, item: ThreadItem, user_id: str, new: bool, *, shrunk: bool = False
    ) -> RowWrite:
        """The item's row write: created only if `new`; otherwise an upsert that fails when a
        body in S3 comes back into the row (unless `shrunk`: the S3 object is gone)."""
        json_text, naive = stored_json(item)
        body, codec, stored_key = self._body(json_text, payload_key(user_id, thread_id, item.id))
        actions = self.body_actions("item", body, codec, naive)
        actions.append(self.table.lsi1sk.set(keys.created_sort_key(item.created_at, item.id)))
        condition: Condition | None = None
        if stored_key is not None:
            actions.append(self.table.payload_key.set(stored_key))
        elif shrunk:
            actions.append(self.table.payload_key.remove())
        else:
            condition = self.table.payload_key.does_not_exist()
        if new:
            condition = self.table.pk.does_not_exist()
        return RowWrite(
            keys.items_pk(user_id, thread_id), keys.item_sk(item.id), actions, condition
        )

    def _body(self, json_text: str, offload_key: str) -> tuple[bytes | None, str, str | None]:
        """(row body, codec, S3 key): compressed in the row, or in S3 when too big for a row.

        The S3 object is written before the row, so a row never points at nothing.
        """
        body = compress(json_text)
        if len(body) <= self.offload_threshold:
            return body, CODEC_ZLIB_JSON, None
        if self.payloads is None:
            raise ValueError(f"item of {len(body)} compressed bytes needs an S3 payload bucket")
        self.payloads.put(offload_key, body)
        return None, CODEC_S3_ZLIB_JSON, offload_key


def metadata_of(thread: ThreadMetadata) -> ThreadMetadata:
    """The thread's metadata only: a `Thread`'s items are stored as items, never in its row."""
    if not isinstance(thread, Thread):
        return thread
    return ThreadMetadata.model_validate(thread.model_dump(exclude={"items"}))
