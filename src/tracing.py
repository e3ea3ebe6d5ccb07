"""Tracing: AWS X-Ray through Powertools' Tracer, on when the stack's `Tracing` parameter is
`Active` (it then sets `POWERTOOLS_TRACE_DISABLED=false`).

On, every request is one subsegment (`## chatkit request`) of the invocation's segment,
annotated with its request type and outcome (never message text or ids); every DynamoDB, S3,
SSM and Bedrock call is a subsegment (botocore is patched) and so is every model call of the
agent (`## model call`, from its run hooks). Off (the default, and always outside Lambda),
nothing of the tracer is imported and every function here returns at once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from settings import Settings

REQUEST_SUBSEGMENT = "## chatkit request"
MODEL_SUBSEGMENT = "## model call"
# Subsegments a request may leave open above its own (each a model call that never ended).
MAX_OPEN_SUBSEGMENTS = 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

_recorder: Any = None  # aws_xray_sdk's recorder, once `start` turned tracing on
_request: contextvars.ContextVar[Any] = contextvars.ContextVar("chatkit_trace", default=None)


def enabled(settings: Settings) -> bool:
    """Whether to trace: on Lambda (not SAM's local emulator), unless POWERTOOLS_TRACE_DISABLED
    says otherwise; the same rule as Powertools' Tracer, checked without importing it."""
    return bool(settings.lambda_task_root) and not (settings.trace_disabled or settings.sam_local)


def start(settings: Settings) -> bool:
    """Turn tracing on when `enabled(settings)`: Powertools' Tracer with botocore patched.
    Idempotent; returns whether tracing is on."""
    global _recorder
    if _recorder is None and enabled(settings):
        from aws_lambda_powertools import Tracer

        tracer = Tracer(service=settings.service_name, disabled=False, patch_modules=["botocore"])
        _recorder = tracer.provider
    return _recorder is not None


def stop() -> None:
    """Forget the recorder (tests): later requests are not traced."""
    global _recorder
    _recorder = None


class TracingMiddleware:
    """ASGI middleware: each HTTP request in its own subsegment (add it only when `start()`
    turned tracing on: `app.add_middleware(TracingMiddleware)`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if _recorder is None or scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        subsegment = _recorder.begin_subsegment(REQUEST_SUBSEGMENT)
        token = _request.set(subsegment)
        try:
            await self.app(scope, receive, send)
        except Exception:
            subsegment.add_fault_flag()
            raise
        finally:
            _end(subsegment)
            _request.reset(token)


def annotate(request_type: str, outcome: str) -> None:
    """Annotate the request's subsegment (searchable in X-Ray: `annotation.RequestType`)."""
    subsegment = _request.get()
    if subsegment is not None:
        subsegment.put_annotation("RequestType", request_type)
        subsegment.put_annotation("Outcome", outcome)


def model_call_started(agent: str) -> None:
    """A model call begins (the agent's run hooks): a subsegment under the request's."""
    if _recorder is not None and _request.get() is not None:
        subsegment = _recorder.begin_subsegment(MODEL_SUBSEGMENT, "remote")
        subsegment.put_metadata("agent", agent, "chatkit")


def model_call_ended(input_tokens: int, output_tokens: int) -> None:
    """The model call that began last has answered."""
    if _recorder is None or _request.get() is None:
        return
    subsegment = _recorder.current_subsegment()
    if subsegment is not None and subsegment.name == MODEL_SUBSEGMENT:
        subsegment.put_metadata(
            "usage", {"input_tokens": input_tokens, "output_tokens": output_tokens}, "chatkit"
        )
        _recorder.end_subsegment()


def _end(subsegment: Any) -> None:
    """End `subsegment`, after the ones still open above it: model calls that failed or were
    cancelled (their run hooks never saw an answer), flagged as faults."""
    for _ in range(MAX_OPEN_SUBSEGMENTS):
        current = _recorder.current_subsegment()
        if current is None:
            return
        if current is not subsegment:
            current.add_fault_flag()
        _recorder.end_subsegment()
        if current is subsegment:
            return
