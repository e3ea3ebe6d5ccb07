"""ChatKit request bodies the tests and benchmarks send."""

from __future__ import annotations

from typing import Any


def user_input(
    text: str = "hi", attachments: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """The `input` of a threads.create / threads.add_user_message request (`extra` fields are
    added as given, to send what a client should not)."""
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments or [],
        "inference_options": {},
        **extra,
    }
