"""One logger: every module logs through Powertools' logger, its `extra` fields become keys of
the JSON record, and the settings' level and service name apply."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import logs
from settings import Settings


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What the logger writes while the test runs."""
    handler = logs.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)
        logs.configure(Settings())


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_module_logs_through_the_one_logger() -> None:
    from agent import server, stream_guards
    from handlers import app, error_map, lambda_events, lambda_streaming
    from store import dynamodb_store

    modules = (
        server,
        stream_guards,
        app,
        error_map,
        lambda_events,
        lambda_streaming,
        dynamodb_store,
    )
    assert {module.logger for module in modules} == {logs.logger}


def test_extra_fields_are_keys_of_the_record_with_the_service_name(written: io.StringIO) -> None:
    logs.configure(Settings.from_env({"POWERTOOLS_SERVICE_NAME": "chat-svc"}))

    logs.logger.info("feedback recorded", extra={"thread_id": "thr_1", "item_ids": ["a", "b"]})

    [record] = records(written)
    assert record["message"] == "feedback recorded" and record["level"] == "INFO"
    assert record["thread_id"] == "thr_1" and record["item_ids"] == ["a", "b"]
    assert record["service"] == "chat-svc"


@pytest.mark.parametrize("variable", ["LOG_LEVEL", "POWERTOOLS_LOG_LEVEL"])
def test_the_log_level_is_honoured(written: io.StringIO, variable: str) -> None:
    logs.configure(Settings.from_env({variable: "warning"}))

    logs.logger.info("dropped")
    logs.logger.warning("kept", extra={"request_id": "req-1"})

    assert [(r["message"], r["request_id"]) for r in records(written)] == [("kept", "req-1")]
