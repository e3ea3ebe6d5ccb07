"""A DynamoDBStore on a moto table and bucket, created from the same definitions as production."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from store import (
    DynamoDBStore,
    PayloadBucket,
    RequestContext,
    TableRecord,
    bind_table,
    create_table,
)

TABLE = "chatkit-test"
BUCKET = "chatkit-test-uploads"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def table(aws: None) -> type[TableRecord]:
    record = bind_table(TABLE, region="us-east-1")
    create_table(record)
    return record


@pytest.fixture
def s3(aws: None):  # type: ignore[no-untyped-def]
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def store(table: type[TableRecord], s3) -> DynamoDBStore:  # type: ignore[no-untyped-def]
    return DynamoDBStore(table, PayloadBucket(s3, BUCKET), sleep=lambda _seconds: None)


@pytest.fixture
def alice() -> RequestContext:
    return RequestContext(user_id="alice")


@pytest.fixture
def bob() -> RequestContext:
    return RequestContext(user_id="bob")
