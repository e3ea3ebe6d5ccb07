"""The stack's operations side agrees with the code: every alarm and every dashboard widget
names a metric the code emits (`telemetry.METRICS`), with the dimensions it emits it with;
the Logs Insights queries read fields the request record has; alarms are on by default and
notify by e-mail only when asked; tracing is off unless the `Tracing` parameter turns it on.
"""

from __future__ import annotations

import json
import re
from typing import Any

import tracing
from settings import Settings
from telemetry import ERROR_CLASSES, METRICS, RequestRecord
from tests.test_template import (
    evaluate,
    function,
    function_environment,
    iam_statements,
    parameter_values,
    resources,
    template,
)

STACK = "my-chatkit"
NAMESPACE = "ChatKitLambda"
# AWS's own metrics the stack watches (emitted by Lambda, not by our code).
LAMBDA_METRICS = {"Invocations", "Errors", "Throttles", "ConcurrentExecutions", "Duration"}


def values() -> dict[str, Any]:
    return {**parameter_values({}), "AWS::StackName": STACK, "AWS::Region": "eu-west-1"}


def check_metric(namespace: str, name: str, dimensions: dict[str, str]) -> None:
    """A metric the code (or Lambda) emits, with exactly a dimension set it is emitted with."""
    if namespace == "AWS/Lambda":
        assert name in LAMBDA_METRICS
        assert dimensions == {"FunctionName": "ChatKitFunction"}
        return
    assert namespace == NAMESPACE == function_environment({})["POWERTOOLS_METRICS_NAMESPACE"]
    assert name in METRICS, f"{name} is not a metric the code emits"
    assert tuple(sorted(dimensions)) in {tuple(sorted(d)) for d in METRICS[name].dimensions}, (
        f"{name} is not emitted with the dimensions {sorted(dimensions)}"
    )
    assert dimensions["service"] == STACK  # POWERTOOLS_SERVICE_NAME: the stack's name
    if "ErrorClass" in dimensions:
        assert dimensions["ErrorClass"] in {*ERROR_CLASSES, "*"}  # "*": a SEARCH over them


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    properties = evaluate_all(alarm["Properties"])
    stats = [m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m]
    if "MetricName" in properties:
        stats.append(properties)
    return [
        (
            stat["Namespace"],
            stat["MetricName"],
            {d["Name"]: d["Value"] for d in stat.get("Dimensions", [])},
        )
        for stat in stats
    ]


def evaluate_all(node: Any) -> Any:
    if isinstance(node, dict):
        resolved = evaluate(node, values()) if set(node) & {"Ref", "Fn::If", "Fn::Sub"} else node
        if resolved is not node:
            return evaluate_all(resolved)
        return {key: evaluate_all(value) for key, value in node.items()}
    if isinstance(node, list):
        return [evaluate_all(item) for item in node]
    return node


def dashboard() -> dict[str, Any]:
    [board] = resources("AWS::CloudWatch::Dashboard").values()
    body: dict[str, Any] = json.loads(evaluate(board["Properties"]["DashboardBody"], values()))
    return body


def widget_metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """The metrics a metric widget shows: [namespace, name, dimension, value, ..., {options}]
    rows, and SEARCH expressions over one schema ({namespace,dimensions} MetricName="...")."""
    found = []
    for row in widget["properties"]["metrics"]:
        if isinstance(row[0], dict):
            expression = row[0]["expression"]
            schema = re.search(r"\{([^}]*)\}", expression)
            name = re.search(r'MetricName="([^"]+)"', expression)
            service = re.search(r'service="([^"]+)"', expression)
            assert schema and name and service, expression
            namespace, *dimension_names = schema[1].split(",")
            dimensions = dict.fromkeys(dimension_names, "*")
            dimensions["service"] = service[1]
            found.append((namespace, name[1], dimensions))
            continue
        fields = [part for part in row if not isinstance(part, dict)]
        assert "." not in fields, "rows name their metric in full"
        namespace, name, *pairs = fields
        found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


def test_every_alarm_names_a_metric_the_code_emits() -> None:
    alarms = resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 6
    for alarm in alarms.values():
        metrics = alarm_metrics(alarm)
        assert metrics
        for namespace, name, dimensions in metrics:
            check_metric(namespace, name, dimensions)


