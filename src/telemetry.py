"""Telemetry: what one request did, as one JSON log record and CloudWatch metrics (EMF).

A request's `RequestRecord` is begun by the HTTP app (`begin`) and reachable from anywhere the
request runs (`current`): the agent's run hooks add model calls, tokens, tool calls and
handoffs, the answer adds its failure, botocore adds DynamoDB retries and throttles. `finish`
writes it once: one log record (request id, a pseudonymous user id, request type, status,
timings, token counts; never message text, the raw user id or a token) and the metrics of
`METRICS`, whose dimensions take a bounded set of values only (request types, error classes).
`template.yaml`'s alarms and dashboard name these metrics; a test holds them to this table.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aws_lambda_powertools.metrics import EphemeralMetrics

import tracing
from logs import logger
from settings import Settings

ErrorClass = Literal["client", "auth", "quota", "model", "store", "deadline", "internal"]
ERROR_CLASSES: tuple[ErrorClass, ...] = (
    "client",
    "auth",
    "quota",
    "model",
    "store",
    "deadline",
    "internal",
)
USER_ID_HEX_CHARS = 16
# Codes of a throttled DynamoDB attempt (botocore retries it).
DYNAMODB_THROTTLING = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


Unit = Literal["Count", "Milliseconds"]
DimensionSets = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Metric:
    """A metric the code emits: its unit and the dimension sets each data point carries."""

    name: str
    unit: Unit
    dimensions: DimensionSets
    description: str


def _metrics(unit: Unit, dimensions: DimensionSets, **descriptions: str) -> dict[str, Metric]:
    """Metrics of one unit and one group of dimension sets, by name."""
    return {name: Metric(name, unit, dimensions, text) for name, text in descriptions.items()}


SERVICE_ONLY: DimensionSets = (("service",),)
BY_TYPE: DimensionSets = (("service", "RequestType"), ("service",))
BY_CLASS: DimensionSets = (("service", "ErrorClass"),)

METRICS: dict[str, Metric] = {
    **_metrics("Count", BY_TYPE, Requests="requests that reached the ChatKit endpoint"),
    **_metrics(
        "Milliseconds",
        BY_TYPE,
        RequestLatency="request start to its last byte",
        TimeToFirstEvent="request start to a stream's first event",
    ),
    **_metrics("Count", BY_CLASS, Errors="failed requests, by error class"),
    **_metrics(
        "Count",
        SERVICE_ONLY,
        Turns="requests that ran the agent",
        ModelCalls="model calls made by the agent",
        InputTokens="model input tokens (Agents SDK usage)",
        OutputTokens="model output tokens (Agents SDK usage)",
        ToolCalls="tool calls the agent made",
        Handoffs="handoffs between agents",
        HistoryItems="thread items read as the model's history",
        DynamoDBRetries="DynamoDB attempts botocore retried",
        DynamoDBThrottles="DynamoDB attempts throttled",
        ColdStart="first request of an execution environment",
    ),
    **_metrics("Milliseconds", SERVICE_ONLY, InitDuration="process start to app ready"),
}
# The request types a dimension may name: the ChatKit protocol's, plus these two.
UNKNOWN_TYPE, INVALID_TYPE = "unknown", "invalid"


@dataclass
class RequestRecord:
    """What one request did; `finish` logs and measures it once."""

    request_id: str | None = None
    user: str | None = None  # pseudonymous (see `pseudonym`), never the token's `sub`
    request_type: str = UNKNOWN_TYPE
    route: str | None = None  # a REST route's method and path template
    thread_id: str | None = None
    status: int = 200
    error_class: ErrorClass | None = None
    error: str | None = None  # the exception's type name, never its message
    started: float = field(default_factory=time.perf_counter)
    first_event_ms: float | None = None
    turn: bool = False  # the agent ran
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    handoffs: int = 0
    history_items: int = 0
    dynamodb_retries: int = 0
    dynamodb_throttles: int = 0
    finished: bool = False

    def identify(self, user_id: str) -> None:
        """Record who asked, as the pseudonym of `user_id`."""
        self.user = pseudonym(user_id)

    def first_event(self) -> None:
        """The stream's first event is ready (the first time only)."""
        if self.first_event_ms is None:
            self.first_event_ms = _ms_since(self.started)

    def fail(
        self, error_class: ErrorClass, error: str | None = None, status: int | None = None
    ) -> None:
        """Record a failure; the first one is the request's (later ones are its consequences)."""
        if status is not None:
            self.status = status
        if self.error_class is None:
            self.error_class, self.error = error_class, error

    def finish(self) -> None:
        """Write the log record and the metrics (once; later calls do nothing)."""
        if self.finished:
            return
        self.finished = True
        duration_ms = _ms_since(self.started)
        cold = _environment.take_cold_start()
        tracing.annotate(self.request_type, self.error_class or "ok")
        logger.info("chatkit request", extra=self.log_fields(duration_ms, cold))
        for document in self.metric_documents(duration_ms, cold):
            write_metrics(document)

    def log_fields(self, duration_ms: float, cold: float | None) -> dict[str, Any]:
        """The fields of the request's log record."""
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "user": self.user,
            "request_type": self.request_type,
            "route": self.route,
            "thread_id": self.thread_id,
            "status": self.status,
            "outcome": self.error_class or "ok",
            "error": self.error,
            "duration_ms": duration_ms,
            "first_event_ms": self.first_event_ms,
            "dynamodb_retries": self.dynamodb_retries,
            "dynamodb_throttles": self.dynamodb_throttles,
            "cold_start": cold is not None,
        }
        if self.turn:
            fields.update(self.turn_counts())
        if cold is not None:
            fields["init_duration_ms"] = cold
        return fields

    def turn_counts(self) -> dict[str, int]:
        return {
            "model_calls": self.model_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tool_calls": self.tool_calls,
            "handoffs": self.handoffs,
            "history_items": self.history_items,
        }

    def metric_documents(self, duration_ms: float, cold: float | None) -> Iterator[MetricSet]:
        """The request's metrics, one set per group of dimensions."""
        by_type = MetricSet({"RequestType": self.request_type}, BY_TYPE)
        by_type.add("Requests", 1)
        by_type.add("RequestLatency", duration_ms)
        if self.first_event_ms is not None:
            by_type.add("TimeToFirstEvent", self.first_event_ms)
        yield by_type
        if self.error_class is not None:
            by_class = MetricSet({"ErrorClass": self.error_class}, BY_CLASS)
            by_class.add("Errors", 1)
            yield by_class
        service = MetricSet({}, SERVICE_ONLY)
        service.add("DynamoDBRetries", self.dynamodb_retries)
        service.add("DynamoDBThrottles", self.dynamodb_throttles)
        if self.turn:
            service.add("Turns", 1)
            service.add("ModelCalls", self.model_calls)
            service.add("InputTokens", self.input_tokens)
            service.add("OutputTokens", self.output_tokens)
            service.add("ToolCalls", self.tool_calls)
            service.add("Handoffs", self.handoffs)
            service.add("HistoryItems", self.history_items)
        if cold is not None:
            service.add("ColdStart", 1)
            service.add("InitDuration", cold)
        yield service


