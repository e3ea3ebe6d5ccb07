"""Tool work the user can see: each tool call is a task in the turn's workflow, shown while it
runs ("Adding “buy milk”…") and replaced by what it did when it ends. The workflow is a thread
item, stored with the thread like the answer (see agent.turn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from chatkit.agents import AgentContext
from chatkit.icons import IconName
from chatkit.types import CustomTask


@dataclass
class Step:
    """One tool call's task: `done` says what it did, `refused` why it did nothing."""

    title: str
    icon: IconName | None = None
    failed: bool = False

    def done(self, title: str) -> None:
        self.title = title

    def refused(self, title: str) -> None:
        self.title = title
        self.failed = True


@asynccontextmanager
async def tool_step(
    context: AgentContext[Any], running: str, icon: IconName | None = None
) -> AsyncIterator[Step]:
    """Show `running` as a loading task of the turn's workflow for the duration of the block;
    the task then shows the step's final title. A block that raises leaves "… failed"."""
    task = CustomTask(title=running, icon=icon, status_indicator="loading")
    await context.add_workflow_task(task)
    index = _index_of(context, task)
    step = Step(running.rstrip("…."), icon)
    try:
        yield step
    except BaseException:
        step.refused(f"{step.title} failed")
        raise
    finally:
        finished = CustomTask(
            title=step.title,
            icon="info" if step.failed else (icon or "check"),
            status_indicator="complete",
        )
        if context.workflow_item is not None and index is not None:
            await context.update_workflow_task(finished, index)


async def show_step(context: AgentContext[Any], title: str, icon: IconName) -> None:
    """A finished task in the turn's workflow (a handoff, say)."""
    await context.add_workflow_task(CustomTask(title=title, icon=icon, status_indicator="complete"))


def _index_of(context: AgentContext[Any], task: CustomTask) -> int | None:
    workflow = context.workflow_item
    if workflow is None:
        return None
    tasks = workflow.workflow.tasks
    return next((i for i, t in enumerate(tasks) if t is task), None)
