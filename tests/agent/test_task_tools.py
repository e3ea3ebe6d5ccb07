"""The task assistant: its function tools, the task list widget, and the widget's buttons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from agents import FunctionTool
from agents.tool_context import ToolContext
from chatkit.actions import Action
from chatkit.server import StreamingResult
from chatkit.types import (
    ErrorEvent,
    HiddenContextItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    WidgetItem,
)
from chatkit.widgets import DynamicWidgetComponent, StrictWidgetRoot, WidgetRoot
from pydantic import BaseModel, TypeAdapter

from agent.context import AssistantContext
from agent.server import AssistantServer
from agent.tasks import (
    TASK_INSTRUCTIONS,
    TASK_TOOLS,
    add_task,
    complete_task,
    delete_task,
    handle_task_action,
    list_tasks,
)
from agent.widgets import EMPTY_TEXT, task_list_widget
from store import DynamoDBStore, RequestContext, TaskStore
from store.tasks import TaskRecord

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
THREAD = ThreadMetadata(id="thr_tasks", created_at=T0, title="Tasks")


def agent_context(store: DynamoDBStore, tasks: TaskStore, user: RequestContext) -> AssistantContext:
    return AssistantContext(thread=THREAD, store=store, request_context=user, tasks=tasks)


async def invoke(tool: FunctionTool, context: AssistantContext, **arguments: Any) -> Any:
    """Call the tool the way the Agents SDK runner does, with JSON arguments from the model."""
    raw = json.dumps(arguments)
    tool_context = ToolContext(
        context, tool_name=tool.name, tool_call_id="call_1", tool_arguments=raw
    )
    return await tool.on_invoke_tool(tool_context, raw)


def streamed(context: AssistantContext) -> list[ThreadStreamEvent]:
    """The events the tools queued for stream_agent_response."""
    events: list[ThreadStreamEvent] = []
    while not context._events.empty():
        event = context._events.get_nowait()
        assert isinstance(event, BaseModel)
        events.append(event)  # type: ignore[arg-type]
    return events


def widgets_streamed(context: AssistantContext) -> list[ThreadItemDoneEvent]:
    """The widget items the tools finished (the workflow showing their progress aside)."""
    return [
        event
        for event in streamed(context)
        if isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, WidgetItem)
    ]


def task(number: int, title: str, done: bool = False) -> TaskRecord:
    return TaskRecord(
        number=number,
        title=title,
        done=done,
        created_at=T0,
        completed_at=T0 if done else None,
    )


# -- reading widgets -------------------------------------------------------------------------


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    children = node.get("children")
    if children is None:
        return []
    return children if isinstance(children, list) else [children]


def nodes(widget: WidgetRoot | dict[str, Any], node_type: str) -> list[dict[str, Any]]:
    """Every component of `node_type` in the widget, in document order."""
    root = widget if isinstance(widget, dict) else widget.model_dump()
    found: list[dict[str, Any]] = []
    pending = [root]
    while pending:
        node = pending.pop(0)
        if node.get("type") == node_type:
            found.append(node)
        pending[:0] = _children(node)
    return found


def header(widget: WidgetRoot) -> str:
    return str(nodes(widget, "Caption")[0]["value"])


def rows(widget: WidgetRoot) -> list[dict[str, Any]]:
    """The task rows: number label, title, whether shown done, and the buttons' actions."""
    found = []
    for row in nodes(widget, "Row"):
        if not str(row.get("key", "")).startswith("task-"):
            continue
        label, title = (text for text in nodes(row, "Text"))
        found.append(
            {
                "label": label["value"],
                "title": title["value"],
                "struck": title.get("lineThrough", False),
                "icon": nodes(row, "Icon")[0]["name"],
                "buttons": [
                    (
                        button["label"],
                        button["onClickAction"]["type"],
                        button["onClickAction"]["payload"],
                    )
                    for button in nodes(row, "Button")
                ],
            }
        )
    return found


# -- widget ----------------------------------------------------------------------------------


def test_empty_list_widget_invites_adding_a_task() -> None:
    widget = task_list_widget([])

    assert header(widget) == "0 tasks, 0 done"
    assert EMPTY_TEXT in [text["value"] for text in nodes(widget, "Text")]
    assert rows(widget) == []
    assert nodes(widget, "Button") == []


def test_widget_with_one_open_task() -> None:
    widget = task_list_widget([task(4, "buy milk")])

    assert header(widget) == "1 task, 0 done"
    assert rows(widget) == [
        {
            "label": "#4",
            "title": "buy milk",
            "struck": False,
            "icon": "empty-circle",
            "buttons": [
                ("Complete", "tasks.complete", {"number": 4}),
                ("Delete", "tasks.delete", {"number": 4}),
            ],
        }
    ]
    assert EMPTY_TEXT not in [text["value"] for text in nodes(widget, "Text")]


