"""What the agents and their tools see of a turn: chatkit's agent context, plus the user's
tasks, what the turn answers and what its tools changed."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from chatkit.agents import AgentContext
from chatkit.types import Attachment
from pydantic import ConfigDict, Field, SkipValidation

from store.context import RequestContext
from store.tasks import TaskStore


class AssistantContext(AgentContext[RequestContext]):
    """chatkit's agent context for one turn, plus the store of the user's tasks.

    `turn_key` names what the turn answers (its user message): a tool changes a task at most
    once per turn key, so a retry of the same message does not repeat it. `effects` collects
    what the tools changed, in words, for an error message to say truthfully.
    `files` are the attachments of the turn's history, newest first.
    `thread_updates` are changes to the thread's metadata (the specialist answering), saved
    with the turn's last write.
    """

    # Built with the first turn, not at import: requests that run no turn never need it.
    model_config = ConfigDict(defer_build=True)

    tasks: Annotated[TaskStore, SkipValidation]
    turn_key: str | None = None
    effects: Annotated[list[str], SkipValidation] = Field(default_factory=list)
    calls: Annotated[Counter[str], SkipValidation] = Field(default_factory=Counter)
    files: Annotated[list[Attachment], SkipValidation] = Field(default_factory=list)
    thread_updates: Annotated[dict[str, Any], SkipValidation] = Field(default_factory=dict)

    def once_key(self, tool: str, argument: str) -> str | None:
        """The key of this call: the turn, the tool, its argument, and which identical call of
        the turn it is (a deliberate second identical call is a second change)."""
        if self.turn_key is None:
            return None
        call = f"{tool}:{argument.strip().casefold()}"
        self.calls[call] += 1
        return f"{self.turn_key}:{call}:{self.calls[call]}"
