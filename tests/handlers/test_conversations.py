"""The REST API on conversations, through the real app on moto: list, read, rename, delete and
export, each with its paging, its errors and its OpenAPI description."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from chatkit.types import HiddenContextItem, ThreadMetadata

from devtools.local import with_local_cors
from devtools.runtime_emulator import function_url_event
from devtools.tokens import mint_token
from handlers.lambda_events import LambdaContext, stream_http_response
from handlers.main import build_app
from handlers.paging import encode_cursor
from store import DynamoDBStore, RequestContext, TableRecord
from tests.handlers.conftest import app_client, app_settings
from tests.store.factories import assistant_message, user_message
from tests.support.inputs import user_input

SECRET = "conversations-test-secret-0123456789abcdef"
ALICE = {"authorization": f"Bearer {mint_token(SECRET, 'alice')}"}
API = "/api/conversations"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ALICE_CONTEXT = RequestContext(user_id="alice")


@pytest.fixture
async def client(table: type[TableRecord], s3: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app_settings(auth_dev_secret=SECRET)) as client:
        yield client


async def seed_threads(store: DynamoDBStore, count: int) -> list[str]:
    """`count` threads of alice's, oldest first, one minute apart."""
    ids = [f"thr_{index}" for index in range(count)]
    for index, thread_id in enumerate(ids):
        created = T0 + timedelta(minutes=index)
        thread = ThreadMetadata(id=thread_id, title=f"Thread {index}", created_at=created)
        await store.save_thread(thread, ALICE_CONTEXT)
    return ids


async def seed_items(store: DynamoDBStore, thread_id: str, count: int) -> list[str]:
    """`count` alternating user / assistant messages, oldest first."""
    ids = [f"msg_{index:03d}" for index in range(count)]
    for index, item_id in enumerate(ids):
        created = T0 + timedelta(seconds=index)
        make = user_message if index % 2 == 0 else assistant_message
        item = make(item_id, thread_id, created, f"message {index}")
        await store.add_thread_item(thread_id, item, ALICE_CONTEXT)
    return ids


