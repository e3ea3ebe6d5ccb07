"""A Lambda Runtime API emulator on 127.0.0.1, for driving the streaming entry point locally
(`scripts/invoke`) and in tests.

It hands out queued events on GET /invocation/next and records, for each response, the
request headers, every chunk of the chunked body as it arrives (with its arrival time), and the
trailers. Chunk boundaries and trailers are read with h11, so they are exactly what was sent.
`timeline` interleaves arrivals with marks from the test (e.g. "the model produced a word"),
in the order they happened, so tests compare order rather than wall-clock thresholds.
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11

PRELUDE_DELIMITER = b"\0" * 8
API = "/2018-06-01/runtime"


@dataclass
class Chunk:
    """One HTTP chunk of a streamed response."""

    data: bytes
    arrived: float  # time.perf_counter()


@dataclass
class Recorded:
    """What the runtime POSTed for one invocation (or for init / restore)."""

    path: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    chunks: list[Chunk] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    started: float = 0.0

    @property
    def kind(self) -> str:
        return self.path.rsplit("/", 1)[-1]  # "response" or "error"

    def prelude(self) -> dict[str, Any]:
        """The JSON prelude of a streamed HTTP response."""
        head, delimiter, _ = self.body.partition(PRELUDE_DELIMITER)
        assert delimiter, f"no 8-NUL delimiter in {self.body[:200]!r}"
        prelude: dict[str, Any] = json.loads(head)
        return prelude

    def payload(self) -> bytes:
        """The HTTP body after the prelude and its delimiter."""
        _, delimiter, payload = self.body.partition(PRELUDE_DELIMITER)
        assert delimiter
        return payload

    def sse_events(self) -> list[dict[str, Any]]:
        """The decoded `data:` events of an SSE payload."""
        blocks = [block for block in self.payload().split(b"\n\n") if block]
        return [json.loads(block.removeprefix(b"data: ")) for block in blocks]

    def error(self) -> dict[str, Any]:
        """The reported error: the /error body, or the decoded error-body trailer."""
        if self.kind == "error":
            body: dict[str, Any] = json.loads(self.body)
            return body
        decoded: dict[str, Any] = json.loads(
            base64.b64decode(self.trailers["lambda-runtime-function-error-body"])
        )
        return decoded


@dataclass
class _Invocation:
    request_id: str
    body: bytes
    deadline_ms: int
    trace_id: str | None


class RuntimeApiEmulator:
    """A threaded Runtime API server; use as a context manager, or call close()."""

    def __init__(self, on_chunk: Callable[[bytes], None] | None = None) -> None:
        """`on_chunk` sees every chunk of an invocation's response the moment it arrives."""
        self._on_chunk = on_chunk
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._invocations: queue.Queue[_Invocation | None] = queue.Queue()
        self._results: dict[str, Recorded] = {}
        self._done = threading.Condition()
        self._timeline_lock = threading.Lock()
        self._sequence = itertools.count()
        self.timeline: list[tuple[str, str]] = []
        self.init_errors: list[Recorded] = []
        self.restore_errors: list[Recorded] = []
        self.next_calls = 0
        self.first_next_at: float | None = None  # time.perf_counter() of the first /next
        self.waiting_for_next = threading.Event()
        self.restore_requested = threading.Event()
        # Faults to inject: response connections to drop unanswered, /restore/next to fail.
        self.responses_to_drop = 0
        self.restore_next_status = 200
        # Called with the call's number at each /invocation/next, before it waits for an event:
        # the function's environment would be frozen from then on.
        self.on_next: Callable[[int], None] | None = None
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> RuntimeApiEmulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_invocation(
        self,
        event: Any,
        *,
        deadline_ms: int | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
    ) -> str:
        """Queue an event (a JSON-able object, or raw bytes); return its request id."""
        request_id = request_id or str(uuid.uuid4())
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        deadline = deadline_ms or int(time.time() * 1000) + 60_000
        self._invocations.put(_Invocation(request_id, body, deadline, trace_id))
        return request_id

    def result(self, request_id: str, timeout: float = 30) -> Recorded:
        """Wait for the runtime's complete answer to `request_id`."""
        with self._done:
            if not self._done.wait_for(lambda: request_id in self._results, timeout):
                raise TimeoutError(f"no answer to {request_id} within {timeout} s")
            return self._results[request_id]

    def wait_for_init_error(self, timeout: float = 30) -> Recorded:
        with self._done:
            if not self._done.wait_for(lambda: bool(self.init_errors), timeout):
                raise TimeoutError("no /init/error")
            return self.init_errors[0]

    def mark(self, label: str, detail: str = "") -> None:
        """Record that something happened now, in order with the chunks' arrivals."""
        with self._timeline_lock:
            self.timeline.append((label, detail))

    def close(self) -> None:
        """Stop: any waiting or later /invocation/next is answered 500, ending the loop."""
        self.closed = True
        self._invocations.put(None)
        self._listener.close()

    # -- server side -------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        connection = h11.Connection(h11.SERVER)
        with sock:
            while True:
                recorded = self._read_request(sock, connection)
                if recorded is None:
                    return
                status, headers, body = self._dispatch(recorded)
                try:
                    sock.sendall(
                        connection.send(h11.Response(status_code=status, headers=headers)) or b""
                    )
                    sock.sendall(connection.send(h11.Data(data=body)) or b"")
                    sock.sendall(connection.send(h11.EndOfMessage()) or b"")
                except OSError:
                    return
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()

    def _read_request(self, sock: socket.socket, connection: h11.Connection) -> Recorded | None:
        recorded: Recorded | None = None
        pending = b""
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is h11.NEED_DATA:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return None
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                if event.target.endswith(b"/response") and self._drop_response():
                    return None  # closes the connection without an answer
                raw = [(name.decode(), value.decode()) for name, value in event.headers]
                recorded = Recorded(
                    path=event.target.decode(),
                    headers={name.lower(): value for name, value in raw},
                    raw_headers=raw,
                    started=time.perf_counter(),
                )
            elif isinstance(event, h11.Data) and recorded is not None:
                pending += event.data
                chunked = recorded.headers.get("transfer-encoding") == "chunked"
                if not chunked or event.chunk_end:
                    recorded.chunks.append(Chunk(pending, time.perf_counter()))
                    recorded.body += pending
                    self.mark("chunk", f"{recorded.path}#{len(recorded.chunks) - 1}")
                    if self._on_chunk is not None:
                        self._on_chunk(pending)
                    pending = b""
            elif isinstance(event, h11.EndOfMessage) and recorded is not None:
                recorded.trailers = {
                    name.decode().lower(): value.decode() for name, value in event.headers
                }
                return recorded
            elif isinstance(event, h11.ConnectionClosed):
                return None

    def _dispatch(self, recorded: Recorded) -> tuple[int, list[tuple[str, str]], bytes]:
        path = recorded.path
        if path == f"{API}/invocation/next":
            return self._next_invocation()
        if path == f"{API}/restore/next":
            self.restore_requested.set()
            return self.restore_next_status, [], b""
        if path == f"{API}/init/error":
            self._store(self.init_errors, recorded)
        elif path == f"{API}/restore/error":
            self._store(self.restore_errors, recorded)
        elif path.startswith(f"{API}/invocation/"):
            request_id = path.split("/")[-2]
            with self._done:
                self._results[request_id] = recorded
                self._done.notify_all()
        else:
            return 404, [], b'{"errorType":"NotFound"}'
        return 202, [("content-type", "application/json")], b'{"status":"OK"}'

    def _drop_response(self) -> bool:
        with self._done:
            if self.responses_to_drop <= 0:
                return False
            self.responses_to_drop -= 1
            return True

    def _store(self, records: list[Recorded], recorded: Recorded) -> None:
        with self._done:
            records.append(recorded)
            self._done.notify_all()

    def _next_invocation(self) -> tuple[int, list[tuple[str, str]], bytes]:
        self.next_calls += 1
        if self.on_next is not None:
            self.on_next(self.next_calls)
        if self.first_next_at is None:
            self.first_next_at = time.perf_counter()
        self.waiting_for_next.set()
        invocation = None if self.closed else self._invocations.get()
        self.waiting_for_next.clear()
        if invocation is None:
            self._invocations.put(None)  # keep answering later calls too
            return 500, [], b'{"errorType":"Runtime.ShuttingDown"}'
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123:function:f"),
            ("Content-Type", "application/json"),
        ]
        if invocation.trace_id:
            headers.append(("Lambda-Runtime-Trace-Id", invocation.trace_id))
        return 200, headers, invocation.body


def function_url_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    query: str = "",
    base64_body: bool = False,
) -> dict[str, Any]:
    """A Function URL event (payload format 2.0) as Lambda sends it."""
    raw_body = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
    if isinstance(raw_body, bytes) or (base64_body and raw_body is not None):
        data = raw_body if isinstance(raw_body, bytes) else raw_body.encode()
        raw_body, base64_body = base64.b64encode(data).decode(), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "host": "abcdefgh.lambda-url.us-east-1.on.aws",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "content-type": "application/json",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefgh",
            "domainName": "abcdefgh.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefgh",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "test",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "21/Nov/2026:06:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": base64_body,
    }
    if cookies:
        event["cookies"] = cookies
    if raw_body is not None:
        event["body"] = raw_body
    return event
