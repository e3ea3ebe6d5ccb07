"""A fake OpenAI server on 127.0.0.1, scripted per request: Chat Completions (the
openai-compatible provider) and the Responses API (the openai provider).

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
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_server import QuietHandler, serving


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
    # Reasoning streamed before the answer: a summary (Responses) or reasoning_content deltas
    reasoning: list[str] = field(default_factory=list)


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
        instructions = [request.get("instructions"), request.get("messages", [])[:1]]
        if "Write a short title" in json.dumps(instructions):
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


def _chunk(content: str | None, finish: str | None = None, reasoning: str | None = None) -> bytes:
    delta = {"role": "assistant", "content": content} if content is not None else {}
    if reasoning is not None:
        delta = {"role": "assistant", "reasoning_content": reasoning}
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
    events = [_chunk(None, reasoning=text) for text in reply.reasoning]
    events += [_chunk(text) for text in reply.chunks]
    finish = "stop"
    if reply.tool_call is not None:
        events.append(_tool_call_chunk(*reply.tool_call))
        finish = "tool_calls"
    if reply.cut_after is not None:
        return events[: reply.cut_after]
    if reply.truncated:
        return [*events, b"data: [DONE]\n\n"]
    return [*events, _chunk(None, finish), b"data: [DONE]\n\n"]


def _responses_events(reply: Reply) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The Responses API's stream for `reply`: its reasoning summary, its message, its tool
    call, each an output item; and the finished output the last event carries."""
    events: list[dict[str, Any]] = [{"type": "response.created", "response": _response([])}]
    output: list[dict[str, Any]] = []

    def item(added: dict[str, Any], steps: list[dict[str, Any]], done: dict[str, Any]) -> None:
        where = {"output_index": len(output)}
        events.append({"type": "response.output_item.added", "item": added, **where})
        events.extend({**where, "item_id": added["id"], **step} for step in steps)
        events.append({"type": "response.output_item.done", "item": done, **where})
        output.append(done)

    if reply.reasoning:
        thought = "".join(reply.reasoning)
        part = {"summary_index": 0}
        reasoning = {"id": _id("rs"), "type": "reasoning"}
        item(
            {**reasoning, "summary": []},
            [
                {"type": "response.reasoning_summary_part.added", **part, "part": _summary("")},
                *(
                    {"type": "response.reasoning_summary_text.delta", **part, "delta": delta}
                    for delta in reply.reasoning
                ),
                {"type": "response.reasoning_summary_text.done", **part, "text": thought},
                {"type": "response.reasoning_summary_part.done", **part, "part": _summary(thought)},
            ],
            {**reasoning, "summary": [_summary(thought)]},
        )
    if reply.chunks:
        text = "".join(reply.chunks)
        message = {"id": _id("msg"), "type": "message", "role": "assistant"}
        part = {"content_index": 0}
        item(
            {**message, "status": "in_progress", "content": []},
            [
                {"type": "response.content_part.added", **part, "part": _output_text("")},
                *(
                    {"type": "response.output_text.delta", **part, "delta": d, "logprobs": []}
                    for d in reply.chunks
                ),
                {"type": "response.output_text.done", **part, "text": text, "logprobs": []},
                {"type": "response.content_part.done", **part, "part": _output_text(text)},
            ],
            {**message, "status": "completed", "content": [_output_text(text)]},
        )
    if reply.tool_call is not None:
        name, arguments = reply.tool_call
        call = {"id": _id("fc"), "type": "function_call", "call_id": _id("call"), "name": name}
        item(
            {**call, "arguments": "", "status": "in_progress"},
            [
                {"type": "response.function_call_arguments.delta", "delta": arguments},
                {"type": "response.function_call_arguments.done", "arguments": arguments},
            ],
            {**call, "arguments": arguments, "status": "completed"},
        )
    events.append({"type": "response.completed", "response": _response(output, "completed")})
    return output, [
        b"data: " + json.dumps({**event, "sequence_number": number}).encode() + b"\n\n"
        for number, event in enumerate(events)
    ]


def _response(output: list[dict[str, Any]], status: str = "in_progress") -> dict[str, Any]:
    usage = {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 2,
    }
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": 0,
        "model": "fake-model",
        "status": status,
        "output": output,
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage if status == "completed" else None,
    }


def _summary(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.read_body()
            fake.api_keys.append(self.headers.get("authorization", "").removeprefix("Bearer "))
            if self.path.endswith("/audio/transcriptions"):
                fake.transcripts.append(raw)
                self.send_json(200, {"text": "buy milk"})
                return
            request = json.loads(raw or b"{}")
            fake.requests.append(request)
            reply = fake.next_reply(request)
            if reply.status != 200:
                self.send_json(
                    reply.status, {"error": {"message": "scripted failure", "type": "x"}}
                )
                return
            if self.path.endswith("/responses"):
                output, events = _responses_events(reply)
                if not request.get("stream"):
                    self.send_json(200, _response(output, "completed"))
                    return
            elif not request.get("stream"):
                message = {"role": "assistant", "content": "".join(reply.chunks)}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self.send_json(
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
            else:
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

    return Handler


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with serving(_handler(fake)) as url:
        fake.base_url = f"{url}/v1"
        try:
            yield fake
        finally:
            fake.released.set()  # a paused answer goes on, so that the server can stop
