"""One rollup or recompute writes an event's sessions at a time, under a lease that expires."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from shared.db import Database
from shared.jobs import claim_recompute
from shared.settings import Settings
from shared.store import now
from tests.conftest import Client
from tests.seed import add_session, found, ingest_headers, seed_world, watch_segment
from worker.rollup import EventLease, recompute_event, rollup_event, sessions_with_work


async def _queue_attendance(client: Any, database: Database, count: int = 3) -> None:
    headers = await ingest_headers(database, ["ev1"])
    segments = [watch_segment(f"g{n}", "s1", f"u{n}") for n in range(count)]
    response = await client.post("/rest/events/ev1/watch-segments", json=segments, headers=headers)
    assert (await response.json())["accepted"] == count


@pytest.fixture
async def event(client: Client, database: Database) -> None:
    await seed_world(database)
    await add_session(database, "s1")
    await _queue_attendance(client, database)


def test_a_lease_expires_within_a_minute_of_its_last_renewal_by_default() -> None:
    assert 0 < Settings().rollup_lease_s <= 60


async def test_a_lease_expires_at_the_default_lifetime_unless_renewed(
    database: Database, event: None
) -> None:
    lease = EventLease(database, "ev1", Settings().rollup_lease_s, "rollup")
    assert await lease.try_acquire()
    stored = found(await database.rollup_leases.find_one({"_id": "ev1"}))
    assert stored["expiresAt"] <= now() + timedelta(seconds=60)
    assert not await EventLease(database, "ev1", 30, "rollup").try_acquire()
    expired = now() - timedelta(milliseconds=5)
    await database.rollup_leases.update_one({"_id": "ev1"}, {"$set": {"expiresAt": expired}})
    assert await EventLease(database, "ev1", 30, "rollup").try_acquire()  # expired: free again


async def test_a_recompute_waits_for_a_rollup_already_writing_its_event(
    database: Database, settings: Settings, event: None
) -> None:
    rollup = EventLease(database, "ev1", settings.rollup_lease_s, "rollup")
    assert await rollup.try_acquire()
    task, _ = await claim_recompute(database, "ev1", settings.recompute_stale_s)

    running = asyncio.create_task(recompute_event(database, settings, task["_id"], "ev1"))
    await asyncio.sleep(0.6)
    waiting = found(await database.tasks.find_one({"_id": task["_id"]}))
    assert not running.done()
    assert waiting["state"] == "STARTED" and waiting["progress"]["done"] == 0

    await rollup.release()
    result = await asyncio.wait_for(running, timeout=30)
    assert result["sessions"] == 1
    assert found(await database.tasks.find_one({"_id": task["_id"]}))["state"] == "SUCCESS"
    assert await database.rollup_leases.count_documents({}) == 0
    assert found(await database.sessions.find_one({"_id": "s1"}))["attendeeCount"] == 3


async def test_a_lease_left_by_a_dead_worker_does_not_block_a_recompute(
    database: Database, settings: Settings, event: None
) -> None:
    stale = now() - timedelta(seconds=1)
    await database.rollup_leases.insert_one(
        {"_id": "ev1", "owner": "dead", "kind": "rollup", "expiresAt": stale}
    )
    task, _ = await claim_recompute(database, "ev1", settings.recompute_stale_s)

    result = await asyncio.wait_for(recompute_event(database, settings, task["_id"], "ev1"), timeout=30)
    assert result["sessions"] == 1


async def test_a_rollup_of_a_busy_event_returns_and_writes_nothing(
    database: Database, settings: Settings, event: None
) -> None:
    other = EventLease(database, "ev1", settings.rollup_lease_s, "recompute")
    assert await other.try_acquire()
    result = await rollup_event(database, settings, "ev1")
    assert (result.busy, result.sessions, result.items) == (True, 0, 0)
    assert await sessions_with_work(database) == ["s1"]
    assert found(await database.rollup_leases.find_one({"_id": "ev1"}))["owner"] == other.owner


class _StalledSessions:
    """The sessions collection, stalling (or failing) the rollup's bulk read of sessions."""

    def __init__(self, collection: Any, stall: asyncio.Event, error: Exception | None) -> None:
        self._collection, self._stall, self._error = collection, stall, error
        self.reached = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def find(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if "$in" in str(query.get("_id")):
            self.reached.set()
            if self._error is not None:
                raise self._error
            return _WaitingCursor(self._collection.find(query, *args, **kwargs), self._stall)
        return self._collection.find(query, *args, **kwargs)


class _WaitingCursor:
    def __init__(self, cursor: Any, stall: asyncio.Event) -> None:
        self._cursor, self._stall = cursor, stall

    def batch_size(self, size: int) -> _WaitingCursor:
        self._cursor = self._cursor.batch_size(size)
        return self

    async def to_list(self, length: Any) -> Any:
        await self._stall.wait()
        return await self._cursor.to_list(length)


def _stalling_database(database: Database, error: Exception | None = None) -> tuple[Any, Any]:
    stall = asyncio.Event()
    sessions = _StalledSessions(database.db.sessions, stall, error)

    @dataclass
    class StalledDatabase(Database):
        @property
        def sessions(self) -> Any:
            return sessions

    return StalledDatabase(database.client, database.db), sessions


async def test_a_cancelled_rollup_releases_its_lease_and_loses_nothing(
    database: Database, settings: Settings, event: None
) -> None:
    stalled, sessions = _stalling_database(database)
    rollup = asyncio.create_task(rollup_event(stalled, settings, "ev1"))
    await asyncio.wait_for(sessions.reached.wait(), timeout=10)
    assert await database.rollup_leases.count_documents({"_id": "ev1"}) == 1

    rollup.cancel()  # as a worker that lost its broker cancels its running task
    with pytest.raises(asyncio.CancelledError):
        await rollup

    assert await database.rollup_leases.count_documents({}) == 0
    assert await sessions_with_work(database) == ["s1"]  # nothing consumed
    result = await rollup_event(database, settings, "ev1")  # the next one runs at once
    assert (result.busy, result.items) == (False, 3)
    assert found(await database.sessions.find_one({"_id": "s1"}))["attendeeCount"] == 3


async def test_a_failed_rollup_releases_its_lease(
    database: Database, settings: Settings, event: None
) -> None:
    from pymongo.errors import AutoReconnect

    stalled, _ = _stalling_database(database, AutoReconnect("connection reset (test)"))
    with pytest.raises(AutoReconnect):
        await rollup_event(stalled, settings, "ev1")
    assert await database.rollup_leases.count_documents({}) == 0
    assert await sessions_with_work(database) == ["s1"]


async def test_a_rollup_renews_its_lease_while_it_works(
    database: Database, settings: Settings, event: None
) -> None:
    # A shortened lifetime, so that renewals happen within the test; the default is above.
    short = settings.model_copy(update={"rollup_lease_s": 0.6})
    stalled, sessions = _stalling_database(database)
    rollup = asyncio.create_task(rollup_event(stalled, short, "ev1"))
    await asyncio.wait_for(sessions.reached.wait(), timeout=10)
    first = found(await database.rollup_leases.find_one({"_id": "ev1"}))["expiresAt"]
    await asyncio.sleep(1.5)  # well past the first expiry

    renewed = found(await database.rollup_leases.find_one({"_id": "ev1"}))["expiresAt"]
    assert renewed > first and renewed > now()
    assert not await EventLease(database, "ev1", 30, "recompute").try_acquire()
    sessions._stall.set()
    result = await asyncio.wait_for(rollup, timeout=10)
    assert result.items == 3
    assert await database.rollup_leases.count_documents({}) == 0
