"""Small builders for ChatKit threads and items used across the store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    FileAttachment,
    InferenceOptions,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
)

BASE_TIME = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def thread(
    thread_id: str, created_at: datetime = BASE_TIME, title: str | None = None
) -> ThreadMetadata:
    return ThreadMetadata(id=thread_id, created_at=created_at, title=title)


def user_message(
    item_id: str, thread_id: str, created_at: datetime = BASE_TIME, text: str = "hi"
) -> UserMessageItem:
    return UserMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=created_at,
        content=[UserMessageTextContent(text=text)],
        inference_options=InferenceOptions(),
    )


def assistant_message(
    item_id: str, thread_id: str, created_at: datetime = BASE_TIME, text: str = "hello"
) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=created_at,
        content=[AssistantMessageContent(text=text)],
    )


def attachment(attachment_id: str, thread_id: str | None = None) -> FileAttachment:
    return FileAttachment(
        id=attachment_id, name="notes.txt", mime_type="text/plain", thread_id=thread_id
    )


def tied_times(count: int, per_tick: int = 3) -> list[datetime]:
    """`count` timestamps where every `per_tick` consecutive ones are equal."""
    return [BASE_TIME + timedelta(milliseconds=index // per_tick) for index in range(count)]
