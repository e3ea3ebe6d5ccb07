"""Translate the template as CloudFormation's SAM transform would (what `sam validate` does),
so that cfn-lint can check the result: `python -m devtools.sam_translate TEMPLATE OUTPUT`.

Runs in the SAM CLI's own environment (`uv tool run --from aws-sam-cli ...`, see
scripts/check-sam), where `samtranslator` is installed; never in the project's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no managed policy: nothing to look up in IAM."""

    def load(self) -> dict[str, str]:
        return {}


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """The template as `sam package` leaves it: local code replaced by an S3 location."""
    for resource in template["Resources"].values():
        code_uri = resource.get("Properties", {}).get("CodeUri")
        if resource["Type"] == "AWS::Serverless::Function" and isinstance(code_uri, str):
            resource["Properties"]["CodeUri"] = f"s3://artifacts/{code_uri.strip('/')}.zip"
    return template


def main(argv: Sequence[str]) -> int:
    source, target = (Path(arg) for arg in argv)
    template = packaged(yaml_parse(source.read_text()))
    translated = transform(template, {}, NoManagedPolicies())
    target.write_text(json.dumps(translated, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
