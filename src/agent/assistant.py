"""The agent that answers: a task assistant whose list of tasks is shown as a widget."""

from __future__ import annotations

from agents import Agent, Model

from agent.tasks import TASK_INSTRUCTIONS, TASK_TOOLS, TaskAgentContext

INSTRUCTIONS = f"""You are a helpful, concise assistant in a chat app.
Answer in plain, friendly sentences; use Markdown only when it helps.

{TASK_INSTRUCTIONS}
"""

TITLE_INSTRUCTIONS = """Write a short title (at most 6 words) for a conversation that starts
with the user's message below. Answer with the title only: no quotes, no final punctuation."""


def build_assistant(model: Model) -> Agent[TaskAgentContext]:
    """The task assistant, answering with `model`."""
    return Agent[TaskAgentContext](
        name="Task assistant", instructions=INSTRUCTIONS, tools=list(TASK_TOOLS), model=model
    )


def build_titler(model: Model) -> Agent[None]:
    """A tool-less agent that names a thread from its first message."""
    return Agent[None](name="Title writer", instructions=TITLE_INSTRUCTIONS, model=model)
