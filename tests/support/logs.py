"""What a test logged, as text: every record with its extra fields and traceback.

Powertools writes its JSON lines to the stdout it found at import, which pytest's capture
fixtures may not see; the log records themselves are always in `caplog`.
"""

from __future__ import annotations

import json
import logging

import pytest


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """All records of the test, one JSON object per line, tracebacks included."""
    return "\n".join(_as_text(record) for record in caplog.records)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The records that carry a traceback, by logger and message."""
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.exc_info or record.exc_text or "Traceback" in record.getMessage()
    ]


def _as_text(record: logging.LogRecord) -> str:
    fields = {key: value for key, value in vars(record).items() if key not in ("args", "msg")}
    fields["message"] = record.getMessage()
    if record.exc_info:
        fields["traceback"] = logging.Formatter().formatException(record.exc_info)
    return json.dumps(fields, default=str)
