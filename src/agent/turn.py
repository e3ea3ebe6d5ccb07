"""One answering turn's state: the store's hold on the thread, plus what the answer has shown
its client, what its tools changed, and the agent run to cancel when the turn ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from agents import RunResultStreaming
from chatkit.types import ThreadMetadata

from agent.stream_guards import ApplyUpdate, ShownItems
from store import Turn


@dataclass
class AnswerTurn(Turn):
    """A store Turn, plus what the answer has shown its client so far."""

    shown: ShownItems = field(kw_only=True)
    thread: ThreadMetadata | None = None  # the thread being answered, once answering starts
    first_message: str | None = None  # a new thread's first message, for its title
    effects: list[str] = field(default_factory=list)  # what tools changed, for the user
    thread_updates: dict[str, Any] = field(default_factory=dict)  # the thread's new metadata
    kept: bool = False  # what the client saw was kept after it left
    run: RunResultStreaming | None = None  # the agent's run, cancelled when the turn ends

    @classmethod
    def answering_with(cls, max_turn_seconds: float, apply_update: ApplyUpdate) -> Self:
        """A turn bounded by `max_turn_seconds` (see `Turn.answering`), following what it
        shows with chatkit's `apply_update`."""
        lease = Turn.answering(max_turn_seconds).lease_seconds
        return cls(lease_seconds=lease, shown=ShownItems(apply_update))

    def updated_metadata(self, thread: ThreadMetadata) -> dict[str, Any]:
        """`thread`'s metadata with what this turn changed (the specialist answering it)."""
        metadata = {**thread.metadata, **self.thread_updates}
        return {key: value for key, value in metadata.items() if value is not None}

    def with_effects(self, message: str) -> str:
        """An error message that also says what was already done, truthfully."""
        if not self.effects:
            return message
        done = "; ".join(self.effects)
        return f"{message} Already done before the error: {done}. Trying again will not repeat it."
