"""What is saved is what is loaded: every field, naive or aware times, every item type."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    FileAttachment,
    ImageAttachment,
    InferenceOptions,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from chatkit.widgets import Card, Text
from pydantic import AnyUrl

from store import DynamoDBStore, RequestContext
from tests.store.factories import BASE_TIME

LOCAL_NOON = datetime(2026, 11, 1, 12, 0, 0, 123456)  # naive, as the SDK's datetime.now()


def mixed_items(thread_id: str, start: datetime) -> list[ThreadItem]:
    """A user message with a file, an answer and a widget, a second apart."""
    return [
        UserMessageItem(
            id="msg_user",
            thread_id=thread_id,
            created_at=start,
            content=[UserMessageTextContent(text="Hello!")],
            attachments=[
                FileAttachment(
                    id="atc_1", name="notes.txt", mime_type="text/plain", metadata={"a": "b"}
                )
            ],
            inference_options=InferenceOptions(),
        ),
        AssistantMessageItem(
            id="msg_answer",
            thread_id=thread_id,
            created_at=start + timedelta(seconds=1),
            content=[AssistantMessageContent(text="Hi there!")],
        ),
        WidgetItem(
            id="wdg_1",
            thread_id=thread_id,
            created_at=start + timedelta(seconds=2),
            widget=Card(children=[Text(value="A card")]),
        ),
    ]


@pytest.mark.parametrize(
    "start",
    [LOCAL_NOON, BASE_TIME.astimezone(timezone(timedelta(hours=1)))],
    ids=["naive", "with-an-offset"],
)
async def test_items_load_equal_to_what_was_saved_with_their_times_as_given(
    store: DynamoDBStore, alice: RequestContext, start: datetime
) -> None:
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=start), alice)
    items = mixed_items("thr_1", start)
    for item in items:
        await store.add_thread_item("thr_1", item, alice)

    loaded = (await store.load_thread_items("thr_1", None, 10, "asc", alice)).data

    assert loaded == items
    assert [item.created_at.utcoffset() for item in loaded] == [start.utcoffset()] * 3


async def test_a_thread_with_a_naive_time_and_no_title_loads_as_saved(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    saved = ThreadMetadata(id="thr_1", created_at=LOCAL_NOON, title=None, metadata={"k": "v"})
    await store.save_thread(saved, alice)

    assert await store.load_thread("thr_1", alice) == saved
    assert (await store.load_threads(5, None, "asc", alice)).data == [saved]


async def test_a_file_attachment_loads_equal_to_what_was_saved(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    saved = FileAttachment(id="atc_1", name="notes.txt", mime_type="text/plain")
    await store.save_attachment(saved, alice)

    assert await store.load_attachment("atc_1", alice) == saved


async def test_an_image_attachment_without_an_upload_bucket_keeps_its_preview(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    saved = ImageAttachment(
        id="atc_img",
        name="cat.png",
        mime_type="image/png",
        preview_url=AnyUrl("https://example.com/cat.png"),
        metadata={"source": "test"},
    )
    await store.save_attachment(saved, alice)

    assert await store.load_attachment("atc_img", alice) == saved


async def test_a_saved_item_is_updated_in_place_for_every_item_type(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=LOCAL_NOON), alice)
    answer, widget = mixed_items("thr_1", LOCAL_NOON)[1:]
    answer = answer.model_copy(update={"content": []})
    await store.add_thread_item("thr_1", answer, alice)
    await store.add_thread_item("thr_1", widget, alice)

    answered = answer.model_copy(update={"content": [AssistantMessageContent(text="Now done")]})
    await store.save_item("thr_1", answered, alice)
    await store.save_item("thr_1", widget, alice)

    assert await store.load_item("thr_1", answer.id, alice) == answered
    assert await store.load_item("thr_1", widget.id, alice) == widget
