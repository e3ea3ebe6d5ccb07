"""Secrets from SSM SecureString parameters, through Powertools parameters.

Read on first use (never at import), decrypted, cached for `max_age_seconds`; a failed read
is retried after `FAILURE_RETRY_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError

from settings import SecretUnavailableError

__all__ = ["SecretParameter", "SecretUnavailableError"]

# How long a failed read is answered from memory before SSM is asked again.
FAILURE_RETRY_SECONDS = 10.0


class SecretParameter:
    """One SecureString parameter, e.g. the model API key or the HS256 signing secret.

    A read that fails is remembered for `retry_seconds`: until then every caller gets the same
    error without another SSM call, so a misconfigured function does not call SSM once per
    request (and cannot be made to by anyone who can reach it).
    """

    def __init__(
        self,
        name: str,
        max_age_seconds: float = 300,
        retry_seconds: float = FAILURE_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.max_age_seconds = max_age_seconds
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._failure: tuple[float, str] | None = None  # (retry at, why)

    async def get(self) -> str:
        """The decrypted value (cached); raises SecretUnavailableError naming the parameter."""
        return await anyio.to_thread.run_sync(self.get_now)

    def get_now(self) -> str:
        """Blocking variant of `get`, for synchronous callers."""
        if self._failure is not None and self._clock() < self._failure[0]:
            raise SecretUnavailableError(self._failure[1])
        try:
            value = self._read()
        except SecretUnavailableError as error:
            self._failure = (self._clock() + self.retry_seconds, str(error))
            raise
        self._failure = None
        return value

    def _read(self) -> str:
        # Imported on the first read, not at init: it imports boto3, which a function whose
        # secrets are not in SSM (or not read yet) does not need.
        from aws_lambda_powertools.utilities import parameters

        try:
            value = parameters.get_parameter(
                self.name, decrypt=True, max_age=int(self.max_age_seconds)
            )
        except (parameters.exceptions.GetParameterError, ClientError, BotoCoreError) as error:
            raise SecretUnavailableError(
                f"SSM parameter {self.name} could not be read ({_reason(error)})"
            ) from None
        if not value:
            raise SecretUnavailableError(f"SSM parameter {self.name} is empty")
        return str(value)


def _reason(error: Exception) -> str:
    cause = error.__cause__ or error.__context__ or error
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", "ClientError"))
    return type(cause).__name__
