"""The event stream in one process on the embedded store (the demo's path): a change the hook
publishes reaches an open stream, a reconnect with Last-Event-ID gets what it missed, and a
malformed Last-Event-ID is a 400 envelope."""

from __future__ import annotations

import pytest
from pytest_aiohttp import AiohttpClient

from shared.db import Database
from shared.hooks import analytics_written
from shared.settings import Settings
from tests.conftest import RecordingTaskQueue
from tests.seed import add_session, login, seed_world
from tests.test_web_processes import EventReader
from web.app import create_app


@pytest.mark.parametrize("store_kind", ["mock"])
async def test_a_published_change_reaches_the_stream_and_a_reconnect_gets_what_it_missed(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    await seed_world(database)
    await add_session(database, "s1", numbers={"attendeeCount": 4})
    client = await aiohttp_client(create_app(settings, database=database, task_queue=task_queue))
    host = await login(client, "organizer")
    response = await client.get("/rest/host/event/ev1/stream", headers=host)
    assert response.status == 200 and response.headers["RateLimit-Policy"] == '"host";q=1200;w=60'
    reader = EventReader(response)
    _, ready_id, _ = await reader.next()
    await analytics_written(database, settings, "ev1", ["s1"], kind="rollup")
    name, _, data = await reader.next()
    assert name == "sessions" and [i["attendeeCount"] for i in data["items"]] == [4]
    response.close()

    await database.sessions.update_one({"_id": "s1"}, {"$set": {"attendeeCount": 5}})
    await analytics_written(database, settings, "ev1", ["s1"], kind="rollup")
    again = EventReader(
        await client.get("/rest/host/event/ev1/stream", headers=host | {"Last-Event-ID": str(ready_id)})
    )
    assert (await again.next())[0] == "ready"
    name, _, data = await again.next()
    assert name == "sessions" and [i["attendeeCount"] for i in data["items"]] == [5]
    again.response.close()

    bad = await client.get("/rest/host/event/ev1/stream", headers=host | {"Last-Event-ID": "x\u00e9"})
    assert bad.status == 400 and (await bad.json())["errorCode"] == "400"
