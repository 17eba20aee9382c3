"""Who attended: a session's attendee list and CSV (rows the database filters, sorts, pages), and erasure."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pymongo import ASCENDING, DESCENDING

from shared.attendees import SORT_FIELDS
from shared.db import Database
from shared.documents import SessionDoc
from shared.errors import SessionNotFound
from shared.identities import erase_identity
from web.auth import authenticate_host, hosted_event
from web.contract.attendees import Attendee, AttendeeList, AttendeeOrder, AttendeeQuery
from web.contract.common import path_id
from web.csvio import csv_text, require_csv, stream_csv
from web.keys import DB

routes = web.RouteTableDef()
CSV_BATCH = 2000  # rows per write of the CSV
ATTENDEE_FIELDS = tuple(Attendee.model_fields)
# What the attendee routes read of a row: the attendee as the list shows it.
_ROW_FIELDS = {"_id": 0, **dict.fromkeys(ATTENDEE_FIELDS, 1)}


async def _hosted_session(request: web.Request) -> SessionDoc:
    principal = await authenticate_host(request)
    session_id = path_id(request, "sessionId")
    doc = await request.app[DB].sessions.find_one({"_id": session_id}, {"eventId": 1})
    if doc is None:
        raise SessionNotFound(f"no session {session_id}")
    await hosted_event(request, principal, doc["eventId"])
    return doc


@dataclass(frozen=True, slots=True)
class RowQuery:
    """The rows `order` selects and their order, as queries of the `attendees` indexes: rows with
    a value of the sort key first, sorted by it (ties by userId), then those without one by
    userId — rows without a value come last in either direction."""

    matching: dict[str, Any]
    key: str
    direction: int

    @classmethod
    def of(cls, session_id: str, order: AttendeeOrder) -> RowQuery:
        matching: dict[str, Any] = {"sessionId": session_id}
        if order.searchString:
            matching["searchText"] = {"$regex": re.escape(order.searchString.casefold())}
        return cls(matching, SORT_FIELDS[order.sort_field], DESCENDING if order.descending else ASCENDING)

    @property
    def valued(self) -> dict[str, Any]:
        return {**self.matching, self.key: {"$ne": None}}

    @property
    def unvalued(self) -> dict[str, Any]:
        return {**self.matching, self.key: None}

    def cursors(self, db: Database, skip: int = 0, valued_count: int | None = None) -> list[Any]:
        """The valued rows from `skip` on, then the unvalued ones (as far as the caller reads);
        given how many rows are valued, a skip past them reads only the unvalued ones."""
        first = db.attendees.find(self.valued, _ROW_FIELDS).sort([(self.key, self.direction), ("userId", 1)])
        rest = db.attendees.find(self.unvalued, _ROW_FIELDS).sort("userId", ASCENDING)
        if valued_count is not None and skip >= valued_count:
            return [rest.skip(skip - valued_count)]
        return [first.skip(skip), rest]


async def _counts(db: Database, query: RowQuery, searched: bool) -> tuple[int, int, int]:
    """(rows of the session, rows matching the search, of those the ones with a sort value)."""
    counts = [db.attendees.count_documents(query.matching), db.attendees.count_documents(query.valued)]
    if searched:
        counts.append(db.attendees.count_documents({"sessionId": query.matching["sessionId"]}))
    found = await asyncio.gather(*counts)
    matching, valued = found[0], found[1]
    return (found[2] if searched else matching), matching, valued


def _attendee(row: Mapping[str, Any]) -> Attendee:
    return Attendee.model_validate({name: row.get(name) for name in ATTENDEE_FIELDS})


@routes.get("/rest/host/session/{sessionId}/attendee")
async def session_attendees(request: web.Request) -> web.Response:
    session = await _hosted_session(request)
    query = AttendeeQuery.parse(request)
    db = request.app[DB]
    rows = RowQuery.of(session["_id"], query)
    total, matching, valued = await _counts(db, rows, bool(query.searchString))
    page: list[Attendee] = []
    for cursor in rows.cursors(db, query.skip, valued):
        page += [_attendee(row) for row in await cursor.limit(query.size - len(page)).to_list(None)]
        if len(page) >= query.size:
            break
    answer = {"recordsTotal": total, "recordsFiltered": matching, "page": query.page, "size": query.size}
    return AttendeeList(**answer, data=page).response()


CSV_COLUMNS = (
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
)


def csv_line(attendee: Attendee) -> list[Any]:
    """One attendee as a CSV row: text cells made safe from spreadsheet formulas (csv_cell makes
    nulls blank and seconds two decimals)."""
    a = attendee
    texts = (a.userId, a.firstName, a.lastName, a.email, a.ticketId)
    return [
        *(csv_text(text or "") for text in texts),
        "yes" if a.attended else "no",
        float(a.attendedSeconds),
        float(a.liveSeconds),
        float(a.recordingSeconds),
        a.engagement,
        a.model_dump(mode="json")["registeredAt"],
    ]


@routes.get("/rest/host/session/{sessionId}/attendee/csv")
async def session_attendees_csv(request: web.Request) -> web.StreamResponse:
    """The list's rows (same search, same order), all of them, streamed a batch at a time."""
    require_csv(request)
    session = await _hosted_session(request)
    order = AttendeeOrder.parse(request)
    db = request.app[DB]
    rows = RowQuery.of(session["_id"], order)
    cursors = iter([c.batch_size(CSV_BATCH) for c in rows.cursors(db)])
    current = next(cursors)

    async def more() -> list[list[Any]]:
        nonlocal current
        while current is not None:
            batch = await current.to_list(CSV_BATCH)
            if batch:
                return [csv_line(_attendee(row)) for row in batch]
            current = next(cursors, None)
        return []

    first = await more()  # errors here still get the envelope
    return await stream_csv(request, f"attendees-{session['_id']}.csv", CSV_COLUMNS, first, more)


@routes.delete("/rest/host/event/{eventId}/attendee/{userId}")
async def erase_attendee(request: web.Request) -> web.Response:
    """Erase a user's identity for one event; every number stays (they hold no personal field)."""
    principal = await authenticate_host(request)
    event_id, user_id = path_id(request, "eventId"), path_id(request, "userId")
    await hosted_event(request, principal, event_id)
    await erase_identity(request.app[DB], event_id, user_id)
    return web.Response(status=204)
