"""The agent's run hooks: each model call, tool call and handoff counted on the request's
telemetry record (tokens from the Agents SDK's usage), each model call a trace subsegment."""

from __future__ import annotations

from typing import Any

from agents import Agent, ModelResponse, RunContextWrapper, RunHooks, Tool, TResponseInputItem

import telemetry
import tracing


class TurnHooks(RunHooks[Any]):
    """Counts what a run does on `telemetry.current()`; `traced` runs get model subsegments
    (only runs that are not concurrent with another traced run: a title's is not)."""

    def __init__(self, *, traced: bool = True) -> None:
        self.traced = traced

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        if self.traced:
            tracing.model_call_started(agent.name)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        record = telemetry.current()
        record.model_calls += 1
        record.input_tokens += response.usage.input_tokens
        record.output_tokens += response.usage.output_tokens
        if self.traced:
            tracing.model_call_ended(response.usage.input_tokens, response.usage.output_tokens)

    async def on_tool_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool
    ) -> None:
        telemetry.current().tool_calls += 1

    async def on_handoff(
        self, context: RunContextWrapper[Any], from_agent: Agent[Any], to_agent: Agent[Any]
    ) -> None:
        telemetry.current().handoffs += 1


ANSWER_HOOKS = TurnHooks()
TITLE_HOOKS = TurnHooks(traced=False)
