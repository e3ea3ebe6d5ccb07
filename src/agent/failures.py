"""What a person reads when an answer fails, and whether retrying can help."""

from __future__ import annotations

import asyncio

import openai
from agents.exceptions import AgentsException, MaxTurnsExceeded, ModelBehaviorError
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError
from chatkit.store import NotFoundError
from pydantic import ValidationError

from errors import ClientRequestError, QuotaExceededError
from settings import SecretUnavailableError
from store import (
    StoreUnavailableError,
    ThreadBusyError,
    ThreadDeletedError,
    ThreadLeaseLostError,
)
from telemetry import ErrorClass

BUSY_MESSAGE = (
    "An answer is still being written in this conversation. "
    "Wait for it to finish, then send your message again."
)


class IncompleteAnswerError(RuntimeError):
    """The model's stream ended before the answer was complete (no finish reason)."""


class EmptyAnswerError(RuntimeError):
    """The model's stream ended without any answer."""


def failure_class(error: BaseException) -> ErrorClass:
    """The class a failure is counted under in the metrics and logs (see `telemetry`).

    A thread busy with another turn is the client's (it sent too soon); a lease lost to
    another turn is the store's. Auth failures and deadlines are classed where they happen.
    """
    match error:
        case QuotaExceededError():
            return "quota"
        case ClientRequestError() | NotFoundError() | ValidationError() | ThreadBusyError():
            return "client"
        case StoreUnavailableError() | ThreadLeaseLostError():
            return "store"
        case (
            openai.OpenAIError()
            | AgentsException()
            | IncompleteAnswerError()
            | EmptyAnswerError()
            | EndpointConnectionError()
            | ConnectTimeoutError()
            | asyncio.TimeoutError()
        ):
            return "model"
        case ClientError() if error.operation_name in BEDROCK_OPERATIONS:
            return "model"
        case _:
            return "internal"


def not_saved(what: str, error: BaseException) -> tuple[str, bool]:
    """(message, allow_retry) for `what` ("The answer", "Your message") not saved because of
    `error`, a store failure."""
    message, allow_retry = describe_failure(error)
    return f"{what} could not be saved. {message}", allow_retry


def describe_failure(error: BaseException) -> tuple[str, bool]:
    """Return (message for the user, allow_retry) for an error raised while answering:
    the model provider's, the store's, or the server's.

    Messages never include provider payloads, keys or stack traces.
    """
    from_provider = _provider_failure(error)
    if from_provider is not None:
        return from_provider
    match error:
        case MaxTurnsExceeded():
            return ("The assistant needed too many steps and was stopped. Try rephrasing.", True)
        case ModelBehaviorError():
            return ("The model gave an answer this server could not use. Try again.", True)
        case SecretUnavailableError():
            # The parameter's name goes to the logs, not to the user.
            return (
                "The server is misconfigured: a secret it needs could not be read. "
                "The administrator needs to check its logs.",
                False,
            )
        case ClientRequestError():
            return (error.message, error.allow_retry)
        case StoreUnavailableError():
            return (
                "Storage is unavailable right now. "
                f"Try again in {StoreUnavailableError.retry_after_seconds} seconds or so.",
                True,
            )
        case ThreadDeletedError():
            return ("This conversation was deleted.", False)
        case ThreadLeaseLostError() | ThreadBusyError():
            return (BUSY_MESSAGE, True)
        case IncompleteAnswerError():
            return ("The model's answer was cut off before it finished. Try again.", True)
        case EmptyAnswerError():
            return ("The model returned an empty answer. Try again.", True)
        case _:
            return ("Something went wrong while answering. Try again.", True)


def _provider_failure(error: BaseException) -> tuple[str, bool] | None:
    """(message, allow_retry) for the model provider's errors (OpenAI's client, Bedrock's);
    None for any other error."""
    match error:
        case openai.AuthenticationError() | openai.PermissionDeniedError():
            return (
                "The model provider rejected this server's API key. "
                "The administrator needs to check MODEL_API_KEY.",
                False,
            )
        case openai.RateLimitError():
            return ("The model provider is rate limiting requests. Try again in a moment.", True)
        case openai.APITimeoutError() | asyncio.TimeoutError():
            return ("The model provider took too long to answer. Try again.", True)
        case openai.APIConnectionError():
            return ("The model provider could not be reached. Try again.", True)
        case openai.InternalServerError():
            return ("The model provider had a temporary error. Try again.", True)
        case openai.NotFoundError():
            return (
                "The model provider does not know the configured model. "
                "The administrator needs to check MODEL_NAME.",
                False,
            )
        case openai.APIStatusError():
            return (
                f"The model provider refused the request (HTTP {error.status_code}).",
                error.status_code >= 500,
            )
        case ClientError() if error.operation_name in BEDROCK_OPERATIONS:
            # Bedrock's answer (an HTTP error or an exception event mid-stream)
            code = str(error.response.get("Error", {}).get("Code", ""))
            # An exception event's code is its member name: throttlingException.
            return _aws_model_failure(code[:1].upper() + code[1:])
        case EndpointConnectionError() | ConnectTimeoutError():
            return ("The model provider could not be reached. Try again.", True)
        case _:
            return None


BEDROCK_OPERATIONS = {"ConverseStream", "Converse"}
AWS_RATE_LIMITS = {"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequests"}
AWS_TEMPORARY = {
    "InternalServerException",
    "ServiceUnavailableException",
    "ModelStreamErrorException",
    "ModelNotReadyException",
}
AWS_ACCESS = {"AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException"}


def _aws_model_failure(code: str) -> tuple[str, bool]:
    if code in AWS_RATE_LIMITS:
        return ("The model provider is rate limiting requests. Try again in a moment.", True)
    if code == "ModelTimeoutException":
        return ("The model provider took too long to answer. Try again.", True)
    if code in AWS_TEMPORARY:
        return ("The model provider had a temporary error. Try again.", True)
    if code in AWS_ACCESS:
        return (
            "The model provider refused this server's AWS credentials. The administrator "
            "needs to check the function's IAM role and the model's access in Bedrock.",
            False,
        )
    if code == "ResourceNotFoundException":
        return (
            "The model provider does not know the configured model. "
            "The administrator needs to check BEDROCK_MODEL_ID.",
            False,
        )
    return ("The model provider refused the request.", False)