def test_every_dashboard_widget_names_a_metric_the_code_emits() -> None:
    widgets = [w for w in dashboard()["widgets"] if w["type"] == "metric"]
    shown = set()
    for widget in widgets:
        metrics = widget_metrics(widget)
        assert metrics, widget["properties"]["title"]
        for namespace, name, dimensions in metrics:
            check_metric(namespace, name, dimensions)
            shown.add(name)
    # Everything the code measures is on the dashboard.
    assert set(METRICS) <= shown


def test_the_dashboards_queries_read_fields_of_the_request_record() -> None:
    record = RequestRecord(turn=True, first_event_ms=1.0)
    fields = set(record.log_fields(1.0, None)) | {"message", "@timestamp"}
    queries = [w["properties"]["query"] for w in dashboard()["widgets"] if w["type"] == "log"]
    assert queries
    for query in queries:
        assert query.startswith("SOURCE 'ChatKitLogGroup' |")
        named = set(re.findall(r"@?[a-z_]+", query.split("|", 1)[1]))
        keywords = {
            "filter", "and", "ispresent", "sort", "desc", "display", "limit", "stats", "sum",
            "as", "count", "by", "input", "output", "turns", "chatkit", "request",
        }  # fmt: skip
        assert named - keywords <= fields, named - keywords - fields


def test_alarms_are_on_by_default_and_notify_only_an_address_given() -> None:
    parameters = template()["Parameters"]
    assert parameters["EnableAlarms"]["Default"] == "true"
    assert parameters["AlarmEmail"]["Default"] == ""
    conditions = template()["Conditions"]
    for alarm in resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Condition"] == "AlarmsOn"
        for actions in ("AlarmActions", "OKActions"):
            when, topic, otherwise = alarm["Properties"][actions]["Fn::If"]
            assert when == "NotifiesByEmail" and topic == [{"Ref": "AlarmTopic"}]
            assert otherwise == {"Ref": "AWS::NoValue"}
    [topic] = resources("AWS::SNS::Topic").values()
    assert topic["Condition"] == "NotifiesByEmail"
    assert evaluate(conditions["NotifiesByEmail"], values()) is False
    with_email = {**values(), "AlarmEmail": "ops@example.com"}
    assert evaluate(conditions["NotifiesByEmail"], with_email) is True
    assert evaluate(conditions["NotifiesByEmail"], {**with_email, "EnableAlarms": "false"}) is False


def test_tracing_is_off_unless_the_parameter_turns_it_on() -> None:
    lambda_env = {"LAMBDA_TASK_ROOT": "/var/task"}
    assert template()["Parameters"]["Tracing"]["Default"] == "PassThrough"
    off = Settings.from_env({**function_environment({}), **lambda_env})
    on = Settings.from_env({**function_environment({"Tracing": "Active"}), **lambda_env})
    assert not tracing.enabled(off) and tracing.enabled(on)
    assert function()["Tracing"] == {"Ref": "Tracing"}


def test_only_a_traced_function_may_send_traces() -> None:
    [statement] = [s for s in iam_statements() if s.get("Sid") == "SendTraces"]
    assert statement["Action"] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    role = template()["Resources"]["ChatKitFunctionRole"]["Properties"]
    [policy] = role["Policies"]
    traced = [
        s["Fn::If"][0]
        for s in policy["PolicyDocument"]["Statement"]
        if "Fn::If" in s and s["Fn::If"][1].get("Sid") == "SendTraces"
    ]
    assert traced == ["TracingOn"]


def test_logs_name_users_by_a_key_of_this_stack() -> None:
    env = function_environment({})
    assert environment_value("LOG_USER_ID_KEY") == {"Ref": "AWS::StackId"}
    assert environment_value("POWERTOOLS_SERVICE_NAME") == {"Ref": "AWS::StackName"}
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    settings = Settings.from_env(env)
    assert settings.log_user_id_key == env["LOG_USER_ID_KEY"] and settings.trace_disabled


def environment_value(name: str) -> Any:
    return function()["Environment"]["Variables"][name]
