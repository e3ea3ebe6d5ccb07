"""What a route can ask FastAPI for: the verified user, the ChatKit server and its store.

`create_app` (handlers.app) keeps the app's `Services` on `app.state`; these dependencies read
them from the request, so a route (or a router of its own module) needs nothing else:

    from fastapi import APIRouter
    from handlers.dependencies import CurrentUser, ThreadStore

    router = APIRouter(prefix="/api")

    @router.get("/conversations")
    async def conversations(user: CurrentUser, store: ThreadStore) -> list[str]:
        page = await store.load_threads(20, None, "desc", user)
        return [thread.id for thread in page.data]

`CurrentUser` verifies the bearer token on every request (a missing or bad one is a 401, from
the error map); the store only ever sees `user.user_id`, so a route cannot reach another user's
data by passing ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, cast

from chatkit.server import ChatKitServer
from chatkit.store import Store
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import telemetry
from store import RequestContext

Authenticator = Callable[[Request], Awaitable[RequestContext]]
# Declares the bearer scheme in the OpenAPI schema (the docs' "Authorize" button); the token
# itself is read and verified by the app's authenticator.
bearer_scheme = HTTPBearer(auto_error=False, description="A JWT: HS256 or the OIDC issuer's.")


@dataclass(frozen=True)
class Services:
    """What the app's routes share, built once by the composition root (handlers.main)."""

    server: ChatKitServer[RequestContext]
    authenticate: Authenticator
    max_request_bytes: int
    max_turn_seconds: float


def services(request: Request) -> Services:
    """The app's services (`app.state.services`, set by `create_app`)."""
    return cast(Services, request.app.state.services)


async def current_user(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> RequestContext:
    """The caller, from its verified bearer token; AuthError (401) when there is none.
    The request's record (telemetry) names the caller by a pseudonym."""
    user = await services(request).authenticate(request)
    record = telemetry.unfinished()
    if record is not None:
        record.identify(user.user_id)
    return user


def chatkit_server(request: Request) -> ChatKitServer[RequestContext]:
    """The ChatKit server answering `POST /chatkit`."""
    return services(request).server


def thread_store(request: Request) -> Store[RequestContext]:
    """The store of threads and items (DynamoDB on Lambda); every call takes the user."""
    return services(request).server.store


AppServices = Annotated[Services, Depends(services)]
CurrentUser = Annotated[RequestContext, Depends(current_user)]
Server = Annotated[ChatKitServer[RequestContext], Depends(chatkit_server)]
ThreadStore = Annotated[Store[RequestContext], Depends(thread_store)]
