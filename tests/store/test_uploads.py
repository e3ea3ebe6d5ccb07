"""Two-phase uploads: what a declared upload may be, what the presigned PUT binds, and what
happens to the object when the attachment is sent, served and deleted."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from chatkit.store import NotFoundError
from chatkit.types import (
    AttachmentCreateParams,
    FileAttachment,
    ImageAttachment,
    InferenceOptions,
    UserMessageItem,
    UserMessageTextContent,
)

from store import DynamoDBStore, PayloadBucket, RequestContext, TableRecord
from store.attachments import S3AttachmentStore, UploadRejectedError
from store.uploads import UploadBucket, safe_file_name
from tests.conftest import BUCKET
from tests.store.factories import BASE_TIME, thread
from tests.support.uploads import declared, upload
from tests.support.uploads import objects as bucket_objects

ALLOWED = ("image/png", "application/pdf", "text/plain")


@pytest.fixture
def uploads(s3: Any) -> UploadBucket:
    return UploadBucket(s3, BUCKET, url_seconds=300)


@pytest.fixture
def store(table: type[TableRecord], s3: Any, uploads: UploadBucket) -> DynamoDBStore:
    return DynamoDBStore(table, PayloadBucket(s3, BUCKET), uploads)


@pytest.fixture
def attachments(store: DynamoDBStore, uploads: UploadBucket) -> S3AttachmentStore:
    return S3AttachmentStore(store, uploads, max_bytes=1_000_000, allowed_types=ALLOWED)


def objects(s3: Any) -> list[str]:
    return bucket_objects(s3, BUCKET)


async def test_presigned_put_binds_type_length_tag_and_expiry(
    attachments: S3AttachmentStore, alice: RequestContext
) -> None:
    attachment = await attachments.create_attachment(declared(size=11), alice)

    descriptor = attachment.upload_descriptor
    assert descriptor is not None and descriptor.method == "PUT"
    url = urlparse(str(descriptor.url))
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    assert set(query["X-Amz-SignedHeaders"][0].split(";")) >= {
        "content-length",
        "content-type",
        "host",
        "x-amz-tagging",
    }
    assert url.hostname == f"{BUCKET}.s3.us-east-1.amazonaws.com"  # regional endpoint
    assert url.path.endswith(f"/uploads/alice/{attachment.id}/notes.txt")
    assert descriptor.headers == {"content-type": "text/plain", "x-amz-tagging": "state=pending"}
    assert isinstance(attachment, FileAttachment)


async def test_images_get_a_presigned_preview(
    attachments: S3AttachmentStore, alice: RequestContext
) -> None:
    attachment = await attachments.create_attachment(declared("cat.png", 100, "image/png"), alice)

    assert isinstance(attachment, ImageAttachment)
    assert "X-Amz-Signature" in str(attachment.preview_url)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (declared(size=0), "1 to"),
        (declared(size=1_000_001), "1 to"),
        (declared(size=-5), "1 to"),
        (declared(mime_type="application/x-msdownload"), "not accepted"),
        (declared(mime_type="text/html"), "not accepted"),
        (declared(mime_type=""), "not accepted"),
    ],
)
async def test_declared_uploads_outside_the_limits_are_rejected(
    attachments: S3AttachmentStore,
    alice: RequestContext,
    s3: Any,
    params: AttachmentCreateParams,
    reason: str,
) -> None:
    with pytest.raises(UploadRejectedError, match=reason):
        await attachments.create_attachment(params, alice)
    assert objects(s3) == []


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/absolute/path.txt", "path.txt"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("....", "file"),
        ("résumé final.pdf", "résumé final.pdf"),
        ("x" * 300 + ".txt", "x" * 116 + ".txt"),
        ("<script>.txt", "_script_.txt"),
    ],
)
def test_file_names_cannot_escape_the_users_prefix(name: str, safe: str) -> None:
    assert safe_file_name(name) == safe


@pytest.mark.parametrize(
    "name", ["../../bob/secret.txt", "a\\b.txt", "x\x00.txt", ".env", "", "n" * 256]
)
async def test_path_like_or_odd_names_are_rejected(
    attachments: S3AttachmentStore, alice: RequestContext, name: str
) -> None:
    with pytest.raises(UploadRejectedError, match="File names"):
        await attachments.create_attachment(declared(name=name), alice)


def message_with(attachment: Any, thread_id: str) -> UserMessageItem:
    return UserMessageItem(
        id="msg_1",
        thread_id=thread_id,
        created_at=BASE_TIME,
        content=[UserMessageTextContent(text="see attached")],
        attachments=[attachment.model_copy(update={"thread_id": thread_id})],
        inference_options=InferenceOptions(),
    )


async def test_sending_an_upload_keeps_it_and_drops_its_upload_url(
    attachments: S3AttachmentStore, store: DynamoDBStore, s3: Any, alice: RequestContext
) -> None:
    attachment = await upload(attachments, store, s3, alice)
    await store.save_thread(thread("thr_1"), alice)

    await store.save_attachment(attachment.model_copy(update={"thread_id": "thr_1"}), alice)

    key = (attachment.metadata or {})["s3_key"]
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    assert tags == [{"Key": "state", "Value": "attached"}]
    saved = await store.load_attachment(attachment.id, alice)
    assert saved.thread_id == "thr_1" and saved.upload_descriptor is None


async def test_previews_are_presigned_again_whenever_served(
    attachments: S3AttachmentStore, store: DynamoDBStore, s3: Any, alice: RequestContext
) -> None:
    image = await upload(attachments, store, s3, alice, name="cat.png", mime_type="image/png")
    stale = ImageAttachment.model_validate(
        {**image.model_dump(), "preview_url": "https://expired.example/cat.png"}
    )
    await store.save_attachment(stale, alice)
    await store.save_thread(thread("thr_1"), alice)
    await store.add_thread_item("thr_1", message_with(stale, "thr_1"), alice)

    served_attachment = await store.load_attachment(image.id, alice)
    served_item = (await store.load_thread_items("thr_1", None, 5, "asc", alice)).data[0]

    assert isinstance(served_attachment, ImageAttachment)
    assert "X-Amz-Signature" in str(served_attachment.preview_url)
    assert isinstance(served_item, UserMessageItem)
    assert "X-Amz-Signature" in str(served_item.attachments[0].preview_url)  # type: ignore[union-attr]


async def test_deleting_an_attachment_deletes_its_object(
    attachments: S3AttachmentStore, store: DynamoDBStore, s3: Any, alice: RequestContext
) -> None:
    attachment = await upload(attachments, store, s3, alice)

    await attachments.delete_attachment(attachment.id, alice)
    await store.delete_attachment(attachment.id, alice)

    assert objects(s3) == []
    with pytest.raises(NotFoundError):
        await store.load_attachment(attachment.id, alice)


async def test_deleting_a_thread_deletes_its_attachments(
    attachments: S3AttachmentStore, store: DynamoDBStore, s3: Any, alice: RequestContext
) -> None:
    sent = await upload(attachments, store, s3, alice)
    kept = await upload(attachments, store, s3, alice, name="other.txt")
    await store.save_thread(thread("thr_1"), alice)
    await store.save_attachment(sent.model_copy(update={"thread_id": "thr_1"}), alice)
    await store.add_thread_item("thr_1", message_with(sent, "thr_1"), alice)

    await store.delete_thread("thr_1", alice)

    with pytest.raises(NotFoundError):
        await store.load_attachment(sent.id, alice)
    assert await store.load_attachment(kept.id, alice)
    assert objects(s3) == [(kept.metadata or {})["s3_key"]]


async def test_another_users_attachment_cannot_be_read_or_deleted(
    attachments: S3AttachmentStore,
    store: DynamoDBStore,
    s3: Any,
    alice: RequestContext,
    bob: RequestContext,
) -> None:
    attachment = await upload(attachments, store, s3, alice)

    with pytest.raises(NotFoundError):
        await attachments.delete_attachment(attachment.id, bob)
    with pytest.raises(NotFoundError):
        await attachments.read(attachment, bob)
    assert await attachments.read(attachment, alice) == b"hello world"
    assert len(objects(s3)) == 1


async def test_reading_a_file_never_uploaded_is_a_clear_error(
    attachments: S3AttachmentStore, store: DynamoDBStore, alice: RequestContext
) -> None:
    attachment = await attachments.create_attachment(declared(), alice)

    with pytest.raises(ValueError, match="never uploaded"):
        await attachments.read(attachment, alice)
