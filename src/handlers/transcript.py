"""A conversation as it leaves the widget: its summary, its items as JSON, a Markdown transcript.

What the ChatKit endpoint would show is what is exported: hidden context items stay out,
attachment metadata and thread metadata never leave, and every time is in UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any

from chatkit.types import (
    AssistantMessageItem,
    Attachment,
    ClientToolCallItem,
    CustomSummary,
    EndOfTurnItem,
    FileTask,
    GeneratedImageItem,
    HiddenContextItem,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputItem,
    Task,
    TaskItem,
    ThreadItem,
    ThreadMetadata,
    ThreadStatus,
    UserMessageItem,
    UserMessageTagContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from pydantic import BaseModel, Field

from agent.utc import utc

EXPORT_FORMAT = "chatkit-lambda.conversation.v1"
UNTITLED = "Untitled conversation"
# Widget components whose text a transcript shows, and the field holding it.
WIDGET_TEXT_FIELDS = {
    "Title": "value",
    "Text": "value",
    "Caption": "value",
    "Markdown": "value",
    "Label": "value",
    "Badge": "label",
}
FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

ItemPages = AsyncIterable[Sequence[ThreadItem]]


class Conversation(BaseModel):
    """A conversation (a ChatKit thread) without its items."""

    id: str
    title: str | None = Field(description="null until the first answer names the conversation")
    created_at: datetime = Field(description="when the conversation started, in UTC")
    status: ThreadStatus = Field(description="active, locked or closed, as the widget shows it")


def conversation_of(thread: ThreadMetadata) -> Conversation:
    """The conversation as served: no thread metadata, created_at in UTC."""
    return Conversation(
        id=thread.id, title=thread.title, created_at=utc(thread.created_at), status=thread.status
    )


def is_shown(item: ThreadItem) -> bool:
    """Whether the widget would show the item (hidden context never leaves the server)."""
    return not isinstance(item, HiddenContextItem | SDKHiddenContextItem)


def shown_items(items: Sequence[ThreadItem]) -> list[ThreadItem]:
    return [item for item in items if is_shown(item)]


def item_json(item: ThreadItem) -> dict[str, Any]:
    """The item as the ChatKit endpoint serves it: no attachment metadata, no nulls, UTC."""
    stamped = item.model_copy(update={"created_at": utc(item.created_at)})
    dumped: dict[str, Any] = stamped.model_dump(
        mode="json", by_alias=True, exclude_none=True, context={"exclude_metadata": True}
    )
    return dumped


async def json_export(conversation: Conversation, pages: ItemPages) -> AsyncIterator[bytes]:
    """The conversation and every shown item as one JSON document, written page by page:
    `{"format", "conversation", "items": [...]}`."""
    head = conversation.model_dump_json()
    yield f'{{"format": "{EXPORT_FORMAT}", "conversation": {head}, "items": ['.encode()
    separator = ""
    async for page in pages:
        parts = [json.dumps(item_json(item), ensure_ascii=False) for item in shown_items(page)]
        if parts:
            yield (separator + ", ".join(parts)).encode()
            separator = ", "
    yield b"]}\n"


async def markdown_export(conversation: Conversation, pages: ItemPages) -> AsyncIterator[bytes]:
    """The conversation as a Markdown transcript, written page by page."""
    yield markdown_heading(conversation).encode()
    async for page in pages:
        text = "".join(item_markdown(item) for item in page)
        if text:
            yield text.encode()


def markdown_heading(conversation: Conversation) -> str:
    title = conversation.title or UNTITLED
    started = _when(conversation.created_at)
    return f"# {_one_line(title)}\n\nConversation `{conversation.id}`, started {started}.\n\n"


def item_markdown(item: ThreadItem) -> str:
    """One item as a transcript section ("" for items that show nothing)."""
    match item:
        case UserMessageItem():
            return _section("User", item.created_at, _user_message(item))
        case AssistantMessageItem():
            return _section("Assistant", item.created_at, _assistant_message(item))
        case WidgetItem():
            return _section("Assistant (widget)", item.created_at, _widget(item))
        case WorkflowItem():
            return _section("Assistant (work)", item.created_at, _workflow(item.workflow))
        case TaskItem():
            return _section("Assistant (task)", item.created_at, _task(item.task))
        case ClientToolCallItem():
            return _section("Tool call", item.created_at, _tool_call(item))
        case StructuredInputItem():
            return _section("Question", item.created_at, _structured_input(item))
        case GeneratedImageItem():
            image = item.image.url if item.image is not None else "(not generated)"
            return _section("Assistant (image)", item.created_at, f"Generated image: {image}")
        case HiddenContextItem() | SDKHiddenContextItem() | EndOfTurnItem():
            return ""
    return ""  # an item type this version does not know: left out rather than guessed


def export_filename(conversation: Conversation, extension: str) -> str:
    """A file name safe in any Content-Disposition header: `conversation-<id>.<extension>`."""
    safe_id = FILENAME_UNSAFE.sub("_", conversation.id)[:100]
    return f"conversation-{safe_id}.{extension}"


# -- pieces of the Markdown ------------------------------------------------------------------


def _section(who: str, created_at: datetime, body: str) -> str:
    return f"## {who} · {_when(created_at)}\n\n{body.strip()}\n\n"


def _when(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _user_message(item: UserMessageItem) -> str:
    lines: list[str] = []
    if item.quoted_text:
        lines += [_quoted(item.quoted_text), ""]
    text = "".join(
        f"@{part.text}" if isinstance(part, UserMessageTagContent) else part.text
        for part in item.content
    )
    lines.append(text)
    if item.attachments:
        lines += ["", "Attachments:", *(_attachment(a) for a in item.attachments)]
    return "\n".join(lines)


def _attachment(attachment: Attachment) -> str:
    return f"- {_one_line(attachment.name)} ({attachment.mime_type})"


def _assistant_message(item: AssistantMessageItem) -> str:
    text = "\n\n".join(part.text for part in item.content)
    sources = [annotation.source for part in item.content for annotation in part.annotations or []]
    if not sources:
        return text
    lines = [text, "", "Sources:"]
    for source in sources:
        target = getattr(source, "url", None) or getattr(source, "filename", None)
        lines.append(f"- {_one_line(source.title)}" + (f" ({target})" if target else ""))
    return "\n".join(lines)


def _widget(item: WidgetItem) -> str:
    if item.copy_text:
        return _fenced(item.copy_text)
    texts = list(_widget_texts(item.widget.model_dump(mode="json")))
    return _fenced("\n".join(texts)) if texts else "(a widget without text)"


def _widget_texts(node: Any) -> Iterator[str]:
    """The text of a widget's components, depth first in display order."""
    if isinstance(node, list):
        for child in node:
            yield from _widget_texts(child)
        return
    if not isinstance(node, dict):
        return
    text_field = WIDGET_TEXT_FIELDS.get(str(node.get("type")))
    if text_field and isinstance(node.get(text_field), str):
        yield node[text_field]
    yield from _widget_texts(node.get("children"))


