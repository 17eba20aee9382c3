"""What several web processes share through Redis: the event stream (any process serves any
client, a reconnect with Last-Event-ID misses nothing) and the rate limits (exact across them).

Two `session-analytics serve` processes run on the MongoDB-wire test server and Redis of the test
run; the rollups that land the numbers run in the test process, as a worker would run them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest

from shared.admin import create_ingest_key
from shared.db import Database, connect
from shared.settings import Settings
from tests.processes import WebProcess
from tests.seed import PASSWORD, USERS, add_session, seed_world, watch_segment
from tests.servers import AnyMongo, Redis
from worker.rollup import rollup_event

HOST_LIMIT, INGEST_LIMIT = 20, 10


@dataclass
class Webs:
    """Two web processes on one database and one Redis."""

    settings: Settings
    processes: list[WebProcess] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.processes]


@pytest.fixture(scope="module")
def webs(mongo: AnyMongo, redis_server: Redis) -> Iterator[Webs]:
    name = f"webs{os.getpid()}"
    env = {
        "MONGODB_URL": mongo.url(name),
        "REDIS_URL": redis_server.url(),
        "RATE_LIMIT_HOST_PER_MINUTE": str(HOST_LIMIT),
        "RATE_LIMIT_INGEST_PER_MINUTE": str(INGEST_LIMIT),
        "REQUEST_TIMEOUT_S": "30",  # two cores shared with the servers
    }
    settings = Settings(mongodb_url=env["MONGODB_URL"], redis_url=env["REDIS_URL"], log_json=False)
    pair = Webs(settings, [WebProcess(env).start(), WebProcess(env).start()])
    yield pair
    for process in pair.processes:
        process.stop()


@pytest.fixture
async def db(webs: Webs) -> AsyncIterator[Database]:
    database = connect(webs.settings)
    await database.client.drop_database(webs.settings.mongodb_database_name)
    await database.ensure_indexes()
    await seed_world(database)
    for session_id in ("s1", "s2"):
        await add_session(database, session_id)
    yield database
    database.close()


async def login(http: aiohttp.ClientSession, base: str, who: str = "organizer") -> dict[str, str]:
    body = {"username": USERS[who][0], "password": PASSWORD}
    async with http.post(f"{base}/rest/u/login", json=body) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


class EventReader:
    """A fetch-style reader of one event stream, as the dashboard's live.js reads it."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 15.0) -> tuple[str, str | None, Any]:
        """The next event: (name, id, data); comments (heartbeats) are skipped."""
        name, event_id, data = "message", None, list[str]()
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode().rstrip("\r\n")
                if line == "" and data:
                    return name, event_id, orjson.loads("\n".join(data))
                if line.startswith(":") or not line:
                    continue
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "id":
                    event_id = value
                elif key == "data":
                    data.append(value)

    async def until(self, name: str, timeout: float = 15.0) -> tuple[str | None, Any]:
        while True:
            got, event_id, data = await self.next(timeout)
            if got == name:
                return event_id, data


async def open_stream(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], last_id: str | None = None
) -> EventReader:
    sent = headers | ({"Last-Event-ID": last_id} if last_id else {})
    response = await http.get(f"{base}/rest/host/event/ev1/stream", headers=sent)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return EventReader(response)


