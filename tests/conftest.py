"""Shared fixtures: fake AWS credentials, so nothing ever reaches a real account."""

from __future__ import annotations

import os

import pytest

# Set before any client is created; moto intercepts every call made with them.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
for variable in (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
):
    os.environ.pop(variable, None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
