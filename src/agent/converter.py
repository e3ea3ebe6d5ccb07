"""Thread items to model input, including the files users attach."""

from __future__ import annotations

import base64
from typing import Protocol

from chatkit.agents import ThreadItemConverter
from chatkit.errors import CustomStreamError
from chatkit.types import AssistantMessageItem, Attachment, ImageAttachment
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseInputContentParam,
    ResponseInputFileParam,
    ResponseInputImageParam,
)

from store import RequestContext


class AttachmentReader(Protocol):
    """Reads the bytes a user uploaded for an attachment (S3 in production)."""

    async def read(self, attachment: Attachment, context: RequestContext) -> bytes: ...


class AssistantConverter(ThreadItemConverter):
    """The SDK's converter, plus attachments (images as image input, other files as file
    input), and earlier answers as plain text that Chat Completions models accept too."""

    def __init__(self, reader: AttachmentReader | None, context: RequestContext) -> None:
        self.reader = reader
        self.context = context

    async def attachment_to_message_content(
        self, attachment: Attachment
    ) -> ResponseInputContentParam:
        if self.reader is None:
            raise CustomStreamError("This server does not accept attachments.", allow_retry=False)
        data = await self.reader.read(attachment, self.context)
        data_url = f"data:{attachment.mime_type};base64,{base64.b64encode(data).decode()}"
        if isinstance(attachment, ImageAttachment):
            return ResponseInputImageParam(type="input_image", image_url=data_url, detail="auto")
        return ResponseInputFileParam(
            type="input_file", file_data=data_url, filename=attachment.name
        )

    async def assistant_message_to_input(self, item: AssistantMessageItem) -> EasyInputMessageParam:
        # The SDK sends output_text parts, which the Chat Completions converter rejects.
        text = "".join(part.text for part in item.content)
        return EasyInputMessageParam(type="message", role="assistant", content=text)
