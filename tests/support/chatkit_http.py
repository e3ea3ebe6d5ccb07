"""The ChatKit endpoint over HTTP, as the tests speak to it: turns, their SSE events, items."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.inputs import user_input


def sse_events(body: str) -> list[dict[str, Any]]:
    """The events of an SSE response body (its `data:` lines, decoded)."""
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def turn_request(text: str, thread_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A new thread with message `text`, or with `thread_id` the thread's next message
    (`extra`: more fields of the message's input)."""
    if thread_id is None:
        return {"type": "threads.create", "params": {"input": user_input(text, **extra)}}
    params = {"thread_id": thread_id, "input": user_input(text, **extra)}
    return {"type": "threads.add_user_message", "params": params}


async def post_turn(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    text: str,
    thread_id: str | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    """Send a turn (see `turn_request`) to `POST /chatkit`; the events of its 200 answer."""
    body = json.dumps(turn_request(text, thread_id, **extra))
    response = await client.post("/chatkit", content=body, headers=headers)
    assert response.status_code == 200
    return sse_events(response.text)


async def thread_items(
    client: httpx.AsyncClient, headers: dict[str, str], thread_id: str
) -> list[dict[str, Any]]:
    """The thread's first 50 items, oldest first, as `items.list` returns them."""
    body = {"type": "items.list", "params": {"thread_id": thread_id, "limit": 50, "order": "asc"}}
    response = await client.post("/chatkit", content=json.dumps(body), headers=headers)
    items: list[dict[str, Any]] = response.json()["data"]
    return items
