"""Settings come from the environment, with defaults, and name the variable when one is wrong."""

from __future__ import annotations

import pytest
from agents import OpenAIChatCompletionsModel

from agent.offline_model import OfflineModel
from agent.providers import build_models
from settings import Settings, SettingsError


def test_no_key_means_the_offline_model() -> None:
    settings = Settings.from_env({})

    assert settings.provider == "offline"
    models = build_models(settings)
    assert isinstance(models.chat, OfflineModel)
    assert models.title is None and models.transcribe is None


def test_a_key_means_openai_with_transcription() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-test", "MODEL_NAME": "gpt-4.1"})

    assert settings.provider == "openai" and settings.model == "gpt-4.1"
    models = build_models(settings)
    assert type(models.chat).__name__ == "OpenAIResponsesModel"
    assert models.title is not None and models.transcribe is not None


def test_a_base_url_means_an_openai_compatible_server_without_transcription() -> None:
    settings = Settings.from_env(
        {
            "MODEL_BASE_URL": "https://generativelanguage.googleapis.com/v1beta/openai/",
            "MODEL_API_KEY": "gemini-key",
            "MODEL_NAME": "gemini-2.5-flash",
        }
    )

    assert settings.provider == "openai-compatible"
    models = build_models(settings)
    assert isinstance(models.chat, OpenAIChatCompletionsModel)  # Chat Completions, not Responses
    assert models.transcribe is None


def test_limits_are_read_as_numbers() -> None:
    settings = Settings.from_env(
        {
            "HISTORY_ITEMS": "12",
            "MAX_AGENT_TURNS": "3",
            "MAX_TURN_SECONDS": "20",
            "OFFLINE_WORD_DELAY_MS": "0",
        }
    )

    assert (settings.history_items, settings.max_agent_turns, settings.max_turn_seconds) == (
        12,
        3,
        20.0,
    )
    assert settings.offline_word_delay_seconds == 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MODEL_PROVIDER": "skynet"}, "MODEL_PROVIDER"),
        ({"MODEL_PROVIDER": "openai"}, "MODEL_API_KEY"),
        ({"MODEL_PROVIDER": "openai-compatible"}, "MODEL_BASE_URL"),
        ({"HISTORY_ITEMS": "many"}, "HISTORY_ITEMS"),
        ({"MAX_TURN_SECONDS": "0"}, "MAX_TURN_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
