"""The ChatKit server: serves the whole protocol over the DynamoDB store with the task assistant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import anyio
from agents import Runner, RunResultStreaming
from agents.models.fake_id import FAKE_RESPONSES_ID
from agents.run import RunConfig
from chatkit.actions import Action
from chatkit.agents import stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import AttachmentStore, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    AudioInput,
    ErrorEvent,
    FeedbackKind,
    Page,
    SyncCustomActionResponse,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)

from agent.assistant import build_assistant, build_titler
from agent.converter import AssistantConverter, AttachmentReader
from agent.failures import describe_failure
from agent.offline_model import generate_offline_title
from agent.providers import Models
from agent.request_checks import RequestChecks, TranscriptionUnavailableError
from agent.tasks import TaskAgentContext, handle_task_action
from agent.widgets import TASK_ACTIONS
from errors import ClientRequestError, InvalidRequestError, error_event
from settings import RequestLimits
from store import DynamoDBStore, RequestContext
from store.quota import TurnQuota
from store.tasks import TaskStore

logger = logging.getLogger(__name__)

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
        self.agent = build_assistant(models.chat)
        self.titler = build_titler(models.title) if models.title is not None else None

    async def process(
        self, request: str | bytes | bytearray, context: RequestContext
    ) -> StreamingResult | NonStreamingResult:
        """The SDK's dispatch, once `RequestChecks` admitted the request: a refused request
        (ClientRequestError, NotFoundError) has written nothing."""
        body = await self.checks.admit(request, context)
        return await super().process(body, context)

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
        """Answer with the agent, given the newest `history_items` items of the thread."""
        history = await self.store.load_thread_items(
            thread.id, None, self.limits.history_items, "desc", context
        )
        converter = AssistantConverter(
            self.attachment_reader, context, self.request_limits.max_attachment_bytes_per_turn
        )
        agent_input = await converter.to_agent_input(history.data[::-1])
        agent_context = TaskAgentContext(
            thread=thread,
            store=cast(Store[RequestContext], _TurnStore(self.store, thread.id, history)),
            request_context=context,
            tasks=self.tasks,
        )
        title = None
        if thread.title is None and input_user_message is not None:
            title = asyncio.create_task(self._title_for(input_user_message))

        run = Runner.run_streamed(
            self.agent,
            agent_input,
            context=agent_context,
            max_turns=self.limits.max_agent_turns,
            run_config=RunConfig(tracing_disabled=True),
        )
        events = _with_real_ids(
            stream_agent_response(agent_context, run),
            lambda: self.store.generate_item_id("message", thread, context),
        )
        try:
            async for event in self._bounded(events, run):
                yield event
        except BaseException:
            if title is not None:
                title.cancel()
            raise
        finally:
            if not run.is_complete:
                run.cancel()
        if title is not None:
            # The SDK saves the changed thread and sends thread.updated.
            thread.title = await title

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: RequestContext
    ) -> None:
        """Keep the partial answer when the client leaves (the SDK's behaviour), shielded:
        under Starlette the stream is cancelled by an anyio scope that would otherwise
        cancel these writes too."""
        with anyio.CancelScope(shield=True):
            await super().handle_stream_cancelled(thread, pending_items, context)

    async def _bounded(
        self, events: AsyncIterator[ThreadStreamEvent], run: RunResultStreaming
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Pass the events on until the time limit; end failures and timeouts cleanly.

        On a failure, items still being written are removed and an error event says what
        happened. On the time limit, the partial answer is kept and the error says so.
        """
        pending: dict[str, AssistantMessageItem] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.max_turn_seconds
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if loop.time() < deadline:
                    raise
                run.cancel()
                for item in pending.values():
                    if any(part.text.strip() for part in item.content):
                        yield ThreadItemDoneEvent(item=item)
                    else:
                        yield ThreadItemRemovedEvent(item_id=item.id)
                seconds = f"{self.limits.max_turn_seconds:g}"
                yield ErrorEvent(
                    code="custom",
                    message=f"The answer took longer than {seconds} seconds and was stopped.",
                    allow_retry=True,
                )
                return
            except (CustomStreamError, asyncio.CancelledError):
                raise
            except Exception as error:
                message, allow_retry = describe_failure(error)
                logger.warning("answer failed: %s", type(error).__name__, exc_info=error)
                for item_id in pending:
                    yield ThreadItemRemovedEvent(item_id=item_id)
                raise CustomStreamError(message, allow_retry=allow_retry) from error
            _track(pending, event)
            yield event

    async def _title_for(self, message: UserMessageItem) -> str:
        """A short title: from the title model if there is one, else the first message cut short."""
        text = " ".join(
            part.text for part in message.content if isinstance(part, UserMessageTextContent)
        )
        fallback = generate_offline_title(text)
        if self.titler is None or not text.strip():
            return fallback
        try:
            async with asyncio.timeout(TITLE_SECONDS):
                result = await Runner.run(
                    self.titler, text[:2000], run_config=RunConfig(tracing_disabled=True)
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


class _TurnStore:
    """The store, except that the SDK's look at the newest items when a turn starts is
    answered from the history `respond` just loaded (one Query fewer per turn)."""

    def __init__(self, store: DynamoDBStore, thread_id: str, history: Page[ThreadItem]) -> None:
        self._store = store
        self._thread_id = thread_id
        self._history: Page[ThreadItem] | None = history

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: RequestContext
    ) -> Page[ThreadItem]:
        history, self._history = self._history, None  # only the first call: later ones are fresh
        if (
            history is not None
            and thread_id == self._thread_id
            and after is None
            and order == "desc"
            and (limit <= len(history.data) or not history.has_more)
        ):
            data = history.data[:limit]
            has_more = len(history.data) > limit or history.has_more
            return Page(data=data, has_more=has_more, after=data[-1].id if has_more else None)
        return await self._store.load_thread_items(thread_id, after, limit, order, context)


def _track(pending: dict[str, AssistantMessageItem], event: ThreadStreamEvent) -> None:
    """Follow assistant messages still being written, to finish or remove them on failure."""
    match event:
        case ThreadItemAddedEvent(item=AssistantMessageItem() as item):
            pending[item.id] = item.model_copy(deep=True)
        case ThreadItemUpdatedEvent(item_id=item_id, update=update) if item_id in pending:
            content = pending[item_id].content
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
            pending.pop(item.id, None)
        case ThreadItemRemovedEvent(item_id=item_id):
            pending.pop(item_id, None)
        case _:
            pass


async def _with_real_ids(
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
