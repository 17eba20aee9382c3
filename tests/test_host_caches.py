"""The read path's per-process caches: what they keep, and that they never hide a finished rollup."""

from __future__ import annotations

import asyncio
from typing import Any

from pytest_aiohttp import AiohttpClient

from shared.db import Database
from shared.settings import Settings
from tests.conftest import RecordingTaskQueue
from tests.contract import validate_every_answer
from tests.seed import add_session, app_client, ingest_headers, login, seed_world, watch_segment
from worker.rollup import rollup_pending

TTL = 1.0


async def _cached_client(aiohttp_client: Any, settings: Any, database: Any, task_queue: Any) -> Any:
    return validate_every_answer(
        await app_client(aiohttp_client, settings, database, task_queue, host_cache_ttl_s=TTL)
    )


async def test_a_process_keeps_the_user_behind_a_token_for_the_cache_lifetime(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    await seed_world(database)
    await add_session(database, "s1")
    client = await _cached_client(aiohttp_client, settings, database, task_queue)
    headers = await login(client, "super")
    assert (await client.get("/rest/host/session/s1/analytics", headers=headers)).status == 200

    await database.tokens.delete_many({})  # the token is gone from the store...
    cached = await client.get("/rest/host/session/s1/analytics", headers=headers)
    assert cached.status == 200  # ...but this process still knows whose it was

    fresh = await app_client(aiohttp_client, settings, database, task_queue, host_cache_ttl_s=0)
    uncached = await fresh.get("/rest/host/session/s1/analytics", headers=headers)
    assert uncached.status == 401


async def test_logout_is_refused_at_once_in_the_process_that_logged_out(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    await seed_world(database)
    await add_session(database, "s1")
    client = await _cached_client(aiohttp_client, settings, database, task_queue)
    headers = await login(client, "super")
    assert (await client.get("/rest/host/session/s1/analytics", headers=headers)).status == 200
    assert (await client.post("/rest/u/logout", headers=headers)).status == 204
    answer = await client.get("/rest/host/session/s1/analytics", headers=headers)
    assert answer.status == 401
    assert (await answer.json())["errorCode"] == "401"


async def test_a_finished_rollup_is_never_hidden_by_a_cached_event(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    await seed_world(database)
    await add_session(database, "s1", provider="YOUTUBE")
    client = await _cached_client(aiohttp_client, settings, database, task_queue)
    headers = await login(client, "super")
    before = await (await client.get("/rest/host/session/analytics?eventId=ev1", headers=headers)).json()
    assert before["data"][0]["attendeeCount"] == 0  # the event document is now cached

    segments = [watch_segment(f"g{u}", "s1", f"u{u}", seconds=45) for u in range(3)]
    posted = await client.post(
        "/rest/events/ev1/watch-segments", json=segments, headers=await ingest_headers(database, ["ev1"])
    )
    assert (await posted.json())["accepted"] == 3
    await rollup_pending(database, settings.model_copy(update={"host_cache_ttl_s": TTL}))

    after = await (await client.get("/rest/host/session/analytics?eventId=ev1", headers=headers)).json()
    assert after["data"][0]["attendeeCount"] == 3
    assert after["data"][0]["liveViews"] == 3


async def test_a_cached_list_answer_is_given_only_to_a_valid_token_allowed_that_event(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    """The list's answer from memory (token, event and answer all cached) makes every check the
    database path makes: expiry, role, the event's hosts."""
    await seed_world(database)
    await add_session(database, "s1")
    await add_session(database, "s2", event_id="ev2")
    client = await app_client(
        aiohttp_client, settings, database, task_queue, host_cache_ttl_s=30, token_ttl_s=2
    )
    lists = "/rest/host/session/analytics?eventId="
    super_headers = await login(client, "super")
    for event_id in ("ev1", "ev2"):
        assert (await client.get(lists + event_id, headers=super_headers)).status == 200

    event_admin, attendee = await login(client, "event_admin"), await login(client, "attendee")
    statuses = []
    for _ in range(2):  # the second time, every token is in the process's memory
        for headers, event_id in ((event_admin, "ev1"), (event_admin, "ev2"), (attendee, "ev1")):
            statuses.append((await client.get(lists + event_id, headers=headers)).status)
    assert statuses == [200, 403, 403] * 2

    await asyncio.sleep(2.1)  # the tokens expire while their users are still cached
    expired = [(await client.get(lists + "ev1", headers=h)).status for h in (super_headers, event_admin)]
    assert expired == [401, 401]
