"""The task assistant: keeps the user's numbered task list, shown as a widget."""

from __future__ import annotations

from agent.specialists.base import Specialist
from agent.tasks import TASK_INSTRUCTIONS, TASK_TOOLS

SPECIALIST = Specialist(
    key="tasks",
    name="Task assistant",
    description="Adds, lists, completes and deletes tasks on the user's to-do list.",
    instructions=TASK_INSTRUCTIONS,
    tools=TASK_TOOLS,
)
