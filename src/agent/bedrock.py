"""Amazon Bedrock through its Converse API, with the function's own AWS credentials (its IAM
role on Lambda): no API key, no secret.

botocore's `bedrock-runtime` client does the signing, the retries and the event-stream
decoding; the Agents SDK's Chat Completions converter and stream handler do the rest. This
module only maps one message shape onto the other. It is imported when the provider is
`bedrock`, never on the default cold start.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, cast

import anyio.to_thread
import boto3
from agents import (
    ModelSettings,
)
from agents.items import TResponseStreamEvent
from agents.models.chatcmpl_converter import Converter
from agents.models.chatcmpl_stream_handler import ChatCmplStreamHandler
from agents.models.fake_id import FAKE_RESPONSES_ID
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError, ResponseStreamingError
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from openai.types.responses import Response
from urllib3.exceptions import ProtocolError

from agent.failures import EmptyAnswerError, IncompleteAnswerError
from agent.streamed_model import ModelRequest, StreamedModel, with_finished_thoughts

# Converse's stop reasons, as Chat Completions finish reasons.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# A stream that breaks off mid-answer raises one of these while it is read.
CUT_STREAM_ERRORS = (ProtocolError, ResponseStreamingError, ReadTimeoutError)
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/csv": "csv",
    "text/html": "html",
}


def bedrock_client(region: str | None, max_retries: int) -> Any:
    """A `bedrock-runtime` client on the default credential chain (the function's role).

    Its endpoint is Bedrock's for `region`, unless AWS_ENDPOINT_URL_BEDROCK_RUNTIME (or
    AWS_ENDPOINT_URL) names another: botocore reads those itself."""
    config = Config(
        retries={"mode": "standard", "max_attempts": max_retries},  # retries after the first
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="chatkit-lambda",
    )
    return boto3.session.Session().client("bedrock-runtime", region_name=region, config=config)


class BedrockModel(StreamedModel):
    """A Bedrock model (a model id or an inference profile id) answering through ConverseStream,
    streamed event by event. The client is created on the first request."""

    def __init__(self, model_id: str, client: Callable[[], Any]) -> None:
        self.model = model_id
        self._new_client = client
        self._client: Any = None

    def _bedrock(self) -> Any:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    async def answer(self, request: ModelRequest) -> AsyncIterator[TResponseStreamEvent]:
        """One ConverseStream call, its events as Responses events (one permission:
        InvokeModelWithResponseStream, for the streamed and the whole answer alike)."""
        model_settings = request.model_settings
        messages = Converter.items_to_messages(request.input, model=self.model)
        specs = [Converter.tool_to_openai(tool) for tool in request.tools]
        specs += [Converter.convert_handoff_tool(handoff) for handoff in request.handoffs]
        converse = converse_request(
            self.model, request.system_instructions, cast(list[dict[str, Any]], messages), specs
        )
        converse.update(_inference_settings(model_settings, bool(specs)))
        response = Response(
            id=FAKE_RESPONSES_ID,
            created_at=time.time(),
            model=self.model,
            object="response",
            output=[],
            tool_choice="auto",
            top_p=model_settings.top_p,
            temperature=model_settings.temperature,
            tools=[],
            parallel_tool_calls=False,
            reasoning=None,
        )
        chunks = _Chunks(self._bedrock(), converse, self.model)
        try:
            events = ChatCmplStreamHandler.handle_stream(response, chunks)  # type: ignore[arg-type]
            async for event in with_finished_thoughts(events):
                yield event
        finally:
            await chunks.aclose()


# -- requests ------------------------------------------------------------------------------


def converse_request(
    model_id: str,
    system_instructions: str | None,
    messages: list[dict[str, Any]],
    tools: list[Any],
) -> dict[str, Any]:
    """A ConverseStream request from Chat Completions messages and tools."""
    system = [{"text": system_instructions}] if system_instructions else []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system += [{"text": text} for text in _texts(message.get("content"))]
            continue
        if role == "tool":
            result = {
                "toolUseId": message["tool_call_id"],
                "content": [{"text": text} for text in _texts(message.get("content")) if text]
                or [{"text": "(no output)"}],
            }
            _append(turns, "user", [{"toolResult": result}])
        elif role == "assistant":
            blocks: list[dict[str, Any]] = [
                {"text": text} for text in _texts(message.get("content")) if text
            ]
            for call in message.get("tool_calls") or []:
                function = call["function"]
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": call["id"],
                            "name": function["name"],
                            "input": json.loads(function.get("arguments") or "{}"),
                        }
                    }
                )
            if blocks:
                _append(turns, "assistant", blocks)
        else:
            _append(turns, "user", _user_blocks(message.get("content")))
    request: dict[str, Any] = {"modelId": model_id, "messages": _from_a_question(turns)}
    if system:
        request["system"] = system
    if tools:
        request["toolConfig"] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": spec["function"]["name"],
                        "description": spec["function"].get("description") or "",
                        "inputSchema": {"json": spec["function"].get("parameters") or {}},
                    }
                }
                for spec in tools
            ]
        }
    return request


def _from_a_question(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Converse wants the conversation to start with the user's words: a history window that
    starts mid-exchange (an answer, or tool results without their call) starts after it."""
    start = 0
    while start < len(turns) and (
        turns[start]["role"] == "assistant"
        or any("toolResult" in block for block in turns[start]["content"])
    ):
        start += 1
    return turns[start:]


