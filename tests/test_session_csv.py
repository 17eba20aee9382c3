"""The Session Overview CSV: the list's rows in the list's order (searchString, sessionFormat, sort),
dates in the event's zone named in the header, and 406 for an Accept that excludes text/csv."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest

from shared.admin import create_event
from tests.seed import T0, add_session, cheap_password_hashing, error_of, login, seed_world

CSV = "/rest/host/session/analytics/csv"
LIST = "/rest/host/session/analytics"


@pytest.fixture
async def host(client, database, monkeypatch) -> dict[str, str]:
    """The `paris` event (Europe/Paris): sessions of every format, ties in every sorted number,
    titles that differ only in case, and one in winter time."""
    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    await create_event(database, "paris", "org1", "Paris Days", "Europe/Paris")
    sessions = [
        ("a1", "Keynote: Opening", "MAINSTAGE_SESSION", "YOUTUBE", 3, 40, 10, 5, 1200.0),
        ("a2", "keynote: closing", "MAINSTAGE_SESSION", "ZOOM", 5, 40, None, None, None),
        ("b1", "Breakout (a.k.a. *track* B)", "BREAKOUT_SESSION", "VIMEO", 0, 12, 4, 4, 300.5),
        ("b2", "Breakout A", "BREAKOUT_SESSION", "WISTIA", 1, 12, None, None, None),
        ("w1", "Workshop: Keynote skills", "WORKSHOP_SESSION", None, 2, 7, 0, 0, 0.0),
        ("n1", "Networking", "NETWORKING_SESSION", "VOXEET", 4, 0, 0, 0, 0.0),
        ("x1", "Winter Keynote", "BREAKOUT_SESSION", "TOKBOX", 200 * 24, 12, 4, 9, 300.5),
    ]
    for sid, title, fmt, provider, hours, attendees, live, recording, average in sessions:
        await add_session(
            database,
            sid,
            "paris",
            title=title,
            start=T0 + timedelta(hours=hours),
            session_format=fmt,
            provider=provider,
            video_id="vid" if provider else None,
            numbers={
                "registeredUserCount": attendees + 3,
                "attendeeCount": attendees,
                "liveViews": live,
                "recordingViews": recording,
                "avgAttendedDuration": average,
            },
        )
    return await login(client, "organizer")


async def list_items(client, host, **query: str) -> list[dict[str, Any]]:
    """Every page of the list, two items a page."""
    items: list[dict[str, Any]] = []
    page = 0
    while True:
        params = {"eventId": "paris", "size": "2", "page": str(page), "expand": "duration", **query}
        response = await client.get(LIST, params=params, headers=host)
        body = await response.json()
        assert response.status == 200, body
        items += body["data"]
        if len(items) >= body["recordsFiltered"]:
            return items
        page += 1


async def csv_rows(client, host, **query: str) -> tuple[list[str], list[dict[str, str]]]:
    response = await client.get(CSV, params={"eventId": "paris", **query}, headers=host)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/csv"
    reader = csv.DictReader(io.StringIO(await response.text()))
    return list(reader.fieldnames or []), list(reader)


QUERIES = [
    {},
    {"sort": "-startTime"},
    {"sort": "attendeeCount"},
    {"sort": "-attendeeCount"},
    {"sort": "title"},
    {"sort": "-liveViews"},
    {"sort": "recordingViews"},
    {"sort": "-avgAttendedDuration"},
    {"searchString": "keynote"},
    {"searchString": "KEYNOTE", "sort": "-title"},
    {"searchString": "*track*"},
    {"searchString": "(a.k.a."},
    {"sessionFormat": "MAINSTAGE_SESSION", "sort": "-attendeeCount"},
    {"sessionFormat": "BREAKOUT_SESSION", "searchString": "breakout", "sort": "title"},
    {"sessionFormat": "NETWORKING_SESSION", "searchString": "keynote"},
]


def _query_id(query: dict[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in query.items()) or "default"


@pytest.mark.parametrize("query", QUERIES, ids=_query_id)
async def test_the_csv_lists_the_lists_rows_in_the_same_order(client, host, query):
    items = await list_items(client, host, **query)
    header, rows = await csv_rows(client, host, **query)
    assert header[1] == "Session Date (Europe/Paris)"
    assert [row["Session Name"] for row in rows] == [item["title"] for item in items]
    for item, row in zip(items, rows, strict=True):
        assert row["Session Date (Europe/Paris)"] == item["startTimeLocal"]
        assert row["Number of Attendees Registered"] == str(item["registeredUserCount"])
        assert row["Number of Views (Live)"] == ("" if item["liveViews"] is None else str(item["liveViews"]))
        assert row["Session Length Status"] == item["durationStatus"]


async def test_csv_dates_are_local_with_their_offset_in_summer_and_winter(client, host):
    _, rows = await csv_rows(client, host, searchString="Keynote")
    dates = {row["Session Name"]: row["Session Date (Europe/Paris)"] for row in rows}
    assert dates == {
        "Keynote: Opening": "2024-05-01T14:00:00+02:00",  # 12:00 UTC, summer time
        "keynote: closing": "2024-05-01T16:00:00+02:00",
        "Workshop: Keynote skills": "2024-05-01T13:00:00+02:00",
        "Winter Keynote": "2024-11-17T10:00:00+01:00",  # 09:00 UTC, winter time
    }
    _, rows = await csv_rows(client, host, searchString="Networking")
    assert [(r["Session Length"], r["Session Length Status"]) for r in rows] == [("", "NO_VIDEO")]


async def test_an_unknown_sort_or_format_is_refused_like_the_list(client, host):
    for query in ({"sort": "duration"}, {"sessionFormat": "PANEL"}, {"eventId": ""}):
        response = await client.get(CSV, params={"eventId": "paris", **query}, headers=host)
        assert await error_of(response) == (400, "400"), query


ACCEPTED = [
    "text/csv",
    "*/*",
    "text/*",
    "TEXT/CSV",
    "application/json;q=0.9, text/csv;q=0.1",
    "text/*;q=0, text/csv",
]
REFUSED = [
    "application/json",
    "text/html",
    "text/csv;q=0",
    "text/csv;q=0, */*",
    "text/*;q=0, application/json",
    "image/*",
]


@pytest.mark.parametrize("accept", ACCEPTED)
async def test_an_accept_that_takes_csv_gets_it(client, host, accept):
    response = await client.get(CSV, params={"eventId": "paris"}, headers={**host, "Accept": accept})
    assert response.status == 200, await response.text()
    assert (await response.text()).startswith("Session Name,")


async def test_no_accept_header_at_all_gets_the_csv(client, host):
    response = await client.get(CSV, params={"eventId": "paris"}, headers=host, skip_auto_headers=["Accept"])
    assert response.status == 200
    assert "Accept" not in response.request_info.headers


@pytest.mark.parametrize("accept", REFUSED)
async def test_an_accept_that_excludes_csv_gets_406_in_the_envelope(client, host, accept):
    response = await client.get(CSV, params={"eventId": "paris"}, headers={**host, "Accept": accept})
    assert await error_of(response) == (406, "406")
