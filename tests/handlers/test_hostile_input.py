"""Hostile, malformed and costly requests through the real HTTP app.

Each case states the status it gets. Every answer is a JSON error (or an SSE `error` event)
saying what is wrong without internals (no row keys, parameter names or tracebacks); nothing is
logged with a traceback; the table and the bucket are exactly as they were before.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

import boto3
import httpx
import jwt
import pytest

from devtools.tokens import mint_token
from handlers.main import build_app
from settings import RequestLimits, Settings
from store import DynamoDBStore, PayloadBucket, RequestContext, TableRecord
from store.attachments import S3AttachmentStore
from store.uploads import UploadBucket
from tests.conftest import BUCKET, TABLE
from tests.handlers.conftest import app_settings
from tests.support.fake_openai import FakeOpenAI
from tests.support.inputs import user_input
from tests.support.logs import tracebacks
from tests.support.uploads import upload

SECRET = "hostile-input-test-secret-0123456789"
LIMITS = RequestLimits(
    max_message_chars=20_000,
    max_title_chars=200,
    max_attachments_per_message=3,
    max_feedback_items=5,
    max_audio_bytes=10_000,
)
MAX_BODY = 1_000_000
# What no answer may contain: row keys, parameter names, stack traces, library internals.
INTERNALS = re.compile(
    r"U#|#T#|#QUOTA|\bpk\b|\bsk\b|Traceback|File \"|SSM|/chatkit-|botocore|pynamodb|"
    r"DynamoDB|Exception|codec",
    re.IGNORECASE,
)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_dev_secret": SECRET,
        "max_request_bytes": MAX_BODY,
        "upload_max_bytes": 5_000_000,
        "daily_turn_limit": 1_000,
        **asdict(LIMITS),
        "max_token_lifetime_seconds": 86_400,
        **overrides,
    }
    return app_settings(**values)


@dataclass
class World:
    """What alice has before the hostile request: a thread with a question and its answer,
    an uploaded file, and a file declared but never uploaded."""

    thread_id: str
    user_item_id: str
    answer_id: str
    uploaded_id: str
    pending_id: str


Body = Any | Callable[[World], Any]
Headers = dict[str, str] | Callable[[], dict[str, str]] | None


@dataclass(frozen=True)
class Case:
    name: str
    body: Body
    status: int
    headers: Headers = None  # None: alice's valid token
    quota_spent: bool = False  # sent to a server where alice's daily quota is spent


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def alice() -> dict[str, str]:
    return auth(mint_token(SECRET, "alice"))


def token(**claims: Any) -> Callable[[], dict[str, str]]:
    def headers() -> dict[str, str]:
        now = int(time.time())
        body = {"sub": "alice", "iat": now, "exp": now + 600, **claims}
        return auth(jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, "HS256"))

    return headers


def req(request_type: str, /, **params: Any) -> dict[str, Any]:
    return {"type": request_type, "params": params}


def nested(depth: int) -> str:
    return (
        '{"type":"threads.create","params":{"input":{"content":' + "[" * depth + "]" * depth + "}}}"
    )


def audio(size: int) -> str:
    return base64.b64encode(b"\x1a" * size).decode()


CASES: list[Case] = [
    # -- not a ChatKit request -----------------------------------------------------------
    Case("not json", "hello there", 400),
    Case("empty body", b"", 400),
    Case("invalid utf-8", b"\xff\xfe\xfd", 400),
    Case("json array", [], 400),
    Case("json number", 42, 400),
    Case("json string", '"threads.list"', 400),
    Case("type is a number", {"type": 5, "params": {}}, 400),
    Case("unknown request type", req("threads.hack"), 400),
    Case("request type of 10 KB", req("t" * 10_000), 400),
    Case("missing params", {"type": "threads.list"}, 400),
    Case("params is a string", {"type": "threads.list", "params": "x"}, 400),
    Case("deeply nested json", nested(100_000), 400),
    Case(
        "more values than a message could hold",
        '{"type":"threads.list","params":{"j":[' + "1," * 40_000 + "1]}}",
        400,
    ),
    Case("oversized body", "x" * (MAX_BODY + 1), 413),
    Case("4 MB message", req("threads.create", input=user_input("m" * 4_000_000)), 413),
    # -- text that is not Unicode (json.dumps writes lone surrogates as \\u escapes) ------------
    Case("lone surrogate in a thread id", req("threads.get_by_id", thread_id="a\ud800"), 400),
    Case("lone low surrogate in a request type", req("\udc00"), 400),
    Case(
        "lone surrogate in an attachment list",
        req("threads.create", input=user_input(attachments=["\ud800"])),
        400,
    ),
    Case("lone surrogate in message text", req("threads.create", input=user_input("x\udfff")), 400),
    Case(
        "lone surrogate in a title",
        lambda w: req("threads.update", thread_id=w.thread_id, title="\ud801"),
        400,
    ),
    Case(
        "lone surrogate in feedback ids",
        lambda w: req(
            "items.feedback", thread_id=w.thread_id, item_ids=["\ud800x"], kind="positive"
        ),
        400,
    ),
    Case(
        "surrogate as raw bytes",
        b'{"type":"threads.get_by_id","params":{"thread_id":"\xed\xa0\x80"}}',
        400,
    ),
    # -- pages and ids ---------------------------------------------------------------------
    Case("limit is a word", req("threads.list", limit="ten"), 400),
    Case("order is sideways", req("threads.list", order="sideways"), 400),
    Case("negative limit", req("threads.list", limit=-5), 400),
    Case(
        "negative item page size", lambda w: req("items.list", thread_id=w.thread_id, limit=-1), 400
    ),
    Case("cursor with separator", req("threads.list", after="thr#1"), 400),
    Case("unknown cursor", req("threads.list", after="thr_nope"), 404),
    Case("thread id is a number", req("threads.get_by_id", thread_id=42), 400),
    Case("thread id is null", req("threads.get_by_id", thread_id=None), 400),
    Case("thread id with separator", req("threads.get_by_id", thread_id="thr#x"), 400),
    Case("thread id that is a row key", req("threads.get_by_id", thread_id="U#alice"), 400),
    Case("empty thread id", req("threads.get_by_id", thread_id=""), 400),
    Case("very long thread id", req("threads.get_by_id", thread_id="t" * 300), 400),
    Case("path-like thread id", req("threads.get_by_id", thread_id="../../etc/passwd"), 404),
    Case("thread id with a NUL", req("threads.get_by_id", thread_id="thr_\x00"), 404),
    Case(
        "items of a missing cursor",
        lambda w: req("items.list", thread_id=w.thread_id, after="msg_nope"),
        404,
    ),
    Case("items with separator", req("items.list", thread_id="U#bob#T#thr_1"), 400),
    # -- feedback --------------------------------------------------------------------------
    Case(
        "feedback of unknown kind",
        lambda w: req(
            "items.feedback", thread_id=w.thread_id, item_ids=[w.answer_id], kind="awesome"
        ),
        400,
    ),
    Case(
        "feedback ids not a list",
        lambda w: req(
            "items.feedback", thread_id=w.thread_id, item_ids=w.answer_id, kind="positive"
        ),
        400,
    ),
    Case(
        "feedback id with separator",
        lambda w: req("items.feedback", thread_id=w.thread_id, item_ids=["a#b"], kind="positive"),
        400,
    ),
    Case(
        "feedback on missing item",
        lambda w: req("items.feedback", thread_id=w.thread_id, item_ids=["msg_x"], kind="positive"),
        404,
    ),
    Case(
        "feedback naming 3,000 items",
        lambda w: req(
            "items.feedback",
            thread_id=w.thread_id,
            item_ids=[f"msg_{n}" for n in range(3_000)],
            kind="positive",
        ),
        400,
    ),
    Case(
        "feedback naming one item 3,000 times",
        lambda w: req(
            "items.feedback", thread_id=w.thread_id, item_ids=[w.answer_id] * 3_000, kind="positive"
        ),
        400,
    ),
    Case(
        "feedback naming one more item than allowed",
        lambda w: req(
            "items.feedback", thread_id=w.thread_id, item_ids=[w.answer_id] * 6, kind="negative"
        ),
        400,
    ),
    Case(
        "feedback with a missing item among real ones",
        lambda w: req(
            "items.feedback",
            thread_id=w.thread_id,
            item_ids=["msg_x", w.answer_id],
            kind="positive",
        ),
        404,
    ),
    # -- titles ----------------------------------------------------------------------------
    Case(
        "title is not text",
        lambda w: req("threads.update", thread_id=w.thread_id, title=["x"]),
        400,
    ),
    Case("title missing", lambda w: req("threads.update", thread_id=w.thread_id), 400),
    Case(
        "title over the limit",
        lambda w: req("threads.update", thread_id=w.thread_id, title="t" * 201),
        400,
    ),
    Case(
        "title of 600 KB",
        lambda w: req("threads.update", thread_id=w.thread_id, title="t" * 600_000),
        400,
    ),
    Case("rename missing thread", req("threads.update", thread_id="thr_nope", title="x"), 404),
    Case("delete with separator", req("threads.delete", thread_id="a#b"), 400),
    Case("delete missing thread", req("threads.delete", thread_id="thr_nope"), 404),
    # -- messages --------------------------------------------------------------------------
    Case(
        "content is not a list",
        req("threads.create", input={"content": "x", "attachments": [], "inference_options": {}}),
        400,
    ),
    Case(
        "unknown content part",
        req("threads.create", input={**user_input(), "content": [{"type": "video"}]}),
        400,
    ),
    Case(
        "message over the size limit", req("threads.create", input=user_input("w " * 10_001)), 400
    ),
    Case(
        "quoted text over the size limit",
        req("threads.create", input=user_input(quoted_text="q" * 20_001)),
        400,
    ),
    Case(
        "tag data over the size limit",
        req(
            "threads.create",
            input={
                **user_input(),
                "content": [
                    {"type": "input_tag", "id": "t", "text": "t", "data": {"d": "x" * 20_001}}
                ],
            },
        ),
        400,
    ),
    Case(
        "20,000 empty content parts",
        req(
            "threads.create",
            input={**user_input(), "content": [{"type": "input_text", "text": ""}] * 20_000},
        ),
        400,
    ),
    Case(
        "inference options over the size limit",
        req("threads.create", input={**user_input(), "inference_options": {"model": "m" * 20_001}}),
        400,
    ),
    Case(
        "message to missing thread",
        req("threads.add_user_message", thread_id="thr_nope", input=user_input()),
        404,
    ),
    Case(
        "message with separator",
        req("threads.add_user_message", thread_id="x#y", input=user_input()),
        400,
    ),
    Case(
        "message over the size limit to a thread",
        lambda w: req(
            "threads.add_user_message", thread_id=w.thread_id, input=user_input("x" * 20_001)
        ),
        400,
    ),
    # -- attachments in messages ------------------------------------------------------------
    Case(
        "attachment id with separator",
        req("threads.create", input=user_input(attachments=["atc#1"])),
        400,
    ),
    Case(
        "attachment that does not exist",
        req("threads.create", input=user_input(attachments=["atc_nope"])),
        404,
    ),
    Case(
        "attachment id that is not text",
        req("threads.create", input=user_input(attachments=[{"id": 1}])),
        400,
    ),
    Case(
        "1,000 attachments",
        lambda w: req("threads.create", input=user_input(attachments=[w.uploaded_id] * 1_000)),
        400,
    ),
    Case(
        "one file listed 40 times",
        lambda w: req("threads.create", input=user_input(attachments=[w.uploaded_id] * 40)),
        400,
    ),
    Case(
        "one attachment more than allowed",
        lambda w: req(
            "threads.add_user_message",
            thread_id=w.thread_id,
            input=user_input(attachments=[w.uploaded_id] * 4),
        ),
        400,
    ),
    Case(
        "a file never uploaded, new thread",
        lambda w: req("threads.create", input=user_input(attachments=[w.pending_id])),
        400,
    ),
    Case(
        "a file never uploaded, next message",
        lambda w: req(
            "threads.add_user_message",
            thread_id=w.thread_id,
            input=user_input(attachments=[w.pending_id]),
        ),
        400,
    ),
    Case(
        "an uploaded and a missing file",
        lambda w: req("threads.create", input=user_input(attachments=[w.uploaded_id, "atc_gone"])),
        404,
    ),
    # -- the other streaming requests -------------------------------------------------------
    Case(
        "retry after missing item",
        req("threads.retry_after_item", thread_id="thr_nope", item_id="msg_1"),
        404,
    ),
    Case(
        "retry after an answer",
        lambda w: req("threads.retry_after_item", thread_id=w.thread_id, item_id=w.answer_id),
        400,
    ),
    Case(
        "action on missing thread",
        req(
            "threads.custom_action",
            thread_id="thr_nope",
            item_id="w",
            action={"type": "tasks.delete"},
        ),
        404,
    ),
    Case(
        "action on missing item",
        lambda w: req(
            "threads.custom_action",
            thread_id=w.thread_id,
            item_id="w_nope",
            action={"type": "tasks.delete"},
        ),
        404,
    ),
    Case(
        "action without type",
        lambda w: req("threads.custom_action", thread_id=w.thread_id, action={}),
        200,
    ),
    Case(
        "action from a message",
        lambda w: req(
            "threads.custom_action",
            thread_id=w.thread_id,
            item_id=w.user_item_id,
            action={"type": "tasks.delete"},
        ),
        200,
    ),
    Case(
        "action of unknown type",
        lambda w: req("threads.custom_action", thread_id=w.thread_id, action={"type": "x.y"}),
        200,
    ),
    Case(
        "task action without its widget",
        lambda w: req(
            "threads.custom_action",
            thread_id=w.thread_id,
            action={"type": "tasks.delete", "payload": {"number": 10**12}},
        ),
        200,
    ),
    Case(
        "action payload over the size limit",
        lambda w: req(
            "threads.custom_action",
            thread_id=w.thread_id,
            action={"type": "tasks.delete", "payload": {"x": "p" * 20_001}},
        ),
        400,
    ),
    Case(
        "structured input for missing item",
        lambda w: req(
            "threads.add_structured_input", thread_id=w.thread_id, item_id="si", input={}
        ),
        404,
    ),
    Case(
        "structured input for a message",
        lambda w: req(
            "threads.add_structured_input", thread_id=w.thread_id, item_id=w.user_item_id, input={}
        ),
        400,
    ),
    Case(
        "structured answers over the size limit",
        lambda w: req(
            "threads.add_structured_input",
            thread_id=w.thread_id,
            item_id=w.user_item_id,
            input={"answers": {"q": {"values": ["v" * 20_001]}}},
        ),
        400,
    ),
    Case(
        "tool output to missing thread",
        req("threads.add_client_tool_output", thread_id="thr_nope", result=1),
        404,
    ),
    Case(
        "tool output with no pending call",
        lambda w: req("threads.add_client_tool_output", thread_id=w.thread_id, result={"ok": True}),
        400,
    ),
    Case(
        "tool output over the size limit",
        lambda w: req("threads.add_client_tool_output", thread_id=w.thread_id, result="r" * 20_001),
        400,
    ),
    Case(
        "sync action of unknown type",
        req("threads.sync_custom_action", thread_id="thr_nope", action={"type": "x"}),
        404,
    ),
    Case(
        "sync action from a message",
        lambda w: req(
            "threads.sync_custom_action",
            thread_id=w.thread_id,
            item_id=w.user_item_id,
            action={"type": "tasks.delete"},
        ),
        400,
    ),
    Case(
        "sync task action without its widget",
        lambda w: req(
            "threads.sync_custom_action",
            thread_id=w.thread_id,
            action={"type": "tasks.delete", "payload": {"number": 1}},
        ),
        400,
    ),
    # -- uploads ---------------------------------------------------------------------------
    Case(
        "huge declared upload",
        req("attachments.create", name="big.pdf", size=10**12, mime_type="application/pdf"),
        400,
    ),
    Case(
        "negative upload size",
        req("attachments.create", name="a.pdf", size=-1, mime_type="application/pdf"),
        400,
    ),
    Case(
        "upload size is a word",
        req("attachments.create", name="a.pdf", size="big", mime_type="application/pdf"),
        400,
    ),
    Case(
        "disallowed upload type",
        req("attachments.create", name="run.sh", size=10, mime_type="application/x-sh"),
        400,
    ),
    Case(
        "html upload", req("attachments.create", name="x.html", size=10, mime_type="text/html"), 400
    ),
    Case(
        "path-like file name",
        req("attachments.create", name="../../etc/passwd", size=10, mime_type="text/plain"),
        400,
    ),
    Case(
        "windows path file name",
        req("attachments.create", name="..\\..\\boot.ini", size=10, mime_type="text/plain"),
        400,
    ),
    Case(
        "hidden file name",
        req("attachments.create", name=".env", size=10, mime_type="text/plain"),
        400,
    ),
    Case(
        "file name with control characters",
        req("attachments.create", name="a\x1b[2J.txt", size=10, mime_type="text/plain"),
        400,
    ),
    Case(
        "file name of 100 KB",
        req("attachments.create", name="n" * 100_000 + ".txt", size=10, mime_type="text/plain"),
        400,
    ),
    Case("delete attachment with separator", req("attachments.delete", attachment_id="atc#1"), 400),
    Case("delete missing attachment", req("attachments.delete", attachment_id="atc_nope"), 404),
    # -- dictation -------------------------------------------------------------------------
    Case(
        "audio not base64",
        req("input.transcribe", audio_base64="%%%not base64%%%", mime_type="audio/webm"),
        400,
    ),
    Case("audio without type", req("input.transcribe", audio_base64="AAAA"), 400),
    Case(
        "audio of another type",
        req("input.transcribe", audio_base64="AAAA", mime_type="text/html"),
        400,
    ),
    Case(
        "audio over the size limit",
        req("input.transcribe", audio_base64=audio(10_001), mime_type="audio/ogg"),
        400,
    ),
    Case(
        "dictation without a provider",
        req("input.transcribe", audio_base64="AAAA", mime_type="audio/webm"),
        400,
    ),
    # -- the daily quota -------------------------------------------------------------------
    Case(
        "dictation over the quota",
        req("input.transcribe", audio_base64=audio(100), mime_type="audio/webm"),
        429,
        quota_spent=True,
    ),
    Case(
        "new thread over the quota",
        req("threads.create", input=user_input()),
        429,
        quota_spent=True,
    ),
    Case(
        "message over the quota",
        lambda w: req("threads.add_user_message", thread_id=w.thread_id, input=user_input()),
        429,
        quota_spent=True,
    ),
    Case(
        "message with a file over the quota",
        lambda w: req("threads.create", input=user_input(attachments=[w.uploaded_id])),
        429,
        quota_spent=True,
    ),
    Case(
        "retry over the quota",
        lambda w: req("threads.retry_after_item", thread_id=w.thread_id, item_id=w.user_item_id),
        429,
        quota_spent=True,
    ),
    # -- tokens ----------------------------------------------------------------------------
    Case("no token", req("threads.list"), 401, headers={}),
    Case(
        "forged token",
        req("threads.list"),
        401,
        headers=lambda: auth(
            jwt.encode(
                {"sub": "alice", "exp": int(time.time()) + 60},
                "wrong-secret-wrong-secret-wrong!!",
                "HS256",
            )
        ),
    ),
    Case("expired token", req("threads.list"), 401, headers=token(exp=int(time.time()) - 3_600)),
    Case(
        "unsigned token",
        req("threads.list"),
        401,
        headers={
            "authorization": "Bearer eyJhbGciOiJub25lIn0."
            "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0."
        },
    ),
    Case(
        "basic auth", req("threads.list"), 401, headers={"authorization": "Basic YWxpY2U6c2VjcmV0"}
    ),
    Case(
        "expiry as a string",
        req("threads.list"),
        401,
        headers=lambda: token(exp=str(int(time.time()) + 600))(),
    ),
    Case("not-before as a string", req("threads.list"), 401, headers=token(nbf="0")),
    Case("issued-at as a string", req("threads.list"), 401, headers=token(iat="0")),
    Case("expiry as true", req("threads.list"), 401, headers=token(exp=True)),
    Case(
        "a ten-year token",
        req("threads.list"),
        401,
        headers=lambda: token(exp=int(time.time()) + 10 * 365 * 86_400)(),
    ),
    Case("empty subject", req("threads.list"), 401, headers=token(sub="")),
    Case("subject that is a row key", req("threads.list"), 401, headers=token(sub="alice#QUOTA")),
    Case(
        "HS512 token",
        req("threads.list"),
        401,
        headers=lambda: auth(
            jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, "HS512")
        ),
    ),
    Case(
        "a request id that is markup",
        lambda w: req("threads.get_by_id", thread_id="thr_nope"),
        404,
        headers=lambda: {**alice(), "x-request-id": "<img src=x onerror=alert(1)>"},
    ),
]


def test_the_suite_has_at_least_a_hundred_cases() -> None:
    assert len(CASES) >= 100
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.fixture
async def world(
    table: type[TableRecord], s3: Any
) -> AsyncIterator[tuple[World, httpx.AsyncClient]]:
    async with _client(settings()) as client:
        created = await client.post(
            "/chatkit", json=req("threads.create", input=user_input("hello")), headers=alice()
        )
        events = [
            json.loads(line[6:]) for line in created.text.splitlines() if line.startswith("data: ")
        ]
        items = [event["item"] for event in events if event["type"] == "thread.item.done"]
        uploads = UploadBucket(s3, BUCKET)
        store = DynamoDBStore(table, PayloadBucket(s3, BUCKET), uploads)
        attachments = S3AttachmentStore(
            store, uploads, max_bytes=5_000_000, allowed_types=("text/plain",)
        )
        context = RequestContext(user_id="alice")
        uploaded = await upload(attachments, store, s3, context)
        pending = await upload(attachments, store, s3, context, content=None, name="never.txt")
        yield (
            World(
                events[0]["thread"]["id"], items[0]["id"], items[-1]["id"], uploaded.id, pending.id
            ),
            client,
        )


def _client(app_settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(app_settings)), base_url="http://test"
    )


def table_rows() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return sorted(
        client.scan(TableName=TABLE)["Items"], key=lambda row: (row["pk"]["S"], row["sk"]["S"])
    )


def bucket_objects(s3: Any) -> list[tuple[str, Any]]:
    keys = [entry["Key"] for entry in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return [(key, s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]) for key in sorted(keys)]


# The HS512 case signs with a key too short for it, on purpose: PyJWT warns when minting it.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_request_is_refused_clearly_and_changes_nothing(
    case: Case,
    world: tuple[World, httpx.AsyncClient],
    s3: Any,
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids, client = world
    before = (table_rows(), bucket_objects(s3))
    body = case.body(ids) if callable(case.body) else case.body
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = case.headers() if callable(case.headers) else case.headers
    caplog.clear()
    caplog.set_level(logging.INFO)

    if case.quota_spent:
        spent = settings(
            daily_turn_limit=1,  # alice took her one turn in the world's first thread
            provider="openai-compatible",
            base_url=fake_openai.base_url,
            api_key="sk-test",
            transcription_model="whisper-1",
        )
        async with _client(spent) as spent_client:
            response = await spent_client.post(
                "/chatkit", content=content, headers=alice() if headers is None else headers
            )
    else:
        response = await client.post(
            "/chatkit", content=content, headers=alice() if headers is None else headers
        )

    assert response.status_code == case.status, response.text[:300]
    assert not INTERNALS.search(response.text), response.text[:300]
    assert error_of(response)["message"]
    assert tracebacks(caplog) == []
    assert (table_rows(), bucket_objects(s3)) == before
    assert fake_openai.requests == [] and fake_openai.transcripts == []


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON error, or the stream's `error` event (a stream with nothing else)."""
    if response.headers["content-type"].startswith("application/json"):
        error: dict[str, Any] = response.json()["error"]
        assert error["code"]
        return error
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    errors = [event for event in events if event["type"] == "error"]
    assert errors and all(event["type"] in ("stream_options", "error") for event in events), events
    return {"message": errors[0].get("message") or errors[0]["code"]}
