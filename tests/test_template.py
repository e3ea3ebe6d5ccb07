"""template.yaml, samconfig.toml and events/ agree with the code they deploy.

The table is the store's table, every environment variable is one the app reads, IAM names
its actions and resources, the bucket is private and TLS-only, the Function URL streams, and
every sample event is a Function URL (payload 2.0) event carrying a valid ChatKit request.
`scripts/check-sam` runs the AWS tools (sam validate --lint, cfn-lint, sam build) on top.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, get_args

import boto3
import pytest
import yaml
from aws_lambda_powertools.shared import constants as powertools_constants
from chatkit.types import ChatKitReq
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from devtools.local import CORS_EXPOSED_HEADERS, CORS_METHODS
from handlers import conversations
from settings import PROVIDERS, AuthMode, ReasoningEffort, ReasoningSummary, Settings, variables
from store import table_schema
from store.payloads import payload_key
from store.uploads import PENDING_TAG, UPLOAD_PREFIX, UploadBucket

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
LOCAL_INVOKE_ENV = ROOT / "events" / "sam-local-env.json"  # variables, not an event
EVENTS = sorted(set((ROOT / "events").glob("*.json")) - {LOCAL_INVOKE_ENV})
API = "/api/"  # the REST API's paths

# Read by the Lambda runtime itself, not by our code or a library of ours.
RUNTIME_VARIABLES = {"AWS_LAMBDA_EXEC_WRAPPER"}
# Parameters naming SSM parameters: no IAM statement and no variable when left empty.
SECRET_PARAMETERS = {
    "AuthSecretParameter": "AUTH_SECRET_PARAMETER",
    "ModelApiKeyParameter": "MODEL_API_KEY_PARAMETER",
}


# -- loading -------------------------------------------------------------------------------


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, read into their long JSON form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_tag)


@cache
def template() -> dict[str, Any]:
    text = (ROOT / "template.yaml").read_text()
    loaded: dict[str, Any] = yaml.load(text, Loader=CloudFormationLoader)
    return loaded


@cache
def samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml").read_text())


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template()["Resources"].items() if r["Type"] == kind}


def only(kind: str) -> dict[str, Any]:
    [resource] = resources(kind).values()
    return resource


def function() -> dict[str, Any]:
    properties: dict[str, Any] = only("AWS::Serverless::Function")["Properties"]
    return properties


def environment() -> dict[str, Any]:
    variables: dict[str, Any] = function()["Environment"]["Variables"]
    return variables


def iam_statements() -> list[dict[str, Any]]:
    """Every statement of every IAM role and policy, both branches of each Fn::If."""
    statements: list[dict[str, Any]] = []
    for kind in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for resource in resources(kind).values():
            properties = resource["Properties"]
            documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
            if "PolicyDocument" in properties:
                documents.append(properties["PolicyDocument"])
            for document in documents:
                for statement in document["Statement"]:
                    statements.extend(_branches(statement))
    return statements


def template_statements() -> list[dict[str, Any]]:
    """The role's statements as written (an Fn::If stays one statement)."""
    role = only("AWS::IAM::Role")["Properties"]
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "Fn::If" in node:
        _, when_true, when_false = node["Fn::If"]
        return [b for branch in (when_true, when_false) for b in _branches(branch)]
    return [] if node == {"Ref": "AWS::NoValue"} else [node]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- a small evaluator: the environment the function gets for given parameter values ---------


def parameter_values(overrides: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, parameter in template()["Parameters"].items():
        raw = str(overrides.get(name, parameter.get("Default", "")))
        values[name] = raw.split(",") if parameter["Type"] == "CommaDelimitedList" else raw
    return values


def evaluate(node: Any, values: dict[str, Any]) -> Any:
    """Resolve Ref (resources become their logical id), Fn::If and the condition functions."""
    if not isinstance(node, dict):
        return node
    if "Ref" in node:
        return values.get(node["Ref"], node["Ref"])
    if "Condition" in node:
        return evaluate(template()["Conditions"][node["Condition"]], values)
    if "Fn::If" in node:
        condition, when_true, when_false = node["Fn::If"]
        chosen = when_true if evaluate({"Condition": condition}, values) else when_false
        return evaluate(chosen, values)
    if "Fn::Sub" in node:
        text = node["Fn::Sub"]
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(values.get(m[1], m[1])), text)
    if "Fn::Equals" in node:
        left, right = (evaluate(part, values) for part in node["Fn::Equals"])
        return left == right
    if "Fn::Not" in node:
        return not evaluate(node["Fn::Not"][0], values)
    if "Fn::And" in node:
        return all(evaluate(part, values) for part in node["Fn::And"])
    if "Fn::Or" in node:
        return any(evaluate(part, values) for part in node["Fn::Or"])
    raise AssertionError(f"the test cannot evaluate {node}")


