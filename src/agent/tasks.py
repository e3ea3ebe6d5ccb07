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
from chatkit.widgets import WidgetRoot

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

    async def add(agent: AssistantContext, step: Step) -> str:
        try:
            task, repeated = await _once(
                agent, "add_task", title, agent.tasks.add, agent.tasks.add_once
            )
        except ValueError as error:
            step.refused(f"Task not added: {error}")
            return f"Task not added: {error}."
        return _changed(agent, step, task, "added", repeated=repeated)

    return await _change(ctx.context, f"Adding “{_short(title)}”…", "plus", add)


@function_tool
async def list_tasks(ctx: RunContextWrapper[AssistantContext]) -> str:
    """Show the user's task list to the user as a widget (do not repeat it in your reply)."""
    agent = ctx.context
    async with tool_step(agent, "Reading your task list…", "notebook") as step:
        tasks = await agent.tasks.load_tasks(agent.request_context)
        step.done(f"Read your task list: {task_list_summary(tasks)}")
    # After the step: the widget ends the workflow it belongs to.
    identity = agent.request_context.identity
    await agent.stream_widget(_widget(tasks, identity), copy_text=task_list_copy_text(tasks))
    return _shown_to_user(tasks, identity)


@function_tool
async def complete_task(ctx: RunContextWrapper[AssistantContext], number: int) -> str:
    """Mark a task of the user's list as done.

    Args:
        number: The task's number (shown as "#n" in the list).
    """

    async def complete(agent: AssistantContext, step: Step) -> str:
        task = await agent.tasks.complete(number, agent.request_context)
        # Completing is idempotent: a retry finds it done and says the same.
        when = local_time(task.completed_at or task.created_at, agent.request_context.identity)
        return f"{_changed(agent, step, task, 'completed')} (done {when})"

    label = f"Completing task #{number}…"
    return await _change(ctx.context, label, "check", complete, number=number)


@function_tool
async def delete_task(ctx: RunContextWrapper[AssistantContext], number: int) -> str:
    """Delete a task from the user's list.

    Args:
        number: The task's number (shown as "#n" in the list).
    """

    async def delete(agent: AssistantContext, step: Step) -> str:
        task, repeated = await _once(
            agent, "delete_task", number, agent.tasks.delete, agent.tasks.delete_once
        )
        return _changed(agent, step, task, "deleted", repeated=repeated)

    label = f"Deleting task #{number}…"
    return await _change(ctx.context, label, "dot", delete, number=number)


async def _change(
    agent: AssistantContext,
    label: str,
    icon: str,
    change: Callable[[AssistantContext, Step], Awaitable[str]],
    *,
    number: int | None = None,
) -> str:
    """Run a `change` of the task list as a progress step, unless the user's role does not
    allow it; returns the tool's result, which says so when task `number` does not exist."""
    async with tool_step(agent, label, icon) as step:
        if not may_change_tasks(agent.request_context.identity):
            return _refused(agent, step)
        try:
            return await change(agent, step)
        except NotFoundError:
            if number is None:
                raise
            step.refused(f"Task #{number} does not exist")
            return f"Task {number} does not exist"


async def _once[T](
    agent: AssistantContext,
    tool: str,
    argument: T,
    plain: Callable[[T, RequestContext], Awaitable[TaskRecord]],
    once: Callable[[T, str, RequestContext], Awaitable[tuple[TaskRecord, bool]]],
) -> tuple[TaskRecord, bool]:
    """Run a change once per user message: with the message's key, a retry of the same message
    finds the first attempt's result (`True`: already done); without a key, plainly."""
    key = agent.once_key(tool, str(argument))
    if key is None:
        return await plain(argument, agent.request_context), False
    return await once(argument, key, agent.request_context)


def _changed(
    agent: AssistantContext, step: Step, task: TaskRecord, done: str, *, repeated: bool = False
) -> str:
    """Record that `task` was `done` (added, completed, deleted) in the step and the turn's
    effects; returns the tool's result. `repeated`: an earlier attempt at this message did it."""
    if repeated:
        step.done(f"Task #{task.number} “{task.title}” was already {done}")
        return (
            f"Task #{task.number}: {task.title} was already {done} by an earlier attempt at "
            f"this message; it was not {done} again."
        )
    agent.effects.append(f"{done} task #{task.number} “{task.title}”")
    step.done(f"{done.capitalize()} task #{task.number} “{task.title}”")
    return f"{done.capitalize()} task #{task.number}: {task.title}"


TASK_TOOLS = [add_task, list_tasks, complete_task, delete_task]


def _widget(tasks: Sequence[TaskRecord], identity: Identity) -> WidgetRoot:
    """The task list as `identity` sees it: its dates in the user's time zone, its buttons
    only for a role that may change tasks."""
    return task_list_widget(
        tasks, lambda moment: local_time(moment, identity), may_change_tasks(identity)
    )


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
    yield ThreadItemReplacedEvent(
        item=sender.model_copy(
            update={
                "widget": _widget(fresh, context.identity),
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
