"""Deleting a thread's rows and S3 objects, 25 rows per BatchWriteItem, resumable.

The thread row has become a tombstone before this runs (see `thread_rows.mark_deleted`), so
nothing writes to the thread any more; a delete interrupted half way is simply repeated.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from store import keys
from store.errors import StoreUnavailableError
from store.payloads import PayloadBucket
from store.table import TableRecord, table_connection
from store.uploads import UploadBucket

MAX_BATCH_WRITE = 25


@dataclass
class _DeleteBatch:
    """Rows (pk, sk) to delete in one BatchWriteItem, and the S3 objects that go with them."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    payload_keys: list[str] = field(default_factory=list)
    upload_keys: list[str] = field(default_factory=list)


@dataclass
class ThreadRowsDeleter:
    """Deletes every row of a thread's item partition, the attachment records it references,
    and their S3 objects. Unprocessed deletes are retried with full-jitter backoff."""

    table: type[TableRecord]
    payloads: PayloadBucket | None
    uploads: UploadBucket | None
    attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    sleep: Callable[[float], None] = time.sleep

    def delete_rows_of(self, user_id: str, thread_id: str) -> None:
        """Delete the thread's items, attachment references and records, and their S3 objects.

        Raises StoreUnavailableError when DynamoDB keeps leaving deletes unprocessed, and
        S3DeleteError when S3 keeps objects; the rows are still there then, so a repeated
        delete finds them again.
        """
        batch = _DeleteBatch()
        # Only keys and S3 pointers are needed to delete; DynamoDB pages them by 1 MB.
        rows = self.table.query(
            keys.items_pk(user_id, thread_id),
            consistent_read=True,
            attributes_to_get=["pk", "sk", "payload_key", "upload_key"],
        )
        for row in rows:
            doomed = [(row.pk, row.sk)]
            if row.sk.startswith(keys.ATTACHMENT_PREFIX):
                # A reference to an attachment sent in this thread: its record goes too.
                doomed.append((keys.user_pk(user_id), row.sk))
            if len(batch.rows) + len(doomed) > MAX_BATCH_WRITE:
                self._delete_batch(batch)
                batch = _DeleteBatch()
            batch.rows.extend(doomed)
            if row.payload_key:
                batch.payload_keys.append(row.payload_key)
            if row.upload_key:
                batch.upload_keys.append(row.upload_key)
        if batch.rows:
            self._delete_batch(batch)

    def _delete_batch(self, batch: _DeleteBatch) -> None:
        """Delete up to 25 rows and their S3 objects (one BatchWriteItem, unprocessed retried)."""
        # S3 first: if we stop here the rows remain and a repeated delete finds them again.
        if batch.payload_keys and self.payloads is not None:
            self.payloads.delete(batch.payload_keys)
        if batch.upload_keys and self.uploads is not None:
            self.uploads.delete(batch.upload_keys)
        requests = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in batch.rows]
        dynamodb = table_connection(self.table)
        for attempt in range(self.attempts):
            response = dynamodb.batch_write_item(delete_items=requests)
            unprocessed = (response.get("UnprocessedItems") or {}).get(self.table.Meta.table_name)
            if not unprocessed:
                return
            requests = [request["DeleteRequest"]["Key"] for request in unprocessed]
            if attempt + 1 < self.attempts:
                self.sleep(self._backoff(attempt))
        raise StoreUnavailableError(
            f"DynamoDB left {len(requests)} deletes unprocessed after "
            f"{self.attempts} attempts; repeat the delete to resume"
        )

    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2**attempt)
        return random.uniform(0, ceiling)
