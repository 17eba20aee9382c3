"""Attendance ingestion: ingest keys, idempotent storage, per-item rejection, rollup flags."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from shared.admin import create_ingest_key
from shared.db import Database
from shared.settings import Settings
from shared.store import now
from tests.conftest import Client, RecordingTaskQueue
from tests.seed import (
    T0,
    add_session,
    app_client,
    bearer,
    cheap_password_hashing,
    error_of,
    found,
    ingest_headers,
    iso_utc,
    login,
    registration,
    seed_world,
    watch_segment,
)
from worker.rollup import sessions_with_work

SEGMENTS = "/rest/events/ev1/watch-segments"
REGISTRATIONS = "/rest/events/ev1/registrations"


@pytest.fixture
async def world(database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """ev1 with sessions s1 and s2, ev2 with s9; the header of a key for ev1 only."""
    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    await add_session(database, "s1")
    await add_session(database, "s2")
    await add_session(database, "s9", "ev2")
    return await ingest_headers(database, ["ev1"])


async def post(client: Any, path: str, items: Any, headers: dict[str, str]) -> tuple[int, Any]:
    response = await client.post(path, json=items, headers=headers)
    return response.status, await response.json()


async def pending_sessions(database: Database) -> set[str]:
    """Sessions the next rollup will work on (ingestion queues in the inbox)."""
    return set(await sessions_with_work(database))


async def clear_pending(database: Database) -> None:
    await database.sessions.update_many({}, {"$set": {"rollupPending": False}})
    await database.segment_inbox.delete_many({})


# --- ingest keys --------------------------------------------------------------------------


async def test_key_for_the_event_stores_segments_and_registrations(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    status, body = await post(client, SEGMENTS, [watch_segment("g1")], world)
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0, "rejected": []})
    status, body = await post(client, REGISTRATIONS, [registration()], world)
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0, "rejected": []})

    stored = found(await database.watch_segments.find_one({"segmentId": "g1"}))
    assert stored["eventId"] == "ev1" and stored["userId"] == "u1" and stored["mode"] == "LIVE"
    assert stored["start"] == T0 and stored["end"] == T0 + timedelta(seconds=60)
    reg = found(await database.registrations.find_one({"sessionId": "s1", "userId": "u1"}))
    assert reg["registeredAt"] == T0 - timedelta(days=1)


async def test_times_with_an_offset_are_stored_in_utc(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    item = {
        **watch_segment("g1"),
        "start": "2024-05-01T11:00:00+02:00",
        "end": "2024-05-01T11:00:30.250+02:00",
    }
    assert (await post(client, SEGMENTS, [item], world))[1]["accepted"] == 1
    stored = found(await database.watch_segments.find_one({"segmentId": "g1"}))
    assert stored["start"] == T0
    assert stored["end"] == T0 + timedelta(seconds=30, milliseconds=250)


async def test_key_for_every_event_may_post_to_any_event(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    headers = await ingest_headers(database)
    assert (await post(client, SEGMENTS, [watch_segment("g1")], headers))[1]["accepted"] == 1
    status, body = await post(client, "/rest/events/ev2/watch-segments", [watch_segment("g1", "s9")], headers)
    assert (status, body["accepted"]) == (200, 1)


async def test_key_of_another_event_is_not_event_host_and_stores_nothing(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    headers = await ingest_headers(database, ["ev2"])
    for path, item in ((SEGMENTS, watch_segment("g1")), (REGISTRATIONS, registration())):
        response = await client.post(path, json=[item], headers=headers)
        assert await error_of(response) == (403, "4030201")
    assert await database.watch_segments.count_documents({}) == 0
    assert await database.registrations.count_documents({}) == 0


async def test_key_for_every_event_posting_to_a_missing_event_is_event_not_found(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    headers = await ingest_headers(database)
    response = await client.post(
        "/rest/events/nope/watch-segments", json=[watch_segment("g1")], headers=headers
    )
    assert await error_of(response) == (404, "4040200")


@pytest.mark.parametrize("path", [SEGMENTS, REGISTRATIONS])
@pytest.mark.parametrize("who", ["super", "event_admin", "attendee"])
async def test_user_token_on_ingest_routes_is_the_wrong_kind_of_credential(
    client: Client, database: Database, world: dict[str, str], path: str, who: str
) -> None:
    headers = await login(client, who)
    response = await client.post(path, json=[watch_segment("g1")], headers=headers)
    assert await error_of(response) == (403, "403")
    assert await database.watch_segments.count_documents({}) == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/rest/host/session/analytics?eventId=ev1"),
        ("GET", "/rest/host/session/s1/analytics"),
        ("GET", "/rest/host/session/s1/attendee"),
        ("GET", "/rest/host/session/analytics/csv?eventId=ev1"),
        ("POST", "/rest/host/session/analytics/recompute?eventId=ev1"),
    ],
)
async def test_ingest_key_on_host_routes_is_the_wrong_kind_of_credential(
    client: Client, database: Database, world: dict[str, str], method: str, path: str
) -> None:
    headers = await ingest_headers(database)
    response = await client.request(method, path, headers=headers)
    assert await error_of(response) == (403, "403")


async def test_ingest_key_may_not_create_sessions(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    body = {
        "eventId": "ev1",
        "title": "New",
        "startTime": "2024-05-01T09:00:00Z",
        "endTime": "2024-05-01T10:00:00Z",
        "format": "BREAKOUT_SESSION",
    }
    response = await client.put("/rest/host/session/s5", json=body, headers=world)
    assert await error_of(response) == (403, "403")
    assert await database.sessions.find_one({"_id": "s5"}) is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sak_not-a-key-we-issued"},
        {"Authorization": "Bearer sat_not-a-token-we-issued"},
        {"Authorization": "Bearer something-else"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["no header", "unknown key", "unknown user token", "unknown kind", "basic auth"],
)
async def test_missing_or_unknown_credential_is_401(
    client: Client, database: Database, world: dict[str, str], headers: dict[str, str]
) -> None:
    response = await client.post(SEGMENTS, json=[watch_segment("g1")], headers=headers)
    assert await error_of(response) == (401, "401")
    assert await database.watch_segments.count_documents({}) == 0


async def test_revoked_key_is_401(client: Client, database: Database, world: dict[str, str]) -> None:
    key = await create_ingest_key(database, ["ev1"])
    await database.ingest_keys.update_many({}, {"$set": {"revoked": True}})
    response = await client.post(SEGMENTS, json=[watch_segment("g1")], headers=bearer(key))
    assert await error_of(response) == (401, "401")


async def test_vendor_authentication_header_carries_an_ingest_key(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    key = world["Authorization"].removeprefix("Bearer ")
    status, body = await post(client, SEGMENTS, [watch_segment("g1")], {"AUTHENTICATION": key})
    assert (status, body["accepted"]) == (200, 1)


# --- idempotence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "collection", "batch"),
    [
        (SEGMENTS, "watch_segments", [watch_segment(f"g{n}", user_id=f"u{n}") for n in range(25)]),
        (
            REGISTRATIONS,
            "registrations",
            [registration(session, f"u{n}") for n in range(20) for session in ("s1", "s2")],
        ),
    ],
    ids=["segments", "registrations"],
)
async def test_same_batch_posted_twice_is_stored_once(
    client: Client,
    database: Database,
    world: dict[str, str],
    path: str,
    collection: str,
    batch: list[dict[str, Any]],
) -> None:
    first = (await post(client, path, batch, world))[1]
    again = (await post(client, path, batch, world))[1]
    assert first == {"accepted": len(batch), "duplicates": 0, "rejected": []}
    assert again == {"accepted": 0, "duplicates": len(batch), "rejected": []}
    assert await database[collection].count_documents({}) == len(batch)


async def test_a_batch_overlapping_a_stored_one_stores_only_the_new_segments(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    await post(client, SEGMENTS, [watch_segment(f"g{n}") for n in range(10)], world)
    status, body = await post(client, SEGMENTS, [watch_segment(f"g{n}") for n in range(5, 15)], world)
    assert (status, body) == (200, {"accepted": 5, "duplicates": 5, "rejected": []})
    assert await database.watch_segments.count_documents({}) == 15


async def test_a_segment_id_sent_again_with_other_content_keeps_the_first(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    await post(client, SEGMENTS, [watch_segment("g1", seconds=60)], world)
    body = (await post(client, SEGMENTS, [watch_segment("g1", seconds=600, mode="RECORDING")], world))[1]
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    stored = await database.watch_segments.find({"segmentId": "g1"}).to_list(None)
    assert len(stored) == 1
    assert stored[0]["mode"] == "LIVE" and stored[0]["end"] == T0 + timedelta(seconds=60)


async def test_a_segment_repeated_within_one_batch_counts_once(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    body = (await post(client, SEGMENTS, [watch_segment("g1"), watch_segment("g1")], world))[1]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, [])
    assert await database.watch_segments.count_documents({}) == 1


async def test_a_user_registering_again_for_a_session_is_a_duplicate(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    await post(client, REGISTRATIONS, [registration("s1", "u1", T0 - timedelta(days=3))], world)
    body = (
        await post(
            client,
            REGISTRATIONS,
            [registration("s1", "u1", T0 - timedelta(days=1)), registration("s2", "u1")],
            world,
        )
    )[1]
    assert (body["accepted"], body["duplicates"]) == (1, 1)
    reg = found(await database.registrations.find_one({"sessionId": "s1", "userId": "u1"}))
    assert reg["registeredAt"] == T0 - timedelta(days=3)


# --- rejected items -----------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _bad_segments() -> list[tuple[Any, str]]:
    """(item, a word its reason must contain), each wrong in exactly one way."""
    good = watch_segment("x")
    return [
        ({**good, "segmentId": "b-equal", "end": good["start"]}, "end"),
        (
            {
                **good,
                "segmentId": "b-reverse",
                "start": iso_utc(T0 + timedelta(minutes=5)),
                "end": iso_utc(T0),
            },
            "end",
        ),
        (watch_segment("b-too-long", seconds=24 * 3600 + 0.001), "24 hours"),
        (watch_segment("b-future", start=_now(), seconds=6 * 60), "future"),
        ({**good, "segmentId": "b-mode", "mode": "REPLAY"}, "mode"),
        ({**good, "segmentId": "b-mode-case", "mode": "live"}, "mode"),
        ({**good, "segmentId": "b-user-type", "userId": 42}, "userId"),
        ({**good, "segmentId": "b-start-type", "start": 1714554000}, "start"),
        ({**good, "segmentId": "b-no-zone", "start": "2024-05-01T09:00:00"}, "start"),
        ({**good, "segmentId": "b-not-a-time", "end": "yesterday"}, "end"),
        ({**good, "segmentId": "b-extra", "device": "tv"}, "unknown field"),
        ({k: v for k, v in good.items() if k != "userId"} | {"segmentId": "b-missing"}, "userId"),
        ({**good, "segmentId": "b id with spaces"}, "segmentId"),
        ({**good, "segmentId": "b-session", "sessionId": "s404"}, "unknown session"),
        ({**good, "segmentId": "b-other-event", "sessionId": "s9"}, "unknown session"),
        ("a string", "object"),
        ([watch_segment("b-nested")], "object"),
        (None, "object"),
        (17, "object"),
    ]


async def test_malformed_segments_are_rejected_at_their_index_and_the_rest_stored(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    bad = _bad_segments()
    valid = [
        watch_segment("ok-1"),
        watch_segment("ok-24h", seconds=24 * 3600, start=T0 - timedelta(days=2)),
        watch_segment("ok-near-future", start=_now(), seconds=4 * 60),
        watch_segment("ok-2", "s2", mode="RECORDING", seconds=0.001),
    ]
    # Valid items first among the bad ones, then the rest of the bad ones.
    order: list[tuple[Any, str | None]] = []
    for n, (item, word) in enumerate(bad):
        if n < len(valid):
            order.append((valid[n], None))
        order.append((item, word))
    items = [item for item, _ in order]
    bad_index = {i: word for i, (_, word) in enumerate(order) if word is not None}

    status, body = await post(client, SEGMENTS, items, world)

    assert status == 200, body
    assert (body["accepted"], body["duplicates"]) == (len(valid), 0)
    assert [r["index"] for r in body["rejected"]] == sorted(bad_index)
    for rejection in body["rejected"]:
        assert bad_index[rejection["index"]] in rejection["reason"], rejection
    stored = await database.watch_segments.distinct("segmentId")
    assert sorted(stored) == sorted(item["segmentId"] for item in valid)


async def test_malformed_registrations_are_rejected_at_their_index_and_the_rest_stored(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    items = [
        registration("s1", "u1"),
        registration("s1", "u2", _now() + timedelta(minutes=6)),
        {**registration("s1", "u3"), "bookmarked": True},
        registration("s404", "u4"),
        {"sessionId": "s1", "userId": "u5"},
        {**registration("s1", "u6"), "registeredAt": "2024-13-01T00:00:00Z"},
        "u7",
        registration("s2", "u8", _now() + timedelta(minutes=4)),
    ]
    status, body = await post(client, REGISTRATIONS, items, world)
    assert status == 200, body
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert "future" in reasons[1]
    assert "unknown field" in reasons[2]
    assert "unknown session" in reasons[3]
    assert "registeredAt" in reasons[4] and "registeredAt" in reasons[5]
    assert "object" in reasons[6]
    stored = await database.registrations.find({}, {"_id": 0, "userId": 1}).to_list(None)
    assert sorted(doc["userId"] for doc in stored) == ["u1", "u8"]


async def test_a_request_of_only_rejected_items_stores_and_flags_nothing(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    await clear_pending(database)
    items = [watch_segment("g1", "s404"), {**watch_segment("g2"), "mode": "PAUSED"}]
    status, body = await post(client, SEGMENTS, items, world)
    assert (status, body["accepted"], len(body["rejected"])) == (200, 0, 2)
    assert await database.watch_segments.count_documents({}) == 0
    assert await pending_sessions(database) == set()


async def test_a_list_wrapped_as_items_is_taken_like_the_bare_list(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    body = {"items": [watch_segment("g1"), {**watch_segment("g2"), "mode": "PAUSED"}]}
    status, answer = await post(client, SEGMENTS, body, world)
    assert (status, answer["accepted"], [r["index"] for r in answer["rejected"]]) == (200, 1, [1])


async def test_an_empty_list_is_accepted_with_nothing_stored(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    assert await post(client, SEGMENTS, [], world) == (200, {"accepted": 0, "duplicates": 0, "rejected": []})


# --- whole requests refused ---------------------------------------------------------------


@pytest.mark.parametrize("path", [SEGMENTS, REGISTRATIONS])
async def test_a_thousand_items_are_taken_and_one_more_refuses_the_whole_request(
    client: Client, database: Database, world: dict[str, str], path: str
) -> None:
    await clear_pending(database)
    if path == SEGMENTS:
        items = [watch_segment(f"g{n}", user_id=f"u{n}") for n in range(1001)]
    else:
        items = [registration("s1", f"u{n}") for n in range(1001)]

    response = await client.post(path, json=items, headers=world)
    assert await error_of(response) == (400, "400")
    assert await database.watch_segments.count_documents({}) == 0
    assert await database.registrations.count_documents({}) == 0
    assert await pending_sessions(database) == set()

    status, body = await post(client, path, items[:1000], world)
    assert (status, body["accepted"], body["rejected"]) == (200, 1000, [])


@pytest.mark.parametrize(
    "body",
    [{"segmentId": "g1"}, "segments", 3, None, True],
    ids=["object", "string", "number", "null", "boolean"],
)
async def test_a_body_that_is_not_a_list_is_400(
    client: Client, database: Database, world: dict[str, str], body: object
) -> None:
    response = await client.post(
        SEGMENTS, data=json.dumps(body).encode(), headers={**world, "Content-Type": "application/json"}
    )
    assert await error_of(response) == (400, "400")


async def test_a_body_that_is_not_json_is_400(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    response = await client.post(
        SEGMENTS, data=b"[{not json", headers={**world, "Content-Type": "application/json"}
    )
    assert await error_of(response) == (400, "400")
    assert await database.watch_segments.count_documents({}) == 0


# --- rollup flags ---------------------------------------------------------------------------


async def test_sessions_given_new_attendance_are_marked_for_rollup(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    await clear_pending(database)
    await post(client, SEGMENTS, [watch_segment("g1", "s1"), watch_segment("g2", "s404")], world)
    assert await pending_sessions(database) == {"s1"}
    await post(client, REGISTRATIONS, [registration("s2", "u1")], world)
    assert await pending_sessions(database) == {"s1", "s2"}


async def test_a_session_found_once_is_not_looked_up_again_and_an_unknown_one_is_each_time(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    world: dict[str, str],
) -> None:
    """Sessions never move nor go away, so a process keeps the ones it found (whatever
    HOST_CACHE_TTL_S, here off); a session not found is looked up again on the next post."""
    client = await app_client(aiohttp_client, settings, database, task_queue, host_cache_ttl_s=0)
    first = await post(client, SEGMENTS, [watch_segment("g1", "s1"), watch_segment("g2", "s3")], world)
    assert (first[0], first[1]["accepted"], [r["index"] for r in first[1]["rejected"]]) == (200, 1, [1])

    # Gone from the store (which the service never does), s1 is still known to this process.
    await database.sessions.delete_one({"_id": "s1"})
    await add_session(database, "s3")
    second = await post(client, SEGMENTS, [watch_segment("g3", "s1"), watch_segment("g4", "s3")], world)
    assert (second[0], second[1]["accepted"], second[1]["rejected"]) == (200, 2, [])


async def test_ingestion_writes_no_session_document(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    # The inbox marks the sessions to roll up: a batch costs inserts only.
    before = await database.sessions.find({}).sort("_id", 1).to_list(None)
    await post(client, SEGMENTS, [watch_segment("g1", "s1"), watch_segment("g2", "s2")], world)
    await post(client, REGISTRATIONS, [registration("s1", "u1")], world)
    assert await database.sessions.find({}).sort("_id", 1).to_list(None) == before


async def test_a_reused_segment_id_counts_in_its_first_version_only(
    client: Client, database: Database, settings: Settings, world: dict[str, str]
) -> None:
    first = watch_segment("g1", "s1", "u1", seconds=60)
    await post(client, SEGMENTS, [first], world)
    await _attendees_after_rollup(database, settings)

    # The same id with other content: a duplicate; the numbers keep the stored (first) version.
    body = (await post(client, SEGMENTS, [watch_segment("g1", "s1", "u1", seconds=600)], world))[1]
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    assert await _attendees_after_rollup(database, settings) == 1
    session = found(await database.sessions.find_one({"_id": "s1"}))
    assert session["watchTime"]["total"] == 60.0


class _FailingCollection:
    """A collection whose inserts fail as an unreachable server does, once armed."""

    def __init__(self, collection: Any, failing: dict[str, bool]) -> None:
        self._collection, self._failing = collection, failing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def _fail(self) -> None:
        if self._failing["on"]:
            from pymongo.errors import AutoReconnect

            raise AutoReconnect("connection reset (test)")

    async def insert_many(self, *args: Any, **kwargs: Any) -> Any:
        self._fail()
        return await self._collection.insert_many(*args, **kwargs)

    async def insert_one(self, *args: Any, **kwargs: Any) -> Any:
        self._fail()
        return await self._collection.insert_one(*args, **kwargs)


def _database_failing_on(database: Any, collection: str, failing: dict[str, bool]) -> Any:
    from dataclasses import dataclass

    from shared.db import Database

    @dataclass
    class FailingDatabase(Database):
        def __getitem__(self, name: str) -> Any:
            found = self.db[name]
            return _FailingCollection(found, failing) if name == collection else found

        @property
        def segment_inbox(self) -> Any:
            return self["segment_inbox"]

        @property
        def watch_segments(self) -> Any:
            return self["watch_segments"]

        @property
        def segment_intents(self) -> Any:
            return self["segment_intents"]

    return FailingDatabase(database.client, database.db)


async def _attendees_after_rollup(database: Database, settings: Settings) -> int:
    from worker.rollup import rollup_pending

    await rollup_pending(database, settings)
    return int(found(await database.sessions.find_one({"_id": "s1"}))["attendeeCount"])


async def test_a_request_whose_permanent_write_fails_answers_503_and_counts_only_once_retried(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    world: dict[str, str],
) -> None:
    from tests.seed import app_client

    failing = {"on": False}
    broken = _database_failing_on(database, "watch_segments", failing)
    client = await app_client(aiohttp_client, settings, broken, task_queue)
    await clear_pending(database)

    failing["on"] = True  # the intent lands, the permanent write fails
    response = await client.post(SEGMENTS, json=[watch_segment("g1", "s1", "u1")], headers=world)
    assert response.status == 503
    assert (await response.json())["errorCode"] == "503"
    assert await database.watch_segments.count_documents({}) == 0
    assert task_queue.signals == []
    # Nothing permanent: no rollup counts the item, however often it runs.
    assert await _attendees_after_rollup(database, settings) == 0
    assert await _attendees_after_rollup(database, settings) == 0

    failing["on"] = False  # the client retries: stored now, and counted once
    status, body = await post(client, SEGMENTS, [watch_segment("g1", "s1", "u1")], world)
    assert (status, body["accepted"], body["duplicates"]) == (200, 1, 0)
    assert await _attendees_after_rollup(database, settings) == 1
    session = found(await database.sessions.find_one({"_id": "s1"}))
    assert session["watchTime"]["total"] == 60.0
    # A second retry is a duplicate and changes no number.
    status, body = await post(client, SEGMENTS, [watch_segment("g1", "s1", "u1")], world)
    assert (status, body["accepted"], body["duplicates"]) == (200, 0, 1)
    assert await _attendees_after_rollup(database, settings) == 1
    assert found(await database.sessions.find_one({"_id": "s1"}))["watchTime"]["total"] == 60.0


async def _past_the_grace(database: Database, settings: Settings) -> None:
    """Every intent as old as one whose request can no longer write anything."""
    from shared.inbox import uncommitted_grace_s

    late = now() - timedelta(seconds=uncommitted_grace_s(settings) + 1)
    await database.segment_intents.update_many({}, {"$set": {"receivedAt": late}})


async def test_the_intent_of_a_request_whose_permanent_write_failed_is_dropped_once_it_is_over(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    world: dict[str, str],
) -> None:
    from tests.seed import app_client

    failing = {"on": True}
    broken = _database_failing_on(database, "watch_segments", failing)
    client = await app_client(aiohttp_client, settings, broken, task_queue)
    await clear_pending(database)
    response = await client.post(SEGMENTS, json=[watch_segment("g1", "s1", "u1")], headers=world)
    assert response.status == 503

    # While its request could still be writing, the intent stays; past that, it is dropped.
    assert await _attendees_after_rollup(database, settings) == 0
    assert await database.segment_intents.count_documents({}) == 1
    await _past_the_grace(database, settings)
    assert await _attendees_after_rollup(database, settings) == 0
    assert await database.segment_intents.count_documents({}) == 0
    assert await database.watch_segments.count_documents({}) == 0


async def test_a_request_whose_first_write_fails_answers_503_and_stores_nothing(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    world: dict[str, str],
) -> None:
    from tests.seed import app_client

    failing = {"on": True}
    broken = _database_failing_on(database, "segment_intents", failing)
    client = await app_client(aiohttp_client, settings, broken, task_queue)
    await clear_pending(database)

    response = await client.post(SEGMENTS, json=[watch_segment("g1", "s1", "u1")], headers=world)
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    for collection in ("watch_segments", "segment_inbox", "segment_intents"):
        assert await database[collection].count_documents({}) == 0
    assert await _attendees_after_rollup(database, settings) == 0


async def test_a_request_whose_last_write_fails_answers_200_and_its_items_count_once_after_the_tick(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    world: dict[str, str],
) -> None:
    from tests.seed import app_client

    failing = {"on": True}
    broken = _database_failing_on(database, "segment_inbox", failing)
    client = await app_client(aiohttp_client, settings, broken, task_queue)
    await clear_pending(database)

    # Stored for good: the answer says so, though the inbox batch could not be written.
    status, body = await post(client, SEGMENTS, [watch_segment("g1", "s1", "u1")], world)
    assert (status, body["accepted"], body["duplicates"]) == (200, 1, 0)
    assert await database.watch_segments.count_documents({}) == 1
    assert await database.segment_inbox.count_documents({}) == 0
    # Once its request is over, the tick queues it from its intent, and it counts once.
    await _past_the_grace(database, settings)
    assert await _attendees_after_rollup(database, settings) == 1
    assert found(await database.sessions.find_one({"_id": "s1"}))["watchTime"]["total"] == 60.0
    assert await database.segment_intents.count_documents({}) == 0
    assert await _attendees_after_rollup(database, settings) == 1


async def test_accepted_attendance_signals_a_rollup_of_its_event(
    client: Client, database: Database, world: dict[str, str], task_queue: RecordingTaskQueue
) -> None:
    await post(client, SEGMENTS, [watch_segment("g1", "s1")], world)
    await post(client, REGISTRATIONS, [registration("s2", "u1")], world)
    await post(client, SEGMENTS, [watch_segment("bad", "s404")], world)  # nothing stored: no signal
    assert task_queue.signals == [
        ("analytics.rollup_event", "session-analytics:rollup-signal:ev1", {"event_id": "ev1"}),
        ("analytics.rollup_event", "session-analytics:rollup-signal:ev1", {"event_id": "ev1"}),
    ]


async def test_ingestion_answers_while_the_broker_is_down_and_the_items_wait_for_the_tick(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, world: dict[str, str]
) -> None:
    from tests.seed import app_client

    # The real Celery client, its Redis unreachable (settings.redis_url points at port 1).
    client = await app_client(aiohttp_client, settings, database, None)
    await clear_pending(database)
    for n in range(3):
        status, body = await post(client, SEGMENTS, [watch_segment(f"g{n}", "s1")], world)
        assert (status, body["accepted"]) == (200, 1)
    assert await pending_sessions(database) == {"s1"}


async def test_sessions_of_other_events_are_not_marked(
    client: Client, database: Database, world: dict[str, str]
) -> None:
    await clear_pending(database)
    await post(client, SEGMENTS, [watch_segment("g1", "s9")], world)
    assert await pending_sessions(database) == set()


# --- the inbox: one batch per request -----------------------------------------------------------


async def test_a_request_is_queued_as_one_batch_and_one_intent_both_gone_once_folded(
    client: Client, database: Database, settings: Settings, world: dict[str, str]
) -> None:
    from worker.rollup import rollup_pending

    await clear_pending(database)
    items = [
        watch_segment("g1", "s1", "u1"),
        watch_segment("g2", "s2", "u2"),
        watch_segment("g3", "s1", "u3"),
    ]
    assert (await post(client, SEGMENTS, items, world))[1]["accepted"] == 3
    from shared.inbox import QueuedItem, batch_items
    from shared.store import epoch_ms

    batches = await database.segment_inbox.find({}).to_list(None)
    assert [(b["eventId"], b["kind"], b["count"]) for b in batches] == [("ev1", "S", 3)]
    start = epoch_ms(T0)
    assert batch_items(batches[0]) == [
        QueuedItem(session, user, "LIVE", start, start + 60_000)
        for session, user in (("s1", "u1"), ("s2", "u2"), ("s1", "u3"))
    ]
    intents = await database.segment_intents.find({}).to_list(None)
    assert [(i["_id"], i["ids"]) for i in intents] == [(batches[0]["_id"], ["ev1:g1", "ev1:g2", "ev1:g3"])]

    await rollup_pending(database, settings)
    counts = {
        s["_id"]: s["attendeeCount"] for s in await database.sessions.find({"eventId": "ev1"}).to_list(None)
    }
    assert counts == {"s1": 2, "s2": 1}
    assert await database.segment_inbox.count_documents({}) == 0
    assert await database.segment_intents.count_documents({}) == 0


@pytest.mark.parametrize(
    ("limit", "folded"),
    [
        # The first request is over the limit and taken whole; [s4] would add a session, so it
        # waits for the next batch, while the later requests on chosen sessions come along.
        ({"rollup_batch_sessions": 2}, (3 + 1, 7)),
        # One request per batch: each whole, whatever its size.
        ({"rollup_batch_items": 1}, (3 + 1 + 1 + 2, 7)),
    ],
)
async def test_a_rollup_folds_whole_requests_and_leaves_those_over_its_limits_for_its_next_batch(
    client: Client,
    database: Database,
    settings: Settings,
    world: dict[str, str],
    limit: dict[str, int],
    folded: tuple[int, int],
) -> None:
    from worker.rollup import rollup_event

    await add_session(database, "s3")
    await add_session(database, "s4")
    await clear_pending(database)
    n = 0
    for sessions in (["s1", "s2", "s3"], ["s4"], ["s1"], ["s2", "s3"]):
        items = []
        for session_id in sessions:
            n += 1
            items.append(watch_segment(f"g{n}", session_id, f"u{n}"))
        assert (await post(client, SEGMENTS, items, world))[1]["accepted"] == len(items)

    result = await rollup_event(database, settings.model_copy(update=limit), "ev1")
    assert (result.sessions, result.items, result.more) == (*folded, False)
    counts = {
        s["_id"]: s["attendeeCount"] for s in await database.sessions.find({"eventId": "ev1"}).to_list(None)
    }
    assert counts == {"s1": 2, "s2": 2, "s3": 2, "s4": 1}
    assert await sessions_with_work(database) == []
