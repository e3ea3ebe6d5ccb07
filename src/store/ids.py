"""New ids for threads, items and attachments: the SDK's prefixes and 128 random bits."""

from __future__ import annotations

import secrets

# The SDK's id prefixes; the random part is ours: 128 bits instead of 32.
ID_PREFIXES: dict[str, str] = {
    "thread": "thr",
    "message": "msg",
    "tool_call": "tc",
    "task": "tsk",
    "workflow": "wf",
    "attachment": "atc",
    "sdk_hidden_context": "shcx",
}


def random_id(prefix: str) -> str:
    """`{prefix}_` and 128 random bits in hex: collisions are not a concern at any scale."""
    return f"{prefix}_{secrets.token_hex(16)}"
