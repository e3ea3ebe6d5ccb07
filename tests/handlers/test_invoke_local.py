"""`scripts/invoke` runs the real streaming entry point on a sample event, Docker-free."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.chatkit_http import sse_events
from tests.support.processes import REPO, run_module


def test_sample_event_streams_a_chatkit_answer(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MODEL_", "OPENAI_", "AUTH_"))
    }
    env.update(PYTHONPATH=str(REPO / "src"), CHATKIT_DEV_SECRET_FILE=str(tmp_path / "secret"))

    result = run_module("devtools.invoke_local", "events/threads-create.json", env=env, timeout=120)

    [prelude] = [line for line in result.stderr.splitlines() if line.startswith("# prelude: ")]
    assert json.loads(prelude.removeprefix("# prelude: "))["statusCode"] == 200
    events = sse_events(result.stdout)
    assert events[0]["type"] == "thread.created"
    assert any(
        event["type"] == "thread.item.done" and event["item"]["type"] == "assistant_message"
        for event in events
    )
