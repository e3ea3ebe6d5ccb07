"""The REST API on a user's conversations: list, read, rename, delete, export.

The routes under `/api/conversations` take the caller from the bearer token (`CurrentUser`,
as `POST /chatkit` does) and reach threads only through the ChatKit store with it, so another
user's conversation is never found (404); each request is logged and measured as a ChatKit
request is (`RecordedRoute`). Lists are paged with opaque cursors
(`handlers.paging`); items are served as the ChatKit endpoint serves them
(`handlers.transcript`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from chatkit.server import ChatKitServer
from chatkit.store import NotFoundError
from chatkit.types import Page, ThreadItem
from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, Field

from agent.server import AssistantServer
from errors import InvalidRequestError, LimitExceededError
from handlers.dependencies import CurrentUser, Server, ThreadStore
from handlers.paging import (
    DEFAULT_LIMIT,
    EXPORT_PAGE_SIZE,
    MAX_LIMIT,
    Order,
    decode_cursor,
    every_page,
    next_cursor,
)
from handlers.recorded_route import RecordedRoute
from handlers.transcript import (
    Conversation,
    conversation_of,
    export_filename,
    item_json,
    json_export,
    markdown_export,
    shown_items,
)
from settings import RequestLimits
from store import RequestContext
from store.keys import MAX_ID_LENGTH

router = APIRouter(prefix="/api/conversations", tags=["conversations"], route_class=RecordedRoute)

ConversationId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=r"^[^#]+$",
        description="The conversation's id (the ChatKit thread id).",
    ),
]
Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="At most this many entries on the page.")
]
Cursor = Annotated[
    str | None,
    Query(description="`next_cursor` of the previous page; leave out for the first page."),
    AfterValidator(lambda cursor: None if cursor is None else decode_cursor(cursor)),
]
ExportFormat = Literal["json", "markdown"]
EXPORT_MEDIA_TYPES = {"json": "application/json", "markdown": "text/markdown; charset=utf-8"}
EXPORT_EXTENSIONS = {"json": "json", "markdown": "md"}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A parameter is invalid (the message says which)."},
    401: {"description": "No valid bearer token."},
    404: {"description": "The caller has no conversation with this id."},
    503: {"description": "Storage unavailable; try again (Retry-After)."},
}


class ConversationPage(BaseModel):
    """A page of conversations; `next_cursor` asks for the next one."""

    data: list[Conversation]
    has_more: bool
    next_cursor: str | None


class ItemPage(BaseModel):
    """A page of a conversation's items (user and assistant messages, widgets, workflows...).

    Items the chat does not show (hidden context) are left out, so a page may hold fewer
    than `limit` items and still have more after it.
    """

    data: list[ThreadItem]
    has_more: bool
    next_cursor: str | None


class ConversationWithItems(Conversation):
    items: ItemPage


@dataclass(frozen=True)
class PageAsked:
    """The page of a list the caller asks for: at most `limit` entries, after `cursor`."""

    limit: int
    cursor: str | None  # decoded


def page_asked(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> PageAsked:
    """The `limit` and `cursor` query parameters of a paged list."""
    return PageAsked(limit, cursor)


Paging = Annotated[PageAsked, Depends(page_asked)]


class Rename(BaseModel):
    title: str = Field(min_length=1, description="The new title (not blank).")


@router.get("", responses=ERRORS)
async def list_conversations(
    user: CurrentUser, store: ThreadStore, asked: Paging, order: Order = "desc"
) -> ConversationPage:
    """The caller's conversations, newest first (`order=asc`: oldest first)."""
    page = await _paged(store.load_threads(asked.limit, asked.cursor, order, user), asked)
    return ConversationPage(
        data=[conversation_of(thread) for thread in page.data],
        has_more=page.has_more,
        next_cursor=next_cursor(page),
    )


@router.get("/{conversation_id}", response_model=ConversationWithItems, responses=ERRORS)
async def read_conversation(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: ThreadStore,
    asked: Paging,
    order: Order = "asc",
) -> Response:
    """The conversation with a page of its items, oldest first (`order=desc`: newest first)."""
    thread = await store.load_thread(conversation_id, user)
    items = store.load_thread_items(thread.id, asked.cursor, asked.limit, order, user)
    page = await _paged(items, asked)
    body = conversation_of(thread).model_dump(mode="json")
    body["items"] = {
        "data": [item_json(item) for item in shown_items(page.data)],
        "has_more": page.has_more,
        "next_cursor": next_cursor(page),
    }
    return JSONResponse(body)


@router.patch("/{conversation_id}", responses=ERRORS)
async def rename_conversation(
    conversation_id: ConversationId,
    rename: Annotated[Rename, Body()],
    user: CurrentUser,
    store: ThreadStore,
    server: Server,
) -> Conversation:
    """Give the conversation a new title."""
    title = rename.title.strip()
    limit = _title_limit(server)
    if not title:
        raise InvalidRequestError("A title cannot be blank.")
    if len(title) > limit:
        raise LimitExceededError(f"A title can be at most {limit} characters long.")
    thread = await store.load_thread(conversation_id, user)
    thread.title = title
    await store.save_thread(thread, user)
    return conversation_of(thread)


@router.delete("/{conversation_id}", status_code=204, responses=ERRORS)
async def delete_conversation(
    conversation_id: ConversationId, user: CurrentUser, store: ThreadStore
) -> Response:
    """Delete the conversation, its items and its attachments.

    Deleting it again answers 204 too, while its deletion is remembered (two days).
    """
    await store.delete_thread(conversation_id, user)
    return Response(status_code=204)


@router.get(
    "/{conversation_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The whole conversation as a file (Content-Disposition: attachment).",
            "content": {media_type: {} for media_type in EXPORT_MEDIA_TYPES.values()},
        },
        **ERRORS,
    },
)
async def export_conversation(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: ThreadStore,
    format: Annotated[ExportFormat, Query(description="json or markdown")] = "json",
) -> StreamingResponse:
    """The whole conversation as a file to download: every item the chat shows, in order.

    JSON: `{"format", "conversation", "items"}` with items as `GET` returns them. Markdown:
    a transcript. Written page by page as the items are read.
    """
    thread = await store.load_thread(conversation_id, user)
    conversation = conversation_of(thread)

    async def load(after: str | None) -> Page[ThreadItem]:
        return await store.load_thread_items(thread.id, after, EXPORT_PAGE_SIZE, "asc", user)

    pages = every_page(load, first=await load(None))
    export = json_export if format == "json" else markdown_export
    chunks = export(conversation, pages)
    name = export_filename(conversation, EXPORT_EXTENSIONS[format])
    return StreamingResponse(
        chunks,
        media_type=EXPORT_MEDIA_TYPES[format],
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


async def _paged[T](load: Awaitable[Page[T]], asked: PageAsked) -> Page[T]:
    """The page `load` (a store call) returns; a cursor whose element is gone is a 400."""
    try:
        page = await load
    except NotFoundError:
        if asked.cursor is None:
            raise
        raise InvalidRequestError("The cursor no longer points into this list.") from None
    return page


def _title_limit(server: ChatKitServer[RequestContext]) -> int:
    """The longest title `threads.update` accepts, so both ways of renaming agree."""
    limits = server.request_limits if isinstance(server, AssistantServer) else RequestLimits()
    return limits.max_title_chars
