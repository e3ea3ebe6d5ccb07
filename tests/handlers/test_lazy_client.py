"""The app is built without creating its S3 client; the client is created once, when used."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from handlers.lazy_client import lazy
from handlers.main import build_app
from tests.handlers.conftest import app_settings


class Client:
    def head_bucket(self, Bucket: str) -> dict[str, Any]:
        return {"Bucket": Bucket}


def test_the_client_is_created_on_first_use_and_only_once() -> None:
    created: list[Client] = []

    def create() -> Client:
        created.append(Client())
        return created[-1]

    client = lazy(create)
    assert created == []

    threads = [threading.Thread(target=client.head_bucket, args=("b",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert client.head_bucket(Bucket="b") == {"Bucket": "b"}
    assert len(created) == 1


def test_building_the_app_creates_no_s3_client(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    monkeypatch.setattr("handlers.main.s3_client", lambda region: created.append("s3"))

    build_app(app_settings(auth_dev_secret="a-development-secret-long-enough-for-hs256"))

    assert created == []
