"""Thread items to model input, including the files users attach and the tags they mention."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Protocol

import anyio.to_thread
from agents import TResponseInputItem
from chatkit.agents import ThreadItemConverter
from chatkit.errors import CustomStreamError
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageItem,
    Attachment,
    ImageAttachment,
    ThreadItem,
    UserMessageItem,
    UserMessageTagContent,
)
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseInputContentParam,
    ResponseInputFileParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
)

from store import RequestContext

DEFAULT_MAX_BYTES_PER_TURN = 30_000_000


class AttachmentReader(Protocol):
    """The files users uploaded for their attachments (S3 in production)."""

    async def read(self, attachment: Attachment, context: RequestContext) -> bytes:
        """The file's bytes; NotFoundError or ValueError when it cannot be read."""
        ...

    async def exists(self, attachment: Attachment, context: RequestContext) -> bool:
        """Whether the file was uploaded (and is within the size limit)."""
        ...


class AssistantConverter(ThreadItemConverter):
    """The SDK's converter, plus attachments (images as image input, other files as file
    input), tags as text, and earlier answers as plain text that Chat Completions models accept.

    One converter serves one turn: each file is read at most once, the newest files come first
    within `max_bytes_per_turn`, and a file that is gone or over the budget becomes a note the
    model reads instead, so no file can make a thread unanswerable.
    """

    def __init__(
        self,
        reader: AttachmentReader | None,
        context: RequestContext,
        max_bytes_per_turn: int = DEFAULT_MAX_BYTES_PER_TURN,
    ) -> None:
        self.reader = reader
        self.context = context
        self.max_bytes_per_turn = max_bytes_per_turn
        self._contents: dict[str, ResponseInputContentParam] = {}
        self._over_budget: set[str] = set()

    async def to_agent_input(
        self, thread_items: Sequence[ThreadItem] | ThreadItem
    ) -> list[TResponseInputItem]:
        items = list(thread_items) if isinstance(thread_items, Sequence) else [thread_items]
        self._over_budget = _over_budget(items, self.max_bytes_per_turn)
        return await super().to_agent_input(thread_items)

    async def attachment_to_message_content(
        self, attachment: Attachment
    ) -> ResponseInputContentParam:
        if self.reader is None:
            raise CustomStreamError("This server does not accept attachments.", allow_retry=False)
        if attachment.id not in self._contents:
            self._contents[attachment.id] = await self._content_of(attachment, self.reader)
        return self._contents[attachment.id]

    async def _content_of(
        self, attachment: Attachment, reader: AttachmentReader
    ) -> ResponseInputContentParam:
        if attachment.id in self._over_budget:
            return _note(
                f"The file {attachment.name} is left out: this turn's files are over the size limit"
            )
        try:
            data = await reader.read(attachment, self.context)
        except (NotFoundError, ValueError):
            return _note(f"The file {attachment.name} is no longer available")
        # Base64 of a file of megabytes takes milliseconds: off the event loop.
        return await anyio.to_thread.run_sync(_file_content, attachment, data)

    async def tag_to_message_content(self, tag: UserMessageTagContent) -> ResponseInputContentParam:
        details = json.dumps(tag.data, ensure_ascii=False) if tag.data else ""
        text = f"@{tag.text}" + (f": {details}" if details else "")
        return ResponseInputTextParam(type="input_text", text=text)

    async def assistant_message_to_input(self, item: AssistantMessageItem) -> EasyInputMessageParam:
        # The SDK sends output_text parts, which the Chat Completions converter rejects.
        text = "".join(part.text for part in item.content)
        return EasyInputMessageParam(type="message", role="assistant", content=text)


def _over_budget(items: list[ThreadItem], budget: int) -> set[str]:
    """The ids of the attachments left out: newest first, each file counted once, every file
    that would take the turn over `budget` bytes (by its declared size) is left out."""
    total, seen, left_out = 0, set[str](), set[str]()
    for item in reversed(items):
        if not isinstance(item, UserMessageItem):
            continue
        for attachment in item.attachments:
            if attachment.id in seen:
                continue
            seen.add(attachment.id)
            size = _declared_size(attachment)
            if total + size > budget:
                left_out.add(attachment.id)
            else:
                total += size
    return left_out


def _declared_size(attachment: Attachment) -> int:
    metadata: dict[str, Any] = attachment.metadata or {}
    size = metadata.get("size")
    return size if isinstance(size, int) and size > 0 else 0


def _file_content(attachment: Attachment, data: bytes) -> ResponseInputContentParam:
    data_url = f"data:{attachment.mime_type};base64,{base64.b64encode(data).decode()}"
    if isinstance(attachment, ImageAttachment):
        return ResponseInputImageParam(type="input_image", image_url=data_url, detail="auto")
    return ResponseInputFileParam(type="input_file", file_data=data_url, filename=attachment.name)


def _note(text: str) -> ResponseInputTextParam:
    return ResponseInputTextParam(type="input_text", text=f"[{text}.]")
