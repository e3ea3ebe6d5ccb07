"""The streaming Lambda entry point: our own Runtime API loop, in streaming response mode.

Lambda's managed Python runtime cannot stream a response, so on the managed `python3.13`
runtime `AWS_LAMBDA_EXEC_WRAPPER=/var/task/run-streaming.sh` replaces the runtime's loop with
`python -m handlers.lambda_streaming`, which speaks the Runtime API itself:

- Init: put on `sys.path` what the managed runtime's bootstrap would (task root, layers,
  runtime dir), read the settings (`Settings.from_env`), log every record through the one
  Powertools logger (`logs`), build the app (`handlers.main.build_app`). If that raises, POST
  /runtime/init/error and exit 1. Init runs without cyclic garbage collections and freezes
  what it created (`collector_paused`).
- Each invocation: GET /runtime/invocation/next (its trace id goes to `_X_AMZN_TRACE_ID`), run
  the app on the Function URL event, and stream the answer to /runtime/invocation/{id}/response
  in streaming mode (`Transfer-Encoding: chunked`, content type
  `application/vnd.awslambda.http-integration-response`): the JSON prelude and 8 NULs, then one
  HTTP chunk per ASGI body message, written the moment the app sends it.
- Failures: before the first byte, POST /runtime/invocation/{id}/error; after it, end the
  chunked body with the `Lambda-Runtime-Function-Error-Type` / `-Body` trailers; a response the
  Runtime API did not take goes to /error too. Either way the loop goes on with the next
  invocation, on the same event loop (clients and pools survive), once the work the app left
  running has ended: asking for the next event freezes the environment.
- Deadline: `STREAM_DEADLINE_MARGIN_MS` (default 2000) before `Lambda-Runtime-Deadline-Ms`,
  the app's request is cancelled (ChatKit keeps the partial answer) and the stream ends with a
  final SSE `error` event instead of being cut by Lambda (see `handlers.lambda_events`).
- SnapStart (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`): only the imports are snapshotted.
  Init imports `handlers.main` (and with it chatkit, the Agents SDK, boto3: the slow part), runs
  the before-snapshot hooks, then GET /runtime/restore/next blocks until a restore. After it,
  `random` is reseeded, the after-restore hooks run, and only then is the app built, so no
  boto3 client, credential, connection pool or HTTP connection is ever in a snapshot. A hook
  failing before the snapshot is an init error (exit 64); after the restore, or a build failing
  then, is reported to /runtime/restore/error (exit 65), as awslambdaric does.
  Hooks are the ones registered with AWS's `snapshot_restore_py` (importable from the runtime
  directory on Lambda): before-snapshot hooks run last-registered first, after-restore hooks
  in registration order, as awslambdaric runs them.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import http.client
import importlib
import io
import json
import os
import random
import site
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import telemetry
from handlers.lambda_events import ASGIApp, LambdaContext, stream_http_response
from logs import logger, route_all_logging
from settings import Settings, SettingsError

API_VERSION = "2018-06-01"
HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
# Work the app leaves running after its response (a save shielded from cancellation) may use
# the invocation's time up to this close to Lambda's deadline; an unknown deadline gets this long.
DEADLINE_SAFETY_SECONDS = 0.1
UNKNOWN_DEADLINE_WAIT_SECONDS = 10.0

Hook = tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]]


class RuntimeApiError(RuntimeError):
    """The Runtime API could not be reached or refused a call: the process cannot go on."""


class ResponseStreamError(RuntimeError):
    """The connection carrying one streamed response broke."""


@dataclass(frozen=True)
class Invocation:
    """One event handed out by GET /runtime/invocation/next."""

    request_id: str
    deadline_ms: int
    function_arn: str
    trace_id: str | None
    body: bytes


def error_payload(error: BaseException) -> dict[str, str]:
    """What Lambda records about a failure: its type and message, never a traceback."""
    return {"errorType": type(error).__name__, "errorMessage": str(error)}


class ResponseStream:
    """One streamed response on its own connection: the request head goes out with the first
    chunk, then each chunk as it is written, then the end (with error trailers)."""

    def __init__(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._head = head
        self._reader = reader
        self._writer = writer

    async def write(self, data: bytes) -> None:
        """Send `data` as one chunk now. Raises ResponseStreamError if the connection broke."""
        if data:  # an empty chunk would end the body
            await self._send(b"%x\r\n%b\r\n" % (len(data), data))

    async def finish(self, error: BaseException | None = None) -> None:
        """End the body (reporting `error` in the trailers) and read the Runtime API's answer."""
        trailers = b""
        if error is not None:
            body = base64.b64encode(json.dumps(error_payload(error)).encode())
            trailers = b"%s: %s\r\n%s: %s\r\n" % (
                ERROR_TYPE_TRAILER.encode(),
                type(error).__name__.encode(),
                ERROR_BODY_TRAILER.encode(),
                body,
            )
        await self._send(b"0\r\n" + trailers + b"\r\n")
        try:
            status_line = await self._reader.readline()
        except OSError as error:
            raise ResponseStreamError(f"response stream broke: {error}") from error
        parts = status_line.split(maxsplit=2)
        if len(parts) < 2 or not parts[1].startswith(b"2"):
            raise ResponseStreamError(f"the Runtime API refused the response: {status_line!r}")

    def close(self) -> None:
        """Drop the connection (it is never reused); unused, it never sent a byte."""
        self._writer.close()

    async def _send(self, data: bytes) -> None:
        try:
            self._writer.write(self._head + data)
            self._head = b""
            await self._writer.drain()  # waits only while the socket's buffer is full
        except OSError as error:
            raise ResponseStreamError(f"response stream broke: {error}") from error


