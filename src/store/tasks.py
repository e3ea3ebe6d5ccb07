"""TaskStore: each user's numbered task list, in a partition of its own in the single table.

Rows (see store.keys): `U#{user}#TASKS` / `K#{number:010d}` holds one task as compressed JSON,
`U#{user}#TASKS` / `COUNTER` holds the last number handed out. Numbers start at 1, come from an
atomic ADD on the counter, and are never reused, even after a delete.

`add_once` and `delete_once` make a change at most once per key (the agent's key: the message
a turn answers, the tool, its arguments): `U#{user}#TASKS` / `OP#{hash of key}` records the
change with the task it concerned, written in the same transaction, and expires after days.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from chatkit.store import NotFoundError
from pydantic import AwareDatetime, BaseModel, ConfigDict
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.operand import Path
from pynamodb.expressions.update import Action

from store import keys
from store.aws import condition_failed, in_worker
from store.context import RequestContext
from store.payloads import CODEC_ZLIB_JSON, compress, decompress
from store.rows import RowCheck, RowWrite, TransactionCancelledError, get_row, transact
from store.table import TableRecord, table_connection

MAX_TITLE_LENGTH = 200
TASK_KIND = "task"
COUNTER_KIND = "task_counter"
COUNTER_CODEC = "none"  # the counter row has no body
COUNTER_ATTRIBUTE = "last_number"
OP_KIND = "task_op"
OP_SK_PREFIX = "OP#"
OP_LIFETIME = timedelta(days=2)  # longer than anyone retries a message


class TaskRecord(BaseModel):
    """One task of a user's list, as stored and as shown."""

    model_config = ConfigDict(frozen=True)

    number: int
    title: str
    done: bool
    created_at: AwareDatetime
    completed_at: AwareDatetime | None = None


def clean_title(title: str) -> str:
    """Return the title without surrounding whitespace.

    Raises ValueError when it is empty or longer than 200 characters after stripping.
    """
    if not isinstance(title, str):
        raise ValueError("task title must be text")
    stripped = title.strip()
    if not stripped:
        raise ValueError("task title must not be empty")
    if len(stripped) > MAX_TITLE_LENGTH:
        raise ValueError(
            f"task title must be at most {MAX_TITLE_LENGTH} characters, not {len(stripped)}"
        )
    return stripped


