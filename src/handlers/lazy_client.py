"""A boto3 client created on its first use instead of during init.

Creating an S3 client loads botocore's S3 model (~175 ms, measured in a cold start), and most
requests never touch S3 (uploads and very large items only): the composition root hands the
stores this stand-in, which creates the real client once, on the first attribute read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast


class LazyClient:
    """Forwards every attribute to the client `create()` returns, created once (thread-safe)."""

    def __init__(self, create: Callable[[], object]) -> None:
        self._create = create
        self._client: object | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._create()
                client = self._client
        return getattr(client, name)


def lazy[C](create: Callable[[], C]) -> C:
    """A stand-in for `create()`'s client, typed as the client itself."""
    return cast(C, LazyClient(create))
