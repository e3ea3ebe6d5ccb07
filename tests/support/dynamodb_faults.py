"""Fault injection in front of moto's DynamoDB, at the botocore level.

`DynamoDBFaults(client)` makes chosen calls of a client (by operation, skipping the first
`after` of them, for `times` attempts) fail the way DynamoDB and the network fail:

- `throttle` / `fail`: an HTTP error answer (400 throttling, 500...), which botocore's retry
  mode sees exactly as it would see DynamoDB's;
- `reset`: the connection is dropped before an answer (botocore ConnectionClosedError);
- `stall`: nothing comes back: the call waits the client's read timeout, then times out;
- `leave_unprocessed`: BatchWriteItem answers 200 without processing anything;
- `conflict`: TransactWriteItems is cancelled because another request writes the same rows.

A faulted attempt never reaches moto, so nothing it would have written is written. Every
attempt is counted in `attempts`, faulted or not. `observe` runs a callback before each
attempt of an operation (to interleave another request at an exact point).

`blackhole()` is a TCP endpoint that accepts connections and never answers: a client pointed
at it sees a real stall (connect succeeds, reads time out).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from store.table import TableRecord, table_connection

Answer = Callable[[AWSPreparedRequest], AWSResponse]


def dynamodb_client(record: type[TableRecord]) -> Any:
    """The botocore client PynamoDB sends this table's requests with (to count or inject faults)."""
    return table_connection(record).connection.client


_DETOUR = "http://fault-injected.invalid/"


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self._body


def error_answer(status: int, code: str, message: str = "injected", **fields: Any) -> Answer:
    """An answer DynamoDB could give: `status` with the JSON error body of `code`."""
    payload = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
    payload.update(fields)

    def answer(request: AWSPreparedRequest) -> AWSResponse:
        return _response(request, status, payload)

    return answer


def _response(request: AWSPreparedRequest, status: int, payload: dict[str, Any]) -> AWSResponse:
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"}
    return AWSResponse(request.url, status, headers, _RawBody(json.dumps(payload).encode()))


@dataclass
class _Rule:
    operation: str
    times: int
    after: int
    answer: Answer | None  # None: raise instead of answering
    raise_error: Callable[[AWSPreparedRequest], Exception] | None = None
    seen: int = 0


class DynamoDBFaults:
    """Faults for the chosen calls of one botocore DynamoDB client (see the module doc)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._events = client.meta.events
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self.released = threading.Event()  # set to end every stall at once (teardown)
        self.attempts: dict[str, int] = {}
        self._events.register_first("before-send.dynamodb", self._before_send)
        # moto answers in a `before-send` handler too (on the unqualified event, which runs
        # after the qualified ones): a faulted request is detoured past it, then restored.
        self._events.register_last("before-send", self._restore_url)

    @classmethod
    def of(cls, table: type[TableRecord]) -> DynamoDBFaults:
        """Faults for the client PynamoDB sends `table`'s requests with."""
        return cls(dynamodb_client(table))

    # -- what to inject -------------------------------------------------------------------

    def throttle(
        self,
        operation: str,
        times: int = 1,
        *,
        after: int = 0,
        code: str = "ProvisionedThroughputExceededException",
    ) -> None:
        self._add(_Rule(operation, times, after, error_answer(400, code, "Rate exceeded")))

    def fail(
        self,
        operation: str,
        times: int = 1,
        *,
        after: int = 0,
        status: int = 500,
        code: str = "InternalServerError",
    ) -> None:
        self._add(_Rule(operation, times, after, error_answer(status, code)))

    def reset(self, operation: str, times: int = 1, *, after: int = 0) -> None:
        def closed(request: AWSPreparedRequest) -> Exception:
            return ConnectionClosedError(endpoint_url=request.url)

        self._add(_Rule(operation, times, after, None, closed))

    def stall(self, operation: str, times: int = 1, *, after: int = 0) -> None:
        def timed_out(request: AWSPreparedRequest) -> Exception:
            # Nothing comes back: the attempt lasts the client's read timeout, as a real one.
            self.released.wait(self._client.meta.config.read_timeout)
            return ReadTimeoutError(endpoint_url=request.url)

        self._add(_Rule(operation, times, after, None, timed_out))

    def conflict(self, rows: int, times: int = 1, *, after: int = 0) -> None:
        """TransactWriteItems of `rows` rows cancelled: another request wrote the last one."""
        reasons = [{"Code": "None"}] * (rows - 1) + [{"Code": "TransactionConflict"}]
        answer = error_answer(
            400, "TransactionCanceledException", "conflict", CancellationReasons=reasons
        )
        self._add(_Rule("TransactWriteItems", times, after, answer))

    def leave_unprocessed(self, times: int = 1, *, after: int = 0) -> None:
        def unprocessed(request: AWSPreparedRequest) -> AWSResponse:
            body = request.body
            text = body.decode() if isinstance(body, bytes) else str(body)
            return _response(request, 200, {"UnprocessedItems": json.loads(text)["RequestItems"]})

        self._add(_Rule("BatchWriteItem", times, after, unprocessed))

    def observe(self, operation: str, callback: Callable[[], None]) -> None:
        """Run `callback` in the calling thread before each attempt of `operation`."""

        def before_send(**_kwargs: Any) -> None:
            callback()

        self._events.register_first(f"before-send.dynamodb.{operation}", before_send)

    # -- botocore handlers ----------------------------------------------------------------

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _before_send(
        self, request: AWSPreparedRequest, event_name: str, **_kwargs: Any
    ) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.attempts[operation] = self.attempts.get(operation, 0) + 1
            rule = next((rule for rule in self._rules if self._applies(rule, operation)), None)
        if rule is None:
            return None
        if rule.raise_error is not None:
            raise rule.raise_error(request)
        assert rule.answer is not None
        response = rule.answer(request)
        self._local.url = request.url
        request.url = _DETOUR  # moto's handler, later in line, matches no service and passes
        return response

    def _applies(self, rule: _Rule, operation: str) -> bool:
        if rule.operation != operation:
            return False
        rule.seen += 1
        return rule.after < rule.seen <= rule.after + rule.times

    def _restore_url(self, request: AWSPreparedRequest, **_kwargs: Any) -> None:
        url = getattr(self._local, "url", None)
        if url is not None and request.url == _DETOUR:
            request.url, self._local.url = url, None


@contextmanager
def blackhole() -> Iterator[str]:
    """An http://127.0.0.1:port endpoint that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join()
        for connection in held:
            connection.close()
        server.close()
