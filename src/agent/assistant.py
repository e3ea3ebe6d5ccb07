"""The agents that answer: a triage agent handing each conversation to a specialist
(agent.specialists) with the Agents SDK's handoffs, and the title writer.

A thread remembers the specialist that answered last (its metadata's `specialist`): the next
turn starts with it, and it hands back to triage when the user asks for something else.
Each handoff is shown in the turn's workflow ("Task assistant is answering") and stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from agents import Agent, Handoff, Model, ModelSettings, RunContextWrapper, handoff
from chatkit.types import ThreadMetadata

from agent.context import AssistantContext
from agent.identity import about_the_user
from agent.progress import show_step
from agent.specialists import SPECIALISTS, Specialist

SPECIALIST_METADATA = "specialist"  # the thread metadata key: the specialist answering it
TRIAGE_TOOL = "transfer_to_triage"

COMMON_INSTRUCTIONS = """You are the {name} of a helpful, concise assistant in a chat app.
Answer in plain, friendly sentences; use Markdown only when it helps.
When the user asks for something another specialist does, hand the conversation back to \
triage (transfer_to_triage) without answering it yourself."""

TRIAGE_INSTRUCTIONS = """You route each message of a chat app's user to the specialist for it.
Never answer yourself: call exactly one transfer tool, the one whose description fits the \
user's latest message best:
{routes}"""

TITLE_INSTRUCTIONS = """Write a short title (at most 6 words) for a conversation that starts
with the user's message below. Answer with the title only: no quotes, no final punctuation."""


class Team:
    """Triage and its specialists, all answering with one model and its settings."""

    def __init__(
        self,
        model: Model,
        specialists: Sequence[Specialist] = SPECIALISTS,
        model_settings: ModelSettings | None = None,
    ) -> None:
        routes = "\n".join(f"- transfer_to_{s.key}: {s.description}" for s in specialists)
        settings = model_settings or ModelSettings()
        self.triage = Agent[AssistantContext](
            name="Triage",
            instructions=_knowing_the_user(TRIAGE_INSTRUCTIONS.format(routes=routes)),
            model=model,
            model_settings=settings,
        )
        back = handoff(
            self.triage,
            tool_name_override=TRIAGE_TOOL,
            tool_description_override=(
                "Hand the conversation back to triage when the user asks for something "
                "you do not do."
            ),
            on_handoff=_back_to_triage,
        )
        self.specialists = {s.key: _specialist_agent(s, model, settings, back) for s in specialists}
        self.triage.handoffs = [_handoff_to(s, self.specialists[s.key]) for s in specialists]

    def starting_agent(self, thread: ThreadMetadata) -> Agent[AssistantContext]:
        """The specialist that answered the thread last, else triage."""
        key = thread.metadata.get(SPECIALIST_METADATA)
        return self.specialists.get(key, self.triage) if isinstance(key, str) else self.triage


def build_titler(model: Model) -> Agent[None]:
    """A tool-less agent that names a thread from its first message."""
    return Agent[None](name="Title writer", instructions=TITLE_INSTRUCTIONS, model=model)


def _specialist_agent(
    specialist: Specialist,
    model: Model,
    settings: ModelSettings,
    back: Handoff[AssistantContext, Agent[AssistantContext]],
) -> Agent[AssistantContext]:
    common = COMMON_INSTRUCTIONS.format(name=specialist.name)
    return Agent[AssistantContext](
        name=specialist.name,
        handoff_description=specialist.description,
        instructions=_knowing_the_user(f"{common}\n\n{specialist.instructions}"),
        tools=list(specialist.tools),
        handoffs=[back],
        model=model,
        model_settings=settings,
    )


Instructions = Callable[[RunContextWrapper[AssistantContext], Agent[AssistantContext]], str]


def _knowing_the_user(instructions: str) -> Instructions:
    """`instructions`, then what the verified token says about the user (agent.identity)."""

    def with_the_user(
        ctx: RunContextWrapper[AssistantContext], agent: Agent[AssistantContext]
    ) -> str:
        return f"{instructions}\n\n{about_the_user(ctx.context.request_context.identity)}"

    return with_the_user


def _handoff_to(
    specialist: Specialist, agent: Agent[AssistantContext]
) -> Handoff[AssistantContext, Agent[AssistantContext]]:
    return handoff(
        agent,
        tool_name_override=f"transfer_to_{specialist.key}",
        tool_description_override=specialist.description,
        on_handoff=partial(_handed_to, specialist),
    )


async def _handed_to(specialist: Specialist, ctx: RunContextWrapper[AssistantContext]) -> None:
    """Shown in the turn's workflow, and kept for the thread's next turn."""
    ctx.context.thread_updates[SPECIALIST_METADATA] = specialist.key
    await show_step(ctx.context, f"{specialist.name} is answering", "agent")


async def _back_to_triage(ctx: RunContextWrapper[AssistantContext]) -> None:
    ctx.context.thread_updates[SPECIALIST_METADATA] = None