async def all_pages(client: httpx.AsyncClient, url: str, key: str | None = None) -> list[str]:
    """The ids of every page, following `next_cursor` to the end."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get(url, params=params, headers=ALICE)
        assert response.status_code == 200, response.text
        page = response.json()[key] if key else response.json()
        ids += [entry["id"] for entry in page["data"]]
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            return ids
        cursor = page["next_cursor"]


# -- list ---------------------------------------------------------------------------------


async def test_list_is_newest_first_in_pages(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    ids = await seed_threads(store, 5)

    assert await all_pages(client, API) == list(reversed(ids))


async def test_list_oldest_first_on_request(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    ids = await seed_threads(store, 3)

    response = await client.get(API, params={"order": "asc"}, headers=ALICE)

    assert [entry["id"] for entry in response.json()["data"]] == ids


async def test_list_entry_is_the_conversation_without_metadata(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    thread = ThreadMetadata(id="thr_meta", title="Plans", created_at=T0, metadata={"k": "v"})
    await store.save_thread(thread, ALICE_CONTEXT)

    body = (await client.get(API, headers=ALICE)).json()

    assert body == {
        "data": [
            {
                "id": "thr_meta",
                "title": "Plans",
                "created_at": "2026-11-01T12:00:00Z",
                "status": {"type": "active"},
            }
        ],
        "has_more": False,
        "next_cursor": None,
    }


async def test_new_user_has_an_empty_list(client: httpx.AsyncClient) -> None:
    body = (await client.get(API, headers=ALICE)).json()

    assert body == {"data": [], "has_more": False, "next_cursor": None}


# -- read ---------------------------------------------------------------------------------


async def test_read_pages_through_the_items_oldest_first(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)
    item_ids = await seed_items(store, thread_id, 5)

    assert await all_pages(client, f"{API}/{thread_id}", key="items") == item_ids


async def test_read_newest_first_on_request(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)
    item_ids = await seed_items(store, thread_id, 3)

    response = await client.get(f"{API}/{thread_id}", params={"order": "desc"}, headers=ALICE)

    body = response.json()
    assert body["id"] == thread_id and body["title"] == "Thread 0"
    assert [item["id"] for item in body["items"]["data"]] == list(reversed(item_ids))


async def test_read_leaves_hidden_context_out(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)
    await seed_items(store, thread_id, 2)
    hidden = HiddenContextItem(
        id="hc_1", thread_id=thread_id, created_at=T0 + timedelta(seconds=9), content="secret"
    )
    await store.add_thread_item(thread_id, hidden, ALICE_CONTEXT)

    response = await client.get(f"{API}/{thread_id}", headers=ALICE)

    assert [item["id"] for item in response.json()["items"]["data"]] == ["msg_000", "msg_001"]
    assert "secret" not in response.text


async def test_read_serves_the_items_the_chatkit_endpoint_serves(
    client: httpx.AsyncClient,
) -> None:
    body = {"type": "threads.create", "params": {"input": user_input("add a task to buy milk")}}
    stream = await client.post("/chatkit", content=json.dumps(body), headers=ALICE)
    thread_id = json.loads(stream.text.splitlines()[0][6:])["thread"]["id"]
    listed = await client.post(
        "/chatkit",
        content=json.dumps({"type": "items.list", "params": {"thread_id": thread_id}}),
        headers=ALICE,
    )

    response = await client.get(f"{API}/{thread_id}", headers=ALICE)

    chatkit_items = sorted(listed.json()["data"], key=lambda item: item["created_at"])
    assert response.json()["items"]["data"] == chatkit_items
    assert response.json()["title"] is not None  # the first answer named it


# -- rename -------------------------------------------------------------------------------


async def test_rename_changes_the_title_everywhere(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)

    response = await client.patch(
        f"{API}/{thread_id}", json={"title": "  Groceries "}, headers=ALICE
    )

    assert response.status_code == 200 and response.json()["title"] == "Groceries"
    assert (await store.load_thread(thread_id, ALICE_CONTEXT)).title == "Groceries"
    listed = (await client.get(API, headers=ALICE)).json()["data"]
    assert listed[0]["title"] == "Groceries"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"title": "   "}, "invalid_request"),
        ({"title": ""}, "invalid_request"),
        ({}, "invalid_request"),
        ({"title": 5}, "invalid_request"),
        ({"title": "x" * 201}, "limit_exceeded"),
    ],
)
async def test_rename_refuses_a_bad_title(
    client: httpx.AsyncClient, store: DynamoDBStore, body: dict[str, Any], code: str
) -> None:
    [thread_id] = await seed_threads(store, 1)

    response = await client.patch(f"{API}/{thread_id}", json=body, headers=ALICE)

    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert (await store.load_thread(thread_id, ALICE_CONTEXT)).title == "Thread 0"


async def test_renaming_an_unknown_conversation_creates_nothing(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    response = await client.patch(f"{API}/thr_nope", json={"title": "x"}, headers=ALICE)

    assert response.status_code == 404
    assert (await client.get(API, headers=ALICE)).json()["data"] == []


# -- delete -------------------------------------------------------------------------------


async def test_delete_removes_the_conversation_and_its_items(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)
    await seed_items(store, thread_id, 3)

    response = await client.delete(f"{API}/{thread_id}", headers=ALICE)

    assert response.status_code == 204 and response.content == b""
    assert (await client.get(f"{API}/{thread_id}", headers=ALICE)).status_code == 404
    items = await store.load_thread_items(thread_id, None, 10, "asc", ALICE_CONTEXT)
    assert items.data == []


async def test_deleting_again_answers_204(client: httpx.AsyncClient, store: DynamoDBStore) -> None:
    [thread_id] = await seed_threads(store, 1)
    await client.delete(f"{API}/{thread_id}", headers=ALICE)

    response = await client.delete(f"{API}/{thread_id}", headers=ALICE)

    assert response.status_code == 204


async def test_deleting_an_unknown_conversation_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.delete(f"{API}/thr_nope", headers=ALICE)

    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


# -- export -------------------------------------------------------------------------------


async def test_json_export_is_a_download_of_every_item(
    client: httpx.AsyncClient, store: DynamoDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("handlers.conversations.EXPORT_PAGE_SIZE", 2)  # several pages
    [thread_id] = await seed_threads(store, 1)
    item_ids = await seed_items(store, thread_id, 5)

    response = await client.get(f"{API}/{thread_id}/export", headers=ALICE)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="conversation-{thread_id}.json"'
    document = response.json()
    assert document["conversation"]["id"] == thread_id
    assert [item["id"] for item in document["items"]] == item_ids


async def test_markdown_export_is_a_transcript(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)
    await seed_items(store, thread_id, 2)

    response = await client.get(
        f"{API}/{thread_id}/export", params={"format": "markdown"}, headers=ALICE
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"].endswith(f'conversation-{thread_id}.md"')
    assert response.text.startswith("# Thread 0\n")
    assert response.text.index("message 0") < response.text.index("message 1")


async def test_exporting_an_unknown_conversation_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/thr_nope/export", headers=ALICE)

    assert response.status_code == 404 and "content-disposition" not in response.headers


# -- bad requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("", {"limit": 0}),
        ("", {"limit": 101}),
        ("", {"limit": "ten"}),
        ("", {"order": "sideways"}),
        ("", {"cursor": "not a cursor!"}),
        ("/thr_0", {"limit": -1}),
        ("/thr_0", {"cursor": "%%%"}),
        ("/thr_0/export", {"format": "pdf"}),
        ("/" + "x" * 256, {}),
        ("/thr%230", {}),  # a key separator in the id
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient, store: DynamoDBStore, path: str, params: dict[str, Any]
) -> None:
    await seed_threads(store, 1)

    response = await client.get(API + path, params=params, headers=ALICE)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_a_cursor_whose_conversation_was_deleted_is_a_400(
    client: httpx.AsyncClient, store: DynamoDBStore
) -> None:
    ids = await seed_threads(store, 3)
    await client.delete(f"{API}/{ids[1]}", headers=ALICE)

    response = await client.get(API, params={"cursor": encode_cursor(ids[1])}, headers=ALICE)

    assert response.status_code == 400 and "cursor" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", API),
        ("GET", f"{API}/thr_0"),
        ("PATCH", f"{API}/thr_0"),
        ("DELETE", f"{API}/thr_0"),
        ("GET", f"{API}/thr_0/export"),
    ],
)
async def test_every_route_needs_a_token(
    client: httpx.AsyncClient, store: DynamoDBStore, method: str, path: str
) -> None:
    await seed_threads(store, 1)

    response = await client.request(method, path, json={"title": "x"})

    assert response.status_code == 401 and "www-authenticate" in response.headers
    assert (await store.load_thread("thr_0", ALICE_CONTEXT)).title == "Thread 0"


# -- description and browsers ---------------------------------------------------------------


def test_the_openapi_schema_describes_every_route(table: type[TableRecord]) -> None:
    app = build_app(app_settings(auth_dev_secret=SECRET), api_docs=True)

    paths = app.openapi()["paths"]

    assert set(paths[API]) == {"get"}
    assert set(paths[f"{API}/{{conversation_id}}"]) == {"get", "patch", "delete"}
    assert set(paths[f"{API}/{{conversation_id}}/export"]) == {"get"}
    listing = paths[API]["get"]
    assert {parameter["name"] for parameter in listing["parameters"]} == {
        "limit",
        "cursor",
        "order",
    }
    assert "404" in paths[f"{API}/{{conversation_id}}"]["get"]["responses"]


async def test_a_browser_on_localhost_may_rename_delete_and_read_the_file_name(
    table: type[TableRecord], s3: Any, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)
    app = with_local_cors(build_app(app_settings(auth_dev_secret=SECRET)))
    origin = {"origin": "http://localhost:5173"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as browser:
        for method in ("PATCH", "DELETE"):
            preflight = await browser.options(
                f"{API}/{thread_id}",
                headers={**origin, "access-control-request-method": method},
            )
            assert preflight.status_code == 200
            assert method in preflight.headers["access-control-allow-methods"]
        export = await browser.get(f"{API}/{thread_id}/export", headers={**origin, **ALICE})

    assert "content-disposition" in export.headers["access-control-expose-headers"].lower()


async def test_the_api_answers_function_url_events(
    table: type[TableRecord], s3: Any, store: DynamoDBStore
) -> None:
    [thread_id] = await seed_threads(store, 1)
    app = build_app(app_settings(auth_dev_secret=SECRET))

    async def invoke(method: str, path: str, **options: Any) -> tuple[dict[str, Any], bytes]:
        event = function_url_event(method, path, headers=ALICE, **options)
        chunks = [chunk async for chunk in stream_http_response(app, event, LambdaContext("r"))]
        head, _, body = b"".join(chunks).partition(b"\0" * 8)
        return json.loads(head), body

    listed, body = await invoke("GET", API, query="limit=1&order=asc")
    renamed, _ = await invoke("PATCH", f"{API}/{thread_id}", body={"title": "Renamed"})
    exported, transcript = await invoke("GET", f"{API}/{thread_id}/export", query="format=markdown")
    deleted, _ = await invoke("DELETE", f"{API}/{thread_id}")

    assert listed["statusCode"] == 200 and json.loads(body)["data"][0]["id"] == thread_id
    assert renamed["statusCode"] == 200
    assert exported["statusCode"] == 200 and transcript.startswith(b"# Renamed\n")
    assert exported["headers"]["content-disposition"].startswith("attachment;")
    assert deleted["statusCode"] == 204
