"""The ASGI app: `POST /chatkit` speaks the ChatKit protocol, `GET /health` answers probes.

Every entry point (streaming Lambda, buffered Lambda, local uvicorn) serves this same app.
Each request is logged once (structured JSON: request id, user id, thread id, request type,
status, timings; never message text or secrets) and measured (CloudWatch EMF metrics).
Errors become answers in one place, `error_response`: a client's mistake gets a 4xx with a
message written for it, anything else a generic 500 or 503 with the request id, details in
the logs only.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import ErrorEvent
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from agent.request_limits import REQUEST_TYPES, parse_request
from errors import ClientRequestError, QuotaExceededError, RequestTooLargeError, error_event
from handlers.auth import AuthConfigurationError, AuthError, request_id_of
from handlers.secrets import SecretUnavailableError
from store import RequestContext, StoreUnavailableError

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "chatkit-lambda"
logger = Logger(service=SERVICE)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ChatKitLambda", service=SERVICE
)

Authenticator = Callable[[Request], Awaitable[RequestContext]]
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DEFAULT_MAX_REQUEST_BYTES = 6_000_000
DEFAULT_MAX_TURN_SECONDS = 60.0
# A streamed response ends at most this long after the turn's own limit, sending included: time
# for the turn's last events (the time-limit notice) to reach a client that reads.
SEND_GRACE_SECONDS = 2.0
# How long a response that hit its limit may take to send its last bytes.
FINAL_SEND_SECONDS = 0.5
# How long a stopped turn may take to save its partial answer.
STOP_SECONDS = 5.0
# Enough to tell a request apart in the logs; longer or odder bodies are not looked into.
DESCRIBE_MAX_VALUES = 200_000


@dataclass
class RequestLog:
    """What one request did, logged and measured once when it ends."""

    request_type: str = "unknown"
    thread_id: str | None = None
    user_id: str | None = None
    request_id: str | None = None
    status: int = 200
    started: float = field(default_factory=time.perf_counter)
    first_event_ms: float | None = None
    error: str | None = None

    def finish(self) -> None:
        duration_ms = (time.perf_counter() - self.started) * 1000
        logger.info(
            "chatkit request",
            extra={
                "request_id": self.request_id,
                "user_id": self.user_id,
                "thread_id": self.thread_id,
                "request_type": self.request_type,
                "status": self.status,
                "duration_ms": round(duration_ms, 1),
                "first_event_ms": self.first_event_ms,
                "error": self.error,
            },
        )
        metrics.add_dimension(name="RequestType", value=self.request_type)
        metrics.add_metric(name="RequestLatency", unit=MetricUnit.Milliseconds, value=duration_ms)
        if self.first_event_ms is not None:
            metrics.add_metric(
                name="TimeToFirstEvent", unit=MetricUnit.Milliseconds, value=self.first_event_ms
            )
        metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=int(self.error is not None))
        metrics.flush_metrics()
        # Flushing does not clear when metrics are disabled (local server): clear explicitly.
        metrics.clear_metrics()


def create_app(
    server: ChatKitServer[RequestContext],
    authenticate: Authenticator,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_turn_seconds: float = DEFAULT_MAX_TURN_SECONDS,
) -> Starlette:
    """The app serving `server`; `authenticate` turns a request into the caller's context.

    A streamed answer ends `SEND_GRACE_SECONDS` after `max_turn_seconds` at the latest, however
    slowly its client reads. Plain Starlette (which the ChatKit stack imports anyway) rather
    than FastAPI: two routes need no OpenAPI models, and the cold start is ~75 ms shorter.
    """
    quiet_client_errors()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def chatkit(request: Request) -> Response:
        try:
            context = await authenticate(request)
        except AuthError as error:
            return unauthorized(error)
        except Exception as error:
            return error_response(error, request_id_of(request))
        log = RequestLog(user_id=context.user_id, request_id=context.request_id)
        try:
            body = await _read_body(request, max_request_bytes)
            log.request_type, log.thread_id = _describe(body)
            result = await server.process(body, context)
            if not isinstance(result, StreamingResult):
                log.finish()
                return Response(result.json, media_type="application/json")
            events = aiter(result)
            # The first event is awaited before the 200 goes out, so an unknown thread or a
            # bad id still gets a 404/400 instead of a stream that just ends.
            first = await anext(events, None)
            log.first_event_ms = round((time.perf_counter() - log.started) * 1000, 1)
        except Exception as error:
            response = error_response(error, context.request_id)
            log.status, log.error = response.status_code, type(error).__name__
            log.finish()
            return response
        deadline = log.started + max_turn_seconds + SEND_GRACE_SECONDS
        return TurnResponse(_stream(first, events, log), log, deadline)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/chatkit", chatkit, methods=["POST"]),
        ]
    )


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body however the response ends.

    Starlette leaves the body iterator suspended when the client leaves while a chunk is
    being sent; it would then only be closed by garbage collection, and the turn behind it
    (its lease, the partial answer to keep, the model run) would wait until then.
    """

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await _close(self.body_iterator)


def unauthorized(error: AuthError) -> JSONResponse:
    """401 with a JSON body and the RFC 6750 challenge."""
    challenge = 'Bearer realm="chatkit"'
    if error.token_present:
        challenge += f', error="invalid_token", error_description="{error.description}"'
    response = _json_error(401, "unauthorized", error.description)
    response.headers["www-authenticate"] = challenge
    return response