def _workflow(workflow: Workflow) -> str:
    summary = workflow.summary
    if summary is None:
        heading = "Reasoning" if workflow.type == "reasoning" else "Work"
    elif isinstance(summary, CustomSummary):
        heading = summary.title
    else:
        heading = f"Worked for {summary.duration} s"
    tasks = [_task(task, bullet=True) for task in workflow.tasks]
    return "\n".join([f"**{_one_line(heading)}**", "", *tasks])


def _task(task: Task, *, bullet: bool = False) -> str:
    title = _one_line(task.title or "") if task.title else task.type.replace("_", " ").title()
    details: list[str] = []
    content = getattr(task, "content", None)
    if content:
        details.append(content.strip())
    if isinstance(task, SearchTask):
        details += [f"searched: {query}" for query in task.queries]
        details += [f"{source.title} ({source.url})" for source in task.sources]
    if isinstance(task, FileTask):
        details += [f"{source.title} ({source.filename})" for source in task.sources]
    if not bullet:
        return "\n\n".join([f"**{title}**", *details])
    indented = [f"  {line}" for detail in details for line in detail.splitlines()]
    return "\n".join([f"- {title}", *indented])


def _tool_call(item: ClientToolCallItem) -> str:
    arguments = json.dumps(item.arguments, ensure_ascii=False, sort_keys=True)
    lines = [f"`{item.name}` {item.status}", "", _fenced(arguments, "json")]
    if item.output is not None:
        output = json.dumps(item.output, ensure_ascii=False, sort_keys=True, default=str)
        lines += ["", "Output:", "", _fenced(output, "json")]
    return "\n".join(lines)


def _structured_input(item: StructuredInputItem) -> str:
    lines: list[str] = []
    for question in item.inputs:
        answer = question.answer
        if answer is None:
            reply = f"({item.status})"
        elif answer.skipped:
            reply = "(skipped)"
        else:
            reply = ", ".join(answer.values)
        lines.append(f"- {_one_line(question.question)} — {reply}")
    return "\n".join(lines)


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines())


def _fenced(text: str, language: str = "") -> str:
    """A code fence longer than any backtick run inside `text`, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"
