"""Model providers: one factory turns the settings into the models the server uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents import Model, OpenAIChatCompletionsModel, OpenAIResponsesModel
from chatkit.types import AudioInput
from openai import AsyncOpenAI

from agent.offline_model import OfflineModel
from settings import Settings

Transcriber = Callable[[AudioInput], Awaitable[str]]


@dataclass(frozen=True)
class Models:
    """What answers: the chat model, the title model (None: truncate the first message),
    and the transcriber for dictation (None: the provider has none)."""

    provider: str
    chat: Model
    title: Model | None
    transcribe: Transcriber | None


ApiKey = str | Callable[[], Awaitable[str]]


def build_models(settings: Settings, api_key: ApiKey | None = None) -> Models:
    """Build the models for `settings.provider`; no network call is made here.

    `api_key` overrides `settings.api_key`; a callable is asked before each request
    (a cached secret from SSM, so a rotated key is picked up).
    """
    if settings.provider == "offline":
        return Models("offline", OfflineModel(settings.offline_word_delay_seconds), None, None)

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
        chat = OpenAIChatCompletionsModel(settings.model, openai_client=client)
        title = OpenAIChatCompletionsModel(title_name, openai_client=client)
    transcribe = _transcriber(client, settings.transcription_model)
    return Models(settings.provider, chat, title, transcribe)


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
