"""Function URL events in, Lambda's streaming HTTP response format out.

A Function URL (payload format 2.0) event becomes an ASGI `http` scope through Mangum's
`HTTPGateway`, the same translation the buffered entry point uses. The app's response becomes
what a RESPONSE_STREAM Function URL expects: a JSON prelude (`statusCode`, `headers`,
`cookies`), 8 NUL bytes, then the body, each piece the moment the app sends it.

`stream_http_response` is the whole app-facing side and needs no Runtime API: give it an app,
an event and a deadline, and iterate.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from chatkit.types import ErrorEvent
from mangum.handlers.api_gateway import HTTPGateway
from mangum.types import LambdaCognitoIdentity, LambdaConfig, LambdaMobileClientContext

from errors import sse_message
from logs import logger

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

PRELUDE_DELIMITER = b"\0" * 8
TIMEOUT_MESSAGE = "The answer ran out of time (Lambda timeout) and was stopped."
TIMEOUT_EVENT = sse_message(ErrorEvent(code="custom", message=TIMEOUT_MESSAGE, allow_retry=True))
_MANGUM_CONFIG = LambdaConfig(api_gateway_base_path="/", text_mime_types=[], exclude_headers=[])


class UnsupportedEventError(ValueError):
    """The event is not an HTTP event (Function URL / HTTP API payload 2.0)."""


class IncompleteResponseError(RuntimeError):
    """The app returned without finishing its response."""


@dataclass
class LambdaContext:
    """The parts of Lambda's context object an ASGI app can read (`scope["aws.context"]`)."""

    aws_request_id: str
    invoked_function_arn: str = ""
    deadline_ms: int = 0
    function_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    )
    function_version: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    )
    memory_limit_in_mb: int = field(
        default_factory=lambda: int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)
    )
    log_group_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    )
    log_stream_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
    )
    identity: LambdaCognitoIdentity | None = None
    client_context: LambdaMobileClientContext | None = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until Lambda stops the invocation (0 when past or unknown)."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def asgi_request(event: Any, context: LambdaContext) -> tuple[Scope, bytes]:
    """The ASGI scope and request body for a Function URL event.

    Headers are lower-cased, the `cookies` array becomes one `Cookie` header, a base64 body is
    decoded. Raises UnsupportedEventError for anything but an HTTP event.
    """
    if not isinstance(event, dict) or not HTTPGateway.infer(event, context, _MANGUM_CONFIG):
        raise UnsupportedEventError(
            "expected a Function URL event (payload format 2.0) with 'version' and 'requestContext'"
        )
    try:
        request = HTTPGateway(event, context, _MANGUM_CONFIG)
        scope, body = request.scope, request.body
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise UnsupportedEventError(f"malformed Function URL event: {error!r}") from None
    if isinstance(event.get("rawPath"), str):
        scope["raw_path"] = event["rawPath"].encode()  # Mangum leaves it out
    return scope, body


