"""The app with X-Ray tracing on, as on Lambda, in a process of its own (patching botocore and
turning the X-Ray SDK on are process-wide): `python -m tests.support.traced_app`.

It builds the app as the streaming entry point does, in a Lambda-like environment (task root,
an invocation's `_X_AMZN_TRACE_ID`, `POWERTOOLS_TRACE_DISABLED=false`) on moto, sends the
requests of `REQUESTS`, and prints every trace entity the X-Ray SDK would have sent to the
daemon (one JSON document per line), then `modules: ...` with the X-Ray modules it loaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.support.fake_aws import use_fake_aws  # noqa: E402

SECRET = "traced-app-test-secret-0123456789abcdef"
SECRET_PARAMETER = "/chatkit-test/auth-secret"
USER = "sub-traced-raw-user"
MESSAGE = "add a task to buy ocelot-quince"  # text that no trace may hold
TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"
TRACE_HEADER = f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1"


class CapturingEmitter:
    """Takes the X-Ray SDK's entities instead of sending them to the daemon over UDP."""

    def __init__(self) -> None:
        self.entities: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.entities.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address: str | None) -> None:
        pass

    @property
    def ip(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return 2000


def requests() -> list[dict[str, Any]]:
    create = {
        "type": "threads.create",
        "params": {
            "input": {
                "content": [{"type": "input_text", "text": MESSAGE}],
                "attachments": [],
                "inference_options": {},
            }
        },
    }
    upload = {
        "type": "attachments.create",
        "params": {"name": "notes.txt", "size": 5, "mime_type": "text/plain"},
    }
    unknown = {"type": "threads.get_by_id", "params": {"thread_id": "thr_unknown"}}
    return [create, upload, unknown]


async def serve(app: Any, token: str) -> list[int]:
    import httpx

    statuses = []
    headers = {"authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lambda") as client:
        for body in requests():
            response = await client.post("/chatkit", content=json.dumps(body), headers=headers)
            statuses.append(response.status_code)
            if body["type"] == "attachments.create":
                delete = {
                    "type": "attachments.delete",
                    "params": {"attachment_id": response.json()["id"]},
                }
                response = await client.post(
                    "/chatkit", content=json.dumps(delete), headers=headers
                )
                statuses.append(response.status_code)
    return statuses


def main() -> None:
    use_fake_aws()
    os.environ.update(
        LAMBDA_TASK_ROOT=str(ROOT / "src"),
        _X_AMZN_TRACE_ID=TRACE_HEADER,
        POWERTOOLS_TRACE_DISABLED=os.environ.get("POWERTOOLS_TRACE_DISABLED", "false"),
        POWERTOOLS_METRICS_DISABLED="true",
        AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
        LOG_LEVEL="WARNING",  # stdout is for the trace entities
    )
    from moto import mock_aws

    from devtools.tokens import mint_token
    from handlers.main import build_app
    from settings import Settings
    from store import bind_table, create_table
    from store.uploads import s3_client

    with mock_aws():
        create_table(bind_table("chatkit-traced", region="us-east-1"))
        s3_client("us-east-1").create_bucket(Bucket="chatkit-traced-uploads")
        import boto3

        boto3.client("ssm").put_parameter(Name=SECRET_PARAMETER, Value=SECRET, Type="SecureString")
        settings = Settings(
            table_name="chatkit-traced",
            bucket_name="chatkit-traced-uploads",
            region="us-east-1",
            offline_word_delay_ms=0,
            auth_secret_parameter=SECRET_PARAMETER,
            lambda_task_root=os.environ["LAMBDA_TASK_ROOT"],
            trace_disabled=os.environ["POWERTOOLS_TRACE_DISABLED"],
        )
        app = build_app(settings)
        emitter = CapturingEmitter()
        if "aws_xray_sdk" in sys.modules:
            from aws_xray_sdk.core import xray_recorder
            from aws_xray_sdk.core.lambda_launcher import LambdaContext

            xray_recorder.configure(emitter=emitter, context=LambdaContext(), sampling=False)
        statuses = asyncio.run(serve(app, mint_token(SECRET, USER)))
    print(json.dumps({"statuses": statuses}))
    for entity in emitter.entities:
        print(json.dumps(entity))
    loaded = sorted(name for name in sys.modules if name.startswith(("aws_xray_sdk", "wrapt")))
    print("modules: " + json.dumps(loaded))


if __name__ == "__main__":
    main()
