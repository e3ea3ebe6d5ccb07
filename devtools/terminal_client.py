"""A terminal client for any ChatKit server: the local one, or a deployed Function URL.

    ./scripts/chat "add a task to buy milk"          # a new thread; the answer streams
    ./scripts/chat --thread thr_123 "show my tasks"  # continue a thread
    ./scripts/chat --list                            # your threads
    ./scripts/chat --thread thr_123 --history        # a thread's items
    ./scripts/chat --attach notes.txt "what is in this file?"  # upload, then ask about it
    ./scripts/chat --url https://xyz.lambda-url.eu-west-1.on.aws/chatkit --token "$TOKEN" "hi"

It speaks the ChatKit protocol over HTTP with httpx and the standard library only, so it does
not load the server's stack and can be copied anywhere. Without --token or CHATKIT_TOKEN, it
signs a token for --user with the local dev secret (local URLs only).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

import httpx

from devtools.tokens import DEFAULT_USER, default_secret_file, mint_token, read_secret

DEFAULT_URL = "http://127.0.0.1:8000/chatkit"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Reads wait between events, not for the whole answer: a turn is bounded server-side.
TIMEOUT = httpx.Timeout(30.0, read=300.0)


# C0 and C1 control characters but newline and tab: what a server sends is printed as text,
# never as terminal commands (escape sequences can set the clipboard, retitle or clear the
# screen, and a carriage return can overwrite what was printed).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without control characters (newlines and tabs kept)."""
    return CONTROL_CHARACTERS.sub("", text)


class Writer(Protocol):
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


class PrintableText:
    """A text stream that drops the control characters of everything written to it."""

    def __init__(self, stream: Writer) -> None:
        self.stream = stream

    def write(self, text: str, /) -> int:
        self.stream.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class ChatError(Exception):
    """The request failed: an HTTP error, an `error` event, or no server. Exit code 1."""


def resolve_token(
    url: str, token: str | None, user: str, env: Mapping[str, str] | None = None
) -> str:
    """--token, else $CHATKIT_TOKEN, else a dev token for `user` (local URLs only).

    Raises ChatError saying what to pass when there is none.
    """
    env = os.environ if env is None else env
    if token or env.get("CHATKIT_TOKEN"):
        return token or env["CHATKIT_TOKEN"]
    if not _is_local(url):
        raise ChatError("no token for a remote server: pass --token or set CHATKIT_TOKEN")
    secret = env.get("AUTH_DEV_SECRET")
    if not secret:
        path = default_secret_file(env)
        secret = read_secret(path)
        if not secret:
            raise ChatError(
                f"no dev secret in {path}: start ./scripts/serve first, or pass --token"
            )
    return mint_token(secret, user)


