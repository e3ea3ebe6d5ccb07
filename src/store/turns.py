"""A turn's hold on its thread: the lease in the thread row, and what the turn has written.

One thread answers one turn at a time, across Lambda instances. A turn takes the thread's
lease with the request that starts it (an UpdateItem that also returns the thread), every
write it makes to the thread is conditional on still holding it, and its last write gives it
back. A turn that crashes loses its lease when `lease_until` passes.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Self

from chatkit.types import ThreadMetadata

# A turn is bounded by the server's own time limit; the lease adds room for its last writes.
LEASE_MARGIN_SECONDS = 30.0


def new_token() -> str:
    """128 random bits, hex: an id nobody can guess or collide with."""
    return secrets.token_hex(16)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Turn:
    """One request's turn on one thread. Lives in the request's RequestContext.

    `thread_id` is None until the turn knows its thread (a `threads.create` learns it when
    the store generates the id). `pending_thread` is a new thread the SDK has saved but the
    store has not written yet: it is written with the thread's first row, so a turn that
    fails before storing anything leaves no empty thread behind.
    """

    lease_seconds: float
    token: str = field(default_factory=new_token)
    thread_id: str | None = None
    held: bool = False
    creating: bool = False
    created: bool = False  # this turn created its thread
    pending_thread: ThreadMetadata | None = None
    loaded_thread: ThreadMetadata | None = None  # returned when the lease was taken
    written: dict[str, str] = field(default_factory=dict)  # row sort key -> JSON last written
    unsaved: set[str] = field(default_factory=set)  # item ids whose write failed
    store_unavailable: bool = False

    @classmethod
    def answering(cls, max_turn_seconds: float) -> Self:
        """A turn bounded by `max_turn_seconds`; its lease outlives it by a margin."""
        return cls(lease_seconds=max_turn_seconds + LEASE_MARGIN_SECONDS)

    def owns(self, thread_id: str) -> bool:
        """Whether this turn is the one answering `thread_id` (lease held or about to be)."""
        return self.thread_id == thread_id and (self.held or self.creating)

    def lease_until_ms(self) -> int:
        return now_ms() + int(self.lease_seconds * 1000)
