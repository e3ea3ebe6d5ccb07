"""What answers a turn: the agents' run over the thread's history, the thread's title, what is
kept of an answer its client left, and the task list's buttons.

`AssistantServer` imports this module on its first turn, not at init: the agents, their tools'
schemas and chatkit's agent helpers are a large share of our own import time, and an instance
whose first requests are not turns (the ChatKit UI opening: threads.list, threads.get_by_id,
items.list) starts faster without them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from agents import Runner
from agents.run import RunConfig
from chatkit.actions import Action
from chatkit.errors import CustomStreamError
from chatkit.types import (
    CustomSummary,
    CustomTask,
    ErrorEvent,
    Page,
    ThreadItem,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)

import telemetry
from agent.assistant import Team, build_titler
from agent.context import AssistantContext
from agent.converter import AssistantConverter, AttachmentReader
from agent.failures import describe_failure
from agent.providers import Models
from agent.run_hooks import ANSWER_HOOKS, TITLE_HOOKS
from agent.stream_guards import AnswerStream, ApplyUpdate, guarded_answer
from agent.tasks import handle_task_action
from agent.titles import generate_offline_title
from agent.turn import AnswerTurn
from agent.turn_store import TurnStore
from agent.widgets import TASK_ACTIONS
from errors import ClientRequestError, error_event
from logs import logger
from store import DynamoDBStore, RequestContext, StoreUnavailableError
from store.tasks import TaskStore

if TYPE_CHECKING:
    from agent.server import TurnLimits

TITLE_SECONDS = 10.0
MAX_TITLE_LENGTH = 80


class Answerer:
    """The server's turns: triage and its specialists, and the title writer, built once."""

    def __init__(
        self,
        store: DynamoDBStore,
        tasks: TaskStore,
        models: Models,
        limits: TurnLimits,
        *,
        attachment_reader: AttachmentReader | None,
        max_attachment_bytes: int,
        apply_update: ApplyUpdate,
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.limits = limits
        self.attachment_reader = attachment_reader
        self.max_attachment_bytes = max_attachment_bytes
        self.apply_update = apply_update
        self.team = Team(models.chat, model_settings=models.chat_settings)
        self.titler = build_titler(models.title) if models.title is not None else None

    def new_turn(self) -> AnswerTurn:
        """A turn bounded by the server's `max_turn_seconds`."""
        return AnswerTurn.answering_with(self.limits.max_turn_seconds, self.apply_update)

    def _turn_of(self, context: RequestContext) -> AnswerTurn:
        """The request's turn; a context made without one (a direct call) gets a fresh one."""
        if isinstance(context.turn, AnswerTurn):
            return context.turn
        return AnswerTurn.answering_with(60.0, self.apply_update)

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
        converter = AssistantConverter(self.attachment_reader, context, self.max_attachment_bytes)
        agent_input = await converter.to_agent_input(history.data[::-1])
        turn = self._turn_of(context)
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

    async def what_to_keep(
        self, thread: ThreadMetadata, context: RequestContext, pending_items: list[ThreadItem]
    ) -> list[ThreadItem] | None:
        """What to keep of an answer its client left, once per turn (None: kept already): the
        partial answers as the client received them. First, a new thread is titled from its
        first message and the thread keeps the specialist this turn handed to."""
        turn = context.turn
        if not isinstance(turn, AnswerTurn):
            return pending_items
        if turn.kept:
            return None
        turn.kept = True
        shown: list[ThreadItem] = list(turn.shown.partial_answers())
        metadata = turn.updated_metadata(thread)
        changed, thread.metadata = metadata != thread.metadata, metadata
        if thread.title is None and turn.first_message:
            thread.title = generate_offline_title(turn.first_message)
            changed = True
        if changed:
            await self.store.save_thread(thread, context)
        return shown

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
