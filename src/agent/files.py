"""The files assistant's tool: the files the user attached in the conversation's recent
history (what the model also receives as input), listed with their type and size."""

from __future__ import annotations

from typing import Any

from agents import RunContextWrapper, function_tool

from agent.context import AssistantContext
from agent.progress import tool_step


@function_tool
async def list_files(ctx: RunContextWrapper[AssistantContext]) -> str:
    """List the files and images the user attached in this conversation, newest first."""
    agent = ctx.context
    async with tool_step(agent, "Looking through the files of this chat…", "document") as step:
        files = agent.files
        count = len(files)
        step.done(f"Found {count} file{'' if count == 1 else 's'}" if files else "Found no files")
    if not files:
        return "The user has attached no files in this conversation."
    lines = [f"- {file.name} ({file.mime_type}{_size(file.metadata)})" for file in files]
    return "Files attached in this conversation, newest first:\n" + "\n".join(lines)


FILE_TOOLS = [list_files]


def _size(metadata: dict[str, Any] | None) -> str:
    size = (metadata or {}).get("size")
    return f", {size} bytes" if isinstance(size, int) else ""