def function_environment(overrides: dict[str, str]) -> dict[str, str]:
    values = parameter_values(overrides)
    resolved = {name: evaluate(value, values) for name, value in environment().items()}
    return {name: str(value) for name, value in resolved.items() if value != "AWS::NoValue"}


def samconfig_overrides(environment_name: str) -> dict[str, str]:
    entries = samconfig()[environment_name]["deploy"]["parameters"]["parameter_overrides"]
    return dict(entry.split("=", 1) for entry in entries)


def rules_hold(values: dict[str, Any]) -> bool:
    for rule in template().get("Rules", {}).values():
        applies = evaluate(rule.get("RuleCondition", True), values)
        if applies and not all(evaluate(a["Assert"], values) for a in rule["Assertions"]):
            return False
    return True


# -- the table -----------------------------------------------------------------------------


def test_table_is_exactly_the_stores_table() -> None:
    table = only("AWS::DynamoDB::Table")["Properties"]

    for key, expected in table_schema().items():
        assert table[key] == expected, key


def test_table_is_on_demand_with_point_in_time_recovery_and_encryption() -> None:
    table = only("AWS::DynamoDB::Table")

    assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True
    }
    assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


# -- the function --------------------------------------------------------------------------


def test_function_runs_on_python_3_13_arm64() -> None:
    assert function()["Runtime"] == "python3.13"
    assert function()["Architectures"] == ["arm64"]


def test_function_url_streams_and_leaves_authentication_to_the_app() -> None:
    url = function()["FunctionUrlConfig"]

    assert url["InvokeMode"] == "RESPONSE_STREAM"
    # A literal, not a Ref: SAM only emits the public invoke permissions for a literal.
    assert url["AuthType"] == "NONE"


def test_function_url_cors_allows_the_chatkit_calls_but_never_lists_options() -> None:
    cors = function()["FunctionUrlConfig"]["Cors"]

    assert cors["AllowOrigins"] == {"Ref": "AllowedOrigins"}
    assert sorted(cors["AllowMethods"]) == ["DELETE", "GET", "PATCH", "POST"]
    assert {"authorization", "content-type"} <= {h.lower() for h in cors["AllowHeaders"]}
    assert cors.get("AllowCredentials", False) is False


def test_function_url_cors_lets_the_browser_read_retry_after_and_www_authenticate() -> None:
    exposed = {h.lower() for h in function()["FunctionUrlConfig"]["Cors"]["ExposeHeaders"]}

    assert {"retry-after", "www-authenticate"} <= exposed


def test_function_url_cors_lets_the_browser_read_an_exports_file_name() -> None:
    exposed = {h.lower() for h in function()["FunctionUrlConfig"]["Cors"]["ExposeHeaders"]}

    assert "content-disposition" in exposed


def test_the_local_server_answers_cors_as_the_function_url_does() -> None:
    cors = function()["FunctionUrlConfig"]["Cors"]

    assert sorted(cors["AllowMethods"]) == sorted(CORS_METHODS)
    assert sorted(h.lower() for h in cors["ExposeHeaders"]) == sorted(CORS_EXPOSED_HEADERS)


def test_the_public_url_has_a_cost_cap_by_default() -> None:
    defaults = function_environment({"AuthSecretParameter": "/chatkit-lambda/auth-secret"})

    assert Settings.from_env(defaults).daily_turn_limit > 0


@pytest.mark.parametrize("name", ["default", "dev", "prod"])
def test_no_deployment_reserves_concurrency_small_accounts_cannot_grant(name: str) -> None:
    # Reserving N needs an account concurrency quota of N + 100; new accounts may have 10.
    assert samconfig_overrides(name).get("ReservedConcurrency", "") == ""


