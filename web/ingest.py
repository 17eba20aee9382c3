"""Attendance ingestion: watch segments and registrations, validated item by item."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypedDict, TypeVar, cast

from aiohttp import web
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from shared.db import Collection, Database
from shared.errors import BadRequest, EventNotFound
from shared.identities import store_identities
from shared.inbox import StoredItem, inbox_batch, insert_new, intent, request_id
from shared.models import RegistrationIn, WatchSegmentIn, describe_validation_error
from shared.rules import MAX_FUTURE_S, MAX_SEGMENT_S
from shared.store import INBOX_REGISTRATION, INBOX_SEGMENT, now
from shared.tasks import TaskName, rollup_signal_key
from web.auth import authenticate_ingest
from web.contract.common import path_id
from web.contract.ingest import MAX_ITEMS, IngestResult
from web.jsonio import read_json
from web.keys import DB, EVENTS, KNOWN_SESSIONS, SETTINGS, TASKS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
P = TypeVar("P", WatchSegmentIn, RegistrationIn)  # one item as parsed
SEGMENTS_ROUTE = "/rest/events/{eventId}/watch-segments"
REGISTRATIONS_ROUTE = "/rest/events/{eventId}/registrations"
# Writes that must not be lost wait in a line of their own (INGEST_CONCURRENCY, web/app.py).
OWN_LINE_ROUTES = (SEGMENTS_ROUTE, REGISTRATIONS_ROUTE)


class Rejection(TypedDict):
    index: int
    reason: str


def _validate(model: type[P], index: int, item: object) -> tuple[P, None] | tuple[None, Rejection]:
    if not isinstance(item, dict):
        return None, Rejection(index=index, reason="item must be a JSON object")
    try:
        return model.model_validate(item), None
    except ValidationError as err:
        return None, Rejection(index=index, reason=describe_validation_error(err))


def _segment_problem(segment: WatchSegmentIn) -> str | None:
    length = (segment.end - segment.start).total_seconds()
    if length <= 0:
        return "end must be after start"
    if length > MAX_SEGMENT_S:
        return "a segment may last at most 24 hours"
    if segment.end > now() + timedelta(seconds=MAX_FUTURE_S):
        return "end is more than 5 minutes in the future"
    return None


async def _items(request: web.Request) -> tuple[str, list[object]]:
    event_id = path_id(request, "eventId")
    await authenticate_ingest(request, event_id)
    body = await read_json(request)
    if isinstance(body, dict) and set(body) == {"items"}:
        body = body["items"]
    if not isinstance(body, list):
        raise BadRequest('body must be a JSON list of items (or {"items": [...]})')
    if len(body) > MAX_ITEMS:
        raise BadRequest(f"at most {MAX_ITEMS} items a request; got {len(body)}")
    await _existing_event(request, event_id)
    return event_id, body


async def _existing_event(request: web.Request, event_id: str) -> None:
    """The event exists; its document is reused for HOST_CACHE_TTL_S (as host reads do), so a
    post costs no read of it while the database is busy with writes."""
    cache = request.app[EVENTS]
    if cache.get(event_id) is None:
        event = await request.app[DB].events.find_one({"_id": event_id})
        if event is None:
            raise EventNotFound(f"no event {event_id}")
        cache.put(event_id, event)


async def _known_sessions(request: web.Request, event_id: str, session_ids: set[str]) -> set[str]:
    """The posted sessions that exist in the event; those this process already found are not
    looked up again (a session never moves to another event nor goes away: web/app.py)."""
    seen = request.app[KNOWN_SESSIONS]
    known = {s for s in session_ids if seen.get((event_id, s))}
    if not session_ids - known:
        return known
    docs = (
        await request.app[DB]
        .sessions.find({"_id": {"$in": sorted(session_ids - known)}, "eventId": event_id}, {"_id": 1})
        .to_list(length=None)
    )
    for doc in docs:
        seen.put((event_id, doc["_id"]), True)
    return known | {doc["_id"] for doc in docs}


async def _store(
    db: Database, event_id: str, collection_name: str, kind: str, documents: list[StoredItem]
) -> tuple[int, int]:
    """The request's intent, then the permanent documents (once, by `_id`), then the inbox batch
    of what this request stored: (accepted, duplicates). See shared/inbox.py for why in this order.

    A failure of the first two writes propagates (503: nothing stored that will count); once
    the permanent write succeeded the answer is 200, and an inbox batch that could not be
    written is queued by the beat tick from its intent.
    """
    if not documents:
        return 0, 0
    batch_id = request_id(kind)
    await db.segment_intents.insert_one(intent(batch_id, event_id, kind, documents))
    duplicates = await insert_new(cast("Collection[StoredItem]", db[collection_name]), documents)
    stored = [d for i, d in enumerate(documents) if i not in duplicates]
    try:
        if stored:
            await db.segment_inbox.insert_one(inbox_batch(batch_id, event_id, kind, stored))
    except PyMongoError as err:
        log.warning("stored %d items; queued from their intents later: %s", len(stored), type(err).__name__)
    return len(documents) - len(duplicates), len(duplicates)


async def _signal_rollup(request: web.Request, event_id: str) -> None:
    """Ask a worker to roll the event up within the debounce; a broker outage fails nothing
    here (the beat tick is the safety net)."""
    settings = request.app[SETTINGS]
    await request.app[TASKS].enqueue_debounced(
        TaskName.ROLLUP_EVENT,
        key=rollup_signal_key(event_id),
        kwargs={"event_id": event_id},
        delay_s=settings.rollup_debounce_s,
    )


async def _ingest(
    request: web.Request,
    model: type[P],
    to_document: Callable[[str, P], StoredItem],
    check: Callable[[P], str | None],
    collection_name: str,
    inbox_kind: str,
    also_store: Callable[[web.Request, str, list[P]], Awaitable[None]] | None = None,
) -> web.Response:
    event_id, items = await _items(request)
    valid: list[tuple[int, P]] = []
    rejected: list[Rejection] = []
    for index, item in enumerate(items):
        parsed, problem = _validate(model, index, item)
        if parsed is not None and (reason := check(parsed)) is not None:
            problem = {"index": index, "reason": reason}
        if problem is not None:
            rejected.append(problem)
        elif parsed is not None:
            valid.append((index, parsed))
    known = await _known_sessions(request, event_id, {p.sessionId for _, p in valid})
    documents: list[StoredItem] = []
    kept: list[P] = []
    for index, parsed in valid:
        if parsed.sessionId not in known:
            rejected.append({"index": index, "reason": f"unknown session {parsed.sessionId}"})
        else:
            documents.append(to_document(event_id, parsed))
            kept.append(parsed)
    if also_store is not None:  # first: a failure here answers 503 with nothing counted stored
        await also_store(request, event_id, kept)
    db = request.app[DB]
    accepted, duplicates = await _store(db, event_id, collection_name, inbox_kind, documents)
    if documents:
        await _signal_rollup(request, event_id)
    rejected.sort(key=lambda r: r["index"])
    answer = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
    return IngestResult.model_validate(answer).response()


def _segment_document(event_id: str, segment: WatchSegmentIn) -> StoredItem:
    return {
        "_id": f"{event_id}:{segment.segmentId}",
        "eventId": event_id,
        "segmentId": segment.segmentId,
        "sessionId": segment.sessionId,
        "userId": segment.userId,
        "mode": segment.mode,
        "start": segment.start,
        "end": segment.end,
    }


def _registration_document(event_id: str, registration: RegistrationIn) -> StoredItem:
    """Ids and time only: the identity fields go to the identity document (shared/identities.py)."""
    return {
        "_id": f"{event_id}:{registration.sessionId}:{registration.userId}",
        "eventId": event_id,
        "sessionId": registration.sessionId,
        "userId": registration.userId,
        "registeredAt": registration.registeredAt,
    }


def _registration_problem(registration: RegistrationIn) -> str | None:
    if registration.registeredAt > now() + timedelta(seconds=MAX_FUTURE_S):
        return "registeredAt is more than 5 minutes in the future"
    return None


async def _store_identities(request: web.Request, event_id: str, registrations: list[RegistrationIn]) -> None:
    """Also for registrations already stored: a registration posted again may correct a name."""
    await store_identities(request.app[DB], request.app[SETTINGS], event_id, registrations)


@routes.post(SEGMENTS_ROUTE)
async def post_watch_segments(request: web.Request) -> web.Response:
    return await _ingest(
        request, WatchSegmentIn, _segment_document, _segment_problem, "watch_segments", INBOX_SEGMENT
    )


@routes.post(REGISTRATIONS_ROUTE)
async def post_registrations(request: web.Request) -> web.Response:
    return await _ingest(
        request,
        RegistrationIn,
        _registration_document,
        _registration_problem,
        "registrations",
        INBOX_REGISTRATION,
        _store_identities,
    )
