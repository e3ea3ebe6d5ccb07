"""The keys of every row in the single table (see `store.table`), built from checked ids.

| entity          | pk                  | sk              | lsi1sk (index "by_created") |
|-----------------|---------------------|-----------------|-----------------------------|
| thread          | U#{user}            | T#{thread}      | {created_us:017d}#{thread}  |
| item            | U#{user}#T#{thread} | I#{item}        | {created_us:017d}#{item}    |
| attachment      | U#{user}            | A#{attachment}  | (not indexed)               |
| sent attachment | U#{user}#T#{thread} | A#{attachment}  | (not indexed: for deletes)  |
| task            | U#{user}#TASKS      | K#{number:010d} | (not indexed)               |
| task counter    | U#{user}#TASKS      | COUNTER         | (not indexed)               |
| turn quota      | U#{user}#QUOTA      | D#{yyyy-mm-dd}  | (not indexed; TTL)          |

Every key starts with the user id taken from the request context, so an id guessed
or copied from another user resolves inside the caller's own key space. Each
collection that is paged (a user's threads, a thread's items) owns a partition of
its own, so the sparse local index lists exactly that collection in created order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from store.errors import InvalidIdError

SEPARATOR = "#"
# The longest id (user, thread, item, attachment) a key may embed.
MAX_ID_LENGTH = 255
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_id(value: str, what: str) -> str:
    """Return `value` if it can be embedded in a key; raise InvalidIdError otherwise."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or SEPARATOR in value:
        raise InvalidIdError(f"invalid {what} id: must be 1-{MAX_ID_LENGTH} characters without '#'")
    return value


def quota_pk(user_id: str) -> str:
    return f"U#{user_id}#QUOTA"


def quota_sk(day: datetime) -> str:
    """The sort key of the turn counter of `day` (a UTC date)."""
    return f"D#{day:%Y-%m-%d}"


def user_pk(user_id: str) -> str:
    return f"U#{user_id}"


def thread_sk(thread_id: str) -> str:
    return f"T#{check_id(thread_id, 'thread')}"


def items_pk(user_id: str, thread_id: str) -> str:
    return f"U#{user_id}#T#{check_id(thread_id, 'thread')}"


def item_sk(item_id: str) -> str:
    return f"I#{check_id(item_id, 'item')}"


ATTACHMENT_PREFIX = "A#"


def attachment_sk(attachment_id: str) -> str:
    return f"{ATTACHMENT_PREFIX}{check_id(attachment_id, 'attachment')}"


def as_utc(moment: datetime) -> datetime:
    """Make a timestamp timezone-aware in UTC.

    The SDK creates naive local times (`datetime.now()`): those are read as the
    machine's local time, so naive and aware timestamps order correctly together.
    """
    return moment.astimezone(UTC)


def created_sort_key(created_at: datetime, entity_id: str) -> str:
    """A total order: microseconds since the epoch, then the id to break ties."""
    created_us = (as_utc(created_at) - EPOCH) // timedelta(microseconds=1)
    return f"{created_us:017d}#{entity_id}"


# -- tasks ---------------------------------------------------------------------------------
# | task         | U#{user}#TASKS         | K#{number:010d} | (not indexed)               |
# | task counter | U#{user}#TASKS         | COUNTER         | (not indexed)               |
# A user's tasks own a partition, so listing them is one Query; the counter row in the same
# partition hands out task numbers atomically.

TASK_SK_PREFIX = "K#"
TASK_COUNTER_SK = "COUNTER"
MAX_TASK_NUMBER = 9_999_999_999  # ten digits keep the zero-padded sort key in number order


def tasks_pk(user_id: str) -> str:
    return f"U#{user_id}#TASKS"


def task_sk(number: int) -> str:
    """The sort key of task `number`; raise InvalidIdError unless it is an int 1-MAX_TASK_NUMBER."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidIdError(f"invalid task number: {number!r} is not an integer")
    if not 1 <= number <= MAX_TASK_NUMBER:
        raise InvalidIdError(f"invalid task number: must be 1-{MAX_TASK_NUMBER}")
    return f"{TASK_SK_PREFIX}{number:010d}"
