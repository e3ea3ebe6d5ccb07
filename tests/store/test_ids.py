"""Generated ids are unguessable and never merge two objects: rows for them are created only
if absent."""

from __future__ import annotations

import re

import pytest
from chatkit.types import AttachmentCreateParams

from store import DynamoDBStore, RequestContext, TableRecord
from store.attachments import S3AttachmentStore
from store.uploads import UploadBucket
from tests.conftest import BUCKET
from tests.store.factories import attachment, thread, user_message

HEX_128 = r"[0-9a-f]{32}"


def test_thread_and_item_ids_carry_128_random_bits(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    metadata = thread("thr_1")
    ids = [store.generate_thread_id(alice) for _ in range(100)]
    ids += [store.generate_item_id("message", metadata, alice) for _ in range(100)]

    assert all(re.fullmatch(rf"(thr|msg)_{HEX_128}", new_id) for new_id in ids)
    assert len(set(ids)) == 200


def test_each_item_type_keeps_the_sdks_prefix(store: DynamoDBStore, alice: RequestContext) -> None:
    metadata = thread("thr_1")
    prefixes = {
        kind: store.generate_item_id(kind, metadata, alice).split("_")[0]
        for kind in ("message", "tool_call", "task", "workflow", "sdk_hidden_context")
    }

    assert prefixes == {
        "message": "msg",
        "tool_call": "tc",
        "task": "tsk",
        "workflow": "wf",
        "sdk_hidden_context": "shcx",
    }


async def test_a_new_item_whose_id_is_taken_does_not_overwrite_the_other(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    new_id = store.generate_item_id("message", thread("thr_1"), alice)
    first = user_message(new_id, "thr_1", text="first")
    await store.add_thread_item("thr_1", first, alice)
    # The same id generated again (a collision), for a different message:
    alice.new_ids.add(new_id)

    with pytest.raises(RuntimeError, match="already taken"):
        await store.add_thread_item("thr_1", user_message(new_id, "thr_1", text="second"), alice)

    assert await store.load_item("thr_1", new_id, alice) == first


async def test_adding_an_item_again_in_the_same_request_updates_it(
    store: DynamoDBStore, alice: RequestContext
) -> None:
    await store.save_thread(thread("thr_1"), alice)
    new_id = store.generate_item_id("message", thread("thr_1"), alice)
    await store.add_thread_item("thr_1", user_message(new_id, "thr_1", text="working"), alice)

    await store.add_thread_item("thr_1", user_message(new_id, "thr_1", text="done"), alice)

    assert (await store.load_item("thr_1", new_id, alice)).content[0].text == "done"  # type: ignore[union-attr]


async def test_a_new_attachment_whose_id_is_taken_is_refused(
    store: DynamoDBStore, alice: RequestContext, s3: object
) -> None:
    uploads = UploadBucket(s3, BUCKET, 300)  # type: ignore[arg-type]
    attachments = S3AttachmentStore(store, uploads, max_bytes=1000, allowed_types=("text/plain",))
    created = await attachments.create_attachment(
        AttachmentCreateParams(name="a.txt", size=10, mime_type="text/plain"), alice
    )
    assert re.fullmatch(rf"atc_{HEX_128}", created.id)
    await store.save_attachment(created, alice)
    other = attachment(created.id)
    alice.new_ids.add(created.id)

    with pytest.raises(RuntimeError, match="already taken"):
        await store.save_attachment(other, alice)

    assert (await store.load_attachment(created.id, alice)).name == "a.txt"


async def test_a_thread_row_the_store_did_not_create_is_upserted(
    store: DynamoDBStore, alice: RequestContext, table: type[TableRecord]
) -> None:
    # Callers may save threads under ids of their own; saving again updates them.
    await store.save_thread(thread("my-thread", title="One"), alice)
    await store.save_thread(thread("my-thread", title="Two"), alice)

    assert (await store.load_thread("my-thread", alice)).title == "Two"