async def post_segments(
    http: aiohttp.ClientSession, base: str, key: str, segments: list[dict[str, Any]]
) -> None:
    async with http.post(
        f"{base}/rest/events/ev1/watch-segments", json=segments, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status == 200, await response.text()


async def test_a_client_on_each_web_process_sees_a_change_posted_through_the_other(
    webs: Webs, db: Database
) -> None:
    key = await create_ingest_key(db, ["ev1"])
    async with aiohttp.ClientSession() as http:
        first, second = webs.urls
        readers = [await open_stream(http, base, await login(http, base)) for base in (first, second)]
        for reader in readers:
            await reader.until("ready")
        for n, (post_to, session_id) in enumerate(((second, "s1"), (first, "s2"))):
            await post_segments(http, post_to, key, [watch_segment(f"g{n}", session_id, f"u{n}")])
            await rollup_event(db, webs.settings, "ev1")
            for reader in readers:
                _, changed = await reader.until("sessions")
                # (new sessions' first rollup writes them all: the items may hold both)
                item = next(i for i in changed["items"] if i["sessionId"] == session_id)
                assert item["attendeeCount"] == 1
                assert item["watchTime"]["total"] == 60.0


async def test_a_reconnect_with_last_event_id_misses_no_change(webs: Webs, db: Database) -> None:
    key = await create_ingest_key(db, ["ev1"])
    async with aiohttp.ClientSession() as http:
        first, second = webs.urls
        host = await login(http, first)
        reader = await open_stream(http, first, host)
        last_id, _ = await reader.until("ready")
        reader.response.close()  # the client goes away ...
        for n, session_id in enumerate(("s1", "s2", "s1")):  # ... while three rollups land
            await post_segments(http, second, key, [watch_segment(f"r{n}", session_id, f"u{n}")])
            await rollup_event(db, webs.settings, "ev1")
        resumed = await open_stream(http, second, host, last_id)  # ... and comes back elsewhere
        ready_id, _ = await resumed.until("ready")
        assert ready_id == last_id
        seen: dict[str, int] = {}
        while set(seen) != {"s1", "s2"}:
            _, changed = await resumed.until("sessions")
            seen |= {item["sessionId"]: item["attendeeCount"] for item in changed["items"]}
        assert seen == {"s1": 2, "s2": 1}  # every change, with the numbers as they stand now


async def test_the_stream_is_refused_to_another_events_admin_and_without_a_token(
    webs: Webs, db: Database
) -> None:
    from shared.admin import create_event, create_user

    await create_event(db, "ev3", "org3", "Third")
    await create_user(db, "other@example.com", PASSWORD, "EVENT_ADMIN", ["ev3"], [])
    async with aiohttp.ClientSession() as http:
        base = webs.urls[0]
        async with http.post(
            f"{base}/rest/u/login", json={"username": "other@example.com", "password": PASSWORD}
        ) as response:
            other = {"Authorization": f"Bearer {(await response.json())['access_token']}"}
        for headers, expected in ((other, (403, "4030201")), ({}, (401, "401"))):
            async with http.get(f"{base}/rest/host/event/ev1/stream", headers=headers) as response:
                body = await response.json()
                assert (response.status, body["errorCode"]) == expected
                assert set(body) == {"errorCode", "errorMessage", "developerMessage", "requestId"}


async def test_rate_limits_are_exact_under_fifty_concurrent_requests_across_two_processes(
    webs: Webs, db: Database
) -> None:
    async with aiohttp.ClientSession() as http:
        host = await login(http, webs.urls[0])

        async def one(n: int) -> tuple[int, dict[str, str], Any]:
            async with http.get(f"{webs.urls[n % 2]}/rest/host/events", headers=host) as response:
                return response.status, dict(response.headers), await response.json()

        answers = await asyncio.gather(*(one(n) for n in range(50)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * HOST_LIMIT + [429] * (50 - HOST_LIMIT)
    for status, headers, body in answers:
        assert headers["RateLimit-Policy"] == f'"host";q={HOST_LIMIT};w=60'
        assert headers["RateLimit"].startswith('"host";r=')
        if status == 429:
            assert body["errorCode"] == "429" and set(body) >= {"errorMessage", "requestId"}
            assert 1 <= int(headers["Retry-After"]) <= 60
            assert headers["RateLimit"].startswith('"host";r=0;')
    remaining = sorted(int(h["RateLimit"].split("r=")[1].split(";")[0]) for s, h, _ in answers if s == 200)
    # Read after the count, so others counted meanwhile show: never more than is really left.
    assert all(0 <= r < HOST_LIMIT for r in remaining) and remaining[-1] <= HOST_LIMIT - 1


async def test_an_ingest_key_has_its_own_limit_and_the_probes_none(webs: Webs, db: Database) -> None:
    key = await create_ingest_key(db, ["ev1"])
    async with aiohttp.ClientSession() as http:

        async def post(n: int) -> int:
            async with http.post(
                f"{webs.urls[n % 2]}/rest/events/ev1/watch-segments",
                json=[watch_segment(f"k{n}", "s1", f"u{n}")],
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                assert response.headers["RateLimit-Policy"] == f'"ingest";q={INGEST_LIMIT};w=60'
                return response.status

        statuses = sorted(await asyncio.gather(*(post(n) for n in range(25))))
        assert statuses == [200] * INGEST_LIMIT + [429] * (25 - INGEST_LIMIT)
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(webs.urls[0] + path, headers={"Authorization": f"Bearer {key}"}) as response:
                assert response.status == 200 and "RateLimit" not in response.headers
        async with http.get(webs.urls[1] + "/metrics") as response:
            text = await response.text()
        assert 'session_analytics_rate_limited_total{kind="ingest"}' in text
        assert "session_analytics_streams_open" in text
