"""`scripts/invoke EVENT.json`: run the real streaming entry point on a Function URL event,
without Docker, and print the response as it arrives.

The entry point (`python -m handlers.lambda_streaming`, as the exec wrapper starts it on
Lambda) runs in a child process against a Runtime API emulator on 127.0.0.1, with an embedded
moto server for DynamoDB, S3 and SSM and the offline model unless a key is configured. A
`Bearer <token placeholder>` in the event is replaced by a development token.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devtools.local import LocalMotoServer, dev_secret, point_aws_at, provision
from devtools.runtime_emulator import PRELUDE_DELIMITER, RuntimeApiEmulator
from devtools.tokens import mint_token
from settings import Settings

PLACEHOLDER = "<token placeholder>"


class _Printer:
    """Prints the prelude (status, headers) once, then each body chunk as it arrives."""

    def __init__(self) -> None:
        self._head = b""
        self._in_body = False

    def __call__(self, chunk: bytes) -> None:
        if self._in_body:
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
            return
        self._head += chunk
        if PRELUDE_DELIMITER in self._head:
            prelude, _, body = self._head.partition(PRELUDE_DELIMITER)
            print(f"# prelude: {prelude.decode('utf-8', 'replace')}", file=sys.stderr)
            self._in_body = True
            if body:
                self(body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/invoke", description=__doc__.splitlines()[0])
    parser.add_argument(
        "event", type=Path, help="a Function URL event, e.g. events/threads-create.json"
    )
    parser.add_argument("--user", default="local-user", help="the token's subject")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the answer")
    options = parser.parse_args(argv)
    event: dict[str, Any] = json.loads(options.event.read_text(encoding="utf-8"))

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    moto = LocalMotoServer()  # local callers only, like the local server's
    moto.start()
    try:
        host, port = moto.host_and_port
        env = dict(os.environ)
        point_aws_at(f"http://{host}:{port}", env)
        os.environ.update(env)  # this process creates the table and bucket in moto
        secret = dev_secret(env, None)
        env.update(AUTH_DEV_SECRET=secret, POWERTOOLS_METRICS_DISABLED="true")
        settings = Settings.from_env(env)
        provision(settings, f"http://{host}:{port}", secret)
        headers = event.setdefault("headers", {})
        if PLACEHOLDER in headers.get("authorization", ""):
            headers["authorization"] = f"Bearer {mint_token(secret, options.user)}"

        with RuntimeApiEmulator(on_chunk=_Printer()) as runtime:
            env["AWS_LAMBDA_RUNTIME_API"] = runtime.address
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
            request_id = runtime.add_invocation(event)
            # The function's own output (its logs) goes to stderr; stdout is the response.
            command = [sys.executable, "-m", "handlers.lambda_streaming"]
            child = subprocess.Popen(command, env=env, stdout=sys.stderr)
            try:
                recorded = runtime.result(request_id, timeout=options.timeout)
            finally:
                child.terminate()
                child.wait(timeout=10)
        print(file=sys.stderr)
        if recorded.kind == "error":
            print(f"# invocation error: {recorded.error}", file=sys.stderr)
            return 1
        if recorded.trailers:
            print(f"# error trailers: {recorded.trailers}", file=sys.stderr)
            return 1
        return 0
    finally:
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
