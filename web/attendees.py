"""Who attended: a session's attendee list and CSV (rows the database filters, sorts, pages), and erasure."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
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
    """The rows `order` selects and their order, as queries of one collection's indexes (each
    led by the scope's field: `sessionId` for a session's attendees, `eventId` for an event's
    people): rows with a value of the sort key first, sorted by it (ties by userId), then those
    without one by userId — rows without a value come last in either direction."""

    collection: str
    scope: dict[str, Any]
    matching: dict[str, Any]
    key: str
    direction: int
    fields: dict[str, int]

    @classmethod
    def of(
        cls,
        collection: str,
        scope: dict[str, Any],
        order: Any,
        sort_fields: Mapping[str, str],
        fields: dict[str, int],
    ) -> RowQuery:
        """`order`: the route's query (a RowFilter with a sort)."""
        matching: dict[str, Any] = dict(scope)
        if order.searchString:
            matching["searchText"] = {"$regex": re.escape(order.searchString.casefold())}
        if order.attended is not None:
            matching["attended"] = order.attended
        if order.minCompletion is not None:
            matching["completion"] = {"$gte": order.minCompletion}
        key = sort_fields[order.sort_field]
        return cls(collection, scope, matching, key, DESCENDING if order.descending else ASCENDING, fields)

    def _with_key(self, condition: dict[str, Any]) -> dict[str, Any]:
        given = self.matching.get(self.key)
        return {**self.matching, self.key: {**given, **condition} if isinstance(given, dict) else condition}

    @property
    def valued(self) -> dict[str, Any]:
        return self._with_key({"$ne": None})

    @property
    def unvalued(self) -> dict[str, Any]:
        return self._with_key({"$eq": None})

    def cursors(self, db: Database, skip: int = 0, valued_count: int | None = None) -> list[Any]:
        """The valued rows from `skip` on, then the unvalued ones (as far as the caller reads);
        given how many rows are valued, a skip past them reads only the unvalued ones."""
        rows = db[self.collection]
        first = rows.find(self.valued, self.fields).sort([(self.key, self.direction), ("userId", 1)])
        rest = rows.find(self.unvalued, self.fields).sort("userId", ASCENDING)
        if valued_count is not None and skip >= valued_count:
            return [rest.skip(skip - valued_count)]
        return [first.skip(skip), rest]

    async def counts(self, db: Database) -> tuple[int, int, int]:
        """(rows in the scope, rows matching, of those the ones with a sort value)."""
        rows = db[self.collection]
        counts = [rows.count_documents(self.matching), rows.count_documents(self.valued)]
        filtered = self.matching != self.scope
        if filtered:
            counts.append(rows.count_documents(self.scope))
        found = await asyncio.gather(*counts)
        matching, valued = found[0], found[1]
        return (found[2] if filtered else matching), matching, valued

    async def page(
        self, db: Database, skip: int, size: int
    ) -> tuple[dict[str, int], list[Mapping[str, Any]]]:
        """The counts of the answer and one page of rows."""
        total, matching, valued = await self.counts(db)
        page: list[Mapping[str, Any]] = []
        for cursor in self.cursors(db, skip, valued):
            page += await cursor.limit(size - len(page)).to_list(None)
            if len(page) >= size:
                break
        return {"recordsTotal": total, "recordsFiltered": matching}, page

    def csv_batches(
        self, db: Database, convert: Callable[[Mapping[str, Any]], list[Any]]
    ) -> Callable[[], Awaitable[list[list[Any]]]]:
        """Every matching row, in order, a CSV_BATCH of converted lines per call ([] at the end)."""
        cursors = iter([c.batch_size(CSV_BATCH) for c in self.cursors(db)])
        current = next(cursors)

        async def more() -> list[list[Any]]:
            nonlocal current
            while current is not None:
                batch = await current.to_list(CSV_BATCH)
                if batch:
                    return [convert(row) for row in batch]
                current = next(cursors, None)
            return []

        return more


def _attendee(row: Mapping[str, Any]) -> Attendee:
    return Attendee.model_validate({name: row.get(name) for name in ATTENDEE_FIELDS})


def session_rows(session_id: str, order: AttendeeOrder) -> RowQuery:
    return RowQuery.of("attendees", {"sessionId": session_id}, order, SORT_FIELDS, _ROW_FIELDS)


@routes.get("/rest/host/session/{sessionId}/attendee")
async def session_attendees(request: web.Request) -> web.Response:
    session = await _hosted_session(request)
    query = AttendeeQuery.parse(request)
    counts, rows = await session_rows(session["_id"], query).page(request.app[DB], query.skip, query.size)
    page = [_attendee(row) for row in rows]
    return AttendeeList(**counts, page=query.page, size=query.size, data=page).response()


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
    "First Joined At (UTC)",
    "Last Left At (UTC)",
    "Joins",
    "Completion (%)",
)


def csv_line(attendee: Attendee) -> list[Any]:
    """One attendee as a CSV row: text cells made safe from spreadsheet formulas (csv_cell makes
    nulls blank and seconds two decimals)."""
    a = attendee
    dates = a.model_dump(mode="json", include={"registeredAt", "firstJoinedAt", "lastLeftAt"})
    texts = (a.userId, a.firstName, a.lastName, a.email, a.ticketId)
    return [
        *(csv_text(text or "") for text in texts),
        "yes" if a.attended else "no",
        float(a.attendedSeconds),
        float(a.liveSeconds),
        float(a.recordingSeconds),
        a.engagement,
        *(dates[name] for name in ("registeredAt", "firstJoinedAt", "lastLeftAt")),
        a.joins,
        a.completion,
    ]


@routes.get("/rest/host/session/{sessionId}/attendee/csv")
async def session_attendees_csv(request: web.Request) -> web.StreamResponse:
    """The list's rows (same search, filters and order), all of them, streamed a batch at a time."""
    require_csv(request)
    session = await _hosted_session(request)
    order = AttendeeOrder.parse(request)
    more = session_rows(session["_id"], order).csv_batches(
        request.app[DB], lambda row: csv_line(_attendee(row))
    )
    first = await more()  # errors here still get the envelope
    return await stream_csv(request, f"attendees-{session['_id']}.csv", CSV_COLUMNS, first, more)


# `csv` there is the event people's CSV (web/audience.py), which answers DELETE with 405.
@routes.delete(r"/rest/host/event/{eventId}/attendee/{userId:(?!csv$)[^/]+}")
async def erase_attendee(request: web.Request) -> web.Response:
    """Erase a user's identity for one event; every number stays (they hold no personal field)."""
    principal = await authenticate_host(request)
    event_id, user_id = path_id(request, "eventId"), path_id(request, "userId")
    await hosted_event(request, principal, event_id)
    await erase_identity(request.app[DB], event_id, user_id)
    return web.Response(status=204)
