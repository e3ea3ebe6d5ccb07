"""Model providers: one factory turns the settings into the models the server uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents import Model, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel
from chatkit.types import AudioInput
from openai import AsyncOpenAI
from openai.types.shared import Reasoning

from agent.failures import EmptyAnswerError, IncompleteAnswerError
from agent.streamed_model import with_finished_thoughts
from settings import Settings, SettingsError

Transcriber = Callable[[AudioInput], Awaitable[str]]


@dataclass(frozen=True)
class Models:
    """What answers: the chat model and its settings (a reasoning model's effort and
    summaries), the title model (None: truncate the first message), and the transcriber for
    dictation (None: the provider has none)."""

    provider: str
    chat: Model
    title: Model | None
    transcribe: Transcriber | None
    chat_settings: ModelSettings = field(default_factory=ModelSettings)


ApiKey = str | Callable[[], Awaitable[str]]


def build_models(settings: Settings, api_key: ApiKey | None = None) -> Models:
    """Build the models for `settings.provider`; no network call is made here.

    `api_key` overrides `settings.api_key`; a callable is asked before each request
    (a cached secret from SSM, so a rotated key is picked up).
    """
    if settings.provider == "offline":
        return _offline_models(settings)
    if settings.provider == "bedrock":
        return _bedrock_models(settings)

    client = AsyncOpenAI(
        api_key=api_key or settings.api_key or "not-needed",
        base_url=settings.base_url,
        max_retries=settings.model_max_retries,
    )
    title_name = settings.title_model or settings.model
    chat: Model
    title: Model
    if settings.provider == "openai":
        chat = OpenAIResponsesModel(settings.model, openai_client=client)
        title = OpenAIResponsesModel(title_name, openai_client=client)
    else:
        # OpenAI-compatible servers (Gemini, Ollama, vLLM...) speak Chat Completions.
        chat = FinishedChatCompletionsModel(settings.model, openai_client=client)
        title = FinishedChatCompletionsModel(title_name, openai_client=client)
    transcribe = _transcriber(client, settings.transcription_model)
    return Models(settings.provider, chat, title, transcribe, _chat_settings(settings))


def _chat_settings(settings: Settings) -> ModelSettings:
    """A reasoning model's effort and summaries, when configured: a model that does not
    reason refuses the setting (400), so none is sent by default. Chat Completions sends
    the effort only; its provider's reasoning text, if it streams any, is shown all the same."""
    if settings.reasoning_effort is None and settings.reasoning_summary is None:
        return ModelSettings()
    reasoning = Reasoning(effort=settings.reasoning_effort, summary=settings.reasoning_summary)
    return ModelSettings(reasoning=reasoning)


def _offline_models(settings: Settings) -> Models:
    """The offline model, imported only when chosen (no cold-start cost otherwise)."""
    from agent.offline_model import OfflineModel

    return Models("offline", OfflineModel(settings.offline_word_delay_seconds), None, None)


def _bedrock_models(settings: Settings) -> Models:
    """Bedrock with the function's IAM role; imported only when chosen (no cold-start cost
    otherwise). One client, created on the first request, serves answers and titles."""
    from agent.bedrock import BedrockModel, bedrock_client

    if not settings.bedrock_model_id:
        raise SettingsError("BEDROCK_MODEL_ID is required when MODEL_PROVIDER=bedrock")
    model = BedrockModel(
        settings.bedrock_model_id,
        lambda: bedrock_client(settings.region, settings.model_max_retries),
    )
    return Models("bedrock", model, model, None)


def _transcriber(client: AsyncOpenAI, model: str | None) -> Transcriber | None:
    if model is None:
        return None

    async def transcribe(audio: AudioInput) -> str:
        extension = audio.media_type.split("/")[-1]
        result = await client.audio.transcriptions.create(
            model=model, file=(f"dictation.{extension}", audio.data, audio.mime_type)
        )
        return result.text

    return transcribe


class FinishedChatCompletionsModel(OpenAIChatCompletionsModel):
    """Chat Completions whose streamed answers must end properly: a stream that stops
    without a finish reason was cut (IncompleteAnswerError), one with no chunk at all said
    nothing (EmptyAnswerError). The Agents SDK checks this for api.openai.com only.
    Reasoning the provider streams (`reasoning_content`) is shown as the model's thoughts."""

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return with_finished_thoughts(super().stream_response(*args, **kwargs))

    async def _fetch_response(self, *args: Any, **kwargs: Any) -> Any:
        result = await super()._fetch_response(*args, **kwargs)
        if kwargs.get("stream") and isinstance(result, tuple):
            response, stream = result
            return response, _FinishedStream(stream)
        return result


class _FinishedStream:
    """The provider's chunk stream, raising at its end if it never gave a finish reason."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.response = getattr(stream, "response", None)  # the SDK reads its request id

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Any]:
        chunks, finished = 0, False
        async for chunk in self._stream:
            chunks += 1
            finished = finished or any(choice.finish_reason for choice in chunk.choices or [])
            yield chunk
        if chunks == 0:
            raise EmptyAnswerError("the model's stream ended before its first chunk")
        if not finished:
            raise IncompleteAnswerError("the model's stream ended without a finish reason")

    async def aclose(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            await close()
