"""`scripts/invoke` runs the real streaming entry point on a sample event, Docker-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_sample_event_streams_a_chatkit_answer(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MODEL_", "OPENAI_", "AUTH_"))
    }
    env.update(PYTHONPATH=str(REPO / "src"), CHATKIT_DEV_SECRET_FILE=str(tmp_path / "secret"))

    result = subprocess.run(
        [sys.executable, "-m", "devtools.invoke_local", "events/threads-create.json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    [prelude] = [line for line in result.stderr.splitlines() if line.startswith("# prelude: ")]
    assert json.loads(prelude.removeprefix("# prelude: "))["statusCode"] == 200
    events = [
        json.loads(line[6:]) for line in result.stdout.splitlines() if line.startswith("data: ")
    ]
    assert events[0]["type"] == "thread.created"
    assert any(
        event["type"] == "thread.item.done" and event["item"]["type"] == "assistant_message"
        for event in events
    )
