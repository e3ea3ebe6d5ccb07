"""Every created_at the endpoint sends carries a UTC offset.

The SDK stamps new threads and items with naive local times (`datetime.now()`), which JSON
carries without an offset: a browser would read them in its own time zone. The store keeps
them as they were given, by instant; this module is where they leave in UTC, so a streamed
item and the same item loaded later show the same time everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chatkit.types import (
    Page,
    Thread,
    ThreadCreatedEvent,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadUpdatedEvent,
)
from pydantic import BaseModel


def utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive time is read as the machine's local time."""
    return moment.astimezone(UTC)


def with_utc_times(payload: BaseModel) -> BaseModel:
    """A copy of a response or event whose created_at values are in UTC (others unchanged)."""
    match payload:
        case ThreadCreatedEvent(thread=thread) | ThreadUpdatedEvent(thread=thread):
            return payload.model_copy(update={"thread": with_utc_times(thread)})
        case (
            ThreadItemAddedEvent(item=item)
            | ThreadItemDoneEvent(item=item)
            | ThreadItemReplacedEvent(item=item)
        ):
            return payload.model_copy(update={"item": _stamped(item)})
        case Thread(items=items, created_at=created_at):
            update: dict[str, Any] = {"created_at": utc(created_at)}
            update["items"] = items.model_copy(update={"data": [_stamped(i) for i in items.data]})
            return payload.model_copy(update=update)
        case Page(data=data):
            return payload.model_copy(update={"data": [_stamped(entry) for entry in data]})
        case _:
            return payload


def _stamped(entry: Any) -> Any:
    if isinstance(entry, Thread):
        return with_utc_times(entry)
    created_at = getattr(entry, "created_at", None)
    if isinstance(entry, BaseModel) and isinstance(created_at, datetime):
        return entry.model_copy(update={"created_at": utc(created_at)})
    return entry
