"""The general assistant: everything no other specialist is for."""

from __future__ import annotations

from agent.specialists.base import Specialist

SPECIALIST = Specialist(
    key="general",
    name="General assistant",
    description="Anything else: questions, explanations, writing help, small talk.",
    instructions="""\
You answer general questions and help with writing, briefly and accurately. You cannot see \
the user's task list or files: for those, hand the conversation back to triage.""",
)