def test_exec_wrapper_is_an_executable_script_shipped_from_src() -> None:
    wrapper = environment()["AWS_LAMBDA_EXEC_WRAPPER"]
    assert wrapper.startswith("/var/task/")
    script = SRC / wrapper.removeprefix("/var/task/")

    assert script.is_file(), f"{script} does not exist"
    assert os.access(script, os.X_OK), f"{script} is not executable (git add --chmod=+x)"
    assert script.read_text().startswith("#!")


def test_handler_names_a_function_defined_in_src() -> None:
    module, _, name = function()["Handler"].rpartition(".")
    source = SRC / (module.replace(".", "/") + ".py")

    assert source.is_file(), f"{source} does not exist"
    tree = ast.parse(source.read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)} | {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    assert name in defined


def test_code_is_src_built_by_the_makefile_recipe() -> None:
    resource = only("AWS::Serverless::Function")
    makefile = (ROOT / resource["Metadata"]["ContextPath"] / "Makefile").read_text()

    assert function()["CodeUri"] == "src/"
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    assert "build-ChatKitFunction:" in makefile
    for name in ("default", "dev", "prod"):
        build = samconfig()[name]["build"]["parameters"]
        # A manifest would replace the Makefile; a cached build would miss a uv.lock change.
        assert "manifest" not in build, name
        assert build.get("cached", False) is False, name


def test_sync_builds_like_build_and_gives_the_parameters_the_rules_require() -> None:
    sync = samconfig()["dev"]["sync"]["parameters"]
    overrides = dict(entry.split("=", 1) for entry in sync["parameter_overrides"])

    assert "manifest" not in sync
    assert sync["dependency_layer"] is False  # the Makefile's artifact holds the dependencies
    assert set(overrides) <= set(template()["Parameters"])
    assert rules_hold(parameter_values(overrides))
    assert overrides == samconfig_overrides("dev")


def test_every_environment_variable_is_a_setting_or_read_by_powertools_or_lambda() -> None:
    settings_variables = {
        name for field in Settings.model_fields for name in variables(Settings, field)
    }
    read_by_powertools = {
        value
        for name, value in vars(powertools_constants).items()
        if name.endswith("_ENV") and isinstance(value, str)
    }
    known = settings_variables | read_by_powertools | RUNTIME_VARIABLES

    assert set(environment()) - known == set()


@pytest.mark.parametrize("name", ["default", "dev", "prod"])
def test_each_deployment_gives_the_app_settings_it_accepts(name: str) -> None:
    overrides = samconfig_overrides(name)
    assert set(overrides) <= set(template()["Parameters"])
    assert rules_hold(parameter_values(overrides))

    values = parameter_values(overrides)
    settings = Settings.from_env(function_environment(overrides))

    assert settings.table_name == "ChatKitTable"
    assert settings.bucket_name == "UploadsBucket"
    # A turn must end before Lambda kills the function mid-stream.
    assert settings.max_turn_seconds < int(values["Timeout"])


def test_rules_refuse_configurations_the_app_cannot_serve() -> None:
    secret = {"AuthSecretParameter": "/chatkit-lambda/auth-secret"}

    assert rules_hold(parameter_values(secret))
    assert not rules_hold(parameter_values({"AuthMode": "hs256"}))
    assert not rules_hold(parameter_values({**secret, "AuthMode": "oidc"}))
    assert not rules_hold(parameter_values({**secret, "ModelProvider": "openai"}))
    assert not rules_hold(parameter_values({**secret, "ModelProvider": "openai-compatible"}))


def test_parameter_choices_are_the_settings_choices() -> None:
    parameters = template()["Parameters"]

    assert set(parameters["AuthMode"]["AllowedValues"]) == set(get_args(AuthMode))
    assert set(parameters["ModelProvider"]["AllowedValues"]) == set(PROVIDERS)
    assert set(parameters["ModelReasoningEffort"]["AllowedValues"]) == {
        "",
        *get_args(ReasoningEffort),
    }
    assert set(parameters["ModelReasoningSummary"]["AllowedValues"]) == {
        "",
        *get_args(ReasoningSummary),
    }


def test_empty_secret_parameters_set_no_variable() -> None:
    env = function_environment({"AuthSecretParameter": "", "ModelApiKeyParameter": ""})

    assert set(SECRET_PARAMETERS.values()).isdisjoint(env)


def test_secret_parameter_names_must_start_with_a_slash() -> None:
    # The IAM ARN is ...:parameter${Name}: a name without its leading "/" would not match it.
    for name in SECRET_PARAMETERS:
        pattern = template()["Parameters"][name]["AllowedPattern"]
        assert re.fullmatch(pattern, "")
        assert re.fullmatch(pattern, "/chatkit-lambda/prod/model-api-key")
        assert not re.fullmatch(pattern, "chatkit-lambda/prod/model-api-key")


def test_snap_start_is_off_by_default() -> None:
    assert template()["Parameters"]["EnableSnapStart"]["Default"] == "false"
    assert evaluate(function()["SnapStart"]["ApplyOn"], parameter_values({})) == "None"


def test_deploy_configurations_need_iam_capability_and_confirm_production_changes() -> None:
    for name in ("default", "dev", "prod"):
        assert samconfig()[name]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"
    assert samconfig()["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert (
        samconfig()["prod"]["global"]["parameters"]["stack_name"]
        != (samconfig()["default"]["global"]["parameters"]["stack_name"])
    )


# -- IAM -----------------------------------------------------------------------------------


def test_iam_statements_name_their_actions_and_resources() -> None:
    statements = iam_statements()
    assert statements

    for statement in statements:
        if statement.get("Principal"):  # a trust policy
            continue
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, statement
        if statement.get("Sid") == "SendTraces":  # X-Ray has no resource-level permissions
            continue
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement


def test_the_function_uses_only_the_templates_role() -> None:
    assert "Policies" not in function()
    assert function()["Role"] == {"Fn::GetAtt": ["ChatKitFunctionRole", "Arn"]}


def test_secrets_are_readable_only_when_configured() -> None:
    for parameter, variable in SECRET_PARAMETERS.items():
        configured = {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
        [statement] = [
            s
            for s in template_statements()
            if "Fn::If" in s and parameter in json.dumps(s["Fn::If"][1]["Resource"])
        ]
        condition, granted, otherwise = statement["Fn::If"]
        assert template()["Conditions"][condition] == configured
        assert granted["Action"] == "ssm:GetParameter"
        assert otherwise == {"Ref": "AWS::NoValue"}
        assert environment()[variable] == {
            "Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]
        }


def test_kms_decrypt_only_through_ssm() -> None:
    for statement in iam_statements():
        if any(action.startswith("kms:") for action in as_list(statement["Action"])):
            assert as_list(statement["Action"]) == ["kms:Decrypt"]
            via = statement["Condition"]["StringEquals"]["kms:ViaService"]
            assert via == {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}


def test_table_access_covers_its_indexes() -> None:
    [statement] = [
        s for s in iam_statements() if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))
    ]
    assert {"dynamodb:Query", "dynamodb:BatchWriteItem"} <= set(statement["Action"])
    assert {"Fn::Sub": "${ChatKitTable.Arn}/index/*"} in statement["Resource"]


BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
AWS_VALUES = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}


def granted(overrides: dict[str, str]) -> list[dict[str, Any]]:
    """The role's statements, resolved for these parameter values."""
    values = {**parameter_values(overrides), **AWS_VALUES}

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(part) for part in node]
        if not isinstance(node, dict):
            return node
        if "Fn::If" in node:
            condition, when_true, when_false = node["Fn::If"]
            chosen = when_true if evaluate({"Condition": condition}, values) else when_false
            return resolve(chosen)
        if len(node) == 1 and next(iter(node)) in ("Ref", "Fn::Sub"):
            return evaluate(node, values)
        return {key: resolve(value) for key, value in node.items()}

    statements = [resolve(s) for s in template_statements()]
    return [s for s in statements if s != "AWS::NoValue"]


def bedrock_statements(overrides: dict[str, str]) -> list[dict[str, Any]]:
    return [
        s
        for s in granted(overrides)
        if any(action.startswith("bedrock:") for action in as_list(s["Action"]))
    ]


def test_bedrock_is_granted_only_when_it_is_the_provider() -> None:
    for provider in ("offline", "openai", "openai-compatible"):
        overrides = {"ModelProvider": provider, "BedrockModelId": BEDROCK_MODEL}
        assert bedrock_statements(overrides) == []
        assert "BEDROCK_MODEL_ID" not in function_environment(overrides)


