"""HTTP edges at default settings: 405 with Allow, a slow body is the client's 408, a connection
that never finishes its head is closed, malformed framing gets the envelope, another event's
session is 403, 503s say when to retry; the access log and the start-up line."""

from __future__ import annotations

import asyncio
import json
import logging
import time
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
    error_of,
    found,
    login,
    seed_world,
)
from web.app import log_start
from web.keys import SETTINGS

DEFAULTS = Settings()


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _world(client: Any, database: Any) -> dict[str, str]:
    await seed_world(database)
    await add_session(database, "s1")
    return await login(client, "super")


async def _raw(client: Any, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(data)
    await writer.drain()
    return reader, writer


def _parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def test_a_known_path_with_another_method_gets_405_with_allow(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    deleted = await client.delete("/rest/host/session/s1", headers=headers)
    assert await error_of(deleted) == (405, "405")
    assert deleted.headers["Allow"] == "PUT"
    login_get = await client.get("/rest/u/login")
    assert await error_of(login_get) == (405, "405")
    assert login_get.headers["Allow"] == "POST"


async def test_a_body_slower_than_the_request_time_limit_gets_408_and_the_connection_closes(
    client: Client, database: Database
) -> None:
    # The fixture's request time limit is the default one.
    assert client.app[SETTINGS].request_timeout_s == DEFAULTS.request_timeout_s
    headers = await _world(client, database)
    body = json.dumps(GOOD_BODY).encode()
    reader, writer = await _raw(
        client,
        (
            "PUT /rest/host/session/s1 HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode(),
    )
    started = time.monotonic()
    sent = 0
    answer = b""
    # One byte a second, as a stalled mobile client would, until the service answers.
    while not answer and sent < len(body) and time.monotonic() - started < 30:
        writer.write(body[sent : sent + 1])
        await writer.drain()
        sent += 1
        try:
            answer = await asyncio.wait_for(reader.read(65536), timeout=1.0)
        except TimeoutError:
            pass
    answer += await asyncio.wait_for(reader.read(), timeout=15)  # then EOF: not reused
    writer.close()
    status, answer_headers, answer_body = _parse_answer(answer)
    assert status == 408
    assert answer_headers["content-type"].startswith("application/json")
    envelope = json.loads(answer_body)
    assert envelope["errorCode"] == "408"
    assert envelope["requestId"] == answer_headers["x-request-id"]
    assert sent < len(body)
    assert found(await database.sessions.find_one({"_id": "s1"}))["title"] == "Session s1"


async def test_a_connection_that_never_finishes_its_head_is_closed(
    client: Client, database: Database
) -> None:
    assert client.app[SETTINGS].header_timeout_s == DEFAULTS.header_timeout_s == 10.0
    reader, writer = await _raw(client, b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
    started = time.monotonic()
    closed = await asyncio.wait_for(reader.read(), timeout=30)  # EOF, nothing answered
    writer.close()
    assert closed == b""
    print(f"closed after {time.monotonic() - started:.1f}s")
    # A connection that does send its head in time is answered as usual.
    assert (await client.get("/healthz")).status == 200


async def test_a_body_aiohttp_cannot_decode_gets_the_400_envelope(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    reader, writer = await _raw(
        client,
        (
            "PUT /rest/host/session/s1 HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Type: application/json\r\n"
            "Content-Encoding: gzip\r\nContent-Length: 10\r\n\r\nnot gzip!!"
        ).encode(),
    )
    answer = await asyncio.wait_for(reader.read(), timeout=15)
    writer.close()
    status, answer_headers, answer_body = _parse_answer(answer)
    assert status == 400
    assert json.loads(answer_body)["errorCode"] == "400"
    assert answer_headers["content-type"].startswith("application/json")
    assert found(await database.sessions.find_one({"_id": "s1"}))["title"] == "Session s1"


async def test_put_of_another_events_session_is_403_for_a_host_of_only_one_event(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    await add_session(database, "B1", "ev2")
    event_admin = await login(client, "event_admin")  # hosts ev1 only
    response = await client.put("/rest/host/session/B1", json=GOOD_BODY, headers=event_admin)
    assert await error_of(response) == (403, "4030201")
    assert found(await database.sessions.find_one({"_id": "B1"}))["eventId"] == "ev2"
    # One who hosts both events is told that a session cannot change its event.
    super_admin = await login(client, "super")
    moved = await client.put("/rest/host/session/B1", json=GOOD_BODY, headers=super_admin)
    assert await error_of(moved) == (400, "400")


async def test_503_answers_say_when_to_retry(
    client: Client, database: Database, task_queue: RecordingTaskQueue
) -> None:
    headers = await _world(client, database)
    task_queue.down = True
    response = await client.post("/rest/host/session/analytics/recompute?eventId=ev1", headers=headers)
    assert await error_of(response) == (503, "503")
    assert int(response.headers["Retry-After"]) > 0


async def test_each_request_logs_one_access_line_with_the_user_and_never_the_token(
    client: Client, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    headers = await _world(client, database)
    caplog.set_level(logging.INFO, logger="web.access")
    caplog.clear()
    response = await client.get("/rest/host/session/analytics?eventId=ev1", headers=headers)
    assert response.status == 200
    lines = [r for r in caplog.records if r.name == "web.access"]
    assert len(lines) == 1
    line = lines[0]
    user = found(await database.users.find_one({"email": "super@example.com"}))
    assert line.levelno == logging.INFO
    fields = vars(line)  # the `extra` of the access log line
    assert (fields["method"], fields["route"], fields["status"]) == (
        "GET",
        "/rest/host/session/analytics",
        200,
    )
    assert fields["credential"] == user["_id"]
    assert fields["ms"] >= 0
    token = headers["Authorization"].removeprefix("Bearer ")
    assert token not in repr(line.__dict__)


async def test_ingest_requests_log_the_key_id_not_the_key(
    client: Client, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.seed import ingest_headers

    await _world(client, database)
    key = await ingest_headers(database, ["ev1"])
    caplog.set_level(logging.INFO, logger="web.access")
    caplog.clear()
    assert (await client.post("/rest/events/ev1/watch-segments", json=[], headers=key)).status == 200
    (line,) = [r for r in caplog.records if r.name == "web.access"]
    assert vars(line)["credential"].startswith("key:")
    assert key["Authorization"].removeprefix("Bearer ") not in repr(line.__dict__)


async def test_access_log_false_turns_the_lines_off(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await app_client(aiohttp_client, settings, database, task_queue, access_log=False)
    caplog.set_level(logging.INFO, logger="web.access")
    assert (await client.get("/healthz")).status == 200
    assert [r for r in caplog.records if r.name == "web.access"] == []


def test_the_start_up_line_names_version_address_and_settings_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        mongodb_url="mongodb://admin:s3cret@db.internal:27017/analytics?authSource=admin",
        redis_url="redis://:hunter2@cache.internal:6379/0",
        trusted_proxies="10.0.0.0/8",
    )
    caplog.set_level(logging.INFO, logger="web.app")
    log_start(settings, "0.0.0.0", 8080)
    (line,) = caplog.records
    text = line.getMessage() + repr(line.__dict__)
    assert "0.0.0.0:8080" in text
    fields = vars(line)  # the `extra` of the start-up line
    assert fields["version"]
    assert fields["mongodb"] == "mongodb://db.internal:27017/analytics"
    assert fields["redis"] == "redis://cache.internal:6379/0"
    assert fields["trustedProxies"] == "10.0.0.0/8"
    assert "s3cret" not in text and "hunter2" not in text
