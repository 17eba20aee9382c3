"""Rolled-up numbers against tests/oracle.py: attendance posted over HTTP, rolled up in process,
read back through the list, the detail, the attendee pages and the CSV."""

from __future__ import annotations

import csv
import io
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from shared.db import Database
from shared.inbox import uncommitted_grace_s
from shared.jobs import claim_recompute
from shared.settings import Settings
from shared.store import now
from tests import oracle
from tests.conftest import Client
from tests.seed import (
    T0,
    add_session,
    cheap_password_hashing,
    ingest_headers,
    login,
    seed_world,
)
from worker.rollup import (
    EventLease,
    recompute_event,
    rollup_event,
    rollup_pending,
    sessions_with_work,
)

BATCH = 700  # items per ingestion request
EDGE_USERS = 20  # per session, each watching exactly the view threshold once


@dataclass(frozen=True)
class SessionSpec:
    session_id: str
    title: str
    session_format: str
    provider: str | None
    duration: float | None  # what the session document holds once its video is known


SESSIONS = (
    SessionSpec("yt-long", "Opening Keynote", "MAINSTAGE_SESSION", "YOUTUBE", 1800.5),
    SessionSpec("vimeo-short", 'Teaser, "ten seconds"', "BREAKOUT_SESSION", "VIMEO", 12.345),
    SessionSpec("voxeet-unknown", "Live Q&A", "BREAKOUT_SESSION", "VOXEET", None),
    SessionSpec("tokbox-30", "Exactly Thirty", "BREAKOUT_SESSION", "TOKBOX", 30.0),
    SessionSpec("yt-zero", "Zero-Length Video", "BREAKOUT_SESSION", "YOUTUBE", 0.0),
    SessionSpec("wistia", "Customer Stories", "BREAKOUT_SESSION", "WISTIA", 600.0),
    SessionSpec("zoom", "Town Hall", "MAINSTAGE_SESSION", "ZOOM", None),
    SessionSpec("facebook", "Social Stream", "BREAKOUT_SESSION", "FACEBOOK", None),
    SessionSpec("workshop", "Hands-on Lab", "WORKSHOP_SESSION", None, None),
    # Rule 8: a networking session has no video, even if its document holds a duration.
    SessionSpec("networking", "Speed Networking", "NETWORKING_SESSION", "YOUTUBE", 900.0),
    SessionSpec("no-stream", "Hallway Track", "BREAKOUT_SESSION", None, None),
    SessionSpec("empty", "Nobody Came", "BREAKOUT_SESSION", "VIMEO", 300.0),
)
SPEC = {spec.session_id: spec for spec in SESSIONS}
# Enough kinds of session for the tests of rollup mechanics, at a fraction of the writes.
FEW = tuple(SPEC[s] for s in ("yt-long", "vimeo-short", "tokbox-30", "zoom", "workshop", "empty"))


def start_of(spec: SessionSpec) -> datetime:
    """Sessions start an hour apart, in the order of SESSIONS."""
    return T0 + timedelta(hours=SESSIONS.index(spec))