def test_bedrock_may_stream_the_configured_model_in_the_stacks_region_only() -> None:
    overrides = {"ModelProvider": "bedrock", "BedrockModelId": BEDROCK_MODEL}

    [statement] = bedrock_statements(overrides)

    assert statement["Action"] == "bedrock:InvokeModelWithResponseStream"
    assert statement["Resource"] == f"arn:aws:bedrock:eu-west-1::foundation-model/{BEDROCK_MODEL}"
    assert function_environment(overrides)["BEDROCK_MODEL_ID"] == BEDROCK_MODEL


def test_bedrock_through_an_inference_profile_reaches_the_model_only_through_it() -> None:
    overrides = {
        "ModelProvider": "bedrock",
        "BedrockModelId": BEDROCK_MODEL,
        "BedrockInferenceProfile": "eu",
    }
    profile = f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.{BEDROCK_MODEL}"

    through_profile, routed = bedrock_statements(overrides)

    assert through_profile["Resource"] == profile
    # The profile routes to the model in any Region of its geography, and only it may.
    assert routed["Resource"] == f"arn:aws:bedrock:*::foundation-model/{BEDROCK_MODEL}"
    assert routed["Condition"] == {"StringEquals": {"bedrock:InferenceProfileArn": profile}}
    for statement in (through_profile, routed):
        assert statement["Action"] == "bedrock:InvokeModelWithResponseStream"
    # The function calls the profile it is granted.
    settings = Settings.from_env(function_environment(overrides))
    assert (settings.provider, settings.bedrock_model_id) == ("bedrock", f"eu.{BEDROCK_MODEL}")


def test_bedrock_needs_a_model_id() -> None:
    secret = {"AuthSecretParameter": "/chatkit-lambda/auth-secret"}

    assert not rules_hold(parameter_values({**secret, "ModelProvider": "bedrock"}))
    assert rules_hold(
        parameter_values({**secret, "ModelProvider": "bedrock", "BedrockModelId": BEDROCK_MODEL})
    )


# -- the bucket ----------------------------------------------------------------------------


def test_bucket_is_private_encrypted_and_owner_enforced() -> None:
    bucket = only("AWS::S3::Bucket")["Properties"]

    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    [encryption] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}


def test_bucket_refuses_requests_without_tls() -> None:
    policy = only("AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]

    assert {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }.items() <= next(iter(policy["Statement"])).items()


def test_lifecycle_expires_pending_uploads_and_never_payloads() -> None:
    rules = only("AWS::S3::Bucket")["Properties"]["LifecycleConfiguration"]["Rules"]
    tag_key, tag_value = PENDING_TAG.split("=")
    expiring = [rule for rule in rules if "ExpirationInDays" in rule]

    assert [(r["Prefix"], r["TagFilters"], r["ExpirationInDays"]) for r in expiring] == [
        (UPLOAD_PREFIX, [{"Key": tag_key, "Value": tag_value}], 1)
    ]
    assert not payload_key("alice", "thr_1", "msg_1").startswith(UPLOAD_PREFIX)
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules)


def test_bucket_cors_accepts_the_presigned_upload_from_the_app_origins() -> None:
    [rule] = only("AWS::S3::Bucket")["Properties"]["CorsConfiguration"]["CorsRules"]
    s3 = boto3.client("s3", region_name="us-east-1")
    _, headers = UploadBucket(s3, "uploads").presign_put("uploads/a/atc_1/x.png", "image/png", 10)

    assert rule["AllowedOrigins"] == {"Ref": "AllowedOrigins"}
    assert {"PUT", "GET"} <= set(rule["AllowedMethods"])
    # Browsers refuse scripts setting Content-Length: it is sent but never preflighted.
    assert {header.lower() for header in headers} <= set(rule["AllowedHeaders"])


def test_outputs_name_what_a_client_needs() -> None:
    assert {"FunctionUrl", "FunctionName", "TableName", "BucketName"} <= set(template()["Outputs"])


