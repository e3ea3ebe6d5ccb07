"""What a request may ask for, checked before the SDK dispatches it and before anything is written.

`check_request` parses the body once, refuses what breaks a limit (`LimitExceededError`) or
cannot be served (`InvalidRequestError`), and removes duplicate ids from lists whose entries each
cost a read or a write. It does no I/O; the server runs it in a worker thread for large bodies.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, get_args, get_origin

import anyio.to_thread
import pydantic_core
from chatkit.types import ChatKitReq, NonStreamingReq, StreamingReq
from pydantic import TypeAdapter

from errors import InvalidRequestError, LimitExceededError
from settings import RequestLimits


@cache
def chatkit_request() -> TypeAdapter[Any]:
    """The SDK's request type (built on first use: ~10 ms, kept off the cold start)."""
    return TypeAdapter(ChatKitReq)


def _request_types(union: Any) -> frozenset[str]:
    members = get_args(get_args(union)[0]) if get_origin(union) is Annotated else get_args(union)
    return frozenset(str(member.model_fields["type"].default) for member in members)


STREAMING_TYPES = _request_types(StreamingReq)
REQUEST_TYPES = STREAMING_TYPES | _request_types(NonStreamingReq)
# Requests that run the model: each is one turn of the daily quota, and so is a transcription.
TURN_TYPES = frozenset(
    {
        "threads.create",
        "threads.add_user_message",
        "threads.add_client_tool_output",
        "threads.add_structured_input",
        "threads.retry_after_item",
    }
)
QUOTA_TYPES = TURN_TYPES | {"input.transcribe"}
# JSON values a request may hold besides those of its message (ids, options, structure).
_STRUCTURE_VALUES = 10_000
# Bodies up to this size are checked inline (well under a millisecond); larger ones off the loop.
_INLINE_BYTES = 64_000
AUDIO_TYPES = frozenset({"audio/webm", "audio/ogg", "audio/mp4"})
# Where each request type carries text that is stored or sent to the model.
_TEXT_PARAMS = {
    "threads.create": "input",
    "threads.add_user_message": "input",
    "threads.add_structured_input": "input",
    "threads.add_client_tool_output": "result",
    "threads.custom_action": "action",
    "threads.sync_custom_action": "action",
}


@dataclass(frozen=True)
class CheckedRequest:
    """A request within the limits: its type, its params, and the body to dispatch."""

    type: str
    params: dict[str, Any]
    body: bytes


