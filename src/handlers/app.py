"""The ASGI app: `POST /chatkit` speaks the ChatKit protocol, `GET /health` answers probes.

Every entry point (streaming Lambda, buffered Lambda, local uvicorn) serves this same app.
Each request is logged once (structured JSON: request id, user id, thread id, request type,
status, timings; never message text or secrets) and measured (CloudWatch EMF metrics).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

from handlers.auth import AuthConfigurationError, AuthError
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


class RequestTooLargeError(Exception):
    """The body is over the configured limit (413)."""


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
) -> Starlette:
    """The app serving `server`; `authenticate` turns a request into the caller's context.

    Plain Starlette (which the ChatKit stack imports anyway) rather than FastAPI: two routes
    need no OpenAPI models, and the cold start is ~75 ms shorter.
    """

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def chatkit(request: Request) -> Response:
        try:
            context = await authenticate(request)
        except AuthError as error:
            return unauthorized(error)
        except Exception as error:
            return error_response(error)
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
            response = error_response(error)
            log.status, log.error = response.status_code, type(error).__name__
            log.finish()
            return response
        return ClosingStreamingResponse(
            _stream(first, events, log), media_type="text/event-stream", headers=SSE_HEADERS
        )

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


def error_response(error: Exception) -> JSONResponse:
    """The one place errors become HTTP answers; internals never reach the client."""
    match error:
        case RequestTooLargeError():
            return _json_error(413, "request_too_large", str(error))
        case ValidationError():
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                for problem in error.errors()[:5]
            )
            return _json_error(400, "invalid_request", f"Invalid ChatKit request: {problems}")
        case NotFoundError():
            return _json_error(404, "not_found", str(error) or "Not found")
        case StoreUnavailableError():
            return _json_error(503, "unavailable", str(error), headers={"retry-after": "2"})
        case SecretUnavailableError() | AuthConfigurationError():
            logger.error("server configuration error", extra={"error": str(error)})
            return _json_error(500, "configuration_error", f"Server misconfigured: {error}")
        case ValueError():
            return _json_error(400, "invalid_request", str(error))
        case _:
            logger.exception("request failed", exc_info=error)
            return _json_error(500, "internal_error", "Something went wrong on the server.")


def _json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


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
    """The request type and thread id, for logs only (validation is the SDK's)."""
    try:
        parsed: Any = json.loads(body)
        params = parsed.get("params") or {}
        request_type, thread_id = parsed.get("type"), params.get("thread_id")
    except (ValueError, AttributeError, RecursionError):
        return "invalid", None
    return (
        request_type if isinstance(request_type, str) else "invalid",
        thread_id if isinstance(thread_id, str) else None,
    )


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
        payload = {"type": "error", "code": "stream.error", "allow_retry": True}
        yield b"data: " + json.dumps(payload).encode() + b"\n\n"
    finally:
        log.finish()
        await _close(events)


async def _close(iterator: object) -> None:
    """Close an async generator left part way (a no-op for other iterables)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
