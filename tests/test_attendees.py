"""Who attended: identities on registrations, the attendee list's search and sort, its CSV, erasure."""

from __future__ import annotations

import csv
import io
import zlib
from datetime import timedelta
from typing import Any

import orjson
import pytest
from bson import Binary
from pymongo import monitoring

from shared.db import Database
from shared.settings import Settings
from tests import oracle
from tests.conftest import Client
from tests.seed import (
    T0,
    add_session,
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
from tests.test_rollup_queries import CommandLog
from worker.rollup import rollup_pending

REGISTRATIONS = "/rest/events/ev1/registrations"
SEGMENTS = "/rest/events/ev1/watch-segments"
ATTENDEES = "/rest/host/session/s1/attendee"
DURATION = 600.0

# userId: (identity as registered or None, registered?, live seconds watched)
PEOPLE: dict[str, tuple[dict[str, str] | None, bool, float]] = {
    "u01": (
        {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "ticketId": "T-1"},
        True,
        300,
    ),
    "u02": ({"firstName": "Grace", "lastName": "Hopper", "email": "grace.hopper@navy.example"}, True, 300),
    "u03": (
        {"firstName": "Alan", "lastName": "Turing", "email": "a.turing@example.com", "ticketId": "T-3"},
        True,
        0,
    ),
    "u04": (None, False, 120),
    # A spreadsheet would run this first name as a formula; a lower-case last name sorts by letters.
    "u05": (
        {"firstName": "=HYPERLINK(1)", "lastName": "de Vries", "email": "eve@example.com", "ticketId": "-1"},
        True,
        30,
    ),
    "u06": ({"email": "noname@example.com"}, True, 900),
}


@pytest.fixture
async def world(
    client: Client, database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    cheap_password_hashing(monkeypatch)
    return await ingest_world(client, database, settings)


async def ingest_world(client: Any, database: Any, settings: Any, title: str | None = None) -> dict[str, Any]:
    """ev1's session s1 (600 s video) with PEOPLE registered and watching, rolled up; s2 empty."""
    await seed_world(database)
    await add_session(database, "s1", title=title, numbers={"duration": DURATION})
    await add_session(database, "s2")
    await add_session(database, "s9", "ev2")
    key = await ingest_headers(database, ["ev1", "ev2"])
    registrations = [
        {**registration("s1", user, T0 - timedelta(hours=n)), **(identity or {})}
        for n, (user, (identity, registered, _)) in enumerate(PEOPLE.items())
        if registered
    ]
    answer = await (await client.post(REGISTRATIONS, json=registrations, headers=key)).json()
    assert answer == {"accepted": len(registrations), "duplicates": 0, "rejected": []}
    segments = [
        watch_segment(f"g-{user}", "s1", user, seconds=seconds)
        for user, (_, _, seconds) in PEOPLE.items()
        if seconds
    ]
    assert (await client.post(SEGMENTS, json=segments, headers=key)).status == 200
    await rollup_pending(database, settings)
    return {"host": await login(client, "event_admin"), "key": key}


async def get_json(client: Any, path: str, headers: dict[str, str]) -> Any:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def listed(client: Any, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    body = await get_json(client, f"{ATTENDEES}?size=500&{query}", headers)
    assert len(body["data"]) == body["recordsFiltered"]
    data: list[dict[str, Any]] = body["data"]
    return data


def expected_row(user: str) -> dict[str, Any]:
    identity, registered, seconds = PEOPLE[user]
    at = list(PEOPLE).index(user)
    return {
        "userId": user,
        **{name: (identity or {}).get(name) for name in oracle.IDENTITY_FIELDS},
        "attended": seconds > 0,
        "attendedSeconds": seconds,
        "liveSeconds": seconds,
        "recordingSeconds": 0.0,
        "engagement": min(seconds / DURATION, 1) * 100,
        "registeredAt": iso_utc(T0 - timedelta(hours=at)) if registered else None,
        # Rule 11: one segment from T0 each.
        "firstJoinedAt": iso_utc(T0) if seconds else None,
        "lastLeftAt": iso_utc(T0 + timedelta(seconds=seconds)) if seconds else None,
        "joins": 1 if seconds else 0,
        "completion": min(seconds / DURATION, 1) * 100,
    }


# --- ingestion ------------------------------------------------------------------------------


async def test_identity_fields_are_validated_item_by_item(
    client: Client, database: Database, world: dict[str, Any]
) -> None:
    bad = {
        "email": "not-an-address",
        "firstName": "",
        "lastName": "x" * 101,
        "ticketId": "T 1",
    }
    items = [{**registration("s2", f"v{n}"), name: value} for n, (name, value) in enumerate(bad.items())]
    items += [
        {**registration("s2", "v8"), "email": "a" * 64 + "@" + "b" * 186 + ".example"},  # 259 chars
        {**registration("s2", "v9"), "firstName": "Tab\there"},
        {**registration("s2", "ok"), "email": "Ok.Person@Example.COM", "firstName": "Zoë", "lastName": None},
    ]
    response = await client.post(REGISTRATIONS, json=items, headers=world["key"])
    answer = await response.json()
    assert answer["accepted"] == 1
    reasons = {r["index"]: r["reason"] for r in answer["rejected"]}
    assert sorted(reasons) == [0, 1, 2, 3, 4, 5]
    assert reasons[0].startswith("email: not a valid email address")
    assert reasons[1] == "firstName: String should have at least 1 character"
    assert reasons[2] == "lastName: String should have at most 100 characters"
    assert reasons[3].startswith("ticketId: String should match pattern")
    assert reasons[4] == "email: String should have at most 254 characters"
    assert reasons[5] == "firstName: must not contain control characters"
    # Stored in its normal form (the domain in lower case), once, in the identity document only.
    stored = found(await database.attendee_identities.find_one({"_id": "ev1:ok"}))
    assert (stored["email"], stored["firstName"], "lastName" in stored) == (
        "Ok.Person@example.com",
        "Zoë",
        False,
    )
    assert await database.attendee_identities.count_documents({"userId": {"$in": ["v0", "v1", "v8"]}}) == 0


async def test_identities_are_stored_once_per_user_and_copied_only_to_its_attendee_rows(
    client: Client, database: Database, world: dict[str, Any]
) -> None:
    assert await database.attendee_identities.count_documents({}) == 5
    assert await personal_values_outside_identities(database, PEOPLE["u01"][0]) == []
    rows = await database.attendees.find({"userId": "u01"}).to_list(None)
    assert rows and all(row["email"] == "ada@example.com" for row in rows)
    # Posting the same registrations again changes nothing; a later one may correct a name.
    again = {**registration("s2", "u01"), "firstName": "Augusta Ada"}
    answer = await (await client.post(REGISTRATIONS, json=[again], headers=world["key"])).json()
    assert answer["accepted"] == 1
    stored = found(await database.attendee_identities.find_one({"_id": "ev1:u01"}))
    assert (stored["firstName"], stored["lastName"], stored["email"]) == (
        "Augusta Ada",
        "Lovelace",
        "ada@example.com",
    )


# --- the list ---------------------------------------------------------------------------------


async def test_rows_carry_identities_most_attended_first(client: Client, world: dict[str, Any]) -> None:
    body = await get_json(client, ATTENDEES, world["host"])
    assert (body["recordsTotal"], body["recordsFiltered"], body["page"], body["size"]) == (6, 6, 0, 50)
    # 900 s (engagement capped at 100 %), then the tie of 300 s by userId, ..., nobody's 0 s last.
    order = ["u06", "u01", "u02", "u04", "u05", "u03"]
    assert body["data"] == [pytest.approx(expected_row(user)) for user in order]
    assert body["data"][0]["engagement"] == 100.0
    assert body["data"][3]["firstName"] is None and body["data"][3]["registeredAt"] is None


@pytest.mark.parametrize(
    ("search", "users"),
    [
        ("LOVELACE", ["u01"]),
        ("ada love", ["u01"]),  # first and last name together
        ("grace.hopper@", ["u02"]),
        ("EXAMPLE.com", ["u06", "u01", "u05", "u03"]),
        ("de vr", ["u05"]),
        ("p.r", []),  # literal: as a pattern it would match "Hopper"
        ("[", []),
        ("u04", []),  # ids are not searched: names and email only
    ],
)
async def test_search_is_literal_case_insensitive_over_names_and_email(
    client: Client, world: dict[str, Any], search: str, users: list[str]
) -> None:
    from urllib.parse import quote

    body = await get_json(client, f"{ATTENDEES}?searchString={quote(search)}", world["host"])
    assert [row["userId"] for row in body["data"]] == users
    assert (body["recordsTotal"], body["recordsFiltered"]) == (6, len(users))


@pytest.mark.parametrize(
    ("sort", "users"),
    [
        ("-attendedSeconds", ["u06", "u01", "u02", "u04", "u05", "u03"]),
        ("attendedSeconds", ["u03", "u05", "u04", "u01", "u02", "u06"]),
        ("engagement", ["u03", "u05", "u04", "u01", "u02", "u06"]),
        # Case-insensitive; users without a last name come last either way.
        ("lastName", ["u05", "u02", "u01", "u03", "u04", "u06"]),
        ("-lastName", ["u03", "u01", "u02", "u05", "u04", "u06"]),
        # Registered an hour apart, u01 latest; u04 never registered: last.
        ("registeredAt", ["u06", "u05", "u03", "u02", "u01", "u04"]),
        ("-registeredAt", ["u01", "u02", "u03", "u05", "u06", "u04"]),
    ],
)
async def test_sort_orders_rows_with_ties_by_user_id(
    client: Client, world: dict[str, Any], sort: str, users: list[str]
) -> None:
    assert [row["userId"] for row in await listed(client, world["host"], f"sort={sort}")] == users


async def test_pages_of_a_sorted_search_join_up(client: Client, world: dict[str, Any]) -> None:
    whole = await listed(client, world["host"], "sort=lastName&searchString=e")
    pages = []
    for page in range(4):
        body = await get_json(
            client, f"{ATTENDEES}?sort=lastName&searchString=e&size=2&page={page}", world["host"]
        )
        pages += body["data"]
    assert pages == whole and len(whole) == 5


@pytest.mark.parametrize(
    "query",
    [
        "sort=userId",
        "sort=",
        "sort=-title",
        "searchString=" + "x" * 201,
        "pageSize=10",
        "eventId=ev1",
        "size=501",
    ],
)
async def test_bad_or_unknown_parameters_get_400(client: Client, world: dict[str, Any], query: str) -> None:
    response = await client.get(f"{ATTENDEES}?{query}", headers=world["host"])
    assert await error_of(response) == (400, "400")


# --- the CSV ----------------------------------------------------------------------------------


async def attendee_csv(client: Any, headers: dict[str, str], query: str = "") -> list[list[str]]:
    response = await client.get(f"{ATTENDEES}/csv?{query}", headers=headers)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="attendees-s1.csv"'
    return list(csv.reader(io.StringIO(await response.text())))


@pytest.mark.parametrize(
    "query", ["", "sort=lastName", "sort=-registeredAt&searchString=EXAMPLE", "searchString=zz"]
)
async def test_csv_lists_the_rows_of_the_list_in_its_order(
    client: Client, world: dict[str, Any], query: str
) -> None:
    rows = await attendee_csv(client, world["host"], query)
    assert rows[0] == [
        "User ID",
        "First Name",
        "Last Name",
        "Email",
        "Ticket ID",
        "Attended",
        "Watch Time (s)",
        "Live Watch Time (s)",
        "Recording Watch Time (s)",
        "Engagement (%)",
        "Registered At (UTC)",
        "First Joined At (UTC)",
        "Last Left At (UTC)",
        "Joins",
        "Completion (%)",
    ]
    listed_rows = await listed(client, world["host"], query)
    assert [row[0] for row in rows[1:]] == [row["userId"] for row in listed_rows]
    for cells, row in zip(rows[1:], listed_rows, strict=True):
        assert cells[3] == (row["email"] or "")
        assert cells[5] == ("yes" if row["attended"] else "no")
        assert float(cells[6]) == pytest.approx(row["attendedSeconds"])
        assert float(cells[9]) == pytest.approx(row["engagement"], abs=0.005)
        assert cells[10] == (row["registeredAt"] or "")
        assert cells[11:14] == [row["firstJoinedAt"] or "", row["lastLeftAt"] or "", str(row["joins"])]
        assert float(cells[14]) == pytest.approx(row["completion"], abs=0.005)


async def test_csv_cells_never_start_a_formula(client: Client, world: dict[str, Any]) -> None:
    rows = {row[0]: row for row in await attendee_csv(client, world["host"])}
    assert rows["u05"][1:5] == ["'=HYPERLINK(1)", "de Vries", "eve@example.com", "'-1"]
    assert rows["u04"][1:5] == ["", "", "", ""]


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/json", 406),
        ("text/csv;q=0, */*", 406),
        ("text/html, application/xhtml+xml", 406),
        ("text/csv", 200),
        ("text/*", 200),
        ("*/*", 200),
        ("application/json;q=0.9, text/csv;q=0.1", 200),
        ("", 200),
    ],
)
async def test_csv_answers_406_when_accept_excludes_csv(
    client: Client, world: dict[str, Any], accept: str, status: int
) -> None:
    response = await client.get(f"{ATTENDEES}/csv", headers={**world["host"], "Accept": accept})
    if status == 406:
        assert await error_of(response) == (406, "406")
    else:
        assert response.status == 200 and response.content_type == "text/csv"


async def test_csv_of_an_empty_session_is_its_header(client: Client, world: dict[str, Any]) -> None:
    response = await client.get("/rest/host/session/s2/attendee/csv", headers=world["host"])
    assert (await response.text()).count("\r\n") == 1


async def test_csv_and_list_answer_only_hosts_of_the_event(client: Client, world: dict[str, Any]) -> None:
    other = await get_json(client, "/rest/host/session/s9/attendee", await login(client, "super"))
    assert other["recordsTotal"] == 0
    for path in ("/rest/host/session/s9/attendee", "/rest/host/session/s9/attendee/csv"):
        assert await error_of(await client.get(path, headers=world["host"])) == (403, "4030201")
    missing = await client.get("/rest/host/session/nope/attendee/csv", headers=world["host"])
    assert await error_of(missing) == (404, "404800")


# --- erasure ----------------------------------------------------------------------------------


def _texts(value: Any) -> list[str]:
    """Every string in a stored value, compressed blobs (the rollup's documents) opened too."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (str(key), *_texts(item))]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, Binary | bytes):
        try:
            return _texts(orjson.loads(zlib.decompress(bytes(value))))
        except (zlib.error, orjson.JSONDecodeError):
            return [bytes(value).decode("latin-1")]
    return [str(value)]


async def personal_values_outside_identities(database: Any, identity: dict[str, str] | None) -> list[str]:
    """Personal values anywhere but the identities and their copies in attendee rows and people."""
    return await stored_personal_values(
        database, identity, skip=("attendee_identities", "attendees", "people")
    )


async def stored_personal_values(
    database: Any, identity: dict[str, str] | None, skip: tuple[str, ...] = ()
) -> list[str]:
    """Where any of these personal values is stored: `collection: value`, in every collection."""
    found = []
    for name in sorted(await database.db.list_collection_names()):
        if name in skip:
            continue
        for doc in await database[name].find({}).to_list(None):
            texts = _texts(doc)
            found += [f"{name}: {v}" for v in (identity or {}).values() if any(v in text for text in texts)]
    return found


async def numbers_seen(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    """Every number a host sees: the session list, each detail, and the attendee rows."""
    listing = await get_json(
        client, "/rest/host/session/analytics?eventId=ev1&expand=duration,watchTime", headers
    )
    details = {s: await get_json(client, f"/rest/host/session/{s}/analytics", headers) for s in ("s1", "s2")}
    rows = [
        {k: v for k, v in row.items() if k not in oracle.IDENTITY_FIELDS}
        for row in await listed(client, headers)
    ]
    for item in [*listing["data"], *details.values()]:
        item.pop("analyticsUpdatedAt")
    return {"list": listing, "details": details, "attendees": rows}


async def test_erasure_removes_personal_fields_everywhere_and_keeps_every_number(
    client: Client, database: Database, settings: Settings, world: dict[str, Any]
) -> None:
    host, ada = world["host"], PEOPLE["u01"][0]
    assert ada is not None
    # A registration of another session not yet rolled up: its inbox entry waits meanwhile.
    pending = {**registration("s2", "u01"), **(ada or {})}
    assert (await client.post(REGISTRATIONS, json=[pending], headers=world["key"])).status == 200
    assert await personal_values_outside_identities(database, ada) == []
    in_rows = await stored_personal_values(database, ada, skip=("attendee_identities",))
    assert in_rows and set(in_rows) <= {
        f"{copy}: {v}" for v in ada.values() for copy in ("attendees", "people")
    }
    await rollup_pending(database, settings)
    before = await numbers_seen(client, host)

    for _ in range(2):  # idempotent
        response = await client.delete("/rest/host/event/ev1/attendee/u01", headers=host)
        assert (response.status, await response.read()) == (204, b"")
    assert await stored_personal_values(database, ada) == []
    await rollup_pending(database, settings)
    assert await numbers_seen(client, host) == before
    row = next(row for row in await listed(client, host) if row["userId"] == "u01")
    assert [row[name] for name in oracle.IDENTITY_FIELDS] == [None] * 4
    assert row["attendedSeconds"] == 300
    assert [r["userId"] for r in await listed(client, host, "searchString=lovelace")] == []
    # Other people's identities stay.
    assert (await listed(client, host, "searchString=hopper"))[0]["email"] == "grace.hopper@navy.example"

    # Registered again later (the platform sends it again): stored again, as documented.
    await client.post(
        REGISTRATIONS, json=[{**registration("s1", "u01"), "lastName": "Byron"}], headers=world["key"]
    )
    assert (await listed(client, host, "searchString=byron"))[0]["userId"] == "u01"


async def test_erasing_someone_never_seen_is_204(client: Client, world: dict[str, Any]) -> None:
    response = await client.delete("/rest/host/event/ev1/attendee/nobody", headers=world["host"])
    assert response.status == 204


async def test_only_hosts_of_the_event_may_erase(
    client: Client, database: Database, world: dict[str, Any]
) -> None:
    other = await client.delete("/rest/host/event/ev2/attendee/u01", headers=world["host"])
    assert await error_of(other) == (403, "4030201")
    missing = await client.delete("/rest/host/event/nope/attendee/u01", headers=world["host"])
    assert await error_of(missing) == (404, "4040200")
    key = await client.delete("/rest/host/event/ev1/attendee/u01", headers=world["key"])
    assert await error_of(key) == (403, "403")
    attendee = await client.delete(
        "/rest/host/event/ev1/attendee/u01", headers=await login(client, "attendee")
    )
    assert await error_of(attendee) == (403, "4030201")
    bad = await client.delete("/rest/host/event/ev1/attendee/u%2001", headers=world["host"])
    assert await error_of(bad) == (400, "400")
    assert await database.attendee_identities.count_documents({"userId": "u01"}) == 1


# --- what a page costs ------------------------------------------------------------------------

_SENT = CommandLog()  # its own listener: the one of test_rollup_queries counts only its own tests


@pytest.fixture(scope="session")
def commands_sent() -> CommandLog:
    """Registered once, for every client created from then on."""
    monitoring.register(_SENT)
    return _SENT


@pytest.mark.parametrize("store_kind", ["real"])
async def test_a_page_and_a_search_are_index_led_reads_of_the_session_rows_only(
    commands_sent: CommandLog,
    client: Client,
    database: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proven from the commands sent (PyMongo command monitoring): a page of 2,500 attendees is
    one find of its 50 rows (the database sorts and pages them) beside its counts, each filter
    led by sessionId; a search is the same with the search in the filter; no identity is read."""
    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    await add_session(database, "s1")
    key = await ingest_headers(database, ["ev1"])
    users = [f"p{n:04d}" for n in range(2500)]
    for start in range(0, len(users), 1000):
        items = [
            {**registration("s1", user), "firstName": "Pat", "lastName": f"Number {user}"}
            for user in users[start : start + 1000]
        ]
        assert (await (await client.post(REGISTRATIONS, json=items, headers=key)).json())["accepted"] == len(
            items
        )
    await rollup_pending(database, settings)
    host = await login(client, "event_admin")
    await get_json(client, ATTENDEES, host)  # the token and the event are cached from now on

    def finds(commands: list[tuple[str, dict[str, Any]]], collection: str) -> list[dict[str, Any]]:
        return [c for name, c in commands if name == "find" and c["find"] == collection]

    with commands_sent.recording(settings.mongodb_database_name) as commands:
        body = await get_json(client, f"{ATTENDEES}?page=3&size=50&sort=registeredAt", host)
    assert [row["lastName"] for row in body["data"]][:2] == ["Number p0150", "Number p0151"]
    (rows,) = finds(commands, "attendees")
    assert (rows["filter"]["sessionId"], rows["skip"], rows["limit"]) == ("s1", 150, 50)
    assert finds(commands, "attendee_identities") == []
    assert {name for name, _ in commands} <= {"find", "aggregate"}
    counts = [c for name, c in commands if name == "aggregate"]
    assert counts and all(c["pipeline"][0]["$match"]["sessionId"] == "s1" for c in counts)

    with commands_sent.recording(settings.mongodb_database_name) as commands:
        body = await get_json(client, f"{ATTENDEES}?searchString=number%20p24&size=500", host)
    assert body["recordsFiltered"] == 100
    assert [row["lastName"] for row in body["data"]][:2] == ["Number p2400", "Number p2401"]
    assert finds(commands, "attendee_identities") == []
    assert all(c["filter"]["sessionId"] == "s1" for c in finds(commands, "attendees"))
