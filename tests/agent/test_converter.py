"""Thread items become model input: attachments as image or file input, answers as plain text."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from chatkit.errors import CustomStreamError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    FileAttachment,
    ImageAttachment,
    InferenceOptions,
    UserMessageItem,
    UserMessageTextContent,
)

from agent.converter import AssistantConverter
from store import RequestContext

NOW = datetime(2026, 11, 1, tzinfo=UTC)


class BytesReader:
    def __init__(self) -> None:
        self.read_for: list[tuple[str, str]] = []

    async def read(self, attachment: Attachment, context: RequestContext) -> bytes:
        self.read_for.append((attachment.id, context.user_id))
        return f"bytes of {attachment.name}".encode()


def message_with(*attachments: Attachment) -> UserMessageItem:
    return UserMessageItem(
        id="msg_1",
        thread_id="thr_1",
        created_at=NOW,
        content=[UserMessageTextContent(text="see attached")],
        attachments=list(attachments),
        inference_options=InferenceOptions(),
    )


async def test_images_become_image_input_and_files_file_input(alice: RequestContext) -> None:
    reader = BytesReader()
    image = ImageAttachment(
        id="atc_img", name="cat.png", mime_type="image/png", preview_url="https://example.com/p"
    )
    pdf = FileAttachment(id="atc_pdf", name="report.pdf", mime_type="application/pdf")

    [message] = await AssistantConverter(reader, alice).to_agent_input([message_with(image, pdf)])

    _, image_part, file_part = message["content"]  # type: ignore[index]
    assert image_part["type"] == "input_image"
    assert (
        image_part["image_url"]
        == "data:image/png;base64," + base64.b64encode(b"bytes of cat.png").decode()
    )
    assert file_part["type"] == "input_file" and file_part["filename"] == "report.pdf"
    assert file_part["file_data"].startswith("data:application/pdf;base64,")
    assert reader.read_for == [("atc_img", "alice"), ("atc_pdf", "alice")]


async def test_attachments_without_a_reader_are_a_clear_error(alice: RequestContext) -> None:
    pdf = FileAttachment(id="atc_pdf", name="report.pdf", mime_type="application/pdf")

    with pytest.raises(CustomStreamError, match="does not accept attachments"):
        await AssistantConverter(None, alice).to_agent_input([message_with(pdf)])


async def test_earlier_answers_are_plain_assistant_text(alice: RequestContext) -> None:
    answer = AssistantMessageItem(
        id="msg_2",
        thread_id="thr_1",
        created_at=NOW,
        content=[AssistantMessageContent(text="Hello "), AssistantMessageContent(text="again")],
    )

    assert await AssistantConverter(None, alice).to_agent_input([answer]) == [
        {"type": "message", "role": "assistant", "content": "Hello again"}
    ]
