"""How objects become rows: bodies, created_at, update actions, and transactions.

Every body row (thread, item, attachment) is written with UpdateItem actions rather than
PutItem, so attributes set elsewhere (feedback, a turn's lease) survive an upsert. Writes
that must stay consistent with the thread row go through one TransactWriteItems request.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from store.errors import StoreUnavailableError, aws_error_code, unavailable_on_aws_errors
from store.table import TableRecord, table_connection

CANCELLED = "TransactionCanceledException"
# A transaction's cancellation reason for a row whose condition was false.
REASON_CONDITION_FAILED = "ConditionalCheckFailed"
# Cancellation reasons that mean "try again" rather than "your condition is false".
RETRYABLE_REASONS = frozenset({"ThrottlingError", "TransactionConflict", "InternalServerError"})
CONTENDED_ATTEMPTS = 3
CONTENDED_BACKOFF_SECONDS = 0.05


def stored_json(model: BaseModel) -> tuple[str, bool]:
    """The JSON to store for a model with a `created_at`, and whether that time was naive.

    A naive created_at (the SDK's `datetime.now()`) is read as the machine's local time and
    stored in UTC, so it orders by instant whatever the time zone of the writer; the flag
    lets it be given back naive, as it was saved.
    """
    created_at: datetime = model.created_at  # type: ignore[attr-defined]
    if created_at.tzinfo is not None:
        return model.model_dump_json(), False
    aware = model.model_copy(update={"created_at": created_at.astimezone(UTC)})
    return aware.model_dump_json(), True


def naive_again(created_at: datetime) -> datetime:
    """A stored UTC time as the naive local time it was saved as."""
    return created_at.astimezone().replace(tzinfo=None)


def get_row(table: type[TableRecord], pk: str, sk: str) -> TableRecord | None:
    """The row (a consistent read), or None when there is none."""
    try:
        return table.get(pk, sk, consistent_read=True)
    except table.DoesNotExist:
        return None


@dataclass(frozen=True)
class RowWrite:
    """One row of a transaction: update actions and the condition they need."""

    pk: str
    sk: str
    actions: list[Action]
    condition: Condition | None = None


@dataclass(frozen=True)
class RowCheck:
    """One row of a transaction that is only checked (or deleted, in `deletes`)."""

    pk: str
    sk: str
    condition: Condition


@dataclass
class TransactionCancelledError(Exception):
    """DynamoDB refused the transaction: `reasons[i]` is the code for its i-th row (checks
    first, then deletes, then writes, in the order given), None for rows that were fine."""

    reasons: list[str | None] = field(default_factory=list)

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == REASON_CONDITION_FAILED


def transact(
    table: type[TableRecord],
    checks: list[RowCheck],
    writes: list[RowWrite],
    deletes: list[RowCheck] | None = None,
) -> None:
    """Apply `writes` and `deletes` if every condition holds, all or nothing (one
    TransactWriteItems). Cancellation reasons come in the order checks, deletes, writes.

    botocore gives each request a ClientRequestToken and keeps it across its retries, so a
    retry of a request DynamoDB already applied is answered as a success. A transaction
    cancelled because another request was writing the same rows (or throttled) applied
    nothing and is tried again, up to CONTENDED_ATTEMPTS times. Raises
    TransactionCancelledError when a condition is false, StoreUnavailableError when DynamoDB
    is unavailable or the rows stay contended.
    """
    for attempt in range(CONTENDED_ATTEMPTS):
        try:
            _transact_once(table, checks, writes, deletes or [])
            return
        except TransactionCancelledError as cancelled:
            if not any(reason in RETRYABLE_REASONS for reason in cancelled.reasons):
                raise
            if attempt + 1 == CONTENDED_ATTEMPTS:
                raise StoreUnavailableError(
                    "DynamoDB is busy with these rows right now; try again shortly"
                ) from cancelled
            time.sleep(random.uniform(0, CONTENDED_BACKOFF_SECONDS * 2**attempt))


def _transact_once(
    table: type[TableRecord],
    checks: list[RowCheck],
    writes: list[RowWrite],
    deletes: list[RowCheck],
) -> None:
    connection = table_connection(table).connection
    try:
        with (
            unavailable_on_aws_errors(),
            TransactWrite(connection=connection) as transaction,
        ):
            for check in checks:
                transaction.condition_check(table, check.pk, check.sk, condition=check.condition)
            for doomed in deletes:
                transaction.delete(table(doomed.pk, doomed.sk), condition=doomed.condition)
            for write in writes:
                row = table(write.pk, write.sk)
                transaction.update(row, write.actions, condition=write.condition)
    except Exception as error:
        reasons = _cancellation_reasons(error)
        if reasons is None:
            raise
        raise TransactionCancelledError(reasons) from error


def _cancellation_reasons(error: BaseException) -> list[str | None] | None:
    """The cancellation reason codes, one per row, of a cancelled transaction (else None)."""
    if aws_error_code(error) != CANCELLED:
        return None
    reasons: list[Any] = list(getattr(error, "cancellation_reasons", None) or [])
    return [getattr(reason, "code", None) for reason in reasons]
