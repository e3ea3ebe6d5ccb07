"""A fake Amazon Bedrock runtime on 127.0.0.1 answering ConverseStream, scripted per request.

It speaks the real wire format: `application/vnd.amazon.eventstream` binary frames (prelude
with the total and headers lengths and its CRC32, typed headers, a JSON payload, the message
CRC32), sent as HTTP/1.1 chunks one frame at a time. Each `Reply` is one answer, and can fail
the way Bedrock and networks fail: an HTTP error before the stream (`status`, e.g. 429 with
ThrottlingException), an exception event mid-stream (`exception`, e.g. throttlingException),
or a connection dropped in the middle of a frame (`cut_after`).
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from tests.support.local_server import QuietHandler, serving

STRING_HEADER = 7  # the event-stream header value type of a string


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", STRING_HEADER, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event(event_type: str, body: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, json.dumps(body).encode())


def exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps({"message": message}).encode())


@dataclass
class Reply:
    """One scripted answer: text deltas and tool uses, or one of the failures above."""

    chunks: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)  # reasoning text deltas, before the rest
    tool_use: tuple[str, list[str]] | None = None  # (tool name, the input JSON in pieces)
    status: int = 200
    error_type: str = "ThrottlingException"  # with a status other than 200
    exception: str | None = None  # an exception event's type after the chunks
    cut_after: int | None = None  # drop the connection inside the frame after this many


@dataclass
class FakeBedrock:
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # every ConverseStream body
    paths: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    endpoint_url: str = ""

    def next_reply(self, request: dict[str, Any]) -> Reply:
        system = json.dumps(request.get("system", []))
        if "Write a short title" in system:
            return Reply(chunks=["Groceries ", "for the week"])
        return self.replies.pop(0) if self.replies else Reply(chunks=["Default ", "answer."])


def stream_frames(reply: Reply) -> list[bytes]:
    """The reply as ConverseStream events, in Bedrock's order."""
    frames = [event("messageStart", {"role": "assistant"})]
    index = 0
    if reply.reasoning:
        for text in reply.reasoning:
            delta = {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": text}}}
            frames.append(event("contentBlockDelta", delta))
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if reply.chunks:
        for text in reply.chunks:
            delta = {"contentBlockIndex": index, "delta": {"text": text}}
            frames.append(event("contentBlockDelta", delta))
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    stop = "end_turn"
    if reply.tool_use is not None:
        name, pieces = reply.tool_use
        start = {"toolUse": {"toolUseId": f"tooluse_{len(pieces)}{name}", "name": name}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for piece in pieces:
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
            frames.append(event("contentBlockDelta", delta))
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        stop = "tool_use"
    if reply.exception is not None:
        return [*frames, exception(reply.exception, "Too many requests, please wait.")]
    frames.append(event("messageStop", {"stopReason": stop}))
    usage = {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19}
    frames.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
    return frames


def _handler(fake: FakeBedrock) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            request = json.loads(self.read_body() or b"{}")
            fake.paths.append(unquote(self.path))
            fake.authorizations.append(self.headers.get("authorization", ""))
            fake.requests.append(request)
            reply = fake.next_reply(request)
            if reply.status != 200:
                error_type = {"x-amzn-errortype": f"{reply.error_type}:http://internal/"}
                message = {"message": "Too many requests, please wait."}
                self.send_json(reply.status, message, error_type)
                return
            frames = stream_frames(reply)
            self.send_response(200)
            self.send_header("content-type", "application/vnd.amazon.eventstream")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-amzn-requestid", "fake-request-id")
            self.end_headers()
            for index, data in enumerate(frames):
                if index == reply.cut_after:
                    # Half a frame, and the connection drops: no final chunk ever comes.
                    half = data[: len(data) // 2]
                    self.wfile.write(f"{len(data):x}\r\n".encode() + half)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    return Handler


@contextmanager
def fake_bedrock_server() -> Iterator[FakeBedrock]:
    fake = FakeBedrock()
    with serving(_handler(fake)) as url:
        fake.endpoint_url = url
        yield fake
