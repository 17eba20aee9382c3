"""The event's audience through the API (DESIGN §4 rules 11–13) against tests/oracle.py: random
attendance over several sessions (overlapping tabs, people in two sessions at once, registrants
who never come, a night across the event's midnight), posted in rounds with rollups between,
erasure, a recompute, and rollups that die between their writes."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import pytest

from shared.db import Database
from shared.jobs import claim_recompute
from shared.settings import Settings
from tests import oracle
from tests.conftest import Client
from tests.seed import add_session, ingest_headers, login, seed_world
from tests.test_rollup_numbers import (
    FEW,
    World,
    assert_attendees_match,
    assert_list_matches,
    create_sessions,
    get_json,
    make_world,
    post_all,
)
from worker.rollup import recompute_event, rollup_pending

ZONE = "America/New_York"  # midnight is 04:00 UTC in May
PEOPLE_FIELDS = tuple(
    "userId sessionsRegistered sessionsAttended attended noShow attendedSeconds liveSeconds "
    "recordingSeconds firstJoinedAt lastLeftAt completion".split()
)


def audience_world(seed: int, users: int = 30) -> World:
    """make_world's sessions and people, and what rules 12–13 must tell apart: one person in two
    sessions at once, a night across the event's midnight, and a recording days later."""
    world = make_world(seed, users, FEW)
    extra = [
        ("both-1", "yt-long", "night-owl", "LIVE", "2024-05-02T03:30:00Z", "2024-05-02T04:30:00Z"),
        ("both-2", "vimeo-short", "night-owl", "LIVE", "2024-05-02T03:45:00Z", "2024-05-02T04:40:00Z"),
        ("both-3", "tokbox-30", "night-owl", "RECORDING", "2024-05-04T12:00:00Z", "2024-05-04T12:10:00Z"),
        ("twin-1", "yt-long", "user-000", "LIVE", "2024-05-02T03:35:00Z", "2024-05-02T03:50:00Z"),
        ("twin-2", "zoom", "user-000", "LIVE", "2024-05-02T03:40:00Z", "2024-05-02T04:00:00Z"),
    ]
    for segment_id, session, user, mode, start, end in extra:
        world.segments.append(
            {
                "segmentId": segment_id,
                "sessionId": session,
                "userId": user,
                "mode": mode,
                "start": start,
                "end": end,
            }
        )
    # Registered in a session without video, and never came anywhere.
    world.registrations.append(
        {"sessionId": "workshop", "userId": "ghost", "registeredAt": "2024-04-01T00:00:00Z"}
    )
    return world


def expected(world: World) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    specs = {
        s.session_id: {
            "duration": world.durations[s.session_id],
            "streamProvider": s.provider,
            "format": s.session_format,
        }
        for s in world.sessions
    }
    summary, people = oracle.expected_audience(world.segments, world.registrations, specs, ZONE)
    return summary, {p["userId"]: p for p in people}


