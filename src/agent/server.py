"""The ChatKit server: serves the whole protocol over the DynamoDB store with the task assistant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from agents import Runner
from agents.run import RunConfig
from chatkit.actions import Action
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import AttachmentStore
from chatkit.types import (
    AudioInput,
    CustomSummary,
    CustomTask,
    ErrorEvent,
    FeedbackKind,
    Page,
    SyncCustomActionResponse,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from pydantic import BaseModel

import telemetry
from agent.assistant import Team, build_titler
from agent.context import AssistantContext
from agent.converter import AssistantConverter, AttachmentReader
from agent.failures import BUSY_MESSAGE, describe_failure, failure_class, not_saved
from agent.providers import Models
from agent.request_checks import RequestChecks, TranscriptionUnavailableError
from agent.run_hooks import ANSWER_HOOKS, TITLE_HOOKS
from agent.stream_guards import AnswerStream, guarded_answer
from agent.tasks import handle_task_action
from agent.titles import generate_offline_title
from agent.turn import AnswerTurn
from agent.turn_store import TurnStore
from agent.utc import with_utc_times
from agent.widgets import TASK_ACTIONS
from errors import ClientRequestError, InvalidRequestError, error_event
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

TITLE_SECONDS = 10.0
MAX_TITLE_LENGTH = 80


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
        self.team = Team(models.chat, model_settings=models.chat_settings)
        self.titler = build_titler(models.title) if models.title is not None else None

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
        turn = AnswerTurn.answering_with(self.limits.max_turn_seconds, self._update_pending_items)
        turn.creating = admitted.type == "threads.create"
        turn_context = context.for_turn(turn)
        result = await super().process(admitted.body, turn_context)
        if not isinstance(result, StreamingResult):
            return result
        leased = None if turn.creating else thread_id
        return TurnStreamingResult(self._in_turn(result.json_events, leased, turn_context))

    async def _in_turn(
        self, events: AsyncGenerator[bytes, None], thread_id: str | None, context: RequestContext
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
                turn = context.turn
                if isinstance(turn, AnswerTurn):
                    if turn.run is not None:
                        turn.run.cancel()  # a no-op once the run is complete
                    if not ended and turn.held and turn.thread is not None:
                        # Closed while an answer was on its way out: the client left.
                        await self._keep_what_was_shown(turn.thread, context, [])
                await self.store.end_turn(context)
                await events.aclose()

    def _answer_turn(self, context: RequestContext) -> AnswerTurn:
        """The request's turn; a context made without one (a direct call) gets a fresh one."""
        if isinstance(context.turn, AnswerTurn):
            return context.turn
        return AnswerTurn.answering_with(60.0, self._update_pending_items)

    def _event(self, event: ThreadStreamEvent) -> bytes:
        return b"data: " + self._serialize(event) + b"\n\n"

    def _serialize(self, obj: BaseModel) -> bytes:
        """The SDK's serialization, with every created_at in UTC (see agent.utc)."""
        return super()._serialize(with_utc_times(obj))

    def _get_attachment_store(self) -> AttachmentStore[RequestContext]:
        if self.attachment_store is None:
            raise UploadsDisabledError("File uploads are not enabled on this server.")
        return self.attachment_store

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Answer with the agent, given the newest `history_items` items of the thread; its
        events pass the guards of agent.stream_guards, in the order that module gives."""
        history = await self._history(thread, input_user_message, context)
        record = telemetry.current()
        record.turn, record.history_items = True, len(history.data)
        converter = AssistantConverter(
            self.attachment_reader, context, self.request_limits.max_attachment_bytes_per_turn
        )
        agent_input = await converter.to_agent_input(history.data[::-1])
        turn = self._answer_turn(context)
        turn.thread = thread
        agent_context = self._agent_context(thread, input_user_message, history, context, turn)
        title = None
        if thread.title is None and input_user_message is not None:
            turn.first_message = _text_of(input_user_message)
            title = asyncio.create_task(self._title_for(input_user_message))

        run = Runner.run_streamed(
            self.team.starting_agent(thread),
            agent_input,
            context=agent_context,
            max_turns=self.limits.max_agent_turns,
            hooks=ANSWER_HOOKS,
            run_config=RunConfig(tracing_disabled=True),
        )
        turn.run = run
        answer = AnswerStream(
            self.store,
            thread,
            context,
            turn,
            max_seconds=self.limits.max_turn_seconds,
            title=title,
            unfinished=lambda: _unfinished_work(agent_context),
        )
        events = guarded_answer(
            agent_context,
            run,
            lambda: self.store.generate_item_id("message", thread, context),
            answer,
        )
        try:
            async for event in events:
                yield event
        except BaseException:
            if title is not None:
                title.cancel()
            raise
        finally:
            if not run.is_complete:
                run.cancel()

    def _agent_context(
        self,
        thread: ThreadMetadata,
        message: UserMessageItem | None,
        history: Page[ThreadItem],
        context: RequestContext,
        turn: AnswerTurn,
    ) -> AssistantContext:
        """The tools' view of the turn: its store, its tasks, what it answers, its effects."""
        return AssistantContext(
            thread=thread,
            store=TurnStore(self.store, thread.id, history),
            request_context=context,
            tasks=self.tasks,
            turn_key=_turn_key(message, history.data),
            effects=turn.effects,
            thread_updates=turn.thread_updates,
            files=[
                attachment
                for item in history.data
                if isinstance(item, UserMessageItem)
                for attachment in item.attachments
            ],
        )

    async def _history(
        self, thread: ThreadMetadata, message: UserMessageItem | None, context: RequestContext
    ) -> Page[ThreadItem]:
        """The newest `history_items` items, newest first. A thread this turn created holds
        just the message being answered: no need to read it back."""
        turn = context.turn
        if turn is not None and turn.created and message is not None:
            return Page(data=[message], has_more=False)
        try:
            return await self.store.load_thread_items(
                thread.id, None, self.limits.history_items, "desc", context
            )
        except StoreUnavailableError as error:
            words, allow_retry = describe_failure(error)
            raise CustomStreamError(words, allow_retry=allow_retry) from error

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
        """Once per turn: the partial answer as the client received it, a hidden note that
        the user stopped the answer (the SDK's), a title for a new thread, and the specialist
        this turn handed to."""
        turn = context.turn
        if isinstance(turn, AnswerTurn):
            if turn.kept:
                return
            turn.kept = True
            pending_items = list(turn.shown.partial_answers())
            metadata = turn.updated_metadata(thread)
            changed, thread.metadata = metadata != thread.metadata, metadata
            if thread.title is None and turn.first_message:
                thread.title = generate_offline_title(turn.first_message)
                changed = True
            if changed:
                await self.store.save_thread(thread, context)
        await super().handle_stream_cancelled(thread, pending_items, context)

    async def _title_for(self, message: UserMessageItem) -> str:
        """A short title: from the title model if there is one, else the first message cut short."""
        text = _text_of(message)
        fallback = generate_offline_title(text)
        if self.titler is None or not text.strip():
            return fallback
        try:
            async with asyncio.timeout(TITLE_SECONDS):
                result = await Runner.run(
                    self.titler,
                    text[:2000],
                    hooks=TITLE_HOOKS,
                    run_config=RunConfig(tracing_disabled=True),
                )
        except Exception as error:
            logger.warning("title generation failed: %s", type(error).__name__)
            return fallback
        title = str(result.final_output).strip().strip("\"'").strip()
        return title[:MAX_TITLE_LENGTH] if title else fallback

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

    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Widget actions: the task list's buttons (tasks.complete, tasks.reopen, tasks.delete)."""
        if action.type not in TASK_ACTIONS:
            yield ErrorEvent(code="custom", message=f"Unknown action {action.type!r}.")
            return
        events = handle_task_action(
            thread,
            action,
            sender,
            context,
            self.tasks,
            lambda item_type: self.store.generate_item_id(item_type, thread, context),
        )
        try:
            async for event in events:
                yield event
        except ClientRequestError as error:
            yield error_event(error)

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


def _turn_key(message: UserMessageItem | None, history: list[ThreadItem]) -> str | None:
    """What a turn answers: its user message (a retry answers the same one again)."""
    if message is not None:
        return message.id
    return next((item.id for item in history if isinstance(item, UserMessageItem)), None)


def _unfinished_work(context: AssistantContext) -> list[ThreadItem]:
    """The workflow the agent was showing when its answer stopped, its running steps marked
    as stopped: the user sees (and a reload shows) how far it got."""
    workflow = context.workflow_item
    if workflow is None:
        return []
    context.workflow_item = None
    tasks = [
        task.model_copy(update={"title": f"{task.title} (stopped)", "status_indicator": "none"})
        if isinstance(task, CustomTask) and task.status_indicator == "loading"
        else task
        for task in workflow.workflow.tasks
    ]
    stopped = workflow.workflow.model_copy(
        update={"tasks": tasks, "summary": CustomSummary(title="Stopped", icon="info")}
    )
    return [workflow.model_copy(update={"workflow": stopped})]


def _text_of(message: UserMessageItem) -> str:
    return " ".join(
        part.text for part in message.content if isinstance(part, UserMessageTextContent)
    )
