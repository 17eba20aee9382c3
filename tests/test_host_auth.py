"""Who may call the host routes: every role against own, other, missing events and sessions;
tokens that expire, are revoked or forged; the lock-out and the per-address login throttle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

import web.auth
from shared.admin import create_event, create_ingest_key, create_user
from shared.db import Database
from shared.security import token_digest
from shared.settings import Settings
from tests.conftest import Client, RecordingTaskQueue
from tests.seed import (
    PASSWORD,
    USERS,
    add_session,
    app_client,
    bearer,
    cheap_password_hashing,
    error_of,
    found,
    login,
    seed_world,
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


def _session_body(event_id: str, title: str) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "title": title,
        "startTime": "2024-05-01T09:00:00Z",
        "endTime": "2024-05-01T10:00:00Z",
        "format": "BREAKOUT_SESSION",
        "streamProvider": "YOUTUBE",
        "videoId": "vid",
    }


# (target, route, method, path, body): every host route against each kind of target.
HOST_REQUESTS = [
    ("own event", "list", "GET", "/rest/host/session/analytics?eventId=ev1", None),
    ("own event", "csv", "GET", "/rest/host/session/analytics/csv?eventId=ev1", None),
    ("own event", "detail", "GET", "/rest/host/session/s1/analytics", None),
    ("own event", "attendees", "GET", "/rest/host/session/s1/attendee", None),
    ("own event", "put", "PUT", "/rest/host/session/s1", _session_body("ev1", "Session s1")),
    ("own event", "recompute", "POST", "/rest/host/session/analytics/recompute?eventId=ev1", None),
    ("other event", "list", "GET", "/rest/host/session/analytics?eventId=ev2", None),
    ("other event", "csv", "GET", "/rest/host/session/analytics/csv?eventId=ev2", None),
    ("other event", "detail", "GET", "/rest/host/session/s2/analytics", None),
    ("other event", "attendees", "GET", "/rest/host/session/s2/attendee", None),
    ("other event", "put", "PUT", "/rest/host/session/s2", _session_body("ev2", "Session s2")),
    ("other event", "recompute", "POST", "/rest/host/session/analytics/recompute?eventId=ev2", None),
    ("missing event", "list", "GET", "/rest/host/session/analytics?eventId=nope", None),
    ("missing event", "csv", "GET", "/rest/host/session/analytics/csv?eventId=nope", None),
    ("missing event", "put", "PUT", "/rest/host/session/s9", _session_body("nope", "New")),
    ("missing event", "recompute", "POST", "/rest/host/session/analytics/recompute?eventId=nope", None),
    *[
        (target, route, "GET", f"/rest/host/event/{event}/{path}", None)
        for target, event in (("own event", "ev1"), ("other event", "ev2"), ("missing event", "nope"))
        for route, path in (("summary", "analytics"), ("people", "attendee"), ("people csv", "attendee/csv"))
    ],
    ("missing session", "detail", "GET", "/rest/host/session/nope/analytics", None),
    ("missing session", "attendees", "GET", "/rest/host/session/nope/attendee", None),
]

ALLOWED = {"own event": "ok", "other event": "ok", "missing event": "4040200", "missing session": "404800"}
OWN_ONLY = {
    "own event": "ok",
    "other event": "4030201",
    "missing event": "4040200",
    "missing session": "404800",
}
EXPECTED: dict[str, dict[str, str]] = {
    "SUPER_ADMIN": ALLOWED,
    "ORGANIZER_ADMIN": OWN_ONLY,
    "EVENT_ADMIN": OWN_ONLY,
    # No host access at all: refused before anything is looked up, so ids do not leak.
    "ATTENDEE": dict.fromkeys(ALLOWED, "4030201"),
    "ingest key": dict.fromkeys(ALLOWED, "403"),
    "no token": dict.fromkeys(ALLOWED, "401"),
}
STATUS_OF_CODE = {"4030201": 403, "403": 403, "4040200": 404, "404800": 404, "401": 401}
SUCCESS_STATUS = {
    "list": 200,
    "csv": 200,
    "detail": 200,
    "attendees": 200,
    "put": 200,
    "recompute": 202,
    "summary": 200,
    "people": 200,
    "people csv": 200,
}
ROLE_USER = {
    "SUPER_ADMIN": "super",
    "ORGANIZER_ADMIN": "organizer",
    "EVENT_ADMIN": "event_admin",
    "ATTENDEE": "attendee",
}


async def _credentials(client: Any, database: Any, who: str) -> dict[str, str]:
    if who == "no token":
        return {}
    if who == "ingest key":
        return bearer(await create_ingest_key(database, ["ev1", "ev2"]))
    return await login(client, ROLE_USER[who])


async def _success_shows(route: str, response: Any, target: str) -> bool:
    """Whether a 2xx answer is about the requested event or session."""
    session_id, event_id = ("s1", "ev1") if target == "own event" else ("s2", "ev2")
    if route == "csv":
        lines = (await response.text()).splitlines()
        return len(lines) == 2 and lines[1].startswith(f"Session {session_id},")
    if route == "people csv":
        return bool((await response.text()).splitlines()[0].startswith("User ID,"))
    body: dict[str, Any] = await response.json()
    if route == "summary":
        return bool(body["eventId"] == event_id and body["sessions"] == 1)
    if route == "people":
        return bool(body["recordsTotal"] == 0 and body["data"] == [])
    if route == "list":
        return [item["sessionId"] for item in body["data"]] == [session_id]
    if route == "attendees":
        return bool(body["recordsTotal"] == 0 and body["data"] == [])
    if route == "recompute":
        return bool(body["eventId"] == event_id and body["taskId"])
    return bool(body["sessionId"] == session_id)


@pytest.mark.parametrize("who", list(EXPECTED))
async def test_host_routes_answer_by_role_and_event_ownership(
    client: Client, database: Database, who: str
) -> None:
    await seed_world(database)
    await add_session(database, "s1", "ev1")
    await add_session(database, "s2", "ev2")
    headers = await _credentials(client, database, who)

    seen, expected = {}, {}
    for target, route, method, path, body in HOST_REQUESTS:
        response = await client.request(method, path, json=body, headers=headers)
        code = EXPECTED[who][target]
        if code == "ok":
            expected[(target, route)] = (SUCCESS_STATUS[route], "ok")
            shown = await _success_shows(route, response, target) if response.status < 300 else ""
            seen[(target, route)] = (response.status, "ok" if shown else await response.text())
        else:
            expected[(target, route)] = (STATUS_OF_CODE[code], code)
            seen[(target, route)] = (
                await error_of(response)
                if response.status >= 400
                else (response.status, await response.text())
            )
    assert seen == expected


async def test_organizer_admin_hosts_every_event_of_its_organizer_and_event_admin_only_its_own(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    await create_event(database, "ev3", "org1", "Second event of org1")
    await add_session(database, "s3", "ev3")
    path = "/rest/host/session/analytics?eventId=ev3"

    organizer = await client.get(path, headers=await login(client, "organizer"))
    assert organizer.status == 200
    assert [item["sessionId"] for item in (await organizer.json())["data"]] == ["s3"]
    event_admin = await client.get(path, headers=await login(client, "event_admin"))
    assert await error_of(event_admin) == (403, "4030201")


async def test_user_token_on_an_ingest_route_gets_403_with_code_403(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    await add_session(database, "s1", "ev1")
    for who in ("super", "attendee"):
        response = await client.post(
            "/rest/events/ev1/watch-segments", json=[], headers=await login(client, who)
        )
        assert await error_of(response) == (403, "403")
    assert await database.watch_segments.count_documents({}) == 0


async def test_login_answers_a_bearer_token_with_its_expiry_user_and_role(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    before = datetime.now(UTC).replace(microsecond=0)
    response = await client.post(
        "/rest/u/login", json={"username": "  EventAdmin@Example.com ", "password": PASSWORD}
    )
    body = await response.json()
    assert response.status == 200, body
    user = found(await database.users.find_one({"email": "eventadmin@example.com"}))
    assert set(body) == {"access_token", "token_type", "expires_in", "userId", "userRole"}
    assert body["token_type"] == "Bearer"
    assert body["userId"] == user["_id"]
    assert body["userRole"] == "EVENT_ADMIN"
    expires = datetime.strptime(body["expires_in"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(hours=12) <= expires <= before + timedelta(hours=12, seconds=5)
    listed = await client.get(
        "/rest/host/session/analytics?eventId=ev1", headers=bearer(body["access_token"])
    )
    assert listed.status == 200
    # The vendor's clients send the token in an AUTHENTICATION header.
    vendor = await client.get(
        "/rest/host/session/analytics?eventId=ev1", headers={"AUTHENTICATION": body["access_token"]}
    )
    assert vendor.status == 200


async def test_wrong_password_and_unknown_user_get_the_same_4010101_answer(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    wrong = await client.post("/rest/u/login", json={"username": "super@example.com", "password": "not it"})
    unknown = await client.post(
        "/rest/u/login", json={"username": "nobody@example.com", "password": "not it"}
    )
    assert await error_of(wrong) == (401, "4010101")
    assert await error_of(unknown) == (401, "4010101")
    wrong_body, unknown_body = await wrong.json(), await unknown.json()
    assert wrong_body["errorMessage"] == unknown_body["errorMessage"]
    assert wrong_body["developerMessage"] == unknown_body["developerMessage"]


async def test_token_past_its_expires_in_gets_401(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_world(database)
    response = await client.post(
        "/rest/u/login", json={"username": "super@example.com", "password": PASSWORD}
    )
    body = await response.json()
    expires = datetime.strptime(body["expires_in"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    path, headers = "/rest/host/session/analytics?eventId=ev1", bearer(body["access_token"])

    monkeypatch.setattr(web.auth, "_now", lambda: expires - timedelta(seconds=1))
    assert (await client.get(path, headers=headers)).status == 200
    monkeypatch.setattr(web.auth, "_now", lambda: expires)
    assert await error_of(await client.get(path, headers=headers)) == (401, "401")


async def test_token_expired_in_the_database_gets_401(client: Client, database: Database) -> None:
    await seed_world(database)
    headers = await login(client, "super")
    token = headers["Authorization"].removeprefix("Bearer ")
    await database.tokens.update_one(
        {"_id": token_digest(token)},
        {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}},
    )
    response = await client.get("/rest/host/session/analytics?eventId=ev1", headers=headers)
    assert await error_of(response) == (401, "401")


async def test_logout_revokes_that_token_only(client: Client, database: Database) -> None:
    await seed_world(database)
    first, second = await login(client, "super"), await login(client, "super")
    path = "/rest/host/session/analytics?eventId=ev1"

    logout = await client.post("/rest/u/logout", headers=first)
    assert logout.status == 204
    assert await error_of(await client.get(path, headers=first)) == (401, "401")
    assert await error_of(await client.post("/rest/u/logout", headers=first)) == (401, "401")
    assert (await client.get(path, headers=second)).status == 200


async def test_attendee_may_log_out(client: Client, database: Database) -> None:
    await seed_world(database)
    headers = await login(client, "attendee")
    assert (await client.post("/rest/u/logout", headers=headers)).status == 204
    response = await client.get("/rest/host/session/analytics?eventId=ev1", headers=headers)
    assert await error_of(response) == (401, "401")


async def test_forged_and_malformed_credentials_get_401(client: Client, database: Database) -> None:
    await seed_world(database)
    real = (await login(client, "super"))["Authorization"].removeprefix("Bearer ")
    forged_headers = [
        bearer("sat_" + "A" * 43),  # right shape, never issued
        bearer(real[:-1] + ("A" if real[-1] != "A" else "B")),  # one character changed
        bearer("sak_" + "A" * 43),  # an ingest key that was never issued
        bearer(real.removeprefix("sat_")),  # no prefix
        bearer("sat_" + "A" * 200),  # over the length limit
        bearer("x"),
        {"Authorization": f"Basic {real}"},
        {"Authorization": "Bearer "},
        {"Authorization": real},
        {"AUTHENTICATION": "sat_" + "B" * 43},
        {"AUTHENTICATION": ""},
        {"Authorization": 'Bearer {"$ne": ""}'},
    ]
    for headers in forged_headers:
        response = await client.get("/rest/host/session/analytics?eventId=ev1", headers=headers)
        assert await error_of(response) == (401, "401"), headers


async def test_five_wrong_passwords_lock_the_account_for_30_minutes(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_world(database)
    t0 = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setattr(web.auth, "_now", lambda: t0)
    wrong = {"username": "org@example.com", "password": "wrong password"}
    right = {"username": "org@example.com", "password": PASSWORD}

    answers = [await error_of(await client.post("/rest/u/login", json=wrong)) for _ in range(5)]
    assert answers == [(401, "4010101")] * 4 + [(401, "4010102")]
    assert await error_of(await client.post("/rest/u/login", json=right)) == (401, "4010102")

    monkeypatch.setattr(web.auth, "_now", lambda: t0 + timedelta(minutes=30) - timedelta(seconds=1))
    assert await error_of(await client.post("/rest/u/login", json=right)) == (401, "4010102")
    monkeypatch.setattr(web.auth, "_now", lambda: t0 + timedelta(minutes=30))
    unlocked = await client.post("/rest/u/login", json=right)
    assert unlocked.status == 200
    assert (await unlocked.json())["userRole"] == "ORGANIZER_ADMIN"


async def test_lock_ends_when_locked_until_is_in_the_past(client: Client, database: Database) -> None:
    await seed_world(database)
    wrong = {"username": "org@example.com", "password": "wrong password"}
    right = {"username": "org@example.com", "password": PASSWORD}
    for _ in range(5):
        await client.post("/rest/u/login", json=wrong)
    assert await error_of(await client.post("/rest/u/login", json=right)) == (401, "4010102")

    # Another web process (or the clock) ended the lock: the stored end time is what counts.
    await database.login_attempts.update_many(
        {"lockedUntil": {"$exists": True}},
        {"$set": {"lockedUntil": datetime.now(UTC) - timedelta(seconds=1)}},
    )
    assert (await client.post("/rest/u/login", json=right)).status == 200
    # The count starts again: four wrong passwords do not lock it.
    answers = [await error_of(await client.post("/rest/u/login", json=wrong)) for _ in range(4)]
    assert answers == [(401, "4010101")] * 4


async def test_lockout_s_setting_sets_the_lock_length(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await app_client(aiohttp_client, settings, database, task_queue, lockout_s=90)
    await seed_world(database)
    t0 = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setattr(web.auth, "_now", lambda: t0)
    for _ in range(5):
        await client.post("/rest/u/login", json={"username": "org@example.com", "password": "no"})
    right = {"username": "org@example.com", "password": PASSWORD}
    assert await error_of(await client.post("/rest/u/login", json=right)) == (401, "4010102")
    monkeypatch.setattr(web.auth, "_now", lambda: t0 + timedelta(seconds=90))
    assert (await client.post("/rest/u/login", json=right)).status == 200


async def test_a_right_password_resets_the_count_of_wrong_ones(client: Client, database: Database) -> None:
    await seed_world(database)
    wrong = {"username": "org@example.com", "password": "wrong password"}
    right = {"username": "org@example.com", "password": PASSWORD}
    for _ in range(4):
        await client.post("/rest/u/login", json=wrong)
    assert (await client.post("/rest/u/login", json=right)).status == 200
    answers = [await error_of(await client.post("/rest/u/login", json=wrong)) for _ in range(4)]
    assert answers == [(401, "4010101")] * 4
    assert (await client.post("/rest/u/login", json=right)).status == 200


async def test_wrong_passwords_are_forgotten_lockout_s_after_the_latest_one(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_world(database)
    t0 = datetime.now(UTC).replace(microsecond=0)
    wrong = {"username": "org@example.com", "password": "wrong password"}

    async def wrong_at(moment: datetime, times: int) -> list[tuple[int, str]]:
        monkeypatch.setattr(web.auth, "_now", lambda: moment)
        return [await error_of(await client.post("/rest/u/login", json=wrong)) for _ in range(times)]

    # Four failures, then none for 30 minutes: the next four start a new count.
    assert await wrong_at(t0, 4) == [(401, "4010101")] * 4
    assert await wrong_at(t0 + timedelta(minutes=30), 4) == [(401, "4010101")] * 4
    # A failure 20 minutes after the latest still counts: the fifth in a row locks.
    assert await wrong_at(t0 + timedelta(minutes=50), 1) == [(401, "4010102")]


async def test_login_throttle_answers_429_with_retry_after_until_the_minute_ends(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await app_client(aiohttp_client, settings, database, task_queue, login_throttle_per_minute=3)
    await seed_world(database)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    monkeypatch.setattr(web.auth, "_now", lambda: minute + timedelta(seconds=45))
    right = {"username": "super@example.com", "password": PASSWORD}
    wrong = {"username": "org@example.com", "password": "wrong password"}

    assert [(await client.post("/rest/u/login", json=right)).status for _ in range(3)] == [200] * 3
    throttled = await client.post("/rest/u/login", json=right)
    assert await error_of(throttled) == (429, "429")
    assert throttled.headers["Retry-After"] == "15"
    # A throttled attempt is not checked, so it does not count towards the lock-out either.
    assert await error_of(await client.post("/rest/u/login", json=wrong)) == (429, "429")

    monkeypatch.setattr(web.auth, "_now", lambda: minute + timedelta(seconds=59))
    assert (await client.post("/rest/u/login", json=right)).headers["Retry-After"] == "1"
    monkeypatch.setattr(web.auth, "_now", lambda: minute + timedelta(minutes=1))
    assert (await client.post("/rest/u/login", json=right)).status == 200
    answers = [await error_of(await client.post("/rest/u/login", json=wrong)) for _ in range(2)]
    monkeypatch.setattr(web.auth, "_now", lambda: minute + timedelta(minutes=2))
    answers += [await error_of(await client.post("/rest/u/login", json=wrong)) for _ in range(3)]
    # Five counted failures lock it; had the throttled one counted, the fourth would have.
    assert answers == [(401, "4010101")] * 4 + [(401, "4010102")]


async def test_login_throttle_is_shared_by_every_web_process(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await app_client(aiohttp_client, settings, database, task_queue, login_throttle_per_minute=2)
    second = await app_client(aiohttp_client, settings, database, task_queue, login_throttle_per_minute=2)
    await seed_world(database)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    monkeypatch.setattr(web.auth, "_now", lambda: minute + timedelta(seconds=10))
    right = {"username": "super@example.com", "password": PASSWORD}
    assert (await first.post("/rest/u/login", json=right)).status == 200
    assert (await second.post("/rest/u/login", json=right)).status == 200
    throttled = await first.post("/rest/u/login", json=right)
    assert await error_of(throttled) == (429, "429")
    assert throttled.headers["Retry-After"] == "50"


async def test_new_grants_apply_to_tokens_already_issued(client: Client, database: Database) -> None:
    await seed_world(database)
    headers = await login(client, "event_admin")
    path = "/rest/host/session/analytics?eventId=ev2"
    assert await error_of(await client.get(path, headers=headers)) == (403, "4030201")
    email, role, _, _ = USERS["event_admin"]
    await create_user(database, email, PASSWORD, role, ["ev1", "ev2"])
    assert (await client.get(path, headers=headers)).status == 200
