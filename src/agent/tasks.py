"""The task assistant's tools, its instructions, and the handler for its widget's buttons.

The model changes tasks through the four function tools; the user changes them through the
task list widget, whose button actions the server passes to `handle_task_action`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from agents import RunContextWrapper, function_tool
from chatkit.actions import Action
from chatkit.store import NotFoundError, StoreItemType
from chatkit.types import (
    ErrorEvent,
    HiddenContextItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    WidgetItem,
)

from agent.context import AssistantContext
from agent.identity import local_time
from agent.progress import Step, tool_step
from agent.roles import may_change_tasks, refusal
from agent.widgets import (
    COMPLETE_ACTION,
    DELETE_ACTION,
    REOPEN_ACTION,
    TASK_ACTIONS,
    TASK_LIST_KEY,
    task_list_copy_text,
    task_list_summary,
    task_list_widget,
)
from store.context import Identity, RequestContext
from store.tasks import TaskRecord, TaskStore

__all__ = [
    "TASK_ACTIONS",
    "TASK_INSTRUCTIONS",
    "TASK_TOOLS",
    "add_task",
    "complete_task",
    "delete_task",
    "handle_task_action",
    "list_tasks",
]

TASK_INSTRUCTIONS = """\
You are a task assistant. You keep the user's task list, only through these tools:
- add_task(title): add one task per call, with a short title in the user's words.
- list_tasks(): show the list. It displays a widget with every task and buttons to complete, \
reopen and delete them. Never write the task list yourself (no bullet points, tables or \
numbered lists of tasks), not even after calling list_tasks: the widget already shows it.
- complete_task(number) and delete_task(number): `number` is the task number shown as "#n", \
not a position in the list. When you are not sure which task the user means, call list_tasks \
(its result tells you the numbers) or ask.
Tool results are the truth: never invent tasks or numbers. Numbers are never reused.
After a change, confirm it in one short sentence. The user can also use the widget's buttons; \
you will find what they did in hidden context."""


@function_tool
async def add_task(ctx: RunContextWrapper[AssistantContext], title: str) -> str:
    """Add a task to the user's task list.

    Args:
        title: What the task is, in a few words (1-200 characters).
    """
    agent = ctx.context
    async with tool_step(agent, f"Adding “{_short(title)}”…", "plus") as step:
        if not may_change_tasks(agent.request_context.identity):
            return _refused(agent, step)
        context = agent.request_context
        try:
            task, repeated = await _once(
                agent.once_key("add_task", title),
                lambda: agent.tasks.add(title, context),
                lambda key: agent.tasks.add_once(title, key, context),
            )
        except ValueError as error:
            step.refused(f"Task not added: {error}")
            return f"Task not added: {error}."
        if repeated:
            step.done(f"Task #{task.number} “{task.title}” was already added")
            return (
                f"Task #{task.number}: {task.title} was already added by an earlier attempt at "
                "this message; it was not added again."
            )
        agent.effects.append(f"added task #{task.number} “{task.title}”")
        step.done(f"Added task #{task.number} “{task.title}”")
        return f"Added task #{task.number}: {task.title}"


@function_tool
async def list_tasks(ctx: RunContextWrapper[AssistantContext]) -> str:
    """Show the user's task list to the user as a widget (do not repeat it in your reply)."""
    agent = ctx.context
    async with tool_step(agent, "Reading your task list…", "notebook") as step:
        tasks = await agent.tasks.load_tasks(agent.request_context)
        step.done(f"Read your task list: {task_list_summary(tasks)}")
    # After the step: the widget ends the workflow it belongs to.
    identity = agent.request_context.identity
    widget = task_list_widget(tasks, lambda moment: local_time(moment, identity))
    await agent.stream_widget(widget, copy_text=task_list_copy_text(tasks))
    return _shown_to_user(tasks, identity)


@function_tool
async def complete_task(ctx: RunContextWrapper[AssistantContext], number: int) -> str:
    """Mark a task of the user's list as done.

    Args:
        number: The task's number (shown as "#n" in the list).
    """
    agent = ctx.context
    async with tool_step(agent, f"Completing task #{number}…", "check") as step:
        if not may_change_tasks(agent.request_context.identity):
            return _refused(agent, step)
        try:
            task = await agent.tasks.complete(number, agent.request_context)
        except NotFoundError:
            step.refused(f"Task #{number} does not exist")
            return f"Task {number} does not exist"
        # Completing is idempotent: a retry finds it done and says the same.
        agent.effects.append(f"completed task #{task.number} “{task.title}”")
        step.done(f"Completed task #{task.number} “{task.title}”")
        when = local_time(task.completed_at or task.created_at, agent.request_context.identity)
        return f"Completed task #{task.number}: {task.title} (done {when})"


@function_tool
async def delete_task(ctx: RunContextWrapper[AssistantContext], number: int) -> str:
    """Delete a task from the user's list.

    Args:
        number: The task's number (shown as "#n" in the list).
    """
    agent = ctx.context
    async with tool_step(agent, f"Deleting task #{number}…", "dot") as step:
        if not may_change_tasks(agent.request_context.identity):
            return _refused(agent, step)
        context = agent.request_context
        try:
            task, repeated = await _once(
                agent.once_key("delete_task", str(number)),
                lambda: agent.tasks.delete(number, context),
                lambda key: agent.tasks.delete_once(number, key, context),
            )
        except NotFoundError:
            step.refused(f"Task #{number} does not exist")
            return f"Task {number} does not exist"
        if repeated:
            step.done(f"Task #{task.number} “{task.title}” was already deleted")
            return (
                f"Task #{task.number}: {task.title} was already deleted by an earlier attempt at "
                "this message."
            )
        agent.effects.append(f"deleted task #{task.number} “{task.title}”")
        step.done(f"Deleted task #{task.number} “{task.title}”")
        return f"Deleted task #{task.number}: {task.title}"


