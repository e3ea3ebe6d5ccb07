"""The offline model, driven through the real Agents SDK Runner and ChatKit's stream converter."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import pytest
from agents import Agent, FunctionTool, ModelSettings, RunConfig, Runner, function_tool
from agents.items import ToolCallItem, TResponseInputItem
from agents.models.interface import ModelTracing
from chatkit.agents import AgentContext, stream_agent_response
from chatkit.store import Store
from chatkit.types import (
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    Page,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
)
from openai.types.responses import ResponseOutputMessage, ResponseTextDeltaEvent

from agent.offline_model import OfflineModel
from agent.titles import generate_offline_title

RUN_CONFIG = RunConfig(tracing_disabled=True)
ALL_TOOLS = ("add_task", "list_tasks", "complete_task", "delete_task")


class FakeTasks:
    """An in-memory task list whose tools record every call the model makes."""

    def __init__(self) -> None:
        self.titles: list[str] = ["water plants", "pay rent", "book dentist"]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def tools(self, *names: str) -> list[FunctionTool]:
        @function_tool
        def add_task(title: str) -> str:
            """Add a task."""
            self.calls.append(("add_task", {"title": title}))
            self.titles.append(title)
            return f"Added task #{len(self.titles)}: {title}"

        @function_tool
        def list_tasks() -> str:
            """List the tasks."""
            self.calls.append(("list_tasks", {}))
            if not self.titles:
                return "The task list is empty."
            return "\n".join(f"{n}. {title}" for n, title in enumerate(self.titles, 1))

        @function_tool
        def complete_task(number: int) -> str:
            """Complete a task."""
            self.calls.append(("complete_task", {"number": number}))
            return f"Completed task #{number}: {self.titles[number - 1]}"

        @function_tool
        def delete_task(number: int) -> str:
            """Delete a task."""
            self.calls.append(("delete_task", {"number": number}))
            return f"Deleted task #{number}: {self.titles.pop(number - 1)}"

        available = [add_task, list_tasks, complete_task, delete_task]
        return [tool for tool in available if tool.name in (names or ALL_TOOLS)]


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class EmptyStore:
    """Just enough of a ChatKit store for stream_agent_response: a thread with no items."""

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Page[ThreadItem]:
        return Page(data=[], has_more=False, after=None)


async def run(
    prompt: str | list[TResponseInputItem], model: OfflineModel, tools: list[FunctionTool]
) -> tuple[str, list[str], list[ToolCallItem]]:
    """Run the agent streamed; return its final output, text deltas and tool calls."""
    agent = Agent(name="Assistant", model=model, tools=list(tools))
    result = Runner.run_streamed(agent, prompt, run_config=RUN_CONFIG)
    deltas = [
        event.data.delta
        async for event in result.stream_events()
        if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent)
    ]
    calls = [item for item in result.new_items if isinstance(item, ToolCallItem)]
    return str(result.final_output), deltas, calls


async def test_text_streams_one_delta_per_word_joining_to_the_final_output() -> None:
    output, deltas, _ = await run("Hello there, how are you?", OfflineModel(0), FakeTasks().tools())

    assert len(deltas) > 10
    assert [delta.strip() for delta in deltas] == output.split()
    assert "".join(deltas) == output


async def test_plain_text_answer_explains_the_offline_model_and_configuration() -> None:
    output, _, calls = await run("Tell me a joke", OfflineModel(0), FakeTasks().tools())

    assert calls == []
    assert "offline model" in output
    assert "Tell me a joke" in output
    assert '"add a task to buy milk"' in output
    for setting in ("MODEL_PROVIDER=openai", "OPENAI_API_KEY", "MODEL_BASE_URL", "MODEL_NAME"):
        assert setting in output


@pytest.mark.parametrize(
    ("prompt", "name", "arguments", "answer"),
    [
        ("add a task to buy milk", "add_task", {"title": "buy milk"}, "Added task #4: buy milk."),
        ("Remind me to call mom.", "add_task", {"title": "call mom"}, "Added task #4: call mom."),
        ("Add task: buy milk!", "add_task", {"title": "buy milk"}, "Added task #4: buy milk."),
        ("show my tasks", "list_tasks", {}, "That's your task list above."),
        ("List tasks", "list_tasks", {}, "That's your task list above."),
        ("What are my tasks?", "list_tasks", {}, "That's your task list above."),
        ("complete task 2", "complete_task", {"number": 2}, "Completed task #2: pay rent."),
        ("Mark task 2 as done", "complete_task", {"number": 2}, "Completed task #2: pay rent."),
        ("finish task 2", "complete_task", {"number": 2}, "Completed task #2: pay rent."),
        ("delete task 3", "delete_task", {"number": 3}, "Deleted task #3: book dentist."),
        ("Please remove task 3.", "delete_task", {"number": 3}, "Deleted task #3: book dentist."),
    ],
)
async def test_task_command_calls_its_tool_and_answers_from_the_result(
    prompt: str, name: str, arguments: dict[str, Any], answer: str
) -> None:
    tasks = FakeTasks()

    output, _, calls = await run(prompt, OfflineModel(0), tasks.tools())

    assert tasks.calls == [(name, arguments)]
    assert [getattr(call.raw_item, "name", None) for call in calls] == [name]
    assert output == answer


async def test_tool_calls_get_unique_ids() -> None:
    model = OfflineModel(0)
    _, _, first = await run("list tasks", model, FakeTasks().tools())
    _, _, second = await run("list tasks", model, FakeTasks().tools())

    call_ids = {getattr(call.raw_item, "call_id", None) for call in first + second}
    assert len(call_ids) == 2
    assert all(str(call_id).startswith("call_offline_") for call_id in call_ids)


async def test_list_answer_does_not_repeat_the_list_the_widget_shows() -> None:
    output, _, _ = await run("show my tasks", OfflineModel(0), FakeTasks().tools())

    assert "pay rent" not in output


async def test_empty_list_answer_suggests_adding_a_task() -> None:
    tasks = FakeTasks()
    tasks.titles.clear()

    output, _, _ = await run("show my tasks", OfflineModel(0), tasks.tools())

    assert output == 'You have no tasks yet. Try "add a task to buy milk".'


async def test_absent_tool_is_not_called() -> None:
    tasks = FakeTasks()

    output, _, calls = await run(
        "add a task to buy milk", OfflineModel(0), tasks.tools("list_tasks")
    )

    assert tasks.calls == []
    assert calls == []
    assert "add_task" in output


async def test_intent_comes_from_the_last_user_message_only() -> None:
    tasks = FakeTasks()
    history: list[TResponseInputItem] = [
        {"role": "user", "content": "delete task 1"},
        {"role": "assistant", "content": "Deleted task #1: water plants."},
        {"role": "user", "content": [{"type": "input_text", "text": "thanks!"}]},
    ]

    _, _, calls = await run(history, OfflineModel(0), tasks.tools())

    assert calls == []


@pytest.mark.parametrize("words", ["show ", "what ", "add ", "mark task "])
async def test_commands_are_only_looked_for_at_the_start_of_a_long_message(words: str) -> None:
    # Matching a whole 40 KB message cost seconds (quadratic patterns); only the start counts.
    text = (words * 10_000)[:40_000] + " show my tasks"
    tasks = FakeTasks()

    _, deltas, calls = await run(text, OfflineModel(0), tasks.tools())

    assert calls == [] and "offline model" in "".join(deltas)


async def test_a_command_at_the_start_of_a_long_message_still_works() -> None:
    tasks = FakeTasks()

    _, _, calls = await run("show my tasks " + "please " * 5_000, OfflineModel(0), tasks.tools())

    assert [getattr(call.raw_item, "name", None) for call in calls] == ["list_tasks"]


async def test_chatkit_context_messages_are_not_taken_for_the_request() -> None:
    tasks = FakeTasks()
    history: list[TResponseInputItem] = [
        {"role": "user", "content": [{"type": "input_text", "text": "finish task 2"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "The user is referring to this in particular: \nhi"}
            ],
        },
    ]

    await run(history, OfflineModel(0), tasks.tools())

    assert tasks.calls == [("complete_task", {"number": 2})]


async def test_what_did_i_say_before_quotes_the_first_user_message() -> None:
    history: list[TResponseInputItem] = [
        {"role": "user", "content": "My favourite colour is teal."},
        # The shape ChatKit gives a stored assistant message.
        cast(
            TResponseInputItem,
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Noted.", "annotations": []}],
            },
        ),
        {"type": "message", "role": "user", "content": "And I like pears."},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "What did I say before?"}],
        },
    ]

    output, _, _ = await run(history, OfflineModel(0), FakeTasks().tools())

    assert '"My favourite colour is teal."' in output


async def test_zero_delay_never_sleeps() -> None:
    sleep = SleepRecorder()

    _, deltas, _ = await run("Hello there", OfflineModel(0, sleep=sleep), FakeTasks().tools())

    assert len(deltas) > 1
    assert sleep.delays == []


async def test_positive_delay_sleeps_between_words() -> None:
    sleep = SleepRecorder()

    _, deltas, _ = await run("Hello there", OfflineModel(0.25, sleep=sleep), FakeTasks().tools())

    assert sleep.delays == [0.25] * (len(deltas) - 1)


def test_negative_delay_is_rejected() -> None:
    with pytest.raises(ValueError):
        OfflineModel(-1)


async def test_get_response_returns_the_streamed_text() -> None:
    model = OfflineModel(0)
    streamed, _, _ = await run("Hello there", model, [])

    response = await model.get_response(
        None,
        "Hello there",
        ModelSettings(),
        [],
        None,
        [],
        ModelTracing.DISABLED,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    )

    [message] = response.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.id.startswith("msg_offline_")
    assert "".join(part.text for part in message.content if part.type == "output_text") == streamed
    assert response.usage.requests == 1


async def test_non_streamed_run_calls_tools_too() -> None:
    tasks = FakeTasks()
    agent = Agent(name="Assistant", model=OfflineModel(0), tools=list(tasks.tools()))

    result = await Runner.run(agent, "add a task to buy milk", run_config=RUN_CONFIG)

    assert tasks.calls == [("add_task", {"title": "buy milk"})]
    assert result.final_output == "Added task #4: buy milk."


@pytest.mark.parametrize(
    ("first_message", "title"),
    [
        ("buy milk", "Buy milk"),
        ("What's the weather like?", "What's the weather like"),
        ("  plan   a\ntrip to Lisbon.  ", "Plan a trip to Lisbon"),
        (
            "hello world, this is a rather long first message indeed",
            "Hello world, this is a rather long…",
        ),
        ("z" * 60, "Z" + "z" * 38 + "…"),
        ("", "New chat"),
        ("   \n ", "New chat"),
    ],
)
def test_generate_offline_title(first_message: str, title: str) -> None:
    assert generate_offline_title(first_message) == title
    assert len(generate_offline_title(first_message)) <= 40


async def test_chatkit_receives_an_assistant_message_streamed_word_by_word() -> None:
    thread = ThreadMetadata(id="thr_1", created_at=datetime.now())
    context = AgentContext[None](
        thread=thread, store=cast(Store[None], EmptyStore()), request_context=None
    )
    agent = Agent[AgentContext[None]](name="Assistant", model=OfflineModel(0))
    result = Runner.run_streamed(agent, "Hello there", context=context, run_config=RUN_CONFIG)

    events = [event async for event in stream_agent_response(context, result)]

    added = [e for e in events if isinstance(e, ThreadItemAddedEvent)]
    deltas = [
        e.update.delta
        for e in events
        if isinstance(e, ThreadItemUpdatedEvent)
        and isinstance(e.update, AssistantMessageContentPartTextDelta)
    ]
    done = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)]
    assert [type(event.item) for event in added] == [AssistantMessageItem]
    assert added[0].item.id.startswith("msg_offline_")
    assert len(deltas) > 1
    assert len(done) == 1 and isinstance(done[0], AssistantMessageItem)
    assert done[0].id == added[0].item.id
    assert done[0].content[0].text == "".join(deltas) == str(result.final_output)
