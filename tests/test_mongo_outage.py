"""MongoDB stopped under a running server: 503 envelopes in time, not ready; back: normal again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from shared.db import Database, connect
from shared.settings import Settings
from tests.conftest import RecordingTaskQueue
from tests.contract import validate_every_answer
from tests.seed import add_session, cheap_password_hashing, error_of, login, seed_world
from tests.servers import MongoTestServer
from web.app import create_app

REQUEST_TIMEOUT_S = 1.0
LIST = "/rest/host/session/analytics?eventId=ev1&expand=duration,watchTime"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


@pytest.fixture
def own_mongo(tmp_path: Any) -> Iterator[MongoTestServer]:
    """A server of this test alone, so stopping it disturbs no other test (also under
    TEST_MONGODB_URL, whose server a test cannot stop): the H2 backend, so its data survives
    the restart as a MongoDB's would."""
    server = MongoTestServer(tmp_path, persistent=True)
    server.start()
    yield server
    server.close()


@pytest.fixture
async def outage_db(own_mongo: MongoTestServer) -> AsyncIterator[tuple[Settings, Database]]:
    settings = Settings(
        mongodb_url=own_mongo.url("outage"),
        redis_url="redis://127.0.0.1:1/0",
        log_json=False,
        request_timeout_s=REQUEST_TIMEOUT_S,
        # Longer than the request timeout: the request's own limit must bound the answer.
        mongodb_timeout_ms=3000,
    )
    db = connect(settings)
    await db.ensure_indexes()
    yield settings, db
    db.close()


async def _timed(client: Any, path: str, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = await client.get(path, **kwargs)
    await response.read()
    return response, time.monotonic() - started


async def test_requests_get_503_while_mongodb_is_down_and_normal_answers_when_it_is_back(
    aiohttp_client: AiohttpClient,
    own_mongo: MongoTestServer,
    outage_db: tuple[Settings, Database],
    task_queue: RecordingTaskQueue,
) -> None:
    settings, db = outage_db
    await seed_world(db)
    await add_session(db, "s1", numbers={"attendeeCount": 3})
    client = validate_every_answer(
        await aiohttp_client(create_app(settings, database=db, task_queue=task_queue))
    )
    headers = await login(client, "super")
    before = await client.get(LIST, headers=headers)
    assert before.status == 200
    body_before = await before.read()
    assert (await client.get("/readyz")).status == 200

    own_mongo.stop()

    for path in (LIST + "&size=7", "/rest/host/session/s1/analytics"):
        response, elapsed = await _timed(client, path, headers=headers)
        assert await error_of(response) == (503, "503"), path
        assert elapsed < REQUEST_TIMEOUT_S + 0.5, (path, elapsed)
    # A list query this token already saw is answered from this process's last good answer.
    stale, elapsed = await _timed(client, LIST, headers=headers)
    assert stale.status == 200, await stale.text()
    assert await stale.read() == body_before
    assert elapsed < REQUEST_TIMEOUT_S + 0.5
    login_down = await client.post("/rest/u/login", json={"username": "super@example.com", "password": "x"})
    assert await error_of(login_down) == (503, "503")
    ready, elapsed = await _timed(client, "/readyz")
    assert await error_of(ready) == (503, "503")
    assert "mongodb" in (await ready.json())["developerMessage"]
    assert elapsed < REQUEST_TIMEOUT_S + 0.5
    assert (await client.get("/healthz")).status == 200  # alive, just not ready

    own_mongo.start()

    deadline = time.monotonic() + 15
    while (await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "not ready 15 s after MongoDB came back"
        await asyncio.sleep(0.1)
    after = await client.get(LIST, headers=headers)
    assert after.status == 200
    assert await after.read() == body_before
    detail = await client.get("/rest/host/session/s1/analytics", headers=headers)
    assert (await detail.json())["attendeeCount"] == 3
    assert (await client.post("/rest/u/logout", headers=await login(client, "super"))).status == 204