async def _once(
    key: str | None,
    plain: Callable[[], Awaitable[TaskRecord]],
    once: Callable[[str], Awaitable[tuple[TaskRecord, bool]]],
) -> tuple[TaskRecord, bool]:
    """Run a change once per user message: with the message's key, a retry of the same message
    finds the first attempt's result (`True`: already done); without a key, plainly."""
    if key is None:
        return await plain(), False
    return await once(key)


TASK_TOOLS = [add_task, list_tasks, complete_task, delete_task]


async def handle_task_action(
    thread: ThreadMetadata,
    action: Action[str, Any],
    sender: WidgetItem | None,
    context: RequestContext,
    tasks: TaskStore,
    generate_item_id: Callable[[StoreItemType], str],
) -> AsyncIterator[ThreadStreamEvent]:
    """Apply a task list button (`tasks.complete`, `tasks.reopen`, `tasks.delete`).

    Yields the sender re-rendered from the fresh list, in place (ThreadItemReplacedEvent: same
    id, same created_at), then a HiddenContextItem telling the model what the user did
    (ThreadItemDoneEvent: ChatKitServer stores it and never sends it to the client). A task
    that no longer exists still re-renders the widget; the hidden context says so.
    An unknown action type, a sender that is not a task list widget, or a payload without a
    positive integer `number` yields a single ErrorEvent and changes nothing.
    """
    if action.type not in TASK_ACTIONS:
        yield _error(f"Unknown task action {action.type!r}.")
        return
    if sender is None or sender.widget.key != TASK_LIST_KEY:
        yield _error("Task actions only work from the task list widget.")
        return
    number = _task_number(action.payload)
    if number is None:
        yield _error('A task action needs the payload {"number": <positive integer>}.')
        return
    if not may_change_tasks(context.identity):
        yield _error(f"{refusal(context.identity)}.")
        return

    task: TaskRecord | None
    try:
        task = await _apply(action.type, number, tasks, context)
    except NotFoundError:
        task = None

    fresh = await tasks.load_tasks(context)
    identity = context.identity
    yield ThreadItemReplacedEvent(
        item=sender.model_copy(
            update={
                "widget": task_list_widget(fresh, lambda moment: local_time(moment, identity)),
                "copy_text": task_list_copy_text(fresh),
            }
        )
    )
    yield ThreadItemDoneEvent(
        item=HiddenContextItem(
            id=generate_item_id("message"),
            thread_id=thread.id,
            created_at=datetime.now(UTC),
            content=_what_the_user_did(action.type, number, task),
        )
    )


def _refused(agent: AssistantContext, step: Step) -> str:
    """A change the user's role does not allow: the step and the model both say why."""
    reason = refusal(agent.request_context.identity)
    step.refused(reason)
    return f"{reason}. Nothing was changed."


def _short(title: str) -> str:
    """A title as a progress line quotes it: one line, at most 60 characters."""
    title = " ".join(title.split())
    return title if len(title) <= 60 else title[:59] + "…"


def _shown_to_user(tasks: Sequence[TaskRecord], identity: Identity) -> str:
    if not tasks:
        return (
            "The user's task list is empty; it is now shown to the user as a widget. "
            "Do not repeat it."
        )
    reference = "; ".join(
        f"#{task.number} {task.title} ({'done' if task.done else 'open'}, added "
        f"{local_time(task.created_at, identity)})"
        for task in tasks
    )
    return (
        f"The task list ({task_list_summary(tasks)}) is now shown to the user as a widget. "
        "Do not repeat or reformat it in your reply. "
        f"For your reference only: {reference}"
    )


async def _apply(
    action_type: str, number: int, tasks: TaskStore, context: RequestContext
) -> TaskRecord:
    if action_type == COMPLETE_ACTION:
        return await tasks.complete(number, context)
    if action_type == REOPEN_ACTION:
        return await tasks.reopen(number, context)
    return await tasks.delete(number, context)


def _task_number(payload: object) -> int | None:
    """The payload's `number` if it is a positive int (payloads come from the client)."""
    if not isinstance(payload, dict):
        return None
    number = payload.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        return None
    return number


_DID = {
    COMPLETE_ACTION: "marked task #{number} '{title}' as done",
    REOPEN_ACTION: "reopened task #{number} '{title}'",
    DELETE_ACTION: "deleted task #{number} '{title}'",
}
_TRIED = {COMPLETE_ACTION: "complete", REOPEN_ACTION: "reopen", DELETE_ACTION: "delete"}


def _what_the_user_did(action_type: str, number: int, task: TaskRecord | None) -> str:
    if task is None:
        return (
            f"The user tried to {_TRIED[action_type]} task #{number} via the widget, "
            "but it no longer exists."
        )
    did = _DID[action_type].format(number=task.number, title=task.title)
    return f"The user {did} via the widget."


def _error(message: str) -> ErrorEvent:
    return ErrorEvent(code="custom", message=message, allow_retry=False)
