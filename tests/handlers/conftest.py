"""The real app, built by the composition root on the moto-backed table and bucket."""

from __future__ import annotations

from typing import Any

import httpx

from handlers.main import build_app
from settings import Settings
from tests.conftest import BUCKET, TABLE


def app_settings(**overrides: Any) -> Settings:
    """Settings for the test table and bucket; the offline model answers without delay."""
    values: dict[str, Any] = {
        "table_name": TABLE,
        "bucket_name": BUCKET,
        "region": "us-east-1",
        "offline_word_delay_ms": 0,
        **overrides,
    }
    return Settings(**values)


def fake_model_settings(base_url: str, **overrides: Any) -> Settings:
    """`app_settings` with a fake OpenAI-compatible model at `base_url`, never retried."""
    return app_settings(
        provider="openai-compatible",
        base_url=base_url,
        api_key="test-key",
        model="fake-model",
        model_max_retries=0,
        **overrides,
    )


def app_client(settings: Settings) -> httpx.AsyncClient:
    """An HTTP client speaking to the app in-process (fine for status codes and bodies;
    streaming timing needs a real server)."""
    transport = httpx.ASGITransport(app=build_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://test")
