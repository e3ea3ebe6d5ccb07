"""Cold start and memory of the function as it ships: the built artifact, started the way
Lambda's managed python3.13 runtime starts it (tests/support/lambda_harness.py: the Makefile's
recipe for this machine, a read-only task root, the runtime's bootstrap and variables, the base
interpreter, `PYTHONDONTWRITEBYTECODE` unset), configured as the template deploys it: HS256
tokens whose secret is read from SSM, the offline model, the table and bucket (a moto server).

In one run, `--runs` rounds (default 9) after one warm-up of each; every round starts each of
these once, in the same order, so the paired ratios compare starts made under the same load:

- **artifact**: the artifact with its bytecode: process start to its first GET
  /runtime/invocation/next (init done), and to the first SSE event of the first request
  (`threads.create`, queued before the start: it reads the secret, creates the DynamoDB client);
- **tracing on**: the artifact as `Tracing=Active` deploys it (`POWERTOOLS_TRACE_DISABLED=false`,
  a trace id with each invocation; the X-Ray SDK sends its UDP datagrams to a daemon address
  nobody listens on, which costs what sending costs); every other start has tracing off, the
  template's default;
- **no bytecode**: the same artifact without its `__pycache__` directories (what a build that
  installs without compiling ships: every module compiled on every cold start);
- **floor**: `python -c "import chatkit.server"` from the artifact with its bytecode (the same
  dependencies, compiled), to its end; then the floor with FastAPI (`import chatkit.server,
  fastapi, fastapi.security`: what the web framework costs by itself), `import handlers.main`
  and `build_app()` the same way: what each step adds.

Each start also reports its CPU time (user + system, from /proc) until `/next` or the end of the
import. With valgrind installed (`apt-get install valgrind`), the instructions each of the
artifact (to its first `/next`), the floor and the floor with FastAPI execute are counted once
more (cachegrind; a count does not depend on the machine's load, unlike times;
`--no-instructions` skips it, which saves ~5 minutes on a loaded machine; perf's hardware
counters need a PMU, which VMs often lack).

Then one function serves 20 turns (`threads.create`, then 19 `threads.add_user_message` on that
thread): peak RSS (VmHWM) after init and after the 20 turns. And what the artifact contains.

Prints Markdown and PASS/FAIL lines (the artifact reaches /next within 1.15x the floor: wall
and CPU, medians of the paired ratios, and instructions when counted; the artifact without
bytecode slower than with it; peak RSS under 512 MB); exits 1 on a FAIL.

    uv run python bench/cold_start.py      # from the repository root, ~5-10 minutes
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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

RUNS = 9
TURNS = 20
TARGET = 1.15
MEMORY_MB = 512
TABLE, BUCKET = "chatkit-bench", "chatkit-bench-uploads"
SECRET_PARAMETER = "/chatkit-lambda/auth-secret"
SECRET = "bench-secret-that-is-long-enough-for-hs256"
FLOOR = "import chatkit.server"
# The web framework the app is built on, on top of the floor: what FastAPI itself costs.
WITH_FASTAPI = "import chatkit.server, fastapi, fastapi.security"
# What the entry point adds to the floor, step by step (same interpreter, same task root).
IMPORTS = "import handlers.main"
BUILT = "from handlers.main import build_app; build_app()"
STARTS = (
    "artifact",
    "tracing on",
    "no bytecode",
    "floor",
    "floor + FastAPI",
    "app imports",
    "app built",
)
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
# The harness's instrument (a usercustomize logging compilations) is for the tests only.
INSTRUMENT = ("PYTHONUSERBASE", "HARNESS_COMPILED_LOG", "HARNESS_MARKS")
CACHEGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes"]


@dataclass
class Start:
    """One start: seconds to /next (or the end of the floor's import), to the first SSE event
    (0 for the floor), and CPU seconds until /next."""

    ready: float
    first_byte: float
    cpu: float


@dataclass
class Runs:
    starts: dict[str, list[Start]] = field(default_factory=dict)
    instructions: dict[str, int] = field(default_factory=dict)
    rss: tuple[float, float] = (0.0, 0.0)


def chatkit_event(request: dict[str, Any]) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {mint_token(SECRET, 'bench')}"}
    return function_url_event("POST", "/chatkit", request, headers=headers)


def create_thread(text: str) -> dict[str, Any]:
    return chatkit_event({"type": "threads.create", "params": {"input": user_input(text)}})


def add_message(thread_id: str, text: str) -> dict[str, Any]:
    params = {"thread_id": thread_id, "input": user_input(text)}
    return chatkit_event({"type": "threads.add_user_message", "params": params})


def configuration(moto_url: str, tracing: bool = False) -> dict[str, str]:
    """The function's variables as the template sets them, on moto."""
    return {
        "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "LOG_USER_ID_KEY": "arn:aws:cloudformation:us-east-1:123456789012:stack/bench/0",
        "CHATKIT_TABLE_NAME": TABLE,
        "CHATKIT_BUCKET_NAME": BUCKET,
        "AUTH_MODE": "hs256",
        "AUTH_SECRET_PARAMETER": SECRET_PARAMETER,
        "MODEL_PROVIDER": "offline",
        "OFFLINE_WORD_DELAY_MS": "0",
        "POWERTOOLS_SERVICE_NAME": "chatkit-lambda",
        "POWERTOOLS_METRICS_NAMESPACE": "ChatKitLambda",
        "LOG_LEVEL": "INFO",
        "AWS_ENDPOINT_URL": moto_url,
        **FAKE_CREDENTIALS,
    }


def function_environment(
    task_root: Path, runtime: Path, api: str, moto_url: str, tracing: bool = False
) -> dict[str, str]:
    env = lambda_environment(task_root, runtime, api, configuration(moto_url, tracing))
    return {name: value for name, value in env.items() if name not in INSTRUMENT}


def python_environment(moto_url: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC", **configuration(moto_url)}


@contextmanager
def function(
    task_root: Path,
    runtime: Path,
    moto_url: str,
    prefix: tuple[str, ...] = (),
    tracing: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], RuntimeApiEmulator, float]]:
    """The function started from `task_root` (under `prefix`, e.g. valgrind): (process,
    Runtime API, start time)."""
    with RuntimeApiEmulator() as api:
        env = function_environment(task_root, runtime, api.address, moto_url, tracing)
        started = time.perf_counter()
        process = subprocess.Popen(
            [*prefix, str(runtime / "bootstrap")],
            cwd=task_root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield process, api, started
        finally:
            api.close()
            process.wait(timeout=60)


def lambda_deadline() -> int:
    """The deadline of a function with Lambda's longest timeout (15 minutes) invoked now: the
    emulator's default (60 s from queueing) can expire inside a cold start on a loaded machine."""
    return int(time.time() * 1000) + 900_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far (across its execs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold_start(task_root: Path, runtime: Path, moto_url: str, tracing: bool = False) -> Start:
    cpu: list[float] = []
    with function(task_root, runtime, moto_url, tracing=tracing) as (process, api, started):
        api.on_next = lambda call: cpu.append(cpu_seconds(process.pid)) if call == 1 else None
        trace = TRACE_HEADER if tracing else None
        request_id = api.add_invocation(
            create_thread("Hello"), deadline_ms=lambda_deadline(), trace_id=trace
        )
        answer = api.result(request_id, timeout=900)
        if answer.kind != "response" or len(answer.chunks) < 2 or api.first_next_at is None:
            raise RuntimeError(f"the first request was not streamed: {answer.body[:300]!r}")
        return Start(api.first_next_at - started, answer.chunks[1].arrived - started, cpu[0])


def python_until_ready(task_root: Path, code: str, moto_url: str) -> Start:
    """Seconds from starting the base interpreter in `task_root` to the end of `code`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(base_python()), "-c", f"{code}; print('ready', flush=True)"],
        cwd=task_root,
        env=python_environment(moto_url),
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    if process.stdout.readline() != b"ready\n":
        raise RuntimeError(f"python -c {code!r} failed")
    ready = time.perf_counter() - started
    cpu = cpu_seconds(process.pid)
    process.wait(timeout=60)
    return Start(ready, 0.0, cpu)


def counted(output: Path) -> int:
    """The instruction count in cachegrind's output file."""
    for line in output.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {output}")


def artifact_instructions(task_root: Path, runtime: Path, moto_url: str, out: Path) -> int:
    """Instructions the artifact executes until its first /next (bash and the exec wrapper's
    shell excluded: each exec replaces the count with the new program's). It is stopped there
    with SIGTERM, as the floor is at the end of its import."""
    prefix = (*CACHEGRIND, f"--cachegrind-out-file={out}")
    with function(task_root, runtime, moto_url, prefix) as (process, api, _):
        if not api.waiting_for_next.wait(timeout=3600):
            raise RuntimeError("the function never asked for an event under valgrind")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=600)
    return counted(out)


def import_instructions(task_root: Path, imports: str, moto_url: str, out: Path) -> int:
    """Instructions `python -c imports` executes, stopped with SIGTERM once it is done."""
    code = f"{imports}; print('ready', flush=True); import time; time.sleep(3600)"
    process = subprocess.Popen(
        [*CACHEGRIND, f"--cachegrind-out-file={out}", str(base_python()), "-c", code],
        cwd=task_root,
        env={**python_environment(moto_url), "PYTHONHASHSEED": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    if process.stdout.readline() != b"ready\n":
        raise RuntimeError(f"{imports!r} failed under valgrind")
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=600)
    return counted(out)


def count_instructions(task_root: Path, runtime: Path, moto_url: str, work: Path) -> dict[str, int]:
    """The counts, measured at the same time (one run each: a count barely varies)."""
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str, measure: Callable[[], int]) -> None:
        try:
            counts[name] = measure()
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    jobs = {
        "artifact": lambda: artifact_instructions(task_root, runtime, moto_url, work / "a.cg"),
        "floor": lambda: import_instructions(task_root, FLOOR, moto_url, work / "f.cg"),
        "floor + FastAPI": lambda: import_instructions(
            task_root, WITH_FASTAPI, moto_url, work / "w.cg"
        ),
    }
    threads = [threading.Thread(target=run, args=job) for job in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return counts


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


def measure(workspace: Path, moto_url: str, rounds: int, instructions: bool) -> Runs:
    artifact = harness_artifact()
    with_bytecode = task_root_copy(artifact, workspace / "with")
    without = task_root_copy(artifact, workspace / "without", bytecode=False)
    runtime = runtime_dir(workspace / "runtime")
    starts: dict[str, Callable[[], Start]] = {
        "artifact": lambda: cold_start(with_bytecode, runtime, moto_url),
        "tracing on": lambda: cold_start(with_bytecode, runtime, moto_url, tracing=True),
        "no bytecode": lambda: cold_start(fresh(without), runtime, moto_url),
        "floor": lambda: python_until_ready(with_bytecode, FLOOR, moto_url),
        "floor + FastAPI": lambda: python_until_ready(with_bytecode, WITH_FASTAPI, moto_url),
        "app imports": lambda: python_until_ready(with_bytecode, IMPORTS, moto_url),
        "app built": lambda: python_until_ready(with_bytecode, BUILT, moto_url),
    }
    runs = Runs()
    try:
        for start in starts.values():
            start()  # warm-up: the page cache
        for round_number in range(rounds):
            print(f"round {round_number + 1}/{rounds}", file=sys.stderr)
            for name, start in starts.items():
                runs.starts.setdefault(name, []).append(start())
        runs.rss = memory(with_bytecode, runtime, moto_url)
        if instructions:
            print("counting instructions under valgrind", file=sys.stderr)
            runs.instructions = count_instructions(with_bytecode, runtime, moto_url, workspace)
    finally:
        make_writable(with_bytecode)
        make_writable(without)
    return runs


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def tracing_cost(runs: Runs, metric: str) -> float:
    """Median over the rounds of (tracing on - artifact), each pair started in the same round."""
    pairs = zip(runs.starts["tracing on"], runs.starts["artifact"], strict=True)
    return float(statistics.median(getattr(t, metric) - getattr(a, metric) for t, a in pairs))


def paired(runs: Runs, metric: str, start: str = "artifact") -> float:
    """Median over the rounds of `start` / floor, each pair started in the same round."""
    pairs = zip(runs.starts[start], runs.starts["floor"], strict=True)
    return float(statistics.median(getattr(a, metric) / getattr(f, metric) for a, f in pairs))


def print_table(runs: Runs) -> None:
    print(f"## Cold start of the artifact (medians of {len(runs.starts['floor'])} rounds)\n")
    print("| start | to /next (ms) | to first SSE event (ms) | CPU to /next (ms) | runs (ms) |")
    print("|---|---:|---:|---:|---|")
    for name in STARTS:
        starts = runs.starts[name]
        ready = statistics.median(s.ready for s in starts)
        byte = statistics.median(s.first_byte for s in starts)
        cpu = statistics.median(s.cpu for s in starts)
        values = ", ".join(ms(s.ready) for s in starts)
        print(f"| {name} | {ms(ready)} | {ms(byte) if byte else '—'} | {ms(cpu)} | {values} |")


def report(runs: Runs) -> int:
    print_table(runs)
    wall, cpu = paired(runs, "ready"), paired(runs, "cpu")
    slow = statistics.median(s.ready for s in runs.starts["no bytecode"]) / statistics.median(
        s.ready for s in runs.starts["artifact"]
    )
    print(
        f"\nartifact / floor to /next (median of the paired ratios): {wall:.2f}x wall, "
        f"{cpu:.2f}x CPU (target {TARGET}x); without bytecode: {slow:.2f}x the artifact"
    )
    framework = paired(runs, "cpu", "floor + FastAPI")
    print(f"FastAPI on top of the floor: {framework:.3f}x the floor's CPU (median of the pairs)")
    print(
        "tracing on - off (median of the paired differences): "
        f"{ms(tracing_cost(runs, 'ready'))} ms to /next, "
        f"{ms(tracing_cost(runs, 'first_byte'))} ms to the first SSE event, "
        f"{ms(tracing_cost(runs, 'cpu'))} ms CPU to /next"
    )
    checks = [
        (f"artifact to /next {wall:.2f}x the floor (wall) <= {TARGET}x", wall <= TARGET),
        (f"artifact to /next {cpu:.2f}x the floor (CPU) <= {TARGET}x", cpu <= TARGET),
    ]
    if runs.instructions:
        artifact, floor = runs.instructions["artifact"], runs.instructions["floor"]
        ratio = artifact / floor
        print(
            f"instructions (valgrind): artifact to /next {artifact / 1e9:.2f} G, "
            f"floor {floor / 1e9:.2f} G: {ratio:.3f}x"
        )
        framework = runs.instructions["floor + FastAPI"] / floor
        print(f"FastAPI on top of the floor: {framework:.3f}x the floor's instructions")
        checks.append((f"artifact to /next {ratio:.3f}x the floor's instructions", ratio <= TARGET))
    after_init, after_turns = runs.rss
    print(f"peak RSS: {after_init:.0f} MB after init, {after_turns:.0f} MB after {TURNS} turns")
    summary = summarize(harness_artifact())
    print(f"\nartifact: {summary.total_bytes / 1e6:.1f} MB, {summary.files:,} files")
    largest = ", ".join(f"{name} {size / 1e6:.1f}" for name, size in summary.largest_packages)
    print(f"largest packages (MB): {largest}\n")
    checks += [
        (f"no bytecode is slower: {slow:.2f}x the artifact", slow > 1),
        (f"peak RSS {after_turns:.0f} MB < {MEMORY_MB} MB", after_turns < MEMORY_MB),
    ]
    for description, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {description}")
    return 0 if all(passed for _, passed in checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="rounds (default %(default)s)")
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip the valgrind instruction counts"
    )
    options = parser.parse_args(argv)
    instructions = not options.no_instructions and shutil.which("valgrind") is not None
    if not instructions and not options.no_instructions:
        print("valgrind not found: no instruction counts", file=sys.stderr)
    # This process creates the table, bucket and secret in moto: fake credentials only.
    use_fake_aws()
    parameters = {SECRET_PARAMETER: SECRET}
    with (
        tempfile.TemporaryDirectory() as workspace,
        moto_server(TABLE, BUCKET, parameters) as moto_url,
    ):
        return report(measure(Path(workspace), moto_url, options.runs, instructions))


if __name__ == "__main__":
    sys.exit(main())
