"""The ChatKit server: serves the whole protocol over the DynamoDB store with the task assistant.

It admits and dispatches every request and holds each turn's lease; what answers a turn is
agent.answering, imported on the first turn (see `AssistantServer._answerer`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import anyio
from chatkit.actions import Action
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import AttachmentStore
from chatkit.types import (
    AudioInput,
    ErrorEvent,
    FeedbackKind,
    SyncCustomActionResponse,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    WidgetItem,
)
from pydantic import BaseModel

import telemetry
from agent.failures import BUSY_MESSAGE, failure_class, not_saved
from agent.providers import Models
from agent.request_checks import RequestChecks, TranscriptionUnavailableError
from agent.utc import with_utc_times
from errors import InvalidRequestError
from logs import logger
from settings import RequestLimits
from store import (
    DynamoDBStore,
    RequestContext,
    StoreUnavailableError,
    ThreadBusyError,
    ThreadDeletedError,
    ThreadLeaseLostError,
)
from store.quota import TurnQuota
from store.tasks import TaskStore

if TYPE_CHECKING:
    from agent.answering import Answerer
    from agent.converter import AttachmentReader
    from agent.turn import AnswerTurn


class UploadsDisabledError(InvalidRequestError):
    """An attachment request reached a server configured without an attachment store."""


@dataclass(frozen=True)
class TurnLimits:
    """Bounds on every answer: a Lambda keeps running (and billing) after its client leaves."""

    history_items: int = 30
    max_agent_turns: int = 8
    max_turn_seconds: float = 60.0


class AssistantServer(ChatKitServer[RequestContext]):
    """ChatKit's server with the task assistant answering and the DynamoDB store persisting."""

    store: DynamoDBStore

    def __init__(
        self,
        store: DynamoDBStore,
        tasks: TaskStore,
        models: Models,
        limits: TurnLimits = TurnLimits(),
        attachment_store: AttachmentStore[RequestContext] | None = None,
        attachment_reader: AttachmentReader | None = None,
        quota: TurnQuota | None = None,
        request_limits: RequestLimits | None = None,
    ) -> None:
        super().__init__(store, attachment_store)
        self.quota = quota
        self.request_limits = request_limits = request_limits or RequestLimits()
        self.checks = RequestChecks(
            store,
            request_limits,
            uploads=attachment_reader,
            quota=quota,
            transcription_provider=None if models.transcribe else models.provider,
        )
        self.tasks = tasks
        self.models = models
        self.limits = limits
        self.attachment_reader = attachment_reader

    @cached_property
    def _answerer(self) -> Answerer:
        """The turn machinery, imported and built on the first turn (see agent.answering)."""
        from agent.answering import Answerer

        return Answerer(
            self.store,
            self.tasks,
            self.models,
            self.limits,
            attachment_reader=self.attachment_reader,
            max_attachment_bytes=self.request_limits.max_attachment_bytes_per_turn,
            apply_update=self._update_pending_items,
        )

    async def process(
        self, request: str | bytes | bytearray, context: RequestContext
    ) -> StreamingResult | NonStreamingResult:
        """The SDK's dispatch, once `RequestChecks` admitted the request: a refused request
        (ClientRequestError, NotFoundError) has written nothing.

        A streaming request is one turn in its thread: it holds the thread's lease from its
        first request to its last (see `_in_turn`)."""
        admitted = await self.checks.admit(request, context)
        if admitted.type not in STREAMING_REQUESTS:
            return await super().process(admitted.body, context)
        thread_id = admitted.params.get("thread_id")
        turn = self._answerer.new_turn()
        turn.creating = admitted.type == "threads.create"
        turn_context = context.for_turn(turn)
        result = await super().process(admitted.body, turn_context)
        if not isinstance(result, StreamingResult):
            return result
        leased = None if turn.creating else thread_id
        events = self._in_turn(result.json_events, leased, turn_context, turn)
        return TurnStreamingResult(events)

    async def _in_turn(
        self,
        events: AsyncGenerator[bytes, None],
        thread_id: str | None,
        context: RequestContext,
        turn: AnswerTurn,
    ) -> AsyncGenerator[bytes, None]:
        """The request's events as one turn (the outermost guard, see agent.stream_guards): the
        thread's lease is taken first (a thread busy with another turn gets an error event)
        and given back at the end, whatever happens.

        Storage failing once events have gone out ends the stream with an error event in
        words; before that, the error reaches the HTTP layer (a 503 or a 404)."""
        started = ended = False
        try:
            if thread_id is not None:
                try:
                    await self.store.begin_turn(thread_id, context)
                except ThreadBusyError as error:
                    telemetry.current().fail(failure_class(error), type(error).__name__)
                    busy = ErrorEvent(code="custom", message=BUSY_MESSAGE, allow_retry=True)
                    yield self._event(busy)
                    ended = True
                    return
            async for chunk in events:
                started = True
                yield chunk
            ended = True
        except (StoreUnavailableError, ThreadDeletedError, ThreadLeaseLostError) as error:
            if not started:
                raise
            telemetry.current().fail(failure_class(error), type(error).__name__)
            # Outside the answer, what a turn writes is the user's message (and attachments).
            message, allow_retry = not_saved("Your message", error)
            yield self._event(ErrorEvent(code="custom", message=message, allow_retry=allow_retry))
            ended = True
        finally:
            with anyio.CancelScope(shield=True):
                if turn.run is not None:
                    turn.run.cancel()  # a no-op once the run is complete
                if not ended and turn.held and turn.thread is not None:
                    # Closed while an answer was on its way out: the client left.
                    await self._keep_what_was_shown(turn.thread, context, [])
                await self.store.end_turn(context)
                await events.aclose()

    def _event(self, event: ThreadStreamEvent) -> bytes:
        return b"data: " + self._serialize(event) + b"\n\n"

    def _serialize(self, obj: BaseModel) -> bytes:
        """The SDK's serialization, with every created_at in UTC (see agent.utc)."""
        return super()._serialize(with_utc_times(obj))

    def _get_attachment_store(self) -> AttachmentStore[RequestContext]:
        if self.attachment_store is None:
            raise UploadsDisabledError("File uploads are not enabled on this server.")
        return self.attachment_store

    def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The agents' answer (see `Answerer.respond`)."""
        return self._answerer.respond(thread, input_user_message, context)

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: RequestContext
    ) -> None:
        """Keep what the client saw of the answer when it leaves (the SDK's behaviour, with
        exactly the text that reached the client), and title a new thread from its first
        message. Shielded: under Starlette the stream is cancelled by an anyio scope that
        would otherwise cancel these writes too."""
        with anyio.CancelScope(shield=True):
            await self._keep_what_was_shown(thread, context, pending_items)

    async def _keep_what_was_shown(
        self, thread: ThreadMetadata, context: RequestContext, pending_items: list[ThreadItem]
    ) -> None:
        """Once per turn: the partial answer as the client received it and the SDK's hidden
        note that the user stopped the answer, after a new thread's title and the specialist
        this turn handed to (see `Answerer.what_to_keep`)."""
        kept = await self._answerer.what_to_keep(thread, context, pending_items)
        if kept is not None:
            await super().handle_stream_cancelled(thread, kept, context)

    async def add_feedback(
        self,
        thread_id: str,
        item_ids: list[str],
        feedback: FeedbackKind,
        context: RequestContext,
    ) -> None:
        """Record the feedback on each named item; NotFoundError for an unknown item."""
        await self.store.save_feedback(thread_id, item_ids, feedback, context)
        logger.info(
            "feedback recorded",
            extra={"thread_id": thread_id, "item_ids": item_ids, "feedback": feedback},
        )

    async def transcribe(
        self, audio_input: AudioInput, context: RequestContext
    ) -> TranscriptionResult:
        """Dictation through the provider's transcription model.

        Raises TranscriptionUnavailableError when the provider has none.
        """
        if self.models.transcribe is None:
            raise TranscriptionUnavailableError(
                f"Dictation is not available with the {self.models.provider} model provider."
            )
        return TranscriptionResult(text=await self.models.transcribe(audio_input))

    def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Widget actions: the task list's buttons (see `Answerer.action`)."""
        return self._answerer.action(thread, action, sender, context)

    async def sync_action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: RequestContext,
    ) -> SyncCustomActionResponse:
        """The task list's buttons, answered synchronously with the re-rendered widget.

        Raises InvalidRequestError (a 400) for unknown actions or a bad payload.
        """
        updated: ThreadItem | None = None
        async for event in self.action(thread, action, sender, context):
            match event:
                case ErrorEvent():
                    raise InvalidRequestError(event.message or "The action failed.")
                case ThreadItemReplacedEvent():
                    await self.store.save_item(thread.id, event.item, context)
                    updated = event.item
                case ThreadItemDoneEvent():
                    await self.store.add_thread_item(thread.id, event.item, context)
                case _:
                    pass
        return SyncCustomActionResponse(updated_item=updated)


class TurnStreamingResult(StreamingResult):
    """A turn's stream, iterated as itself: closing the iterator closes the turn at once
    (the SDK's StreamingResult wraps its stream in another generator that nobody closes)."""

    def __aiter__(self) -> AsyncGenerator[bytes, None]:
        return self.json_events


STREAMING_REQUESTS = frozenset(
    {
        "threads.create",
        "threads.add_user_message",
        "threads.add_client_tool_output",
        "threads.add_structured_input",
        "threads.retry_after_item",
        "threads.custom_action",
    }
)
