"""How the store calls AWS: off the event loop, with "not now" answers made one error, a
refused condition recognised in one way, and S3 deletes that report what they could not do."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from store.errors import S3DeleteError, aws_error_code, unavailable_on_aws_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# DynamoDB's answer when a write's condition is false (UpdateItem, PutItem, DeleteItem).
CONDITION_FAILED = "ConditionalCheckFailedException"
# S3 deletes at most this many objects per DeleteObjects request.
S3_DELETE_BATCH = 1000


async def in_worker[T](function: Callable[..., T], *args: Any) -> T:
    """Run a blocking AWS call in a worker thread, so the event loop keeps streaming.

    Raises StoreUnavailableError when DynamoDB or S3 did not answer in time or kept
    throttling (see `unavailable_on_aws_errors`); other errors pass through unchanged.
    """
    return await anyio.to_thread.run_sync(partial(_guarded, function, *args))


def _guarded[T](function: Callable[..., T], *args: Any) -> T:
    with unavailable_on_aws_errors():
        return function(*args)


def condition_failed(error: BaseException) -> bool:
    """Whether a DynamoDB write was refused because its condition was false."""
    return aws_error_code(error) == CONDITION_FAILED


def delete_s3_objects(s3: S3Client, bucket: str, keys: list[str]) -> None:
    """Delete the objects, 1000 per request; keys that do not exist count as deleted.

    DeleteObjects answers 200 even when some objects were not deleted: those are in the
    answer's `Errors`, and raise S3DeleteError naming them (after every batch was tried).
    """
    failed: list[str] = []
    for start in range(0, len(keys), S3_DELETE_BATCH):
        chunk = keys[start : start + S3_DELETE_BATCH]
        response = s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
        )
        failed += [
            f"{error.get('Key', '?')} ({error.get('Code', 'unknown error')})"
            for error in response.get("Errors", [])
        ]
    if failed:
        raise S3DeleteError(f"S3 did not delete {len(failed)} objects: {', '.join(failed)}")
