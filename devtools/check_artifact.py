"""Check a built function artifact (`scripts/check-sam` runs it on `sam build`'s output).

    python -m devtools.check_artifact ARTIFACT_DIR [--architecture arm64|x86_64]
        [--max-bytes N] [--summary FILE.json]

It fails (exit 1, one FAIL line per problem) when the artifact is over its size limit, holds a
test-only package, a dev-only distribution or a dependency's test suite, lacks a runtime
dependency or a file of src/ (or an executable bit), holds a binary for another architecture, or
holds a `.py` without CPython 3.13 bytecode compiled in unchecked-hash mode (Lambda's task root is
read-only: a module without valid bytecode is compiled from source on every cold start). It
prints what the artifact contains, and writes it as JSON with --summary.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE = REPO_ROOT / "src"
# Never shipped: the dev group's tools, by import name (a dev-only distribution is caught too).
TEST_ONLY_PACKAGES = ("pytest", "_pytest", "pytest_asyncio", "moto", "ruff", "mypy", "mypyc")
TEST_ONLY_PATTERNS = ("boto3_stubs", "mypy_boto3_*", "devtools", "tests", "bench")
# A dependency's own test suite or test doubles (jsonschema/tests, agents/testing): never imported.
TEST_SUITE_NAMES = ("tests", "test", "testing")
# CPython 3.13's bytecode magic number, and the flags of an unchecked hash-based .pyc.
PYTHON_TAG = "cpython-313"
MAGIC_313 = (3571).to_bytes(2, "little") + b"\r\n"
UNCHECKED_HASH_FLAGS = 0b01
ELF_MACHINES = {"arm64": 0xB7, "x86_64": 0x3E}
DEFAULT_MAX_BYTES = 150_000_000


@dataclass
class Summary:
    """What an artifact contains."""

    total_bytes: int = 0
    files: int = 0
    python_sources: int = 0
    bytecode_files: int = 0
    native_libraries: int = 0
    own_code: list[str] = field(default_factory=list)
    distributions: list[str] = field(default_factory=list)
    largest_packages: list[tuple[str, int]] = field(default_factory=list)


def normalized(name: str) -> str:
    """A distribution name as packaging normalizes it ("PyJWT" -> "pyjwt")."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: Iterable[str]) -> set[str]:
    """Normalized names of requirement lines ("boto3-stubs[s3]>=1" -> boto3-stubs)."""
    found = set()
    for line in lines:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match and not line.lstrip().startswith("#"):
            found.add(normalized(match.group(1)))
    return found


def locked_names(*groups: str) -> set[str]:
    """Distributions uv.lock installs for the runtime (no group) or for `groups` only."""
    command = ["uv", "export", "--frozen", "--format", "requirements.txt", "--no-hashes"]
    command += ["--no-emit-project", "--quiet"]
    command += [f"--only-group={group}" for group in groups] or ["--no-default-groups"]
    exported = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    return requirement_names(exported.stdout.splitlines())


def summarize(artifact: Path) -> Summary:
    """Sizes and counts of what `artifact` holds."""
    summary = Summary()
    sizes: dict[str, int] = {}
    for path in artifact.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        size = path.stat().st_size
        summary.total_bytes += size
        summary.files += 1
        summary.python_sources += path.suffix == ".py"
        summary.bytecode_files += path.suffix == ".pyc"
        summary.native_libraries += ".so" in path.suffixes
        top = path.relative_to(artifact).parts[0]
        sizes[top] = sizes.get(top, 0) + size
    summary.own_code = sorted(p.name for p in SOURCE.iterdir() if p.name != "__pycache__")
    summary.distributions = sorted(
        p.name.removesuffix(".dist-info") for p in artifact.glob("*.dist-info")
    )
    packages = {name: size for name, size in sizes.items() if not name.endswith(".dist-info")}
    summary.largest_packages = sorted(packages.items(), key=lambda item: -item[1])[:10]
    return summary


def bytecode_problems(artifact: Path) -> list[str]:
    """Every `.py` without CPython 3.13 unchecked-hash bytecode next to it."""
    problems = []
    for source in artifact.rglob("*.py"):
        compiled = source.parent / "__pycache__" / f"{source.stem}.{PYTHON_TAG}.pyc"
        where = source.relative_to(artifact)
        try:
            header = compiled.read_bytes()[:8]
        except FileNotFoundError:
            problems.append(f"{where} has no {PYTHON_TAG} bytecode")
            continue
        if header[:4] != MAGIC_313:
            problems.append(f"{where}: its bytecode is not CPython 3.13's")
        elif int.from_bytes(header[4:8], "little") != UNCHECKED_HASH_FLAGS:
            problems.append(f"{where}: its bytecode is not unchecked-hash (Lambda would check it)")
    return problems


