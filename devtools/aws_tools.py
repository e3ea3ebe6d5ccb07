"""What `scripts/aws-tools` runs in the SAM CLI's own environment (`uv tool run --from
aws-sam-cli --with cfn-lint`), never in the project's:

- `python -m devtools.aws_tools rie`: print the path of the Runtime Interface Emulator binary
  shipped in the SAM CLI wheel, for this machine's architecture;
- `python -m devtools.aws_tools cfn-lint ARGS...`: run cfn-lint with ARGS.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from pathlib import Path

ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
USAGE = "usage: python -m devtools.aws_tools rie | cfn-lint ARGS..."


def rie_binary(machine: str | None = None) -> Path:
    """The SAM CLI's RIE binary for `machine` (default: this one's); ValueError when the SAM
    CLI ships none for it, FileNotFoundError when the wheel lacks the expected file."""
    machine = (machine or platform.machine()).lower()
    architecture = ARCHITECTURES.get(machine)
    if architecture is None:
        raise ValueError(f"no RIE binary for {machine}")
    import samcli

    binary = Path(samcli.__file__).parent / "local" / "rapid" / f"aws-lambda-rie-{architecture}"
    if not binary.is_file():
        raise FileNotFoundError(f"the SAM CLI has no RIE binary at {binary}")
    return binary


def cfn_lint(arguments: Sequence[str]) -> int:
    """cfn-lint's own command line, with `arguments`; returns its exit status."""
    from cfnlint.runner import main as cfn_lint_main

    sys.argv = ["cfn-lint", *arguments]
    status: int = cfn_lint_main()
    return status


def main(argv: Sequence[str]) -> int:
    match list(argv):
        case ["rie"]:
            try:
                print(rie_binary())
            except (ValueError, FileNotFoundError) as error:
                print(error, file=sys.stderr)
                return 1
            return 0
        case ["cfn-lint", *arguments]:
            return cfn_lint(arguments)
        case _:
            print(USAGE, file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
