"""The single DynamoDB table: its attributes, its index, and how to bind and create it.

This module is the one definition of the table. The store reads and writes through
`bind_table`, the tests and the local server create the table with `create_table`,
and `template.yaml` is checked against `table_schema()`. What goes in each row's keys
is in `store.keys`.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import TableConnection
from pynamodb.indexes import AllProjection, LocalSecondaryIndex
from pynamodb.models import Model

# PynamoDB's defaults (15 s connect, 30 s read, 8 attempts) leave a client waiting 25-47 s
# when DynamoDB stalls. DynamoDB answers in milliseconds; these bound a stall to seconds.
CONNECT_TIMEOUT_SECONDS = 0.5
READ_TIMEOUT_SECONDS = 2.0
MAX_ATTEMPTS = 3
# botocore's standard mode waits at most 2**(n-1) s (random) before retry n (that is after
# throttling; after a timeout DynamoDB's clients wait at most 25 ms * 2**(n-1)).
MAX_BACKOFF_SECONDS = 20.0
INDEX_NAME = "by_created"
TTL_ATTRIBUTE = "expires_at"


class TableRecord(Model):
    """One row of the table. Bound to a concrete table name by `bind_table`."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    lsi1sk = UnicodeAttribute(null=True)
    kind = UnicodeAttribute()
    codec = UnicodeAttribute()
    body = BinaryAttribute(legacy_encoding=False, null=True)
    payload_key = UnicodeAttribute(null=True)
    upload_key = UnicodeAttribute(null=True)
    turns = NumberAttribute(null=True)
    feedback_kind = UnicodeAttribute(null=True)
    feedback_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)
    # The caller gave a naive created_at (local time): it is read back naive.
    naive_created_at = BooleanAttribute(null=True)
    # Thread rows: the turn holding the thread (its token) and until when (epoch ms).
    lease_id = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)


class ByCreatedIndex(LocalSecondaryIndex[TableRecord]):  # type: ignore[no-untyped-call]
    """Rows of one partition ordered by creation time; sparse (threads and items only)."""

    class Meta:
        index_name = INDEX_NAME
        projection = AllProjection()

    pk = UnicodeAttribute(hash_key=True)
    lsi1sk = UnicodeAttribute(range_key=True)


def bind_table(
    table_name: str,
    *,
    region: str | None = None,
    host: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> type[TableRecord]:
    """Return a TableRecord class bound to `table_name`.

    `host` overrides the endpoint (a moto server); when unset, PynamoDB follows
    AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL. Throttling, 5xx answers, timeouts and
    connection errors are retried by botocore's standard retry mode (exponential backoff
    with jitter) up to `max_attempts`; with the timeouts this bounds how long a call can
    hang when DynamoDB does not answer (see `worst_case_seconds`).
    """

    class Meta:
        pass

    Meta.table_name = table_name  # type: ignore[attr-defined]
    Meta.region = region  # type: ignore[attr-defined]
    Meta.host = host  # type: ignore[attr-defined]
    # PynamoDB turns this into botocore's standard retry mode with 1 + N attempts.
    Meta.max_retry_attempts = max_attempts - 1  # type: ignore[attr-defined]
    Meta.connect_timeout_seconds = connect_timeout  # type: ignore[attr-defined]
    Meta.read_timeout_seconds = read_timeout  # type: ignore[attr-defined]

    return type(
        "BoundTableRecord",
        (TableRecord,),
        {"Meta": Meta, "by_created": ByCreatedIndex(), "__module__": __name__},
    )


def worst_case_seconds(
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> float:
    """The longest one call can take against a DynamoDB that accepts but never answers
    (every attempt times out, every backoff is the longest botocore may pick)."""
    backoff = sum(min(MAX_BACKOFF_SECONDS, 2.0 ** (n - 1)) for n in range(1, max_attempts))
    return max_attempts * (connect_timeout + read_timeout) + backoff


def create_table(record: type[TableRecord]) -> None:
    """Create the table on demand billing with its TTL attribute enabled (tests, local server)."""
    record.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    record.update_ttl(ignore_update_ttl_errors=False)


def table_schema() -> dict[str, Any]:
    """The key schema, attribute definitions, index and TTL attribute, in CloudFormation's shape."""
    return {
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "lsi1sk", "AttributeType": "S"},
        ],
        "LocalSecondaryIndexes": [
            {
                "IndexName": INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "lsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
    }


def table_connection(record: type[TableRecord]) -> TableConnection:
    """PynamoDB's connection to the table, for the calls its Model API does not offer
    (UpdateItem and DeleteItem returning values, BatchWriteItem of keys, transactions)."""
    return record._get_connection()
