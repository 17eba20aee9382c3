"""The queries of the /metrics gauges and the recompute sweep are each served by a declared index.

Proven from the commands the code sends (DESIGN §6), not from the test server's timings: every
filter constrains `_id` or the leading field of an index in shared/db.py INDEXES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from shared.db import INDEXES, Database
from shared.documents import InboxBatchDoc
from shared.jobs import begin_recompute, claim_recompute, count_running_recomputes, sweep_recomputes
from shared.ops import inbox_stats, provider_pauses
from shared.store import now
from tests.conftest import RecordingTaskQueue
from tests.servers import AnyMongo

FILTERED = {"find": "filter", "count": "query", "distinct": "query"}


class CommandRecorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def recorded(mongo: AnyMongo) -> AsyncIterator[tuple[Database, CommandRecorder]]:
    recorder = CommandRecorder()
    client: Any = AsyncIOMotorClient(mongo.url("ops"), tz_aware=True, event_listeners=[recorder])
    db = Database(client, client["ops_queries"])
    await db.ensure_indexes()
    recorder.commands.clear()
    yield db, recorder
    await client.drop_database("ops_queries")
    client.close()


def filters(name: str, command: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(collection, filter) of every query in one command; a bare count reads metadata only."""
    if name in FILTERED:
        return [(command[name], command.get(FILTERED[name]) or {})] if command.get(FILTERED[name]) else []
    if name == "aggregate":
        return [(command["aggregate"], command["pipeline"][0].get("$match", {}))]
    if name == "update":
        return [(command["update"], update["q"]) for update in command["updates"]]
    if name == "delete":
        return [(command["delete"], delete["q"]) for delete in command["deletes"]]
    return []


def served_by_an_index(collection: str, query: dict[str, Any]) -> bool:
    leading = {next(iter(model.document["key"])) for model in INDEXES[collection]}
    return "_id" in query or bool(leading & set(query))


async def test_gauge_and_sweep_queries_each_constrain_an_indexed_field(
    recorded: tuple[Database, CommandRecorder],
) -> None:
    db, recorder = recorded
    batch: InboxBatchDoc = {"_id": "S|x", "eventId": "ev1", "kind": "S", "receivedAt": now(), "count": 3}
    await db.segment_inbox.insert_one(batch)
    await db.events.insert_one({"_id": "ev1", "organizerId": "org1", "name": "E"})
    task, _ = await claim_recompute(db, "ev1", 30)
    await begin_recompute(db, task["_id"], "ev1", "run", "w1", 30)
    await db.tasks.update_one({"_id": task["_id"]}, {"$set": {"heartbeatAt": now() - timedelta(minutes=5)}})
    recorder.commands.clear()

    assert (await inbox_stats(db)).items == 3
    await provider_pauses(db, now())
    await count_running_recomputes(db, 30)
    report = await sweep_recomputes(db, RecordingTaskQueue(), stale_s=30)
    await begin_recompute(db, task["_id"], "ev1", "run-2", "w2", 30)

    assert report.restarted == [task["_id"]]
    queries = [q for name, command in recorder.commands for q in filters(name, command)]
    assert {collection for collection, _ in queries} == {
        "segment_inbox",
        "provider_state",
        "tasks",
        "recompute_locks",
    }
    unserved = [
        (collection, query) for collection, query in queries if not served_by_an_index(collection, query)
    ]
    assert unserved == []
