"""An event's audience: its summary and its people, read as the rollups left them (shared/audience.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from shared.attendees import PEOPLE_SORT_FIELDS
from shared.audience import event_summary_answer
from web.attendees import RowQuery
from web.auth import authenticate_host, hosted_event
from web.contract.audience import EventSummary, PeopleList, PeopleOrder, PeopleQuery, Person
from web.contract.common import path_id
from web.csvio import csv_text, require_csv, stream_csv
from web.jsonio import conditional_json, etag_of
from web.keys import DB

routes = web.RouteTableDef()
PERSON_FIELDS = tuple(Person.model_fields)
_PERSON_FIELDS = {"_id": 0, **dict.fromkeys(PERSON_FIELDS, 1)}


@routes.get("/rest/host/event/{eventId}/analytics")
async def event_summary(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    event_id = path_id(request, "eventId")
    event = await hosted_event(request, principal, event_id)
    answer = await event_summary_answer(request.app[DB], event_id, event.get("timezone") or "UTC")
    body = EventSummary.model_validate(answer).body()
    return conditional_json(request, body, etag_of(body))


def people_rows(event_id: str, order: PeopleOrder) -> RowQuery:
    return RowQuery.of("people", {"eventId": event_id}, order, PEOPLE_SORT_FIELDS, _PERSON_FIELDS)


def _person(row: Mapping[str, Any]) -> Person:
    return Person.model_validate({name: row.get(name) for name in PERSON_FIELDS})


async def _hosted(request: web.Request) -> str:
    principal = await authenticate_host(request)
    event_id = path_id(request, "eventId")
    await hosted_event(request, principal, event_id)
    return event_id


@routes.get("/rest/host/event/{eventId}/attendee")
async def event_people(request: web.Request) -> web.Response:
    event_id = await _hosted(request)
    query = PeopleQuery.parse(request)
    counts, rows = await people_rows(event_id, query).page(request.app[DB], query.skip, query.size)
    page = [_person(row) for row in rows]
    return PeopleList(**counts, page=query.page, size=query.size, data=page).response()


PEOPLE_CSV_COLUMNS = (
    "User ID",
    "First Name",
    "Last Name",
    "Email",
    "Ticket ID",
    "Sessions Registered",
    "Sessions Attended",
    "No-show",
    "Watch Time (s)",
    "Live Watch Time (s)",
    "Recording Watch Time (s)",
    "First Joined At (UTC)",
    "Last Left At (UTC)",
    "Completion (%)",
)


def people_csv_line(person: Person) -> list[Any]:
    p = person
    dates = p.model_dump(mode="json", include={"firstJoinedAt", "lastLeftAt"})
    texts = (p.userId, p.firstName, p.lastName, p.email, p.ticketId)
    return [
        *(csv_text(text or "") for text in texts),
        p.sessionsRegistered,
        p.sessionsAttended,
        "yes" if p.noShow else "no",
        float(p.attendedSeconds),
        float(p.liveSeconds),
        float(p.recordingSeconds),
        dates["firstJoinedAt"],
        dates["lastLeftAt"],
        p.completion,
    ]


@routes.get("/rest/host/event/{eventId}/attendee/csv")
async def event_people_csv(request: web.Request) -> web.StreamResponse:
    """The people list's rows (same search, filters and order), all of them, streamed."""
    require_csv(request)
    event_id = await _hosted(request)
    order = PeopleOrder.parse(request)
    more = people_rows(event_id, order).csv_batches(
        request.app[DB], lambda row: people_csv_line(_person(row))
    )
    first = await more()
    return await stream_csv(request, f"people-{event_id}.csv", PEOPLE_CSV_COLUMNS, first, more)