@dataclass
class MetricSet:
    """Metrics sharing one dimension set group: one EMF document."""

    dimensions: dict[str, str]
    dimension_sets: DimensionSets
    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values[name] = value


def write_metrics(metric_set: MetricSet) -> None:
    """Print `metric_set` as one EMF document on stdout (nothing when metrics are disabled).

    Powertools checks the document against the EMF schema; `service` is its own dimension.
    """
    settings = _configured()
    metrics = EphemeralMetrics(namespace=settings.metrics_namespace, service=settings.service_name)
    for name, value in metric_set.values.items():
        metrics.add_metric(name=name, unit=METRICS[name].unit, value=value)
    for dimension, label in metric_set.dimensions.items():
        metrics.add_dimension(name=dimension, value=label)
    for extra in metric_set.dimension_sets[1:]:
        named = {key: label for key, label in metric_set.dimensions.items() if key in extra}
        metrics.add_dimensions(service=settings.service_name, **named)
    metrics.flush_metrics()


def pseudonym(user_id: str, key: str | None = None) -> str:
    """A stable pseudonymous id for `user_id`: HMAC-SHA256 keyed by LOG_USER_ID_KEY (the
    stack's id on AWS), so logs can count a user's requests without naming the user."""
    secret = (key or _configured().log_user_id_key).encode()
    digest = hmac.new(secret, user_id.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return f"u_{digest[:USER_ID_HEX_CHARS]}"


_settings: Settings | None = None  # set by `configure`; until then, the defaults


def configure(settings: Settings) -> None:
    """Use the settings' metrics namespace, service name and user id key from now on (the
    composition root calls it)."""
    global _settings
    _settings = settings


def _configured() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


# -- the current request ------------------------------------------------------------------

_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "chatkit_request_record", default=None
)