def test_widget_with_several_tasks_shows_done_ones_distinctly() -> None:
    widget = task_list_widget([task(1, "buy milk"), task(2, "call mum", done=True), task(5, "x")])

    assert header(widget) == "3 tasks, 1 done"
    listed = rows(widget)
    assert [(row["label"], row["title"]) for row in listed] == [
        ("#1", "buy milk"),
        ("#2", "call mum"),
        ("#5", "x"),
    ]
    assert [(row["struck"], row["icon"]) for row in listed] == [
        (False, "empty-circle"),
        (True, "check-circle-filled"),
        (False, "empty-circle"),
    ]
    assert listed[1]["buttons"] == [
        ("Reopen", "tasks.reopen", {"number": 2}),
        ("Delete", "tasks.delete", {"number": 2}),
    ]


def test_buttons_are_server_actions() -> None:
    widget = task_list_widget([task(1, "buy milk")])

    assert {button["onClickAction"]["handler"] for button in nodes(widget, "Button")} == {"server"}


def test_titles_are_shown_verbatim() -> None:
    title = 'a "quoted" <b>title</b> & {{ 7 * 7 }} — ünïcode'

    widget = task_list_widget([task(1, title)])

    assert rows(widget)[0]["title"] == title


def _components(component: Any) -> Iterator[Any]:
    yield component
    children = getattr(component, "children", None) or []
    for child in children if isinstance(children, list) else [children]:
        yield from _components(child)


def test_widget_is_valid_for_chatkits_typed_components() -> None:
    # The template is JSON text; checking it against chatkit's typed components catches a
    # misspelt prop or an unknown token that a dynamic widget would silently carry.
    widget = task_list_widget([task(1, "buy milk"), task(2, "call mum", done=True)])
    dumped = _without_null_children(widget.model_dump())

    typed = TypeAdapter[Any](StrictWidgetRoot).validate_python(dumped)

    assert not [c for c in _components(typed) if type(c) is DynamicWidgetComponent]
    assert _without_null_children(typed.model_dump()) == dumped


def _without_null_children(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_null_children(value)
            for key, value in node.items()
            if not (key == "children" and value is None)
        }
    if isinstance(node, list):
        return [_without_null_children(value) for value in node]
    return node


# -- tools -----------------------------------------------------------------------------------


def test_tools_are_named_for_the_model() -> None:
    assert [tool.name for tool in TASK_TOOLS] == [
        "add_task",
        "list_tasks",
        "complete_task",
        "delete_task",
    ]
    assert "list_tasks" in TASK_INSTRUCTIONS and "widget" in TASK_INSTRUCTIONS


