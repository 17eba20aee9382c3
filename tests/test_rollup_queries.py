"""Every query the service sends is served by a declared index (DESIGN §6), and a rollup's round
trips do not grow with the sessions it touches — proven from the commands the driver sends
(PyMongo command monitoring), not from the test server's timings."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from click.testing import CliRunner
from pymongo import monitoring

from shared.db import INDEXES, Database
from shared.jobs import claim_recompute
from shared.settings import Settings, get_settings
from tests.conftest import Client
from tests.seed import (
    T0,
    add_session,
    cheap_password_hashing,
    clone_sessions,
    found,
    ingest_headers,
    login,
    registration,
    seed_world,
    watch_segment,
)
from tests.servers import Redis
from worker.cleanup import cleanup_expired
from worker.durations import sync_durations, sync_event_durations
from worker.providers.fakes import FakeVideo, run_fake_providers
from worker.rollup import (
    recompute_event,
    rollup_event,
    rollup_pending,
    sessions_with_work,
)

SEGMENTS = "/rest/events/ev1/watch-segments"
QUERIES = {"find", "count", "distinct", "aggregate", "update", "delete", "findAndModify"}
CONSTRAINING = {"$eq", "$in", "$gt", "$gte", "$lt", "$lte"}


class CommandLog(monitoring.CommandListener):
    """The commands the driver sends to one database while recording is on."""

    def __init__(self) -> None:
        self.database: str | None = None
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.database is not None and event.database_name == self.database:
            with self._lock:
                self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    @contextlib.contextmanager
    def recording(self, database: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        self.commands = []
        self.database = database
        try:
            yield self.commands
        finally:
            self.database = None


_LOG = CommandLog()


@pytest.fixture(scope="session")
def command_log() -> CommandLog:
    """Registered for every client created from now on (the CLI creates its own)."""
    monitoring.register(_LOG)
    return _LOG


@pytest.fixture
def store_kind(command_log: CommandLog) -> str:
    """The real server only: the embedded store sends no commands."""
    return "real"


def leading_fields(collection: str) -> set[str]:
    return {"_id"} | {next(iter(model.document["key"])) for model in INDEXES.get(collection, [])}


def _constrained(query: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    for key, value in query.items():
        if key == "$and":
            for part in value:
                fields |= _constrained(part)
        elif key.startswith("$"):
            continue  # $or is checked branch by branch in served()
        elif not isinstance(value, dict) or not all(k.startswith("$") for k in value):
            fields.add(key)
        elif CONSTRAINING & set(value):
            fields.add(key)
    return fields


def served(collection: str, query: dict[str, Any]) -> bool:
    """Whether the filter constrains `_id` or the leading field of a declared index."""
    leading = leading_fields(collection)
    if _constrained(query) & leading:
        return True
    branches: list[dict[str, Any]] = query.get("$or") or []
    return bool(branches) and all(served(collection, branch) for branch in branches)


def unserved(commands: list[tuple[str, dict[str, Any]]]) -> list[str]:
    problems = []
    for name, command in commands:
        if name not in QUERIES:
            continue
        collection = command[name]
        if name == "find":
            filters = [command.get("filter", {})]
        elif name in ("count", "distinct", "findAndModify"):
            filters = [command.get("query", {})]
        elif name == "update":
            filters = [u["q"] for u in command["updates"]]
        elif name == "delete":
            filters = [d["q"] for d in command["deletes"]]
        else:  # aggregate
            first = command["pipeline"][0] if command["pipeline"] else {}
            if "$match" not in first:
                problems.append(f"aggregate on {collection} without a leading $match: {command['pipeline']}")
                continue
            filters = [first["$match"]]
        problems += [f"{name} on {collection}: {f}" for f in filters if not served(collection, f)]
    return problems


def _statements(command: dict[str, Any]) -> int:
    """How many statements a write carries, or `_id`s a find asks for."""
    for key in ("updates", "documents", "deletes"):
        if key in command:
            return len(command[key])
    ids = command.get("filter", {}).get("_id")
    return len(ids["$in"]) if isinstance(ids, dict) and "$in" in ids else 1


def test_the_checker_flags_what_no_index_serves() -> None:
    assert served("sessions", {"eventId": "ev1", "title": {"$regex": "x"}})
    assert served("sessions", {"_id": {"$in": ["a"]}})
    assert served("segment_inbox", {"receivedAt": {"$lte": 1}})
    assert not served("sessions", {"title": "x"})
    assert not served("segment_inbox", {})
    assert not served("sessions", {"eventId": {"$ne": "ev1"}})
    assert served("sessions", {"$or": [{"_id": "a"}, {"eventId": "b"}]})
    assert not served("sessions", {"$or": [{"_id": "a"}, {"title": "b"}]})
    assert unserved([("aggregate", {"aggregate": "segment_inbox", "pipeline": [{"$group": {"_id": "$x"}}]})])


def _cli(args: list[str], env: dict[str, str]) -> str:
    get_settings.cache_clear()
    try:
        from web.cli import main

        result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


async def test_every_query_of_the_main_flows_is_served_by_a_declared_index(
    command_log: CommandLog,
    client: Client,
    database: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_server: Redis,
) -> None:
    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    name = settings.mongodb_database_name
    env = {"MONGODB_URL": settings.mongodb_url, "REDIS_URL": redis_server.url(), "LOG_JSON": "false"}
    seen: Counter[str] = Counter()

    def check(commands: list[tuple[str, dict[str, Any]]], flow: str) -> None:
        assert commands, f"{flow} sent no command"
        assert unserved(commands) == [], flow
        seen.update(n for n, _ in commands)

    async with run_fake_providers(
        videos=[FakeVideo(provider="YOUTUBE", video_id="vid", duration=1800)]
    ) as fake:
        synced = settings.model_copy(update=fake.settings_overrides())
        with command_log.recording(name) as commands:
            host = await login(client, "organizer")
        check(commands, "login")
        with command_log.recording(name) as commands:
            for body in (
                {"eventId": "ev1", "title": "Keynote", "format": "MAINSTAGE_SESSION"},
                {"eventId": "ev1", "title": "Keynote", "format": "BREAKOUT_SESSION"},
            ):
                response = await client.put(
                    "/rest/host/session/s1",
                    json={
                        **body,
                        "startTime": "2024-05-01T09:00:00Z",
                        "endTime": "2024-05-01T10:00:00Z",
                        "streamProvider": "YOUTUBE",
                        "videoId": "vid",
                    },
                    headers=host,
                )
                assert response.status in (200, 201)
        check(commands, "PUT")
        await add_session(database, "s2")
        keys = await ingest_headers(database, ["ev1"])
        with command_log.recording(name) as commands:
            segments = [watch_segment(f"g{n}", f"s{1 + n % 2}", f"u{n}") for n in range(20)]
            for _ in range(2):  # the second time: all duplicates
                response = await client.post("/rest/events/ev1/watch-segments", json=segments, headers=keys)
                assert response.status == 200
            identified = [{**registration("s1", f"u{n}"), "email": f"u{n}@example.com"} for n in range(3)]
            for items in ([registration("s1", "u1")], identified, identified):  # new, then unchanged
                response = await client.post("/rest/events/ev1/registrations", json=items, headers=keys)
                assert response.status == 200
        check(commands, "ingestion")
        with command_log.recording(name) as commands:
            await rollup_event(database, settings, "ev1")
            await sync_durations(database, synced)
            await rollup_pending(database, settings)
        check(commands, "rollup and duration sync")
        with command_log.recording(name) as commands:
            for path in (
                "/rest/host/session/analytics?eventId=ev1",
                "/rest/host/session/analytics?eventId=ev1&searchString=key&sessionFormat=BREAKOUT_SESSION"
                "&sort=-attendeeCount&expand=duration,watchTime&page=1&size=1",
                "/rest/host/session/s1/analytics",
                "/rest/host/session/s1/attendee?sort=lastName",
                "/rest/host/session/s1/attendee?searchString=example",
                "/rest/host/session/s1/attendee/csv?sort=registeredAt",
                "/rest/host/session/analytics/csv?eventId=ev1",
                "/rest/host/session/analytics/csv?eventId=ev1&searchString=key&sessionFormat=BREAKOUT_SESSION"
                "&sort=-liveViews",
                "/rest/host/session/s1/viewers",
                "/rest/host/session/s1/attendee?attended=false&minCompletion=0&sort=-firstJoinedAt",
                "/rest/host/event/ev1/analytics",
                "/rest/host/event/ev1/attendee?sort=lastName&attended=true",
                "/rest/host/event/ev1/attendee?searchString=example&minCompletion=10&sort=-completion",
                "/rest/host/event/ev1/attendee/csv?sort=firstJoinedAt&attended=false",
            ):
                response = await client.get(path, headers=host)
                assert response.status == 200, (path, await response.text())
        check(commands, "host reads")
        with command_log.recording(name) as commands:
            assert (await client.delete("/rest/host/event/ev1/attendee/u1", headers=host)).status == 204
        check(commands, "erasure")
        with command_log.recording(name) as commands:
            response = await client.post("/rest/host/session/analytics/recompute?eventId=ev1", headers=host)
            task_id = (await response.json())["taskId"]
            assert (await client.get(f"/rest/host/tasks/{task_id}", headers=host)).status == 200
            await recompute_event(database, synced, task_id, "ev1", sync_event_durations)
            await cleanup_expired(database)
            assert (await client.post("/rest/u/logout", headers=host)).status == 204
        check(commands, "recompute, cleanup, logout")

    sessions_csv = tmp_path / "sessions.csv"
    sessions_csv.write_text(
        "sessionId,eventId,title,startTime,endTime,format,streamProvider,videoId\n"
        "imp1,ev1,Imported,2024-05-01T09:00:00Z,2024-05-01T10:00:00Z,BREAKOUT_SESSION,VIMEO,v1\n"
        "s2,ev1,Renamed,2024-05-01T09:00:00Z,2024-05-01T10:00:00Z,BREAKOUT_SESSION,YOUTUBE,vid\n"
    )
    with command_log.recording(name) as commands:
        for args in (
            ["create-event", "--id", "ev3", "--organizer", "org1", "--name", "Third"],
            [
                "create-user",
                "--email",
                "new@example.com",
                "--password",
                "long enough",
                "--role",
                "SUPER_ADMIN",
            ],
            [
                "create-user",
                "--email",
                "new@example.com",
                "--password",
                "changed it",
                "--role",
                "SUPER_ADMIN",
            ],
            ["create-ingest-key", "--event", "ev1"],
            ["import-sessions", str(sessions_csv)],
            ["recompute", "--event", "ev3"],
        ):
            await asyncio.to_thread(_cli, args, env)
    check(commands, "command line")
    assert {"find", "aggregate", "update", "delete", "insert", "findAndModify"} <= set(seen), seen


async def _event_with_attendance(
    client: Client, database: Database, event_id: str, sessions: int, per_session: int
) -> None:
    """`sessions` sessions in a fresh event, each given `per_session` new segments."""
    from shared.admin import create_event

    await create_event(database, event_id, "org1", event_id)
    await add_session(database, f"{event_id}-first", event_id)
    ids = [f"{event_id}-first"] + await clone_sessions(
        database, f"{event_id}-first", sessions - 1, prefix=event_id
    )
    headers = await ingest_headers(database, [event_id])
    items = [
        watch_segment(f"{event_id}-{n}", ids[n % sessions], f"u{n % 97}", start=T0)
        for n in range(sessions * per_session)
    ]
    for i in range(0, len(items), 1000):
        response = await client.post(
            f"/rest/events/{event_id}/watch-segments", json=items[i : i + 1000], headers=headers
        )
        assert (await response.json())["accepted"] == len(items[i : i + 1000])


async def test_a_rollup_costs_the_same_round_trips_over_100_or_1000_sessions(
    command_log: CommandLog, client: Client, database: Database, settings: Settings
) -> None:
    from shared.db import connect

    await seed_world(database)
    name = settings.mongodb_database_name
    patient = connect(settings)
    trips = {}
    for event_id, sessions in (("small", 100), ("large", 1000)):
        await _event_with_attendance(client, database, event_id, sessions, per_session=2)
        # New attendance only (new sessions also carry a flag for their first rollup).
        await patient.sessions.update_many({"eventId": event_id}, {"$set": {"rollupPending": False}})
        with command_log.recording(name) as commands:
            result = await rollup_event(patient, settings, event_id)
        assert (result.sessions, result.items) == (sessions, 2 * sessions)
        # Lease renewals are left out: besides one per batch, the holder renews every third of
        # the lease's lifetime, so their number follows the time the test server takes. A list
        # of statements (or of `_id`s read) longer than WRITE_BATCH goes in pieces of its own
        # commands: those beyond the first piece are counted apart.
        sent = [
            (n, c)
            for n, c in commands
            if n in QUERIES | {"insert", "getMore"} and c.get(n) != "rollup_leases"
        ]
        pieces: Counter[str] = Counter()
        for i, (n, c) in enumerate(sent):
            later = any(m == n and d.get(m) == c.get(n) for m, d in sent[i + 1 :])
            pieces[n] += _statements(c) == settings.write_batch and later
        trips[event_id] = Counter(n for n, _ in sent)
        trips[event_id].subtract(pieces)
    patient.close()
    assert await sessions_with_work(database) == []
    print(
        f"round trips per rollup beyond pieces: {dict(trips['small'])} (100), {dict(trips['large'])} (1,000)"
    )
    assert trips["small"] == trips["large"]
    # Reads: the summary, inbox, flagged, sessions, event, rows, people, edges, the event's
    # webhook endpoints (the hook of DESIGN §5); writes: the commit, rows, sessions, people,
    # edges, flags, version, the webhook outbox, clearing what was pending; the inbox consumed.
    assert sum(trips["large"].values()) <= 22


async def test_a_rollup_writes_only_the_rows_of_users_with_new_attendance(
    command_log: CommandLog, client: Client, database: Database, settings: Settings
) -> None:
    """Bytes written follow new attendance, not the session's size: a session of 500 attendees
    that gets three new segments (two known users, one new) writes three rows and one session."""
    await seed_world(database)
    await add_session(database, "big")
    headers = await ingest_headers(database, ["ev1"])
    crowd = [watch_segment(f"c{n}", "big", f"u{n:03d}", start=T0) for n in range(500)]
    assert (await (await client.post(SEGMENTS, json=crowd, headers=headers)).json())["accepted"] == 500
    await rollup_event(database, settings, "ev1")
    later = T0 + timedelta(hours=1)
    new = [watch_segment(f"n{n}", "big", user, start=later) for n, user in enumerate(["u001", "u002", "new"])]
    assert (await (await client.post(SEGMENTS, json=new, headers=headers)).json())["accepted"] == 3

    with command_log.recording(settings.mongodb_database_name) as commands:
        result = await rollup_event(database, settings, "ev1")
    assert (result.sessions, result.items) == (1, 3)

    def updates(collection: str) -> list[dict[str, Any]]:
        return [u for n, c in commands if n == "update" and c["update"] == collection for u in c["updates"]]

    def inserts(collection: str) -> list[dict[str, Any]]:
        return [d for n, c in commands if n == "insert" and c["insert"] == collection for d in c["documents"]]

    assert sorted(u["q"]["_id"] for u in updates("attendees")) == ["big:u001", "big:u002"]
    assert [d["_id"] for d in inserts("attendees")] == ["big:new"]
    assert [u["q"]["_id"] for u in updates("sessions") if "attendeeCount" in u["u"]["$set"]] == ["big"]
    # The event's audience follows the same three users: their people, the edges their unions end in.
    assert sorted(u["q"]["_id"] for u in updates("people")) == ["ev1:u001", "ev1:u002"]
    assert [d["_id"] for d in inserts("people")] == ["ev1:new"]
    written = sum(len(bson.encode(c)) for n, c in commands if n in ("update", "insert", "delete"))
    # Three rows, their people, the session's numbers and edges, the summary — and the commit,
    # which carries them all once more: the session's 500 rows alone would be ~150 KB.
    assert written < 24_000, written
    summary = await database.event_summaries.find_one({"_id": "ev1"})
    assert summary is not None and "pending" not in summary


async def test_a_recompute_claim_and_its_rollup_send_only_indexed_queries(
    command_log: CommandLog, client: Client, database: Database, settings: Settings
) -> None:
    # A recompute whose event has input queued while it runs: the rollup it hands over to.
    await seed_world(database)
    await add_session(database, "s1")
    headers = await ingest_headers(database, ["ev1"])
    await client.post("/rest/events/ev1/watch-segments", json=[watch_segment("g1", "s1")], headers=headers)
    task, _ = await claim_recompute(database, "ev1", settings.recompute_stale_s)
    with command_log.recording(settings.mongodb_database_name) as commands:
        await recompute_event(database, settings, task["_id"], "ev1")
    assert unserved(commands) == []
    assert found(await database.sessions.find_one({"_id": "s1"}))["attendeeCount"] == 1


async def test_every_query_of_the_webhook_flows_is_served_by_a_declared_index(
    command_log: CommandLog,
    client: Client,
    database: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registration, the hook's outbox, a delivery run (its sending stood in for: no traffic
    leaves the machine), the log, a redelivery, the sweep and deletion."""
    import worker.webhooks
    from shared.hooks import analytics_written
    from worker.webhooks import Attempt, deliver_webhook, endpoints_due, forget_old_deliveries

    async def delivered(*args: Any) -> Attempt:
        return Attempt(ok=True, status=200)

    monkeypatch.setattr(worker.webhooks, "send", delivered)
    await seed_world(database)
    await add_session(database, "s1")
    host = await login(client, "organizer")
    name = settings.mongodb_database_name
    with command_log.recording(name) as commands:
        body = {
            "url": "https://93.184.216.34/hook",
            "topics": ["session.analytics.updated"],
            "eventId": "ev1",
        }
        response = await client.post("/rest/host/webhooks", json=body, headers=host)
        assert response.status == 201, await response.text()
        webhook_id = (await response.json())["webhookId"]
        by_organizer = body | {"eventId": None, "organizerId": "org1"}
        assert (await client.post("/rest/host/webhooks", json=by_organizer, headers=host)).status == 201
        await analytics_written(database, settings, "ev1", ["s1"], kind="rollup")
        result = await deliver_webhook(database, settings, webhook_id)
        assert result.delivered == 1
        for path in (
            "/rest/host/webhooks?eventId=ev1",
            "/rest/host/webhooks?organizerId=org1",
            f"/rest/host/webhooks/{webhook_id}",
            f"/rest/host/webhooks/{webhook_id}/deliveries",
        ):
            assert (await client.get(path, headers=host)).status == 200
        log = await (await client.get(f"/rest/host/webhooks/{webhook_id}/deliveries", headers=host)).json()
        again = f"/rest/host/webhooks/{webhook_id}/deliveries/{log['data'][0]['deliveryId']}/redeliver"
        assert (await client.post(again, headers=host)).status == 202
        await endpoints_due(database)
        await forget_old_deliveries(database, settings)
        assert (await client.delete(f"/rest/host/webhooks/{webhook_id}", headers=host)).status == 204
    assert unserved(commands) == []
    assert {"find", "insert", "update", "delete", "findAndModify", "distinct"} <= {n for n, _ in commands}
