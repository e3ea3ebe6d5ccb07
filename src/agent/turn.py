"""One turn's answer on its way to the client: saved before it is shown as done, bounded in
time, and kept consistent with what the client actually received.

The order of things in a turn (the ChatKit server's `respond` drives it):

1. The agent's events pass through as they come (text deltas at once).
2. A finished item is saved before its `thread.item.done` goes out; if the save fails, the
   client is told in words and the item is removed from its view (`thread.item.removed`).
3. The last assistant message is held until the run ends, so its save can also carry the
   new thread's title and give the thread's lease back: one request ends the turn.
4. What the client was actually sent is tracked after each event leaves, so a partial answer
   kept on a deadline or a disconnect is exactly what the client saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from agents import RunResultStreaming
from chatkit.errors import CustomStreamError
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ErrorEvent,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
)

from agent.failures import EmptyAnswerError, describe_failure, not_saved
from store import (
    DynamoDBStore,
    RequestContext,
    StoreUnavailableError,
    ThreadLeaseLostError,
    Turn,
)

logger = logging.getLogger(__name__)

# What a failed save can raise: the item is then not (known to be) stored.
SAVE_FAILURES = (StoreUnavailableError, NotFoundError, ThreadLeaseLostError)


@dataclass
class AnswerTurn(Turn):
    """A store Turn, plus what the answer has shown its client so far."""

    shown: dict[str, AssistantMessageItem] = field(default_factory=dict)  # still streaming
    thread: ThreadMetadata | None = None  # the thread being answered, once answering starts
    first_message: str | None = None  # a new thread's first message, for its title
    effects: list[str] = field(default_factory=list)  # what tools changed, for the user
    kept: bool = False  # what the client saw was kept after it left
    run: RunResultStreaming | None = None  # the agent's run, cancelled when the turn ends

    def sent(self, event: ThreadStreamEvent) -> None:
        """Follow assistant messages still being written, as the client received them."""
        match event:
            case ThreadItemAddedEvent(item=AssistantMessageItem() as item):
                self.shown[item.id] = item.model_copy(deep=True)
            case ThreadItemUpdatedEvent(item_id=item_id, update=update) if item_id in self.shown:
                content = self.shown[item_id].content
                if isinstance(
                    update, AssistantMessageContentPartTextDelta | AssistantMessageContentPartDone
                ):
                    while len(content) <= update.content_index:
                        content.append(AssistantMessageContent(text=""))
                if isinstance(update, AssistantMessageContentPartTextDelta):
                    content[update.content_index].text += update.delta
                elif isinstance(update, AssistantMessageContentPartDone):
                    content[update.content_index] = update.content
            case ThreadItemDoneEvent(item=item) | ThreadItemReplacedEvent(item=item):
                self.shown.pop(item.id, None)
            case ThreadItemRemovedEvent(item_id=item_id):
                self.shown.pop(item_id, None)
            case _:
                pass

    def partial_answers(self) -> list[AssistantMessageItem]:
        """Messages the client saw part of and no end: the ones with text are worth keeping."""
        return [
            item for item in self.shown.values() if any(part.text.strip() for part in item.content)
        ]

    def with_effects(self, message: str) -> str:
        """An error message that also says what was already done, truthfully."""
        if not self.effects:
            return message
        done = "; ".join(self.effects)
        return f"{message} Already done before the error: {done}. Trying again will not repeat it."


class AnswerStream:
    """The events of one turn's answer, saved and bounded (see the module docstring)."""

    def __init__(
        self,
        store: DynamoDBStore,
        thread: ThreadMetadata,
        context: RequestContext,
        turn: AnswerTurn,
        *,
        max_seconds: float,
        title: Awaitable[str] | None = None,
    ) -> None:
        self.store = store
        self.thread = thread
        self.context = context
        self.turn = turn
        self.max_seconds = max_seconds
        self.title = title
        self.timed_out = False
        self._created: dict[str, datetime] = {}  # each item's created_at, as first streamed

    async def events(
        self, agent_events: AsyncIterator[ThreadStreamEvent], run: RunResultStreaming | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The turn's events, ending with its last write (and an error event if it failed)."""
        held: ThreadItemDoneEvent | None = None
        try:
            async for event in self._bounded(agent_events, run):
                if held is not None:
                    async for out in self._saved_then_sent(held):
                        yield out
                    held = None
                event = self._stable(event)
                if isinstance(event, ThreadItemDoneEvent) and isinstance(
                    event.item, AssistantMessageItem
                ):
                    held = event  # maybe the last write: held until the run ends
                    continue
                async for out in self._saved_then_sent(event):
                    yield out
        except CustomStreamError:
            if held is not None:
                # A finished message stays finished whatever failed after it.
                async for out in self._saved_then_sent(held):
                    yield out
            raise
        if self.timed_out:
            async for out in self._end_on_deadline(held):
                yield out
            return
        async for out in self._finish(held):
            yield out

    # -- the steps --------------------------------------------------------------------------

    async def _bounded(
        self, events: AsyncIterator[ThreadStreamEvent], run: RunResultStreaming | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The agent's events until the time limit; a failure removes what is half-written
        and becomes an error event; a run that produced nothing is an error too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_seconds
        produced = False
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(events)
            except StopAsyncIteration:
                if not produced:
                    self._fail(EmptyAnswerError("the model produced no output"))
                return
            except TimeoutError:
                if loop.time() < deadline:
                    raise
                if run is not None:
                    run.cancel()
                self.timed_out = True
                return
            except (CustomStreamError, asyncio.CancelledError):
                raise
            except Exception as error:
                for item_id in list(self.turn.shown):
                    yield ThreadItemRemovedEvent(item_id=item_id)
                self._fail(error)
            produced = produced or isinstance(event, ThreadItemAddedEvent | ThreadItemDoneEvent)
            yield event

    async def _saved_then_sent(self, event: ThreadStreamEvent) -> AsyncIterator[ThreadStreamEvent]:
        """Save what `event` finishes, then send it; on a failed save, take the item back
        from the client's view and say why."""
        item: ThreadItem | None = None
        if isinstance(event, ThreadItemDoneEvent | ThreadItemReplacedEvent):
            item = event.item
            try:
                if isinstance(event, ThreadItemDoneEvent):
                    await self.store.add_thread_item(self.thread.id, item, self.context)
                else:
                    await self.store.save_item(self.thread.id, item, self.context)
            except SAVE_FAILURES as error:
                async for out in self._not_saved(item, error):
                    yield out
        yield event
        self.turn.sent(event)

    async def _finish(self, held: ThreadItemDoneEvent | None) -> AsyncIterator[ThreadStreamEvent]:
        """The turn's last write: the last message, the new title, the lease given back."""
        changed: ThreadMetadata | None = None
        if self.title is not None:
            changed = self.thread.model_copy(update={"title": await self.title})
        try:
            await self.store.finish_turn(changed, held.item if held else None, self.context)
        except SAVE_FAILURES as error:
            if held is None:
                self._fail(error)
            async for out in self._not_saved(held.item, error):
                yield out
        if changed is not None:
            # The SDK sends thread.updated; what it saves again was just saved.
            self.thread.title = changed.title
        if held is not None:
            yield held
            self.turn.sent(held)

    async def _end_on_deadline(
        self, held: ThreadItemDoneEvent | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The partial answer, as the client saw it, is kept; the error says why it ends."""
        if held is not None:
            async for out in self._saved_then_sent(held):
                yield out
        for item_id in list(self.turn.shown):
            partial = self.turn.shown[item_id]
            event: ThreadStreamEvent = (
                ThreadItemDoneEvent(item=partial)
                if partial in self.turn.partial_answers()
                else ThreadItemRemovedEvent(item_id=item_id)
            )
            async for out in self._saved_then_sent(event):
                yield out
        yield ErrorEvent(
            code="custom",
            message=self.turn.with_effects(
                f"The answer took longer than {self.max_seconds:g} seconds and was stopped."
            ),
            allow_retry=True,
        )
        async for out in self._finish(None):
            yield out

    async def _not_saved(
        self, item: ThreadItem, error: BaseException
    ) -> AsyncIterator[ThreadStreamEvent]:
        logger.warning("item %s not saved: %s", item.id, type(error).__name__)
        yield ThreadItemRemovedEvent(item_id=item.id)
        self.turn.sent(ThreadItemRemovedEvent(item_id=item.id))
        self._fail(error, saving="The answer")

    def _fail(self, error: BaseException, saving: str | None = None) -> NoReturn:
        """End the turn with an error event; `saving` names what was not saved, if anything."""
        message, allow_retry = not_saved(saving, error) if saving else describe_failure(error)
        if not isinstance(error, (*SAVE_FAILURES, EmptyAnswerError)):
            logger.warning("answer failed: %s", type(error).__name__, exc_info=error)
        raise CustomStreamError(self.turn.with_effects(message), allow_retry=allow_retry) from error

    def _stable(self, event: ThreadStreamEvent) -> ThreadStreamEvent:
        """An item keeps the created_at it was first streamed with, through to its save."""
        match event:
            case ThreadItemAddedEvent(item=item):
                self._created.setdefault(item.id, item.created_at)
            case ThreadItemDoneEvent(item=item) if item.id in self._created:
                created_at = self._created[item.id]
                if item.created_at != created_at:
                    return ThreadItemDoneEvent(
                        item=item.model_copy(update={"created_at": created_at})
                    )
            case _:
                pass
        return event
