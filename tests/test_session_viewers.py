"""GET /rest/host/session/{sessionId}/viewers (DESIGN §4 rule 9): random segments posted through
ingestion, rolled up (incrementally, then by a full recompute), read back through the route and
compared with tests/oracle.py's brute-force count over the raw segments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.admin import create_event
from shared.db import Database
from shared.jobs import claim_recompute
from shared.settings import Settings
from tests import oracle
from tests.conftest import Client
from tests.seed import (
    GOOD_BODY,
    T0,
    add_session,
    cheap_password_hashing,
    error_of,
    found,
    ingest_headers,
    iso_utc,
    login,
    seed_world,
)
from worker.rollup import recompute_event, rollup_pending

MINUTE = 60_000
HOUR = 60 * MINUTE
# Not on a whole minute: buckets are aligned on the start time, not on the clock.
START = T0 + timedelta(seconds=30)
# Recording watching around the night Berlin's clocks go back (27 October 2024, 03:00 → 02:00).
AUTUMN = datetime(2024, 10, 26, 20, 0, tzinfo=UTC)


@pytest.fixture
async def host(client: Client, database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    await create_event(database, "berlin", "org1", "Berlin Summit", "Europe/Berlin")
    for session_id, provider in (("talk", "YOUTUBE"), ("panel", "ZOOM"), ("quiet", "VIMEO")):
        await add_session(database, session_id, "berlin", start=START, provider=provider)
    return await login(client, "organizer")


def random_segments(seed: int, session_id: str, users: int) -> list[dict[str, Any]]:
    """LIVE segments around the start (some before it, exact bucket edges, two tabs at once)
    and RECORDING segments over the following days and across Berlin's midnights."""
    rng = random.Random(seed)
    begins = oracle.to_ms(iso_utc(START))
    segments: list[dict[str, Any]] = []

    def add(user: str, mode: str, start: int, length: int, copies: int = 1) -> None:
        for _ in range(copies):
            segments.append(
                {
                    "segmentId": f"{session_id}-{len(segments)}",
                    "sessionId": session_id,
                    "userId": user,
                    "mode": mode,
                    "start": oracle.iso(start),
                    "end": oracle.iso(start + length),
                }
            )

    for n in range(users):
        user = f"user-{n:02d}"
        for _ in range(rng.randint(1, 4)):
            start = begins + rng.choice([rng.randint(-10 * MINUTE, 90 * MINUTE), rng.randint(0, 60) * MINUTE])
            length = rng.choice([1, MINUTE, rng.randint(1, 40 * MINUTE)])
            add(user, "LIVE", start, length, copies=2 if rng.random() < 0.15 else 1)
        if rng.random() < 0.6:
            day = oracle.to_ms(iso_utc(AUTUMN)) + rng.randint(-2, 2) * 24 * HOUR
            add(user, "RECORDING", day + rng.randint(0, 8 * HOUR), rng.randint(1, 3 * HOUR))
    rng.shuffle(segments)
    return segments


async def post(client: Client, database: Database, segments: list[dict[str, Any]]) -> None:
    headers = await ingest_headers(database, ["berlin"])
    for i in range(0, len(segments), 500):
        response = await client.post(
            "/rest/events/berlin/watch-segments", json=segments[i : i + 500], headers=headers
        )
        body = await response.json()
        assert (response.status, body["rejected"]) == (200, []), body


async def viewers(client: Client, host: dict[str, str], session_id: str) -> dict[str, Any]:
    response = await client.get(f"/rest/host/session/{session_id}/viewers", headers=host)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


def expected(segments: list[dict[str, Any]], session_id: str) -> dict[str, Any]:
    return oracle.expected_viewers(segments, session_id, iso_utc(START), "Europe/Berlin")


