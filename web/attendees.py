"""Who attended: a session's attendee list and CSV (numbers joined with identities), and erasure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from shared.db import Database
from shared.documents import SessionDoc
from shared.errors import SessionNotFound
from shared.identities import erase_identity, identities_of
from shared.models import IDENTITY_FIELDS
from shared.store import attendee_chunk_id, decode_attendee_rows
from web.auth import authenticate_host, hosted_event
from web.contract.attendees import Attendee, AttendeeList, AttendeeOrder, AttendeeQuery
from web.contract.common import path_id
from web.csvio import csv_text, require_csv, stream_csv
from web.keys import DB

routes = web.RouteTableDef()
CSV_BATCH = 2000  # rows per write of the CSV, and per identity read behind it
Row = dict[str, Any]
Identities = Mapping[str, Mapping[str, Any]]  # AttendeeIdentityDoc by userId
ATTENDEE_FIELDS = tuple(Attendee.model_fields)
# What the attendee routes read of a session: where its rows are (not its numbers or series).
_SESSION_FIELDS = {"eventId": 1, "rollupGen": 1, "attendeeRows": 1, "attendeeChunkRows": 1}


async def _hosted_session(request: web.Request) -> SessionDoc:
    principal = await authenticate_host(request)
    session_id = path_id(request, "sessionId")
    doc = await request.app[DB].sessions.find_one({"_id": session_id}, _SESSION_FIELDS)
    if doc is None:
        raise SessionNotFound(f"no session {session_id}")
    await hosted_event(request, principal, doc["eventId"])
    return doc


async def _session_rows(db: Database, session: SessionDoc) -> list[Row]:
    """Every attendee row of the generation the session document points to, in one read by `_id`.

    Numbers only: the rollup never copies identities into its documents (shared/identities.py).
    """
    total = int(session.get("attendeeRows") or 0)
    if not total:
        return []
    chunk_rows = int(session.get("attendeeChunkRows") or 1000)
    ids = [
        attendee_chunk_id(session["_id"], session.get("rollupGen"), n) for n in range(-(-total // chunk_rows))
    ]
    chunks = await db.session_attendees.find({"_id": {"$in": ids}}).batch_size(len(ids)).to_list(None)
    position = {chunk_id: n for n, chunk_id in enumerate(ids)}
    chunks.sort(key=lambda chunk: position[chunk["_id"]])
    return [row for chunk in chunks for row in decode_attendee_rows(chunk)]


def _matches(needle: str, identity: Mapping[str, Any] | None) -> bool:
    if identity is None:
        return False
    first, last = identity.get("firstName") or "", identity.get("lastName") or ""
    texts = (first, last, f"{first} {last}", identity.get("email") or "")
    return any(needle in text.casefold() for text in texts)


def _sort_value(key: str, identities: Identities) -> Callable[[Row], Any]:
    if key == "lastName":
        return lambda row: ((identities.get(row["userId"]) or {}).get("lastName") or "").casefold() or None
    if key == "registeredAt":
        return lambda row: row["registeredAt"] and datetime.fromisoformat(row["registeredAt"])
    return lambda row: row[key]


def ordered(rows: list[Row], order: AttendeeOrder, identities: Identities) -> list[Row]:
    """The rows `order` selects, sorted: rows without a value last in either direction, ties by
    userId (the stored rows come by userId, and Python's sort is stable, also reversed)."""
    if order.searchString:
        needle = order.searchString.casefold()
        rows = [row for row in rows if _matches(needle, identities.get(row["userId"]))]
    value = _sort_value(order.sort_field, identities)
    valued = [row for row in rows if value(row) is not None]
    valued.sort(key=value, reverse=order.descending)
    return valued + [row for row in rows if value(row) is None]


async def _ordered_rows(
    request: web.Request, session: SessionDoc, order: AttendeeOrder
) -> tuple[int, list[Row], Identities | None]:
    """(all rows, the selected rows in order, the identities read for that: None when none were)."""
    db = request.app[DB]
    rows = await _session_rows(db, session)
    identities: Identities | None = None
    if order.searchString or order.sort_field == "lastName":  # needs every row's identity
        identities = await identities_of(db, session["eventId"], [row["userId"] for row in rows])
    return len(rows), ordered(rows, order, identities or {}), identities


async def _with_identities(
    db: Database, event_id: str, rows: list[Row], known: Identities | None
) -> list[Attendee]:
    if known is None:
        known = await identities_of(db, event_id, [row["userId"] for row in rows])
    attendees = []
    for row in rows:
        identity: Mapping[str, Any] = known.get(row["userId"]) or {}
        fields = {
            name: identity.get(name) if name in IDENTITY_FIELDS else row[name] for name in ATTENDEE_FIELDS
        }
        attendees.append(Attendee.model_validate(fields))
    return attendees


@routes.get("/rest/host/session/{sessionId}/attendee")
async def session_attendees(request: web.Request) -> web.Response:
    session = await _hosted_session(request)
    query = AttendeeQuery.parse(request)
    total, rows, known = await _ordered_rows(request, session, query)
    page = rows[query.skip : query.skip + query.size]
    data = await _with_identities(request.app[DB], session["eventId"], page, known)
    answer = {"recordsTotal": total, "recordsFiltered": len(rows), "page": query.page, "size": query.size}
    return AttendeeList(**answer, data=data).response()


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
    _, rows, known = await _ordered_rows(request, session, order)
    db, event_id = request.app[DB], session["eventId"]
    batches = (rows[start : start + CSV_BATCH] for start in range(0, len(rows), CSV_BATCH))

    async def more() -> list[list[Any]]:
        return [csv_line(a) for a in await _with_identities(db, event_id, next(batches, []), known)]

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
