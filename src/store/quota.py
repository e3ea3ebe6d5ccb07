"""A per-user limit on turns per day, counted atomically in the single table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import UpdateError

from store.aws import condition_failed, in_worker
from store.context import RequestContext
from store.keys import quota_pk, quota_sk
from store.table import TableRecord


class TurnQuota:
    """At most `limit` turns per user per UTC day; the counter rows expire by TTL."""

    def __init__(self, table: type[TableRecord], limit: int) -> None:
        self.table = table
        self.limit = limit

    async def take(self, context: RequestContext) -> bool:
        """Count one turn; False (and nothing counted) when the day's limit is reached.

        Raises StoreUnavailableError when DynamoDB does not answer in time.
        """
        return await in_worker(self._take, context.user_id)

    def _take(self, user_id: str) -> bool:
        today = datetime.now(UTC)
        row = self.table(quota_pk(user_id), quota_sk(today))
        try:
            row.update(
                actions=[
                    self.table.turns.add(1),
                    self.table.kind.set("quota"),
                    self.table.codec.set("count"),
                    self.table.expires_at.set(today + timedelta(days=2)),
                ],
                condition=self.table.turns.does_not_exist() | (self.table.turns < self.limit),
            )
        except UpdateError as error:
            if condition_failed(error):
                return False
            raise
        return True