async def people_pages(
    client: Client, headers: dict[str, str], query: str = "", size: int = 7
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 0
    while True:
        body = await get_json(
            client, headers, f"/rest/host/event/ev1/attendee?page={page}&size={size}&{query}"
        )
        rows += body["data"]
        if len(body["data"]) < size:
            assert len(rows) == body["recordsFiltered"]
            return rows
        page += 1


async def assert_audience_matches(client: Client, headers: dict[str, str], world: World) -> None:
    summary, people = expected(world)
    answer = await get_json(client, headers, "/rest/host/event/ev1/analytics")
    assert answer["timeZone"] == ZONE
    assert answer["analyticsUpdatedAt"] is not None
    nested = ("watchTime", "attendeesPerDay")
    shown = {k: answer[k] for k in summary if k not in nested}
    assert shown == pytest.approx({k: v for k, v in summary.items() if k not in nested})
    assert answer["watchTime"] == pytest.approx(summary["watchTime"])
    assert answer["attendeesPerDay"] == summary["attendeesPerDay"]
    rows = await people_pages(client, headers)
    assert [r["userId"] for r in rows] == sorted(
        people, key=lambda u: (-round(people[u]["attendedSeconds"], 3), u)
    )
    for row in rows:
        assert {k: row[k] for k in PEOPLE_FIELDS} == pytest.approx(people[row["userId"]]), row["userId"]


@pytest.fixture
async def host(client: Client, database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from tests.seed import cheap_password_hashing

    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    await database.events.update_one({"_id": "ev1"}, {"$set": {"timezone": ZONE}})
    return await login(client, "event_admin")


@pytest.fixture
def small_batches(settings: Settings) -> Settings:
    return settings.model_copy(update={"rollup_batch_sessions": 2, "rollup_batch_items": 300})


async def post_in_rounds(
    client: Client, database: Database, settings: Settings, world: World, rounds: int, seed: int
) -> None:
    """Everything posted in `rounds` random slices, each rolled up before the next."""
    key = await ingest_headers(database, ["ev1"])
    rng = random.Random(seed)
    items = [("registrations", r) for r in world.registrations] + [
        ("watch-segments", s) for s in world.segments
    ]
    rng.shuffle(items)
    for n in range(rounds):
        part = items[n::rounds]
        for kind in ("registrations", "watch-segments"):
            batch = [item for k, item in part if k == kind]
            if batch:
                await post_all(client, key, f"/rest/events/ev1/{kind}", batch)
        assert (await rollup_pending(database, settings))["busyEvents"] == 0


@pytest.mark.parametrize("seed", [3, 8])
async def test_summary_and_people_match_the_rules_through_rounds_of_rollups_and_a_recompute(
    client: Client, database: Database, small_batches: Settings, host: dict[str, str], seed: int
) -> None:
    world = audience_world(seed)
    await create_sessions(database, world)
    await post_in_rounds(client, database, small_batches, world, rounds=4, seed=seed)
    await assert_audience_matches(client, host, world)

    # A duration changes: completions change, every other number stays (the oracle says which).
    world.durations["yt-long"] = 600.0
    await database.sessions.update_one(
        {"_id": "yt-long"}, {"$set": {"duration": 600.0, "rollupPending": True}, "$inc": {"rollupVersion": 1}}
    )
    await rollup_pending(database, small_batches)
    await assert_audience_matches(client, host, world)

    before = await get_json(client, host, "/rest/host/event/ev1/analytics")
    task, _ = await claim_recompute(database, "ev1", small_batches.recompute_stale_s)
    await recompute_event(database, small_batches, task["_id"], "ev1", sync_durations=None)
    await assert_audience_matches(client, host, world)
    after = await get_json(client, host, "/rest/host/event/ev1/analytics")
    for answer in (before, after):
        answer.pop("analyticsUpdatedAt")
    assert after == before  # integer sums: the same to the millisecond, however they were reached
    assert await database.rollup_journal.count_documents({}) == 0


async def test_no_shows_agree_with_the_session_filters_and_the_registrations_posted(
    client: Client, database: Database, settings: Settings, host: dict[str, str]
) -> None:
    world = audience_world(5, users=24)
    await create_sessions(database, world)
    await post_in_rounds(client, database, settings, world, rounds=1, seed=5)
    summary, people = expected(world)
    registered = {r["userId"] for r in world.registrations}
    came = {s["userId"] for s in world.segments}
    assert summary["noShows"] == len(registered - came) > 0

    no_shows = {r["userId"] for r in await people_pages(client, host, "attended=false")}
    assert no_shows == registered - came
    answer = await get_json(client, host, "/rest/host/event/ev1/analytics")
    assert answer["noShows"] == len(no_shows)
    assert {r["userId"] for r in await people_pages(client, host, "attended=true")} == came
    # Each session's no-shows: registered for it, no time in it; together, everyone who
    # registered somewhere and missed it, which includes every event no-show.
    missed: set[str] = set()
    for spec in world.sessions:
        body = await get_json(
            client, host, f"/rest/host/session/{spec.session_id}/attendee?attended=false&size=500"
        )
        users = {row["userId"] for row in body["data"]}
        rows = {r["userId"]: r for r in world.expected_rows(spec.session_id)}
        assert users == {u for u, r in rows.items() if not r["attended"]}, spec.session_id
        assert all(r["registeredAt"] is not None for r in body["data"])
        missed |= users
    assert no_shows <= missed

    for threshold in (0, 40, 100):
        wanted = {
            u for u, p in people.items() if p["completion"] is not None and p["completion"] >= threshold
        }
        got = {r["userId"] for r in await people_pages(client, host, f"minCompletion={threshold}")}
        assert got == wanted, threshold
        session_rows = world.expected_rows("yt-long")
        body = await get_json(
            client, host, f"/rest/host/session/yt-long/attendee?minCompletion={threshold}&size=500"
        )
        assert {r["userId"] for r in body["data"]} == {
            r["userId"] for r in session_rows if r["completion"] is not None and r["completion"] >= threshold
        }


async def test_people_sort_search_csv_and_erasure(
    client: Client, database: Database, settings: Settings, host: dict[str, str]
) -> None:
    world = audience_world(11, users=20)
    world.registrations.append(
        {
            "sessionId": "empty",
            "userId": "user-003",
            "registeredAt": "2024-04-20T00:00:00Z",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
        }
    )
    await create_sessions(database, world)
    await post_in_rounds(client, database, settings, world, rounds=2, seed=11)
    _, people = expected(world)

    by_join = await people_pages(client, host, "sort=firstJoinedAt")
    joined = sorted((p["firstJoinedAt"], u) for u, p in people.items() if p["firstJoinedAt"])
    assert [r["userId"] for r in by_join] == [u for _, u in joined] + sorted(
        u for u, p in people.items() if not p["firstJoinedAt"]
    )
    by_sessions = await people_pages(client, host, "sort=-sessionsAttended")
    assert [r["sessionsAttended"] for r in by_sessions] == sorted(
        (p["sessionsAttended"] for p in people.values()), reverse=True
    )
    found = await people_pages(client, host, "searchString=LOVELACE")
    assert [(r["userId"], r["email"]) for r in found] == [("user-003", "ada@example.com")]

    response = await client.get("/rest/host/event/ev1/attendee/csv?sort=firstJoinedAt", headers=host)
    assert response.status == 200 and response.content_type == "text/csv"
    header, *lines = list(csv.reader(io.StringIO(await response.text())))
    assert header[:3] == ["User ID", "First Name", "Last Name"] and "No-show" in header
    assert [line[0] for line in lines] == [r["userId"] for r in by_join]
    no_show = header.index("No-show")
    assert {line[0] for line in lines if line[no_show] == "yes"} == {
        u for u, p in people.items() if p["noShow"]
    }

    before = await get_json(client, host, "/rest/host/event/ev1/analytics")
    assert (await client.delete("/rest/host/event/ev1/attendee/user-003", headers=host)).status == 204
    assert await people_pages(client, host, "searchString=lovelace") == []
    row = next(r for r in await people_pages(client, host) if r["userId"] == "user-003")
    assert (row["email"], row["firstName"], row["lastName"]) == (None, None, None)
    assert {k: row[k] for k in PEOPLE_FIELDS} == pytest.approx(people["user-003"])
    # New attendance after the erasure: the numbers move, the identity stays erased.
    key = await ingest_headers(database, ["ev1"])
    late = {
        "segmentId": "late-1",
        "sessionId": "vimeo-short",
        "userId": "user-003",
        "mode": "RECORDING",
        "start": "2024-05-05T10:00:00Z",
        "end": "2024-05-05T10:05:00Z",
    }
    await post_all(client, key, "/rest/events/ev1/watch-segments", [late])
    world.segments.append(late)
    await rollup_pending(database, settings)
    await assert_audience_matches(client, host, world)
    after = await get_json(client, host, "/rest/host/event/ev1/analytics")
    assert after["watchTime"]["recording"] == pytest.approx(before["watchTime"]["recording"] + 300)
    row = next(r for r in await people_pages(client, host) if r["userId"] == "user-003")
    assert row["email"] is None


async def test_the_summary_answers_304_to_its_etag_and_changes_with_new_attendance(
    client: Client, database: Database, settings: Settings, host: dict[str, str]
) -> None:
    await add_session(database, "s1")
    first = await client.get("/rest/host/event/ev1/analytics", headers=host)
    body = await first.json()
    assert (body["sessions"], body["uniqueAttendees"], body["peakAt"], body["attendeesPerDay"]) == (
        1,
        0,
        None,
        [],
    )
    etag = first.headers["ETag"]
    again = await client.get("/rest/host/event/ev1/analytics", headers={**host, "If-None-Match": etag})
    assert again.status == 304
    key = await ingest_headers(database, ["ev1"])
    segment = {
        "segmentId": "a",
        "sessionId": "s1",
        "userId": "u1",
        "mode": "LIVE",
        "start": "2024-05-01T09:00:00Z",
        "end": "2024-05-01T09:10:00Z",
    }
    await post_all(client, key, "/rest/events/ev1/watch-segments", [segment])
    await rollup_pending(database, settings)
    changed = await client.get("/rest/host/event/ev1/analytics", headers={**host, "If-None-Match": etag})
    assert changed.status == 200
    body = await changed.json()
    assert (body["uniqueAttendees"], body["peakConcurrent"], body["peakAt"]) == (1, 1, "2024-05-01T09:00:00Z")
    assert body["attendeesPerDay"] == [{"date": "2024-05-01", "attendees": 1}]


@pytest.mark.parametrize(
    "bad", ["attended=maybe", "minCompletion=101", "minCompletion=-1", "sort=email", "size=0", "x=1"]
)
async def test_bad_people_queries_get_400(client: Client, host: dict[str, str], bad: str) -> None:
    response = await client.get(f"/rest/host/event/ev1/attendee?{bad}", headers=host)
    body = await response.json()
    assert (response.status, body["errorCode"]) == (400, "400")


@pytest.mark.parametrize(
    "dies", ["after its commit", "after a commit in parts", "after its rows", "after its people"]
)
async def test_a_rollup_that_dies_between_its_writes_is_made_right_by_the_next(
    client: Client,
    database: Database,
    settings: Settings,
    host: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    dies: str,
) -> None:
    """The summary's update commits every write of a rollup before the first is applied
    (worker/journal.py); whatever a rollup wrote before it died, the next one's numbers are the
    oracle's, sessions' and event's alike."""
    import shared.db
    import worker.journal

    world = audience_world(21, users=16)
    await create_sessions(database, world)
    half = len(world.segments) // 2
    later = World(world.sessions, world.segments[:half], world.registrations, world.durations)
    await post_in_rounds(client, database, settings, later, rounds=1, seed=21)

    class Died(Exception):
        pass

    def dying(original: Any) -> Any:
        async def die_after(*args: Any, **kwargs: Any) -> Any:
            await original(*args, **kwargs)
            raise Died

        return die_after

    if dies.startswith("after") and "commit" in dies:
        if "parts" in dies:  # writes past PART_BYTES go in `rollup_journal` documents of their own
            monkeypatch.setattr(worker.journal, "PART_BYTES", 2_000)
        monkeypatch.setattr(worker.journal.Journal, "commit", dying(worker.journal.Journal.commit))
    elif dies == "after its rows":
        monkeypatch.setattr(worker.journal, "bulk_write", dying(shared.db.bulk_write))
    else:
        monkeypatch.setattr(worker.journal.Journal, "apply", dying(worker.journal.Journal.apply))
    key = await ingest_headers(database, ["ev1"])
    await post_all(client, key, "/rest/events/ev1/watch-segments", world.segments[half:])
    with pytest.raises(Died):
        await rollup_pending(database, settings)
    await database.rollup_leases.delete_many({})  # the dead worker's lease, expired
    monkeypatch.undo()
    summary = await database.event_summaries.find_one({"_id": "ev1"})
    pending: dict[str, Any] = dict(summary.get("pending") or {}) if summary else {}
    assert pending
    assert bool(pending.get("parts")) == ("parts" in dies)
    assert await database.rollup_journal.count_documents({}) == len(pending.get("parts", []))
    await rollup_pending(database, settings)
    await assert_audience_matches(client, host, world)
    await assert_list_matches(client, host, world)
    await assert_attendees_match(client, host, world, (500,))
    assert "pending" not in (await database.event_summaries.find_one({"_id": "ev1"}) or {})
    assert await database.rollup_journal.count_documents({}) == 0