EMPTY = {"points": [], "peakConcurrent": 0, "peakAt": None}


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_series_equals_a_brute_force_count_after_rollups_and_after_a_recompute(
    client: Client, database: Database, settings: Settings, host: dict[str, str], seed: int
) -> None:
    talk, panel = random_segments(seed, "talk", 40), random_segments(seed + 100, "panel", 15)
    half = len(talk) // 2
    await post(client, database, talk[:half] + panel)
    await rollup_pending(database, settings)
    assert await viewers(client, host, "talk") == expected(talk[:half], "talk")

    await post(client, database, talk[half:])
    await rollup_pending(database, settings)
    incremental = {sid: await viewers(client, host, sid) for sid in ("talk", "panel", "quiet")}
    assert incremental["talk"] == expected(talk, "talk")
    assert incremental["talk"]["live"]["peakConcurrent"] > 1
    assert len(incremental["talk"]["recording"]["days"]) >= 2
    # ZOOM sends no per-viewer analytics (rule 7), yet its series is there (rule 9).
    assert incremental["panel"] == expected(panel, "panel")
    assert incremental["panel"]["live"]["points"]
    assert incremental["quiet"] == {
        "sessionId": "quiet",
        "bucketSeconds": 60,
        "live": EMPTY,
        "recording": {"days": []},
    }

    task, _ = await claim_recompute(database, "berlin", settings.recompute_stale_s)
    await recompute_event(database, settings, task["_id"], "berlin")
    assert {sid: await viewers(client, host, sid) for sid in incremental} == incremental


async def test_the_series_is_stored_as_a_plain_document_a_person_can_read(
    client: Client, database: Database, settings: Settings, host: dict[str, str]
) -> None:
    talk = random_segments(3, "talk", 30)
    await post(client, database, talk)
    await rollup_pending(database, settings)
    answer = await viewers(client, host, "talk")
    assert answer == expected(talk, "talk")
    stored = found(await database.sessions.find_one({"_id": "talk"}, {"viewers": 1}))["viewers"]
    # The live counts are the answer's, one per bucket; the peak is the answer's peak.
    assert stored["live"] == [point["viewers"] for point in answer["live"]["points"]]
    assert stored["peak"] == answer["live"]["peakConcurrent"]
    assert stored["bucketMs"] == answer["bucketSeconds"] * 1000


async def test_a_day_long_live_span_widens_the_buckets_and_recording_days_follow_berlin(
    client: Client, database: Database, settings: Settings, host: dict[str, str]
) -> None:
    begins = oracle.to_ms(iso_utc(START))
    segments: list[dict[str, Any]] = [
        # 27 hours of live watching: 1,620 one-minute buckets would be too many; two minutes fit.
        {
            "segmentId": "a",
            "userId": "u1",
            "mode": "LIVE",
            "start": begins - HOUR,
            "end": begins + 22 * HOUR + 1,
        },
        {
            "segmentId": "b",
            "userId": "u2",
            "mode": "LIVE",
            "start": begins + 22 * HOUR,
            "end": begins + 26 * HOUR,
        },
        # 23:30 UTC on 26 October is 01:30 on the 27th in Berlin; the 27th has 25 hours there.
        {
            "segmentId": "c",
            "userId": "u3",
            "mode": "RECORDING",
            "start": oracle.to_ms("2024-10-26T23:30:00Z"),
            "end": oracle.to_ms("2024-10-27T22:59:59Z"),
        },
    ]
    posted = [
        {**s, "sessionId": "talk", "start": oracle.iso(s["start"]), "end": oracle.iso(s["end"])}
        for s in segments
    ]
    await post(client, database, posted)
    await rollup_pending(database, settings)
    answer = await viewers(client, host, "talk")
    assert answer == expected(posted, "talk")
    assert answer["bucketSeconds"] == 120
    assert answer["live"]["points"][0] == {"t": "2024-05-01T08:00:30Z", "viewers": 1}
    assert len(answer["live"]["points"]) == 27 * 30
    assert (answer["live"]["peakConcurrent"], answer["live"]["peakAt"]) == (2, "2024-05-02T07:00:30Z")
    assert answer["recording"] == {"days": [{"date": "2024-10-27", "viewers": 1}]}


