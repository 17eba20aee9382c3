"""The input domain of DESIGN §3: times between 1970 and 2100 UTC (no offset may overflow them),
four-digit years out, and ids matched whole (a trailing newline is not an id)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.db import Database
from shared.models import format_utc, is_id
from tests.conftest import Client
from tests.seed import (
    GOOD_BODY,
    add_session,
    cheap_password_hashing,
    database_state,
    error_of,
    ingest_headers,
    login,
    registration,
    seed_world,
    watch_segment,
)

OUT_OF_DOMAIN = [
    "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC: overflowed into a 500 before
    "9999-12-31T23:59:59-01:00",  # after year 9999 once in UTC
    "0347-08-26T08:09:18Z",
    "1969-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00Z",
    "2100-01-01T01:30:00+01:00",  # 2100-01-01T00:30Z, just outside
]
IN_DOMAIN = ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00", "2099-12-31T23:59:59.999Z"]


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _world(client: Any, database: Any) -> dict[str, str]:
    await seed_world(database)
    await add_session(database, "s1")
    return await login(client, "super")


async def test_session_times_outside_1970_to_2100_get_400_naming_the_field(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    for value in OUT_OF_DOMAIN:
        for field in ("startTime", "endTime"):
            body = {**GOOD_BODY, field: value}
            if field == "startTime":
                body["endTime"] = "2099-12-31T23:59:59Z"
            else:
                body["startTime"] = "1970-01-01T00:00:00Z"
            response = await client.put("/rest/host/session/s1", json=body, headers=headers)
            assert await error_of(response) == (400, "400"), (field, value)
            message = (await response.json())["developerMessage"]
            assert message.startswith(f"{field}: ") and "1970-01-01" in message, message
    assert await database_state(database) == before


async def test_session_times_at_the_edges_of_the_domain_are_stored_with_four_digit_years(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    body = {**GOOD_BODY, "startTime": IN_DOMAIN[1], "endTime": IN_DOMAIN[2]}
    response = await client.put("/rest/host/session/edge", json=body, headers=headers)
    assert response.status == 201, await response.text()
    shown = await response.json()
    assert (shown["startTime"], shown["endTime"]) == ("1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z")


async def test_ingested_times_outside_the_domain_are_rejected_item_by_item(
    client: Client, database: Database
) -> None:
    await _world(client, database)
    key = await ingest_headers(database, ["ev1"])
    segments = []
    for i, value in enumerate(OUT_OF_DOMAIN):
        segments.append({**watch_segment(f"early{i}"), "start": value})
        segments.append({**watch_segment(f"late{i}"), "end": value})
    segments.append(watch_segment("fine"))
    response = await client.post("/rest/events/ev1/watch-segments", json=segments, headers=key)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["accepted"] == 1
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == list(range(len(segments) - 1))
    for index, reason in reasons.items():
        field = "start" if index % 2 == 0 else "end"
        assert reason.startswith(f"{field}: ") and "1970-01-01" in reason, reason

    registrations = [{**registration("s1", f"u{i}"), "registeredAt": v} for i, v in enumerate(OUT_OF_DOMAIN)]
    response = await client.post("/rest/events/ev1/registrations", json=registrations, headers=key)
    body = await response.json()
    assert response.status == 200 and body["accepted"] == 0
    assert [r["reason"].split(":")[0] for r in body["rejected"]] == ["registeredAt"] * len(OUT_OF_DOMAIN)
    assert await database.registrations.count_documents({}) == 0


def test_every_time_written_has_a_four_digit_year() -> None:
    assert format_utc(datetime(347, 8, 26, 8, 9, 18, tzinfo=UTC)) == "0347-08-26T08:09:18Z"
    assert format_utc(datetime(5, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == "0005-01-02T03:04:05.006Z"
    assert format_utc(datetime(2024, 5, 1, 9, 0, tzinfo=UTC)) == "2024-05-01T09:00:00Z"


def test_ids_are_matched_whole() -> None:
    assert is_id("NL1") and is_id("a" * 64) and is_id("A-b_9")
    for bad in ("NL1\n", "\nNL1", "NL1\r\n", "a" * 65, "", "a b", "é"):
        assert not is_id(bad), bad


NL = "%0A"
ID_ROUTES = [
    ("GET", f"/rest/host/session/analytics?eventId=ev1{NL}"),
    ("GET", f"/rest/host/session/analytics/csv?eventId=ev1{NL}"),
    ("GET", f"/rest/host/session/s1{NL}/analytics"),
    ("GET", f"/rest/host/session/s1{NL}/attendee"),
    ("PUT", f"/rest/host/session/NL1{NL}"),
    ("POST", f"/rest/host/session/analytics/recompute?eventId=ev1{NL}"),
]


async def test_a_trailing_newline_on_every_id_in_a_host_route_gets_400(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    before = await database_state(database)
    for method, path in ID_ROUTES:
        response = await client.request(method, path, json=GOOD_BODY, headers=headers)
        assert await error_of(response) == (400, "400"), path
    body = await client.put("/rest/host/session/NL1", json={**GOOD_BODY, "eventId": "ev1\n"}, headers=headers)
    assert await error_of(body) == (400, "400")
    assert (await body.json())["developerMessage"].startswith("eventId: ")
    # A task id is only ever looked up: an unknown one, newline or not, is 404.
    task = await client.get(f"/rest/host/tasks/abc{NL}", headers=headers)
    assert await error_of(task) == (404, "404")
    assert await database_state(database) == before


async def test_a_trailing_newline_on_every_id_in_ingestion_is_refused(
    client: Client, database: Database
) -> None:
    await _world(client, database)
    key = await ingest_headers(database, None)
    for kind in ("watch-segments", "registrations"):
        response = await client.post(f"/rest/events/ev1{NL}/{kind}", json=[], headers=key)
        assert await error_of(response) == (400, "400"), kind
    segments = [
        {**watch_segment("a"), "segmentId": "seg\n"},
        {**watch_segment("b"), "sessionId": "s1\n"},
        {**watch_segment("c"), "userId": "u1\n"},
    ]
    response = await client.post("/rest/events/ev1/watch-segments", json=segments, headers=key)
    body = await response.json()
    assert body["accepted"] == 0
    assert [r["reason"].split(":")[0] for r in body["rejected"]] == ["segmentId", "sessionId", "userId"]
    registrations = [{**registration(), "sessionId": "s1\n"}, {**registration(), "userId": "u1\n"}]
    response = await client.post("/rest/events/ev1/registrations", json=registrations, headers=key)
    body = await response.json()
    assert body["accepted"] == 0
    assert [r["reason"].split(":")[0] for r in body["rejected"]] == ["sessionId", "userId"]
    assert await database.watch_segments.count_documents({}) == 0
    assert await database.registrations.count_documents({}) == 0
