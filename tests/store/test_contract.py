"""The chatkit Store contract: what the SDK relies on beyond pagination."""

from __future__ import annotations

import pytest
from chatkit.store import NotFoundError
from chatkit.types import Page, Thread, ThreadMetadata

from store import DynamoDBStore, InvalidIdError, RequestContext
from tests.store.factories import BASE_TIME, assistant_message, attachment, thread, user_message
from tests.support.feedback import load_feedback


async def test_missing_thread_is_not_found(store: DynamoDBStore, alice: RequestContext) -> None:
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_missing", alice)


async def test_saved_thread_loads_with_its_metadata(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    saved = ThreadMetadata(id="thr_1", created_at=BASE_TIME, title="Plans", metadata={"model": "x"})
    await store.save_thread(saved, alice)

    loaded = await store.load_thread("thr_1", alice)

    assert loaded == saved


async def test_thread_passed_to_save_thread_is_stored_without_its_items(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    full = Thread(
        id="thr_1",
        created_at=BASE_TIME,
        title="With items",
        items=Page(data=[user_message("msg_1", "thr_1")]),
    )

    await store.save_thread(full, alice)
    loaded = await store.load_thread("thr_1", alice)

    assert type(loaded) is ThreadMetadata
    assert loaded.title == "With items"
    assert (await store.load_thread_items("thr_1", None, 10, "asc", alice)).data == []


async def test_save_thread_updates_the_title_in_place(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1", title="Old"), alice)
    await store.save_thread(thread("thr_1", title="New"), alice)

    page = await store.load_threads(10, None, "desc", alice)

    assert [(saved.id, saved.title) for saved in page.data] == [("thr_1", "New")]


async def test_adding_the_same_item_twice_keeps_one_updated_item(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", assistant_message("wf_1", "thr_1", text="working"), alice)
    await store.add_thread_item("thr_1", assistant_message("wf_1", "thr_1", text="done"), alice)

    page = await store.load_thread_items("thr_1", None, 10, "asc", alice)

    assert [item.id for item in page.data] == ["wf_1"]
    assert page.data[0].content[0].text == "done"  # type: ignore[union-attr]


async def test_ids_the_store_did_not_generate_are_accepted(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("my-own-thread.v2"), alice)
    await store.add_thread_item(
        "my-own-thread.v2", assistant_message("resp_0a1b2c3d4e5f_msg", "my-own-thread.v2"), alice
    )

    item = await store.load_item("my-own-thread.v2", "resp_0a1b2c3d4e5f_msg", alice)

    assert item.id == "resp_0a1b2c3d4e5f_msg"


async def test_save_item_replaces_an_item(store: DynamoDBStore, alice: RequestContext) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", user_message("msg_1", "thr_1", text="first"), alice)

    await store.save_item("thr_1", user_message("msg_1", "thr_1", text="second"), alice)

    loaded = await store.load_item("thr_1", "msg_1", alice)
    assert loaded.content[0].text == "second"  # type: ignore[union-attr]


async def test_deleted_item_is_gone(store: DynamoDBStore, alice: RequestContext) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", user_message("msg_1", "thr_1"), alice)

    await store.delete_thread_item("thr_1", "msg_1", alice)

    with pytest.raises(NotFoundError):
        await store.load_item("thr_1", "msg_1", alice)


async def test_missing_item_is_not_found(store: DynamoDBStore, alice: RequestContext) -> None:
    await store.save_thread(thread("thr_1"), alice)
    with pytest.raises(NotFoundError):
        await store.load_item("thr_1", "msg_missing", alice)


async def test_attachment_round_trip_and_upsert(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_attachment(attachment("atc_1"), alice)
    await store.save_attachment(attachment("atc_1", thread_id="thr_1"), alice)

    loaded = await store.load_attachment("atc_1", alice)

    assert loaded == attachment("atc_1", thread_id="thr_1")


async def test_deleted_attachment_is_not_found(store: DynamoDBStore, alice: RequestContext) -> None:
    await store.save_attachment(attachment("atc_1"), alice)

    await store.delete_attachment("atc_1", alice)

    with pytest.raises(NotFoundError):
        await store.load_attachment("atc_1", alice)


async def test_attachment_metadata_is_kept_in_the_store(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    record = attachment("atc_1").model_copy(update={"metadata": {"s3_key": "uploads/alice/atc_1"}})
    await store.save_attachment(record, alice)

    assert (await store.load_attachment("atc_1", alice)).metadata == {
        "s3_key": "uploads/alice/atc_1"
    }


async def test_attachments_and_threads_share_a_partition_without_mixing(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.save_attachment(attachment("atc_1"), alice)

    page = await store.load_threads(10, None, "asc", alice)

    assert [saved.id for saved in page.data] == ["thr_1"]


@pytest.mark.parametrize("bad_id", ["a#b", "#", "", "x" * 256])
async def test_ids_that_cannot_be_keys_are_refused(
    store: DynamoDBStore, alice: RequestContext, bad_id: str
) -> None:
    calls = [
        store.load_thread(bad_id, alice),
        store.save_thread(thread(bad_id), alice),
        store.load_thread_items(bad_id, None, 5, "asc", alice),
        store.load_thread_items("thr_1", bad_id, 5, "asc", alice),
        store.load_threads(5, bad_id, "asc", alice),
        store.add_thread_item(bad_id, user_message("msg_1", bad_id), alice),
        store.add_thread_item("thr_1", user_message(bad_id, "thr_1"), alice),
        store.load_item("thr_1", bad_id, alice),
        store.delete_thread_item(bad_id, "msg_1", alice),
        store.delete_thread(bad_id, alice),
        store.save_attachment(attachment(bad_id), alice),
        store.load_attachment(bad_id, alice),
        store.delete_attachment(bad_id, alice),
    ]
    for call in calls:
        with pytest.raises(InvalidIdError):
            await call


@pytest.mark.parametrize("user_id", ["", "eve#admin", "u" * 257])
def test_user_ids_that_cannot_be_keys_are_refused(user_id: str) -> None:
    with pytest.raises(InvalidIdError):
        RequestContext(user_id=user_id)


async def test_feedback_is_recorded_on_each_item(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", assistant_message("msg_1", "thr_1"), alice)
    await store.add_thread_item("thr_1", assistant_message("msg_2", "thr_1"), alice)

    await store.save_feedback("thr_1", ["msg_1", "msg_2"], "negative", alice)

    for item_id in ("msg_1", "msg_2"):
        feedback = load_feedback(store, "thr_1", item_id, alice)
        assert feedback is not None and feedback.kind == "negative"
        assert feedback.at.tzinfo is not None
    assert (await store.load_item("thr_1", "msg_1", alice)).id == "msg_1"


async def test_feedback_on_a_missing_item_is_not_found_and_creates_nothing(
    store: DynamoDBStore, alice: RequestContext, bob: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", assistant_message("msg_1", "thr_1"), alice)

    with pytest.raises(NotFoundError):
        await store.save_feedback("thr_1", ["msg_1"], "positive", bob)
    with pytest.raises(NotFoundError):
        await store.save_feedback("thr_1", ["msg_missing"], "positive", alice)

    assert load_feedback(store, "thr_1", "msg_1", alice) is None
    assert (await store.load_thread_items("thr_1", None, 10, "asc", bob)).data == []


async def test_saving_an_item_again_keeps_its_feedback(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", assistant_message("msg_1", "thr_1"), alice)
    await store.save_feedback("thr_1", ["msg_1"], "positive", alice)

    await store.save_item("thr_1", assistant_message("msg_1", "thr_1", text="edited"), alice)

    feedback = load_feedback(store, "thr_1", "msg_1", alice)
    assert feedback is not None and feedback.kind == "positive"
