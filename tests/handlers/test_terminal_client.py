"""The terminal client prints what a server sends as text: never as terminal commands."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.terminal_client import main as chat_main
from tests.support.local_server import QuietHandler, serving

# What a hostile server (or a hostile title stored in it) could send: an OSC 52 clipboard
# write, a screen clear, a carriage return over the line, a C1 CSI, a bell.
HOSTILE = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\rtitle\x9b31mred\x07"


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)


@pytest.fixture
def hostile_server() -> Iterator[str]:
    """A ChatKit endpoint whose answers, titles and errors carry control sequences."""

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            request = json.loads(self.read_body())
            body, kind = self._answer(request["type"])
            status = 200 if request["type"] != "threads.get_by_id" else 404
            self.send_body(status, body, {"content-type": kind})

        def _answer(self, request_type: str) -> tuple[bytes, str]:
            if request_type == "threads.list":
                thread = {"id": "thr_1", "created_at": "2025-01-01T00:00:00", "title": HOSTILE}
                page = {"data": [thread], "has_more": False}
                return json.dumps(page).encode(), "application/json"
            if request_type == "threads.get_by_id":
                error = {"error": {"code": "not_found", "message": HOSTILE}}
                return json.dumps(error).encode(), "application/json"
            item = {"type": "assistant_message", "id": "msg_1", "content": [{"text": HOSTILE}]}
            delta = {"type": "assistant_message.content_part.text_delta", "delta": HOSTILE}
            events = sse(
                {"type": "thread.created", "thread": {"id": "thr_1", "title": HOSTILE}},
                {
                    "type": "thread.item.updated",
                    "item_id": "msg_2",
                    "update": delta,
                },
                {"type": "thread.item.done", "item": item},
                {"type": "notice", "level": "info", "message": HOSTILE},
            )
            return events, "text/event-stream"

    with serving(Handler) as url:
        yield f"{url}/chatkit"


@pytest.mark.parametrize(
    "command",
    [["say something"], ["--list"], ["--thread", "thr_1", "--history"]],
    ids=["answer", "titles", "error"],
)
def test_control_sequences_from_the_server_are_not_printed(
    hostile_server: str, command: list[str]
) -> None:
    out, err = io.StringIO(), io.StringIO()

    chat_main(["--url", hostile_server, "--token", "t", *command], out, err)

    printed = out.getvalue() + err.getvalue()
    assert "title" in printed and "red" in printed  # the text itself is shown
    assert not any(
        (ord(char) < 0x20 and char not in "\n\t") or 0x7F <= ord(char) <= 0x9F for char in printed
    )
