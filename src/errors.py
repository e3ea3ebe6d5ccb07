"""Errors a client can cause, each with the status and code it is answered with.

A `ClientRequestError` carries a message written for the person who sent the request: the app
answers it as a 4xx JSON body, or as an SSE `error` event once a stream has started. Any other
exception is ours: a generic 500 (or a generic `error` event) with the request id, its details
in the logs only. chatkit's `NotFoundError` (404) and pydantic's `ValidationError` (400) are
client errors too; the error map (`handlers.error_map`) answers them all.
"""

from __future__ import annotations

import json
from typing import ClassVar

from chatkit.errors import ErrorCode
from chatkit.types import ErrorEvent


class ClientRequestError(Exception):
    """A request the client can fix; `message` is safe to show (no keys, names or internals)."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"
    allow_retry: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(ClientRequestError):
    """The request cannot be served as sent (bad JSON, text that is not Unicode, wrong item)."""


class LimitExceededError(ClientRequestError):
    """The request asks for more than a configured limit allows (the message names the limit)."""

    code = "limit_exceeded"


class RequestTooLargeError(ClientRequestError):
    """The body is over the configured size limit."""

    status = 413
    code = "request_too_large"


class QuotaExceededError(ClientRequestError):
    """The user's daily quota is spent; `retry_after_seconds` is the time until it resets."""

    status = 429
    code = "quota_exceeded"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


# The `type` of chatkit's error event ("error").
ERROR_EVENT_TYPE: str = ErrorEvent.model_fields["type"].default


def error_event(error: BaseException) -> ErrorEvent:
    """The SSE `error` event for an error raised after a stream started: the client's own
    message for a ClientRequestError, a generic retryable error for anything else."""
    if isinstance(error, ClientRequestError):
        return ErrorEvent(code="custom", message=error.message, allow_retry=error.allow_retry)
    return ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)


def sse_message(event: ErrorEvent) -> bytes:
    """`event` as one SSE message, serialized the way chatkit serializes its own events."""
    return b"data: " + event.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n\n"


def is_error_event(message: bytes) -> bool:
    """Whether an SSE message of the stream is chatkit's `error` event (read, not guessed)."""
    try:
        event = json.loads(message.removeprefix(b"data: "))
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("type") == ERROR_EVENT_TYPE
