"""The optional daily turn quota: counted atomically per user and day."""

from __future__ import annotations

import asyncio

from store import RequestContext, TableRecord
from store.quota import TurnQuota


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


async def test_concurrent_turns_never_exceed_the_limit(
    table: type[TableRecord], alice: RequestContext
) -> None:
    quota = TurnQuota(table, limit=5)

    taken = await asyncio.gather(*(quota.take(alice) for _ in range(12)))

    assert taken.count(True) == 5


async def test_counter_rows_expire(table: type[TableRecord], alice: RequestContext) -> None:
    await TurnQuota(table, limit=2).take(alice)

    [row] = list(table.query("U#alice#QUOTA", consistent_read=True))
    assert row.turns == 1 and row.expires_at is not None
