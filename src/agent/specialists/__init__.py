"""The specialists triage hands conversations to. Adding one: a module with a `SPECIALIST`
and a line below (the first one whose description fits is the one triage prefers)."""

from __future__ import annotations

from agent.specialists import files, general, tasks
from agent.specialists.base import Specialist

SPECIALISTS: tuple[Specialist, ...] = (
    tasks.SPECIALIST,
    files.SPECIALIST,
    general.SPECIALIST,
)

__all__ = ["SPECIALISTS", "Specialist"]
