"""The exported conversation: every item type as the widget shows it, nothing hidden leaves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone

from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    ClientToolCallItem,
    CustomSummary,
    CustomTask,
    DurationSummary,
    EndOfTurnItem,
    FileAttachment,
    FileSource,
    GeneratedImage,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    InferenceOptions,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputAnswer,
    StructuredInputFreeform,
    StructuredInputItem,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    ThreadMetadata,
    URLSource,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from chatkit.widgets import Card, Text, Title

from handlers.transcript import (
    EXPORT_FORMAT,
    Conversation,
    conversation_of,
    export_filename,
    item_json,
    item_markdown,
    json_export,
    markdown_export,
    markdown_heading,
)

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
THREAD = "thr_export"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def user(
    text: str, *, attachments: Sequence[FileAttachment | ImageAttachment] = ()
) -> UserMessageItem:
    return UserMessageItem(
        id="msg_user",
        thread_id=THREAD,
        created_at=at(1),
        content=[UserMessageTextContent(text=text)],
        attachments=list(attachments),
        inference_options=InferenceOptions(),
    )


def assistant(text: str, item_id: str = "msg_answer") -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=THREAD,
        created_at=at(2),
        content=[AssistantMessageContent(text=text)],
    )


def file_attachment() -> FileAttachment:
    return FileAttachment(
        id="atc_notes",
        name="notes.txt",
        mime_type="text/plain",
        thread_id=THREAD,
        metadata={"attached": True, "upload_key": "uploads/alice/atc_notes/notes.txt"},
    )


def widget() -> WidgetItem:
    card = Card(children=[Title(value="2 tasks, 1 done"), Text(value="#1 buy milk")])
    return WidgetItem(id="wdg_1", thread_id=THREAD, created_at=at(3), widget=card)


def workflow() -> WorkflowItem:
    tasks = [
        CustomTask(title="Adding 'buy milk'", content="Added task #1"),
        ThoughtTask(title="Thinking", content="The user wants a task."),
    ]
    flow = Workflow(type="custom", tasks=tasks, summary=CustomSummary(title="Task assistant"))
    return WorkflowItem(id="wf_1", thread_id=THREAD, created_at=at(4), workflow=flow)


def hidden() -> list[ThreadItem]:
    return [
        HiddenContextItem(id="hc_1", thread_id=THREAD, created_at=at(5), content="secret note"),
        SDKHiddenContextItem(id="hc_2", thread_id=THREAD, created_at=at(6), content="sdk note"),
    ]


async def pages_of(*pages: list[ThreadItem]) -> AsyncIterator[list[ThreadItem]]:
    for page in pages:
        yield page


async def collected(chunks: AsyncIterator[bytes]) -> str:
    return b"".join([chunk async for chunk in chunks]).decode()


def conversation(title: str | None = "Groceries") -> Conversation:
    return conversation_of(ThreadMetadata(id=THREAD, title=title, created_at=T0))


# -- the conversation ---------------------------------------------------------------------


def test_conversation_leaves_without_thread_metadata() -> None:
    thread = ThreadMetadata(id=THREAD, created_at=T0, metadata={"specialist": "tasks"})

    dumped = conversation_of(thread).model_dump(mode="json")

    assert "metadata" not in dumped
    assert dumped == {
        "id": THREAD,
        "title": None,
        "created_at": "2026-11-01T12:00:00Z",
        "status": {"type": "active"},
    }


def test_naive_and_offset_times_leave_in_utc() -> None:
    plus_two = datetime(2026, 11, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    thread = ThreadMetadata(id=THREAD, created_at=plus_two)

    assert conversation_of(thread).created_at == T0
    naive = user("hi").model_copy(update={"created_at": datetime(2026, 11, 1, 12, 0)})
    assert item_json(naive)["created_at"].endswith("Z")


# -- JSON -----------------------------------------------------------------------------------


def test_item_json_leaves_out_attachment_metadata_and_nulls() -> None:
    dumped = item_json(user("read this", attachments=[file_attachment()]))

    assert dumped["attachments"] == [
        {
            "id": "atc_notes",
            "name": "notes.txt",
            "mime_type": "text/plain",
            "thread_id": THREAD,
            "type": "file",
        }
    ]
    assert "quoted_text" not in dumped


async def test_json_export_holds_every_shown_item_across_pages() -> None:
    pages = pages_of([user("hi"), *hidden()], [], [assistant("hello"), widget(), workflow()])

    document = json.loads(await collected(json_export(conversation(), pages)))

    assert document["format"] == EXPORT_FORMAT
    assert document["conversation"]["title"] == "Groceries"
    assert [item["type"] for item in document["items"]] == [
        "user_message",
        "assistant_message",
        "widget",
        "workflow",
    ]


async def test_json_export_of_an_empty_conversation_is_valid_json() -> None:
    document = json.loads(await collected(json_export(conversation(None), pages_of([]))))

    assert document["items"] == [] and document["conversation"]["title"] is None


async def test_json_export_keeps_non_ascii_text() -> None:
    text = await collected(json_export(conversation("買い物"), pages_of([user("牛乳を買う")])))

    assert "牛乳を買う" in text and json.loads(text)["conversation"]["title"] == "買い物"


# -- Markdown -------------------------------------------------------------------------------


async def test_markdown_transcript_reads_in_order_with_who_and_when() -> None:
    pages = pages_of([user("add a task to buy milk")], [assistant("Added task #1.")])

    text = await collected(markdown_export(conversation(), pages))

    assert text.startswith("# Groceries\n\nConversation `thr_export`, started 2026-11-01")
    assert "## User · 2026-11-01 12:00:01 UTC\n\nadd a task to buy milk\n" in text
    assert text.index("add a task") < text.index("Added task #1.")


async def test_markdown_leaves_hidden_context_out() -> None:
    text = await collected(markdown_export(conversation(), pages_of(hidden())))

    assert "secret note" not in text and "sdk note" not in text


def test_untitled_conversation_gets_a_heading() -> None:
    assert markdown_heading(conversation(None)).startswith("# Untitled conversation\n")


def test_user_message_lists_its_attachments_quote_and_tags() -> None:
    image = ImageAttachment(
        id="atc_img", name="photo.png", mime_type="image/png", preview_url="https://x.test/p.png"
    )
    message = user("see", attachments=[file_attachment(), image]).model_copy(
        update={
            "quoted_text": "earlier answer",
            "content": [
                UserMessageTextContent(text="ask "),
                UserMessageTagContent(id="t1", text="Alice", data={}),
            ],
        }
    )

    text = item_markdown(message)

    assert "> earlier answer" in text
    assert "ask @Alice" in text
    assert "- notes.txt (text/plain)" in text and "- photo.png (image/png)" in text
    assert "https://x.test" not in text  # preview links expire: a transcript keeps names


def test_assistant_message_lists_its_sources() -> None:
    content = AssistantMessageContent(
        text="See the docs.",
        annotations=[
            Annotation(source=URLSource(title="Docs", url="https://docs.test")),
            Annotation(source=FileSource(title="Notes", filename="notes.txt")),
        ],
    )
    item = assistant("").model_copy(update={"content": [content]})

    text = item_markdown(item)

    assert "See the docs." in text
    assert "- Docs (https://docs.test)" in text and "- Notes (notes.txt)" in text


def test_widget_shows_its_copy_text_or_its_texts() -> None:
    with_copy = widget().model_copy(update={"copy_text": "2 tasks\n#1 [ ] buy milk"})

    assert "#1 [ ] buy milk" in item_markdown(with_copy)
    assert "2 tasks, 1 done\n#1 buy milk" in item_markdown(widget())


def test_copy_text_with_backticks_cannot_break_out_of_its_fence() -> None:
    text = item_markdown(widget().model_copy(update={"copy_text": "a ``` b ```` c"}))

    assert "`````\na ``` b ```` c\n`````" in text


def test_workflow_shows_its_summary_and_tasks() -> None:
    text = item_markdown(workflow())

    assert "**Task assistant**" in text
    assert "- Adding 'buy milk'\n  Added task #1" in text
    assert "- Thinking\n  The user wants a task." in text


def test_reasoning_workflow_with_a_duration() -> None:
    flow = Workflow(type="reasoning", tasks=[], summary=DurationSummary(duration=3))

    text = item_markdown(WorkflowItem(id="wf", thread_id=THREAD, created_at=T0, workflow=flow))

    assert "**Worked for 3 s**" in text


def test_task_item_shows_a_search() -> None:
    task = SearchTask(
        title="Searching",
        queries=["dynamodb lsi"],
        sources=[URLSource(title="AWS", url="https://a")],
    )

    text = item_markdown(TaskItem(id="tsk", thread_id=THREAD, created_at=T0, task=task))

    assert "**Searching**" in text and "searched: dynamodb lsi" in text
    assert "AWS (https://a)" in text


def test_tool_call_structured_input_and_image() -> None:
    call = ClientToolCallItem(
        id="tc",
        thread_id=THREAD,
        created_at=T0,
        call_id="c1",
        name="get_location",
        arguments={"precise": True},
        status="completed",
        output={"city": "Oslo"},
    )
    question = StructuredInputItem(
        id="si",
        thread_id=THREAD,
        created_at=T0,
        status="answered",
        inputs=[
            StructuredInputFreeform(
                id="q1", question="Which city?", answer=StructuredInputAnswer(values=["Oslo"])
            )
        ],
    )
    image = GeneratedImageItem(
        id="img", thread_id=THREAD, created_at=T0, image=GeneratedImage(id="g", url="https://i")
    )

    assert "`get_location` completed" in item_markdown(call)
    assert '{"city": "Oslo"}' in item_markdown(call)
    assert "- Which city? — Oslo" in item_markdown(question)
    assert "Generated image: https://i" in item_markdown(image)


def test_end_of_turn_shows_nothing() -> None:
    assert item_markdown(EndOfTurnItem(id="eot", thread_id=THREAD, created_at=T0)) == ""


def test_export_filename_is_header_safe() -> None:
    odd = conversation_of(ThreadMetadata(id='thr "x"\r\n/../é', created_at=T0))

    name = export_filename(odd, "md")

    assert name.startswith("conversation-thr_") and name.endswith(".md")
    assert all(ch.isalnum() or ch in "._-" for ch in name)
