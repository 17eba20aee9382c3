"""Host session routes: the analytics list, one session, its viewers over time, the CSV, and PUT
(attendees: web/attendees.py)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import PyMongoError

from shared.access import may_host
from shared.documents import EventDoc, SessionDoc
from shared.duration_status import duration_status
from shared.errors import ServiceError, SessionNotFound, Unavailable
from shared.models import SessionIn
from shared.rules import analytics_available
from shared.session_items import ITEM_FIELDS
from shared.store import session_duration, upsert_session
from shared.viewers import stored_summary, summary_answer
from web.auth import authenticate_host, bearer_token, hosted_event
from web.cache import CachedAnswer, ListCache
from web.contract.common import path_id
from web.contract.sessions import (
    SessionDetail,
    SessionFilterQuery,
    SessionItem,
    SessionList,
    SessionListQuery,
    SessionViewers,
    format_local,
    time_zone,
)
from web.csvio import csv_text, require_csv, stream_csv
from web.jsonio import conditional_json, etag_of, parse_model, read_json
from web.keys import DB, EVENTS, HTTP_METRICS, LIST_CACHE, PRINCIPALS, SETTINGS
from web.middleware import credential_id_var

routes = web.RouteTableDef()


def event_zone(event: EventDoc) -> str:
    """The event's IANA time zone (`create-event --timezone`), UTC when none was given."""
    return str(event.get("timezone") or "UTC")


def session_item(
    doc: SessionDoc, expand: frozenset[str] = frozenset(), zone: str | None = None
) -> SessionItem:
    return SessionItem.of(doc, expand, zone)


@routes.get("/rest/host/session/analytics")
async def list_sessions(request: web.Request) -> web.Response:
    answer = _answer_from_memory(request)
    if answer is not None:
        return answer  # the common case: nothing to look up, nothing to wait for
    last = _last_good_answer(request)
    if last is None:
        return await _fresh_list(request)
    key, stale, token = last
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


def _answer_from_memory(request: web.Request) -> web.Response | None:
    """The answer when the token's user, the event and the list at the event's current version
    are all in this process's memory and still valid; None sends the request the long way
    (which makes the same checks against the database and says why it refuses)."""
    try:
        token, query = bearer_token(request), SessionListQuery.parse(request)
    except ServiceError:
        return None
    event = _hosted_from_memory(request, token, query.eventId)
    if event is None:
        return None
    cached = request.app[LIST_CACHE].get(
        (query.eventId, event.get("analyticsVersion", 0), *query.cache_key())
    )
    if cached is None:
        return None
    request.app[HTTP_METRICS].list_cache.labels("hit").inc()
    return conditional_json(request, cached.body, cached.etag)


def _hosted_from_memory(request: web.Request, token: str, event_id: str) -> EventDoc | None:
    """The cached event, when the token's cached user is unexpired and may host it."""
    principal, event = request.app[PRINCIPALS].get(token), request.app[EVENTS].get(event_id)
    if principal is None or event is None or principal.expires_at is None:
        return None
    if principal.expires_at <= datetime.now(UTC) or not may_host(principal, event):
        return None
    credential_id_var.set(principal.user_id)
    return event


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
        body = (await _session_page(request, query, event_zone(event))).body()
        cached = CachedAnswer(body, etag_of(body))
        cache.put(key, cached)
    else:
        metrics.list_cache.labels("hit").inc()
    cache.remember((query.eventId, *query.cache_key()), event, cached)
    return conditional_json(request, cached.body, cached.etag)


def _list_filter(query: SessionFilterQuery) -> dict[str, object]:
    filtered: dict[str, object] = {"eventId": query.eventId}
    if query.sessionFormat:
        filtered["format"] = query.sessionFormat
    if query.searchString:
        filtered["title"] = {"$regex": re.escape(query.searchString), "$options": "i"}
    return filtered


def _list_order(query: SessionFilterQuery) -> list[tuple[str, int]]:
    direction = DESCENDING if query.descending else ASCENDING
    return [(query.sort_field, direction), ("_id", direction)]


async def _session_page(request: web.Request, query: SessionListQuery, zone: str) -> SessionList:
    sessions, filtered = request.app[DB].sessions, _list_filter(query)
    cursor = sessions.find(filtered, ITEM_FIELDS).sort(_list_order(query)).skip(query.skip).limit(query.size)
    docs = await cursor.to_list(length=query.size)
    total = await sessions.count_documents({"eventId": query.eventId})
    matching = total if len(filtered) == 1 else await sessions.count_documents(filtered)
    items = [session_item(doc, query.expand, zone) for doc in docs]
    return SessionList(
        recordsTotal=total, recordsFiltered=matching, page=query.page, size=query.size, data=items
    )


