"""What a turn gives the model, and what a request is refused before anything is written:
files read once and within a budget, files that are gone, tags, uploads that never happened,
and the daily quota (dictation included)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from chatkit.types import (
    Attachment,
    InferenceOptions,
    UserMessageItem,
    UserMessageTextContent,
)

from agent.converter import AssistantConverter
from agent.providers import Models
from agent.server import AssistantServer
from errors import InvalidRequestError, LimitExceededError, QuotaExceededError
from settings import RequestLimits
from store import DynamoDBStore, PayloadBucket, RequestContext, TableRecord
from store.attachments import S3AttachmentStore
from store.quota import TurnQuota
from store.tasks import TaskStore
from store.uploads import UploadBucket
from tests.agent.conftest import (
    add_message,
    assistant_text,
    create_thread,
    of_type,
    offline_models,
    stream,
)
from tests.conftest import BUCKET
from tests.support.uploads import objects, upload


@pytest.fixture
def uploads(s3: Any) -> UploadBucket:
    return UploadBucket(s3, BUCKET)


@pytest.fixture
def store(table: type[TableRecord], s3: Any, uploads: UploadBucket) -> DynamoDBStore:
    return DynamoDBStore(table, PayloadBucket(s3, BUCKET), uploads)


@pytest.fixture
def attachments(store: DynamoDBStore, uploads: UploadBucket) -> S3AttachmentStore:
    return S3AttachmentStore(store, uploads, max_bytes=1_000_000, allowed_types=("text/plain",))


@pytest.fixture
def server(
    store: DynamoDBStore, tasks: TaskStore, attachments: S3AttachmentStore
) -> AssistantServer:
    return AssistantServer(
        store,
        tasks,
        offline_models(),
        attachment_store=attachments,
        attachment_reader=attachments,
    )


@pytest.fixture
async def notes(
    attachments: S3AttachmentStore, store: DynamoDBStore, s3: Any, alice: RequestContext
) -> Attachment:
    """An uploaded file of alice's, `notes.txt`."""
    return await upload(attachments, store, s3, alice)


def with_files(text: str, *attachment_ids: str) -> dict[str, Any]:
    request = create_thread(text)
    request["params"]["input"]["attachments"] = list(attachment_ids)
    return request


def count_s3_reads(s3: Any) -> list[str]:
    reads: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: reads.append("get"))
    return reads


async def test_a_file_named_twice_in_a_message_is_read_once(
    server: AssistantServer, notes: Attachment, s3: Any, alice: RequestContext
) -> None:
    reads = count_s3_reads(s3)

    events = await stream(server, with_files("read this", notes.id, notes.id, notes.id), alice)

    assert "with 1 attachment: notes.txt" in assistant_text(events)
    assert len(reads) == 1


async def test_a_file_in_two_messages_is_read_once_per_turn(
    server: AssistantServer, notes: Attachment, s3: Any, alice: RequestContext
) -> None:
    first = await stream(server, with_files("read this", notes.id), alice)
    thread_id = first[0]["thread"]["id"]
    again = add_message(thread_id, "and again")
    again["params"]["input"]["attachments"] = [notes.id]
    reads = count_s3_reads(s3)

    await stream(server, again, alice)

    assert len(reads) == 1


async def test_a_file_that_was_never_uploaded_is_refused_before_anything_is_written(
    server: AssistantServer,
    attachments: S3AttachmentStore,
    store: DynamoDBStore,
    s3: Any,
    alice: RequestContext,
) -> None:
    missing = await upload(attachments, store, s3, alice, content=None)

    with pytest.raises(InvalidRequestError, match="never uploaded"):
        await server.process(json.dumps(with_files("read this", missing.id)), alice)

    assert (await store.load_threads(10, None, "asc", alice)).data == []
    assert (await store.load_attachment(missing.id, alice)).thread_id is None


async def test_a_deleted_file_leaves_a_note_and_the_thread_answerable(
    server: AssistantServer, notes: Attachment, s3: Any, alice: RequestContext
) -> None:
    first = await stream(server, with_files("read this", notes.id), alice)
    thread_id = first[0]["thread"]["id"]
    await server.process(
        json.dumps({"type": "attachments.delete", "params": {"attachment_id": notes.id}}), alice
    )
    assert objects(s3, BUCKET) == []

    later = await stream(server, add_message(thread_id, "hello again"), alice)

    assert of_type(later, "error") == []
    assert assistant_text(later)


async def test_a_tag_becomes_text_the_model_reads_on_every_turn(
    server: AssistantServer, alice: RequestContext
) -> None:
    request = create_thread("ping")
    request["params"]["input"]["content"].append(
        {"type": "input_tag", "id": "p1", "text": "Project X", "data": {"id": 7}}
    )
    first = await stream(server, request, alice)
    thread_id = first[0]["thread"]["id"]

    later = await stream(server, add_message(thread_id, "and now?"), alice)

    assert of_type(first, "error") == [] and of_type(later, "error") == []
    assert assistant_text(later)


async def test_files_over_the_turn_budget_are_left_out_newest_first(
    attachments: S3AttachmentStore, store: DynamoDBStore, s3: Any, alice: RequestContext
) -> None:
    older = await upload(attachments, store, s3, alice, name="older.txt")
    newer = await upload(attachments, store, s3, alice, name="newer.txt")
    items = [message("msg_1", older), message("msg_2", newer)]
    converter = AssistantConverter(attachments, alice, max_bytes_per_turn=15)  # one 11-byte file

    agent_input = await converter.to_agent_input(items)

    parts = [part for item in agent_input for part in item["content"]]  # type: ignore[index]
    note = "[The file older.txt is left out: this turn's files are over the size limit.]"
    assert {"type": "input_text", "text": note} in parts
    assert [part["filename"] for part in parts if part["type"] == "input_file"] == ["newer.txt"]


def message(item_id: str, attachment: Any) -> UserMessageItem:
    return UserMessageItem(
        id=item_id,
        thread_id="thr_1",
        created_at=datetime.now(UTC),
        content=[UserMessageTextContent(text="see attached")],
        attachments=[attachment],
        inference_options=InferenceOptions(),
    )


async def test_dictation_counts_against_the_daily_quota(
    store: DynamoDBStore, tasks: TaskStore, table: type[TableRecord], alice: RequestContext
) -> None:
    heard: list[bytes] = []

    async def transcribe(audio: Any) -> str:
        heard.append(audio.data)
        return "buy milk"

    models = Models("openai", offline_models().chat, None, transcribe)
    server = AssistantServer(store, tasks, models, quota=TurnQuota(table, limit=2))
    audio = base64.b64encode(b"OggS").decode()
    dictation = {
        "type": "input.transcribe",
        "params": {"audio_base64": audio, "mime_type": "audio/ogg"},
    }
    await stream(server, create_thread("hello"), alice)
    await server.process(json.dumps(dictation), alice)

    with pytest.raises(QuotaExceededError):
        await server.process(json.dumps(dictation), alice)
    with pytest.raises(QuotaExceededError):
        await server.process(json.dumps(create_thread("more")), alice)
    assert len(heard) == 1


async def test_a_request_over_a_limit_writes_nothing(
    store: DynamoDBStore, tasks: TaskStore, alice: RequestContext
) -> None:
    server = AssistantServer(
        store, tasks, offline_models(), request_limits=RequestLimits(max_message_chars=10)
    )

    with pytest.raises(LimitExceededError):
        await server.process(json.dumps(create_thread("far more than ten characters")), alice)

    assert (await store.load_threads(10, None, "asc", alice)).data == []
