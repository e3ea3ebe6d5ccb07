"""The ASGI app, on FastAPI: `POST /chatkit` speaks the ChatKit protocol, `/api/conversations`
serves the user's conversations as a REST API (`handlers.conversations`), `GET /health` answers
probes, and the OpenAPI schema describes them all (`/docs` on the local server).

Every entry point (streaming Lambda, buffered Lambda through Mangum, local uvicorn) serves
this same app, built by `handlers.main.build_app`. Each ChatKit request is logged once and
measured (`telemetry`: a JSON record with a pseudonymous user id, the request type, status,
timings and tokens, never message text or secrets; EMF metrics), a refused token included.
Errors become answers in one place, the error map (`handlers.error_map`).

Adding a route: write an `APIRouter` in a module of its own, take what it needs from
`handlers.dependencies` (`CurrentUser`: the verified user; `ThreadStore`: the store;
`Server`: the ChatKit server), raise the error types of `errors` for a client's mistake (the
error map answers them), and include it in `create_app` with `app.include_router(router)`, or,
when only some requests use it, as `DeferredRoutes` (declared on its first request, as the REST
API is: `handlers.deferred_routes`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import ErrorEvent
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

import telemetry
from agent.failures import failure_class
from agent.request_limits import REQUEST_TYPES, parse_request
from errors import (
    ClientRequestError,
    RequestTooLargeError,
    error_event,
    is_error_event,
    sse_message,
)
from handlers.auth import request_id_of
from handlers.deferred_routes import DeferredRoutes, include_deferred
from handlers.dependencies import AppServices, Authenticator, CurrentUser, Services
from handlers.error_map import EXCEPTION_HANDLERS, error_response
from logs import logger
from store import RequestContext
from store.keys import MAX_ID_LENGTH
from telemetry import RequestRecord

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
# What the OpenAPI schema says of `POST /chatkit` (the body is read and checked by the server).
CHATKIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A stream of ChatKit events (text/event-stream), or a JSON answer.",
        "content": {"text/event-stream": {}, "application/json": {}},
    },
    400: {"description": "The request cannot be served as sent (the message says why)."},
    401: {"description": "No valid bearer token."},
    404: {"description": "No such thread or item for this user."},
    413: {"description": "The body is over the size limit."},
    429: {"description": "The daily quota is spent (Retry-After)."},
    503: {"description": "Storage or configuration unavailable (Retry-After)."},
}


def create_app(
    server: ChatKitServer[RequestContext],
    authenticate: Authenticator,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_turn_seconds: float = DEFAULT_MAX_TURN_SECONDS,
    api_docs: bool = False,
) -> FastAPI:
    """The app serving `server`; `authenticate` turns a request into the caller's context.

    A streamed answer ends `SEND_GRACE_SECONDS` after `max_turn_seconds` at the latest, however
    slowly its client reads. With `api_docs`, the OpenAPI schema is served at `/openapi.json`
    and its interactive docs at `/docs` (the local server; off on Lambda).
    """
    quiet_client_errors()
    app = FastAPI(
        title="chatkit-lambda",
        summary="A ChatKit backend: POST /chatkit speaks the ChatKit protocol.",
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_url="/openapi.json" if api_docs else None,
        docs_url="/docs" if api_docs else None,
        redoc_url=None,
    )
    app.state.services = Services(server, authenticate, max_request_bytes, max_turn_seconds)
    app.include_router(router)
    # The REST API's routes are declared on their first request (`handlers.deferred_routes`).
    app.router.routes.append(DeferredRoutes(app, "/api/conversations", _conversations))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the ChatKit request types as the body of `POST /chatkit`.

    Built on the first request for it (never during init): the ChatKit types' schema is large.
    """
    if app.openapi_schema is None:
        include_deferred(app)
        from chatkit.types import ChatKitReq
        from fastapi.openapi.utils import get_openapi
        from pydantic import TypeAdapter
        from pydantic.json_schema import PydanticJsonSchemaWarning

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        with warnings.catch_warnings():
            # A generic widget's default (a TypeVar) has no JSON form: it is left out.
            warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
            body = TypeAdapter(ChatKitReq).json_schema(ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs"))
        content = {"application/json": {"schema": body}}
        schema["paths"]["/chatkit"]["post"]["requestBody"] = {"required": True, "content": content}
        app.openapi_schema = schema
    return app.openapi_schema


def _conversations() -> APIRouter:
    from handlers.conversations import router

    return router


router = APIRouter()


async def request_record(request: Request) -> RequestRecord:
    """The request's telemetry record, begun before the user is verified: a refused token is
    logged and measured too (the error map finishes the record of a request it answers).
    Async, so that FastAPI runs it in the request's own context (`telemetry.current()`)."""
    return telemetry.begin(request_id_of(request))


Record = Annotated[RequestRecord, Depends(request_record)]


# No response model: declaring one would make FastAPI import pydantic's v1 layer during init.
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The function answers.",
        "content": {"application/json": {"example": {"status": "ok"}}},
    }
}


@router.get("/health", response_model=None, responses=HEALTH_RESPONSES)
async def health() -> dict[str, str]:
    """Liveness: the function answers (no dependency is called)."""
    return {"status": "ok"}


@router.post("/chatkit", response_class=Response, responses=CHATKIT_RESPONSES)
async def chatkit(
    request: Request, log: Record, user: CurrentUser, services: AppServices
) -> Response:
    """One ChatKit request (JSON body, `{"type": ..., "params": ...}`): a stream of events for
    a turn, a JSON answer for the rest."""
    try:
        body = await _read_body(request, services.max_request_bytes)
        log.request_type, log.thread_id = _describe(body)
        result = await services.server.process(body, user)
        if not isinstance(result, StreamingResult):
            log.finish()
            return Response(result.json, media_type="application/json")
        events = aiter(result)
        # The first event is awaited before the 200 goes out, so an unknown thread or a
        # bad id still gets a 404/400 instead of a stream that just ends.
        first = await anext(events, None)
        log.first_event()
    except Exception as error:
        response = error_response(error, user.request_id)
        log.fail(failure_class(error), type(error).__name__, response.status_code)
        log.finish()
        return response
    deadline = log.started + services.max_turn_seconds + SEND_GRACE_SECONDS
    return TurnResponse(_stream(first, events, log), log, deadline)


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
        thread_id if isinstance(thread_id, str) and len(thread_id) <= MAX_ID_LENGTH else None,
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

    def __init__(self, body: AsyncIterator[bytes], log: RequestRecord, deadline: float) -> None:
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
        self.log.fail("deadline", "response_time_limit")
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
            body = sse_message(notice)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


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
    first: bytes | None, events: AsyncIterator[bytes], log: RequestRecord
) -> AsyncIterator[bytes]:
    """The events as they come; a failure after the first byte becomes an `error` event."""
    try:
        if first is None:
            return
        yield first
        async for event in events:
            if is_error_event(event):
                log.fail("internal", "error_event")  # unless the turn said why first
            yield event
    except Exception as error:
        log.fail(failure_class(error), type(error).__name__)
        logger.exception("stream failed", exc_info=error)
        yield sse_message(error_event(error))
    finally:
        log.finish()
        await _close(events)


async def _close(iterator: object) -> None:
    """Close an async generator left part way (a no-op for other iterables)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
