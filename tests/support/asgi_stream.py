"""Drive an ASGI app's SSE stream directly, to leave it at an exact point.

`stream_then_leave` posts one ChatKit request and records every `data:` event the app gets
out (a `send` that returned). Once `leave_when(events)` holds, the client goes away, in one
of two ways:

- `stop_reading=True`: the next chunk never gets out (its `send` blocks, as on a connection
  whose reader stopped), then the client disconnects: the server is cut while sending;
- `stop_reading=False`: the client disconnects at once; the server is cut wherever it is.

Either way, the recorded events are exactly what the client received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

Events = list[dict[str, Any]]


async def stream_then_leave(
    app: Any,
    body: dict[str, Any],
    *,
    leave_when: Callable[[Events], bool],
    stop_reading: bool,
) -> Events:
    events: Events = []
    left = asyncio.Event()
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body" or not message.get("body"):
            return
        if stop_reading and leave_when(events):
            left.set()
            await asyncio.Event().wait()  # this chunk never reaches the client
        chunk: bytes = message["body"]
        events.extend(
            json.loads(line[len(b"data: ") :])
            for line in chunk.split(b"\n\n")
            if line.startswith(b"data: ")
        )
        if not stop_reading and leave_when(events):
            left.set()

    scope = {
        "type": "http",
        # ASGI 2.3: Starlette listens for the disconnect while it streams.
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/chatkit",
        "raw_path": b"/chatkit",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return events
