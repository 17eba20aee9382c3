"""Conditional requests: ETags on list and detail, 304 for the current one, and no stale list
answer once a rollup has changed the numbers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.db import Database
from shared.store import bump_analytics_version
from tests.conftest import Client
from tests.seed import add_session, cheap_password_hashing, login, seed_world

LIST = "/rest/host/session/analytics?eventId=ev1&expand=duration,watchTime"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _world(client: Client, database: Database) -> dict[str, str]:
    await seed_world(database)
    await add_session(database, "s1", numbers={"attendeeCount": 3, "liveViews": 2})
    await add_session(database, "s2", numbers={"attendeeCount": 1})
    return await login(client, "super")


@pytest.mark.parametrize("path", [LIST, "/rest/host/session/s1/analytics"])
async def test_answer_carries_an_etag_and_the_same_etag_gets_304(
    client: Client, database: Database, path: str
) -> None:
    headers = await _world(client, database)
    first = await client.get(path, headers=headers)
    etag = first.headers["ETag"]
    assert first.status == 200
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2

    again = await client.get(path, headers={**headers, "If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    assert await again.read() == b""
    for header in (f"W/{etag}", f'"other", {etag}', "*"):
        response = await client.get(path, headers={**headers, "If-None-Match": header})
        assert response.status == 304, header

    other = await client.get(path, headers={**headers, "If-None-Match": '"not-it"'})
    assert other.status == 200
    assert await other.read() == await first.read()


async def test_different_queries_have_different_etags(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    ascending = await client.get(LIST, headers=headers)
    descending = await client.get(LIST + "&sort=-startTime", headers=headers)
    assert ascending.headers["ETag"] != descending.headers["ETag"]
    stale = await client.get(
        LIST + "&sort=-startTime", headers={**headers, "If-None-Match": ascending.headers["ETag"]}
    )
    assert stale.status == 200


async def test_rollup_change_serves_new_numbers_with_a_new_etag(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    first = await client.get(LIST, headers=headers)
    old_etag = first.headers["ETag"]
    assert (await first.json())["data"][0]["attendeeCount"] == 3
    # Served from the list cache now: the same answer, the same ETag.
    assert (await client.get(LIST, headers=headers)).headers["ETag"] == old_etag

    # What a rollup does: $set the computed numbers, then bump the event's version.
    await database.sessions.update_one(
        {"_id": "s1"},
        {
            "$set": {
                "attendeeCount": 4,
                "liveViews": 3,
                "watchTime": {"total": 400.0, "live": 300.0, "recording": 100.0},
                "analyticsUpdatedAt": datetime(2024, 5, 2, 8, 0, tzinfo=UTC),
            }
        },
    )
    await bump_analytics_version(database, ["ev1"])

    conditional = await client.get(LIST, headers={**headers, "If-None-Match": old_etag})
    assert conditional.status == 200
    assert conditional.headers["ETag"] != old_etag
    item = (await conditional.json())["data"][0]
    assert (
        item["attendeeCount"],
        item["liveViews"],
        item["watchTime"]["total"],
        item["analyticsUpdatedAt"],
    ) == (4, 3, 400.0, "2024-05-02T08:00:00Z")
    fresh = await client.get(LIST, headers={**headers, "If-None-Match": conditional.headers["ETag"]})
    assert fresh.status == 304


async def test_put_of_a_session_changes_the_list_answer_and_its_etag(
    client: Client, database: Database
) -> None:
    headers = await _world(client, database)
    first = await client.get(LIST, headers=headers)
    put = await client.put(
        "/rest/host/session/s2",
        headers=headers,
        json={
            "eventId": "ev1",
            "title": "Renamed",
            "startTime": "2024-05-01T09:00:00Z",
            "endTime": "2024-05-01T10:00:00Z",
            "format": "BREAKOUT_SESSION",
            "streamProvider": "YOUTUBE",
            "videoId": "vid",
        },
    )
    assert put.status == 200
    second = await client.get(LIST, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert second.status == 200
    assert [item["title"] for item in (await second.json())["data"]] == ["Session s1", "Renamed"]


async def test_detail_etag_follows_the_session_numbers(client: Client, database: Database) -> None:
    headers = await _world(client, database)
    path = "/rest/host/session/s1/analytics"
    first = await client.get(path, headers=headers)
    await database.sessions.update_one({"_id": "s1"}, {"$set": {"attendeeCount": 10}})
    second = await client.get(path, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert second.status == 200
    assert (await second.json())["attendeeCount"] == 10
    assert second.headers["ETag"] != first.headers["ETag"]
