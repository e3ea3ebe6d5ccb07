"""The buffered Lambda entry point: Mangum runs the app and returns the whole response at once.

For BUFFERED Function URLs, API Gateway (REST or HTTP API) and `sam local invoke`: the same app
as the streaming entry point, but an SSE answer reaches the client only when it is complete.
The app is built on the first invocation, so importing this module stays cheap.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

from mangum import Mangum


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one API Gateway or Function URL event with a complete (buffered) response."""
    return _mangum()(event, context)


@cache
def _mangum() -> Mangum:
    from handlers.main import build_app
    from logs import route_all_logging
    from settings import Settings

    settings = Settings.from_env()
    route_all_logging(settings)  # every record one JSON line, as on the streaming entry point
    app = build_app(settings)
    with warnings.catch_warnings():
        # Mangum asks for the thread's event loop, which is deprecated when none is set yet.
        warnings.simplefilter("ignore", DeprecationWarning)
        return Mangum(app, lifespan="off")