class TaskStore:
    """The task list of every user; every key embeds `context.user_id`.

    Another user's task numbers resolve inside the caller's own list. Calls run in a worker
    thread; throttling that outlives botocore's retries raises StoreUnavailableError.
    """

    def __init__(
        self, table: type[TableRecord], *, now: Callable[[], datetime] | None = None
    ) -> None:
        self.table = table
        self._now = now or (lambda: datetime.now(UTC))

    async def add(self, title: str, context: RequestContext) -> TaskRecord:
        """Store a new open task under the caller's next number and return it.

        Raises ValueError when the title is empty or longer than 200 characters (after
        stripping); nothing is written then.
        """
        cleaned = clean_title(title)
        return await in_worker(self._add, cleaned, context.user_id)

    async def load_tasks(self, context: RequestContext) -> list[TaskRecord]:
        """Return the caller's tasks in number order (one Query)."""
        return await in_worker(self._load_tasks, context.user_id)

    async def complete(self, number: int, context: RequestContext) -> TaskRecord:
        """Mark the task done and return it (a done task keeps its completed_at).

        Raises NotFoundError when the caller has no task with this number.
        """
        return await in_worker(self._set_done, _existing_number(number), True, context.user_id)

    async def reopen(self, number: int, context: RequestContext) -> TaskRecord:
        """Mark the task not done and return it.

        Raises NotFoundError when the caller has no task with this number.
        """
        return await in_worker(self._set_done, _existing_number(number), False, context.user_id)

    async def delete(self, number: int, context: RequestContext) -> TaskRecord:
        """Delete the task and return it as it was; its number is not handed out again.

        Raises NotFoundError when the caller has no task with this number.
        """
        return await in_worker(self._delete, _existing_number(number), context.user_id)

    async def add_once(
        self, title: str, key: str, context: RequestContext
    ) -> tuple[TaskRecord, bool]:
        """`add`, at most once per `key`: a repeat returns the task the first call added and
        True, and writes nothing. Raises ValueError for a bad title, like `add`."""
        cleaned = clean_title(title)
        return await in_worker(self._add_once, cleaned, key, context.user_id)

    async def delete_once(
        self, number: int, key: str, context: RequestContext
    ) -> tuple[TaskRecord, bool]:
        """`delete`, at most once per `key`: a repeat returns the task as the first call
        deleted it and True. Raises NotFoundError when there is no such task (first call)."""
        return await in_worker(self._delete_once, _existing_number(number), key, context.user_id)

    # -- synchronous implementation (runs in a worker thread) ----------------------------

    def _add(self, title: str, user_id: str) -> TaskRecord:
        pk = keys.tasks_pk(user_id)
        task = TaskRecord(
            number=self._next_number(pk),
            title=title,
            done=False,
            created_at=self._now(),
        )
        # The counter never repeats a number; the condition guards against a reset counter.
        self._put(pk, task, condition_exists=False)
        return task

    def _add_once(self, title: str, key: str, user_id: str) -> tuple[TaskRecord, bool]:
        pk, op_sk = keys.tasks_pk(user_id), _op_sk(key)
        done = self._done_op(pk, op_sk)
        if done is not None:
            return done, True
        task = TaskRecord(
            number=self._next_number(pk), title=title, done=False, created_at=self._now()
        )
        new = self.table.pk.does_not_exist()
        try:
            transact(
                self.table,
                [],
                [
                    RowWrite(pk, keys.task_sk(task.number), self._task_actions(task), new),
                    RowWrite(pk, op_sk, self._op_actions(task), new),
                ],
            )
        except TransactionCancelledError:
            done = self._done_op(pk, op_sk)
            if done is None:
                raise
            return done, True
        return task, False

    def _delete_once(self, number: int, key: str, user_id: str) -> tuple[TaskRecord, bool]:
        pk, op_sk, sk = keys.tasks_pk(user_id), _op_sk(key), keys.task_sk(number)
        done = self._done_op(pk, op_sk)
        if done is not None:
            return done, True
        task = self._load_task(pk, number)
        exists = self.table.pk.exists()
        try:
            transact(
                self.table,
                [],
                [RowWrite(pk, op_sk, self._op_actions(task), self.table.pk.does_not_exist())],
                deletes=[RowCheck(pk, sk, exists)],
            )
        except TransactionCancelledError:
            raise _not_found(number) from None
        return task, False

    def _load_task(self, pk: str, number: int) -> TaskRecord:
        """The task (one consistent GetItem); NotFoundError when there is none."""
        row = get_row(self.table, pk, keys.task_sk(number))
        if row is None:
            raise _not_found(number)
        return _task_of(row)

    def _done_op(self, pk: str, op_sk: str) -> TaskRecord | None:
        """The task a change recorded under this key concerned, if it was made (one GetItem)."""
        row = get_row(self.table, pk, op_sk)
        if row is None or row.body is None:
            return None
        return TaskRecord.model_validate_json(decompress(row.body))

    def _task_actions(self, task: TaskRecord) -> list[Action]:
        table = self.table
        body = compress(task.model_dump_json())
        return [table.kind.set(TASK_KIND), table.codec.set(CODEC_ZLIB_JSON), table.body.set(body)]

    def _op_actions(self, task: TaskRecord) -> list[Action]:
        table = self.table
        body = compress(task.model_dump_json())
        return [
            table.kind.set(OP_KIND),
            table.codec.set(CODEC_ZLIB_JSON),
            table.body.set(body),
            table.expires_at.set(datetime.now(UTC) + OP_LIFETIME),
        ]

    def _next_number(self, pk: str) -> int:
        """Atomically increment the partition's counter (one UpdateItem) and return it."""
        response = table_connection(self.table).update_item(
            pk,
            range_key=keys.TASK_COUNTER_SK,
            actions=[
                self.table.kind.set(COUNTER_KIND),
                self.table.codec.set(COUNTER_CODEC),
                Path(COUNTER_ATTRIBUTE).add(1),
            ],
            return_values="UPDATED_NEW",
        )
        return int(response["Attributes"][COUNTER_ATTRIBUTE]["N"])

    def _load_tasks(self, user_id: str) -> list[TaskRecord]:
        rows = self.table.query(
            keys.tasks_pk(user_id),
            self.table.sk.startswith(keys.TASK_SK_PREFIX),
            consistent_read=True,
        )
        return [_task_of(row) for row in rows]

    def _set_done(self, number: int, done: bool, user_id: str) -> TaskRecord:
        pk = keys.tasks_pk(user_id)
        task = self._load_task(pk, number)
        if task.done == done:
            return task
        changed = task.model_copy(
            update={"done": done, "completed_at": self._now() if done else None}
        )
        with _not_found_when_missing(number):
            self._put(pk, changed, condition_exists=True)
        return changed

    def _delete(self, number: int, user_id: str) -> TaskRecord:
        with _not_found_when_missing(number):
            response = table_connection(self.table).delete_item(
                keys.tasks_pk(user_id),
                range_key=keys.task_sk(number),
                condition=self.table.pk.exists(),
                return_values="ALL_OLD",
            )
        return _task_of(self.table.from_raw_data(response["Attributes"]))

    def _put(self, pk: str, task: TaskRecord, *, condition_exists: bool) -> None:
        """PutItem the task; only if the row exists (True) or only if it does not (False)."""
        record = self.table(
            pk,
            keys.task_sk(task.number),
            kind=TASK_KIND,
            codec=CODEC_ZLIB_JSON,
            body=compress(task.model_dump_json()),
        )
        pk_attribute = self.table.pk
        condition = pk_attribute.exists() if condition_exists else pk_attribute.does_not_exist()
        record.save(condition=condition)


def _op_sk(key: str) -> str:
    """Any key (message ids, titles) as a fixed-length sort key."""
    return OP_SK_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


def _existing_number(number: int) -> int:
    """Return `number` if a task could have it; numbers outside 1..MAX never name a task."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"task number must be an int, not {type(number).__name__}")
    if not 1 <= number <= keys.MAX_TASK_NUMBER:
        raise _not_found(number)
    return number


def _not_found(number: int) -> NotFoundError:
    return NotFoundError(f"Task {number} not found")


@contextmanager
def _not_found_when_missing(number: int) -> Iterator[None]:
    """Turn a failed attribute_exists condition into NotFoundError."""
    try:
        yield
    except PynamoDBException as error:
        if condition_failed(error):
            raise _not_found(number) from None
        raise


def _task_of(row: TableRecord) -> TaskRecord:
    if row.kind != TASK_KIND or row.codec != CODEC_ZLIB_JSON or row.body is None:
        raise ValueError(f"row {row.pk}/{row.sk} is not a readable task")
    return TaskRecord.model_validate_json(decompress(row.body))
