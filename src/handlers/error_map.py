"""The one error map: every exception a request can raise becomes its answer here.

A client's mistake is answered with a 4xx and a message written for it; anything else with a
generic 500 or 503 carrying the request id, its details in the logs only. Every body has the
same shape: `{"error": {"code", "message", "request_id"?}}`.

| exception | status | code |
|---|---|---|
| `AuthError` (no or bad bearer token) | 401 + `WWW-Authenticate` | `unauthorized` |
| `ClientRequestError` and its kinds (`errors`) | the type's `status` | the type's `code` |
| chatkit's `NotFoundError` | 404 | `not_found` |
| pydantic's `ValidationError`, FastAPI's `RequestValidationError` | 400 | `invalid_request` |
| Starlette's `HTTPException` (unknown path, wrong method) | its status | `http_error` |
| `StoreUnavailableError` (DynamoDB throttling, timeouts) | 503 + `Retry-After: 2` | `unavailable` |
| `SecretUnavailableError`, `AuthConfigurationError` | 503 + `Retry-After: 30` | `unavailable` |
| anything else | 500 | `internal_error` |

`EXCEPTION_HANDLERS` is this table as FastAPI's exception-handler table, so a route raises and
never builds an error answer itself. Once a stream has started, the same errors become an SSE
`error` event instead (`errors.error_event`, chatkit's `ErrorEvent`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from chatkit.store import NotFoundError
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import telemetry
from agent.failures import failure_class
from errors import ClientRequestError, QuotaExceededError
from handlers.auth import AuthConfigurationError, AuthError, request_id_of
from logs import logger
from settings import SecretUnavailableError
from store import StoreUnavailableError

BUSY_MESSAGE = "The service is busy right now. Try again in a moment."
UNAVAILABLE_MESSAGE = "The service cannot answer right now. Try again later."
INTERNAL_MESSAGE = "Something went wrong on the server."
# How many of a validation error's problems the answer lists.
MAX_PROBLEMS = 5


def error_response(error: Exception, request_id: str | None) -> JSONResponse:
    """The answer to `error`; internals never reach the client."""
    match error:
        case AuthError():
            return unauthorized(error)
        case QuotaExceededError():
            retry_after = {"retry-after": str(error.retry_after_seconds)}
            return json_error(error.status, error.code, error.message, headers=retry_after)
        case ClientRequestError():
            return json_error(error.status, error.code, error.message)
        case ValidationError():
            message = f"Invalid ChatKit request: {_problems(error.errors())}"
            return json_error(400, "invalid_request", message)
        case RequestValidationError():
            message = f"Invalid request: {_problems(error.errors())}"
            return json_error(400, "invalid_request", message)
        case NotFoundError():
            return json_error(404, "not_found", str(error) or "Not found")
        case HTTPException():
            detail = str(error.detail)
            return json_error(error.status_code, "http_error", detail, headers=error.headers)
        case StoreUnavailableError():
            logger.warning(
                "storage unavailable", extra={"request_id": request_id, "error": str(error)}
            )
            return json_error(503, "unavailable", BUSY_MESSAGE, request_id, {"retry-after": "2"})
        case SecretUnavailableError() | AuthConfigurationError():
            # Which parameter or setting is wrong is for the operator's logs, not for callers.
            logger.error(
                "server configuration error", extra={"request_id": request_id, "error": str(error)}
            )
            headers = {"retry-after": "30"}
            return json_error(503, "unavailable", UNAVAILABLE_MESSAGE, request_id, headers)
        case _:
            logger.exception("request failed", extra={"request_id": request_id}, exc_info=error)
            return json_error(500, "internal_error", INTERNAL_MESSAGE, request_id)


def unauthorized(error: AuthError) -> JSONResponse:
    """401 with a JSON body and the RFC 6750 challenge."""
    challenge = 'Bearer realm="chatkit"'
    if error.token_present:
        challenge += f', error="invalid_token", error_description="{error.description}"'
    headers = {"www-authenticate": challenge}
    return json_error(401, "unauthorized", error.description, headers=headers)


def json_error(
    status: int,
    code: str,
    message: str,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error body every error answer has; the request id is echoed in `x-request-id`."""
    # A message may quote an id the client sent: make sure it can be encoded whatever it holds.
    text = message.encode("utf-8", "replace").decode("utf-8")
    body: dict[str, str] = {"code": code, "message": text}
    headers = dict(headers or {})
    if request_id is not None:
        body["request_id"] = request_id
        headers["x-request-id"] = request_id
    return JSONResponse({"error": body}, status, headers=headers or None)


def _problems(errors: Sequence[Any]) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in errors[:MAX_PROBLEMS]
    )


async def _handle(request: Request, error: Exception) -> Response:
    response = error_response(error, request_id_of(request))
    record = telemetry.unfinished()
    if record is not None:  # a ChatKit request refused before its route ran (a bad token)
        error_class = "auth" if isinstance(error, AuthError) else failure_class(error)
        record.fail(error_class, type(error).__name__, response.status_code)
        record.finish()
    return response


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
# FastAPI's exception-handler table: every type above answered by `error_response`. (Starlette
# answers a bare `Exception` with the same handler, then re-raises it for the server to log.)
EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    kind: _handle
    for kind in (
        AuthError,
        ClientRequestError,
        ValidationError,
        RequestValidationError,
        NotFoundError,
        HTTPException,
        StoreUnavailableError,
        SecretUnavailableError,
        AuthConfigurationError,
        Exception,
    )
}
