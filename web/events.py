"""GET /rest/host/events: the events the calling user may host, for the dashboard's event picker."""

from __future__ import annotations

from aiohttp import web

from shared.access import HostPrincipal
from shared.documents import EventDoc
from web.auth import authenticate_host
from web.contract.events import HostEvent, HostEvents
from web.jsonio import json_response
from web.keys import DB

routes = web.RouteTableDef()

_EVENT_FIELDS = {"_id": 1, "name": 1, "organizerId": 1, "timezone": 1}


def hostable_events_filter(principal: HostPrincipal) -> dict[str, dict[str, object]] | None:
    """The events query of a host role, each constraining `_id` or the indexed `organizerId`
    (DESIGN §6); None when the user can host no event at all."""
    if principal.role == "SUPER_ADMIN":
        # Every event: a range over `_id` walks the `_id` index.
        return {"_id": {"$gte": ""}}
    if principal.role == "ORGANIZER_ADMIN":
        ids = sorted(principal.organizer_ids)
        return {"organizerId": {"$in": ids}} if ids else None
    ids = sorted(principal.event_ids)
    return {"_id": {"$in": ids}} if ids else None


def host_event(doc: EventDoc) -> HostEvent:
    return HostEvent(
        eventId=doc["_id"],
        name=doc.get("name") or doc["_id"],
        organizerId=doc.get("organizerId") or "",
        timeZone=doc.get("timezone") or "UTC",
    )


@routes.get("/rest/host/events")
async def host_events(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    query = hostable_events_filter(principal)
    docs = [] if query is None else await request.app[DB].events.find(query, _EVENT_FIELDS).to_list(None)
    events = sorted((host_event(doc) for doc in docs), key=lambda e: (e.name.casefold(), e.eventId))
    return json_response(HostEvents(events).model_dump())