class ChatClient:
    """One ChatKit endpoint, called with a Bearer token; output goes to `out`, problems to `err`."""

    def __init__(self, url: str, token: str, out: Writer, err: Writer) -> None:
        self.url = url
        self.out = PrintableText(out)
        self.err = PrintableText(err)
        self.http = httpx.Client(
            headers={"authorization": f"Bearer {token}"}, timeout=TIMEOUT, follow_redirects=False
        )

    def close(self) -> None:
        self.http.close()

    def send(
        self, text: str, thread_id: str | None = None, attachments: Sequence[str] = ()
    ) -> str | None:
        """Send a message (a new thread unless `thread_id`) with the uploaded `attachments`
        (their ids), print the answer as it streams.

        Returns the thread id. Raises ChatError on an HTTP error or an `error` event.
        """
        user_input = {
            "content": [{"type": "input_text", "text": text}],
            "attachments": list(attachments),
            "inference_options": {},
        }
        if thread_id is None:
            request: dict[str, Any] = {"type": "threads.create", "params": {"input": user_input}}
        else:
            request = {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": user_input},
            }
        printer = _EventPrinter(self.out, self.err, thread_id)
        with self._post(request) as response:
            for event in _server_sent_events(response.iter_lines()):
                printer.show(event)
        printer.finish()
        if printer.error is not None:
            raise ChatError(printer.error)
        return printer.thread_id

    def attach(self, path: Path) -> str:
        """Upload a file as the ChatKit widget does (two phases: `attachments.create` declares
        it, its bytes go to the upload URL the server hands out); returns the attachment id.

        Raises ChatError when the file cannot be read, is refused, or does not upload.
        """
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ChatError(f"cannot read {path}: {error.strerror}") from None
        mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        declared = {"name": path.name, "size": len(data), "mime_type": mime_type}
        attachment = self._call("attachments.create", declared)
        upload = attachment.get("upload_descriptor")
        if upload:
            # The upload URL is presigned: it carries its own authorization, not our token.
            try:
                response = httpx.request(
                    upload.get("method", "PUT"),
                    upload["url"],
                    content=data,
                    headers=upload.get("headers") or {},
                    timeout=TIMEOUT,
                )
            except httpx.TransportError as error:
                raise ChatError(f"upload of {path.name} failed: {type(error).__name__}") from None
            if response.is_error:
                raise ChatError(f"upload of {path.name} failed: HTTP {response.status_code}")
        print(f"[attached] {path.name} ({mime_type}, {len(data)} bytes)", file=self.out)
        return str(attachment["id"])

    def list_threads(self, limit: int) -> None:
        """Print the newest `limit` threads: id, created_at, title."""
        after: str | None = None
        shown = 0
        while shown < limit:
            page = self._call(
                "threads.list", {"limit": min(limit - shown, 100), "order": "desc", "after": after}
            )
            for thread in page["data"]:
                created = str(thread.get("created_at", ""))[:19]
                title = thread.get("title") or "(untitled)"
                print(f"{thread['id']}  {created}  {title}", file=self.out)
            shown += len(page["data"])
            after = page.get("after")
            if not page.get("has_more") or not after:
                break
        if shown == 0:
            print("(no threads yet)", file=self.out)

    def history(self, thread_id: str) -> None:
        """Print the thread's title and every item, oldest first."""
        thread = self._call("threads.get_by_id", {"thread_id": thread_id})
        print(f"{thread['id']}  {thread.get('title') or '(untitled)'}", file=self.out)
        after: str | None = None
        while True:
            page = self._call(
                "items.list", {"thread_id": thread_id, "limit": 100, "order": "asc", "after": after}
            )
            for item in page["data"]:
                print(_describe_item(item), file=self.out)
            after = page.get("after")
            if not page.get("has_more") or not after:
                return

    def _call(self, request_type: str, params: dict[str, Any]) -> Any:
        with self._post({"type": request_type, "params": params}) as response:
            try:
                return json.loads(response.read())
            except ValueError:
                raise ChatError(f"{request_type}: the server did not answer JSON") from None

    @contextmanager
    def _post(self, request: dict[str, Any]) -> Iterator[httpx.Response]:
        """POST `request`, streaming the answer; ChatError with the server's message on an
        HTTP error, and on a connection failure."""
        try:
            with self.http.stream(
                "POST", self.url, json=request, headers={"accept": "text/event-stream"}
            ) as response:
                if response.is_error:
                    message = _error_message(response.read())
                    raise ChatError(f"HTTP {response.status_code}: {message}")
                yield response
        except httpx.ConnectError:
            hint = " (is ./scripts/serve running?)" if _is_local(self.url) else ""
            raise ChatError(f"cannot reach {self.url}{hint}") from None
        except httpx.TransportError as error:
            raise ChatError(f"connection to {self.url} failed: {type(error).__name__}") from None


class _EventPrinter:
    """Prints ChatKit stream events as they arrive: text deltas at once, widgets compactly."""

    def __init__(self, out: Writer, err: Writer, thread_id: str | None = None) -> None:
        self.out = out
        self.err = err
        self.thread_id = thread_id
        self.error: str | None = None
        self._streamed: set[str] = set()  # assistant messages whose text was printed as deltas
        self._line_open = False

    def show(self, event: dict[str, Any]) -> None:
        match event.get("type"):
            case "thread.created" | "thread.updated":
                self.thread_id = event["thread"]["id"]
            case "thread.item.added":
                for task in ((event.get("item") or {}).get("workflow") or {}).get("tasks") or []:
                    self._running(task)
            case "thread.item.updated":
                update = event.get("update") or {}
                if update.get("type") == "assistant_message.content_part.text_delta":
                    self._streamed.add(event["item_id"])
                    self._write(update["delta"])
                elif update.get("type") in ("workflow.task.added", "workflow.task.updated"):
                    self._running(update.get("task") or {})
            case "thread.item.done" | "thread.item.replaced":
                self._show_item(event["item"])
            case "progress_update":
                self._note(f"… {event.get('text', '')}")
            case "notice":
                self._note(f"[{event.get('level', 'notice')}] {event.get('message', '')}")
            case "error":
                code = event.get("code") or "error"
                self.error = event.get("message") or f"the server reported an error ({code})"
            case _:
                pass

    def finish(self) -> None:
        self._end_line()
        if self.thread_id is not None:
            print(f"thread: {self.thread_id}", file=self.out, flush=True)

    def _show_item(self, item: dict[str, Any]) -> None:
        match item.get("type"):
            case "assistant_message":
                if item["id"] not in self._streamed:
                    self._write(_text_of(item))
                self._end_line()
            case "user_message" | "end_of_turn" | "hidden_context_item" | "sdk_hidden_context":
                pass
            case _:
                self._end_line()
                print(_describe_item(item), file=self.out, flush=True)

    def _running(self, task: dict[str, Any]) -> None:
        """A tool call's progress line, while it runs (what it did comes with the workflow)."""
        if task.get("status_indicator") == "loading" and task.get("title"):
            self._note(f"… {task['title']}")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._line_open = not text.endswith("\n")

    def _end_line(self) -> None:
        if self._line_open:
            self.out.write("\n")
            self.out.flush()
            self._line_open = False

    def _note(self, text: str) -> None:
        self._end_line()
        print(text, file=self.err, flush=True)


