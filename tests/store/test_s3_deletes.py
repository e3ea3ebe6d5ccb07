"""Batch deletes of S3 objects: every key is sent, and objects S3 keeps are reported."""

from __future__ import annotations

from typing import Any

import pytest

from store import InvalidIdError, PayloadBucket, RequestContext
from store.aws import delete_s3_objects
from store.errors import S3DeleteError
from store.keys import MAX_ID_LENGTH, check_id
from store.uploads import UploadBucket
from tests.conftest import BUCKET


class KeepingS3:
    """An S3 client whose DeleteObjects answers 200 but keeps the objects named in `kept`."""

    def __init__(self, kept: set[str]) -> None:
        self.kept = kept
        self.requests: list[list[str]] = []

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        keys = [entry["Key"] for entry in Delete["Objects"]]
        self.requests.append(keys)
        errors = [
            {"Key": key, "Code": "AccessDenied", "Message": "Access Denied"}
            for key in keys
            if key in self.kept
        ]
        return {"Errors": errors} if errors else {}


def test_more_than_a_thousand_objects_are_deleted_in_batches(s3: Any) -> None:
    keys = [f"payloads/u/t/{index}.json.z" for index in range(1001)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")

    delete_s3_objects(s3, BUCKET, keys)

    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_missing_objects_count_as_deleted(s3: Any) -> None:
    delete_s3_objects(s3, BUCKET, ["payloads/never/written.json.z"])


def test_objects_s3_keeps_are_named_after_every_batch_was_tried() -> None:
    keys = [f"k{index}" for index in range(1500)]
    s3 = KeepingS3(kept={"k3", "k1200"})

    with pytest.raises(S3DeleteError, match=r"2 objects: k3 \(AccessDenied\), k1200"):
        delete_s3_objects(s3, BUCKET, keys)  # type: ignore[arg-type]
    assert [len(batch) for batch in s3.requests] == [1000, 500]


@pytest.mark.parametrize("bucket", [PayloadBucket, UploadBucket])
def test_both_buckets_report_objects_s3_keeps(bucket: type[Any]) -> None:
    with pytest.raises(S3DeleteError, match="k1"):
        bucket(KeepingS3(kept={"k1"}), BUCKET).delete(["k0", "k1"])


def test_user_ids_and_key_ids_share_one_length_limit() -> None:
    longest = "u" * MAX_ID_LENGTH

    assert RequestContext(user_id=longest).user_id == check_id(longest, "thread")
    with pytest.raises(InvalidIdError):
        RequestContext(user_id=longest + "u")
    with pytest.raises(InvalidIdError):
        check_id(longest + "u", "thread")
