"""What scripts/aws-tools runs in the SAM CLI's environment: its arguments and refusals (the
binary lookup itself needs the SAM CLI, which the Lambda tests use through the script)."""

from __future__ import annotations

import pytest

from devtools.aws_tools import main, rie_binary


def test_an_unknown_command_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["rie", "extra"]) == 2
    assert "usage" in capsys.readouterr().err


def test_a_machine_without_an_rie_binary_is_named() -> None:
    with pytest.raises(ValueError, match="no RIE binary for sparc64"):
        rie_binary("sparc64")
