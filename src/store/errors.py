"""Errors the store raises besides chatkit's NotFoundError."""

from __future__ import annotations

from errors import InvalidRequestError


class InvalidIdError(InvalidRequestError, ValueError):
    """An id cannot be used as part of a key (empty, too long, or contains '#')."""


class StoreUnavailableError(RuntimeError):
    """DynamoDB or S3 kept throttling after every retry; the caller may try again later."""
