"""Fault injection at the botocore level: answers DynamoDB requests before moto sees them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from store import TableRecord
from store.table import dynamodb_client


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self._body


def _response(request: AWSPreparedRequest, status: int, payload: dict[str, Any]) -> AWSResponse:
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"}
    return AWSResponse(request.url, status, headers, _RawBody(json.dumps(payload).encode()))


class Injector:
    """Counts attempts per operation and, for the first `times` of them, answers instead of moto."""

    def __init__(self, table: type[TableRecord]) -> None:
        self._events = dynamodb_client(table).meta.events
        self.attempts: dict[str, int] = {}

    def _register(
        self, operation: str, times: int, answer: Callable[[AWSPreparedRequest], AWSResponse]
    ) -> None:
        def before_send(request: AWSPreparedRequest, **_kwargs: Any) -> AWSResponse | None:
            self.attempts[operation] = self.attempts.get(operation, 0) + 1
            return answer(request) if self.attempts[operation] <= times else None

        self._events.register_first(f"before-send.dynamodb.{operation}", before_send)

    def throttle(
        self, operation: str, times: int, code: str = "ProvisionedThroughputExceededException"
    ) -> None:
        payload = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "Rate exceeded"}
        self._register(operation, times, lambda request: _response(request, 400, payload))

    def leave_unprocessed(self, times: int) -> None:
        """BatchWriteItem answers 200 but processes nothing, as DynamoDB does under load."""

        def unprocessed(request: AWSPreparedRequest) -> AWSResponse:
            body = request.body
            text = body.decode() if isinstance(body, bytes) else str(body)
            return _response(request, 200, {"UnprocessedItems": json.loads(text)["RequestItems"]})

        self._register("BatchWriteItem", times, unprocessed)

    def observe(self, operation: str, callback: Callable[[], None]) -> None:
        """Run `callback` (in the calling thread) before each request of `operation` is sent."""

        def before_send(request: AWSPreparedRequest, **_kwargs: Any) -> None:
            self.attempts[operation] = self.attempts.get(operation, 0) + 1
            callback()

        self._events.register_first(f"before-send.dynamodb.{operation}", before_send)
