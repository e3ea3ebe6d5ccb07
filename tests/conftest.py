"""Shared fixtures: fake AWS credentials (nothing ever reaches a real account), and a
DynamoDBStore on a moto table and bucket created from the same definitions as production."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
from store.uploads import s3_client
from tests.support.atomic_moto import make_moto_dynamodb_atomic
from tests.support.fake_aws import use_fake_aws
from tests.support.fake_bedrock import FakeBedrock, fake_bedrock_server
from tests.support.fake_openai import FakeOpenAI, fake_openai_server

# Set before any client is created; moto intercepts every call made with them.
use_fake_aws()

# DynamoDB applies each single-item write atomically; moto does only when told to.
make_moto_dynamodb_atomic()

TABLE = "chatkit-test"
BUCKET = "chatkit-test-uploads"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with fake_openai_server() as fake:
        yield fake


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    """The fake Bedrock runtime, where every Bedrock client created meanwhile sends its calls."""
    with fake_bedrock_server() as fake:
        # botocore's own endpoint variable for this one service: the app has no setting for it.
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.endpoint_url)
        yield fake


@pytest.fixture(autouse=True)
def fresh_parameter_cache() -> None:
    """Powertools caches SSM values process-wide; each test starts with a new moto account."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()


@pytest.fixture
def table(aws: None) -> type[TableRecord]:
    record = bind_table(TABLE, region="us-east-1")
    create_table(record)
    return record


@pytest.fixture
def s3(aws: None) -> Any:
    client = s3_client("us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def store(table: type[TableRecord], s3: Any) -> DynamoDBStore:
    return DynamoDBStore(table, PayloadBucket(s3, BUCKET), sleep=lambda _seconds: None)


@pytest.fixture
def alice() -> RequestContext:
    return RequestContext(user_id="alice")


@pytest.fixture
def bob() -> RequestContext:
    return RequestContext(user_id="bob")
