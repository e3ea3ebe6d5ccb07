"""A fake AWS account for tests, benchmarks and subprocesses: every call must reach moto."""

from __future__ import annotations

import os

# Credentials moto accepts and no real account has.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Variables that would send calls somewhere else than moto's in-process mock.
REDIRECTING_VARIABLES = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
)


def use_fake_aws(region: str = "us-east-1") -> None:
    """Fake credentials and `region` in this process's environment, and no profile or endpoint
    override. Call before the first AWS client is created."""
    os.environ.update(FAKE_CREDENTIALS, AWS_DEFAULT_REGION=region, AWS_REGION=region)
    for variable in REDIRECTING_VARIABLES:
        os.environ.pop(variable, None)
