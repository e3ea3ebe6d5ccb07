"""moto's DynamoDB, made to apply each request atomically as DynamoDB does.

DynamoDB applies every single-item write (a conditional UpdateItem included) atomically:
concurrent writers to one item are serialized. moto's backend reads, checks and writes an
item without a lock, so two concurrent conditional updates can both pass their condition and
counter increments can be lost. Serializing moto's request handling gives tests the guarantee
the code relies on, for the in-process `mock_aws` and for a moto server in the same process.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_lock = threading.RLock()
_patched = False


def make_moto_dynamodb_atomic() -> None:
    """Serialize moto's DynamoDB request handling in this process (idempotent)."""
    global _patched
    if _patched:
        return
    call_action = DynamoHandler.call_action

    def atomic_call_action(self: DynamoHandler) -> Any:
        with _lock:
            return call_action(self)

    DynamoHandler.call_action = atomic_call_action  # type: ignore[method-assign]
    _patched = True
