"""The thread row as the guard of everything in the thread: its lease and its tombstone.

A thread row is live (`kind = "thread"`), or a tombstone (`kind = "thread_deleted"`) left by
`delete_thread` until TTL removes it. Every write to a thread's rows carries a condition on
the live thread row in the same transaction, so a deleted thread is never written again:
not its metadata, not an item, not an attachment reference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatkit.store import NotFoundError
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from store import keys
from store.aws import condition_failed
from store.errors import ThreadBusyError
from store.rows import get_row
from store.table import TableRecord, table_connection
from store.turns import Turn, now_ms

THREAD_KIND = "thread"
DELETED_KIND = "thread_deleted"
# Longer than any request can run, so no late write of a deleted thread can find it gone.
TOMBSTONE_LIFETIME = timedelta(days=2)


def is_live(row: TableRecord | None) -> bool:
    return row is not None and row.kind == THREAD_KIND


def live(table: type[TableRecord]) -> Condition:
    return table.kind == THREAD_KIND


def held_by(table: type[TableRecord], turn: Turn) -> Condition:
    """The turn still holds the thread (a tombstone holds no lease)."""
    return table.lease_id == turn.token


def lease_actions(table: type[TableRecord], turn: Turn) -> list[Action]:
    return [table.lease_id.set(turn.token), table.lease_until.set(turn.lease_until_ms())]


def release_actions(table: type[TableRecord]) -> list[Action]:
    return [table.lease_id.remove(), table.lease_until.remove()]


def take_lease(table: type[TableRecord], user_id: str, thread_id: str, turn: Turn) -> TableRecord:
    """Take the thread's lease for `turn` and return the thread row (one UpdateItem).

    Raises NotFoundError when there is no live thread, ThreadBusyError when another turn
    holds an unexpired lease.
    """
    pk, sk = keys.user_pk(user_id), keys.thread_sk(thread_id)
    free = (
        table.lease_id.does_not_exist()
        | (table.lease_until < now_ms())
        | (table.lease_id == turn.token)  # a retry of our own request
    )
    try:
        response = table_connection(table).update_item(
            pk,
            range_key=sk,
            actions=lease_actions(table, turn),
            condition=live(table) & free,
            return_values="ALL_NEW",
        )
    except UpdateError as error:
        if not condition_failed(error):
            raise
        if not is_live(get_row(table, pk, sk)):
            raise NotFoundError(f"Thread {thread_id} not found") from None
        raise ThreadBusyError(f"Thread {thread_id} is answering another message") from None
    return table.from_raw_data(response["Attributes"])


def release_lease(table: type[TableRecord], user_id: str, thread_id: str, turn: Turn) -> None:
    """Give the lease back; a lease already given back, taken over or deleted is left alone."""
    try:
        table_connection(table).update_item(
            keys.user_pk(user_id),
            range_key=keys.thread_sk(thread_id),
            actions=release_actions(table),
            condition=held_by(table, turn),
        )
    except UpdateError as error:
        if not condition_failed(error):
            raise


def mark_deleted(table: type[TableRecord], user_id: str, thread_id: str) -> bool:
    """Turn the thread row into a tombstone: no longer listed or loaded, never written again.

    Returns False when there was no thread row at all (live or tombstone).
    """
    expires = datetime.now(UTC) + TOMBSTONE_LIFETIME
    try:
        table_connection(table).update_item(
            keys.user_pk(user_id),
            range_key=keys.thread_sk(thread_id),
            actions=[
                table.kind.set(DELETED_KIND),
                table.expires_at.set(expires),
                table.lsi1sk.remove(),
                table.body.remove(),
                *release_actions(table),
            ],
            condition=table.pk.exists(),
        )
    except UpdateError as error:
        if condition_failed(error):
            return False
        raise
    return True
