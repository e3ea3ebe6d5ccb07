"""A per-user limit on turns per day, counted atomically in the single table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio.to_thread
from pynamodb.exceptions import UpdateError

from store.context import RequestContext
from store.errors import unavailable_on_aws_errors
from store.table import TableRecord, quota_pk


class TurnQuota:
    """At most `limit` turns per user per UTC day; the counter rows expire by TTL."""

    def __init__(self, table: type[TableRecord], limit: int) -> None:
        self.table = table
        self.limit = limit

    async def take(self, context: RequestContext) -> bool:
        """Count one turn; False (and nothing counted) when the day's limit is reached."""
        return await anyio.to_thread.run_sync(self._take, context.user_id)

    def _take(self, user_id: str) -> bool:
        today = datetime.now(UTC)
        row = self.table(quota_pk(user_id), f"D#{today:%Y-%m-%d}")
        try:
            with unavailable_on_aws_errors():
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
            if error.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True