def encode_prelude(status: int, raw_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The prelude and its 8-NUL delimiter; `set-cookie` headers go to `cookies`."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in raw_headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "set-cookie":
            cookies.append(value)
        else:
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    prelude = {"statusCode": status, "headers": headers, "cookies": cookies}
    return json.dumps(prelude, separators=(",", ":")).encode() + PRELUDE_DELIMITER


class _Exchange:
    """One request's ASGI channel: the request body in, the app's messages queued out."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.request_read = False
        self.response_done = asyncio.Event()
        # Unbounded, but `send` lets the writer run first, so it holds a message at a time
        # unless the Runtime API stops reading.
        self.sent: asyncio.Queue[Message | None] = asyncio.Queue()

    async def receive(self) -> Message:
        if not self.request_read:
            self.request_read = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        # Starlette listens for a disconnect while it streams: there is none until the end.
        await self.response_done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.put_nowait(message)
        # Let the writer take it before the app goes on: the chunk leaves now, not whenever
        # the app next waits for something.
        await asyncio.sleep(0)


class _Response:
    """What the app has sent so far, turned into the bytes of the streamed response."""

    def __init__(self) -> None:
        self.started = False
        self.complete = False
        self.is_sse = False

    def take(self, message: Message) -> bytes:
        if message["type"] == "http.response.start" and not self.started:
            self.started = True
            headers = [(bytes(name), bytes(value)) for name, value in message.get("headers", [])]
            self.is_sse = any(
                name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                for name, value in headers
            )
            return encode_prelude(int(message["status"]), headers)
        if message["type"] == "http.response.body" and self.started and not self.complete:
            self.complete = not message.get("more_body", False)
            return bytes(message.get("body", b""))
        raise RuntimeError(f"unexpected ASGI message {message['type']!r}")

    def timeout_ending(self) -> bytes:
        """What ends an answer stopped at the deadline."""
        if not self.started:
            # Imported here: the loop's module must not need the app's modules (auth, PyJWT)
            # before it can report a failing init. The app is built by now.
            from handlers.error_map import json_error

            answer = json_error(504, "timeout", TIMEOUT_MESSAGE)
            return encode_prelude(answer.status_code, answer.raw_headers) + bytes(answer.body)
        return TIMEOUT_EVENT if self.is_sse and not self.complete else b""


async def stream_http_response(
    app: ASGIApp,
    event: Any,
    context: LambdaContext,
    *,
    deadline: float | None = None,
    cancel_grace: float = 1.0,
) -> AsyncGenerator[bytes]:
    """Run `app` on a Function URL `event`: yield the prelude (with its delimiter), then each
    non-empty body chunk as soon as the app sends it.

    Raises UnsupportedEventError before yielding for a non-HTTP event, and the app's exception
    if it fails before its response is complete (before or after the first yield). A failure
    after a complete response is only logged. At `deadline` (event-loop time) the app's task
    is cancelled — ChatKit then saves the partial answer, given up to `cancel_grace` seconds —
    and the response ends with a final SSE error event (or a 504 if nothing was sent yet).
    Use with `contextlib.aclosing`: closing the iterator early cancels the app.
    """
    scope, body = asgi_request(event, context)
    exchange = _Exchange(body)
    response = _Response()
    task = asyncio.create_task(_run(app, scope, exchange))
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await exchange.sent.get()
            except TimeoutError:
                logger.warning("deadline reached: stopping the answer")
                for chunk in await _stop(task, exchange, response, cancel_grace):
                    yield chunk
                return
            if message is None:
                break
            chunk = response.take(message)
            if response.complete:
                exchange.response_done.set()
            if chunk:
                yield chunk
        await asyncio.wait([task])  # the sentinel comes from the task's last step
        error = None if task.cancelled() else task.exception()
        if error is not None and not response.complete:
            raise error
        if error is not None:
            logger.error("the app failed after a complete response", exc_info=error)
        if not response.complete:
            raise IncompleteResponseError("the app returned without completing its response")
    finally:
        exchange.response_done.set()
        if not task.done():
            task.cancel()


async def _run(app: ASGIApp, scope: Scope, exchange: _Exchange) -> None:
    try:
        await app(scope, exchange.receive, exchange.send)
    finally:
        exchange.sent.put_nowait(None)


async def _stop(
    task: asyncio.Task[None], exchange: _Exchange, response: _Response, grace: float
) -> list[bytes]:
    """Cancel the app, wait for it to wind down, and return the response's last bytes."""
    task.cancel()
    await asyncio.wait([task], timeout=grace)
    if not task.done():
        logger.warning("the app did not stop within %.1f s of its cancellation", grace)
    chunks = []
    while not exchange.sent.empty():
        message = exchange.sent.get_nowait()
        if message is not None:
            chunks.append(response.take(message))
    chunks.append(response.timeout_ending())
    return [chunk for chunk in chunks if chunk]
