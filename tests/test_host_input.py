"""Malformed and hostile input on the host routes: a 400 envelope, and nothing written."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from shared.db import Database
from shared.settings import Settings
from tests.conftest import Client, RecordingTaskQueue
from tests.seed import (
    GOOD_BODY,
    add_session,
    app_client,
    cheap_password_hashing,
    database_state,
    error_of,
    login,
    seed_world,
)

LIST = "/rest/host/session/analytics"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _world(client: Any, database: Any) -> dict[str, str]:
    await seed_world(database)
    await add_session(database, "s1", numbers={"attendeeCount": 3})
    return await login(client, "super")


async def test_malformed_list_queries_get_400(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    queries = [
        "eventId=ev1&page=abc",
        "eventId=ev1&page=1.5",
        "eventId=ev1&page=-1",
        "eventId=ev1&page=1e3",
        "eventId=ev1&page=%EF%BC%91",
        "eventId=ev1&page=0x10",
        "eventId=ev1&page=99999999999999999999",
        "eventId=ev1&page=%201",
        "eventId=ev1&size=0",
        "eventId=ev1&size=501",
        "eventId=ev1&size=ten",
        "eventId=ev1&page=0&page=1",
        "eventId=ev1&expand=durations",
        "eventId=ev1&expand=duration,views",
        "eventId=ev1&expand=sessionStats",
        "eventId=ev1&sort=registeredUserCount",
        "eventId=ev1&sort=-",
        "eventId=ev1&sort=--title",
        "eventId=ev1&sort=%24where",
        "eventId=ev1&sessionFormat=breakout_session",
        "eventId=ev1&sessionFormat=PANEL",
        "eventId=ev1&searchString=" + "x" * 201,
        "",
        "eventId=",
        "eventId=ev1&eventId=ev2",
        "eventId=ev%2E1",
        "eventId=" + "e" * 65,
        "eventId=%7B%22%24ne%22%3A%22%22%7D",  # {"$ne": ""}
        "eventId[$ne]=",
        "eventId%5B%24ne%5D=x",
        "eventId=ev1%00",
    ]
    answers = {}
    for query in queries:
        answers[query] = await error_of(await client.get(f"{LIST}?{query}", headers=headers))
    assert answers == dict.fromkeys(queries, (400, "400"))
    assert await database_state(database) == before


async def test_bad_paging_of_attendees_gets_400(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    for query in ("page=x", "size=501", "size=0", "page=-2"):
        response = await client.get(f"/rest/host/session/s1/attendee?{query}", headers=headers)
        assert await error_of(response) == (400, "400"), query


async def test_bad_session_id_in_the_path_gets_400(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    for session_id in ("a.b", "x" * 65, "%24ne", "s1%00", "%20"):
        detail = await client.get(f"/rest/host/session/{session_id}/analytics", headers=headers)
        assert await error_of(detail) == (400, "400"), session_id
        put = await client.put(f"/rest/host/session/{session_id}", json=GOOD_BODY, headers=headers)
        assert await error_of(put) == (400, "400"), session_id
    assert await database_state(database) == before


OPERATOR = {"$ne": ""}


async def test_operator_objects_where_strings_belong_get_400_and_write_nothing(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    bodies = [{**GOOD_BODY, field: OPERATOR} for field in GOOD_BODY]
    bodies.append({**GOOD_BODY, "title": {"$set": {"attendeeCount": 1000}}})
    for body in bodies:
        response = await client.put("/rest/host/session/s1", json=body, headers=headers)
        assert await error_of(response) == (400, "400"), body
    for login_body in (
        {"username": OPERATOR, "password": OPERATOR},
        {"username": "super@example.com", "password": OPERATOR},
        {"username": {"$regex": ".*"}, "password": "x"},
    ):
        response = await client.post("/rest/u/login", json=login_body)
        assert await error_of(response) == (400, "400"), login_body
    assert await database_state(database) == before


async def test_unknown_body_fields_get_400_and_write_nothing(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    bodies = [
        {**GOOD_BODY, "attendeeCount": 1000},
        {**GOOD_BODY, "duration": 1},
        {**GOOD_BODY, "$set": {"liveViews": 1}},
        {**GOOD_BODY, "sessionId": "s2"},
        {**GOOD_BODY, "eventid": "ev1"},
    ]
    for body in bodies:
        response = await client.put("/rest/host/session/s1", json=body, headers=headers)
        assert await error_of(response) == (400, "400"), body
        assert (
            "unknown field"
            in (await response.json())["errorMessage"] + (await response.json())["developerMessage"]
        )
    login_extra = await client.post(
        "/rest/u/login",
        json={"username": "super@example.com", "password": "correct horse battery", "role": "x"},
    )
    assert await error_of(login_extra) == (400, "400")
    assert await database_state(database) == before


async def test_wrong_json_types_and_values_get_400_and_write_nothing(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    bad = [
        {**GOOD_BODY, "title": 5},
        {**GOOD_BODY, "title": ""},
        {**GOOD_BODY, "title": "   "},
        {**GOOD_BODY, "title": "x" * 501},
        {**GOOD_BODY, "title": ["Opening"]},
        {**GOOD_BODY, "title": None},
        {**GOOD_BODY, "startTime": 1714554000},
        {**GOOD_BODY, "startTime": "2024-05-01T09:00:00"},
        {**GOOD_BODY, "startTime": "yesterday"},
        {**GOOD_BODY, "endTime": "2024-05-01T08:00:00Z"},
        {**GOOD_BODY, "format": "breakout_session"},
        {**GOOD_BODY, "format": "PANEL"},
        {**GOOD_BODY, "streamProvider": "NETFLIX"},
        {**GOOD_BODY, "streamProvider": "youtube"},
        {**GOOD_BODY, "videoId": "../../etc/passwd"},
        {**GOOD_BODY, "videoId": 42},
        {**GOOD_BODY, "eventId": "ev 1"},
        {**GOOD_BODY, "eventId": 1},
        {**GOOD_BODY, "eventId": None},
        {key: value for key, value in GOOD_BODY.items() if key != "title"},
        {key: value for key, value in GOOD_BODY.items() if key != "eventId"},
        [GOOD_BODY],
        "Opening",
        1,
        None,
        True,
        {},
    ]
    answers = []
    for body in bad:
        response = await client.put("/rest/host/session/s1", json=body, headers=headers)
        answers.append(await error_of(response))
    assert answers == [(400, "400")] * len(bad)
    assert await database_state(database) == before


async def test_bad_json_gets_400_and_writes_nothing(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    raw_bodies = [
        b"",
        b"{",
        b'{"eventId": "ev1",}',
        b"{'eventId': 'ev1'}",
        b"NaN",
        b'{"eventId": "ev1"} trailing',
        b"\xff\xfe{}",
        b"\x00",
        b"[" * 10_000,
    ]
    for raw in raw_bodies:
        for path, extra in (("/rest/host/session/s1", headers), ("/rest/u/login", {})):
            response = await client.request(
                "PUT" if "session" in path else "POST",
                path,
                data=raw,
                headers={**extra, "Content-Type": "application/json"},
            )
            assert await error_of(response) == (400, "400"), (path, raw[:20])
    assert await database_state(database) == before


async def test_wrong_content_type_gets_400(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    response = await client.put(
        "/rest/host/session/s1",
        data=b"eventId=ev1&title=x",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert await error_of(response) == (400, "400")


async def test_body_over_the_size_limit_gets_400_and_writes_nothing(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    client = await app_client(aiohttp_client, settings, database, task_queue, max_body_bytes=4096)
    headers = await _world(client, database)
    before = await database_state(database)
    oversized = {**GOOD_BODY, "title": "x" * 400, "padding": "y" * 5000}
    response = await client.put("/rest/host/session/s1", json=oversized, headers=headers)
    assert await error_of(response) == (400, "400")
    assert "limit" in (await response.json())["developerMessage"]
    login_response = await client.post("/rest/u/login", json={"username": "x" * 5000, "password": "y"})
    assert await error_of(login_response) == (400, "400")
    assert await database_state(database) == before
    # The same connection pool still answers normally afterwards.
    ok = await client.put("/rest/host/session/s1", json=GOOD_BODY, headers=headers)
    assert ok.status == 200


async def test_body_over_the_default_one_megabyte_limit_gets_400(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    body = json.dumps({**GOOD_BODY, "title": "x" * 1_100_000}).encode()
    response = await client.put(
        "/rest/host/session/s1",
        data=io.BytesIO(body),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert await error_of(response) == (400, "400")
    assert await database_state(database) == before


async def test_unknown_routes_and_methods_answer_the_json_envelope(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    assert await error_of(await client.get("/rest/host/nothing", headers=headers)) == (404, "404")
    assert await error_of(await client.get("/index.html")) == (404, "404")
    deleted = await client.delete("/rest/host/session/s1", headers=headers)
    assert await error_of(deleted) == (405, "405")
    assert await database.sessions.count_documents({"_id": "s1"}) == 1
