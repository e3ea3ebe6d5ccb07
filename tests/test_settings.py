"""Settings come from the environment, with defaults, and name the variable when one is wrong."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from agents import OpenAIChatCompletionsModel

from agent.offline_model import OfflineModel
from agent.providers import build_models
from settings import Settings, SettingsError, variables


def test_no_key_means_the_offline_model() -> None:
    settings = Settings.from_env({})

    assert settings.provider == "offline"
    models = build_models(settings)
    assert isinstance(models.chat, OfflineModel)
    assert models.title is None and models.transcribe is None


def test_a_key_means_openai_with_transcription() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-test", "MODEL_NAME": "gpt-4.1"})

    assert settings.provider == "openai" and settings.model == "gpt-4.1"
    models = build_models(settings)
    assert type(models.chat).__name__ == "OpenAIResponsesModel"
    assert models.title is not None and models.transcribe is not None


def test_a_base_url_means_an_openai_compatible_server_without_transcription() -> None:
    settings = Settings.from_env(
        {
            "MODEL_BASE_URL": "https://generativelanguage.googleapis.com/v1beta/openai/",
            "MODEL_API_KEY": "gemini-key",
            "MODEL_NAME": "gemini-2.5-flash",
        }
    )

    assert settings.provider == "openai-compatible"
    models = build_models(settings)
    assert isinstance(models.chat, OpenAIChatCompletionsModel)  # Chat Completions, not Responses
    assert models.transcribe is None


def test_limits_are_read_as_numbers() -> None:
    settings = Settings.from_env(
        {
            "HISTORY_ITEMS": "12",
            "MAX_AGENT_TURNS": "3",
            "MAX_TURN_SECONDS": "20",
            "OFFLINE_WORD_DELAY_MS": "0",
        }
    )

    assert (settings.history_items, settings.max_agent_turns, settings.max_turn_seconds) == (
        12,
        3,
        20.0,
    )
    assert settings.offline_word_delay_seconds == 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MODEL_PROVIDER": "skynet"}, "MODEL_PROVIDER"),
        ({"MODEL_PROVIDER": "openai"}, "MODEL_API_KEY"),
        ({"MODEL_PROVIDER": "openai-compatible"}, "MODEL_BASE_URL"),
        ({"HISTORY_ITEMS": "many"}, "HISTORY_ITEMS"),
        ({"MAX_TURN_SECONDS": "0"}, "MAX_TURN_SECONDS"),
        ({"STREAM_DEADLINE_MARGIN_MS": "-1"}, "STREAM_DEADLINE_MARGIN_MS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"UPLOAD_URL_SECONDS": "5"}, "UPLOAD_URL_SECONDS"),
        ({"AUTH_MODE": "basic"}, "AUTH_MODE"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_an_env_file_adds_settings_without_overriding_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\n"
        "OPENAI_API_KEY='sk-from-file'\n"
        'export MODEL_NAME="gpt-4.1"\n'
        "HISTORY_ITEMS=10\n"
        "ANOTHER_TOOLS_VARIABLE=1\n"
    )
    monkeypatch.setenv("HISTORY_ITEMS", "50")

    settings = Settings.from_env(env_file=env_file)

    assert (settings.api_key, settings.model, settings.history_items) == (
        "sk-from-file",
        "gpt-4.1",
        50,
    )
    assert settings.provider == "openai"


def test_direct_values_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "from-the-environment")

    assert Settings().model == Settings.from_env({}).model == "gpt-4.1-mini"
    assert Settings.from_env().model == "from-the-environment"


def test_an_empty_variable_is_unset() -> None:
    settings = Settings.from_env({"AUTH_AUDIENCE": "", "DAILY_TURN_LIMIT": "", "MODEL_NAME": ""})

    assert (settings.auth_audience, settings.daily_turn_limit, settings.model) == (
        None,
        0,
        "gpt-4.1-mini",
    )


def test_every_variable_is_in_the_readme_configuration_table() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n\n**", 1)[0]

    missing = [
        name
        for field in Settings.model_fields
        for name in variables(Settings, field)
        if f"`{name}`" not in table
    ]
    assert missing == []


# What src/ may read from the environment itself, outside settings.py: the Lambda runtime's
# own variables, which describe the process and the invocation rather than configure the app.
RUNTIME_READS: dict[str, set[str]] = {
    "handlers/lambda_streaming.py": {
        "AWS_LAMBDA_RUNTIME_API",  # where the runtime loop asks for invocations
        "AWS_LAMBDA_INITIALIZATION_TYPE",  # whether init ends in a SnapStart snapshot
        "_X_AMZN_TRACE_ID",  # written for each invocation, for the X-Ray SDK to read
        # The whole mapping, to put on sys.path what the managed runtime's bootstrap would
        # (LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR, PYTHONPATH), before the app is imported.
        "os.environ",
    },
    # The context object's fields, from the variables the managed runtime builds it from.
    "handlers/lambda_events.py": {
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
    },
}


def environment_reads(source: str) -> set[str]:
    """The variables `source` reads from (or writes to) the environment, by their literal
    names; `os.environ` where it uses the whole mapping or a name that is not a literal."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    reads: set[str] = set()
    for node in ast.walk(tree):
        if not _is_environment(node):
            continue
        parent = parents.get(node)
        call = parents.get(parent) if isinstance(parent, ast.Attribute) else parent
        if isinstance(parent, ast.Subscript) and isinstance(parent.slice, ast.Constant):
            reads.add(str(parent.slice.value))
        elif isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant):
            reads.add(str(call.args[0].value))  # os.environ.get("NAME"), os.getenv("NAME")
        else:
            reads.add("os.environ")
    return reads


def _is_environment(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id == "os" and node.attr in ("environ", "environb", "getenv")
    return isinstance(node, ast.Name) and node.id in ("environ", "getenv")


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("os.environ.get('LOG_USER_ID_KEY')", {"LOG_USER_ID_KEY"}),
        ("os.environ['MODEL_NAME']", {"MODEL_NAME"}),
        ("os.getenv('POWERTOOLS_SERVICE_NAME', 'x')", {"POWERTOOLS_SERVICE_NAME"}),
        ("from os import environ\nenviron.get(NAME)", {"os.environ"}),
        ("def enabled(env=os.environ): ...", {"os.environ"}),
        ("settings.model", set()),
    ],
)
def test_the_scan_finds_every_way_of_reading_the_environment(source: str, found: set[str]) -> None:
    assert environment_reads(source) == found


def test_the_code_reads_its_configuration_through_settings_only() -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    unexpected = {
        name: sorted(reads - RUNTIME_READS.get(name, set()))
        for path in sorted(src.rglob("*.py"))
        if (name := path.relative_to(src).as_posix()) != "settings.py"
        and (reads := environment_reads(path.read_text()))
    }
    assert {name: reads for name, reads in unexpected.items() if reads} == {}
