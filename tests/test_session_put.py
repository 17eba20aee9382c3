"""PUT /rest/host/session/{sessionId}: create (201), update (200), the answer as the list shows it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.seed import cheap_password_hashing, database_state, error_of, login, seed_world

BODY = {
    "eventId": "ev1",
    "title": "  Opening keynote ",
    "startTime": "2024-05-01T11:00:00+02:00",
    "endTime": "2024-05-01T10:00:00.250Z",
    "format": "MAINSTAGE_SESSION",
    "streamProvider": "YOUTUBE",
    "videoId": "dQw4w9WgXcQ",
}
CREATED = {
    "sessionId": "keynote",
    "title": "Opening keynote",
    "startTime": "2024-05-01T09:00:00Z",
    "endTime": "2024-05-01T10:00:00.250Z",
    "format": "MAINSTAGE_SESSION",
    "streamProvider": "YOUTUBE",
    "registeredUserCount": 0,
    "attendeeCount": 0,
    "avgAttendedDuration": 0.0,
    "recordingViews": 0,
    "liveViews": 0,
    "analyticsAvailable": True,
    "analyticsUpdatedAt": None,
    "durationStatus": "PENDING",  # the duration sync has not asked YouTube yet
    "timeZone": "UTC",
    "startTimeLocal": "2024-05-01T09:00:00+00:00",
    "endTimeLocal": "2024-05-01T10:00:00.250+00:00",
}


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _listed(client: Any, headers: dict[str, str], **query: str) -> list[dict[str, Any]]:
    response = await client.get(
        "/rest/host/session/analytics", params={"eventId": "ev1", **query}, headers=headers
    )
    return (await response.json())["data"]


async def test_put_creates_a_session_with_201_and_answers_it_as_the_list_shows_it(client, database):
    await seed_world(database)
    headers = await login(client, "event_admin")

    response = await client.put("/rest/host/session/keynote", json=BODY, headers=headers)

    assert response.status == 201
    assert await response.json() == CREATED
    assert await _listed(client, headers) == [CREATED]
    expanded = await _listed(client, headers, expand="duration,watchTime")
    assert (expanded[0]["duration"], expanded[0]["watchTime"]) == (
        None,
        {"total": 0.0, "live": 0.0, "recording": 0.0},
    )


async def test_put_again_updates_with_200_and_keeps_the_numbers(client, database):
    await seed_world(database)
    headers = await login(client, "event_admin")
    assert (await client.put("/rest/host/session/keynote", json=BODY, headers=headers)).status == 201
    await database.sessions.update_one(
        {"_id": "keynote"},
        {"$set": {"attendeeCount": 40, "registeredUserCount": 55, "liveViews": 31, "duration": 3600.0}},
    )

    changed = {
        **BODY,
        "title": "Keynote (moved)",
        "startTime": "2024-05-01T09:30:00Z",
        "format": "MAINSTAGE_SESSION",
    }
    response = await client.put("/rest/host/session/keynote", json=changed, headers=headers)

    expected = {
        **CREATED,
        "title": "Keynote (moved)",
        "startTime": "2024-05-01T09:30:00Z",
        "startTimeLocal": "2024-05-01T09:30:00+00:00",
        "durationStatus": "KNOWN",
        "attendeeCount": 40,
        "registeredUserCount": 55,
        "liveViews": 31,
    }
    assert response.status == 200
    assert await response.json() == expected
    assert await _listed(client, headers) == [expected]
    # Same video: the known duration stays.
    assert (await _listed(client, headers, expand="duration"))[0]["duration"] == 3600.0
    assert await database.sessions.count_documents({}) == 1


async def test_put_with_another_video_forgets_the_old_duration(client, database):
    await seed_world(database)
    headers = await login(client, "super")
    await client.put("/rest/host/session/keynote", json=BODY, headers=headers)
    await database.sessions.update_one({"_id": "keynote"}, {"$set": {"duration": 3600.0}})

    response = await client.put(
        "/rest/host/session/keynote",
        headers=headers,
        json={**BODY, "streamProvider": "VIMEO", "videoId": "76979871"},
    )

    assert response.status == 200
    assert (await response.json())["streamProvider"] == "VIMEO"
    assert (await _listed(client, headers, expand="duration"))[0]["duration"] is None


async def test_put_without_a_stream_answers_null_provider_and_duration(client, database):
    await seed_world(database)
    headers = await login(client, "super")
    body = {key: value for key, value in BODY.items() if key not in ("streamProvider", "videoId")}
    body["format"] = "NETWORKING_SESSION"
    response = await client.put("/rest/host/session/lounge", json=body, headers=headers)
    assert response.status == 201
    answer = await response.json()
    assert (answer["sessionId"], answer["streamProvider"], answer["format"]) == (
        "lounge",
        None,
        "NETWORKING_SESSION",
    )
    assert (await _listed(client, headers, expand="duration"))[0]["duration"] is None


async def test_put_on_a_zoom_session_answers_null_analytics(client, database):
    await seed_world(database)
    headers = await login(client, "super")
    response = await client.put(
        "/rest/host/session/zoomed",
        headers=headers,
        json={**BODY, "streamProvider": "ZOOM", "videoId": "8150000"},
    )
    answer = await response.json()
    assert response.status == 201
    assert (
        answer["analyticsAvailable"],
        answer["avgAttendedDuration"],
        answer["liveViews"],
        answer["recordingViews"],
    ) == (False, None, None, None)
    assert await _listed(client, headers) == [answer]


async def test_put_cannot_move_a_session_to_another_event(client, database):
    await seed_world(database)
    headers = await login(client, "super")
    await client.put("/rest/host/session/keynote", json=BODY, headers=headers)
    before = await database_state(database)

    response = await client.put(
        "/rest/host/session/keynote", json={**BODY, "eventId": "ev2"}, headers=headers
    )

    assert await error_of(response) == (400, "400")
    assert await database_state(database) == before
    assert [item["sessionId"] for item in await _listed(client, headers)] == ["keynote"]


async def test_put_by_a_host_of_another_event_writes_nothing(client, database):
    await seed_world(database)
    before = await database_state(database)
    headers = await login(client, "event_admin")
    response = await client.put(
        "/rest/host/session/intruder", json={**BODY, "eventId": "ev2"}, headers=headers
    )
    assert await error_of(response) == (403, "4030201")
    assert await database_state(database, skip=("login_attempts", "tokens")) == {
        name: docs for name, docs in before.items() if name != "tokens"
    }