# -- sample events -------------------------------------------------------------------------


def chatkit_request_types() -> set[str]:
    union = get_args(ChatKitReq)[0]
    return {model.model_fields["type"].default for model in get_args(union)}


def load_event(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event


def body_of(event: dict[str, Any]) -> bytes:
    body: str = event.get("body") or ""
    return base64.b64decode(body) if event["isBase64Encoded"] else body.encode()


def test_there_is_an_event_for_every_chatkit_request_and_for_health() -> None:
    paths = {load_event(path)["rawPath"] for path in EVENTS}
    types = {
        json.loads(body_of(event))["type"]
        for event in map(load_event, EVENTS)
        if event["rawPath"] == "/chatkit"
    }

    assert types == chatkit_request_types()
    assert {path for path in paths if not path.startswith(API)} == {"/chatkit", "/health"}


def test_there_is_an_event_for_every_rest_route() -> None:
    requests = {
        (event["requestContext"]["http"]["method"], event["rawPath"])
        for event in map(load_event, EVENTS)
        if event["rawPath"].startswith(API)
    }
    routes = [route for route in conversations.router.routes if isinstance(route, APIRoute)]

    for route in routes:
        [method] = route.methods
        matching = [
            path for (verb, path) in requests if verb == method and route.path_regex.match(path)
        ]
        assert matching, f"no event for {method} {route.path}"


@pytest.mark.parametrize("path", EVENTS, ids=[path.stem for path in EVENTS])
def test_event_is_a_function_url_payload_2_0(path: Path) -> None:
    event = load_event(path)
    context = event["requestContext"]
    http = context["http"]

    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == http["path"]
    assert http["method"] in {"GET", "POST", "PATCH", "DELETE"} and http["sourceIp"]
    for key in ("accountId", "apiId", "domainName", "requestId", "time", "timeEpoch"):
        assert context[key], key
    assert context["domainName"] == event["headers"]["host"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["headers"]["authorization"].startswith("Bearer ")
    assert isinstance(event["isBase64Encoded"], bool)


@pytest.mark.parametrize("path", EVENTS, ids=[path.stem for path in EVENTS])
def test_event_body_is_a_valid_chatkit_request(path: Path) -> None:
    event = load_event(path)
    if event["requestContext"]["http"]["method"] in ("GET", "DELETE"):
        assert "body" not in event
        return
    body = body_of(event)

    if event["rawPath"].startswith(API):
        conversations.Rename.model_validate_json(body)
    else:
        TypeAdapter(ChatKitReq).validate_json(body)
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["content-length"] == str(len(body))


def test_events_include_a_base64_body_and_cookies_with_a_repeated_query_parameter() -> None:
    events = [load_event(path) for path in EVENTS]

    assert any(event["isBase64Encoded"] for event in events)
    assert any(
        event.get("cookies")
        and "," in "".join(event.get("queryStringParameters", {}).values())
        and len(event["rawQueryString"].split("&")) > len(event["queryStringParameters"])
        for event in events
    )


# -- sam local invoke ----------------------------------------------------------------------


def local_invoke_variables() -> dict[str, str]:
    path = ROOT / samconfig()["dev"]["local_invoke"]["parameters"]["env_vars"]
    variables: dict[str, str] = json.loads(path.read_text())["ChatKitFunction"]
    return variables


def test_local_invoke_variables_are_ones_the_template_declares() -> None:
    # SAM ignores, silently, any variable of the file that the template does not declare.
    assert set(local_invoke_variables()) <= set(environment())


def test_local_invoke_runs_the_buffered_handler_on_named_resources() -> None:
    variables = local_invoke_variables()
    overrides = dict(
        entry.split("=", 1)
        for entry in samconfig()["dev"]["local_invoke"]["parameters"]["parameter_overrides"]
    )
    env = {**function_environment(overrides), **variables}
    settings = Settings.from_env(env)

    # The runtime's bootstrap runs the Handler when the wrapper variable is empty.
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == ""
    assert rules_hold(parameter_values(overrides))
    assert settings.table_name != "ChatKitTable" and settings.bucket_name != "UploadsBucket"
    assert settings.auth_secret_parameter == overrides["AuthSecretParameter"]
