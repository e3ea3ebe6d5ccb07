"""The FastAPI app: its OpenAPI schema, and a router added with the app's dependencies gets the
verified user, the store and the error map like `POST /chatkit` does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from devtools.tokens import mint_token
from errors import LimitExceededError
from handlers.deferred_routes import DeferredRoutes
from handlers.dependencies import CurrentUser, ThreadStore
from handlers.main import build_app
from store import TableRecord
from tests.handlers.conftest import app_settings

SECRET = "routes-test-secret-0123456789-abcdef"
AUTH = {"authorization": f"Bearer {mint_token(SECRET, 'alice')}"}

router = APIRouter(prefix="/api")


@router.get("/me")
async def me(user: CurrentUser, store: ThreadStore) -> dict[str, Any]:
    page = await store.load_threads(5, None, "desc", user)
    return {"user": user.user_id, "threads": len(page.data)}


@router.get("/refused")
async def refused(user: CurrentUser) -> None:
    raise LimitExceededError("At most 3 of those.")


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(table: type[TableRecord], s3: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(app_settings(auth_dev_secret=SECRET))
    app.include_router(router)
    async with client_of(app) as client:
        yield client


async def test_a_router_gets_the_verified_user_and_the_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me", headers=AUTH)

    assert response.status_code == 200
    assert response.json() == {"user": "alice", "threads": 0}


async def test_a_router_refuses_a_caller_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_client_error_raised_by_a_route_is_answered_by_the_error_map(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/refused", headers=AUTH)

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "limit_exceeded", "message": "At most 3 of those."}
    }


async def test_an_unknown_path_and_a_wrong_method_have_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/nowhere")
    wrong_method = await client.get("/chatkit")

    assert missing.status_code == 404 and missing.json()["error"]["code"] == "http_error"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


async def test_no_api_docs_unless_asked_for(table: type[TableRecord], s3: Any) -> None:
    settings = app_settings(auth_dev_secret=SECRET)
    async with client_of(build_app(settings)) as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404
    async with client_of(build_app(settings, api_docs=True)) as client:
        assert (await client.get("/docs")).status_code == 200
        schema = (await client.get("/openapi.json")).json()

    assert {"/chatkit", "/health", "/api/conversations"} <= set(schema["paths"])
    chatkit = schema["paths"]["/chatkit"]["post"]
    assert "text/event-stream" in chatkit["responses"]["200"]["content"]
    assert {"401", "404", "413", "429"} <= set(chatkit["responses"])
    body = chatkit["requestBody"]["content"]["application/json"]["schema"]
    assert "threads.create" in str(schema["components"]["schemas"]) and body
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


async def test_the_rest_api_is_declared_on_its_first_request(
    table: type[TableRecord], s3: Any
) -> None:
    app = build_app(app_settings(auth_dev_secret=SECRET))
    [deferred] = [route for route in app.router.routes if isinstance(route, DeferredRoutes)]
    position = app.router.routes.index(deferred)

    async with client_of(app) as client:
        unauthenticated = await client.get("/api/conversations")
        listed = await client.get("/api/conversations", headers=AUTH)
        again = await client.get("/api/conversations?limit=2", headers=AUTH)
        wrong_method = await client.put("/api/conversations/thr_1", headers=AUTH)
        unknown = await client.get("/api/conversations/thr_1/nothing", headers=AUTH)
        elsewhere = await client.get("/api/conversationsx", headers=AUTH)

    assert unauthenticated.status_code == 401
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert again.status_code == 200
    assert wrong_method.status_code == 405
    assert unknown.status_code == 404 and elsewhere.status_code == 404
    assert deferred not in app.router.routes
    assert len(app.router.routes) == position + 1  # declared where the placeholder was, once
