"""The ASGI app: `POST /chatkit` speaks the ChatKit protocol, `GET /health` answers probes.

Every entry point (streaming Lambda, buffered Lambda, local uvicorn) serves this same app.
"""

# No `from __future__ import annotations`: FastAPI must resolve the closure's dependency.
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from store import RequestContext, StoreUnavailableError

logger = logging.getLogger(__name__)

Authenticator = Callable[[Request], Awaitable[RequestContext]]
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def create_app(server: ChatKitServer[RequestContext], authenticate: Authenticator) -> FastAPI:
    """The app serving `server`; `authenticate` turns a request into the caller's context."""
    app = FastAPI(title="chatkit-lambda", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/chatkit")
    async def chatkit(
        request: Request, context: Annotated[RequestContext, Depends(authenticate)]
    ) -> Response:
        body = await request.body()
        try:
            result = await server.process(body, context)
            if not isinstance(result, StreamingResult):
                return Response(result.json, media_type="application/json")
            events = aiter(result)
            # The first event is awaited before the 200 goes out, so an unknown thread or a
            # bad id still gets a 404/400 instead of a stream that just ends.
            first = await anext(events, None)
        except Exception as error:
            return error_response(error)
        return StreamingResponse(
            _stream(first, events), media_type="text/event-stream", headers=SSE_HEADERS
        )

    return app


def error_response(error: Exception) -> JSONResponse:
    """The one place errors become HTTP answers; internals never reach the client."""
    match error:
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
        case ValueError():
            return _json_error(400, "invalid_request", str(error))
        case _:
            logger.exception("request failed", exc_info=error)
            return _json_error(500, "internal_error", "Something went wrong on the server.")


def _json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


async def _stream(first: bytes | None, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The events as they come; a failure after the first byte becomes an `error` event."""
    if first is None:
        return
    yield first
    try:
        async for event in events:
            yield event
    except Exception as error:
        logger.exception("stream failed", exc_info=error)
        payload = {"type": "error", "code": "stream.error", "allow_retry": True}
        yield b"data: " + json.dumps(payload).encode() + b"\n\n"
