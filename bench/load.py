"""Concurrent users against the local server, then an integrity check of everything stored.

Starts the local server (`./scripts/serve`: the app on uvicorn, moto for AWS, the offline model
at OFFLINE_WORD_DELAY_MS per word) on 127.0.0.1, then for each level of 5, 20 and 50 users
runs every user at once, each through TURNS turns in a thread of its own (`threads.create`,
then `threads.add_user_message`), one after the other as a person would, reading every SSE
event. Each message carries a marker unique to its user and turn.

When a level is over, every user's data is read back over the protocol (`threads.list`,
`items.list`) and checked:

- the user has exactly one thread, and it holds exactly its messages and answers, each once,
  in the order they were sent (user message, answer, user message, answer...);
- each stored answer is the text that was streamed for that turn, and answers its own
  message (the offline model quotes it);
- nothing of another user appears (no foreign marker).

Prints a Markdown table per level: turns, errors (HTTP errors, `error` events, broken
streams), integrity violations, p50/p95 of the time to the first event and of the turn time.
PASS needs 0 errors and 0 integrity violations at every level; exits 1 otherwise.

    uv run python bench/load.py        # from the repository root (~2 min)
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from devtools.tokens import mint_token  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

LEVELS = (5, 20, 50)
TURNS = 3
WORD_DELAY_MS = 20
START_SECONDS = 120  # the server's start (imports, moto) on a busy machine
TURN_SECONDS = 120  # one turn, at most, before it counts as an error


@dataclass
class Turn:
    text: str
    first_event_ms: float | None = None
    turn_ms: float | None = None
    answer: str | None = None  # the streamed answer (its thread.item.done)
    error: str | None = None


@dataclass
class User:
    name: str
    token: str
    thread_id: str | None = None
    turns: list[Turn] = field(default_factory=list)

    def message(self, index: int) -> str:
        return f"Note {index} of {self.name}: remember item {secrets.token_hex(3)}"


# -- the server ---------------------------------------------------------------------------------


@contextmanager
def local_server(secret: str) -> Iterator[str]:
    """`./scripts/serve` on a free port of 127.0.0.1; yields its /chatkit URL."""
    port = free_port()
    env = {
        **os.environ,
        "AUTH_DEV_SECRET": secret,
        "OFFLINE_WORD_DELAY_MS": str(WORD_DELAY_MS),
        "MODEL_PROVIDER": "offline",
        "LOG_LEVEL": "WARNING",
    }
    # A file, not a pipe: a pipe nobody reads would block the server once it is full.
    with tempfile.NamedTemporaryFile(prefix="chatkit-load-", suffix=".log", delete=False) as log:
        print(f"[load] server log: {log.name}", file=sys.stderr, flush=True)
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), "--port", str(port), "--no-env-file"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_healthy(process, base, log.name)
            yield f"{base}/chatkit"
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until_healthy(process: subprocess.Popen[bytes], base: str, log_name: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see {log_name}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /health in {START_SECONDS} s")
        time.sleep(0.5)


# -- one user -----------------------------------------------------------------------------------


async def chat(client: httpx.AsyncClient, url: str, user: User, index: int) -> Turn:
    turn = Turn(user.message(index))
    content = {"content": [{"type": "input_text", "text": turn.text}], "attachments": []}
    params: dict[str, Any] = {"input": {**content, "inference_options": {}}}
    if user.thread_id is None:
        request = {"type": "threads.create", "params": params}
    else:
        request = {
            "type": "threads.add_user_message",
            "params": {**params, "thread_id": user.thread_id},
        }
    started = time.perf_counter()
    try:
        async with client.stream(
            "POST", url, json=request, headers={"authorization": f"Bearer {user.token}"}
        ) as response:
            if response.status_code != 200:
                turn.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return turn
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if turn.first_event_ms is None:
                    turn.first_event_ms = (time.perf_counter() - started) * 1000
                read(json.loads(line[len("data: ") :]), user, turn)
    except httpx.HTTPError as error:
        turn.error = f"{type(error).__name__}: {error}"
    turn.turn_ms = (time.perf_counter() - started) * 1000
    if turn.error is None and turn.answer is None:
        turn.error = "no answer"
    return turn


def read(event: dict[str, Any], user: User, turn: Turn) -> None:
    match event.get("type"):
        case "thread.created":
            user.thread_id = event["thread"]["id"]
        case "thread.item.done" if event["item"]["type"] == "assistant_message":
            turn.answer = "".join(part["text"] for part in event["item"]["content"])
        case "error":
            turn.error = f"error event: {event.get('message') or event.get('code')}"
        case _:
            pass


async def run_user(client: httpx.AsyncClient, url: str, user: User) -> None:
    for index in range(1, TURNS + 1):
        user.turns.append(await asyncio.wait_for(chat(client, url, user, index), TURN_SECONDS))


# -- the integrity check ------------------------------------------------------------------------


async def call(client: httpx.AsyncClient, url: str, user: User, request: dict[str, Any]) -> Any:
    response = await client.post(
        url, json=request, headers={"authorization": f"Bearer {user.token}"}
    )
    response.raise_for_status()
    return response.json()


async def violations(
    client: httpx.AsyncClient, url: str, user: User, others: list[str]
) -> list[str]:
    """What is wrong with what is stored for `user` (nothing: an empty list)."""
    found: list[str] = []
    threads = await call(client, url, user, {"type": "threads.list", "params": {"limit": 50}})
    thread_ids = [thread["id"] for thread in threads["data"]]
    if thread_ids != [user.thread_id]:
        found.append(f"{user.name}: threads {thread_ids}, expected [{user.thread_id}]")
        return found
    page = await call(
        client,
        url,
        user,
        {
            "type": "items.list",
            "params": {"thread_id": user.thread_id, "limit": 100, "order": "asc"},
        },
    )
    stored = [(item["type"], text_of(item)) for item in page["data"]]
    expected: list[tuple[str, str]] = []
    for turn in user.turns:
        expected += [("user_message", turn.text), ("assistant_message", turn.answer or "")]
    if stored != expected:
        found.append(f"{user.name}: stored {stored!r}\n   expected {expected!r}")
    for turn in user.turns:
        if turn.answer is not None and turn.text not in turn.answer:
            found.append(f"{user.name}: the answer to {turn.text!r} was {turn.answer!r}")
    dump = json.dumps(page)
    found += [
        f"{user.name}: {other}'s data in its thread" for other in others if f"of {other}:" in dump
    ]
    return found


def text_of(item: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in item.get("content", []))


# -- a level ------------------------------------------------------------------------------------


@dataclass
class Level:
    users: int
    turns: list[Turn]
    problems: list[str]
    seconds: float

    @property
    def errors(self) -> list[str]:
        return [turn.error for turn in self.turns if turn.error]


async def run_level(url: str, secret: str, size: int) -> Level:
    users = [
        User(name, mint_token(secret, name, 3600))
        for name in (f"user{size}x{index:02d}-{secrets.token_hex(2)}" for index in range(size))
    ]
    limits = httpx.Limits(max_connections=size + 10, max_keepalive_connections=size + 10)
    timeout = httpx.Timeout(TURN_SECONDS, connect=30)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(run_user(client, url, user) for user in users), return_exceptions=True
        )
        seconds = time.perf_counter() - started
        problems = [
            f"{user.name}: {result!r}"
            for user, result in zip(users, results, strict=True)
            if isinstance(result, BaseException)
        ]
        names = [user.name for user in users]
        for user in users:
            others = [name for name in names if name != user.name]
            problems += await violations(client, url, user, others)
    return Level(size, [turn for user in users for turn in user.turns], problems, seconds)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(levels: list[Level]) -> bool:
    print("# Load: concurrent users against the local server\n")
    print(
        f"`./scripts/serve` on 127.0.0.1 (uvicorn, moto server, offline model at "
        f"{WORD_DELAY_MS} ms per word), every user at once, {TURNS} turns each in a thread of "
        "its own, one after the other. Times from sending the request: to the first SSE event, "
        "and to the end of the stream. Client and server share this machine.\n"
    )
    print(
        "| users | turns | errors | integrity violations | first event p50 / p95 ms | "
        "turn p50 / p95 ms | wall s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for level in levels:
        first = [turn.first_event_ms for turn in level.turns if turn.first_event_ms is not None]
        whole = [turn.turn_ms for turn in level.turns if turn.turn_ms is not None]
        print(
            f"| {level.users} | {len(level.turns)} | {len(level.errors)} | {len(level.problems)} | "
            f"{percentile(first, 0.5):.0f} / {percentile(first, 0.95):.0f} | "
            f"{percentile(whole, 0.5):.0f} / {percentile(whole, 0.95):.0f} | {level.seconds:.1f} |"
        )
    print("\n## check\n")
    failed = False
    for level in levels:
        for problem in (level.errors + level.problems)[:10]:
            print(f"- FAIL at {level.users} users: {problem}")
            failed = True
    expected = sum(size * TURNS for size in LEVELS)
    done = sum(len(level.turns) for level in levels)
    if done != expected:
        print(f"- FAIL: {done} turns ran, {expected} expected")
        failed = True
    print(
        "- every turn answered without an error; every thread holds exactly its messages and "
        "answers, once, in order, as streamed, with nothing of another user"
    )
    print("- FAIL" if failed else "- PASS")
    return not failed


def main() -> int:
    secret = secrets.token_urlsafe(32)
    with local_server(secret) as url:
        levels = []
        for size in LEVELS:
            print(f"[load] {size} users...", file=sys.stderr, flush=True)
            levels.append(asyncio.run(run_level(url, secret, size)))
    return 0 if report(levels) else 1


if __name__ == "__main__":
    sys.exit(main())
