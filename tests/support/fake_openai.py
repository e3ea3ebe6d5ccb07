"""A fake OpenAI-compatible Chat Completions server on 127.0.0.1, scripted per request.

Each `Reply` is one answer, and can fail the way providers and networks fail: an HTTP error
(`status`), a connection cut mid-stream (`cut_after`), a stream that ends cleanly but without
a finish reason (`truncated`), a stream with no chunk at all (`empty`: only `[DONE]`), or a
stream that stops after some chunks and keeps the connection open (`pause_after`) until the
test sets `released`, then goes on (a test that never releases it sees a provider that hangs).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: streamed text chunks, or one of the failures above."""

    chunks: list[str] = field(default_factory=list)
    status: int = 200
    cut_after: int | None = None  # close the connection after this many chunks
    tool_call: tuple[str, str] | None = None  # (name, raw JSON arguments)
    truncated: bool = False  # the chunks, then [DONE], but never a finish reason
    empty: bool = False  # [DONE] only
    pause_after: int | None = None  # send this many chunks, then nothing until released


@dataclass
class FakeOpenAI:
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)  # answers to title requests, in order
    transcripts: list[bytes] = field(default_factory=list)  # audio received for transcription
    api_keys: list[str] = field(default_factory=list)  # the bearer key of every request
    base_url: str = ""
    released: threading.Event = field(default_factory=threading.Event)  # ends every pause
    paused: threading.Event = field(default_factory=threading.Event)  # a reply is paused

    def next_reply(self, request: dict[str, Any]) -> Reply:
        if "Write a short title" in json.dumps(request.get("messages", [])[:1]):
            return Reply(chunks=[self.titles.pop(0) if self.titles else "A title"])
        return self.replies.pop(0) if self.replies else Reply(chunks=["Default ", "answer."])


def _tool_call_chunk(name: str, arguments: str) -> bytes:
    call = {
        "index": 0,
        "id": f"call_{uuid.uuid4().hex[:12]}",  # a call id is never reused in a run
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "tool_calls": [call]},
                "finish_reason": None,
            }
        ],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"role": "assistant", "content": content} if content is not None else {}
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _stream_events(reply: Reply) -> list[bytes]:
    if reply.empty:
        return [b"data: [DONE]\n\n"]
    events = [_chunk(text) for text in reply.chunks]
    finish = "stop"
    if reply.tool_call is not None:
        events.append(_tool_call_chunk(*reply.tool_call))
        finish = "tool_calls"
    if reply.cut_after is not None:
        return events[: reply.cut_after]
    if reply.truncated:
        return [*events, b"data: [DONE]\n\n"]
    return [*events, _chunk(None, finish), b"data: [DONE]\n\n"]


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            fake.api_keys.append(self.headers.get("authorization", "").removeprefix("Bearer "))
            if self.path.endswith("/audio/transcriptions"):
                fake.transcripts.append(raw)
                self._send_json(200, {"text": "buy milk"})
                return
            request = json.loads(raw or b"{}")
            fake.requests.append(request)
            reply = fake.next_reply(request)
            if reply.status != 200:
                self._send_json(
                    reply.status, {"error": {"message": "scripted failure", "type": "x"}}
                )
                return
            if not request.get("stream"):
                message = {"role": "assistant", "content": "".join(reply.chunks)}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self._send_json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "fake-model",
                        "choices": [choice],
                    },
                )
                return
            events = _stream_events(reply)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            # A promised length that is never reached makes a cut stream an error, not an end.
            cut = reply.cut_after is not None
            self.send_header("content-length", str(sum(map(len, events)) + (10**6 if cut else 0)))
            self.end_headers()
            for index, event in enumerate(events):
                if index == reply.pause_after:
                    fake.paused.set()
                    fake.released.wait(60)
                self.wfile.write(event)
                self.wfile.flush()
            if cut:
                self.close_connection = True

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
