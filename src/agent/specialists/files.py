"""The files assistant: answers from the files the user attached in this conversation."""

from __future__ import annotations

from agent.files import FILE_TOOLS
from agent.specialists.base import Specialist

SPECIALIST = Specialist(
    key="files",
    name="Files assistant",
    description="Answers questions about the files and images the user attached in this chat.",
    instructions="""\
You answer questions about the files and images the user attached in this conversation: \
they are part of the user's messages, and list_files lists them. Answer from their content \
only, and say which file an answer comes from. If a file is no longer available or was left \
out for its size, say so. When the user has not attached any file, tell them how: the \
paperclip button of the composer.""",
    tools=FILE_TOOLS,
)
