"""The composition root: settings in, the ASGI app out. Every entry point starts here.

Building does no network I/O (clients connect on first use, secrets are read on first use),
so it is safe during Lambda init and in tests. It also sets up what observes requests: DynamoDB
retries counted, X-Ray tracing when the stack turns it on, the cold start's init duration.
"""

from __future__ import annotations

from fastapi import FastAPI

import logs
import telemetry
import tracing
from agent.providers import build_models
from agent.server import AssistantServer, TurnLimits
from handlers.app import create_app
from handlers.auth import bearer_authenticator, build_verifier
from handlers.lazy_client import lazy
from handlers.secrets import SecretParameter
from settings import Settings
from store import DynamoDBStore, PayloadBucket, bind_table
from store.attachments import S3AttachmentStore
from store.quota import TurnQuota
from store.tasks import TaskStore
from store.uploads import UploadBucket, s3_client


def build_server(settings: Settings) -> AssistantServer:
    """The ChatKit server on the configured table, bucket and model provider."""
    table = bind_table(settings.table_name, region=settings.region)
    s3 = lazy(lambda: s3_client(settings.region))  # created on first use: most turns never need it
    uploads = UploadBucket(s3, settings.bucket_name, settings.upload_url_seconds)
    store = DynamoDBStore(table, PayloadBucket(s3, settings.bucket_name), uploads)
    attachments = S3AttachmentStore(
        store,
        uploads,
        max_bytes=settings.upload_max_bytes,
        allowed_types=settings.upload_allowed_types,
    )
    quota = TurnQuota(table, settings.daily_turn_limit) if settings.daily_turn_limit else None
    limits = TurnLimits(
        history_items=settings.history_items,
        max_agent_turns=settings.max_agent_turns,
        max_turn_seconds=settings.max_turn_seconds,
    )
    api_key = None
    if settings.api_key_parameter:
        secret = SecretParameter(settings.api_key_parameter, settings.secrets_max_age_seconds)
        api_key = secret.get
    models = build_models(settings, api_key)
    return AssistantServer(
        store,
        TaskStore(table),
        models,
        limits,
        attachment_store=attachments,
        attachment_reader=attachments,
        quota=quota,
        request_limits=settings.limits,
    )


def build_app(settings: Settings | None = None, *, api_docs: bool = False) -> FastAPI:
    """The app, configured from the environment unless `settings` are given; with `api_docs`,
    it serves its OpenAPI schema and interactive docs (`/docs`).

    Raises SettingsError or AuthConfigurationError, naming the variable, when the
    configuration cannot work.
    """
    settings = settings or Settings.from_env()
    logs.configure(settings)
    telemetry.configure(settings)
    telemetry.watch_dynamodb()  # before the first DynamoDB client exists
    traced = tracing.start(settings)  # before the first AWS client too: botocore is patched
    authenticate = bearer_authenticator(build_verifier(settings), settings.claims)
    app = create_app(
        build_server(settings),
        authenticate,
        max_request_bytes=settings.max_request_bytes,
        max_turn_seconds=settings.max_turn_seconds,
        api_docs=api_docs,
    )
    if traced:
        app.add_middleware(tracing.TracingMiddleware)
    telemetry.app_ready()
    return app
