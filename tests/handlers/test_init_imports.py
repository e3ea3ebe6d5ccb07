"""The function's init (the streaming loop's module and `build_app()`) imports what every
request needs and leaves out what only some requests use; those modules are imported when first
needed: boto3 and s3transfer with the S3 client (uploads, very large items), Powertools'
parameters with the first secret read from SSM, the Bedrock or offline provider when chosen, the
REST API's routes (and the pydantic v1 layer FastAPI imports to declare them) with its first
request, what answers a turn (the agents, their tools, chatkit's agent helpers) with the first turn.

Each check runs in a fresh interpreter, as a cold start does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ONLY_SOME_REQUESTS = (
    "boto3",
    "s3transfer",
    "aws_lambda_powertools.utilities.parameters",
    "agent.bedrock",
    "handlers.conversations",
    "pydantic.v1",
    "chatkit.agents",
    "agent.answering",
    "agent.assistant",
    "agent.context",
    "agent.converter",
    "agent.specialists",
    "agent.stream_guards",
    "agent.tasks",
    "agent.turn",
)
OFFLINE_MODEL = ("agent.offline_model",)
CONFIGURATIONS = {
    "dev secret, offline model": ("auth_dev_secret='x' * 40", ()),
    "secret in SSM, offline model": ("auth_secret_parameter='/app/auth-secret'", ()),
    "secret in SSM, OpenAI key in SSM": (
        "auth_secret_parameter='/app/auth-secret', provider='openai',"
        " api_key_parameter='/app/openai-key'",
        OFFLINE_MODEL,
    ),
}


def modules_after_init(settings: str) -> set[str]:
    code = (
        "import json, sys\n"
        "import handlers.lambda_streaming\n"
        "from handlers.main import build_app\n"
        "from settings import Settings\n"
        f"build_app(Settings(region='us-east-1', table_name='t', bucket_name='b', {settings}))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=SRC, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    ("settings", "provider_left_out"), CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys()
)
def test_init_leaves_out_what_only_some_requests_use(
    settings: str, provider_left_out: tuple[str, ...]
) -> None:
    modules = modules_after_init(settings)

    assert "handlers.main" in modules and "store.dynamodb_store" in modules
    imported = [name for name in ONLY_SOME_REQUESTS + provider_left_out if name in modules]
    assert imported == []


def test_the_s3_client_imports_boto3_when_created() -> None:
    code = (
        "import sys\n"
        "from store.uploads import s3_client\n"
        "assert 'boto3' not in sys.modules\n"
        "s3_client('us-east-1')\n"
        "assert 'boto3' in sys.modules and 's3transfer' in sys.modules\n"
    )
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PATH": "/bin"}
    subprocess.run([sys.executable, "-c", code], cwd=SRC, check=True, env=env)
