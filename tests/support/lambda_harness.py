"""The built artifact, started the way Lambda's managed python3.13 runtime starts a function.

- `harness_artifact()`: the Makefile's recipe (what `sam build` runs) for this machine's
  architecture, built once per content of src/, uv.lock and the recipe, under .aws-sam/harness/.
- `task_root_copy()`: a copy of it as the task root, files and directories read-only, with or
  without its bytecode.
- `runtime_dir()`: a stand-in for /var/runtime: `bootstrap` does what the managed runtime's does
  (runs `$AWS_LAMBDA_EXEC_WRAPPER <python> <runtime dir>/bootstrap.py` when the wrapper is set),
  and `snapshot_restore_py` is importable from it, as on Lambda.
- `lambda_environment()`: the variables Lambda sets (`LAMBDA_TASK_ROOT`, `LAMBDA_RUNTIME_DIR`,
  `_HANDLER`, `AWS_LAMBDA_RUNTIME_API`, function name, memory, version, `TZ`, `AWS_REGION`...),
  never the project's virtualenv: the interpreter is the base CPython, and only the task root,
  the runtime dir and the standard library are on its path.
- An instrument (a `usercustomize` module on PYTHONUSERBASE, outside the task root) records
  every module compiled from source under the task root; `written_files()` lists what changed
  under it. A test fails on either.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src"
HARNESS = ROOT / ".aws-sam" / "harness"
PLATFORMS = {"x86_64": "x86_64-manylinux2014", "aarch64": "aarch64-manylinux2014"}
HANDLER = "handlers.lambda_buffered.handler"
COMPILED_LOG = "compiled-from-source.txt"

BOOTSTRAP = """#!/bin/bash
# What the managed python3.13 runtime's /var/runtime/bootstrap does.
export AWS_EXECUTION_ENV=AWS_Lambda_python3.13
if [ -z "$AWS_LAMBDA_EXEC_WRAPPER" ]; then
  exec {python} {runtime}/bootstrap.py
fi
exec -- "$AWS_LAMBDA_EXEC_WRAPPER" {python} {runtime}/bootstrap.py
"""
BOOTSTRAP_PY = """import sys
sys.exit("the managed runtime's own (non-streaming) loop ran: the exec wrapper was not used")
"""
SNAPSHOT_RESTORE_PY = '''"""Stand-in for the runtime's snapshot_restore_py (marks its import)."""
import os

_before, _after = [], []
with open(os.environ["HARNESS_MARKS"], "a") as marks:
    marks.write("snapshot_restore_py imported\\n")


def register_before_snapshot(func, *args, **kwargs):
    _before.append((func, args, kwargs))
    return func


def register_after_restore(func, *args, **kwargs):
    _after.append((func, args, kwargs))
    return func


def get_before_snapshot():
    return _before


def get_after_restore():
    return _after
'''
USERCUSTOMIZE = '''"""Harness instrument: log modules compiled from source under the task root."""
import importlib._bootstrap_external as external
import os

_root = os.environ.get("LAMBDA_TASK_ROOT", "/nonexistent") + os.sep
_log = os.environ["HARNESS_COMPILED_LOG"]
_source_to_code = external.SourceLoader.source_to_code


def source_to_code(self, data, path, *, _optimize=-1):
    # Called by the import system only when a module has no valid bytecode.
    if isinstance(path, str) and path.startswith(_root):
        with open(_log, "a") as log:
            log.write(path + "\\n")
    return _source_to_code(self, data, path, _optimize=_optimize)


external.SourceLoader.source_to_code = source_to_code
'''


def base_python() -> Path:
    """The base CPython 3.13 (never the virtualenv's interpreter, whose site-packages it adds)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(sys.base_prefix) / "bin" / version


def _recipe_hash() -> str:
    digest = hashlib.sha256()
    inputs = [ROOT / "uv.lock", ROOT / "pyproject.toml", ROOT / "Makefile"]
    inputs += [ROOT / "scripts" / "build-function"]
    inputs += sorted(p for p in SOURCE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in inputs:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def harness_artifact() -> Path:
    """The artifact for this machine, built by the Makefile (reused while nothing changed)."""
    target = HARNESS / _recipe_hash()
    artifact = target / "artifact"
    if (target / "complete").exists():
        return artifact
    shutil.rmtree(HARNESS, ignore_errors=True)  # older builds
    target.mkdir(parents=True)
    env = {
        **os.environ,
        "LAMBDA_PLATFORM": PLATFORMS[platform.machine()],
        "ARTIFACTS_DIR": str(artifact),
    }
    command = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile")]
    subprocess.run(
        [*command, "build-ChatKitFunction"], cwd=SOURCE, env=env, check=True, timeout=900
    )
    (target / "complete").touch()
    return artifact


def task_root_copy(artifact: Path, target: Path, *, bytecode: bool = True) -> Path:
    """A copy of `artifact` at `target`, read-only like Lambda's task root."""
    ignore = None if bytecode else shutil.ignore_patterns("__pycache__")
    shutil.copytree(artifact, target, ignore=ignore)
    for directory, _, files in os.walk(target):
        for name in files:
            path = Path(directory, name)
            mode = path.stat().st_mode
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        Path(directory).chmod(0o555)
    return target


def make_writable(tree: Path) -> None:
    """Undo `task_root_copy`'s protection (before deleting the copy)."""
    for directory, _, _ in os.walk(tree):
        Path(directory).chmod(0o755)


def runtime_dir(target: Path) -> Path:
    """A stand-in for /var/runtime, plus the instrument's user base, under `target`."""
    target.mkdir(parents=True, exist_ok=True)
    bootstrap = target / "bootstrap"
    bootstrap.write_text(BOOTSTRAP.format(python=base_python(), runtime=target))
    bootstrap.chmod(0o755)
    (target / "bootstrap.py").write_text(BOOTSTRAP_PY)
    (target / "snapshot_restore_py.py").write_text(SNAPSHOT_RESTORE_PY)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    user_site = target / "instrument" / "lib" / version / "site-packages"
    user_site.mkdir(parents=True, exist_ok=True)
    (user_site / "usercustomize.py").write_text(USERCUSTOMIZE)
    return target


def lambda_environment(
    task_root: Path, runtime: Path, runtime_api: str, function: Mapping[str, str]
) -> dict[str, str]:
    """Lambda's variables for a function at `task_root`, plus its configuration `function`."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime),
        "_HANDLER": HANDLER,
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_EXEC_WRAPPER": str(task_root / "run-streaming.sh"),
        "AWS_LAMBDA_FUNCTION_NAME": "chatkit-lambda-ChatKitFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/chatkit-lambda-ChatKitFunction",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The harness's instrument, outside the task root.
        "PYTHONUSERBASE": str(runtime / "instrument"),
        "HARNESS_COMPILED_LOG": str(runtime / COMPILED_LOG),
        "HARNESS_MARKS": str(runtime / "marks.txt"),
        **function,
    }


def compiled_from_source(runtime: Path) -> list[str]:
    """Modules under the task root that were compiled from source (should be none)."""
    log = runtime / COMPILED_LOG
    return log.read_text().splitlines() if log.exists() else []


def tree_state(tree: Path) -> dict[str, tuple[int, int]]:
    """Every file under `tree` with its size and modification time."""
    return {
        str(path.relative_to(tree)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in tree.rglob("*")
    }


def written_files(before: dict[str, tuple[int, int]], tree: Path) -> list[str]:
    """Files created or changed under `tree` since `before` was taken."""
    after = tree_state(tree)
    return sorted(name for name, state in after.items() if before.get(name) != state)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
