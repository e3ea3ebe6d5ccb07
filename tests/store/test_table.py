"""The table created from the model is the one `table_schema()` describes."""

from __future__ import annotations

import boto3

from store import TableRecord, table_schema
from tests.store.conftest import TABLE


def sort_by_name(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(entries, key=lambda entry: entry["AttributeName"])


def test_created_table_matches_the_schema(table: type[TableRecord]) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    described = client.describe_table(TableName=TABLE)["Table"]
    ttl = client.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    schema = table_schema()

    assert described["KeySchema"] == schema["KeySchema"]
    assert sort_by_name(described["AttributeDefinitions"]) == sort_by_name(
        schema["AttributeDefinitions"]
    )
    assert [
        {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        for index in described["LocalSecondaryIndexes"]
    ] == schema["LocalSecondaryIndexes"]
    assert described.get("GlobalSecondaryIndexes", []) == []
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert ttl == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": schema["TimeToLiveSpecification"]["AttributeName"],
    }
