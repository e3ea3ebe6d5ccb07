"""Cold start and memory of the function as it ships: the built artifact, started the way
Lambda's managed python3.13 runtime starts it (tests/support/lambda_harness.py: the Makefile's
recipe for this machine, a read-only task root, the runtime's bootstrap and variables, the base
interpreter, `PYTHONDONTWRITEBYTECODE` unset).

In one run, alternating, `RUNS` times after one warm-up of each:

- **artifact**: the artifact with its bytecode: process start to its first GET
  /runtime/invocation/next (init done), and to the first SSE event of the first request
  (`threads.create`, queued before the start, offline model);
- **no bytecode**: the same artifact without its `__pycache__` directories (what a build that
  installs without compiling ships: every module compiled on every cold start);
- **floor**: `python -c "import chatkit.server"` from the artifact with its bytecode (the same
  dependencies, compiled), to its end.

Then one function serves 20 turns (`threads.create`, then 19 `threads.add_user_message` on that
thread): peak RSS (VmHWM) after init and after the 20 turns. And what the artifact contains.

Prints Markdown and PASS/FAIL lines (artifact to /next within 1.15x the floor, medians; the
artifact without bytecode slower than with it; peak RSS under 512 MB); exits 1 on a FAIL.

    uv run python bench/cold_start.py      # from the repository root, ~3 minutes
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


from devtools.check_artifact import summarize  # noqa: E402
from devtools.runtime_emulator import RuntimeApiEmulator, function_url_event  # noqa: E402
from devtools.tokens import mint_token  # noqa: E402
from tests.support.fake_aws import FAKE_CREDENTIALS, use_fake_aws  # noqa: E402
from tests.support.inputs import user_input  # noqa: E402
from tests.support.lambda_harness import (  # noqa: E402
    base_python,
    harness_artifact,
    lambda_environment,
    make_writable,
    runtime_dir,
    task_root_copy,
)
from tests.support.moto_server import moto_server  # noqa: E402

RUNS = 7
TURNS = 20
TARGET = 1.15
MEMORY_MB = 512
TABLE, BUCKET = "chatkit-bench", "chatkit-bench-uploads"
SECRET = "bench-secret-that-is-long-enough-for-hs256"
FLOOR = "import chatkit.server"
# What the entry point adds to the floor, step by step (same interpreter, same task root).
IMPORTS = "import handlers.main"
BUILT = "from handlers.main import build_app; build_app()"


def chatkit_event(request: dict[str, Any]) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {mint_token(SECRET, 'bench')}"}
    return function_url_event("POST", "/chatkit", request, headers=headers)


def create_thread(text: str) -> dict[str, Any]:
    return chatkit_event({"type": "threads.create", "params": {"input": user_input(text)}})


def add_message(thread_id: str, text: str) -> dict[str, Any]:
    params = {"thread_id": thread_id, "input": user_input(text)}
    return chatkit_event({"type": "threads.add_user_message", "params": params})


def configuration(moto_url: str) -> dict[str, str]:
    return {
        "CHATKIT_TABLE_NAME": TABLE,
        "CHATKIT_BUCKET_NAME": BUCKET,
        "AUTH_DEV_SECRET": SECRET,
        "MODEL_PROVIDER": "offline",
        "OFFLINE_WORD_DELAY_MS": "0",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
        "AWS_ENDPOINT_URL": moto_url,
        **FAKE_CREDENTIALS,
    }


@contextmanager
def function(task_root: Path, runtime: Path, moto_url: str) -> Iterator[tuple[Any, Any, float]]:
    """The function started from `task_root`: (process, Runtime API, start time)."""
    with RuntimeApiEmulator() as api:
        env = lambda_environment(task_root, runtime, api.address, configuration(moto_url))
        yield_started = time.perf_counter()
        process = subprocess.Popen(
            [str(runtime / "bootstrap")],
            cwd=task_root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield process, api, yield_started
        finally:
            api.close()
            process.wait(timeout=60)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far (across its execs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold_start(task_root: Path, runtime: Path, moto_url: str) -> tuple[float, float, float]:
    """Seconds from process start to the first /next and to the first SSE event, and the CPU
    seconds the process used until that /next."""
    cpu: list[float] = []
    with function(task_root, runtime, moto_url) as (process, api, started):
        api.on_next = lambda call: cpu.append(cpu_seconds(process.pid)) if call == 1 else None
        request_id = api.add_invocation(create_thread("Hello"))
        answer = api.result(request_id, timeout=300)
        assert answer.kind == "response" and api.first_next_at is not None
        return api.first_next_at - started, answer.chunks[1].arrived - started, cpu[0]


def python_until_ready(task_root: Path, code: str, moto_url: str) -> tuple[float, float, float]:
    """Seconds from starting the base interpreter in `task_root` to the end of `code` (no
    first byte: 0), and the CPU seconds it used until then."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(base_python()), "-c", f"{code}; print('ready', flush=True)"],
        cwd=task_root,
        env={
            "PATH": "/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            **configuration(moto_url),
        },
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    if process.stdout.readline() != b"ready\n":
        raise RuntimeError(f"python -c {code!r} failed")
    ready = time.perf_counter() - started
    cpu = cpu_seconds(process.pid)
    process.wait(timeout=60)
    return ready, 0.0, cpu


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def memory(task_root: Path, runtime: Path, moto_url: str) -> tuple[float, float]:
    """Peak RSS (MB) after init and after TURNS turns."""
    with function(task_root, runtime, moto_url) as (process, api, _):
        if not api.waiting_for_next.wait(timeout=300):
            raise RuntimeError("the function never asked for an event")
        after_init = peak_rss_mb(process.pid)
        first = api.result(api.add_invocation(create_thread("Tell me a story")), timeout=300)
        thread_id = first.sse_events()[0]["thread"]["id"]
        for turn in range(TURNS - 1):
            answer = api.result(api.add_invocation(add_message(thread_id, f"Turn {turn}")))
            assert answer.kind == "response" and not answer.trailers
        return after_init, peak_rss_mb(process.pid)


