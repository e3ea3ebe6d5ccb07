"""The guards an answer's events pass through, in order from the model to the client.

`Answerer.respond` (agent.answering) chains the first six (`guarded_answer`); the order matters:

1. chatkit's `stream_agent_response` turns the agent run into ChatKit events.
2. `with_real_ids` gives each message of a Chat Completions model (all `__fake_id__`) an id of
   its own. It comes first because every later guard keys items by id: the saves (one row per
   id, or each answer would overwrite the last), the created_at kept per item, the items shown.
3. The time bound (`AnswerStream._bounded`) stops reading the run at the turn's time limit
   and cancels it; a model failure removes what is half-written and ends the turn with an
   error in words. It runs before the saves, so a stopped answer still gets the turn's last
   write (its partial answer kept, the thread's lease given back).
4. Each item keeps the created_at it was first streamed with (`AnswerStream._stable`), so
   what is saved is what was sent.
5. A finished item is saved before its `thread.item.done` goes out; a failed save takes the
   item back from the client's view (`thread.item.removed`) and says why. The last assistant
   message is held until the run ends: its save also carries a new thread's title and gives
   the lease back, one request for the turn's end (`AnswerStream._finish`).
6. Once an event has left, the items still streaming follow it (`ShownItems`):
   after, not before, so a partial answer kept is what the client received.

Outside `respond`, in the server:

7. chatkit's `ChatKitServer._process_events` saves each finished item again (the store skips
   what this turn already wrote), turns a `CustomStreamError` into an `error` event and, on
   cancellation, calls `handle_stream_cancelled`.
8. `AssistantServer._in_turn` takes the thread's lease before the first event and gives it
   back after the last, whatever happens; a client that left keeps what it was shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from agents import RunResultStreaming
from agents.models.fake_id import FAKE_RESPONSES_ID
from chatkit.agents import AgentContext, stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.store import NotFoundError
from chatkit.types import (
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

import telemetry
from agent.failures import EmptyAnswerError, describe_failure, failure_class, not_saved
from logs import logger
from store import (
    DynamoDBStore,
    RequestContext,
    StoreUnavailableError,
    ThreadLeaseLostError,
)

if TYPE_CHECKING:
    from agent.turn import AnswerTurn


# What a failed save can raise: the item is then not (known to be) stored.
SAVE_FAILURES = (StoreUnavailableError, NotFoundError, ThreadLeaseLostError)


def guarded_answer(
    agent_context: AgentContext[RequestContext],
    run: RunResultStreaming,
    new_id: Callable[[], str],
    answer: AnswerStream,
) -> AsyncIterator[ThreadStreamEvent]:
    """The run's events through guards 1 to 6, in order (see the module docstring)."""
    converted = stream_agent_response(agent_context, run)
    return answer.events(with_real_ids(converted, new_id), run)


async def with_real_ids(
    events: AsyncIterator[ThreadStreamEvent], new_id: Callable[[], str]
) -> AsyncIterator[ThreadStreamEvent]:
    """Give assistant messages from Chat Completions models (all `__fake_id__`) unique ids.

    Without this, every answer in a thread would overwrite the previous one.
    """
    current: str | None = None
    async for event in events:
        match event:
            case ThreadItemAddedEvent(item=item) if item.id == FAKE_RESPONSES_ID:
                current = new_id()
                event = ThreadItemAddedEvent(item=item.model_copy(update={"id": current}))
            case ThreadItemUpdatedEvent(item_id=item_id) if item_id == FAKE_RESPONSES_ID:
                current = current or new_id()
                event = event.model_copy(update={"item_id": current})
            case ThreadItemDoneEvent(item=item) if item.id == FAKE_RESPONSES_ID:
                event = ThreadItemDoneEvent(
                    item=item.model_copy(update={"id": current or new_id()})
                )
                current = None
            case ThreadItemRemovedEvent(item_id=item_id) if item_id == FAKE_RESPONSES_ID:
                event = ThreadItemRemovedEvent(item_id=current or new_id())
                current = None
            case _:
                pass
        yield event


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


@dataclass(eq=False)
class AnswerStream:
    """Guards 3 to 6 (see the module docstring): the answer bounded in time, each finished
    item saved before it is shown done, the last message held for the turn's last write.
    `unfinished` gives the work the agent showed and did not finish (a workflow)."""

    store: DynamoDBStore
    thread: ThreadMetadata
    context: RequestContext
    turn: AnswerTurn
    _: KW_ONLY
    max_seconds: float
    title: Awaitable[str] | None = None
    unfinished: Callable[[], list[ThreadItem]] = list
    timed_out: bool = field(default=False, init=False)
    # Each item's created_at, as first streamed.
    _created: dict[str, datetime] = field(default_factory=dict, init=False)

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
        except CustomStreamError as error:
            if held is not None:
                # A finished message stays finished whatever failed after it.
                async for out in self._saved_then_sent(held):
                    yield out
            async for out in self._keep_unfinished():
                yield out
            if not isinstance(error.__cause__, SAVE_FAILURES):
                # The next turn continues with the specialist this one handed to: chatkit
                # saves the thread after the error event when its metadata changed.
                self.thread.metadata = self.turn.updated_metadata(self.thread)
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
                for item_id in self.turn.shown.ids():
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
        self.turn.shown.sent(event)

    async def _finish(self, held: ThreadItemDoneEvent | None) -> AsyncIterator[ThreadStreamEvent]:
        """The turn's last write: the last message, the new title, the lease given back."""
        changed = await self._changed_thread()
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
            self.thread.metadata = changed.metadata
        if held is not None:
            yield held
            self.turn.shown.sent(held)

    async def _changed_thread(self) -> ThreadMetadata | None:
        """The thread with its new title and metadata (the specialist answering it), or None
        when neither changed."""
        update: dict[str, Any] = {}
        if self.title is not None:
            update["title"] = await self.title
        metadata = self.turn.updated_metadata(self.thread)
        if metadata != self.thread.metadata:
            update["metadata"] = metadata
        return self.thread.model_copy(update=update) if update else None

    async def _keep_unfinished(self) -> AsyncIterator[ThreadStreamEvent]:
        """What the agent showed and did not finish (its workflow) is kept as it stands."""
        for item in self.unfinished():
            async for out in self._saved_then_sent(ThreadItemDoneEvent(item=item)):
                yield out

    async def _end_on_deadline(
        self, held: ThreadItemDoneEvent | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The partial answer, as the client saw it, is kept; the error says why it ends."""
        telemetry.current().fail("deadline", "MaxTurnSeconds")
        if held is not None:
            async for out in self._saved_then_sent(held):
                yield out
        async for out in self._keep_unfinished():
            yield out
        worth_keeping = self.turn.shown.partial_answers()
        for item_id in self.turn.shown.ids():
            partial = self.turn.shown.get(item_id)
            event: ThreadStreamEvent = (
                ThreadItemDoneEvent(item=partial)
                if partial is not None and partial in worth_keeping
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
        self.turn.shown.sent(ThreadItemRemovedEvent(item_id=item.id))
        self._fail(error, saving="The answer")

    def _fail(self, error: BaseException, saving: str | None = None) -> NoReturn:
        """End the turn with an error event; `saving` names what was not saved, if anything."""
        message, allow_retry = not_saved(saving, error) if saving else describe_failure(error)
        telemetry.current().fail(failure_class(error), type(error).__name__)
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