async def test_moving_the_start_time_realigns_the_buckets_at_the_next_rollup(
    client: Client, database: Database, settings: Settings, host: dict[str, str]
) -> None:
    begins = oracle.to_ms(iso_utc(START))
    segment = {
        "segmentId": "only",
        "sessionId": "talk",
        "userId": "u1",
        "mode": "LIVE",
        "start": oracle.iso(begins),
        "end": oracle.iso(begins + 90_000),
    }
    await post(client, database, [segment])
    await rollup_pending(database, settings)
    assert [p["t"] for p in (await viewers(client, host, "talk"))["live"]["points"]] == [
        "2024-05-01T09:00:30Z",
        "2024-05-01T09:01:30Z",
    ]
    # Only the start time changes (the video stays): that alone asks for a new rollup.
    body = {
        **GOOD_BODY,
        "eventId": "berlin",
        "title": "Session talk",
        "format": "BREAKOUT_SESSION",
        "videoId": "vid",
        "startTime": "2024-05-01T09:00:00Z",
    }
    response = await client.put("/rest/host/session/talk", json=body, headers=host)
    assert response.status == 200, await response.text()
    await rollup_pending(database, settings)
    assert [p["t"] for p in (await viewers(client, host, "talk"))["live"]["points"]] == [
        "2024-05-01T09:00:00Z",
        "2024-05-01T09:01:00Z",
    ]


async def test_the_route_checks_the_host_like_every_session_route(
    client: Client, database: Database, host: dict[str, str]
) -> None:
    await add_session(database, "theirs", "ev2")
    event_admin = await login(client, "event_admin")  # hosts ev1 only
    before = await client.get("/rest/host/session/talk/viewers", headers=host)
    assert before.status == 200
    assert (await before.json())["live"] == EMPTY  # never rolled up: nobody watched yet
    again = await client.get(
        "/rest/host/session/talk/viewers", headers={**host, "If-None-Match": before.headers["ETag"]}
    )
    assert again.status == 304
    assert await error_of(await client.get("/rest/host/session/talk/viewers")) == (401, "401")
    assert await error_of(await client.get("/rest/host/session/talk/viewers", headers=event_admin)) == (
        403,
        "4030201",
    )
    assert await error_of(await client.get("/rest/host/session/theirs/viewers", headers=host)) == (
        403,
        "4030201",
    )
    assert await error_of(await client.get("/rest/host/session/nope/viewers", headers=host)) == (
        404,
        "404800",
    )
    keys = await ingest_headers(database, ["berlin"])
    assert await error_of(await client.get("/rest/host/session/talk/viewers", headers=keys)) == (403, "403")


async def test_a_new_event_zone_recounts_the_recording_days_and_the_local_times(
    client: Client, database: Database, settings: Settings, host: dict[str, str]
) -> None:
    # 23:30 UTC on 26 October is already the 27th in Berlin.
    late = {
        "segmentId": "late",
        "sessionId": "talk",
        "userId": "u1",
        "mode": "RECORDING",
        "start": "2024-10-26T23:30:00Z",
        "end": "2024-10-26T23:40:00Z",
    }
    await post(client, database, [late])
    await rollup_pending(database, settings)
    assert (await viewers(client, host, "talk"))["recording"]["days"] == [
        {"date": "2024-10-27", "viewers": 1}
    ]

    async def first_item() -> dict[str, Any]:
        listed = await client.get("/rest/host/session/analytics", params={"eventId": "berlin"}, headers=host)
        item: dict[str, Any] = (await listed.json())["data"][0]
        return item

    assert (await first_item())["startTimeLocal"] == "2024-05-01T11:00:30+02:00"  # cached now
    await create_event(database, "berlin", "org1", "Berlin Summit", "UTC")
    await rollup_pending(database, settings)
    assert (await viewers(client, host, "talk"))["recording"]["days"] == [
        {"date": "2024-10-26", "viewers": 1}
    ]
    item = await first_item()
    assert (item["timeZone"], item["startTimeLocal"]) == ("UTC", "2024-05-01T09:00:30+00:00")