async def _hosted_session_and_event(
    request: web.Request, fields: dict[str, int] | None = None
) -> tuple[SessionDoc, EventDoc]:
    """The path's session (only `fields` of it, when given) and its event, once the caller
    proved to host that event."""
    principal = await authenticate_host(request)
    session_id = path_id(request, "sessionId")
    doc = await request.app[DB].sessions.find_one({"_id": session_id}, fields)
    if doc is None:
        raise SessionNotFound(f"no session {session_id}")
    return doc, await hosted_event(request, principal, doc["eventId"])


# Every field but the viewers series (up to 1,440 counts), which only its own route reads.
_WITHOUT_VIEWERS = {"viewers": 0}


async def _hosted_session(request: web.Request) -> SessionDoc:
    return (await _hosted_session_and_event(request, _WITHOUT_VIEWERS))[0]


@routes.get("/rest/host/session/{sessionId}/analytics")
async def session_detail(request: web.Request) -> web.Response:
    doc, event = await _hosted_session_and_event(request, _WITHOUT_VIEWERS)
    body = SessionDetail.of(doc, zone=event_zone(event)).body()
    return conditional_json(request, body, etag_of(body))


@routes.get("/rest/host/session/{sessionId}/viewers")
async def session_viewers(request: web.Request) -> web.Response:
    """Rule 9's series as the rollup stored it with the session's numbers; before its first
    rollup a session has no viewers, and answers the empty series."""
    doc, _ = await _hosted_session_and_event(request, {"eventId": 1, "viewers": 1})
    answer = summary_answer(doc["_id"], stored_summary(doc.get("viewers")))
    body = SessionViewers.model_validate(answer).body()
    return conditional_json(request, body, etag_of(body))


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
    "Session Length Status",
)
CSV_BATCH = 500


def csv_header(zone: str) -> list[str]:
    """The columns; the dates' zone is named in the date column's header."""
    return [f"{name} ({zone})" if name == "Session Date" else name for name in CSV_COLUMNS]


def csv_row(doc: SessionDoc, zone: str) -> list[object]:
    available = analytics_available(doc.get("streamProvider"))

    def pick(key: str) -> object:
        return doc.get(key) if available else None

    return [
        csv_text(doc["title"]),
        format_local(doc.get("startTime"), time_zone(zone)),
        session_duration(doc),
        doc.get("registeredUserCount", 0),
        pick("liveViews"),
        pick("avgLiveWatch"),
        pick("engagementLive"),
        pick("recordingViews"),
        pick("avgRecordingWatch"),
        pick("engagementRecording"),
        duration_status(doc),
    ]


@routes.get("/rest/host/session/analytics/csv")
async def session_csv(request: web.Request) -> web.StreamResponse:
    """The list's rows (same filter, same order), every page of them, streamed."""
    require_csv(request)
    principal = await authenticate_host(request)
    query = SessionFilterQuery.parse(request)
    event = await hosted_event(request, principal, query.eventId)
    zone = event_zone(event)
    cursor = (
        request.app[DB]
        .sessions.find(_list_filter(query), _WITHOUT_VIEWERS)
        .sort(_list_order(query))
        .batch_size(CSV_BATCH)
    )

    async def rows() -> list[list[object]]:
        return [csv_row(doc, zone) for doc in await cursor.to_list(length=CSV_BATCH)]

    first = await rows()  # errors here still get the envelope
    return await stream_csv(request, f"session-overview-{event['_id']}.csv", csv_header(zone), first, rows)


# Not "analytics": that path is the session list, and a PUT there would make its Allow lie.
@routes.put(r"/rest/host/session/{sessionId:(?!analytics$)[^{}/]+}")
async def put_session(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    session_id = path_id(request, "sessionId")
    body = parse_model(SessionIn, await read_json(request))
    event = await hosted_event(request, principal, body.eventId)
    stored = await request.app[DB].sessions.find_one({"_id": session_id}, {"eventId": 1})
    if stored is not None and stored["eventId"] != body.eventId:
        # Someone else's session: 403 like every other route, before saying it cannot move.
        await hosted_event(request, principal, stored["eventId"])
    doc, created = await upsert_session(request.app[DB], session_id, body)
    request.app[EVENTS].drop(body.eventId)  # this process shows the change at once
    return session_item(doc, zone=event_zone(event)).response(status=201 if created else 200)