def ms_of(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


@dataclass
class World:
    """The sessions of ev1, what was posted for them, and the durations their documents hold."""

    sessions: tuple[SessionSpec, ...]
    segments: list[dict[str, Any]]
    registrations: list[dict[str, Any]]
    durations: dict[str, float | None]
    _answers: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @property
    def session_ids(self) -> list[str]:
        return [spec.session_id for spec in self.sessions]

    def _oracle(self, function: Any, session_id: str) -> Any:
        # Items are only ever appended: their counts tell whether an answer is still current.
        key = (function, session_id, len(self.segments), len(self.registrations))
        if key not in self._answers:
            spec = SPEC[session_id]
            self._answers[key] = function(
                self.segments,
                self.registrations,
                self.durations[session_id],
                spec.provider,
                session_format=spec.session_format,
                session_id=session_id,
            )
        return self._answers[key]

    def expected(self, session_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._oracle(oracle.expected_session, session_id)
        return answer

    def expected_rows(self, session_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._oracle(oracle.expected_attendees, session_id)
        return rows


def make_world(
    seed: int, users: int, sessions: tuple[SessionSpec, ...] = FEW, *, known_durations: bool = True
) -> World:
    """Registrations and overlapping LIVE/RECORDING segments, many of them right at a threshold.

    Everyone in the pool comes to the first session; a random quarter to half to each other.
    """
    rng = random.Random(seed)
    pool = [f"user-{n:03d}" for n in range(users)]
    segments: list[dict[str, Any]] = []
    registrations: list[dict[str, Any]] = []
    for spec in sessions:
        if spec.session_id == "empty":
            continue
        begins = ms_of(start_of(spec))
        threshold_ms = round(oracle.view_threshold(spec.duration) * 1000)
        at_threshold = [threshold_ms, threshold_ms - 1, threshold_ms + 1, 30_000, 29_999, 12_345]
        audience = (
            pool if spec is sessions[0] else rng.sample(pool, rng.randint(len(pool) // 4, len(pool) // 2))
        )
        for user in audience:
            if rng.random() < 0.55:
                registrations.append(
                    {
                        "sessionId": spec.session_id,
                        "userId": user,
                        "registeredAt": oracle.iso(begins - rng.randint(3_600_000, 14 * 86_400_000)),
                    }
                )
            if rng.random() < 0.25:
                continue  # registered (or not) and never came
            anchor = begins + rng.randrange(0, 3_600_000)
            for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
                kind = rng.random()
                if kind < 0.3:
                    length = rng.choice(at_threshold)
                elif kind < 0.65:
                    length = rng.randint(1, 60_000)
                else:
                    length = rng.randint(60_000, 2_400_000)
                start = anchor + rng.randint(-30_000, 90_000)
                copies = 2 if rng.random() < 0.1 else 1  # two tabs open at once
                for _ in range(copies):
                    segments.append(
                        {
                            "segmentId": f"{spec.session_id}-{len(segments)}",
                            "sessionId": spec.session_id,
                            "userId": user,
                            "mode": rng.choice(["LIVE", "RECORDING"]),
                            "start": oracle.iso(start),
                            "end": oracle.iso(start + length),
                        }
                    )
        # Watches of exactly T at odd milliseconds: float seconds since 1970 would fall short.
        for k in range(EDGE_USERS):
            start = begins + rng.randrange(0, 3_600_000)
            segments.append(
                {
                    "segmentId": f"{spec.session_id}-edge-{k}",
                    "sessionId": spec.session_id,
                    "userId": f"edge-{k:02d}",
                    "mode": "LIVE" if k % 2 else "RECORDING",
                    "start": oracle.iso(start),
                    "end": oracle.iso(start + threshold_ms),
                }
            )
    rng.shuffle(segments)
    rng.shuffle(registrations)
    durations = {s.session_id: s.duration if known_durations else None for s in sessions}
    return World(sessions, segments, registrations, durations)


async def create_sessions(database: Database, world: World) -> None:
    for spec in world.sessions:
        await add_session(
            database,
            spec.session_id,
            title=spec.title,
            start=start_of(spec),
            session_format=spec.session_format,
            provider=spec.provider,
            video_id="vid" if spec.provider else None,
        )
    await set_durations(database, world.durations)


async def set_durations(database: Database, durations: dict[str, float | None]) -> None:
    for session_id, duration in durations.items():
        await database.sessions.update_one({"_id": session_id}, {"$set": {"duration": duration}})


async def post_all(
    client: Client, headers: dict[str, str], path: str, items: list[dict[str, Any]], *, repeated: bool = False
) -> None:
    """Post in batches; every item must be taken (or, when `repeated`, be a duplicate)."""
    taken = duplicates = 0
    for i in range(0, len(items), BATCH):
        response = await client.post(path, json=items[i : i + BATCH], headers=headers)
        body = await response.json()
        assert response.status == 200, body
        assert body["rejected"] == [], body["rejected"][:3]
        taken += body["accepted"]
        duplicates += body["duplicates"]
    assert (taken, duplicates) == ((0, len(items)) if repeated else (len(items), 0))


async def ingest(client: Client, database: Database, world: World, *, repeated: bool = False) -> None:
    headers = await ingest_headers(database, ["ev1"])
    await post_all(client, headers, "/rest/events/ev1/registrations", world.registrations, repeated=repeated)
    await post_all(client, headers, "/rest/events/ev1/watch-segments", world.segments, repeated=repeated)


async def world_rolled_up(
    client: Client,
    database: Database,
    settings: Settings,
    seed: int,
    users: int,
    sessions: tuple[SessionSpec, ...] = FEW,
) -> World:
    """Sessions created, attendance posted over HTTP, and one rollup run."""
    world = make_world(seed, users, sessions)
    await create_sessions(database, world)
    await ingest(client, database, world)
    assert (await rollup_pending(database, settings))["busyEvents"] == 0
    assert await sessions_with_work(database) == []
    return world


@pytest.fixture
async def host(client: Client, database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    return await login(client, "event_admin")


@pytest.fixture
def rollup_settings(settings: Settings) -> Settings:
    # Small batches: a rollup takes several, each bounded in sessions or in items.
    return settings.model_copy(
        update={
            "rollup_batch_sessions": 5,
            "rollup_batch_items": 500,
            "segment_read_batch": 97,
        }
    )


# --- what the API answers, against the oracle ---------------------------------------------------


LIST_NUMBERS = (
    "registeredUserCount",
    "attendeeCount",
    "avgAttendedDuration",
    "liveViews",
    "recordingViews",
    "analyticsAvailable",
    "duration",
    "watchTime",
)


def assert_numbers(actual: dict[str, Any], expected: dict[str, Any], session_id: str) -> None:
    flat = {key: value for key, value in expected.items() if key != "watchTime"}
    assert {key: actual[key] for key in flat} == pytest.approx(flat), session_id
    assert actual["watchTime"] == pytest.approx(expected["watchTime"]), session_id


async def get_json(client: Client, headers: dict[str, str], path: str) -> Any:
    response = await client.get(path, headers=headers)
    body = await response.json()
    assert response.status == 200, body
    return body


async def list_answer(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    answer: dict[str, Any] = await get_json(
        client,
        headers,
        "/rest/host/session/analytics?eventId=ev1&size=500&expand=duration,watchTime",
    )
    return answer


async def assert_list_matches(client: Client, headers: dict[str, str], world: World) -> None:
    body = await list_answer(client, headers)
    assert body["recordsTotal"] == len(world.sessions)
    assert [item["sessionId"] for item in body["data"]] == world.session_ids
    for item in body["data"]:
        assert item["analyticsUpdatedAt"] is not None
        expected = world.expected(item["sessionId"])
        assert_numbers(item, {key: expected[key] for key in LIST_NUMBERS}, item["sessionId"])


async def assert_details_match(client: Client, headers: dict[str, str], world: World) -> None:
    for session_id in world.session_ids:
        detail = await get_json(client, headers, f"/rest/host/session/{session_id}/analytics")
        assert_numbers(detail, world.expected(session_id), session_id)


async def attendee_pages(
    client: Client, headers: dict[str, str], session_id: str, size: int
) -> list[dict[str, Any]]:
    """Every row, walking the pages; each page but the last is full."""
    rows: list[dict[str, Any]] = []
    page = 0
    while True:
        body = await get_json(
            client, headers, f"/rest/host/session/{session_id}/attendee?page={page}&size={size}"
        )
        assert (body["page"], body["size"]) == (page, size)
        assert len(body["data"]) <= size
        rows += body["data"]
        if len(rows) >= body["recordsTotal"]:
            assert len(rows) == body["recordsTotal"]
            after = await get_json(
                client,
                headers,
                f"/rest/host/session/{session_id}/attendee?page={page + 1}&size={size}",
            )
            assert after["data"] == []
            return rows
        assert len(body["data"]) == size, (session_id, page)
        page += 1


async def assert_attendees_match(
    client: Client,
    headers: dict[str, str],
    world: World,
    sizes: tuple[int, ...],
    sessions: tuple[str, ...] | None = None,
) -> None:
    for session_id in sessions or world.session_ids:
        expected = oracle.listed_attendees(world.expected_rows(session_id))
        for size in sizes:
            rows = await attendee_pages(client, headers, session_id, size)
            assert rows == [pytest.approx(row) for row in expected], (session_id, size)


def csv_number(cell: str, expected: float | None) -> None:
    if expected is None:
        assert cell == ""
    else:
        assert re.fullmatch(r"\d+\.\d\d", cell), cell
        assert float(cell) == pytest.approx(expected, abs=0.005 + 1e-9)


async def csv_rows(client: Client, headers: dict[str, str]) -> list[list[str]]:
    response = await client.get("/rest/host/session/analytics/csv?eventId=ev1", headers=headers)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/csv"
    return list(csv.reader(io.StringIO(await response.text())))


async def assert_csv_matches(client: Client, headers: dict[str, str], world: World) -> None:
    header, *rows = await csv_rows(client, headers)
    assert header == [
        "Session Name",
        "Session Date (UTC)",
        "Session Length",
        "Number of Attendees Registered",
        "Number of Views (Live)",
        "Average Watch Time (Live)",
        "Engagement (Live)",
        "Number of Views (Recorded)",
        "Average Watch Time (Recorded)",
        "Engagement (Recorded)",
        "Session Length Status",
    ]
    assert len(rows) == len(world.sessions)
    for spec, row in zip(world.sessions, rows, strict=True):
        want = world.expected(spec.session_id)
        name, date, length, registered, live_views, live_avg, live_eng, rec_views, rec_avg, rec_eng, _ = row
        assert (name, date) == (spec.title, oracle.iso(ms_of(start_of(spec))).replace("Z", "+00:00"))
        csv_number(length, want["duration"])
        assert registered == str(want["registeredUserCount"])
        assert live_views == ("" if want["liveViews"] is None else str(want["liveViews"]))
        assert rec_views == ("" if want["recordingViews"] is None else str(want["recordingViews"]))
        csv_number(live_avg, want["avgLiveWatchDuration"])
        csv_number(live_eng, want["liveEngagement"])
        csv_number(rec_avg, want["avgRecordingWatchDuration"])
        csv_number(rec_eng, want["recordingEngagement"])


async def viewers_answers(client: Client, headers: dict[str, str], world: World) -> dict[str, Any]:
    return {
        session_id: await get_json(client, headers, f"/rest/host/session/{session_id}/viewers")
        for session_id in world.session_ids
    }


async def assert_viewers_match(client: Client, headers: dict[str, str], world: World) -> None:
    """Rule 9 for every session (those without analytics and the empty one included)."""
    answers = await viewers_answers(client, headers, world)
    for spec in world.sessions:
        start = oracle.iso(ms_of(start_of(spec)))
        expected = oracle.expected_viewers(world.segments, spec.session_id, start, "UTC")
        assert answers[spec.session_id] == expected, spec.session_id
    if "empty" in answers:
        assert answers["empty"]["live"] == {"points": [], "peakConcurrent": 0, "peakAt": None}


async def assert_everything_matches(
    client: Client, headers: dict[str, str], world: World, sizes: tuple[int, ...] = (50,)
) -> None:
    await assert_viewers_match(client, headers, world)
    await assert_list_matches(client, headers, world)
    await assert_details_match(client, headers, world)
    await assert_attendees_match(client, headers, world, sizes)
    await assert_csv_matches(client, headers, world)


async def api_answers(client: Client, headers: dict[str, str], world: World) -> dict[str, Any]:
    """Everything a host can read about ev1, minus when it was computed."""
    listing = await list_answer(client, headers)
    for item in listing["data"]:
        item.pop("analyticsUpdatedAt")
    details, attendees = {}, {}
    for session_id in world.session_ids:
        details[session_id] = await get_json(client, headers, f"/rest/host/session/{session_id}/analytics")
        details[session_id].pop("analyticsUpdatedAt")
        attendees[session_id] = await attendee_pages(client, headers, session_id, 500)
    return {
        "list": listing,
        "details": details,
        "attendees": attendees,
        "csv": await csv_rows(client, headers),
        "viewers": await viewers_answers(client, headers, world),
    }


# --- the tests ----------------------------------------------------------------------------


async def test_rolled_up_numbers_match_the_design_in_list_detail_attendees_and_csv(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    world = make_world(seed=1, users=240, sessions=SESSIONS)
    await create_sessions(database, world)
    await ingest(client, database, world)

    result = await rollup_pending(database, rollup_settings)

    # Sessions are written once per batch that touches them: at least once each.
    assert result["sessions"] >= len(SESSIONS)
    assert result["items"] == len(world.segments) + len(world.registrations)
    assert result["busyEvents"] == 0
    assert await sessions_with_work(database) == []
    await assert_list_matches(client, host, world)
    await assert_details_match(client, host, world)
    await assert_csv_matches(client, host, world)
    await assert_viewers_match(client, host, world)
    # Pages of several sizes: the database pages the rows.
    await assert_attendees_match(client, host, world, (50, 500))
    await assert_attendees_match(client, host, world, (5, 7, 14), sessions=("vimeo-short", "zoom"))
    await assert_attendees_match(client, host, world, (7,), sessions=("yt-long",))


async def test_numbers_before_and_after_a_recompute_with_new_durations_match_the_design(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    unknown = make_world(seed=2, users=80, sessions=SESSIONS, known_durations=False)
    await create_sessions(database, unknown)
    await ingest(client, database, unknown)
    await rollup_pending(database, rollup_settings)
    await assert_everything_matches(client, host, unknown)

    known = make_world(seed=2, users=80, sessions=SESSIONS)
    assert (known.segments, known.registrations) == (unknown.segments, unknown.registrations)
    await set_durations(database, known.durations)
    task, created = await claim_recompute(database, "ev1", rollup_settings.recompute_stale_s)
    assert created
    result = await recompute_event(database, rollup_settings, task["_id"], "ev1", sync_durations=None)

    assert result == {"sessions": len(SESSIONS), "durations": {}}
    status = await get_json(client, host, f"/rest/host/tasks/{task['_id']}")
    assert status["state"] == "SUCCESS"
    assert status["progress"]["done"] == status["progress"]["total"] > len(SESSIONS)
    await assert_everything_matches(client, host, known)


async def test_rolling_up_twice_writes_the_same_documents(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    world = await world_rolled_up(client, database, rollup_settings, seed=3, users=40)

    async def stored() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        sessions = await database["sessions"].find({}).sort("_id", 1).to_list(None)
        for doc in sessions:
            assert doc.pop("analyticsUpdatedAt") is not None  # when it ran: all else must repeat
        rows = await database["attendees"].find({}).sort("_id", 1).to_list(None)
        return sessions, rows

    first = await stored()
    assert len(first[1]) == sum(len(world.expected_rows(s)) for s in world.session_ids)
    await database.sessions.update_many({}, {"$set": {"rollupPending": True}})
    await rollup_pending(database, rollup_settings)

    assert await stored() == first
    await assert_everything_matches(client, host, world)


class _SessionsThatFailOnce:
    """The sessions collection, whose first bulk write of numbers fails as a lost connection."""

    def __init__(self, collection: Any, failed: list[bool]) -> None:
        self._collection, self._failed = collection, failed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def _fail_once(self) -> None:
        if not self._failed:
            self._failed.append(True)
            raise AutoReconnect("connection lost after the rows were written (test)")

    async def update_one(self, query: dict[str, Any], update: dict[str, Any], *a: Any, **k: Any) -> Any:
        if "attendeeCount" in update.get("$set", {}):
            await self._fail_once()
        return await self._collection.update_one(query, update, *a, **k)

    async def bulk_write(self, ops: list[Any], *args: Any, **kwargs: Any) -> Any:
        if any("attendeeCount" in op._doc.get("$set", {}) for op in ops):
            await self._fail_once()
        return await self._collection.bulk_write(ops, *args, **kwargs)


@dataclass
class _FailingSessionsDatabase(Database):
    failed: list[bool] = field(default_factory=list)

    @property
    def sessions(self) -> Any:
        return _SessionsThatFailOnce(self.db.sessions, self.failed)


async def test_a_rollup_that_died_between_its_rows_and_its_numbers_is_made_right_by_the_next(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    world = make_world(seed=8, users=40)
    await create_sessions(database, world)
    await ingest(client, database, world)
    failing = _FailingSessionsDatabase(database.client, database.db)

    with pytest.raises(AutoReconnect):
        await rollup_event(failing, rollup_settings, "ev1")

    # Some rows are written, no number yet, and nothing was consumed: all of it is still waiting.
    assert failing.failed == [True]
    assert await database.attendees.count_documents({}) > 0
    assert await sessions_with_work(database) == sorted(world.session_ids)
    await rollup_pending(database, rollup_settings)
    await assert_everything_matches(client, host, world)


def _writes_numbers_of(session_id: str, query: dict[str, Any], update: dict[str, Any]) -> bool:
    return query.get("_id") == session_id and "attendeeCount" in update.get("$set", {})


class _SessionsWithLateInput:
    """The sessions collection, letting input arrive just before a rollup writes the numbers."""

    def __init__(self, collection: Any, session_id: str, arrive: Any) -> None:
        self._collection, self._session_id, self._arrive = collection, session_id, arrive

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def update_one(
        self, query: dict[str, Any], update: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        if _writes_numbers_of(self._session_id, query, update):
            await self._arrive()
        return await self._collection.update_one(query, update, *args, **kwargs)

    async def bulk_write(self, ops: list[Any], *args: Any, **kwargs: Any) -> Any:
        if any(_writes_numbers_of(self._session_id, op._filter, op._doc) for op in ops):
            await self._arrive()
        return await self._collection.bulk_write(ops, *args, **kwargs)


@dataclass
class _LateInputDatabase(Database):
    session_id: str = ""
    arrive: Any = None

    @property
    def sessions(self) -> Any:
        return _SessionsWithLateInput(self.db.sessions, self.session_id, self.arrive)


async def test_input_arriving_during_a_rollup_is_folded_by_the_next_batch(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    world = make_world(seed=5, users=40)
    await create_sessions(database, world)
    await ingest(client, database, world)
    late = {
        "segmentId": "late-1",
        "sessionId": "tokbox-30",
        "userId": "late-comer",
        "mode": "LIVE",
        "start": "2024-05-01T12:10:00Z",
        "end": "2024-05-01T12:11:00Z",
    }
    headers = await ingest_headers(database, ["ev1"])
    arrived: list[dict[str, Any]] = []

    async def arrive() -> None:
        if not arrived:
            response = await client.post("/rest/events/ev1/watch-segments", json=[late], headers=headers)
            arrived.append(await response.json())

    during = _LateInputDatabase(database.client, database.db, "tokbox-30", arrive)
    one_batch = rollup_settings.model_copy(
        update={"rollup_batch_sessions": len(world.sessions), "rollup_batch_items": 100_000}
    )
    first = await rollup_event(during, one_batch, "ev1")

    assert arrived == [{"accepted": 1, "duplicates": 0, "rejected": []}]
    # The late item came after the batch's read: the batch left it, and says input is waiting.
    assert (first.sessions, first.items, first.more) == (
        len(world.sessions),
        len(world.segments) + len(world.registrations),
        True,
    )
    assert await sessions_with_work(database) == ["tokbox-30"]
    second = await rollup_event(database, one_batch, "ev1")
    assert (second.sessions, second.items, second.more) == (1, 1, False)
    assert await sessions_with_work(database) == []
    world.segments.append(late)
    await assert_everything_matches(client, host, world)
    rows = await attendee_pages(client, host, "tokbox-30", 500)
    assert {"userId": "late-comer", "attendedSeconds": 60.0} in [
        {key: row[key] for key in ("userId", "attendedSeconds")} for row in rows
    ]


async def test_posting_the_same_attendance_again_changes_no_number(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    world = await world_rolled_up(client, database, rollup_settings, seed=6, users=40)
    before = await api_answers(client, host, world)

    await ingest(client, database, world, repeated=True)
    # Duplicates are not queued; once their requests are over, the tick queues the stored
    # versions from their intents (shared/inbox.py), and folding those changes nothing.
    assert await sessions_with_work(database) == []
    late = now() - timedelta(seconds=uncommitted_grace_s(rollup_settings) + 1)
    await database.segment_intents.update_many({}, {"$set": {"receivedAt": late}})
    await rollup_pending(database, rollup_settings)
    assert await sessions_with_work(database) == []
    assert await database.segment_intents.count_documents({}) == 0

    assert await api_answers(client, host, world) == before
    await assert_everything_matches(client, host, world)


async def test_reused_segment_ids_and_repeated_registrations_change_no_number(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    world = await world_rolled_up(client, database, rollup_settings, seed=7, users=40)
    before = await api_answers(client, host, world)

    # The same ids with other content: longer segments in the other mode, later registrations.
    changed_segments = [
        {
            **s,
            "mode": "RECORDING" if s["mode"] == "LIVE" else "LIVE",
            "end": oracle.iso(oracle.to_ms(s["end"]) + 600_000),
        }
        for s in world.segments[:120]
    ]
    changed_registrations = [
        {**r, "registeredAt": oracle.iso(oracle.to_ms(r["registeredAt"]) + 1)}
        for r in world.registrations[:60]
    ]
    headers = await ingest_headers(database, ["ev1"])
    await post_all(client, headers, "/rest/events/ev1/watch-segments", changed_segments, repeated=True)
    await post_all(client, headers, "/rest/events/ev1/registrations", changed_registrations, repeated=True)
    await rollup_pending(database, rollup_settings)

    assert await api_answers(client, host, world) == before
    world.segments += changed_segments
    world.registrations += changed_registrations
    await assert_everything_matches(client, host, world)


async def test_rollups_leave_an_event_under_recompute_to_the_recompute(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    after = make_world(seed=8, users=40)
    half = len(after.segments) // 2
    before = World(after.sessions, after.segments[:half], after.registrations, after.durations)
    await create_sessions(database, before)
    await ingest(client, database, before)
    await rollup_pending(database, rollup_settings)
    await add_session(database, "elsewhere", "ev2")
    # A recompute of ev1 under way in another worker holds the event's lease.
    recompute = EventLease(database, "ev1", rollup_settings.rollup_lease_s, "recompute")
    assert await recompute.try_acquire()

    headers = await ingest_headers(database)
    await post_all(client, headers, "/rest/events/ev1/watch-segments", after.segments[half:])
    await post_all(
        client,
        headers,
        "/rest/events/ev2/watch-segments",
        [{**after.segments[0], "segmentId": "x1", "sessionId": "elsewhere"}],
    )
    touched = {s["sessionId"] for s in after.segments[half:]}
    result = await rollup_pending(database, rollup_settings)

    assert (result["sessions"], result["items"], result["busyEvents"]) == (1, 1, 1)
    assert set(await sessions_with_work(database)) == touched
    other = await get_json(client, await login(client, "super"), "/rest/host/session/elsewhere/analytics")
    assert other["attendeeCount"] == 1
    await assert_everything_matches(client, host, before)

    await recompute.release()
    task, _ = await claim_recompute(database, "ev1", rollup_settings.recompute_stale_s)
    await recompute_event(database, rollup_settings, task["_id"], "ev1", sync_durations=None)

    assert await sessions_with_work(database) == []
    await assert_everything_matches(client, host, after)
    assert await rollup_pending(database, rollup_settings) == {"sessions": 0, "items": 0, "busyEvents": 0}
    await assert_everything_matches(client, host, after)


async def test_a_lease_whose_holder_died_does_not_hold_back_rollups(
    client: Client, database: Database, host: dict[str, str], rollup_settings: Settings
) -> None:
    world = make_world(seed=9, users=30)
    await create_sessions(database, world)
    await database.rollup_leases.insert_one(
        {"_id": "ev1", "owner": "dead-worker", "kind": "recompute", "expiresAt": now() - timedelta(seconds=1)}
    )
    await ingest(client, database, world)

    result = await rollup_pending(database, rollup_settings)

    assert result["busyEvents"] == 0 and result["sessions"] >= len(world.sessions)
    assert await database.rollup_leases.count_documents({"_id": "ev1"}) == 0
    await assert_everything_matches(client, host, world)