def packaging_problems(artifact: Path, dev_only: set[str]) -> list[str]:
    """Test-only or dev-only packages shipped, declared runtime dependencies missing."""
    top = [p.name for p in artifact.iterdir()]
    problems = [
        f"test-only package {name} is in the artifact"
        for pattern in (*TEST_ONLY_PACKAGES, *TEST_ONLY_PATTERNS)
        for name in fnmatch.filter(top, pattern)
    ]
    shipped = {
        normalized(p.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        for p in artifact.glob("*.dist-info")
    }
    problems += [
        f"dev-only distribution {name} is in the artifact" for name in sorted(shipped & dev_only)
    ]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    declared = requirement_names(project["project"]["dependencies"])
    problems += [
        f"runtime dependency {name} is missing from the artifact"
        for name in sorted(declared - shipped)
    ]
    if (artifact / "bin").exists():
        problems.append("bin/ (console scripts) is in the artifact")
    return problems


def bundled_test_suites(artifact: Path) -> list[str]:
    """Test suites that dependencies ship inside their packages (`package/tests/`)."""
    return [
        f"{suite.relative_to(artifact)}/ (a dependency's test suite) is in the artifact"
        for name in TEST_SUITE_NAMES
        for suite in sorted(artifact.glob(f"*/{name}"))
        if suite.is_dir()
    ]


def source_problems(artifact: Path) -> list[str]:
    """Files of src/ missing from the artifact or shipped without their executable bit."""
    problems = []
    for path in SOURCE.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        built = artifact / path.relative_to(SOURCE)
        if not built.is_file():
            problems.append(f"{path.relative_to(REPO_ROOT)} is missing from the artifact")
        elif os.access(path, os.X_OK) and not os.access(built, os.X_OK):
            problems.append(f"{built.relative_to(artifact)} lost its executable bit")
    return problems


def architecture_problems(artifact: Path, architecture: str) -> list[str]:
    """Native libraries built for another architecture than the function's."""
    problems = []
    for library in artifact.rglob("*.so*"):
        if not library.is_file():
            continue
        with library.open("rb") as file:
            header = file.read(20)
        machine = int.from_bytes(header[18:20], "little")
        if header[:4] == b"\x7fELF" and machine != ELF_MACHINES[architecture]:
            problems.append(f"{library.relative_to(artifact)} is not an {architecture} binary")
    return problems


def describe(summary: Summary, max_bytes: int) -> str:
    """The summary as a few lines of text."""
    largest = ", ".join(f"{name} {size / 1e6:.1f}" for name, size in summary.largest_packages)
    return "\n".join(
        [
            f"unzipped size: {summary.total_bytes:,} bytes ({summary.total_bytes / 1e6:.1f} MB, "
            f"limit {max_bytes / 1e6:.0f} MB), {summary.files:,} files",
            f"{summary.python_sources:,} .py, {summary.bytecode_files:,} .pyc, "
            f"{summary.native_libraries} native libraries",
            f"own code: {', '.join(summary.own_code)}",
            f"{len(summary.distributions)} distributions: {', '.join(summary.distributions)}",
            f"largest (MB): {largest}",
        ]
    )


def check(artifact: Path, architecture: str, max_bytes: int) -> tuple[Summary, list[str]]:
    """What `artifact` contains, and everything wrong with it."""
    summary = summarize(artifact)
    problems = []
    if summary.total_bytes > max_bytes:
        problems.append(f"the artifact is {summary.total_bytes / 1e6:.1f} MB, over the limit")
    problems += packaging_problems(artifact, locked_names("dev") - locked_names())
    problems += bundled_test_suites(artifact)
    problems += source_problems(artifact)
    problems += architecture_problems(artifact, architecture)
    problems += bytecode_problems(artifact)
    return summary, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_artifact", description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--architecture", choices=sorted(ELF_MACHINES), default="arm64")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--summary", type=Path, help="write the contents summary here (JSON)")
    options = parser.parse_args(argv)
    summary, problems = check(options.artifact, options.architecture, options.max_bytes)
    print(describe(summary, options.max_bytes))
    if options.summary is not None:
        options.summary.write_text(json.dumps(asdict(summary), indent=1))
    for problem in problems[:50]:
        print(f"FAIL: {problem}")
    if len(problems) > 50:
        print(f"FAIL: ... and {len(problems) - 50} more")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
