"""What a thread holds after its answer was stopped midway (client gone, deadline reached)."""

from __future__ import annotations

import asyncio

from chatkit.types import AssistantMessageItem, SDKHiddenContextItem

from store import DynamoDBStore, RequestContext


def assert_partial_answer_kept(store: DynamoDBStore, thread_id: str, user: RequestContext) -> None:
    """The thread keeps the answer's text so far, then the hidden note that it was cancelled
    (which the model sees on the next turn)."""
    items = asyncio.run(store.load_thread_items(thread_id, None, 20, "asc", user)).data
    assert [item.type for item in items] == [
        "user_message",
        "workflow",  # triage handing the thread to a specialist
        "assistant_message",
        "sdk_hidden_context",
    ]
    partial, note = items[2], items[3]
    assert isinstance(partial, AssistantMessageItem) and partial.content[0].text.strip()
    assert isinstance(note, SDKHiddenContextItem) and "cancelled" in note.content
