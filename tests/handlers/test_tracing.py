"""X-Ray tracing: on, one subsegment per request annotated with its type and outcome only, and
subsegments for every DynamoDB, S3, SSM and model call; off, nothing of it is imported.

Tracing patches botocore and turns the X-Ray SDK on for a whole process, so the app runs in a
process of its own (`tests/support/traced_app.py`), in a Lambda-like environment on moto.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import tracing
from settings import Settings
from tests.support import traced_app
from tests.support.processes import run_module


def run_traced_app(trace_disabled: str) -> tuple[list[int], list[dict[str, Any]], list[str]]:
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": trace_disabled}
    lines = run_module("tests.support.traced_app", env=env, timeout=300).stdout.splitlines()
    documents = [json.loads(line) for line in lines if line.startswith("{")]
    statuses = next(d["statuses"] for d in documents if "statuses" in d)
    entities = [d for d in documents if d.get("type") in ("segment", "subsegment")]
    modules = json.loads(next(line for line in lines if line.startswith("modules: "))[9:])
    return statuses, entities, modules


def flatten(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every subsegment, including those sent inside their parent."""
    found: list[dict[str, Any]] = []
    pending = list(entities)
    while pending:
        entity = pending.pop()
        found.append(entity)
        for child in entity.get("subsegments", []):
            pending.append({**child, "parent_id": entity["id"]})
    return found


@pytest.fixture(scope="module")
def traced() -> tuple[list[int], list[dict[str, Any]], list[str]]:
    return run_traced_app("false")


def test_each_request_is_one_subsegment_annotated_with_its_type_and_outcome(
    traced: tuple[list[int], list[dict[str, Any]], list[str]],
) -> None:
    statuses, entities, _ = traced
    assert statuses == [200, 200, 200, 404]
    requests = [e for e in flatten(entities) if e["name"] == tracing.REQUEST_SUBSEGMENT]
    annotations = [e["annotations"] for e in requests]
    assert sorted(annotations, key=lambda a: a["RequestType"]) == [
        {"RequestType": "attachments.create", "Outcome": "ok"},
        {"RequestType": "attachments.delete", "Outcome": "ok"},
        {"RequestType": "threads.create", "Outcome": "ok"},
        {"RequestType": "threads.get_by_id", "Outcome": "client"},
    ]
    assert {e["trace_id"] for e in flatten(entities)} == {traced_app.TRACE_ID}


def test_dynamodb_s3_ssm_and_model_calls_are_subsegments(
    traced: tuple[list[int], list[dict[str, Any]], list[str]],
) -> None:
    _, entities, _ = traced
    everything = flatten(entities)
    aws_calls = {(e["name"], e.get("aws", {}).get("operation")) for e in everything}
    assert ("dynamodb", "TransactWriteItems") in aws_calls
    assert ("dynamodb", "Query") in aws_calls or ("dynamodb", "GetItem") in aws_calls
    assert ("ssm", "GetParameter") in aws_calls
    assert any(name == "s3" for name, _ in aws_calls)
    model_calls = [e for e in everything if e["name"] == tracing.MODEL_SUBSEGMENT]
    request_ids = {e["id"] for e in everything if e["name"] == tracing.REQUEST_SUBSEGMENT}
    # The answer's calls (the tool call, then its text), under the request's subsegment.
    assert len(model_calls) >= 2
    assert all(call["parent_id"] in request_ids for call in model_calls)
    assert all(call["metadata"]["chatkit"]["usage"]["input_tokens"] > 0 for call in model_calls)


def test_traces_hold_no_message_text_user_id_or_token(
    traced: tuple[list[int], list[dict[str, Any]], list[str]],
) -> None:
    _, entities, _ = traced
    text = json.dumps(entities)
    assert "ocelot-quince" not in text
    assert traced_app.USER not in text
    assert traced_app.SECRET not in text and "Bearer" not in text


def test_tracing_off_imports_nothing_of_the_tracer() -> None:
    statuses, entities, modules = run_traced_app("true")

    assert statuses == [200, 200, 200, 404]
    assert entities == [] and modules == []


def test_tracing_follows_powertools_rule() -> None:
    def traced(environ: dict[str, str]) -> bool:
        return tracing.enabled(Settings.from_env(environ))

    lambda_env = {"LAMBDA_TASK_ROOT": "/var/task"}
    assert traced(lambda_env)
    assert not traced({**lambda_env, "POWERTOOLS_TRACE_DISABLED": "true"})
    assert not traced({**lambda_env, "AWS_SAM_LOCAL": "true"})
    assert not traced({})  # outside Lambda: no daemon to send to
