"""The request limits: what one request may ask for is bounded before the SDK sees it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agent.request_limits import REQUEST_TYPES, check_request
from errors import InvalidRequestError, LimitExceededError
from settings import RequestLimits, Settings, SettingsError

LIMITS = RequestLimits(
    max_message_chars=1_000,
    max_title_chars=50,
    max_attachments_per_message=3,
    max_feedback_items=4,
    max_audio_bytes=3_000,
)


def body(request_type: str, **params: Any) -> bytes:
    return json.dumps({"type": request_type, "params": params}).encode()


def message(text: str = "hi", attachments: list[Any] | None = None, **extra: Any) -> bytes:
    user_input = {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments or [],
        "inference_options": {},
        **extra,
    }
    return body("threads.create", input=user_input)


def test_every_chatkit_request_type_is_known() -> None:
    assert "threads.create" in REQUEST_TYPES and "input.transcribe" in REQUEST_TYPES
    assert len(REQUEST_TYPES) == 16


def test_a_request_within_the_limits_is_dispatched_as_sent() -> None:
    sent = message("hello", ["atc_1", "atc_2"])

    checked = check_request(sent, LIMITS)

    assert checked.type == "threads.create" and checked.body == sent


def test_more_attachments_than_the_limit_are_refused() -> None:
    with pytest.raises(LimitExceededError, match="at most 3 attachments"):
        check_request(message(attachments=["a", "b", "c", "d"]), LIMITS)


def test_repeated_attachment_ids_are_sent_once() -> None:
    checked = check_request(message(attachments=["atc_1", "atc_2", "atc_1"]), LIMITS)

    assert json.loads(checked.body)["params"]["input"]["attachments"] == ["atc_1", "atc_2"]


def test_more_feedback_items_than_the_limit_are_refused() -> None:
    ids = [f"msg_{n}" for n in range(5)]
    with pytest.raises(LimitExceededError, match="at most 4 items"):
        check_request(body("items.feedback", thread_id="t", item_ids=ids, kind="positive"), LIMITS)


def test_repeated_feedback_ids_are_recorded_once() -> None:
    sent = body("items.feedback", thread_id="t", item_ids=["m1", "m1", "m2", "m1"], kind="positive")

    checked = check_request(sent, LIMITS)

    assert json.loads(checked.body)["params"]["item_ids"] == ["m1", "m2"]


def test_a_message_over_the_limit_is_refused() -> None:
    with pytest.raises(LimitExceededError, match="at most 1,000 characters"):
        check_request(message("x" * 1_001), LIMITS)


@pytest.mark.parametrize(
    "extra",
    [
        {"quoted_text": "q" * 1_001},
        {"content": [{"type": "input_tag", "id": "t", "text": "t", "data": {"d": "x" * 1_001}}]},
        {"content": [{"type": "input_text", "text": "x" * 600}] * 2},
    ],
    ids=["quoted text", "tag data", "many parts"],
)
def test_every_part_of_a_message_counts_towards_its_limit(extra: dict[str, Any]) -> None:
    with pytest.raises(LimitExceededError):
        check_request(message(**extra), LIMITS)


@pytest.mark.parametrize(
    ("request_type", "params"),
    [
        ("threads.add_client_tool_output", {"thread_id": "t", "result": "r" * 1_001}),
        ("threads.custom_action", {"thread_id": "t", "action": {"type": "a" * 1_001}}),
        (
            "threads.add_structured_input",
            {
                "thread_id": "t",
                "item_id": "i",
                "input": {"answers": {"q": {"values": ["v" * 1_001]}}},
            },
        ),
    ],
)
def test_other_stored_text_has_the_same_limit(request_type: str, params: dict[str, Any]) -> None:
    with pytest.raises(LimitExceededError):
        check_request(body(request_type, **params), LIMITS)


def test_a_title_over_the_limit_is_refused() -> None:
    with pytest.raises(LimitExceededError, match="at most 50 characters"):
        check_request(body("threads.update", thread_id="t", title="t" * 51), LIMITS)


def test_a_recording_over_the_limit_is_refused_before_decoding() -> None:
    audio = base64.b64encode(b"\0" * 3_001).decode()
    with pytest.raises(LimitExceededError, match="3,000 bytes"):
        check_request(body("input.transcribe", audio_base64=audio, mime_type="audio/webm"), LIMITS)


def test_a_recording_that_is_not_base64_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="base64"):
        check_request(body("input.transcribe", audio_base64="%%%", mime_type="audio/ogg"), LIMITS)


def test_a_recording_of_another_type_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="audio/webm"):
        check_request(body("input.transcribe", audio_base64="AAAA", mime_type="text/html"), LIMITS)


@pytest.mark.parametrize(
    "sent",
    [
        b'{"type":"threads.get_by_id","params":{"thread_id":"a\\ud800"}}',
        b'{"type":"threads.create","params":{"input":{"attachments":["\\udc00"]}}}',
        b"\xed\xa0\x80",
        b"not json",
        b"[]",
    ],
    ids=["lone high surrogate", "lone low surrogate", "surrogate bytes", "not json", "not object"],
)
def test_text_that_is_not_json_or_not_unicode_is_refused(sent: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        check_request(sent, LIMITS)


def test_a_surrogate_pair_is_fine() -> None:
    checked = check_request(message("smile \ud83d\ude00"), LIMITS)

    assert checked.type == "threads.create"


def test_a_body_with_more_values_than_a_message_could_hold_is_refused_unparsed() -> None:
    junk = b'{"type":"threads.list","params":{"junk":[' + b"1," * 20_000 + b"1]}}"
    with pytest.raises(LimitExceededError, match="values"):
        check_request(junk, LIMITS)


def test_a_negative_page_size_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="limit"):
        check_request(body("items.list", thread_id="t", limit=-5), LIMITS)


def test_limits_come_from_the_environment_with_defaults() -> None:
    limits = Settings.from_env({"MAX_ATTACHMENTS_PER_MESSAGE": "4"}).limits

    assert limits.max_attachments_per_message == 4
    assert limits.max_feedback_items == RequestLimits().max_feedback_items


def test_a_limit_below_one_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="MAX_FEEDBACK_ITEMS"):
        Settings.from_env({"MAX_FEEDBACK_ITEMS": "0"})
