"""Uploads as a browser makes them, for tests that need files in the bucket."""

from __future__ import annotations

from typing import Any

from chatkit.types import AttachmentCreateParams, FileAttachment, ImageAttachment

from store import DynamoDBStore, RequestContext
from store.attachments import S3AttachmentStore


def declared(
    name: str = "notes.txt", size: int = 11, mime_type: str = "text/plain"
) -> AttachmentCreateParams:
    return AttachmentCreateParams(name=name, size=size, mime_type=mime_type)


async def upload(
    attachments: S3AttachmentStore,
    store: DynamoDBStore,
    s3: Any,
    context: RequestContext,
    content: bytes | None = b"hello world",
    **kwargs: Any,
) -> FileAttachment | ImageAttachment:
    """attachments.create as the SDK runs it, then the browser's PUT of `content` (done
    directly: in-process moto cannot be reached over HTTP; None: never uploaded)."""
    attachment = await attachments.create_attachment(declared(**kwargs), context)
    await store.save_attachment(attachment, context)
    if content is not None:
        key = (attachment.metadata or {})["s3_key"]
        bucket = attachments.uploads.bucket
        s3.put_object(Bucket=bucket, Key=key, Body=content, Tagging="state=pending")
    return attachment


def objects(s3: Any, bucket: str) -> list[str]:
    return [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