class RuntimeApi:
    """The Runtime API at `address` (host:port): blocking calls on one kept-alive connection,
    each streamed response on an asyncio connection of its own."""

    def __init__(self, address: str) -> None:
        self.address = address
        host, _, port = address.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self._connection = http.client.HTTPConnection(self.host, self.port)

    def next_invocation(self) -> Invocation:
        """Wait for the next event (blocking: between invocations nothing else may run, as on
        Lambda, where the environment is frozen). Raises RuntimeApiError."""
        status, headers, body = self._call("GET", "/runtime/invocation/next")
        if status != 200 or not headers.get("Lambda-Runtime-Aws-Request-Id"):
            raise RuntimeApiError(f"GET /runtime/invocation/next answered {status}: {body[:200]!r}")
        return Invocation(
            request_id=headers["Lambda-Runtime-Aws-Request-Id"],
            deadline_ms=int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            function_arn=headers.get("Lambda-Runtime-Invoked-Function-Arn") or "",
            trace_id=headers.get("Lambda-Runtime-Trace-Id"),
            body=body,
        )

    async def connect_response(self, request_id: str) -> ResponseStream:
        """A connection for the streamed response of `request_id`; nothing is sent until its
        first write. Raises ResponseStreamError."""
        head = (
            f"POST /{API_VERSION}/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
            f"Host: {self.address}\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            "Transfer-Encoding: chunked\r\n"
            f"Content-Type: {HTTP_INTEGRATION_CONTENT_TYPE}\r\n"
            f"Trailer: {ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}\r\n"
            "\r\n"
        )
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as error:
            raise ResponseStreamError(f"cannot open the response stream: {error}") from error
        return ResponseStream(head.encode(), reader, writer)

    def report_invocation_error(self, request_id: str, error: BaseException) -> None:
        """POST /runtime/invocation/{id}/error (only before the response's first byte)."""
        self._post_error(f"/runtime/invocation/{request_id}/error", error)

    def report_init_error(self, error: BaseException) -> None:
        """POST /runtime/init/error."""
        self._post_error("/runtime/init/error", error)

    def restore_next(self) -> None:
        """GET /runtime/restore/next: returns after the snapshot has been restored."""
        status, _, body = self._call("GET", "/runtime/restore/next")
        if status != 200:
            raise RuntimeApiError(f"GET /runtime/restore/next answered {status}: {body[:200]!r}")
        self._connection.close()  # the next call opens a connection made after the restore

    def report_restore_error(self, error: BaseException) -> None:
        """POST /runtime/restore/error."""
        self._post_error("/runtime/restore/error", error)

    def _post_error(self, path: str, error: BaseException) -> None:
        headers = {
            "Content-Type": "application/json",
            ERROR_TYPE_TRAILER: type(error).__name__,
        }
        status, _, body = self._call("POST", path, json.dumps(error_payload(error)), headers)
        if status >= 300:
            logger.error(
                f"POST {path} answered {status}", extra={"body": body[:200].decode("latin-1")}
            )

    def _call(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in (1, 2):
            try:
                self._connection.request(method, f"/{API_VERSION}{path}", body, headers or {})
                response = self._connection.getresponse()
                return response.status, response.headers, response.read()
            except (OSError, http.client.HTTPException) as error:
                # A kept-alive connection may have been closed by the other side: retry once.
                self._connection.close()
                if attempt == 2:
                    raise RuntimeApiError(f"{method} {path} failed: {error!r}") from error
        raise AssertionError("unreachable")


async def serve(api: RuntimeApi, app: ASGIApp, *, deadline_margin: float = 2.0) -> None:
    """Serve invocations one after another, forever; one failing never stops the next.

    Returns only by raising RuntimeApiError, when the Runtime API itself fails.
    """
    while True:
        invocation = api.next_invocation()
        if invocation.trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            await handle_invocation(api, app, invocation, deadline_margin)
        except RuntimeApiError:
            raise
        except Exception:
            logger.exception("invocation failed", extra={"request_id": invocation.request_id})


async def handle_invocation(
    api: RuntimeApi, app: ASGIApp, invocation: Invocation, deadline_margin: float
) -> None:
    """Answer one invocation: a streamed response, or /error if it could not be delivered.
    Returns once the work the app left running has ended (or Lambda's deadline is near)."""
    context = LambdaContext(invocation.request_id, invocation.function_arn, invocation.deadline_ms)
    deadline = None
    if invocation.deadline_ms:
        remaining = invocation.deadline_ms / 1000 - time.time()
        deadline = asyncio.get_running_loop().time() + remaining - deadline_margin
    try:
        event = json.loads(invocation.body)
    except ValueError as error:
        logger.error("the event is not JSON", extra={"request_id": invocation.request_id})
        api.report_invocation_error(invocation.request_id, error)
        return
    chunks = stream_http_response(
        app, event, context, deadline=deadline, cancel_grace=deadline_margin / 2
    )
    try:
        await _respond(api, invocation.request_id, chunks)
    finally:
        await _finish_leftover_work(invocation.deadline_ms)


async def _respond(api: RuntimeApi, request_id: str, chunks: AsyncGenerator[bytes]) -> None:
    # Connect while the app works on its first byte, so that byte leaves the moment it exists.
    connecting = asyncio.create_task(api.connect_response(request_id))
    try:
        async with aclosing(chunks):
            try:
                first = await anext(chunks)
            except Exception as error:
                logger.exception("failed before the first byte", extra={"request_id": request_id})
                api.report_invocation_error(request_id, error)
                return
            try:
                stream = await connecting
                await stream.finish(await _forward(first, chunks, stream))
            except ResponseStreamError as error:
                # The Runtime API did not take the response: without /error the invocation
                # would stay unanswered until its timeout.
                logger.exception("the response was not delivered", extra={"request_id": request_id})
                api.report_invocation_error(request_id, error)
    finally:
        await _close(connecting)


async def _finish_leftover_work(deadline_ms: int) -> None:
    """Let tasks the app left running end before the next /next freezes the environment (a
    frozen save would run only when the next invocation arrives), up to Lambda's deadline."""
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    if not leftover:
        return
    if deadline_ms:
        timeout = max(0.0, deadline_ms / 1000 - time.time() - DEADLINE_SAFETY_SECONDS)
    else:
        timeout = UNKNOWN_DEADLINE_WAIT_SECONDS
    _, running = await asyncio.wait(leftover, timeout=timeout)
    if running:
        logger.warning("work still running at the deadline", extra={"tasks": len(running)})


async def _close(connecting: asyncio.Task[ResponseStream]) -> None:
    connecting.cancel()
    await asyncio.wait([connecting])
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result().close()


async def _forward(
    first: bytes, chunks: AsyncIterator[bytes], stream: ResponseStream
) -> Exception | None:
    """Write every chunk as it comes; return the app's failure (a broken stream raises)."""
    try:
        await stream.write(first)
        async for chunk in chunks:
            await stream.write(chunk)
    except ResponseStreamError:
        raise
    except Exception as error:
        logger.exception("the app failed mid-stream")
        return error
    return None


def _snapshot_hooks() -> tuple[list[Hook], list[Hook]]:
    """The hooks registered with `snapshot_restore_py`: (before snapshot, after restore)."""
    try:
        aws = importlib.import_module("snapshot_restore_py")
    except ImportError:
        return [], []
    return list(aws.get_before_snapshot()), list(aws.get_after_restore())


def initialize(
    api: RuntimeApi,
    build: Callable[[], ASGIApp],
    *,
    preload: Callable[[], object] = lambda: None,
    snap_start: bool = False,
) -> ASGIApp:
    """The app, built from `build`; under SnapStart, `preload` runs before the snapshot and
    `build` after the restore. Reports a failure to the Runtime API and exits (SystemExit)."""
    if not snap_start:
        try:
            return build()
        except Exception as error:
            _fail_init(api, error, exit_code=1)
    before_snapshot, after_restore = _snapshot_hooks()
    try:
        preload()
        for func, args, kwargs in reversed(before_snapshot):
            func(*args, **kwargs)
    except Exception as error:
        _fail_init(api, error, exit_code=64)
    try:
        api.restore_next()
        random.seed()  # every restored copy would otherwise draw the same numbers
        telemetry.restored()  # its init duration counts from the restore, not the snapshot
        for func, args, kwargs in after_restore:
            func(*args, **kwargs)
        return build()
    except Exception as error:
        logger.exception("restore failed")
        _report_restore_error(api, error)
        raise SystemExit(65) from error


@contextmanager
def collector_paused() -> Iterator[None]:
    """Init without cyclic garbage collections, then what init created frozen (`gc.freeze`).

    Init creates ~200,000 objects that live as long as the process (modules, classes,
    functions, the app) and little garbage (~2,800 objects in cycles, measured): the
    collector's passes over them during init find almost nothing to free (they are ~4% of
    init's instructions and more of its time: they walk all of memory). Frozen, those objects
    are also left out of the collections that run during requests. Init's few cyclic leftovers
    stay in memory (~1 MB). The exec wrapper (run-streaming.sh) pauses the collector earlier
    still, before this module's own imports."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _report_restore_error(api: RuntimeApi, error: Exception) -> None:
    try:
        api.report_restore_error(error)
    except RuntimeApiError:
        logger.exception("could not report the restore error")


def _fail_init(api: RuntimeApi, error: Exception, *, exit_code: int) -> NoReturn:
    logger.error(f"init failed: {error}", exc_info=error)
    api.report_init_error(error)
    raise SystemExit(exit_code) from error


def _settings(api: RuntimeApi) -> Settings:
    """The settings, read once for the loop and the app; a bad value is an init error."""
    try:
        return Settings.from_env()
    except SettingsError as error:
        _fail_init(api, error, exit_code=1)


def _builder(settings: Settings) -> Callable[[], ASGIApp]:
    def build() -> ASGIApp:
        from handlers.main import build_app

        return build_app(settings)

    return build


def _preload() -> None:
    importlib.import_module("handlers.main")


def use_managed_runtime_path(
    env: dict[str, str] | os._Environ[str], opt_root: str = "/opt"
) -> None:
    """Put on `sys.path` what the managed runtime's bootstrap would, in its order: the task
    root, the layers' versioned site-packages and python/ (unless PYTHONPATH is set), then the
    runtime directory (awslambdaric, `snapshot_restore_py`). `.pth` files are honoured."""
    task_root = env.get("LAMBDA_TASK_ROOT") or os.getcwd()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    front = [task_root]
    if "PYTHONPATH" not in env:
        front += [f"{opt_root}/python/lib/{version}/site-packages", f"{opt_root}/python"]
    runtime_dir = env.get("LAMBDA_RUNTIME_DIR")
    rest = [p for p in sys.path if p not in (*front, runtime_dir, "", os.getcwd())]
    sys.path[:] = [*front, *([runtime_dir] if runtime_dir else []), *rest]
    for directory in front[:2]:
        if os.path.isdir(directory):
            site.addsitedir(directory)  # .pth files; the directory keeps its place


def main() -> None:
    """Run the streaming runtime: init, then serve until the Runtime API fails (exit 1)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # Lambda may freeze us with logs unflushed
    use_managed_runtime_path(os.environ)
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        raise SystemExit("AWS_LAMBDA_RUNTIME_API is not set: run this under Lambda or RIE")
    api = RuntimeApi(address)
    snap_start = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start"

    settings = _settings(api)
    route_all_logging(settings)

    async def run() -> None:
        build = _builder(settings)
        with collector_paused():
            app = initialize(api, build, preload=_preload, snap_start=snap_start)
        await serve(api, app, deadline_margin=settings.stream_deadline_margin_ms / 1000)

    try:
        asyncio.run(run())
    except RuntimeApiError:
        logger.exception("the Runtime API failed")
        raise SystemExit(1) from None


if __name__ == "__main__":
    # Run the module under its own name, so hooks registered by importing
    # `handlers.lambda_streaming` land in the registry that `main` reads.
    from handlers import lambda_streaming

    lambda_streaming.main()
