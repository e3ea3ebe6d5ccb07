"""Errors the store raises besides chatkit's NotFoundError, and where AWS errors become them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError
from chatkit.store import NotFoundError
from pynamodb.exceptions import PynamoDBException

from errors import InvalidRequestError

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
# Answers that mean "not now" rather than "never": what is left after botocore's retries.
UNAVAILABLE_CODES = THROTTLING_CODES | {
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionConflictException",
    "TransactionInProgressException",
}


class InvalidIdError(InvalidRequestError, ValueError):
    """An id cannot be used as part of a key (empty, too long, or contains '#')."""


class StoreUnavailableError(RuntimeError):
    """DynamoDB or S3 could not be reached, timed out or kept throttling after every retry;
    nothing is known to be lost and the caller may try again shortly."""

    retry_after_seconds = 2


class ThreadBusyError(RuntimeError):
    """Another turn is answering in this thread (it holds the thread's lease)."""


class ThreadLeaseLostError(RuntimeError):
    """This turn no longer holds its thread: the lease expired and another turn took it."""


class ThreadDeletedError(NotFoundError):
    """The thread was deleted (or never existed) while this request was writing to it."""


class S3DeleteError(RuntimeError):
    """S3 answered a batch delete but left some objects in place (named in the message)."""


@contextmanager
def unavailable_on_aws_errors() -> Iterator[None]:
    """Turn the errors that mean "AWS is not answering now" into StoreUnavailableError.

    Throttling and 5xx answers that outlived botocore's retries, timeouts and connection
    errors (which PynamoDB wraps with the botocore error as `cause`, and which carry no
    response) all become StoreUnavailableError; anything else is left as it is. DynamoDB is
    called through PynamoDB, S3 directly through boto3.
    """
    try:
        yield
    except PynamoDBException as error:
        if _unavailable(error.cause):
            raise StoreUnavailableError(_message("DynamoDB", error.cause)) from error
        raise
    except (ClientError, BotoCoreError) as error:
        if _unavailable(error):
            raise StoreUnavailableError(_message("S3", error)) from error
        raise


def _unavailable(cause: BaseException | None) -> bool:
    if isinstance(cause, BotoCoreError):
        # Connection refused or reset, DNS, connect and read timeouts, truncated answers.
        return True
    if isinstance(cause, ClientError):
        return aws_error_code(cause) in UNAVAILABLE_CODES
    return False


def aws_error_code(error: BaseException | None) -> str | None:
    """The AWS error code of a ClientError (or of a PynamoDB error's cause), if any."""
    if isinstance(error, PynamoDBException):
        error = error.cause
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def _message(service: str, cause: BaseException | None) -> str:
    code = aws_error_code(cause)
    if code in THROTTLING_CODES:
        return f"{service} is throttling requests and retries are exhausted; try again shortly"
    return f"{service} is unavailable right now; try again shortly"
