"""Where item bodies live: compressed in the row, or in S3 when they are too big for a row."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING
from urllib.parse import quote

from store.aws import delete_s3_objects

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The codec tag stored with every row says how to read its body.
CODEC_ZLIB_JSON = "zjson1"  # body = zlib(JSON), in the row
CODEC_S3_ZLIB_JSON = "s3zjson1"  # body in S3 at payload_key, zlib(JSON)

# DynamoDB caps a row at 400 KB; keys, attributes and a margin stay below it.
DEFAULT_OFFLOAD_THRESHOLD = 300_000


def compress(json_text: str) -> bytes:
    return zlib.compress(json_text.encode("utf-8"), 6)


def decompress(body: bytes) -> str:
    return zlib.decompress(body).decode("utf-8")


def payload_key(user_id: str, thread_id: str, item_id: str) -> str:
    """The S3 key of an offloaded item body; under the user's own prefix."""
    # Each part is escaped, so ids containing "/" can never share a key.
    parts = (quote(part, safe="") for part in (user_id, thread_id, item_id))
    return "payloads/{}/{}/{}.json.z".format(*parts)


class PayloadBucket:
    """The S3 bucket holding item bodies too big for a DynamoDB row."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    def put(self, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def delete(self, keys: list[str]) -> None:
        """Delete the objects (missing ones are fine: a resumed delete repeats itself).

        Raises S3DeleteError naming the objects S3 did not delete.
        """
        delete_s3_objects(self._s3, self.bucket, keys)