def error_response(error: Exception, request_id: str | None) -> JSONResponse:
    """The one place errors become HTTP answers; internals never reach the client."""
    match error:
        case QuotaExceededError():
            retry_after = {"retry-after": str(error.retry_after_seconds)}
            return _json_error(error.status, error.code, error.message, headers=retry_after)
        case ClientRequestError():
            return _json_error(error.status, error.code, error.message)
        case ValidationError():
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                for problem in error.errors()[:5]
            )
            return _json_error(400, "invalid_request", f"Invalid ChatKit request: {problems}")
        case NotFoundError():
            return _json_error(404, "not_found", str(error) or "Not found")
        case StoreUnavailableError():
            logger.warning(
                "storage unavailable", extra={"request_id": request_id, "error": str(error)}
            )
            message = "The service is busy right now. Try again in a moment."
            return _json_error(503, "unavailable", message, request_id, {"retry-after": "2"})
        case SecretUnavailableError() | AuthConfigurationError():
            # Which parameter or setting is wrong is for the operator's logs, not for callers.
            logger.error(
                "server configuration error", extra={"request_id": request_id, "error": str(error)}
            )
            message = "The service cannot answer right now. Try again later."
            return _json_error(503, "unavailable", message, request_id, {"retry-after": "30"})
        case _:
            logger.exception("request failed", extra={"request_id": request_id}, exc_info=error)
            message = "Something went wrong on the server."
            return _json_error(500, "internal_error", message, request_id)


def _log_failure(level: int, message: str, error: Exception, request_id: str | None) -> None:
    log = logger.error if level >= logging.ERROR else logger.warning
    log(message, extra={"request_id": request_id, "error": str(error)})


def _json_error(
    status: int,
    code: str,
    message: str,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    # A message may quote an id the client sent: make sure it can be encoded whatever it holds.
    text = message.encode("utf-8", "replace").decode("utf-8")
    body: dict[str, str] = {"code": code, "message": text}
    if request_id is not None:
        body["request_id"] = request_id
        headers = {**(headers or {}), "x-request-id": request_id}
    return JSONResponse({"error": body}, status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"Request body is over the limit of {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLargeError(f"Request body is over the limit of {limit} bytes.")
    return bytes(body)


def _describe(body: bytes) -> tuple[str, str | None]:
    """The request type and thread id, for logs and metrics only (the server validates).

    An unknown type is logged as "unknown", so no client can create new metric dimensions.
    """
    try:
        parsed = parse_request(body, DESCRIBE_MAX_VALUES)
    except ClientRequestError:
        return "invalid", None
    request_type, params = parsed.get("type"), parsed.get("params")
    thread_id = params.get("thread_id") if isinstance(params, dict) else None
    return (
        request_type if request_type in REQUEST_TYPES else "unknown",
        thread_id if isinstance(thread_id, str) and len(thread_id) <= 255 else None,
    )


class TurnResponse(StreamingResponse):
    """The SSE response of a turn, bounded as a whole and closed however it ends.

    The turn is driven by the client's reading: an event counts as shown once it has been
    handed to the server, so the partial answer a turn keeps is what its client received.
    At `deadline` (perf_counter time) the response ends, sent or not, so a client that stops
    reading cannot hold the function. Starlette would leave the body suspended when the client
    leaves mid-send (closed only by garbage collection, with the turn's lease, its partial
    answer and its model run waiting): the body is closed here instead.
    """

    def __init__(self, body: AsyncIterator[bytes], log: RequestLog, deadline: float) -> None:
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self.log = log
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with anyio.move_on_after(self.deadline - time.perf_counter()) as limit:
                await super().__call__(scope, receive, send)
            if limit.cancelled_caught:
                await self._end_late(send)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_SECONDS):
                await _close(self.body_iterator)

    async def _end_late(self, send: Send) -> None:
        self.log.error = "response_time_limit"
        logger.warning(
            "response time limit reached",
            extra={"request_id": self.log.request_id, "thread_id": self.log.thread_id},
        )
        notice = ErrorEvent(
            code="custom",
            message="The answer could not be sent in time and was stopped.",
            allow_retry=True,
        )
        # A client that still does not read gets nothing more: the connection just ends.
        with anyio.move_on_after(FINAL_SEND_SECONDS):
            body = _sse(notice.model_dump_json().encode())
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _sse(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def quiet_client_errors() -> None:
    """Log the SDK's reports of errors a client caused without a traceback (idempotent).

    ChatKit logs every exception that leaves a stream with its traceback; for an unknown thread
    or a bad id that is noise in the logs, not a failure. Our own failures keep theirs.
    """
    chatkit_logger = logging.getLogger("chatkit")
    if not any(isinstance(f, _ClientErrorFilter) for f in chatkit_logger.filters):
        chatkit_logger.addFilter(_ClientErrorFilter())


class _ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ClientRequestError | NotFoundError | ValidationError):
            record.msg = f"{record.getMessage()} ({type(error).__name__}: a client error)"
            record.args = None
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


async def _stream(
    first: bytes | None, events: AsyncIterator[bytes], log: RequestLog
) -> AsyncIterator[bytes]:
    """The events as they come; a failure after the first byte becomes an `error` event."""
    try:
        if first is None:
            return
        yield first
        async for event in events:
            if event.startswith(b'data: {"type":"error"'):
                log.error = "error_event"
            yield event
    except Exception as error:
        log.error = type(error).__name__
        logger.exception("stream failed", exc_info=error)
        yield _sse(error_event(error).model_dump_json().encode())
    finally:
        log.finish()
        await _close(events)


async def _close(iterator: object) -> None:
    """Close an async generator left part way (a no-op for other iterables)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
