"""The AttachmentStore for two-phase uploads: checks what users declare, hands out presigned
URLs, and reads uploaded bytes back for the model."""

from __future__ import annotations

import re

from chatkit.store import AttachmentStore, NotFoundError
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)

from errors import InvalidRequestError
from store.aws import in_worker
from store.context import RequestContext
from store.dynamodb_store import DynamoDBStore
from store.ids import ID_PREFIXES, random_id
from store.uploads import UploadBucket, upload_key

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class UploadRejectedError(InvalidRequestError):
    """A declared upload breaks the limits (size, type): a 400 with the reason."""


class S3AttachmentStore(AttachmentStore[RequestContext]):
    """Attachments as S3 objects under the user's own prefix, uploaded with presigned PUTs."""

    def __init__(
        self,
        store: DynamoDBStore,
        uploads: UploadBucket,
        *,
        max_bytes: int,
        allowed_types: tuple[str, ...],
    ) -> None:
        self.store = store
        self.uploads = uploads
        self.max_bytes = max_bytes
        self.allowed_types = frozenset(kind.lower() for kind in allowed_types)

    async def create_attachment(
        self, input: AttachmentCreateParams, context: RequestContext
    ) -> Attachment:
        """The attachment with its upload descriptor (presigned PUT, minutes long).

        Raises UploadRejectedError for a size or type outside the limits.
        """
        mime_type = input.mime_type.split(";")[0].strip().lower()
        if mime_type not in self.allowed_types:
            raise UploadRejectedError(
                f"Files of type {mime_type or 'unknown'} are not accepted; "
                f"accepted: {', '.join(sorted(self.allowed_types))}."
            )
        if input.size <= 0 or input.size > self.max_bytes:
            raise UploadRejectedError(f"Files must be 1 to {self.max_bytes} bytes.")
        name = input.name.strip()
        if (
            not name
            or len(name) > 255
            or re.search(r"[/\\\x00-\x1f\x7f]", name)
            or name.startswith(".")
        ):
            raise UploadRejectedError(
                "File names must be 1-255 characters, without paths or control characters."
            )
        attachment_id = self.generate_attachment_id(mime_type, context)
        key = self.uploads.object_key(context.user_id, attachment_id, name)
        url, headers = self.uploads.presign_put(key, mime_type, input.size)
        descriptor = AttachmentUploadDescriptor(url=url, method="PUT", headers=headers)  # type: ignore[arg-type]
        metadata = {"s3_key": key, "size": input.size}
        if mime_type in IMAGE_TYPES:
            return ImageAttachment(
                id=attachment_id,
                name=name,
                mime_type=mime_type,
                upload_descriptor=descriptor,
                preview_url=self.uploads.presign_get(key),  # type: ignore[arg-type]
                metadata=metadata,
            )
        return FileAttachment(
            id=attachment_id,
            name=name,
            mime_type=mime_type,
            upload_descriptor=descriptor,
            metadata=metadata,
        )

    def generate_attachment_id(self, mime_type: str, context: RequestContext) -> str:
        """A new attachment id (128 random bits); its record is created only if it is new."""
        attachment_id = random_id(ID_PREFIXES["attachment"])
        context.new_ids.add(attachment_id)
        return attachment_id

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Delete the uploaded object; NotFoundError if the caller has no such attachment."""
        attachment = await self.store.load_attachment(attachment_id, context)
        key = upload_key(attachment)
        if key and self.uploads.owns(context.user_id, key):
            await in_worker(self.uploads.delete, [key])

    async def exists(self, attachment: Attachment, context: RequestContext) -> bool:
        """Whether the caller's file was uploaded and is within the size limit (one HEAD)."""
        key = upload_key(attachment)
        if key is None or not self.uploads.owns(context.user_id, key):
            return False
        size = await in_worker(self.uploads.size, key)
        return size is not None and size <= self.max_bytes

    async def read(self, attachment: Attachment, context: RequestContext) -> bytes:
        """The uploaded bytes, for the model. NotFoundError unless the file is the caller's;
        ValueError if it was never uploaded or is over the size limit."""
        key = upload_key(attachment)
        if key is None or not self.uploads.owns(context.user_id, key):
            raise NotFoundError(f"Attachment {attachment.id} not found")
        return await in_worker(self.uploads.read, key, self.max_bytes)
