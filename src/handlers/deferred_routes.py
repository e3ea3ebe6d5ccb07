"""Routes declared the first time a request needs them, so a cold start does not pay for them.

FastAPI analyses every parameter of a route when the route is declared (and, for the first route
with a query or path parameter, imports pydantic's v1 compatibility layer): about 40 ms of CPU
for the REST API on a cold start, well over the rest of the app's own code. A function that only
ever answers ChatKit requests never needs those routes. `DeferredRoutes` stands in for them in
the app's route table; the first request under its prefix, or for the OpenAPI schema, imports
them (`include`), puts them where the placeholder was, and routes the request again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send


class DeferredRoutes(BaseRoute):
    """The routes of the router `load()` returns, all under `prefix`, declared on first use."""

    def __init__(self, app: FastAPI, prefix: str, load: Callable[[], APIRouter]) -> None:
        self.app = app
        self.prefix = prefix
        self.load = load

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if path == self.prefix or path.startswith(f"{self.prefix}/"):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # the routes are not declared yet

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.include()
        await self.app.router(scope, receive, send)

    def include(self) -> None:
        """Declare the routes in the placeholder's place (once; a no-op afterwards)."""
        routes = self.app.router.routes
        if self not in routes:
            return
        position = routes.index(self)
        before = len(routes)
        self.app.include_router(self.load())
        declared = routes[before:]
        del routes[before:]
        routes[position : position + 1] = declared


def include_deferred(app: FastAPI) -> None:
    """Declare every deferred route of `app` (for the OpenAPI schema, which describes them all)."""
    for route in list(app.router.routes):
        if isinstance(route, DeferredRoutes):
            route.include()
