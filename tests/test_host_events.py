"""GET /rest/host/events: each role sees exactly the events it may host, by an index-served query."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pytest_aiohttp import AiohttpClient

from shared.admin import create_event
from shared.db import Database
from shared.settings import Settings
from tests.conftest import RecordingTaskQueue
from tests.seed import app_client, cheap_password_hashing, error_of, ingest_headers, login, seed_world
from tests.servers import AnyMongo
from tests.test_ops_queries import CommandRecorder, filters, served_by_an_index

OWN = {"eventId": "ev1", "name": "Own Event", "organizerId": "org1", "timeZone": "UTC"}
BERLIN = {"eventId": "ev3", "name": "Berlin Summit", "organizerId": "org1", "timeZone": "Europe/Berlin"}
OTHER = {"eventId": "ev2", "name": "Other Organizer's Event", "organizerId": "org2", "timeZone": "UTC"}


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def seeded_client(aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any) -> Any:
    await seed_world(database)
    await create_event(database, "ev3", "org1", "Berlin Summit", "Europe/Berlin")
    return await app_client(aiohttp_client, settings, database, task_queue)


@pytest.mark.parametrize(
    ("who", "expected"),
    [("super", [BERLIN, OTHER, OWN]), ("organizer", [BERLIN, OWN]), ("event_admin", [OWN])],
)
async def test_each_host_role_lists_the_events_it_may_host_by_name(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    who: str,
    expected: list[dict[str, str]],
) -> None:
    client = await seeded_client(aiohttp_client, settings, database, task_queue)
    response = await client.get("/rest/host/events", headers=await login(client, who))
    assert response.status == 200
    assert await response.json() == expected


async def test_an_event_admin_sees_its_event_with_the_time_zone_it_was_created_with(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any
) -> None:
    from shared.admin import create_user
    from tests.seed import PASSWORD

    client = await seeded_client(aiohttp_client, settings, database, task_queue)
    await create_user(database, "two@example.com", PASSWORD, "EVENT_ADMIN", ["ev3"], [])
    response = await client.post("/rest/u/login", json={"username": "two@example.com", "password": PASSWORD})
    token = (await response.json())["access_token"]
    response = await client.get("/rest/host/events", headers={"Authorization": f"Bearer {token}"})
    assert (response.status, await response.json()) == (200, [BERLIN])


async def test_attendees_anonymous_callers_and_ingest_keys_are_refused(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any
) -> None:
    client = await seeded_client(aiohttp_client, settings, database, task_queue)
    attendee = await client.get("/rest/host/events", headers=await login(client, "attendee"))
    assert await error_of(attendee) == (403, "4030201")
    assert await error_of(await client.get("/rest/host/events")) == (401, "401")
    keyed = await client.get("/rest/host/events", headers=await ingest_headers(database))
    assert await error_of(keyed) == (403, "403")


@pytest.fixture
async def recorded(mongo: AnyMongo) -> AsyncIterator[tuple[Database, CommandRecorder]]:
    recorder = CommandRecorder()
    client: Any = AsyncIOMotorClient(mongo.url("events"), tz_aware=True, event_listeners=[recorder])
    db = Database(client, client["host_events"])
    yield db, recorder
    await client.drop_database("host_events")
    client.close()


@pytest.mark.parametrize("store_kind", ["real"])
async def test_every_role_s_events_query_constrains_id_or_an_indexed_field(
    aiohttp_client: Any, settings: Settings, task_queue: Any, recorded: tuple[Database, CommandRecorder]
) -> None:
    db, recorder = recorded
    client = await seeded_client(aiohttp_client, settings, db, task_queue)
    for who in ("super", "organizer", "event_admin"):
        headers = await login(client, who)
        recorder.commands.clear()
        assert (await client.get("/rest/host/events", headers=headers)).status == 200
        queries = [q for name, command in recorder.commands for q in filters(name, command)]
        events = [query for collection, query in queries if collection == "events"]
        assert len(events) == 1, who
        assert [q for c, q in queries if not served_by_an_index(c, q)] == [], who
