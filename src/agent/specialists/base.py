"""What a specialist is: a name the user sees, a description triage routes by, instructions
and tools. `agent.assistant` turns each into an Agents SDK agent with its handoffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents import Tool


@dataclass(frozen=True)
class Specialist:
    """One specialist. `key` names its handoff tool (`transfer_to_<key>`) and is what the
    thread's metadata keeps to continue with it next turn: keep it stable."""

    key: str
    name: str
    description: str
    instructions: str
    tools: Sequence[Tool] = ()
