"""The store as one turn's agent sees it: chatkit's `stream_agent_response` opens by loading
the thread's newest items, and that call is answered from the history `respond` just loaded
(one DynamoDB Query fewer per turn). Every other call goes to the store unchanged."""

from __future__ import annotations

from chatkit.store import Store, StoreItemType
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata

from store import DynamoDBStore, RequestContext


class TurnStore(Store[RequestContext]):
    """`store`, with the first `load_thread_items` of the newest items of `thread_id`
    answered from `history` (the newest items, newest first) when it holds the answer."""

    def __init__(self, store: DynamoDBStore, thread_id: str, history: Page[ThreadItem]) -> None:
        self._store = store
        self._thread_id = thread_id
        self._history: Page[ThreadItem] | None = history

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: RequestContext
    ) -> Page[ThreadItem]:
        """`stream_agent_response`'s look at the newest items (to continue a workflow), from
        the history; later calls, and any the history cannot answer, read the store."""
        history, self._history = self._history, None
        if (
            history is not None
            and thread_id == self._thread_id
            and after is None
            and order == "desc"
            and (limit <= len(history.data) or not history.has_more)
        ):
            data = history.data[:limit]
            has_more = len(history.data) > limit or history.has_more
            return Page(data=data, has_more=has_more, after=data[-1].id if has_more else None)
        return await self._store.load_thread_items(thread_id, after, limit, order, context)

    # -- everything else: the store itself ------------------------------------------------

    def generate_thread_id(self, context: RequestContext) -> str:
        return self._store.generate_thread_id(context)

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: RequestContext
    ) -> str:
        return self._store.generate_item_id(item_type, thread, context)

    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        return await self._store.load_thread(thread_id, context)

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        await self._store.save_thread(thread, context)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        return await self._store.load_threads(limit, after, order, context)

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        await self._store.delete_thread(thread_id, context)

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: RequestContext
    ) -> None:
        await self._store.add_thread_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        await self._store.save_item(thread_id, item, context)

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        return await self._store.load_item(thread_id, item_id, context)

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> None:
        await self._store.delete_thread_item(thread_id, item_id, context)

    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        await self._store.save_attachment(attachment, context)

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        return await self._store.load_attachment(attachment_id, context)

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        await self._store.delete_attachment(attachment_id, context)
