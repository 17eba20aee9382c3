"""Cases the Schemathesis run found, kept as ordinary tests."""

from __future__ import annotations

from typing import Any

from shared.admin import create_ingest_key
from shared.db import Database
from tests.seed import add_session, login, seed_world


async def test_the_session_list_path_takes_only_get_and_head(client: Any, database: Database) -> None:
    # `PUT /rest/host/session/{sessionId}` used to match sessionId "analytics" too, so the list
    # path advertised `Allow: GET, HEAD, PUT` though the document gives it only GET and HEAD.
    await seed_world(database)
    headers = await login(client, "super")
    for method in ("OPTIONS", "PUT", "DELETE"):
        response = await client.request(method, "/rest/host/session/analytics?eventId=ev1", headers=headers)
        assert response.status == 405, method
        assert response.headers["Allow"] == "GET, HEAD"
    assert await database.sessions.find_one({"_id": "analytics"}) is None


async def test_ingest_items_that_are_not_objects_are_rejected_one_by_one(
    client: Any, database: Database
) -> None:
    # The document once said each item must be a segment, so a list of nulls "should" be a 400;
    # the contract (DESIGN §3) reports each bad item in `rejected` and still answers 200.
    await seed_world(database)
    await add_session(database, "s1")
    key = {"Authorization": f"Bearer {await create_ingest_key(database, ['ev1'])}"}
    for kind in ("watch-segments", "registrations"):
        response = await client.post(f"/rest/events/ev1/{kind}", json=[None, 1, "x"], headers=key)
        assert response.status == 200
        body = await response.json()
        assert body["accepted"] == 0
        assert [r["index"] for r in body["rejected"]] == [0, 1, 2]
        assert {r["reason"] for r in body["rejected"]} == {"item must be a JSON object"}


async def test_a_title_of_only_spaces_is_refused_and_the_document_says_so(
    client: Any, database: Database
) -> None:
    from web.openapi import SPEC

    assert SPEC["components"]["schemas"]["SessionIn"]["properties"]["title"]["pattern"] == r"\S"
    await seed_world(database)
    headers = await login(client, "super")
    body = {
        "eventId": "ev1",
        "title": "   ",
        "startTime": "2024-05-01T09:00:00Z",
        "endTime": "2024-05-01T10:00:00Z",
        "format": "MAINSTAGE_SESSION",
    }
    response = await client.put("/rest/host/session/k1", json=body, headers=headers)
    assert response.status == 400
    assert (await response.json())["errorCode"] == "400"
