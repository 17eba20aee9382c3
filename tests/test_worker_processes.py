"""The worker as deployed: real Celery worker and beat processes on real Redis and MongoDB."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis

from shared.admin import create_ingest_key
from shared.db import Database, connect
from shared.settings import Settings
from tests.contract import validate_every_answer
from tests.oracle import expected_attendees, expected_session, listed_attendees
from tests.processes import CeleryProcess, eventually
from tests.seed import add_session, found, login, seed_world
from tests.servers import AnyMongo, Redis
from worker.rollup import sessions_with_work

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
PROVIDERS = ["YOUTUBE", "VIMEO", "ZOOM", "WISTIA", "TOKBOX", "FACEBOOK", None]
DURATIONS = [None, 12.0, 29.5, 30.0, 45.0, 3600.0]


@dataclass
class Stack:
    db: Database
    redis: Redis
    settings: Settings
    env: dict[str, str]
    http: Any
    headers: dict[str, str] = field(default_factory=dict)
    ingest_headers: dict[str, str] = field(default_factory=dict)
    processes: list[CeleryProcess] = field(default_factory=list)

    def start(self, role: str) -> CeleryProcess:
        process = CeleryProcess(role, self.env).start()
        self.processes.append(process)
        return process


@pytest.fixture
async def stack(mongo: AnyMongo, aiohttp_client: Any, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    from web.app import create_app

    broker = Redis()
    broker.start()
    name = f"w{abs(hash(request.node.nodeid)) % 10**8}"
    env = {
        "MONGODB_URL": mongo.url(name),
        "REDIS_URL": broker.url(),
        # Shortened for speed; test_attendance_shows_within_ten_seconds_at_default_settings
        # drops both and runs the defaults.
        "ROLLUP_INTERVAL_S": "1",
        "VISIBILITY_TIMEOUT_S": "6",
        "DURATION_SYNC_INTERVAL_S": "3600",
        # No provider is reachable from these tests: durations are set directly.
        "YOUTUBE_API_URL": "http://127.0.0.1:9/",
        "VIMEO_API_URL": "http://127.0.0.1:9/",
        "WISTIA_API_URL": "http://127.0.0.1:9/",
        "VONAGE_VIDEO_API_URL": "http://127.0.0.1:9/",
        "DOLBY_AUTH_URL": "http://127.0.0.1:9/",
        "DOLBY_COMMS_API_URL": "http://127.0.0.1:9/",
    }
    settings = Settings(
        mongodb_url=env["MONGODB_URL"],
        redis_url=env["REDIS_URL"],
        log_json=False,
        request_timeout_s=30.0,  # several servers and workers share two cores here
        mongodb_timeout_ms=1500,
    )
    db = connect(settings)
    await db.client.drop_database(name)
    await db.ensure_indexes()
    await seed_world(db)
    http = validate_every_answer(await aiohttp_client(create_app(settings)))
    stack = Stack(db=db, redis=broker, settings=settings, env=env, http=http)
    stack.headers = await login(http, "organizer")
    stack.ingest_headers = {"Authorization": f"Bearer {await create_ingest_key(db, ['ev1'])}"}
    yield stack
    for process in stack.processes:
        process.kill()
    await db.client.drop_database(name)
    db.close()
    broker.close()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Attendance:
    sessions: dict[str, dict[str, Any]]
    segments: list[dict[str, Any]]
    registrations: list[dict[str, Any]]


async def _random_event(
    db: Database, rng: random.Random, sessions: int, users: int, segments_per_session: int
) -> Attendance:
    """Sessions on every provider and format, durations under/over 30 s and unknown."""
    data = Attendance({}, [], [])
    for n in range(sessions):
        session_id = f"s{n:03d}"
        provider = PROVIDERS[n % len(PROVIDERS)]
        session_format = "WORKSHOP_SESSION" if n % 9 == 8 else "BREAKOUT_SESSION"
        duration = DURATIONS[n % len(DURATIONS)]
        await add_session(
            db,
            session_id,
            provider=provider,
            session_format=session_format,
            start=T0 + timedelta(minutes=n),
            title=f"Talk {n:03d}",
        )
        await db.sessions.update_one({"_id": session_id}, {"$set": {"duration": duration}})
        data.sessions[session_id] = {"duration": duration, "provider": provider, "format": session_format}
        base = T0 + timedelta(minutes=n)
        for k in range(segments_per_session):
            user = f"u{rng.randrange(users):04d}"
            start = base + timedelta(seconds=rng.uniform(0, 600))
            data.segments.append(
                {
                    "segmentId": f"{session_id}-{k}",
                    "sessionId": session_id,
                    "userId": user,
                    "mode": rng.choice(["LIVE", "RECORDING"]),
                    "start": _iso(start),
                    "end": _iso(start + timedelta(seconds=rng.choice([0.5, 5, 20, 29.9, 31, 90, 400]))),
                }
            )
        for registered in rng.sample(range(users), k=min(users, rng.randint(0, 40))):
            data.registrations.append(
                {
                    "sessionId": session_id,
                    "userId": f"u{registered:04d}",
                    "registeredAt": _iso(base - timedelta(days=1, seconds=registered)),
                }
            )
    return data


async def _post_all(stack: Stack, path: str, items: list[dict[str, Any]]) -> dict[str, int]:
    totals = {"accepted": 0, "duplicates": 0}
    for i in range(0, len(items), 1000):
        response = await stack.http.post(path, json=items[i : i + 1000], headers=stack.ingest_headers)
        body = await response.json()
        assert response.status == 200, body
        assert body["rejected"] == []
        totals["accepted"] += body["accepted"]
        totals["duplicates"] += body["duplicates"]
    return totals


async def _ingest(stack: Stack, data: Attendance) -> None:
    await _post_all(stack, "/rest/events/ev1/registrations", data.registrations)
    totals = await _post_all(stack, "/rest/events/ev1/watch-segments", data.segments)
    assert totals == {"accepted": len(data.segments), "duplicates": 0}


async def _all_rolled_up(stack: Stack) -> bool:
    if await sessions_with_work(stack.db) or await stack.db.rollup_leases.count_documents({}):
        return False
    await asyncio.sleep(stack.settings.host_cache_ttl_s)  # the web's event cache catches up
    return True


def _approx(value: Any) -> Any:
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-6)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    return value


async def _assert_numbers_match_oracle(stack: Stack, data: Attendance) -> None:
    response = await stack.http.get(
        "/rest/host/session/analytics?eventId=ev1&size=500&expand=duration,watchTime", headers=stack.headers
    )
    listing = await response.json()
    assert response.status == 200, listing
    by_id = {item["sessionId"]: item for item in listing["data"]}
    assert set(by_id) == set(data.sessions)
    csv_response = await stack.http.get("/rest/host/session/analytics/csv?eventId=ev1", headers=stack.headers)
    csv_rows = {row["Session Name"]: row for row in csv.DictReader(io.StringIO(await csv_response.text()))}
    for session_id, meta in data.sessions.items():
        segments = [s for s in data.segments if s["sessionId"] == session_id]
        registrations = [r for r in data.registrations if r["sessionId"] == session_id]
        duration = meta["duration"] if meta["format"] == "BREAKOUT_SESSION" else None
        expected = expected_session(segments, registrations, duration, meta["provider"])
        item = by_id[session_id]
        for key in (
            "registeredUserCount",
            "attendeeCount",
            "avgAttendedDuration",
            "liveViews",
            "recordingViews",
            "watchTime",
        ):
            assert item[key] == _approx(expected[key]), (session_id, key, item[key], expected[key])
        row = csv_rows[item["title"]]
        assert row["Number of Attendees Registered"] == str(expected["registeredUserCount"])
        detail = await (
            await stack.http.get(f"/rest/host/session/{session_id}/analytics", headers=stack.headers)
        ).json()
        assert detail["attendeeCount"] == expected["attendeeCount"]
        attendees = await (
            await stack.http.get(f"/rest/host/session/{session_id}/attendee?size=500", headers=stack.headers)
        ).json()
        want = listed_attendees(expected_attendees(segments, registrations, duration, meta["provider"]))
        assert attendees["recordsTotal"] == len(want)
        assert [_strip(a) for a in attendees["data"]] == [_approx(_strip(a)) for a in want]


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("userId", "attended", "attendedSeconds", "liveSeconds", "recordingSeconds")}


async def test_posted_segments_are_rolled_up_by_beat_and_worker_into_the_oracle_numbers(stack: Stack) -> None:
    data = await _random_event(stack.db, random.Random(11), sessions=14, users=300, segments_per_session=120)
    stack.start("worker")
    stack.start("beat")
    await _ingest(stack, data)
    await eventually(lambda: _all_rolled_up(stack), timeout=60, what="rollup of every session")
    await _assert_numbers_match_oracle(stack, data)

    # The same batches again: all duplicates, and the numbers do not move.
    numbers = {
        key: 1
        for key in (
            "registeredUserCount",
            "attendeeCount",
            "avgAttendedDuration",
            "liveViews",
            "recordingViews",
            "watchTime",
            "engagementLive",
            "engagementRecording",
            "avgLiveWatch",
            "avgRecordingWatch",
            "attendeeRows",
        )
    }
    before = await stack.db.sessions.find({"eventId": "ev1"}, numbers).to_list(None)
    again = await _post_all(stack, "/rest/events/ev1/watch-segments", data.segments)
    assert again == {"accepted": 0, "duplicates": len(data.segments)}
    await eventually(lambda: _all_rolled_up(stack), timeout=60, what="second rollup")
    after = await stack.db.sessions.find({"eventId": "ev1"}, numbers).to_list(None)
    assert after == before


async def test_recompute_survives_a_worker_killed_mid_task(stack: Stack) -> None:
    # Enough sessions that writing them outlasts a progress report (twice a second), so the
    # kill falls while some are written and others not.
    data = await _random_event(stack.db, random.Random(5), sessions=400, users=200, segments_per_session=25)
    await _ingest(stack, data)
    first = stack.start("worker")
    response = await stack.http.post(
        "/rest/host/session/analytics/recompute?eventId=ev1", headers=stack.headers
    )
    task_id = (await response.json())["taskId"]
    assert response.status == 202

    async def midway() -> bool:
        task = found(await stack.db.tasks.find_one({"_id": task_id}))
        return task["state"] == "STARTED" and 3 <= task["progress"]["done"] < task["progress"]["total"] - 20

    await eventually(midway, timeout=60, interval=0.02, what="recompute under way")
    first.kill()
    status = await (await stack.http.get(f"/rest/host/tasks/{task_id}", headers=stack.headers)).json()
    assert status["state"] == "STARTED"
    assert 0 < status["progress"]["done"] < status["progress"]["total"]
    # One recompute per event: asking again while it is unfinished gives the same task.
    again = await (
        await stack.http.post("/rest/host/session/analytics/recompute?eventId=ev1", headers=stack.headers)
    ).json()
    assert again["taskId"] == task_id

    stack.start("worker")

    async def finished() -> dict[str, Any] | None:
        task = await (await stack.http.get(f"/rest/host/tasks/{task_id}", headers=stack.headers)).json()
        return task if task["state"] in ("SUCCESS", "FAILURE") else None

    final = await eventually(finished, timeout=90, interval=0.3, what="recompute after restart")
    assert final["state"] == "SUCCESS", final
    assert final["progress"]["done"] == final["progress"]["total"] == len(data.sessions) + 2
    await _assert_numbers_match_oracle(stack, data)


async def test_a_rollup_killed_midway_loses_nothing_and_resumes_once_its_lease_expires(stack: Stack) -> None:
    stack.env["ROLLUP_BATCH_SESSIONS"] = "10"  # several batches, so that one can be cut short
    stack.env["WRITE_BATCH"] = "20"  # and several writes in each
    data = await _random_event(stack.db, random.Random(13), sessions=200, users=150, segments_per_session=40)
    await _ingest(stack, data)  # no worker yet: the signals wait in Redis
    first = stack.start("worker")

    async def midway() -> bool:
        lease = await stack.db.rollup_leases.find_one({"_id": "ev1"})
        rolled = {"eventId": "ev1", "analyticsUpdatedAt": {"$ne": None}}
        written = await stack.db.sessions.count_documents(rolled)
        return lease is not None and 0 < written < len(data.sessions)

    await eventually(midway, timeout=60, interval=0.01, what="rollup under way")
    first.kill()
    assert await stack.db.rollup_leases.count_documents({"_id": "ev1"}) == 1  # left by the dead worker

    stack.start("worker")
    stack.start("beat")
    await eventually(lambda: _all_rolled_up(stack), timeout=120, interval=0.5, what="rollup after the kill")
    await _assert_numbers_match_oracle(stack, data)


def _queued_task_names(redis_url: str, queue: str = "default") -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [orjson.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


async def test_two_beat_processes_schedule_each_job_once(stack: Stack) -> None:
    import asyncio

    stack.env["ROLLUP_INTERVAL_S"] = "2"
    beats = [stack.start("beat"), stack.start("beat")]
    await asyncio.sleep(11)
    assert all(beat.alive() for beat in beats)
    for beat in beats:
        beat.stop()
    names = _queued_task_names(stack.env["REDIS_URL"])
    rollups = names.count("analytics.rollup_pending")
    # ~11 s at one rollup every 2 s: one scheduler gives about 5; two would give about 10.
    assert 3 <= rollups <= 7, names
    assert names.count("auth.cleanup_expired") <= 1


async def test_redis_outage_keeps_reads_and_ingestion_and_rolls_up_once_back(stack: Stack) -> None:
    data = await _random_event(stack.db, random.Random(3), sessions=8, users=80, segments_per_session=60)
    stack.start("worker")
    stack.start("beat")
    stack.redis.stop()

    listing = await stack.http.get("/rest/host/session/analytics?eventId=ev1", headers=stack.headers)
    assert listing.status == 200
    recompute = await stack.http.post(
        "/rest/host/session/analytics/recompute?eventId=ev1", headers=stack.headers
    )
    body = await recompute.json()
    assert recompute.status == 503 and body["errorCode"] == "503"
    ready = await stack.http.get("/readyz")
    assert ready.status == 503
    await _ingest(stack, data)
    assert await stack.db.watch_segments.count_documents({"eventId": "ev1"}) == len(data.segments)
    assert len(await sessions_with_work(stack.db)) == len(data.sessions)

    stack.redis.start()
    await eventually(
        lambda: _all_rolled_up(stack), timeout=90, interval=0.5, what="rollup after Redis is back"
    )
    await _assert_numbers_match_oracle(stack, data)
    assert (await stack.http.get("/readyz")).status == 200


async def test_the_recompute_command_waits_with_progress_until_the_worker_finishes(stack: Stack) -> None:
    import asyncio
    import subprocess
    import sys

    data = await _random_event(stack.db, random.Random(9), sessions=12, users=60, segments_per_session=40)
    await _ingest(stack, data)
    stack.start("worker")
    env = {**stack.processes[0].env}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "web.cli", "recompute", "--event", "ev1", "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    total = len(data.sessions) + 2
    assert f"recompute: {total}/{total} SUCCESS" in done.stderr.splitlines()
    task = found(await stack.db.tasks.find_one({"_id": task_id}))
    assert task["state"] == "SUCCESS"
    assert task["progress"]["done"] == task["progress"]["total"] == len(data.sessions) + 2
    await _assert_numbers_match_oracle(stack, data)


async def _keep_ingesting(stack: Stack, headers: dict[str, str], stop: asyncio.Event) -> int:
    """Other live sessions, in this event and another, posting attendance twice a second."""
    n = 0
    while not stop.is_set():
        for event_id, prefix in (("ev1", "busy"), ("ev2", "other")):
            segments = []
            for k in range(25):
                start = T0 + timedelta(seconds=n * 7 + k)
                segments.append(
                    {
                        "segmentId": f"{prefix}-{n}-{k}",
                        "sessionId": f"{prefix}{k % 10}",
                        "userId": f"u{(n * 25 + k) % 400}",
                        "mode": "LIVE",
                        "start": _iso(start),
                        "end": _iso(start + timedelta(seconds=40)),
                    }
                )
            response = await stack.http.post(
                f"/rest/events/{event_id}/watch-segments", json=segments, headers=headers
            )
            assert response.status == 200, await response.text()
        n += 1
        await asyncio.sleep(0.5)
    return n


async def _shows_viewers(stack: Stack, viewers: int) -> bool:
    """The watched session's viewers in the list, the detail, the attendee list and the CSV."""
    headers = stack.headers
    listing = await (
        await stack.http.get("/rest/host/session/analytics?eventId=ev1&searchString=Watched", headers=headers)
    ).json()
    if [item["liveViews"] for item in listing["data"]] != [viewers]:
        return False
    detail = await (await stack.http.get("/rest/host/session/watched/analytics", headers=headers)).json()
    if detail["attendeeCount"] != viewers:
        return False
    attendees = await (await stack.http.get("/rest/host/session/watched/attendee", headers=headers)).json()
    if attendees["recordsTotal"] != viewers:
        return False
    text = await (
        await stack.http.get("/rest/host/session/analytics/csv?eventId=ev1", headers=headers)
    ).text()
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row["Session Name"] == "Watched Talk"]
    return [row["Number of Views (Live)"] for row in rows] == [str(viewers)]


