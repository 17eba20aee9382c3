"""The session list as hosts see it: every field and value, expand, sort, paging, search."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from yarl import URL

from shared.db import Database
from tests.conftest import Client
from tests.seed import (
    T0,
    add_session,
    cheap_password_hashing,
    clone_sessions,
    error_of,
    login,
    seed_world,
)

LIST = "/rest/host/session/analytics"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _list(client: Any, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = await client.get(LIST, params={"eventId": "ev1", **query}, headers=headers)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    return [item["sessionId"] for item in body["data"]]


ROLLED_UP = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)


async def _seed_every_kind_of_session(database: Any) -> None:
    """One session of each kind the rules of DESIGN §4 treat differently, in startTime order."""
    await add_session(
        database,
        "yt",
        title="Keynote",
        start=T0,
        session_format="MAINSTAGE_SESSION",
        numbers={
            "registeredUserCount": 12,
            "attendeeCount": 9,
            "avgAttendedDuration": 754.5,
            "liveViews": 7,
            "recordingViews": 4,
            "watchTime": {"total": 6790.5, "live": 5000.25, "recording": 2100.0},
            "duration": 3600.0,
            "analyticsUpdatedAt": ROLLED_UP,
        },
    )
    # ZOOM: no analytics from the provider and no duration, whatever a document holds.
    await add_session(
        database,
        "zoom",
        title="Zoom panel",
        start=T0 + timedelta(hours=1),
        provider="ZOOM",
        numbers={
            "registeredUserCount": 5,
            "attendeeCount": 3,
            "avgAttendedDuration": None,
            "liveViews": None,
            "recordingViews": None,
            "watchTime": {"total": 900.0, "live": 900.0, "recording": 0.0},
            "duration": 1234.0,
            "analyticsUpdatedAt": ROLLED_UP,
        },
    )
    # WISTIA: a duration from the provider, but no view analytics.
    await add_session(
        database,
        "wistia",
        title="Wistia replay",
        start=T0 + timedelta(hours=2),
        provider="WISTIA",
        numbers={
            "registeredUserCount": 2,
            "attendeeCount": 2,
            "watchTime": {"total": 120.0, "live": 0.0, "recording": 120.0},
            "duration": 95.5,
            "analyticsUpdatedAt": ROLLED_UP,
        },
    )
    # A workshop has no video, so no duration even on YouTube.
    await add_session(
        database,
        "workshop",
        title="Workshop",
        start=T0 + timedelta(hours=3),
        session_format="WORKSHOP_SESSION",
        numbers={
            "registeredUserCount": 4,
            "attendeeCount": 1,
            "avgAttendedDuration": 60,
            "liveViews": 1,
            "recordingViews": 0,
            "watchTime": {"total": 60.0, "live": 60.0, "recording": 0.0},
            "duration": 2000.0,
            "analyticsUpdatedAt": ROLLED_UP,
        },
    )
    await add_session(
        database, "nostream", title="Hallway", start=T0 + timedelta(hours=4), provider=None, video_id=None
    )
    # Created, never rolled up, duration not synced yet.
    await add_session(
        database, "fresh", title="Fresh", start=T0 + timedelta(hours=5), provider="VIMEO", video_id="76979871"
    )


EVERY_KIND: list[dict[str, Any]] = [
    {
        "sessionId": "yt",
        "title": "Keynote",
        "startTime": "2024-05-01T09:00:00Z",
        "endTime": "2024-05-01T10:00:00Z",
        "format": "MAINSTAGE_SESSION",
        "streamProvider": "YOUTUBE",
        "registeredUserCount": 12,
        "attendeeCount": 9,
        "avgAttendedDuration": 754.5,
        "recordingViews": 4,
        "liveViews": 7,
        "analyticsAvailable": True,
        "analyticsUpdatedAt": "2024-05-01T12:34:56.789Z",
        "durationStatus": "KNOWN",
        "timeZone": "UTC",
        "startTimeLocal": "2024-05-01T09:00:00+00:00",
        "endTimeLocal": "2024-05-01T10:00:00+00:00",
        "duration": 3600.0,
        "watchTime": {"total": 6790.5, "live": 5000.25, "recording": 2100.0},
    },
    {
        "sessionId": "zoom",
        "title": "Zoom panel",
        "startTime": "2024-05-01T10:00:00Z",
        "endTime": "2024-05-01T11:00:00Z",
        "format": "BREAKOUT_SESSION",
        "streamProvider": "ZOOM",
        "registeredUserCount": 5,
        "attendeeCount": 3,
        "avgAttendedDuration": None,
        "recordingViews": None,
        "liveViews": None,
        "analyticsAvailable": False,
        "analyticsUpdatedAt": "2024-05-01T12:34:56.789Z",
        "durationStatus": "NOT_SUPPORTED",
        "timeZone": "UTC",
        "startTimeLocal": "2024-05-01T10:00:00+00:00",
        "endTimeLocal": "2024-05-01T11:00:00+00:00",
        "duration": None,
        "watchTime": {"total": 900.0, "live": 900.0, "recording": 0.0},
    },
    {
        "sessionId": "wistia",
        "title": "Wistia replay",
        "startTime": "2024-05-01T11:00:00Z",
        "endTime": "2024-05-01T12:00:00Z",
        "format": "BREAKOUT_SESSION",
        "streamProvider": "WISTIA",
        "registeredUserCount": 2,
        "attendeeCount": 2,
        "avgAttendedDuration": None,
        "recordingViews": None,
        "liveViews": None,
        "analyticsAvailable": False,
        "analyticsUpdatedAt": "2024-05-01T12:34:56.789Z",
        "durationStatus": "KNOWN",
        "timeZone": "UTC",
        "startTimeLocal": "2024-05-01T11:00:00+00:00",
        "endTimeLocal": "2024-05-01T12:00:00+00:00",
        "duration": 95.5,
        "watchTime": {"total": 120.0, "live": 0.0, "recording": 120.0},
    },
    {
        "sessionId": "workshop",
        "title": "Workshop",
        "startTime": "2024-05-01T12:00:00Z",
        "endTime": "2024-05-01T13:00:00Z",
        "format": "WORKSHOP_SESSION",
        "streamProvider": "YOUTUBE",
        "registeredUserCount": 4,
        "attendeeCount": 1,
        "avgAttendedDuration": 60,
        "recordingViews": 0,
        "liveViews": 1,
        "analyticsAvailable": True,
        "analyticsUpdatedAt": "2024-05-01T12:34:56.789Z",
        "durationStatus": "NO_VIDEO",
        "timeZone": "UTC",
        "startTimeLocal": "2024-05-01T12:00:00+00:00",
        "endTimeLocal": "2024-05-01T13:00:00+00:00",
        "duration": None,
        "watchTime": {"total": 60.0, "live": 60.0, "recording": 0.0},
    },
    {
        "sessionId": "nostream",
        "title": "Hallway",
        "startTime": "2024-05-01T13:00:00Z",
        "endTime": "2024-05-01T14:00:00Z",
        "format": "BREAKOUT_SESSION",
        "streamProvider": None,
        "registeredUserCount": 0,
        "attendeeCount": 0,
        "avgAttendedDuration": 0.0,
        "recordingViews": 0,
        "liveViews": 0,
        "analyticsAvailable": True,
        "analyticsUpdatedAt": None,
        "durationStatus": "NO_VIDEO",
        "timeZone": "UTC",
        "startTimeLocal": "2024-05-01T13:00:00+00:00",
        "endTimeLocal": "2024-05-01T14:00:00+00:00",
        "duration": None,
        "watchTime": {"total": 0.0, "live": 0.0, "recording": 0.0},
    },
    {
        "sessionId": "fresh",
        "title": "Fresh",
        "startTime": "2024-05-01T14:00:00Z",
        "endTime": "2024-05-01T15:00:00Z",
        "format": "BREAKOUT_SESSION",
        "streamProvider": "VIMEO",
        "registeredUserCount": 0,
        "attendeeCount": 0,
        "avgAttendedDuration": 0.0,
        "recordingViews": 0,
        "liveViews": 0,
        "analyticsAvailable": True,
        "analyticsUpdatedAt": None,
        "durationStatus": "PENDING",
        "timeZone": "UTC",
        "startTimeLocal": "2024-05-01T14:00:00+00:00",
        "endTimeLocal": "2024-05-01T15:00:00+00:00",
        "duration": None,
        "watchTime": {"total": 0.0, "live": 0.0, "recording": 0.0},
    },
]


async def test_list_shows_every_field_with_its_seeded_value(client: Client, database: Database) -> None:
    await seed_world(database)
    await _seed_every_kind_of_session(database)
    await add_session(database, "elsewhere", "ev2")

    body = await _list(client, await login(client, "super"), expand="duration,watchTime")

    assert {key: body[key] for key in ("recordsTotal", "recordsFiltered", "page", "size")} == {
        "recordsTotal": 6,
        "recordsFiltered": 6,
        "page": 0,
        "size": 50,
    }
    assert body["data"] == EVERY_KIND


async def test_list_without_expand_leaves_out_duration_and_watch_time(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    await _seed_every_kind_of_session(database)

    body = await _list(client, await login(client, "super"))

    unexpanded = [
        {k: v for k, v in item.items() if k not in ("duration", "watchTime")} for item in EVERY_KIND
    ]
    assert body["data"] == unexpanded


EXPAND_SPELLINGS = {
    "duration": {"duration"},
    "Duration": {"duration"},
    "DURATION": {"duration"},
    "watchTime": {"watchTime"},
    "watchtime": {"watchTime"},
    "Watch Time": {"watchTime"},
    "watch time": {"watchTime"},
    "WATCH_TIME": {"watchTime"},
    "watch_time": {"watchTime"},
    "WaTcH-TiMe": {"watchTime"},
    "duration,watchTime": {"duration", "watchTime"},
    "Duration, Watch Time": {"duration", "watchTime"},
    "WATCH_TIME,DURATION": {"duration", "watchTime"},
    "duration,duration": {"duration"},
    "duration,": {"duration"},
    "": set(),
}


async def test_every_expand_spelling_adds_its_field_in_any_case(client: Client, database: Database) -> None:
    await seed_world(database)
    await _seed_every_kind_of_session(database)
    headers = await login(client, "super")

    extras = {}
    for spelling in EXPAND_SPELLINGS:
        body = await _list(client, headers, expand=spelling, size=1)
        extras[spelling] = set(body["data"][0]) & {"duration", "watchTime"}
        if "duration" in extras[spelling]:
            assert body["data"][0]["duration"] == 3600.0
        if "watchTime" in extras[spelling]:
            assert body["data"][0]["watchTime"] == EVERY_KIND[0]["watchTime"]
    assert extras == EXPAND_SPELLINGS


async def test_expand_may_be_given_as_repeated_parameters(client: Client, database: Database) -> None:
    await seed_world(database)
    await _seed_every_kind_of_session(database)
    response = await client.get(
        f"{LIST}?eventId=ev1&size=1&expand=Duration&expand=Watch%20Time", headers=await login(client, "super")
    )
    item = (await response.json())["data"][0]
    assert (item["duration"], item["watchTime"]["total"]) == (3600.0, 6790.5)


# sessionId: (start hour, title, attendeeCount, liveViews, recordingViews, avgAttendedDuration)
def _sort_value(position: int) -> Callable[[str], Any]:
    return lambda sid: SORTABLE[sid][position]


SORTABLE = {
    "a": (3, "Delta", 10, 2, 9, 120.5),
    "b": (1, "alpha", 30, 5, 1, 15.0),
    "c": (4, "Bravo", 20, 9, 4, 300.0),
    "d": (0, "Echo", 40, 1, 7, 42.25),
    "e": (2, "Charlie", 5, 7, 2, 999.0),
}
SORT_KEYS = ("startTime", "title", "attendeeCount", "liveViews", "recordingViews", "avgAttendedDuration")


async def test_list_sorts_by_every_key_both_ways(client: Client, database: Database) -> None:
    await seed_world(database)
    for session_id, (hour, title, attendees, live, recording, avg) in SORTABLE.items():
        await add_session(
            database,
            session_id,
            title=title,
            start=T0 + timedelta(hours=hour),
            numbers={
                "attendeeCount": attendees,
                "liveViews": live,
                "recordingViews": recording,
                "avgAttendedDuration": avg,
            },
        )
    headers = await login(client, "super")

    seen, expected = {}, {}
    for position, key in enumerate(SORT_KEYS):
        # Titles compare by code point, as MongoDB does: capitals before lower case.
        ascending = sorted(SORTABLE, key=_sort_value(position))
        expected[key], expected["-" + key] = ascending, ascending[::-1]
        seen[key] = _ids(await _list(client, headers, sort=key))
        seen["-" + key] = _ids(await _list(client, headers, sort="-" + key))
    assert seen == expected
    assert _ids(await _list(client, headers)) == expected["startTime"]


async def test_sort_ties_are_broken_by_session_id_in_the_same_direction(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    for session_id in ("t2", "t1", "t3"):
        await add_session(database, session_id, numbers={"attendeeCount": 7})
    await add_session(database, "t0", numbers={"attendeeCount": 8})
    headers = await login(client, "super")
    assert _ids(await _list(client, headers, sort="attendeeCount")) == ["t1", "t2", "t3", "t0"]
    assert _ids(await _list(client, headers, sort="-attendeeCount")) == ["t0", "t3", "t2", "t1"]
    # Pages never repeat or skip a session, however many tie.
    pages = [_ids(await _list(client, headers, sort="attendeeCount", size=1, page=p)) for p in range(4)]
    assert pages == [["t1"], ["t2"], ["t3"], ["t0"]]


async def test_paging_edges_last_page_past_the_end_and_the_largest_size(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    await add_session(database, "first", title="First", start=T0 - timedelta(days=1))
    clones = await clone_sessions(database, "first", 500)
    headers = await login(client, "super")

    full = await _list(client, headers, size=500)
    assert (full["recordsTotal"], full["recordsFiltered"], full["page"], full["size"]) == (501, 501, 0, 500)
    assert _ids(full) == ["first", *clones[:499]]
    last = await _list(client, headers, size=500, page=1)
    assert (_ids(last), last["page"], last["recordsTotal"]) == ([clones[499]], 1, 501)
    past = await _list(client, headers, size=500, page=2)
    assert (past["data"], past["page"], past["size"], past["recordsTotal"]) == ([], 2, 500, 501)
    far = await _list(client, headers, size=500, page=9_999_999)
    assert (far["data"], far["recordsTotal"]) == ([], 501)

    default = await _list(client, headers)
    assert (len(default["data"]), default["page"], default["size"]) == (50, 0, 50)
    exact = await _list(client, headers, size=167, page=2)
    assert _ids(exact) == clones[333:]

    too_big = await client.get(LIST, params={"eventId": "ev1", "size": "501"}, headers=headers)
    assert await error_of(too_big) == (400, "400")


SEARCHABLE = {
    "cpp": "C++ (Advanced) [beta]",
    "dot": "Node.js in 2024",
    "money": "Q&A? *Ask* $5 ^up | down \\ back",
    "plain": "Plain talk about nodes",
    "accent": "Ünïcode Straße",
}


async def test_search_string_takes_regex_characters_literally_and_ignores_case(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    for session_id, title in SEARCHABLE.items():
        await add_session(database, session_id, title=title)
    headers = await login(client, "super")

    searches = {
        "c++": ["cpp"],
        "(advanced)": ["cpp"],
        "[BETA]": ["cpp"],
        "(": ["cpp"],
        "[": ["cpp"],
        ".": ["dot"],
        "node.js": ["dot"],
        "NODE": ["dot", "plain"],
        ".*": [],
        "n.de": [],
        "$5": ["money"],
        "^up": ["money"],
        "|": ["money"],
        "\\": ["money"],
        "*ask*": ["money"],
        "q&a?": ["money"],
        "?": ["money"],
        "{1}": [],
        "ünïcode": ["accent"],
        "straße": ["accent"],
        "talk about": ["plain"],
        "a": ["accent", "cpp", "money", "plain"],
    }
    found, filtered = {}, {}
    for text, _ in searches.items():
        body = await _list(client, headers, searchString=text)
        found[text] = sorted(_ids(body))
        filtered[text] = (body["recordsFiltered"], body["recordsTotal"])
    assert found == searches
    assert filtered == {text: (len(ids), 5) for text, ids in searches.items()}


async def test_a_query_string_is_decoded_as_a_form_each_time_it_is_asked(
    client: Client, database: Database
) -> None:
    """Parsed queries are kept per process by their raw string: `+` still means a space and
    `%2B` a plus, and a refused query is refused again, not remembered as the last good one."""
    await seed_world(database)
    for session_id, title in SEARCHABLE.items():
        await add_session(database, session_id, title=title)
    headers = await login(client, "super")

    def raw(query: str) -> URL:
        return URL(f"{LIST}?eventId=ev1&{query}", encoded=True)

    answers: dict[str, list[list[str]]] = {}
    for query in ("searchString=talk+about", "searchString=C%2B%2B", "searchString=talk+about", "size=5"):
        response = await client.get(raw(query), headers=headers)
        assert response.status == 200
        answers.setdefault(query, []).append(_ids(await response.json()))
    assert answers == {
        "searchString=talk+about": [["plain"], ["plain"]],
        "searchString=C%2B%2B": [["cpp"]],
        "size=5": [sorted(SEARCHABLE)],
    }
    for _ in range(2):
        refused = await client.get(raw("size=+5"), headers=headers)
        body = await refused.json()
        assert (refused.status, body["errorCode"], "size" in body["developerMessage"]) == (400, "400", True)


async def test_session_format_filter_narrows_records_filtered(client: Client, database: Database) -> None:
    await seed_world(database)
    await add_session(database, "main", session_format="MAINSTAGE_SESSION", title="Main one")
    await add_session(database, "b1", title="Breakout one")
    await add_session(database, "b2", title="Breakout two")
    headers = await login(client, "super")

    body = await _list(client, headers, sessionFormat="BREAKOUT_SESSION")
    assert (_ids(body), body["recordsFiltered"], body["recordsTotal"]) == (["b1", "b2"], 2, 3)
    both = await _list(client, headers, sessionFormat="BREAKOUT_SESSION", searchString="TWO")
    assert (_ids(both), both["recordsFiltered"]) == (["b2"], 1)
    none = await _list(client, headers, sessionFormat="NETWORKING_SESSION")
    assert (none["data"], none["recordsFiltered"], none["recordsTotal"]) == ([], 0, 3)


async def test_list_of_an_event_without_sessions_is_empty(client: Client, database: Database) -> None:
    await seed_world(database)
    await add_session(database, "elsewhere", "ev2")
    body = await _list(client, await login(client, "super"))
    assert body == {"recordsTotal": 0, "recordsFiltered": 0, "page": 0, "size": 50, "data": []}


async def test_detail_shows_list_fields_with_live_and_recording_split(
    client: Client, database: Database
) -> None:
    await seed_world(database)
    await _seed_every_kind_of_session(database)
    await database.sessions.update_one(
        {"_id": "yt"},
        {
            "$set": {
                "avgLiveWatch": 714.25,
                "avgRecordingWatch": 525.0,
                "engagementLive": 19.8,
                "engagementRecording": 14.5,
            }
        },
    )
    await database.sessions.update_one({"_id": "zoom"}, {"$set": {"avgLiveWatch": 300.0}})
    headers = await login(client, "super")

    youtube = await client.get("/rest/host/session/yt/analytics", headers=headers)
    assert await youtube.json() == {
        **EVERY_KIND[0],
        "eventId": "ev1",
        "videoId": "vid",
        "avgLiveWatchDuration": 714.25,
        "avgRecordingWatchDuration": 525.0,
        "liveEngagement": 19.8,
        "recordingEngagement": 14.5,
    }
    zoom = await client.get("/rest/host/session/zoom/analytics", headers=headers)
    assert await zoom.json() == {
        **EVERY_KIND[1],
        "eventId": "ev1",
        "videoId": "vid",
        "avgLiveWatchDuration": None,
        "avgRecordingWatchDuration": None,
        "liveEngagement": None,
        "recordingEngagement": None,
    }


async def test_items_carry_the_event_zone_and_local_times_in_list_detail_and_put(
    client: Client, database: Database
) -> None:
    from shared.admin import create_event

    await seed_world(database)
    await create_event(database, "ny", "org1", "New York Forum", "America/New_York")
    await add_session(database, "summer", "ny", start=datetime(2024, 7, 4, 16, 0, 0, 250000, tzinfo=UTC))
    await add_session(database, "winter", "ny", start=datetime(2024, 12, 31, 23, 30, tzinfo=UTC))
    host = await login(client, "organizer")

    body = await _list(client, host, eventId="ny")
    local = {i["sessionId"]: (i["timeZone"], i["startTimeLocal"], i["endTimeLocal"]) for i in body["data"]}
    assert local == {
        "summer": ("America/New_York", "2024-07-04T12:00:00.250-04:00", "2024-07-04T13:00:00.250-04:00"),
        # 23:30 UTC on New Year's Eve is still the 31st in New York; the end, 00:30 UTC, too.
        "winter": ("America/New_York", "2024-12-31T18:30:00-05:00", "2024-12-31T19:30:00-05:00"),
    }
    assert {i["durationStatus"] for i in body["data"]} == {"PENDING"}  # the sync has not run yet

    detail = await client.get("/rest/host/session/winter/analytics", headers=host)
    assert (await detail.json())["startTimeLocal"] == "2024-12-31T18:30:00-05:00"
    put = await client.put(
        "/rest/host/session/winter",
        json={
            "eventId": "ny",
            "title": "Late Night",
            "startTime": "2025-01-01T04:30:00Z",
            "endTime": "2025-01-01T05:30:00Z",
            "format": "WORKSHOP_SESSION",
            "streamProvider": None,
            "videoId": None,
        },
        headers=host,
    )
    answer = await put.json()
    assert put.status == 200, answer
    assert (answer["startTimeLocal"], answer["timeZone"], answer["durationStatus"]) == (
        "2024-12-31T23:30:00-05:00",
        "America/New_York",
        "NO_VIDEO",
    )