async def test_add_task_reports_the_new_number(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    context = agent_context(store, tasks, alice)
    await invoke(add_task, context, title="buy milk")

    result = await invoke(add_task, context, title="  call mum ")

    assert result == "Added task #2: call mum"
    assert [saved.title for saved in await tasks.load_tasks(alice)] == ["buy milk", "call mum"]


async def test_add_task_with_a_blank_title_tells_the_model_why(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    result = await invoke(add_task, agent_context(store, tasks, alice), title="   ")

    assert result == "Task not added: task title must not be empty."
    assert await tasks.load_tasks(alice) == []


async def test_complete_task_marks_it_done(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    await tasks.add("buy milk", alice)

    result = await invoke(complete_task, agent_context(store, tasks, alice), number=1)

    assert result.startswith("Completed task #1: buy milk (done ")  # in the user's time zone
    assert [saved.done for saved in await tasks.load_tasks(alice)] == [True]


async def test_delete_task_removes_it(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    await tasks.add("buy milk", alice)
    await tasks.add("call mum", alice)

    result = await invoke(delete_task, agent_context(store, tasks, alice), number=1)

    assert result == "Deleted task #1: buy milk"
    assert [saved.number for saved in await tasks.load_tasks(alice)] == [2]


@pytest.mark.parametrize("tool", [complete_task, delete_task])
async def test_missing_task_is_a_normal_tool_result(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext, tool: FunctionTool
) -> None:
    result = await invoke(tool, agent_context(store, tasks, alice), number=9)

    assert result == "Task 9 does not exist"


@pytest.mark.parametrize("tool", [complete_task, delete_task])
async def test_tools_never_reach_another_users_tasks(
    store: DynamoDBStore,
    tasks: TaskStore,
    alice: RequestContext,
    bob: RequestContext,
    tool: FunctionTool,
) -> None:
    await tasks.add("alice's", alice)

    result = await invoke(tool, agent_context(store, tasks, bob), number=1)

    assert result == "Task 1 does not exist"
    assert [(saved.title, saved.done) for saved in await tasks.load_tasks(alice)] == [
        ("alice's", False)
    ]


async def test_list_tasks_streams_the_widget_and_tells_the_model_not_to_repeat_it(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    await tasks.add("buy milk", alice)
    await tasks.add("call mum", alice)
    await tasks.complete(2, alice)
    context = agent_context(store, tasks, alice)

    result = await invoke(list_tasks, context)

    [event] = widgets_streamed(context)
    assert isinstance(event.item, WidgetItem)
    assert event.item.thread_id == THREAD.id
    assert header(event.item.widget) == "2 tasks, 1 done"
    assert [(row["title"], row["struck"]) for row in rows(event.item.widget)] == [
        ("buy milk", False),
        ("call mum", True),
    ]
    assert event.item.copy_text == "2 tasks, 1 done\n#1 [ ] buy milk\n#2 [x] call mum"
    assert "shown to the user as a widget" in result and "Do not repeat" in result
    assert "#1 buy milk (open, added " in result and "#2 call mum (done, added " in result


async def test_list_tasks_with_no_tasks_shows_the_empty_widget(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    context = agent_context(store, tasks, alice)

    result = await invoke(list_tasks, context)

    [event] = widgets_streamed(context)
    assert isinstance(event.item, WidgetItem)
    assert rows(event.item.widget) == []
    assert "empty" in result and "widget" in result


async def test_list_tasks_shows_only_the_callers_tasks(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext, bob: RequestContext
) -> None:
    await tasks.add("alice's", alice)
    await tasks.add("bob's", bob)
    context = agent_context(store, tasks, bob)

    await invoke(list_tasks, context)

    [event] = widgets_streamed(context)
    assert isinstance(event.item, WidgetItem)
    assert [row["title"] for row in rows(event.item.widget)] == ["bob's"]


# -- widget actions --------------------------------------------------------------------------


class Ids:
    """Hands out predictable item ids and records what they were asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, item_type: str) -> str:
        self.asked.append(item_type)
        return f"msg_hidden_{len(self.asked)}"


def sender_of(listed: list[TaskRecord]) -> WidgetItem:
    return WidgetItem(
        id="msg_list", thread_id=THREAD.id, created_at=T0, widget=task_list_widget(listed)
    )


async def run_action(
    tasks: TaskStore,
    user: RequestContext,
    action_type: str,
    payload: Any,
    sender: WidgetItem | None,
    ids: Ids | None = None,
) -> list[ThreadStreamEvent]:
    action = Action[str, Any](type=action_type, payload=payload)
    return [
        event
        async for event in handle_task_action(THREAD, action, sender, user, tasks, ids or Ids())
    ]


@pytest.fixture
async def two_tasks(tasks: TaskStore, alice: RequestContext) -> WidgetItem:
    await tasks.add("buy milk", alice)
    await tasks.add("call mum", alice)
    return sender_of(await tasks.load_tasks(alice))


async def test_complete_button_replaces_the_widget_in_place_and_tells_the_model(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem
) -> None:
    ids = Ids()

    replaced, done = await run_action(tasks, alice, "tasks.complete", {"number": 2}, two_tasks, ids)

    assert isinstance(replaced, ThreadItemReplacedEvent) and isinstance(replaced.item, WidgetItem)
    assert (replaced.item.id, replaced.item.created_at) == (two_tasks.id, two_tasks.created_at)
    assert header(replaced.item.widget) == "2 tasks, 1 done"
    assert rows(replaced.item.widget)[1]["struck"] is True
    assert rows(replaced.item.widget)[1]["buttons"][0] == ("Reopen", "tasks.reopen", {"number": 2})
    assert isinstance(done, ThreadItemDoneEvent) and isinstance(done.item, HiddenContextItem)
    assert done.item.content == "The user marked task #2 'call mum' as done via the widget."
    assert (done.item.id, done.item.thread_id, ids.asked) == (
        "msg_hidden_1",
        THREAD.id,
        ["message"],
    )
    assert [saved.done for saved in await tasks.load_tasks(alice)] == [False, True]


async def test_reopen_button_reopens_the_task(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem
) -> None:
    await tasks.complete(1, alice)

    replaced, done = await run_action(tasks, alice, "tasks.reopen", {"number": 1}, two_tasks)

    assert isinstance(replaced, ThreadItemReplacedEvent) and isinstance(replaced.item, WidgetItem)
    assert header(replaced.item.widget) == "2 tasks, 0 done"
    assert isinstance(done, ThreadItemDoneEvent) and isinstance(done.item, HiddenContextItem)
    assert done.item.content == "The user reopened task #1 'buy milk' via the widget."


async def test_delete_button_removes_the_row(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem
) -> None:
    replaced, done = await run_action(tasks, alice, "tasks.delete", {"number": 1}, two_tasks)

    assert isinstance(replaced, ThreadItemReplacedEvent) and isinstance(replaced.item, WidgetItem)
    assert [row["label"] for row in rows(replaced.item.widget)] == ["#2"]
    assert isinstance(done, ThreadItemDoneEvent) and isinstance(done.item, HiddenContextItem)
    assert done.item.content == "The user deleted task #1 'buy milk' via the widget."
    assert [saved.number for saved in await tasks.load_tasks(alice)] == [2]


@pytest.mark.parametrize("action_type", ["tasks.complete", "tasks.delete"])
async def test_button_of_a_task_that_no_longer_exists_refreshes_the_widget(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem, action_type: str
) -> None:
    await tasks.delete(2, alice)  # e.g. the model deleted it after the widget was shown

    replaced, done = await run_action(tasks, alice, action_type, {"number": 2}, two_tasks)

    assert isinstance(replaced, ThreadItemReplacedEvent) and isinstance(replaced.item, WidgetItem)
    assert [row["label"] for row in rows(replaced.item.widget)] == ["#1"]
    assert isinstance(done, ThreadItemDoneEvent) and isinstance(done.item, HiddenContextItem)
    verb = action_type.removeprefix("tasks.")
    assert done.item.content == (
        f"The user tried to {verb} task #2 via the widget, but it no longer exists."
    )


async def test_button_never_reaches_another_users_task(
    tasks: TaskStore, alice: RequestContext, bob: RequestContext, two_tasks: WidgetItem
) -> None:
    replaced, done = await run_action(tasks, bob, "tasks.delete", {"number": 1}, two_tasks)

    assert isinstance(replaced, ThreadItemReplacedEvent) and isinstance(replaced.item, WidgetItem)
    assert rows(replaced.item.widget) == []
    assert isinstance(done, ThreadItemDoneEvent) and isinstance(done.item, HiddenContextItem)
    assert "no longer exists" in done.item.content
    assert [saved.number for saved in await tasks.load_tasks(alice)] == [1, 2]


@pytest.mark.parametrize(
    "payload",
    [None, {}, [1], {"number": "1"}, {"number": 1.0}, {"number": True}, {"number": 0}],
)
async def test_bad_payload_is_an_error_and_changes_nothing(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem, payload: Any
) -> None:
    events = await run_action(tasks, alice, "tasks.delete", payload, two_tasks)

    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert events[0].message is not None and '{"number"' in events[0].message
    assert [saved.number for saved in await tasks.load_tasks(alice)] == [1, 2]


async def test_unknown_action_is_an_error(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem
) -> None:
    events = await run_action(tasks, alice, "tasks.rename", {"number": 1}, two_tasks)

    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert events[0].message == "Unknown task action 'tasks.rename'."


async def test_action_without_a_sender_is_an_error(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem
) -> None:
    events = await run_action(tasks, alice, "tasks.delete", {"number": 1}, None)

    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert [saved.number for saved in await tasks.load_tasks(alice)] == [1, 2]


async def test_action_from_another_widget_is_an_error(
    tasks: TaskStore, alice: RequestContext, two_tasks: WidgetItem
) -> None:
    other = two_tasks.model_copy(
        update={
            "widget": TypeAdapter[Any](StrictWidgetRoot).validate_python(
                {"type": "Card", "children": []}
            )
        }
    )

    events = await run_action(tasks, alice, "tasks.delete", {"number": 1}, other)

    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert [saved.number for saved in await tasks.load_tasks(alice)] == [1, 2]


# -- through the server --------------------------------------------------------------------


async def test_button_click_round_trip_through_the_server(
    server: AssistantServer,
    store: DynamoDBStore,
    tasks: TaskStore,
    alice: RequestContext,
    two_tasks: WidgetItem,
) -> None:
    await store.save_thread(THREAD, alice)
    await store.add_thread_item(THREAD.id, two_tasks, alice)
    request = {
        "type": "threads.custom_action",
        "params": {
            "thread_id": THREAD.id,
            "item_id": two_tasks.id,
            "action": {"type": "tasks.complete", "payload": {"number": 1}},
        },
    }

    result = await server.process(json.dumps(request), alice)

    assert isinstance(result, StreamingResult)
    sent = [json.loads(chunk.decode().removeprefix("data: ")) async for chunk in result]
    assert [event["type"] for event in sent] == ["stream_options", "thread.item.replaced"]
    saved_widget = await store.load_item(THREAD.id, two_tasks.id, alice)
    assert isinstance(saved_widget, WidgetItem)
    assert [row["struck"] for row in rows(saved_widget.widget)] == [True, False]
    items = (await store.load_thread_items(THREAD.id, None, 10, "asc", alice)).data
    hidden = [item for item in items if isinstance(item, HiddenContextItem)]
    assert [item.content for item in hidden] == [
        "The user marked task #1 'buy milk' as done via the widget."
    ]
