"""The Agents SDK's `Model` interface, written once for the models this project implements
(the offline model, Bedrock): each streams its answer from one `answer(request)`, and the
SDK's two calls, `stream_response` and `get_response`, are both served from it."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from agents import ModelResponse, Usage
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.tool import Tool
from openai.types.responses import (
    Response,
    ResponsePromptParam,
    ResponseReasoningSummaryTextDoneEvent,
)

from agent.failures import IncompleteAnswerError


@dataclass(frozen=True)
class ModelRequest:
    """What the Runner asks a model for (what our models read of the SDK's arguments)."""

    system_instructions: str | None
    input: str | list[TResponseInputItem]
    model_settings: ModelSettings
    tools: list[Tool]
    handoffs: list[Handoff]


class StreamedModel(Model):
    """A model whose answer is a stream of Responses events ending in `response.completed`."""

    @abstractmethod
    def answer(self, request: ModelRequest) -> AsyncIterator[TResponseStreamEvent]:
        """The answer to `request`, event by event, as the Responses API streams it."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The whole answer at once: the streamed answer, collected.

        Raises IncompleteAnswerError when the stream ends without `response.completed`.
        """
        final: Response | None = None
        async for event in self.answer(request):
            if event.type == "response.completed":
                final = event.response
        if final is None:
            raise IncompleteAnswerError("the model's stream ended without completing")
        usage = Usage()
        if final.usage is not None:
            usage = Usage(
                requests=1,
                input_tokens=final.usage.input_tokens,
                output_tokens=final.usage.output_tokens,
                total_tokens=final.usage.total_tokens,
            )
        return ModelResponse(output=final.output, usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        """The SDK's streamed call (its arguments as in `Model.stream_response`): `answer`."""
        return self.answer(model_request(*args, **kwargs))

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """The SDK's whole-answer call (its arguments as in `Model.get_response`): `complete`."""
        return await self.complete(model_request(*args, **kwargs))


def model_request(
    system_instructions: str | None,
    input: str | list[TResponseInputItem],
    model_settings: ModelSettings,
    tools: list[Tool],
    output_schema: AgentOutputSchemaBase | None,
    handoffs: list[Handoff],
    tracing: ModelTracing,
    *,
    previous_response_id: str | None = None,
    conversation_id: str | None = None,
    prompt: ResponsePromptParam | None = None,
) -> ModelRequest:
    """The SDK's arguments to `get_response` and `stream_response` (the same for both), as
    the request our models read."""
    return ModelRequest(system_instructions, input, model_settings, tools, handoffs)


async def with_finished_thoughts(
    events: AsyncIterator[TResponseStreamEvent],
) -> AsyncIterator[TResponseStreamEvent]:
    """`events`, each reasoning summary part ended with the `reasoning_summary_text.done` the
    Responses API sends and the SDK's Chat Completions converter does not: chatkit shows the
    thought on it when the turn's workflow already had a task (a handoff) as it streamed."""
    try:
        async for event in events:
            if event.type == "response.reasoning_summary_part.done":
                yield ResponseReasoningSummaryTextDoneEvent(
                    type="response.reasoning_summary_text.done",
                    item_id=event.item_id,
                    output_index=event.output_index,
                    summary_index=event.summary_index,
                    text=event.part.text,
                    sequence_number=event.sequence_number,
                )
            yield event
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
