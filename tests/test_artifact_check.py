"""The artifact check refuses modules Lambda would compile from source on every cold start, and
the test suites dependencies ship inside their packages."""

from __future__ import annotations

import py_compile
import sys
from pathlib import Path

import pytest

from devtools.check_artifact import bundled_test_suites, bytecode_problems

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 13), reason="compiles CPython 3.13 bytecode"
)


def module(root: Path, mode: py_compile.PycInvalidationMode | None) -> Path:
    source = root / "pkg" / "mod.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("VALUE = 1\n")
    if mode is not None:
        py_compile.compile(str(source), doraise=True, invalidation_mode=mode)
    return source


def test_unchecked_hash_bytecode_passes(tmp_path: Path) -> None:
    module(tmp_path, py_compile.PycInvalidationMode.UNCHECKED_HASH)

    assert bytecode_problems(tmp_path) == []


def test_a_module_without_bytecode_fails(tmp_path: Path) -> None:
    module(tmp_path, None)

    assert bytecode_problems(tmp_path) == ["pkg/mod.py has no cpython-313 bytecode"]


@pytest.mark.parametrize(
    "mode", [py_compile.PycInvalidationMode.TIMESTAMP, py_compile.PycInvalidationMode.CHECKED_HASH]
)
def test_bytecode_lambda_would_revalidate_fails(
    tmp_path: Path, mode: py_compile.PycInvalidationMode
) -> None:
    module(tmp_path, mode)

    [problem] = bytecode_problems(tmp_path)
    assert "not unchecked-hash" in problem


def test_a_dependencys_test_suite_fails(tmp_path: Path) -> None:
    for suite in ("jsonschema/tests", "agents/testing", "pkg/sub/tests"):
        (tmp_path / suite).mkdir(parents=True)
    (tmp_path / "pkg" / "test").write_text("a file, not a suite\n")

    assert bundled_test_suites(tmp_path) == [
        "jsonschema/tests/ (a dependency's test suite) is in the artifact",
        "agents/testing/ (a dependency's test suite) is in the artifact",
    ]