def parse_request(body: str | bytes | bytearray, max_values: int) -> dict[str, Any]:
    """The body as a JSON object. InvalidRequestError if it is not one (lone surrogates and
    other text that is not Unicode included); LimitExceededError, before parsing, if it could
    hold more than `max_values` values (parsing holds the event loop, tens of milliseconds per
    million values, whatever thread it runs in)."""
    separators = body.count(",") if isinstance(body, str) else body.count(b",")
    if separators >= max_values:
        raise LimitExceededError(f"A request can hold at most {max_values:,} values.")
    try:
        parsed = pydantic_core.from_json(body)
    except ValueError:
        raise InvalidRequestError("The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return parsed


def max_values(limits: RequestLimits) -> int:
    """How many JSON values a request may hold: a message's worth, and room for the rest."""
    return limits.max_message_chars + _STRUCTURE_VALUES


def check_request(body: str | bytes | bytearray, limits: RequestLimits) -> CheckedRequest:
    """Check `body` against `limits`; return it with duplicate attachment and feedback ids removed.

    Raises InvalidRequestError or LimitExceededError, and pydantic's ValidationError for a
    request the SDK would not accept.
    """
    request = parse_request(body, max_values(limits))
    kind, params = request.get("type"), request.get("params")
    if not isinstance(kind, str) or not isinstance(params, dict):
        chatkit_request().validate_python(request)  # says what is wrong
        raise InvalidRequestError("A ChatKit request needs a type and params.")
    changed = False
    match kind:
        case "threads.create" | "threads.add_user_message":
            changed = _check_attachments(params, limits.max_attachments_per_message)
        case "items.feedback":
            changed = _check_feedback(params, limits.max_feedback_items)
        case "threads.update":
            _check_title(params, limits.max_title_chars)
        case "input.transcribe":
            _check_audio(params, limits.max_audio_bytes)
        case "threads.list" | "items.list":
            _check_page_size(params)
        case _:
            pass
    if (
        kind in _TEXT_PARAMS
        and _text_size(params.get(_TEXT_PARAMS[kind])) > limits.max_message_chars
    ):
        raise LimitExceededError(
            f"A message can be at most {limits.max_message_chars:,} characters long."
        )
    # The SDK's own validation, so that a malformed request is refused before anything
    # (the quota included) is written.
    chatkit_request().validate_python(request)
    dispatched = json.dumps(request, ensure_ascii=False).encode() if changed else _as_bytes(body)
    return CheckedRequest(kind, params, dispatched)


def _check_attachments(params: dict[str, Any], limit: int) -> bool:
    """Cap the attachment ids of a message and drop repeated ones; True if any were dropped."""
    user_input = params.get("input")
    if not isinstance(user_input, dict):
        return False
    return _cap_ids(user_input, "attachments", limit, "A message can have at most {} attachments.")


def _check_feedback(params: dict[str, Any], limit: int) -> bool:
    return _cap_ids(params, "item_ids", limit, "Feedback can name at most {} items at once.")


def _cap_ids(container: dict[str, Any], key: str, limit: int, refusal: str) -> bool:
    """Refuse more than `limit` ids under `key`; drop repeated ones (True if any were)."""
    ids = container.get(key)
    if not isinstance(ids, list):
        return False
    if len(ids) > limit:
        raise LimitExceededError(refusal.format(limit))
    unique = _unique(ids)
    container[key] = unique
    return len(unique) != len(ids)


def _check_title(params: dict[str, Any], limit: int) -> None:
    title = params.get("title")
    if isinstance(title, str) and len(title) > limit:
        raise LimitExceededError(f"A title can be at most {limit} characters long.")


def _check_audio(params: dict[str, Any], limit: int) -> None:
    audio, mime_type = params.get("audio_base64"), params.get("mime_type")
    if isinstance(mime_type, str) and mime_type.split(";", 1)[0].strip() not in AUDIO_TYPES:
        raise InvalidRequestError(f"Recordings must be one of {', '.join(sorted(AUDIO_TYPES))}.")
    if not isinstance(audio, str):
        return
    if len(audio) // 4 * 3 > limit:
        raise LimitExceededError(f"A recording can be at most {limit:,} bytes.")
    try:
        base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("The recording is not valid base64.") from None


def _check_page_size(params: dict[str, Any]) -> None:
    limit = params.get("limit")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit < 0:
        raise InvalidRequestError("limit must not be negative.")


def _text_size(value: Any) -> int:
    """Characters of text in `value` (strings and keys at their length, other values at 1),
    without recursion, so no shape of input can exhaust the stack."""
    size, pending = 0, [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            size += len(current)
        elif isinstance(current, dict):
            size += sum(len(key) for key in current)
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
        else:
            size += 1
    return size


def _unique(values: list[Any]) -> list[Any]:
    """The values in their first order, each once (unhashable ones are left to validation)."""
    seen: set[Any] = set()
    unique = []
    for value in values:
        key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(value)
    return unique


def _as_bytes(body: str | bytes | bytearray) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


async def checked_request(body: str | bytes | bytearray, limits: RequestLimits) -> CheckedRequest:
    """`check_request`, in a worker thread when the body is large enough to hold the event loop."""
    if len(body) > _INLINE_BYTES:
        return await anyio.to_thread.run_sync(check_request, body, limits)
    return check_request(body, limits)
