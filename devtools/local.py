"""The local server: the same app as on Lambda, on uvicorn, against an in-memory AWS (moto).

`./scripts/serve` (or `python -m devtools.local`) starts a moto server, creates in it the
DynamoDB table (from `store.table`, the production definition), the uploads bucket and the
configured SSM parameters, then serves `handlers.main.build_app` on http://127.0.0.1:8000 with
CORS for localhost origins and the API's interactive docs at /docs. In production the Function
URL answers CORS, so only this wrapper adds it. Data lives in moto's memory and is gone when the
server stops.

Development only: moto and uvicorn are dev dependencies and never ship.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import uvicorn
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp
from werkzeug.serving import BaseWSGIServer, make_server

from devtools.terminal_client import DEFAULT_URL
from devtools.tokens import (
    DEFAULT_USER,
    REPO_ROOT,
    SECRET_FILE_ENV,
    TOKEN_HOURS,
    default_secret_file,
    mint_token,
    read_secret,
)
from handlers.auth import AuthConfigurationError
from settings import Settings, SettingsError
from store import bind_table, create_table

LOCAL_REGION = "us-east-1"
# Any port on localhost or 127.0.0.1, over http or https: a dev server for the ChatKit UI.
LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# The same methods and readable headers as the Function URL's CORS in template.yaml.
CORS_METHODS = ("GET", "POST", "PATCH", "DELETE")
CORS_EXPOSED_HEADERS = ("retry-after", "www-authenticate", "content-disposition")
MODEL_VARIABLES = ("MODEL_PROVIDER", "MODEL_API_KEY", "OPENAI_API_KEY", "MODEL_BASE_URL")


@dataclass(frozen=True)
class LocalAws:
    """The moto server the app talks to, and what was created in it."""

    endpoint: str
    table_name: str
    bucket_name: str
    parameters: tuple[str, ...]


def main(argv: Sequence[str] | None = None) -> int:
    """Start moto and the app; serve until Ctrl-C. Returns the process exit code."""
    options = _serve_parser().parse_args(argv)
    try:
        return _serve(options)
    except (SettingsError, AuthConfigurationError) as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while still starting
        return 130


def _serve(options: argparse.Namespace) -> int:
    env = os.environ
    # The environment first, then the .env file for what it leaves unset (pydantic-settings).
    settings = Settings.from_env(env_file=options.env_file)
    secret = settings.auth_dev_secret or dev_secret(env, options.secret_file)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    # DynamoDB applies each request atomically; moto's server does only when told to, and
    # concurrent transactions (two browser tabs) would otherwise fail. A dev-tool import:
    # scripts/serve puts the repository on the path.
    from tests.support.atomic_moto import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic()
    moto = LocalMotoServer(options.moto_port, options.cors_origin)
    moto.start()
    try:
        host, port = moto.host_and_port
        if settings.region:
            env.setdefault("AWS_REGION", settings.region)  # a region named in .env
        # Before the first boto client exists: every AWS call goes to moto, never to an account.
        point_aws_at(f"http://{host}:{port}", env)
        env.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF documents on stdout
        local = {"auth_dev_secret": secret, "region": env["AWS_REGION"]}
        settings = Settings(**{**settings.model_dump(), **local})
        aws = provision(settings, f"http://{host}:{port}", secret)

        # Imported here: the composition root pulls in the agent stack (seconds), and its
        # clients must be created after the environment points at moto.
        from handlers.main import build_app

        app = with_local_cors(build_app(settings, api_docs=True), options.cors_origin)
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level="info",
            timeout_graceful_shutdown=3,
        )

        def intro(port: int) -> str:
            return startup_text(settings, aws, options.host, port, secret, options.env_file)

        server = _AnnouncingServer(config, intro)
        # uvicorn shuts down gracefully on Ctrl-C, then raises it again: nothing left to do.
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        return 0 if server.started else 1
    finally:
        moto.stop()


def dev_secret(env: MutableMapping[str, str], secret_file: Path | None) -> str:
    """The HS256 dev secret: AUTH_DEV_SECRET if set, else the secret file's, created once.

    Kept in a file (default `.cache/dev-secret`, git-ignored) so tokens survive restarts.
    """
    if env.get("AUTH_DEV_SECRET"):
        return env["AUTH_DEV_SECRET"]
    path = secret_file or default_secret_file(env)
    existing = read_secret(path)
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if path.parent == REPO_ROOT / ".cache" and not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")  # nothing in .cache is ever committed
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(secret + "\n")
    return secret


def point_aws_at(endpoint: str, env: MutableMapping[str, str]) -> None:
    """Send every boto3/PynamoDB client to `endpoint` with fake credentials.

    Profiles, config files and service-specific endpoints are cleared so that nothing can
    reach a real account.
    """
    for name in [name for name in env if name.startswith("AWS_ENDPOINT_URL_")]:
        del env[name]
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        env.pop(name, None)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or LOCAL_REGION
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )


def provision(settings: Settings, endpoint: str, secret: str) -> LocalAws:
    """Create what the settings name: the table (production definition), the bucket, and the
    SSM parameters (the auth secret holds the dev secret; the model key parameter holds
    MODEL_API_KEY / OPENAI_API_KEY, which must then be set: SettingsError otherwise)."""
    create_table(bind_table(settings.table_name, region=settings.region))
    s3 = boto3.client("s3", region_name=settings.region)
    if settings.region in (None, LOCAL_REGION):
        s3.create_bucket(Bucket=settings.bucket_name)
    else:
        s3.create_bucket(
            Bucket=settings.bucket_name,
            CreateBucketConfiguration={"LocationConstraint": settings.region},  # type: ignore[typeddict-item]
        )
    parameters: dict[str, str] = {}
    if settings.auth_secret_parameter:
        parameters[settings.auth_secret_parameter] = secret
    if settings.api_key_parameter:
        api_key = settings.api_key
        if not api_key:
            raise SettingsError(
                "MODEL_API_KEY_PARAMETER is set: also set MODEL_API_KEY (or OPENAI_API_KEY) "
                "to the key the local SSM parameter should hold"
            )
        parameters[settings.api_key_parameter] = api_key
    ssm = boto3.client("ssm", region_name=settings.region)
    for name, value in parameters.items():
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
    return LocalAws(endpoint, settings.table_name, settings.bucket_name, tuple(parameters))


def with_local_cors(app: ASGIApp, extra_origins: Sequence[str] = ()) -> ASGIApp:
    """The app behind CORS for http(s)://localhost:* and 127.0.0.1:* (and `extra_origins`).

    Local only: on AWS the Function URL answers CORS, and the app must not add headers too.
    """
    return CORSMiddleware(
        app,
        allow_origins=list(extra_origins),
        allow_origin_regex=LOCAL_ORIGINS,
        allow_methods=[*CORS_METHODS, "OPTIONS"],
        allow_headers=["*"],
        expose_headers=list(CORS_EXPOSED_HEADERS),
        max_age=600,
    )


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def local_callers_only(app: WSGIApp, extra_origins: Sequence[str] = ()) -> WSGIApp:
    """`app` (moto) for local callers only: a browser request from any other origin, or a
    request naming another host (DNS rebinding), is refused before it reaches the data.

    moto answers CORS for every origin and checks no credentials, so without this any web page
    that found its port could read and change the local table, bucket and secrets.
    """
    origins = re.compile(LOCAL_ORIGINS)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        host = urlsplit(f"//{environ.get('HTTP_HOST', '')}").hostname or ""
        local_host = host in LOCAL_HOSTS or host.endswith(".localhost")
        if local_host and (not origin or origins.match(origin) or origin in extra_origins):
            return app(environ, start_response)
        body = b"Only local callers may use this development server.\n"
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


class LocalMotoServer:
    """moto's server on 127.0.0.1 (a free port unless `port`), for local callers only."""

    def __init__(self, port: int = 0, extra_origins: Sequence[str] = ()) -> None:
        self.port = port
        self.extra_origins = tuple(extra_origins)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = local_callers_only(
            DomainDispatcherApplication(create_backend_app), self.extra_origins
        )
        self._server = make_server(
            "127.0.0.1", self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()


def startup_text(
    settings: Settings,
    aws: LocalAws,
    host: str,
    port: int,
    secret: str,
    env_file: Path | None,
) -> str:
    """What the server prints once it listens: URL, token, model, and how to connect."""
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown_host}:{port}/chatkit"
    token = mint_token(secret, DEFAULT_USER, TOKEN_HOURS * 3600)
    chat_url = "" if url == DEFAULT_URL else f" --url {url}"
    max_upload = settings.upload_max_bytes
    lines = [
        "",
        "chatkit-lambda local server (data in memory: gone when it stops)",
        "",
        f"  ChatKit API  {url}",
        f"  API docs     {url.removesuffix('/chatkit')}/docs  (OpenAPI, interactive)",
        f"  Token        {token}",
        f"               (user {DEFAULT_USER}, HS256, valid {TOKEN_HOURS} h;"
        " another user: ./scripts/token --user NAME)",
        f"  Model        {_describe_model(settings)}",
        f"  Moto         {aws.endpoint}  (table {aws.table_name}, bucket {aws.bucket_name})",
    ]
    if env_file is not None and env_file.is_file():
        lines.append(f"  Settings     the environment, then {env_file} for what it leaves unset")
    if settings.auth_mode != "hs256":
        lines.append("  Auth         AUTH_MODE=oidc: the token above is refused; use your issuer's")
    if host not in ("127.0.0.1", "localhost", "::1"):
        lines.append(f"  Warning      listening on {host}: reachable from your network")
    lines += [
        "",
        "Connect a ChatKit UI (e.g. a Vite or Next.js dev server on localhost):",
        "",
        f'  const token = "{token}";',
        "  const { control } = useChatKit({",
        "    api: {",
        f'      url: "{url}",',
        '      domainKey: "local-dev",',
        "      fetch: (url, init) =>",
        "        fetch(url, {",
        "          ...init,",
        "          headers: { ...init?.headers, Authorization: `Bearer ${token}` },",
        "        }),",
        '      uploadStrategy: { type: "two_phase" },  // presigned PUT, straight to S3 (moto)',
        "    },",
        f"    composer: {{ attachments: {{ enabled: true, maxSize: {max_upload} }} }},",
        "  });",
        "",
        "Try it from the terminal:",
        "",
        f'  ./scripts/chat{chat_url} "add a task to buy milk"',
        f'  ./scripts/chat{chat_url} "show my tasks"',
        f"  ./scripts/chat{chat_url} --list",
        "",
        "Ctrl-C stops the server.",
        "",
    ]
    return "\n".join(lines)


