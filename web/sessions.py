"""Host session routes: the analytics list, one session, its attendees, the CSV, and PUT."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import PyMongoError

from shared.access import may_host
from shared.errors import ServiceError, SessionNotFound, Unavailable
from shared.logs import request_id_var
from shared.models import SessionIn, format_utc
from shared.rules import analytics_available
from shared.store import attendee_chunk_id, decode_attendee_rows, session_duration, upsert_session
from web.auth import authenticate_host, bearer_token, hosted_event
from web.cache import CachedAnswer, ListCache
from web.contract.common import path_id
from web.contract.sessions import (
    Attendee,
    AttendeeList,
    EventQuery,
    PageQuery,
    SessionDetail,
    SessionItem,
    SessionList,
    SessionListQuery,
)
from web.jsonio import conditional_json, etag_of, parse_model, read_json
from web.keys import DB, EVENTS, HTTP_METRICS, LIST_CACHE, PRINCIPALS, SETTINGS
from web.middleware import credential_id_var

routes = web.RouteTableDef()

_LIST_FIELDS = {
    "_id": 1,
    "title": 1,
    "startTime": 1,
    "endTime": 1,
    "format": 1,
    "streamProvider": 1,
    "registeredUserCount": 1,
    "attendeeCount": 1,
    "avgAttendedDuration": 1,
    "recordingViews": 1,
    "liveViews": 1,
    "analyticsUpdatedAt": 1,
    "duration": 1,
    "watchTime": 1,
}


def session_item(doc: dict[str, Any], expand: frozenset[str] = frozenset()) -> SessionItem:
    return SessionItem.of(doc, expand)


@routes.get("/rest/host/session/analytics")
async def list_sessions(request: web.Request) -> web.Response:
    last = _last_good_answer(request)
    if last is None:
        return await _fresh_list(request)
    key, stale, token = last
    if _answerable_from_memory(request, token, key):
        return await _fresh_list(request)  # no database call on the way: nothing to wait for
    if request.app[LIST_CACHE].refreshing_for(key) > request.app[SETTINGS].list_stale_after_s:
        # The database is already too slow for this query: do not queue one more refresh.
        return _stale_answer(request, stale)
    running = request.app[LIST_CACHE].flight((token, *key))
    if running is not None:
        return await _after_flight(request, key, running, stale)
    return await _fresh_or_stale(request, key, stale, token)


async def _after_flight(
    request: web.Request, key: tuple[object, ...], running: asyncio.Future[Any], stale: CachedAnswer
) -> web.Response:
    """One refresh per token and query at a time: the others wait for it (within the limit) and
    answer what it left in the cache, taking no database slot of their own."""
    cache, limit = request.app[LIST_CACHE], request.app[SETTINGS].list_stale_after_s
    await asyncio.wait({running}, timeout=max(0.0, limit - cache.refreshing_for(key)))
    error = running.exception() if running.done() and not running.cancelled() else None
    if error is not None and not _database_trouble(error):
        raise error  # the same token's refresh found it unauthorized (or the query bad): so is this
    last = cache.last_good(key)
    if running.done() and error is None and not running.cancelled() and last is not None:
        request.app[HTTP_METRICS].list_cache.labels("hit").inc()
        return conditional_json(request, last.answer.body, last.answer.etag)
    return _stale_answer(request, stale)


async def _fresh_or_stale(
    request: web.Request, key: tuple[object, ...], stale: CachedAnswer, token: str
) -> web.Response:
    cache, limit = request.app[LIST_CACHE], request.app[SETTINGS].list_stale_after_s
    # Wait a little for a fresh answer, then give the last good one; the fresh one still
    # finishes (the refresh the requests above wait for) and refreshes the cache.
    began = cache.refresh_started(key)
    fresh = asyncio.ensure_future(_fresh_list(request))
    fresh.add_done_callback(lambda task: _refresh_done(cache, key, began, task))
    cache.fly((token, *key), fresh)
    try:
        done, _ = await asyncio.wait({fresh}, timeout=limit)
    except asyncio.CancelledError:
        fresh.cancel()
        raise
    if fresh in done and not _database_trouble(fresh.exception()):
        return fresh.result()
    return _stale_answer(request, stale)


def _database_trouble(error: BaseException | None) -> bool:
    """A failure of the backing services (not of the request): the last good answer still holds."""
    return isinstance(error, Unavailable | PyMongoError)


def _answerable_from_memory(request: web.Request, token: str, key: tuple[object, ...]) -> bool:
    event = request.app[EVENTS].get(str(key[0]))
    if event is None or request.app[PRINCIPALS].get(token) is None:
        return False
    versioned = (key[0], event.get("analyticsVersion", 0), *key[1:])
    return request.app[LIST_CACHE].get(versioned) is not None


def _stale_answer(request: web.Request, answer: CachedAnswer) -> web.Response:
    request.app[HTTP_METRICS].list_cache.labels("stale").inc()
    return conditional_json(request, answer.body, answer.etag)


def _refresh_done(cache: ListCache, key: tuple[object, ...], began: float, task: asyncio.Future[Any]) -> None:
    cache.refresh_ended(key, began)
    if not task.cancelled():
        task.exception()  # retrieved: a late failure is not worth a log line per request


def _last_good_answer(request: web.Request) -> tuple[tuple[object, ...], CachedAnswer, str] | None:
    """This process's last answer to the same query, when the same token already proved it may
    see that event (from memory only: no database call)."""
    try:
        token = bearer_token(request)
        query = SessionListQuery.parse(request)
    except ServiceError:
        return None
    principal = request.app[PRINCIPALS].get_stale(token)
    key = (query.eventId, *query.cache_key())
    last = request.app[LIST_CACHE].last_good(key)
    if principal is None or last is None or principal.expires_at is None:
        return None
    if principal.expires_at <= datetime.now(UTC) or not may_host(principal, last.event):
        return None
    credential_id_var.set(principal.user_id)
    return key, last.answer, token


async def _fresh_list(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    query = SessionListQuery.parse(request)
    event = await hosted_event(request, principal, query.eventId)
    cache, metrics = request.app[LIST_CACHE], request.app[HTTP_METRICS]
    key = (query.eventId, event.get("analyticsVersion", 0), *query.cache_key())
    cached = cache.get(key)
    if cached is None:
        metrics.list_cache.labels("miss").inc()
        body = (await _session_page(request, query)).body()
        cached = CachedAnswer(body, etag_of(body))
        cache.put(key, cached)
    else:
        metrics.list_cache.labels("hit").inc()
    cache.remember((query.eventId, *query.cache_key()), event, cached)
    return conditional_json(request, cached.body, cached.etag)


def _list_filter(query: SessionListQuery) -> dict[str, Any]:
    filtered: dict[str, Any] = {"eventId": query.eventId}
    if query.sessionFormat:
        filtered["format"] = query.sessionFormat
    if query.searchString:
        filtered["title"] = {"$regex": re.escape(query.searchString), "$options": "i"}
    return filtered


async def _session_page(request: web.Request, query: SessionListQuery) -> SessionList:
    sessions, filtered = request.app[DB].sessions, _list_filter(query)
    direction = DESCENDING if query.descending else ASCENDING
    cursor = (
        sessions.find(filtered, _LIST_FIELDS)
        .sort([(query.sort_field, direction), ("_id", direction)])
        .skip(query.skip)
        .limit(query.size)
    )
    docs = await cursor.to_list(length=query.size)
    total = await sessions.count_documents({"eventId": query.eventId})
    matching = total if len(filtered) == 1 else await sessions.count_documents(filtered)
    items = [session_item(doc, query.expand) for doc in docs]
    return SessionList(
        recordsTotal=total, recordsFiltered=matching, page=query.page, size=query.size, data=items
    )


async def _hosted_session(request: web.Request) -> dict[str, Any]:
    principal = await authenticate_host(request)
    session_id = path_id(request, "sessionId")
    doc = await request.app[DB].sessions.find_one({"_id": session_id})
    if doc is None:
        raise SessionNotFound(f"no session {session_id}")
    await hosted_event(request, principal, doc["eventId"])
    return doc


@routes.get("/rest/host/session/{sessionId}/analytics")
async def session_detail(request: web.Request) -> web.Response:
    body = SessionDetail.of(await _hosted_session(request)).body()
    return conditional_json(request, body, etag_of(body))


@routes.get("/rest/host/session/{sessionId}/attendee")
async def session_attendees(request: web.Request) -> web.Response:
    doc = await _hosted_session(request)
    page = PageQuery.parse(request)
    total = int(doc.get("attendeeRows", 0))
    rows = await _attendee_rows(request, doc, page.skip, min(page.skip + page.size, total))
    return AttendeeList(recordsTotal=total, page=page.page, size=page.size, data=rows).response()


async def _attendee_rows(request: web.Request, doc: dict[str, Any], first: int, last: int) -> list[Attendee]:
    """Rows [first, last) from the chunks the range overlaps, of the generation the session
    document points to, each looked up by `_id`."""
    if first >= last:
        return []
    chunk_rows = int(doc.get("attendeeChunkRows") or 1000)
    numbers = range(first // chunk_rows, (last - 1) // chunk_rows + 1)
    chunk_ids = [attendee_chunk_id(doc["_id"], doc.get("rollupGen"), n) for n in numbers]
    attendees = request.app[DB].session_attendees
    chunks = await asyncio.gather(*(attendees.find_one({"_id": chunk_id}) for chunk_id in chunk_ids))
    rows: list[Attendee] = []
    for n, chunk in zip(numbers, chunks, strict=True):
        offset = n * chunk_rows
        for i, row in enumerate(decode_attendee_rows(chunk) if chunk else ()):
            if first <= offset + i < last:
                rows.append(_attendee(row))
    return rows


def _attendee(row: dict[str, Any]) -> Attendee:
    return Attendee.model_validate({name: row[name] for name in Attendee.model_fields})


CSV_COLUMNS = (
    "Session Name",
    "Session Date",
    "Session Length",
    "Number of Attendees Registered",
    "Number of Views (Live)",
    "Average Watch Time (Live)",
    "Engagement (Live)",
    "Number of Views (Recorded)",
    "Average Watch Time (Recorded)",
    "Engagement (Recorded)",
)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return value


def _csv_safe(text: str) -> str:
    # A title starting with = + - @ would run as a formula in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_row(doc: dict[str, Any]) -> list[Any]:
    available = analytics_available(doc.get("streamProvider"))
    pick = (lambda key: doc.get(key)) if available else (lambda key: None)
    return [
        _csv_safe(doc["title"]),
        format_utc(doc.get("startTime")),
        session_duration(doc),
        doc.get("registeredUserCount", 0),
        pick("liveViews"),
        pick("avgLiveWatch"),
        pick("engagementLive"),
        pick("recordingViews"),
        pick("avgRecordingWatch"),
        pick("engagementRecording"),
    ]


@routes.get("/rest/host/session/analytics/csv")
async def session_csv(request: web.Request) -> web.StreamResponse:
    principal = await authenticate_host(request)
    event_id = EventQuery.parse(request).eventId
    event = await hosted_event(request, principal, event_id)
    response = web.StreamResponse(headers=_csv_headers(event["_id"]))
    cursor = (
        request.app[DB]
        .sessions.find({"eventId": event_id})
        .sort([("startTime", ASCENDING), ("_id", ASCENDING)])
        .batch_size(500)
    )
    first = await cursor.to_list(length=500)  # errors here still get the envelope
    await response.prepare(request)
    await _write_csv(response, first, cursor)
    return response


def _csv_headers(event_id: str) -> dict[str, str]:
    return {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="session-overview-{event_id}.csv"',
        # Sent with the first byte: the middleware's own header would come too late here.
        "X-Request-Id": request_id_var.get() or "",
    }


async def _write_csv(response: web.StreamResponse, batch: list[dict[str, Any]], cursor: Any) -> None:
    """The header, then one write per batch of sessions as the cursor gives them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    while batch:
        writer.writerows([_cell(v) for v in csv_row(doc)] for doc in batch)
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
        batch = await cursor.to_list(length=500)
    if buffer.tell():
        await response.write(buffer.getvalue().encode())
    await response.write_eof()


# Not "analytics": that path is the session list, and a PUT there would make its Allow lie.
@routes.put(r"/rest/host/session/{sessionId:(?!analytics$)[^{}/]+}")
async def put_session(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    session_id = path_id(request, "sessionId")
    body = parse_model(SessionIn, await read_json(request))
    await hosted_event(request, principal, body.eventId)
    stored = await request.app[DB].sessions.find_one({"_id": session_id}, {"eventId": 1})
    if stored is not None and stored["eventId"] != body.eventId:
        # Someone else's session: 403 like every other route, before saying it cannot move.
        await hosted_event(request, principal, stored["eventId"])
    doc, created = await upsert_session(request.app[DB], session_id, body)
    request.app[EVENTS].drop(body.eventId)  # this process shows the change at once
    return session_item(doc).response(status=201 if created else 200)
