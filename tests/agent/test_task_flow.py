"""Tools and widgets end to end: the offline model calls the task tools, the list streams as a
widget, and the widget's buttons change tasks in place and tell the model what happened."""

from __future__ import annotations

from typing import Any

from chatkit.types import HiddenContextItem, WidgetItem

from agent.offline_model import OfflineModel
from agent.providers import Models
from agent.server import AssistantServer
from store import DynamoDBStore, RequestContext
from store.tasks import TaskStore
from tests.agent.conftest import (
    add_message,
    all_items,
    assistant_text,
    call,
    create_thread,
    of_type,
    stream,
    widget_item,
)


class RecordingModel(OfflineModel):
    """The offline model, keeping every input it was given."""

    def __init__(self) -> None:
        super().__init__(0)
        self.inputs: list[Any] = []

    def stream_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> Any:
        self.inputs.append(input)
        return super().stream_response(system_instructions, input, *args, **kwargs)


def widget_action(
    request_type: str, thread_id: str, widget_id: str, action: dict[str, Any]
) -> dict[str, Any]:
    """A press of a button of widget `widget_id` (`threads.custom_action` or its sync form)."""
    params = {"thread_id": thread_id, "item_id": widget_id, "action": action}
    return {"type": request_type, "params": params}


async def listed_task(server: AssistantServer, title: str, user: RequestContext) -> tuple[str, str]:
    """A new thread in which `user` added a task and asked for the list: the thread's id and
    the task list widget's."""
    created = await stream(server, create_thread(f"add a task to {title}"), user)
    thread_id = created[0]["thread"]["id"]
    listed = await stream(server, add_message(thread_id, "show my tasks"), user)
    return thread_id, widget_item(listed)["id"]


async def test_adding_listing_and_completing_tasks_from_the_widget(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    model = RecordingModel()
    server = AssistantServer(store, tasks, Models("offline", model, None, None))

    created = await stream(server, create_thread("add a task to buy milk"), alice)
    thread_id = created[0]["thread"]["id"]
    assert "#1" in assistant_text(created) and "buy milk" in assistant_text(created)
    await stream(server, add_message(thread_id, "add a task to call mom"), alice)

    listed = await stream(server, add_message(thread_id, "show my tasks"), alice)
    widget_events = [
        event for event in of_type(listed, "thread.item.done") if event["item"]["type"] == "widget"
    ]
    assert len(widget_events) == 1
    widget_id = widget_events[0]["item"]["id"]
    assert "buy milk" in str(widget_events[0]["item"]["widget"])
    assert "buy milk" not in assistant_text(listed)  # the model does not repeat the list

    complete = {"type": "tasks.complete", "payload": {"number": 1}}
    acted = await stream(
        server, widget_action("threads.custom_action", thread_id, widget_id, complete), alice
    )

    replaced = of_type(acted, "thread.item.replaced")
    assert [event["item"]["id"] for event in replaced] == [widget_id]
    assert of_type(acted, "error") == []
    assert all(event.get("item", {}).get("type") != "hidden_context_item" for event in acted)
    assert [task.done for task in await tasks.load_tasks(alice)] == [True, False]
    items = await all_items(store, thread_id, alice)
    saved_widget = next(item for item in items if item.id == widget_id)
    assert isinstance(saved_widget, WidgetItem)
    assert saved_widget.copy_text == replaced[0]["item"]["copy_text"]
    assert "[x] buy milk" in str(saved_widget.copy_text)
    hidden = [item for item in items if isinstance(item, HiddenContextItem)]
    assert len(hidden) == 1 and "buy milk" in str(hidden[0].content)

    await stream(server, add_message(thread_id, "thanks"), alice)
    assert "buy milk" in str(model.inputs[-1]) and "Hidden context" in str(model.inputs[-1])


async def test_widget_buttons_also_work_synchronously(
    server: AssistantServer, store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    thread_id, widget_id = await listed_task(server, "water plants", alice)

    delete = {"type": "tasks.delete", "payload": {"number": 1}}
    answer = await call(
        server, widget_action("threads.sync_custom_action", thread_id, widget_id, delete), alice
    )

    assert answer["updated_item"]["id"] == widget_id
    assert await tasks.load_tasks(alice) == []
    assert any(
        isinstance(item, HiddenContextItem) for item in await all_items(store, thread_id, alice)
    )


async def test_users_never_see_each_others_tasks(
    server: AssistantServer, tasks: TaskStore, alice: RequestContext, bob: RequestContext
) -> None:
    await stream(server, create_thread("add a task to buy milk"), alice)

    listed = await stream(server, create_thread("show my tasks"), bob)

    widget = widget_item(listed)["widget"]
    assert "buy milk" not in str(widget)
    assert await tasks.load_tasks(bob) == []


async def test_a_bad_action_payload_changes_nothing(
    server: AssistantServer, tasks: TaskStore, alice: RequestContext
) -> None:
    thread_id, widget_id = await listed_task(server, "buy milk", alice)

    complete = {"type": "tasks.complete", "payload": {"number": "one"}}
    acted = await stream(
        server, widget_action("threads.custom_action", thread_id, widget_id, complete), alice
    )

    assert of_type(acted, "error")
    assert [task.done for task in await tasks.load_tasks(alice)] == [False]