def _server_sent_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Decode `data:` lines into events; a blank line ends an event (the SSE format)."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []
    if data:
        yield json.loads("\n".join(data))


def _describe_item(item: dict[str, Any]) -> str:
    """One compact line (or a few) for a thread item."""
    match item.get("type"):
        case "user_message":
            return f"you: {_text_of(item)}"
        case "assistant_message":
            return f"assistant: {_text_of(item)}"
        case "widget":
            text = item.get("copy_text") or _widget_summary(item.get("widget"))
            return "[widget] " + text.replace("\n", "\n         ")
        case "client_tool_call":
            return f"[client tool call {item.get('name')}: not run by the terminal client]"
        case "task":
            return f"[task] {(item.get('task') or {}).get('title') or ''}".rstrip()
        case "workflow":
            tasks = (item.get("workflow") or {}).get("tasks") or []
            lines = [_task_line(task) for task in tasks if isinstance(task, dict)]
            return "[workflow] " + "\n           ".join(lines) if lines else "[workflow]"
        case other:
            return f"[{other}]"


def _task_line(task: dict[str, Any]) -> str:
    """A workflow task: a thought of the model, or a step (a handoff, a tool call)."""
    if task.get("type") == "thought":
        return f"(thinking) {task.get('content') or ''}".rstrip()
    return str(task.get("title") or task.get("content") or task.get("type") or "")


def _text_of(item: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "") for part in item.get("content") or [] if isinstance(part, dict)
    )


def _widget_summary(widget: Any, limit: int = 200) -> str:
    """The visible text of a widget without copy_text, in document order, cut at `limit`."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("title", "value", "label"):
                if isinstance(node.get(key), str) and node[key].strip():
                    texts.append(node[key].strip())
            for child in node.values():
                if isinstance(child, dict | list):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(widget)
    summary = " · ".join(texts) or str((widget or {}).get("type", "widget"))
    return summary if len(summary) <= limit else summary[: limit - 1] + "…"


def _error_message(body: bytes) -> str:
    """The `error.message` of the app's JSON errors, else the body itself, shortened."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:500] or "(empty body)"
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        message = parsed.get("message") or parsed.get("Message")  # AWS's own errors
        if message:
            return str(message)
    return json.dumps(parsed)[:500]


def _is_local(url: str) -> bool:
    return urlsplit(url).hostname in LOCAL_HOSTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/chat",
        description="Talk to a ChatKit server from the terminal (streams the answer).",
    )
    parser.add_argument("message", nargs="?", help="the message to send")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"ChatKit endpoint ({DEFAULT_URL})")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--token", help="Bearer token (default: $CHATKIT_TOKEN)")
    who.add_argument(
        "--user",
        default=DEFAULT_USER,
        help=f"local only: sign a dev token for this user (default {DEFAULT_USER})",
    )
    parser.add_argument("--thread", metavar="ID", help="continue this thread")
    parser.add_argument(
        "--attach",
        metavar="PATH",
        action="append",
        default=[],
        type=Path,
        help="upload this file and send it with the message (repeatable)",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list your threads")
    action.add_argument("--history", action="store_true", help="print --thread's items")
    parser.add_argument("--limit", type=int, default=20, help="threads to --list (default 20)")
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Run one command; 0 on success, 1 on a failed request, 2 on bad arguments."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.history and not options.thread:
        parser.error("--history needs --thread ID")
    if not (options.list or options.history) and not options.message:
        parser.error('say something: scripts/chat "add a task to buy milk" (or --list)')
    if (options.list or options.history) and (options.message or options.attach):
        parser.error("--list and --history take no message or attachment")
    try:
        token = resolve_token(options.url, options.token, options.user)
        client = ChatClient(options.url, token, out, err)
        try:
            if options.list:
                client.list_threads(options.limit)
            elif options.history:
                client.history(options.thread)
            else:
                attachments = [client.attach(path) for path in options.attach]
                client.send(options.message, options.thread, attachments)
        finally:
            client.close()
    except ChatError as error:
        print(f"error: {printable(str(error))}", file=err, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
