"""REST routes logged and measured like ChatKit requests: each request writes one record
(`telemetry`) with its route, request type (`api.` + the route's name), the conversation it
names, status, timings and the caller's pseudonym. Give a router `route_class=RecordedRoute`."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.responses import StreamingResponse

import telemetry
from agent.failures import failure_class
from handlers.auth import request_id_of
from telemetry import RequestRecord

API_TYPE_PREFIX = "api."


class RecordedRoute(APIRoute):
    """A route whose requests are recorded: a refused one by the error map, a streamed
    answer once its last byte is written."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        request_type = API_TYPE_PREFIX + self.name
        route = f"{' '.join(sorted(self.methods or ()))} {self.path}"

        async def recorded(request: Request) -> Response:
            record = telemetry.begin(request_id_of(request))
            record.request_type, record.route = request_type, route
            record.thread_id = request.path_params.get("conversation_id")
            response = await handle(request)  # the caller is identified by CurrentUser
            record.status = response.status_code
            if isinstance(response, StreamingResponse):
                response.body_iterator = _finished_after(response.body_iterator, record)
            else:
                record.finish()
            return response

        return recorded


async def _finished_after(body: AsyncIterable[Any], record: RequestRecord) -> AsyncIterator[Any]:
    """`body`, then the record written: a failure while streaming is the request's."""
    try:
        async for chunk in body:
            yield chunk
    except Exception as error:
        record.fail(failure_class(error), type(error).__name__)
        raise
    finally:
        record.finish()
