"""The optional daily turn quota: counted atomically per user and day."""

from __future__ import annotations

import asyncio
from typing import Any

from store import RequestContext, TableRecord
from store.quota import TurnQuota
from tests.support.dynamodb_faults import dynamodb_client


async def test_turns_are_counted_up_to_the_limit(
    table: type[TableRecord], alice: RequestContext
) -> None:
    quota = TurnQuota(table, limit=3)

    taken = [await quota.take(alice) for _ in range(5)]

    assert taken == [True, True, True, False, False]


async def test_each_user_has_their_own_count(
    table: type[TableRecord], alice: RequestContext, bob: RequestContext
) -> None:
    quota = TurnQuota(table, limit=1)

    assert await quota.take(alice) is True
    assert await quota.take(bob) is True
    assert await quota.take(alice) is False


async def test_a_turn_is_one_conditional_update_of_the_days_counter(
    table: type[TableRecord], alice: RequestContext
) -> None:
    # What makes the quota safe under concurrency on DynamoDB, whatever moto does: the
    # check and the increment are one conditional UpdateItem, which DynamoDB applies
    # atomically. A read followed by a write would race.
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_kwargs: Any) -> None:
        sent.append((model.name, params))

    events = dynamodb_client(table).meta.events
    events.register("provide-client-params.dynamodb.*", record)
    try:
        await TurnQuota(table, limit=5).take(alice)
    finally:
        events.unregister("provide-client-params.dynamodb.*", record)

    [(operation, params)] = sent
    assert operation == "UpdateItem"
    assert "ADD" in params["UpdateExpression"]
    assert "attribute_not_exists" in params["ConditionExpression"]
    assert "<" in params["ConditionExpression"]


async def test_concurrent_turns_never_exceed_the_limit(
    table: type[TableRecord], alice: RequestContext
) -> None:
    quota = TurnQuota(table, limit=5)

    taken = await asyncio.gather(*(quota.take(alice) for _ in range(12)))

    assert taken.count(True) == 5
    [row] = list(table.query("U#alice#QUOTA", consistent_read=True))
    assert row.turns == 5  # no increment lost, none counted twice


async def test_counter_rows_expire(table: type[TableRecord], alice: RequestContext) -> None:
    await TurnQuota(table, limit=2).take(alice)

    [row] = list(table.query("U#alice#QUOTA", consistent_read=True))
    assert row.turns == 1 and row.expires_at is not None
