"""Items of any size round-trip; bodies too big for a DynamoDB row live in S3."""

from __future__ import annotations

import base64
import random

import pytest
from chatkit.types import WidgetItem
from chatkit.widgets import Card, Text

from store import DynamoDBStore, RequestContext, TableRecord
from store.payloads import CODEC_S3_ZLIB_JSON, CODEC_ZLIB_JSON
from tests.store.conftest import BUCKET
from tests.store.factories import BASE_TIME, thread, user_message


def megabyte_widget(item_id: str, thread_id: str) -> WidgetItem:
    """A widget of ~1 MB of incompressible text, so compression alone cannot save it."""
    noise = random.Random(3).randbytes(750_000)
    return WidgetItem(
        id=item_id,
        thread_id=thread_id,
        created_at=BASE_TIME,
        widget=Card(children=[Text(value=base64.b64encode(noise).decode())]),
    )


def cjk_text(length: int) -> str:
    generator = random.Random(5)
    return "".join(chr(generator.randint(0x4E00, 0x9FFF)) for _ in range(length))


def stored_row(table: type[TableRecord], user: str, thread_id: str, item_id: str) -> TableRecord:
    return table.get(f"U#{user}#T#{thread_id}", f"I#{item_id}", consistent_read=True)


def payload_objects(s3) -> list[str]:  # type: ignore[no-untyped-def]
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="payloads/")
    return [entry["Key"] for entry in listing.get("Contents", [])]


@pytest.fixture
async def thread_1(store: DynamoDBStore, alice: RequestContext) -> str:
    await store.save_thread(thread("thr_1"), alice)
    return "thr_1"


async def test_megabyte_widget_round_trips_through_s3(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord], s3, thread_1: str
) -> None:  # type: ignore[no-untyped-def]
    widget = megabyte_widget("wdg_big", thread_1)
    assert len(widget.model_dump_json()) > 1_000_000

    await store.add_thread_item(thread_1, widget, alice)

    assert await store.load_item(thread_1, "wdg_big", alice) == widget
    assert (await store.load_thread_items(thread_1, None, 5, "asc", alice)).data == [widget]
    row = stored_row(table, "alice", thread_1, "wdg_big")
    assert row.codec == CODEC_S3_ZLIB_JSON and row.body is None
    assert payload_objects(s3) == ["payloads/alice/thr_1/wdg_big.json.z"]


async def test_hundred_thousand_character_cjk_message_round_trips(
    store: DynamoDBStore, alice: RequestContext, thread_1: str
) -> None:
    message = user_message("msg_cjk", thread_1, text=cjk_text(100_000))

    await store.add_thread_item(thread_1, message, alice)

    assert await store.load_item(thread_1, "msg_cjk", alice) == message


async def test_non_ascii_is_stored_unescaped_and_compressed(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord], thread_1: str
) -> None:
    text = "会議は明日の午前十時からです。" * 2000  # 30,000 characters, 90,000 UTF-8 bytes
    await store.add_thread_item(thread_1, user_message("msg_cjk", thread_1, text=text), alice)

    row = stored_row(table, "alice", thread_1, "msg_cjk")

    assert row.codec == CODEC_ZLIB_JSON
    assert row.body is not None and len(row.body) < len(text.encode()) // 10


async def test_shrinking_an_offloaded_item_removes_its_s3_object(
    store: DynamoDBStore, alice: RequestContext, s3, thread_1: str
) -> None:  # type: ignore[no-untyped-def]
    await store.add_thread_item(thread_1, megabyte_widget("wdg_1", thread_1), alice)
    small = user_message("wdg_1", thread_1, text="now small")

    await store.save_item(thread_1, small, alice)

    assert await store.load_item(thread_1, "wdg_1", alice) == small
    assert payload_objects(s3) == []


async def test_deleting_an_offloaded_item_removes_its_s3_object(
    store: DynamoDBStore, alice: RequestContext, s3, thread_1: str
) -> None:  # type: ignore[no-untyped-def]
    await store.add_thread_item(thread_1, megabyte_widget("wdg_1", thread_1), alice)

    await store.delete_thread_item(thread_1, "wdg_1", alice)

    assert payload_objects(s3) == []


async def test_offloading_without_a_bucket_is_a_clear_error(
    table: type[TableRecord], alice: RequestContext
) -> None:
    store = DynamoDBStore(table, payloads=None)
    await store.save_thread(thread("thr_1"), alice)

    with pytest.raises(ValueError, match="S3 payload bucket"):
        await store.add_thread_item("thr_1", megabyte_widget("wdg_1", "thr_1"), alice)


async def test_ids_with_slashes_never_share_a_payload(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("a/b"), alice)
    await store.save_thread(thread("a"), alice)
    first, second = megabyte_widget("c", "a/b"), megabyte_widget("b/c", "a")
    second.copy_text = "the other one"
    await store.add_thread_item("a/b", first, alice)
    await store.add_thread_item("a", second, alice)

    await store.delete_thread_item("a", "b/c", alice)

    assert await store.load_item("a/b", "c", alice) == first