class _AnnouncingServer(uvicorn.Server):
    """uvicorn, printing the startup text once the socket listens (not before it can fail),
    with the port it got (`--port 0` binds a free one)."""

    def __init__(self, config: uvicorn.Config, intro: Callable[[int], str]) -> None:
        super().__init__(config)
        self.intro = intro

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(self.intro(port), flush=True)


def _describe_model(settings: Settings) -> str:
    if settings.provider == "offline":
        return (
            "offline (no API key: understands task commands; set OPENAI_API_KEY, or "
            "MODEL_BASE_URL + MODEL_API_KEY, in the environment or .env for a real model)"
        )
    where = f" at {settings.base_url}" if settings.base_url else ""
    return f"{settings.model} ({settings.provider}{where})"


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/serve",
        description=(
            "Run the ChatKit backend locally: the Lambda app on uvicorn, against an in-memory "
            "AWS (moto). The model is offline unless one of "
            + ", ".join(MODEL_VARIABLES)
            + " is set (in the environment or .env)."
        ),
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="HTTP port (default 8000; 0: a free one)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--moto-port", type=int, default=0, help="port of the moto server (default: a free one)"
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another browser origin to allow (localhost and 127.0.0.1 on any port always are)",
    )
    parser.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        help=f"the dev HS256 secret's file (default: ${SECRET_FILE_ENV} or .cache/dev-secret)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=REPO_ROOT / ".env",
        help="NAME=value settings to read; the environment wins (default: .env)",
    )
    parser.add_argument(
        "--no-env-file", dest="env_file", action="store_const", const=None, help="read no .env"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
