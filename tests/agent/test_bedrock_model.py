"""BedrockModel under the Agents SDK, against the fake Bedrock runtime on 127.0.0.1: a handoff
(a tool to Bedrock) moves the run to the other agent, and messages map onto Converse's shape."""

from __future__ import annotations

import base64

import pytest
from agents import Agent, Runner
from agents.run import RunConfig
from botocore.exceptions import ClientError

from agent.bedrock import BedrockModel, bedrock_client, converse_request
from agent.failures import describe_failure
from tests.support.fake_bedrock import FakeBedrock, Reply


def model() -> BedrockModel:
    return BedrockModel("amazon.nova-pro-v1:0", lambda: bedrock_client("us-east-1", 0))


async def test_a_handoff_moves_the_run_to_the_other_agent(bedrock: FakeBedrock) -> None:
    specialist = Agent[None](
        name="Specialist", instructions="You are the specialist.", model=model()
    )
    triage = Agent[None](
        name="Triage", instructions="Hand off.", model=model(), handoffs=[specialist]
    )
    bedrock.replies = [
        Reply(tool_use=("transfer_to_specialist", ["{}"])),
        Reply(chunks=["Specialist ", "here."]),
    ]

    run = Runner.run_streamed(triage, "help", run_config=RunConfig(tracing_disabled=True))
    deltas = [
        event.data.delta
        async for event in run.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]

    assert run.last_agent is specialist
    assert deltas == ["Specialist ", "here."]
    first, second = bedrock.requests
    assert [t["toolSpec"]["name"] for t in first["toolConfig"]["tools"]] == [
        "transfer_to_specialist"
    ]
    assert "You are the specialist." in second["system"][0]["text"]


async def test_a_non_streamed_answer_is_the_stream_collected(bedrock: FakeBedrock) -> None:
    bedrock.replies = [Reply(chunks=["A ", "title"])]
    agent = Agent[None](name="Titler", instructions="Title it.", model=model())

    result = await Runner.run(agent, "hello", run_config=RunConfig(tracing_disabled=True))

    assert result.final_output == "A title"
    assert len(bedrock.requests) == 1 and bedrock.paths[0].endswith("/converse-stream")


def test_messages_map_onto_converse_turns() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    pdf = base64.b64encode(b"%PDF-1.4").decode()
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{pdf}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "list_tasks", "arguments": "{}"},
                },
                {
                    "id": "t2",
                    "type": "function",
                    "function": {"name": "add_task", "arguments": '{"title": "x"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "none"},
        {"role": "tool", "tool_call_id": "t2", "content": "added"},
    ]

    request = converse_request("m", "Help.", messages, [])

    assert request["system"] == [{"text": "Help."}, {"text": "Be brief."}]
    user, assistant, results = request["messages"]
    assert user["content"][0] == {"text": "look"}
    assert user["content"][1]["image"] == {"format": "png", "source": {"bytes": b"\x89PNG"}}
    assert user["content"][2]["document"]["format"] == "pdf"
    assert [b["toolUse"]["input"] for b in assistant["content"]] == [{}, {"title": "x"}]
    # Consecutive tool results are one user turn: Converse wants the roles to alternate.
    assert results["role"] == "user"
    assert [b["toolResult"]["toolUseId"] for b in results["content"]] == ["t1", "t2"]


def test_a_history_window_starting_mid_exchange_starts_at_the_next_question() -> None:
    messages = [
        {"role": "assistant", "content": "An older answer."},
        {"role": "tool", "tool_call_id": "t0", "content": ""},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Next?"},
    ]

    request = converse_request("m", None, messages, [])

    assert request["messages"] == [{"role": "user", "content": [{"text": "Next?"}]}]
    assert "system" not in request


@pytest.mark.parametrize(
    ("code", "words", "allow_retry"),
    [
        ("ThrottlingException", "rate limiting", True),
        ("throttlingException", "rate limiting", True),  # an exception event's member name
        ("serviceUnavailableException", "temporary error", True),
        ("ModelTimeoutException", "too long", True),
        ("AccessDeniedException", "IAM role", False),
        ("ResourceNotFoundException", "BEDROCK_MODEL_ID", False),
        ("ValidationException", "refused the request", False),
    ],
)
def test_bedrock_failures_tell_the_user_what_happened(
    code: str, words: str, allow_retry: bool
) -> None:
    error = ClientError({"Error": {"Code": code, "Message": "secret detail"}}, "ConverseStream")

    message, retry = describe_failure(error)

    assert words in message and retry is allow_retry
    assert "secret detail" not in message


def test_other_aws_errors_are_not_blamed_on_the_model() -> None:
    error = ClientError({"Error": {"Code": "ThrottlingException"}}, "PutItem")

    assert "model" not in describe_failure(error)[0]
