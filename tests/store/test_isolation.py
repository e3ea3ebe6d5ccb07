"""User B holds every id of user A's data and still reaches none of it."""

from __future__ import annotations

import pytest
from chatkit.store import NotFoundError

from store import DynamoDBStore, RequestContext
from tests.store.factories import attachment, thread, user_message


@pytest.fixture
async def alices_data(store: DynamoDBStore, alice: RequestContext) -> None:
    await store.save_thread(thread("thr_a", title="Alice's plans"), alice)
    await store.add_thread_item("thr_a", user_message("msg_a1", "thr_a", text="secret"), alice)
    await store.add_thread_item("thr_a", user_message("msg_a2", "thr_a", text="more"), alice)
    await store.save_attachment(attachment("atc_a", thread_id="thr_a"), alice)


async def assert_alice_untouched(store: DynamoDBStore, alice: RequestContext) -> None:
    assert (await store.load_thread("thr_a", alice)).title == "Alice's plans"
    items = await store.load_thread_items("thr_a", None, 10, "asc", alice)
    assert [(item.id, item.content[0].text) for item in items.data] == [  # type: ignore[union-attr]
        ("msg_a1", "secret"),
        ("msg_a2", "more"),
    ]
    assert (await store.load_attachment("atc_a", alice)).thread_id == "thr_a"


@pytest.mark.usefixtures("alices_data")
async def test_other_users_thread_is_not_found(store: DynamoDBStore, bob: RequestContext) -> None:
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_a", bob)


@pytest.mark.usefixtures("alices_data")
async def test_other_users_item_is_not_found(store: DynamoDBStore, bob: RequestContext) -> None:
    with pytest.raises(NotFoundError):
        await store.load_item("thr_a", "msg_a1", bob)


@pytest.mark.usefixtures("alices_data")
async def test_other_users_attachment_is_not_found(
    store: DynamoDBStore, bob: RequestContext
) -> None:
    with pytest.raises(NotFoundError):
        await store.load_attachment("atc_a", bob)


@pytest.mark.usefixtures("alices_data")
async def test_other_users_thread_has_no_items(store: DynamoDBStore, bob: RequestContext) -> None:
    page = await store.load_thread_items("thr_a", None, 10, "desc", bob)

    assert page.data == [] and page.has_more is False


@pytest.mark.usefixtures("alices_data")
async def test_other_users_threads_are_not_listed(
    store: DynamoDBStore, bob: RequestContext
) -> None:
    await store.save_thread(thread("thr_b"), bob)

    page = await store.load_threads(10, None, "desc", bob)

    assert [saved.id for saved in page.data] == ["thr_b"]


@pytest.mark.usefixtures("alices_data")
async def test_other_users_ids_are_no_cursor(store: DynamoDBStore, bob: RequestContext) -> None:
    with pytest.raises(NotFoundError):
        await store.load_threads(10, "thr_a", "asc", bob)
    with pytest.raises(NotFoundError):
        await store.load_thread_items("thr_a", "msg_a1", 10, "asc", bob)


@pytest.mark.usefixtures("alices_data")
async def test_writing_with_other_users_ids_changes_nothing_of_theirs(
    store: DynamoDBStore, alice: RequestContext, bob: RequestContext
) -> None:
    await store.save_thread(thread("thr_a", title="Bob was here"), bob)
    await store.add_thread_item("thr_a", user_message("msg_a1", "thr_a", text="overwritten"), bob)
    await store.save_item("thr_a", user_message("msg_a2", "thr_a", text="overwritten"), bob)
    await store.save_attachment(attachment("atc_a", thread_id="thr_b"), bob)

    await assert_alice_untouched(store, alice)
    assert (await store.load_thread("thr_a", bob)).title == "Bob was here"


@pytest.mark.usefixtures("alices_data")
async def test_deleting_with_other_users_ids_deletes_nothing_of_theirs(
    store: DynamoDBStore, alice: RequestContext, bob: RequestContext
) -> None:
    await store.delete_thread_item("thr_a", "msg_a1", bob)
    await store.delete_attachment("atc_a", bob)
    with pytest.raises(NotFoundError):
        await store.delete_thread("thr_a", bob)

    await assert_alice_untouched(store, alice)


async def test_user_ids_sharing_a_prefix_stay_apart(store: DynamoDBStore) -> None:
    ann, anne = RequestContext(user_id="ann"), RequestContext(user_id="anne")
    await store.save_thread(thread("thr_1", title="ann's"), ann)
    await store.save_thread(thread("thr_1", title="anne's"), anne)

    assert (await store.load_thread("thr_1", ann)).title == "ann's"
    assert [saved.title for saved in (await store.load_threads(5, None, "asc", anne)).data] == [
        "anne's"
    ]
