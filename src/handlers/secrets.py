"""Secrets from SSM SecureString parameters, through Powertools parameters.

Read on first use (never at import), decrypted, cached for `max_age_seconds`.
"""

from __future__ import annotations

import anyio.to_thread
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import BotoCoreError, ClientError

from settings import SecretUnavailableError

__all__ = ["SecretParameter", "SecretUnavailableError"]


class SecretParameter:
    """One SecureString parameter, e.g. the model API key or the HS256 signing secret."""

    def __init__(self, name: str, max_age_seconds: float = 300) -> None:
        self.name = name
        self.max_age_seconds = max_age_seconds

    async def get(self) -> str:
        """The decrypted value (cached); raises SecretUnavailableError naming the parameter."""
        return await anyio.to_thread.run_sync(self.get_now)

    def get_now(self) -> str:
        """Blocking variant of `get`, for synchronous callers."""
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