async def test_attendance_shows_within_ten_seconds_at_default_settings_while_other_sessions_ingest(
    stack: Stack,
) -> None:
    import time

    for shortened in ("ROLLUP_INTERVAL_S", "VISIBILITY_TIMEOUT_S"):
        stack.env.pop(shortened)
    await add_session(stack.db, "watched", title="Watched Talk", provider="VIMEO")
    for k in range(10):
        await add_session(stack.db, f"busy{k}")
        await add_session(stack.db, f"other{k}", "ev2")
    headers = {"Authorization": f"Bearer {await create_ingest_key(stack.db, None)}"}
    stack.start("worker")
    stack.start("beat")
    stop = asyncio.Event()
    others = asyncio.create_task(_keep_ingesting(stack, headers, stop))

    async def others_counted() -> bool:
        doc = await stack.db.sessions.find_one({"_id": "other0"})
        return bool(doc and doc["attendeeCount"] > 0)

    await eventually(others_counted, timeout=60, what="a worker up and rolling up")
    delays = []
    for viewers in range(1, 4):
        start = T0 + timedelta(minutes=viewers)
        segment = {
            "segmentId": f"watched-{viewers}",
            "sessionId": "watched",
            "userId": f"viewer{viewers}",
            "mode": "LIVE",
            "start": _iso(start),
            "end": _iso(start + timedelta(seconds=45)),
        }
        response = await stack.http.post("/rest/events/ev1/watch-segments", json=[segment], headers=headers)
        assert (await response.json())["accepted"] == 1
        answered = time.monotonic()
        await eventually(
            lambda v=viewers: _shows_viewers(stack, v), timeout=30, interval=0.2, what=f"{viewers} viewers"
        )
        delays.append(time.monotonic() - answered)
        await asyncio.sleep(1)
    stop.set()
    posted = await others
    assert posted > 10
    assert max(delays) <= 10, delays
    print(f"visible after {', '.join(f'{d:.1f}' for d in delays)} s")
