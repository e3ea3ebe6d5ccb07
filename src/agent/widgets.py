"""The widgets the task assistant shows: the task list, whose buttons are widget actions.

The layout lives in `templates/task_list.widget` beside this module (a ChatKit widget template,
editable in https://widgets.chatkit.studio); this module prepares its data: counts, labels and
the actions each button sends to `ChatKitServer.action()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from chatkit.actions import ActionConfig
from chatkit.widgets import WidgetRoot, WidgetTemplate

from store.tasks import TaskRecord

TASK_LIST_KEY = "task_list"  # the root's key: marks a widget item as a task list
COMPLETE_ACTION = "tasks.complete"
REOPEN_ACTION = "tasks.reopen"
DELETE_ACTION = "tasks.delete"
TASK_ACTIONS = frozenset({COMPLETE_ACTION, REOPEN_ACTION, DELETE_ACTION})
EMPTY_TEXT = "No tasks yet — ask me to add one."

_TEMPLATE_FILE = Path(__file__).parent / "templates" / "task_list.widget"


def task_list_widget(
    tasks: Sequence[TaskRecord],
    when: Callable[[datetime], str] | None = None,
    can_change: bool = True,
) -> WidgetRoot:
    """A card with the count header, one row per task (number, title, state, buttons, and
    when it was added or done, written by `when`: in the user's time zone).

    When `can_change` (the user's role may change tasks), an open task offers "Complete"
    (`tasks.complete`), a done one "Reopen" (`tasks.reopen`); every task offers "Delete"
    (`tasks.delete`). Each action's payload is `{"number": n}`. Otherwise: no buttons.
    """
    return _task_list_template().build(
        {
            "key": TASK_LIST_KEY,
            "summary": task_list_summary(tasks),
            "empty_text": EMPTY_TEXT,
            "tasks": [_row(task, when) for task in tasks],
            "can_change": can_change,
        }
    )


def task_list_summary(tasks: Sequence[TaskRecord]) -> str:
    """The header line, e.g. "3 tasks, 1 done"."""
    done = sum(1 for task in tasks if task.done)
    noun = "task" if len(tasks) == 1 else "tasks"
    return f"{len(tasks)} {noun}, {done} done"


def task_list_copy_text(tasks: Sequence[TaskRecord]) -> str:
    """The list as plain text, for the widget's copy button."""
    if not tasks:
        return EMPTY_TEXT
    lines = [f"#{task.number} [{'x' if task.done else ' '}] {task.title}" for task in tasks]
    return "\n".join([task_list_summary(tasks), *lines])


def task_action(action_type: str, number: int) -> ActionConfig:
    """The server action a task button sends: `action_type` with payload `{"number": number}`."""
    return ActionConfig(type=action_type, payload={"number": number})


def _row(task: TaskRecord, when: Callable[[datetime], str] | None) -> dict[str, Any]:
    toggle = REOPEN_ACTION if task.done else COMPLETE_ACTION
    moment = task.completed_at if task.done and task.completed_at else task.created_at
    return {
        "when": f"{'Done' if task.done else 'Added'} {when(moment)}" if when else "",
        "key": f"task-{task.number}",
        "label": f"#{task.number}",
        "title": task.title,
        "done": task.done,
        "toggle_label": "Reopen" if task.done else "Complete",
        "toggle_action": task_action(toggle, task.number).model_dump(),
        "delete_action": task_action(DELETE_ACTION, task.number).model_dump(),
    }


@cache
def _task_list_template() -> WidgetTemplate:
    # Loaded on first use (not at import) and by absolute path: from_file would otherwise
    # inspect the call stack to resolve a relative one.
    return WidgetTemplate.from_file(str(_TEMPLATE_FILE))