def begin(request_id: str | None = None) -> RequestRecord:
    """Start the record of a request; `current()` returns it in everything the request runs
    (tasks it starts, worker threads through anyio, the agent's run)."""
    record = RequestRecord(request_id=request_id)
    _current.set(record)
    return record


def unfinished() -> RequestRecord | None:
    """The record of the request being served, unless it is finished (or there is none)."""
    record = _current.get()
    return record if record is not None and not record.finished else None


def current() -> RequestRecord:
    """The record of the request being served (a detached one outside any request)."""
    record = _current.get()
    return record if record is not None else RequestRecord()


# -- the execution environment ------------------------------------------------------------


@dataclass
class _Environment:
    """Cold start and init duration, reported with the first request after the app is ready."""

    restored_at: float | None = None  # monotonic time of a SnapStart restore
    init_ms: float | None = None
    reported: bool = False

    def take_cold_start(self) -> float | None:
        """The init duration, for the first request after `app_ready` only."""
        if self.init_ms is None or self.reported:
            return None
        self.reported = True
        return self.init_ms


_environment = _Environment()


def app_ready() -> None:
    """The app is built: its first request reports a cold start with the init duration
    (process start to now; after a SnapStart restore, restore to now). Once per process."""
    if _environment.init_ms is None:
        if _environment.restored_at is not None:
            age = time.monotonic() - _environment.restored_at
        else:
            age = _process_age_seconds()
        _environment.init_ms = round(age * 1000, 1)


def restored() -> None:
    """A SnapStart restore: the next `app_ready` is a cold start counted from now."""
    global _environment
    _environment = _Environment(restored_at=time.monotonic())


def _process_age_seconds() -> float:
    """Seconds since this process started (Linux's /proc), as Lambda's init duration counts."""
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# -- DynamoDB retries and throttles, from botocore's own events ----------------------------


def _on_dynamodb_attempt(response: Any = None, **_: Any) -> None:
    """botocore's needs-retry event: after every DynamoDB attempt, before the retry decision."""
    if response is None:
        return
    parsed: Mapping[str, Any] = response[1] if len(response) > 1 else {}
    if parsed.get("Error", {}).get("Code") in DYNAMODB_THROTTLING:
        current().dynamodb_throttles += 1


def _on_dynamodb_call(parsed: Mapping[str, Any] | None = None, **_: Any) -> None:
    """botocore's after-call event: the call's answer, with how many retries it took."""
    retries = (parsed or {}).get("ResponseMetadata", {}).get("RetryAttempts", 0)
    if isinstance(retries, int) and retries > 0:
        current().dynamodb_retries += retries


def watch_dynamodb() -> None:
    """Count DynamoDB retries and throttles of every botocore session created from now on
    (PynamoDB makes its own, per thread), on the request being served. Idempotent."""
    from botocore import handlers

    for event, handler in (
        ("needs-retry.dynamodb", _on_dynamodb_attempt),
        ("after-call.dynamodb", _on_dynamodb_call),
    ):
        if (event, handler) not in handlers.BUILTIN_HANDLERS:
            handlers.BUILTIN_HANDLERS.append((event, handler))
