"""Overload at default settings: database operations wait in one FIFO line per process, the
session list keeps answering from its last good answer while that line does not move, and
readiness does not queue behind it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from shared.db import Database, database_slots
from shared.settings import Settings
from tests.conftest import RecordingTaskQueue
from tests.seed import add_session, app_client, cheap_password_hashing, error_of, login, seed_world

LIST = "/rest/host/session/analytics?eventId=ev1&expand=duration,watchTime"
pytestmark = pytest.mark.parametrize("store_kind", ["real"], indirect=True)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _hold_every_slot(database: Database) -> int:
    assert database.gate is not None
    held = 0
    while not database.gate.locked():
        await database.gate.acquire()
        held += 1
    return held


def _release(database: Database, held: int) -> None:
    assert database.gate is not None
    for _ in range(held):
        database.gate.release()


async def test_database_operations_wait_in_line_in_arrival_order(database: Database) -> None:
    assert database.gate is not None
    held = await _hold_every_slot(database)
    assert held == database_slots(Settings()) == 8  # MONGODB_MAX_CONCURRENCY by default
    finished: list[int] = []

    async def one(n: int) -> None:
        await database.events.find_one({"_id": f"e{n}"})
        finished.append(n)

    waiting = []
    for n in range(5):
        waiting.append(asyncio.ensure_future(one(n)))
        await asyncio.sleep(0)  # queued in this order
    await asyncio.sleep(0.2)
    assert finished == []  # nothing passes a full line
    for n in range(5):
        database.gate.release()
        await waiting[n]
        await database.gate.acquire()  # keep the line full: one at a time
    assert finished == [0, 1, 2, 3, 4]
    _release(database, held)


async def test_the_list_answers_its_last_good_answer_and_readyz_stays_ready_while_the_line_is_full(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    # The fixture turns the token cache off; users run with its default.
    client = await app_client(
        aiohttp_client, settings, database, task_queue, host_cache_ttl_s=Settings().host_cache_ttl_s
    )
    await seed_world(database)
    await add_session(database, "s1", numbers={"attendeeCount": 3})
    headers = await login(client, "super")
    fresh = await client.get(LIST, headers=headers)
    assert fresh.status == 200
    body = await fresh.read()
    # Past the token and event caches: a fresh answer now needs the database.
    await asyncio.sleep(Settings().host_cache_ttl_s + 0.1)

    held = await _hold_every_slot(database)
    try:
        during = await client.get(LIST, headers=headers)
        assert during.status == 200
        assert await during.read() == body
        assert (await client.get("/readyz")).status == 200
        # Another query has no last good answer: it waits, and gets 503 at the time limit.
        other = await client.get("/rest/host/session/analytics?eventId=ev1&size=7", headers=headers)
        assert await error_of(other) == (503, "503")
        assert int(other.headers["Retry-After"]) > 0
    finally:
        _release(database, held)
    after = await client.get(LIST, headers=headers)
    assert after.status == 200 and await after.read() == body
    metrics = await (await client.get("/metrics")).text()
    stale = re.search(r'^session_list_cache_total\{outcome="stale"\} ([0-9.]+)$', metrics, re.M)
    assert stale is not None and float(stale.group(1)) >= 1


async def test_a_logged_out_token_gets_no_last_good_answer(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    client = await app_client(aiohttp_client, settings, database, task_queue, host_cache_ttl_s=1.0)
    await seed_world(database)
    await add_session(database, "s1")
    headers = await login(client, "super")
    assert (await client.get(LIST, headers=headers)).status == 200
    assert (await client.post("/rest/u/logout", headers=headers)).status == 204
    held = await _hold_every_slot(database)
    try:
        response = await client.get(LIST, headers=headers)
        assert response.status in (401, 503)  # never the cached numbers
        assert (await response.json())["errorCode"] in ("401", "503")
    finally:
        _release(database, held)


async def test_api_requests_wait_in_one_line_and_probes_do_not(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    from web.middleware import REQUEST_LINE

    client = await app_client(aiohttp_client, settings, database, task_queue)
    await seed_world(database)
    await add_session(database, "s1")
    headers = await login(client, "super")
    line = client.app[REQUEST_LINE]
    held = 0
    while not line.locked():
        await line.acquire()
        held += 1
    assert held == Settings().request_concurrency == 32
    waiting = asyncio.ensure_future(client.get(LIST, headers=headers))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # a full line: the list waits its turn
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200
    line.release()
    assert (await waiting).status == 200
    for _ in range(held - 1):
        line.release()


async def test_ingestion_has_a_line_of_its_own_and_is_stored_while_the_common_line_is_full(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    from tests.seed import ingest_headers, watch_segment
    from web.middleware import REQUEST_LINE

    client = await app_client(aiohttp_client, settings, database, task_queue)
    await seed_world(database)
    await add_session(database, "s1")
    key = await ingest_headers(database, ["ev1"])
    headers = await login(client, "super")
    line = client.app[REQUEST_LINE]
    held = 0
    while not line.locked():
        await line.acquire()
        held += 1
    try:
        listing = asyncio.ensure_future(client.get(LIST, headers=headers))
        posted = await client.post("/rest/events/ev1/watch-segments", json=[watch_segment("g1")], headers=key)
        assert posted.status == 200
        assert (await posted.json())["accepted"] == 1
        assert await database.watch_segments.count_documents({}) == 1
        assert not listing.done()  # the list still waits its turn in the common line
    finally:
        for _ in range(held):
            line.release()
    assert (await listing).status == 200
    assert Settings().ingest_concurrency == 8


async def test_list_requests_of_one_token_share_one_refresh_and_queue_no_database_work(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    client = await app_client(
        aiohttp_client, settings, database, task_queue, host_cache_ttl_s=Settings().host_cache_ttl_s
    )
    await seed_world(database)
    await add_session(database, "s1", numbers={"attendeeCount": 3})
    headers = await login(client, "super")
    first = await client.get(LIST, headers=headers)
    body = await first.read()
    await asyncio.sleep(Settings().host_cache_ttl_s + 0.1)  # a fresh answer needs the database

    assert database.gate is not None
    held = await _hold_every_slot(database)
    try:
        answers = await asyncio.gather(*(client.get(LIST, headers=headers) for _ in range(10)))
        assert [a.status for a in answers] == [200] * 10
        assert all([await a.read() == body for a in answers])
        # Ten requests, one refresh: one database operation waits for a slot, not ten.
        assert len(database.gate._waiters or ()) == 1
    finally:
        _release(database, held)
    assert (await client.get(LIST, headers=headers)).status == 200
