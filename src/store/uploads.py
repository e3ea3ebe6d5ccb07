"""Uploaded files in S3: two-phase uploads through presigned PUTs, previews through presigned GETs.

Objects live under `uploads/{user}/{attachment}/{name}`. An upload is tagged `state=pending`
by the presigned PUT itself; the bucket's lifecycle rule expires pending objects, so files
uploaded but never sent in a message disappear. Sending one retags it `state=attached`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.config import Config
from botocore.exceptions import ClientError
from chatkit.types import Attachment, ImageAttachment

from store.aws import delete_s3_objects

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

UPLOAD_PREFIX = "uploads/"
PENDING_TAG = "state=pending"
ATTACHED_TAG = {"TagSet": [{"Key": "state", "Value": "attached"}]}
MAX_NAME_LENGTH = 120


def s3_client(region: str | None = None) -> S3Client:
    """An S3 client whose presigned URLs work in every region: SigV4 on the regional endpoint
    (us-east-1 included). Its calls are bounded like DynamoDB's (botocore's defaults wait
    60 s to connect and 60 s for each read); reads allow for item payloads of megabytes.

    boto3 (and with it s3transfer) is imported here, on first use: most requests never touch S3.
    """
    import boto3

    return boto3.client(
        "s3",
        region_name=region,
        config=Config(
            signature_version="s3v4",
            s3={"us_east_1_regional_endpoint": "regional", "addressing_style": "virtual"},
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=1,
            read_timeout=5,
        ),
    )


def safe_file_name(name: str) -> str:
    """A file name safe in an S3 key and a Content-Disposition: no paths, no control characters."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").split("/")[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().lstrip(".")
    base = re.sub(r"[^\w.\- ()]", "_", base)
    return base[-MAX_NAME_LENGTH:] or "file"


class UploadBucket:
    """The uploads bucket: presigns, tags, reads and deletes the objects users upload."""

    def __init__(self, s3: S3Client, bucket: str, url_seconds: int = 300) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.url_seconds = url_seconds

    def object_key(self, user_id: str, attachment_id: str, name: str) -> str:
        return f"{UPLOAD_PREFIX}{quote(user_id, safe='')}/{attachment_id}/{safe_file_name(name)}"

    def owns(self, user_id: str, key: str) -> bool:
        """Whether `key` lies under the user's own prefix."""
        return key.startswith(f"{UPLOAD_PREFIX}{quote(user_id, safe='')}/")

    def presign_put(self, key: str, mime_type: str, size: int) -> tuple[str, dict[str, str]]:
        """A presigned PUT (SigV4) binding type, length and the pending tag; and the headers
        the browser must send with it."""
        url = self._s3.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": mime_type,
                "ContentLength": size,
                "Tagging": PENDING_TAG,
            },
            ExpiresIn=self.url_seconds,
            HttpMethod="PUT",
        )
        return url, {"content-type": mime_type, "x-amz-tagging": PENDING_TAG}

    def presign_get(self, key: str) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_seconds
        )

    def mark_attached(self, key: str) -> None:
        self._s3.put_object_tagging(Bucket=self.bucket, Key=key, Tagging=ATTACHED_TAG)  # type: ignore[arg-type]

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if it was never uploaded (or has expired)."""
        try:
            response = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return response["ContentLength"]

    def read(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes; ValueError if it is missing or larger than `max_bytes`."""
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except self._s3.exceptions.NoSuchKey:
            raise ValueError("the file was never uploaded (or has expired)") from None
        if response["ContentLength"] > max_bytes:
            raise ValueError(f"the file is larger than {max_bytes} bytes")
        return response["Body"].read()

    def delete(self, keys: list[str]) -> None:
        """Delete the uploaded objects; raises S3DeleteError naming those S3 did not delete."""
        delete_s3_objects(self._s3, self.bucket, keys)

    def with_fresh_preview(self, attachment: Attachment) -> Attachment:
        """The attachment with a newly presigned preview URL, so a client never gets an
        expired one."""
        key = upload_key(attachment)
        if isinstance(attachment, ImageAttachment) and key:
            return attachment.model_copy(update={"preview_url": self.presign_get(key)})
        return attachment


def upload_key(attachment: Attachment) -> str | None:
    metadata: dict[str, Any] = attachment.metadata or {}
    key = metadata.get("s3_key")
    return key if isinstance(key, str) else None