def fresh(task_root: Path) -> Path:
    """`task_root` as shipped: the bytecode a previous start wrote is removed (as root, the
    read-only modes do not stop Python from writing it; on Lambda nothing can)."""
    for cache in list(task_root.rglob("__pycache__")):
        cache.parent.chmod(0o755)
        shutil.rmtree(cache)
        cache.parent.chmod(0o555)
    return task_root


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def measure(workspace: Path, moto_url: str) -> dict[str, list[float]]:
    artifact = harness_artifact()
    with_bytecode = task_root_copy(artifact, workspace / "with")
    without = task_root_copy(artifact, workspace / "without", bytecode=False)
    runtime = runtime_dir(workspace / "runtime")
    starts: dict[str, Callable[[], tuple[float, float, float]]] = {
        "artifact": lambda: cold_start(with_bytecode, runtime, moto_url),
        "no bytecode": lambda: cold_start(fresh(without), runtime, moto_url),
        "floor": lambda: python_until_ready(with_bytecode, FLOOR, moto_url),
        "app imports": lambda: python_until_ready(with_bytecode, IMPORTS, moto_url),
        "app built": lambda: python_until_ready(with_bytecode, BUILT, moto_url),
    }
    runs: dict[str, list[float]] = {}
    try:
        for start in starts.values():
            start()  # warm-up: the page cache
        for _ in range(RUNS):
            for name, start in starts.items():
                to_next, to_byte, cpu = start()
                runs.setdefault(f"{name} /next", []).append(to_next)
                runs.setdefault(f"{name} first byte", []).append(to_byte)
                runs.setdefault(f"{name} cpu", []).append(cpu)
        runs["rss"] = list(memory(with_bytecode, runtime, moto_url))
    finally:
        make_writable(with_bytecode)
        make_writable(without)
    return runs


def report(runs: dict[str, list[float]]) -> int:
    median = {name: statistics.median(values) for name, values in runs.items()}
    print(f"## Cold start of the artifact (medians of {RUNS}, one run, alternating)\n")
    print("| start | to /next (ms) | to first SSE event (ms) | CPU to /next (ms) | runs (ms) |")
    print("|---|---:|---:|---:|---|")
    for name in ("artifact", "no bytecode", "floor", "app imports", "app built"):
        byte = ms(median[f"{name} first byte"]) if median[f"{name} first byte"] else "—"
        values = ", ".join(ms(v) for v in runs[f"{name} /next"])
        cpu = ms(median[f"{name} cpu"])
        print(f"| {name} | {ms(median[f'{name} /next'])} | {byte} | {cpu} | {values} |")
    ratio = median["artifact /next"] / median["floor /next"]
    cpu_ratio = median["artifact cpu"] / median["floor cpu"]
    slow = median["no bytecode /next"] / median["artifact /next"]
    after_init, after_turns = runs["rss"]
    print(
        f"\nartifact / floor: {ratio:.2f}x wall (target {TARGET}x), {cpu_ratio:.2f}x CPU; "
        f"without bytecode: {slow:.2f}x the artifact"
    )
    print(f"peak RSS: {after_init:.0f} MB after init, {after_turns:.0f} MB after {TURNS} turns")
    summary = summarize(harness_artifact())
    print(f"\nartifact: {summary.total_bytes / 1e6:.1f} MB, {summary.files:,} files")
    largest = ", ".join(f"{name} {size / 1e6:.1f}" for name, size in summary.largest_packages)
    print(f"largest packages (MB): {largest}\n")
    checks = [
        (f"artifact to /next {ratio:.2f}x the floor <= {TARGET}x", ratio <= TARGET),
        (f"no bytecode is slower: {slow:.2f}x the artifact", slow > 1),
        (f"peak RSS {after_turns:.0f} MB < {MEMORY_MB} MB", after_turns < MEMORY_MB),
    ]
    for description, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {description}")
    return 0 if all(passed for _, passed in checks) else 1


def main() -> int:
    # This process creates the table and bucket in moto: fake credentials, never an account's.
    use_fake_aws()
    with tempfile.TemporaryDirectory() as workspace, moto_server(TABLE, BUCKET) as moto_url:
        return report(measure(Path(workspace), moto_url))


if __name__ == "__main__":
    sys.exit(main())