def _inference_settings(settings: ModelSettings, has_tools: bool) -> dict[str, Any]:
    inference: dict[str, Any] = {}
    if settings.max_tokens is not None:
        inference["maxTokens"] = settings.max_tokens
    if settings.temperature is not None:
        inference["temperature"] = settings.temperature
    if settings.top_p is not None:
        inference["topP"] = settings.top_p
    extra: dict[str, Any] = {"inferenceConfig": inference} if inference else {}
    choice = settings.tool_choice
    if has_tools and choice not in (None, "auto", "none"):
        extra["toolChoice"] = {"any": {}} if choice == "required" else {"tool": {"name": choice}}
    return extra


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Converse wants user and assistant turns to alternate: consecutive ones merge."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part.get("text", "") for part in content if part.get("type") == "text"]


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content or []):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": part["text"]})
        elif kind == "image_url":
            media_type, data = _data_url(part["image_url"]["url"])
            if media_type in IMAGE_FORMATS:
                image = {"format": IMAGE_FORMATS[media_type], "source": {"bytes": data}}
                blocks.append({"image": image})
        elif kind == "file":
            media_type, data = _data_url(part["file"].get("file_data") or "")
            if media_type in DOCUMENT_FORMATS:
                # Bedrock accepts letters, digits, spaces, hyphens, parentheses and brackets.
                document = {
                    "format": DOCUMENT_FORMATS[media_type],
                    "name": f"attachment {index + 1}",
                    "source": {"bytes": data},
                }
                blocks.append({"document": document})
    return blocks or [{"text": "(an attachment this model cannot read)"}]


def _data_url(url: str) -> tuple[str, bytes]:
    """(media type, bytes) of a base64 data URL; ("", b"") for anything else."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64"):
        return "", b""
    return header[5:].removesuffix(";base64").lower(), base64.b64decode(payload)


# -- the stream ----------------------------------------------------------------------------


class _Chunks:
    """ConverseStream's events as Chat Completions chunks, read off the event loop (botocore
    reads synchronously): each event is delivered as soon as it arrives.

    The stream must end with messageStop: one that stops before it was cut
    (IncompleteAnswerError), one without any event said nothing (EmptyAnswerError)."""

    def __init__(self, client: Any, request: dict[str, Any], model: str) -> None:
        self._client = client
        self._request = request
        self._model = model
        self._stream: Any = None

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        # Worker threads, as the store's calls use: a cancelled turn leaves a blocked read
        # behind (abandoned), which ends when aclose() closes the connection.
        response = await anyio.to_thread.run_sync(
            partial(self._client.converse_stream, **self._request), abandon_on_cancel=True
        )
        self._stream = response["stream"]
        events: Iterator[dict[str, Any]] = iter(self._stream)
        tool_indexes: dict[int, int] = {}
        seen, finished = 0, False
        while True:
            try:
                event = await anyio.to_thread.run_sync(next, events, None, abandon_on_cancel=True)
            except CUT_STREAM_ERRORS as error:
                raise IncompleteAnswerError("the model's stream was cut") from error
            if event is None:
                break
            seen += 1
            finished = finished or "messageStop" in event
            chunk = self._chunk(event, tool_indexes)
            if chunk is not None:
                yield chunk
        if seen == 0:
            raise EmptyAnswerError("the model's stream ended before its first event")
        if not finished:
            raise IncompleteAnswerError("the model's stream ended without messageStop")

    def _chunk(self, event: dict[str, Any], tool_indexes: dict[int, int]) -> Any:
        delta: dict[str, Any] | None = None
        finish: str | None = None
        usage: CompletionUsage | None = None
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = start.get("start", {}).get("toolUse")
            if tool is not None:
                index = tool_indexes.setdefault(start["contentBlockIndex"], len(tool_indexes))
                function = {"name": tool["name"], "arguments": ""}
                call = {"index": index, "id": tool["toolUseId"], "type": "function"}
                delta = {"tool_calls": [{**call, "function": function}]}
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            change = block["delta"]
            if "text" in change:
                delta = {"content": change["text"]}
            elif "toolUse" in change:
                index = tool_indexes.setdefault(block["contentBlockIndex"], len(tool_indexes))
                arguments = change["toolUse"].get("input", "")
                delta = {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}
            elif "reasoningContent" in change and "text" in change["reasoningContent"]:
                delta = {"reasoning_content": change["reasoningContent"]["text"]}
        elif "messageStop" in event:
            reason = event["messageStop"].get("stopReason", "end_turn")
            finish = FINISH_REASONS.get(reason, "stop")
            delta = {}
        elif "metadata" in event and "usage" in event["metadata"]:
            counts = event["metadata"]["usage"]
            usage = CompletionUsage(
                prompt_tokens=counts.get("inputTokens", 0),
                completion_tokens=counts.get("outputTokens", 0),
                total_tokens=counts.get("totalTokens", 0),
            )
        if delta is None and usage is None:
            return None
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return ChatCompletionChunk.model_validate(
            {
                "id": FAKE_RESPONSES_ID,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": self._model,
                "choices": choices,
                "usage": usage,
            }
        )

    async def aclose(self) -> None:
        """Close the connection (a cancelled or failed turn stops reading)."""
        if self._stream is not None:
            await anyio.to_thread.run_sync(self._stream.close)
