"""One answering turn's state: the store's hold on the thread, plus what the answer has shown
its client, what its tools changed, and the agent run to cancel when the turn ends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from agents import RunResultStreaming
from chatkit.types import (
    AssistantMessageItem,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
)

from store import Turn

# chatkit's `ChatKitServer._update_pending_items`: applies an update to the item it names.
ApplyUpdate = Callable[[dict[str, ThreadItem], ThreadItemUpdatedEvent], None]


class ShownItems:
    """The assistant messages the client has seen start and not end, as it received them.

    The bookkeeping is chatkit's own: the pending items its `ChatKitServer._process_events`
    keeps for `handle_stream_cancelled`, updated by the same `_update_pending_items`. It is
    applied once an event has left rather than before, so that a partial answer kept on a
    deadline or a disconnect is exactly what reached the client.
    """

    def __init__(self, apply_update: ApplyUpdate) -> None:
        self._apply_update = apply_update
        self._items: dict[str, ThreadItem] = {}

    def sent(self, event: ThreadStreamEvent) -> None:
        """Follow `event`, which has just reached the client."""
        match event:
            case ThreadItemAddedEvent(item=AssistantMessageItem() as item):
                self._items[item.id] = item.model_copy(deep=True)
            case ThreadItemUpdatedEvent() if event.item_id in self._items:
                # A copy: chatkit's update keeps the event's content part, and chatkit's
                # own pending items may hold the same part.
                self._apply_update(self._items, event.model_copy(deep=True))
            case ThreadItemDoneEvent(item=item) | ThreadItemReplacedEvent(item=item):
                self._items.pop(item.id, None)
            case ThreadItemRemovedEvent(item_id=item_id):
                self._items.pop(item_id, None)
            case _:
                pass

    def ids(self) -> list[str]:
        """The ids of the messages still streaming, in the order they started."""
        return list(self._items)

    def get(self, item_id: str) -> AssistantMessageItem | None:
        item = self._items.get(item_id)
        return item if isinstance(item, AssistantMessageItem) else None

    def partial_answers(self) -> list[AssistantMessageItem]:
        """Messages the client saw part of and no end: the ones with text are worth keeping."""
        return [
            item
            for item in self._items.values()
            if isinstance(item, AssistantMessageItem)
            and any(part.text.strip() for part in item.content)
        ]


@dataclass
class AnswerTurn(Turn):
    """A store Turn, plus what the answer has shown its client so far."""

    shown: ShownItems = field(kw_only=True)
    thread: ThreadMetadata | None = None  # the thread being answered, once answering starts
    first_message: str | None = None  # a new thread's first message, for its title
    effects: list[str] = field(default_factory=list)  # what tools changed, for the user
    kept: bool = False  # what the client saw was kept after it left
    run: RunResultStreaming | None = None  # the agent's run, cancelled when the turn ends

    @classmethod
    def answering_with(cls, max_turn_seconds: float, apply_update: ApplyUpdate) -> Self:
        """A turn bounded by `max_turn_seconds` (see `Turn.answering`), following what it
        shows with chatkit's `apply_update`."""
        lease = Turn.answering(max_turn_seconds).lease_seconds
        return cls(lease_seconds=lease, shown=ShownItems(apply_update))

    def with_effects(self, message: str) -> str:
        """An error message that also says what was already done, truthfully."""
        if not self.effects:
            return message
        done = "; ".join(self.effects)
        return f"{message} Already done before the error: {done}. Trying again will not repeat it."
