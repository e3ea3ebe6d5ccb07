"""Reading back the feedback a user gave on an item (the store only records it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store import DynamoDBStore, RequestContext, keys
from store.rows import get_row


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a user said about an item ("positive" or "negative") and when."""

    kind: str
    at: datetime


def load_feedback(
    store: DynamoDBStore, thread_id: str, item_id: str, context: RequestContext
) -> Feedback | None:
    """The feedback recorded on the caller's item, or None; AssertionError if there is no item."""
    pk = keys.items_pk(context.user_id, thread_id)
    row = get_row(store.table, pk, keys.item_sk(item_id))
    assert row is not None, f"no item {item_id} in thread {thread_id}"
    if row.feedback_kind is None or row.feedback_at is None:
        return None
    return Feedback(kind=row.feedback_kind, at=row.feedback_at)
