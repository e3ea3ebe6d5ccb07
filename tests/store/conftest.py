"""Store tests use the shared fixtures of tests/conftest.py."""

from tests.conftest import BUCKET, TABLE

__all__ = ["BUCKET", "TABLE"]
