"""Rollups: read a session's watch segments and registrations, apply §4, `$set` the numbers."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import UpdateOne

from shared.db import Database
from shared.jobs import FAILURE, STARTED, SUCCESS, release_recompute, update_task
from shared.rules import UserWatch, session_numbers, user_watch
from shared.settings import Settings
from shared.store import bump_analytics_version, numbers_fields, now

log = logging.getLogger(__name__)

_SEGMENT_FIELDS = {"_id": 0, "userId": 1, "mode": 1, "start": 1, "end": 1}
_SESSION_FIELDS = {"_id": 1, "eventId": 1, "streamProvider": 1, "format": 1, "duration": 1,
                   "rollupVersion": 1}


async def _user_watches(db: Database, session: dict[str, Any], batch: int) -> list[UserWatch]:
    by_user: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    cursor = db.watch_segments.find(
        {"eventId": session["eventId"], "sessionId": session["_id"]}, _SEGMENT_FIELDS
    ).batch_size(batch)
    while chunk := await cursor.to_list(length=batch):
        for seg in chunk:
            by_user[seg["userId"]].append((seg["mode"], seg["start"].timestamp(), seg["end"].timestamp()))
    return [user_watch(user_id, segments) for user_id, segments in by_user.items()]


async def _registrations(db: Database, session: dict[str, Any]) -> dict[str, object]:
    docs = await db.registrations.find(
        {"eventId": session["eventId"], "sessionId": session["_id"]},
        {"_id": 0, "userId": 1, "registeredAt": 1},
    ).to_list(length=None)
    return {doc["userId"]: doc["registeredAt"] for doc in docs}


async def rollup_session(db: Database, settings: Settings, session: dict[str, Any]) -> None:
    """Recompute one session from its raw attendance. Idempotent: run twice, same document."""
    version = session.get("rollupVersion", 0)
    watches = await _user_watches(db, session, settings.segment_read_batch)
    registrations = await _registrations(db, session)
    numbers = session_numbers(watches, registrations, session.get("duration"), session.get("streamProvider"))

    rows, size = numbers.attendee_rows, settings.attendee_chunk_rows
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    if chunks:
        await db.session_attendees.bulk_write(
            [
                UpdateOne(
                    {"_id": f"{session['_id']}:{n:06d}"},
                    {"$set": {"sessionId": session["_id"], "chunk": n, "rows": chunk}},
                    upsert=True,
                )
                for n, chunk in enumerate(chunks)
            ],
            ordered=False,
        )
    await db.session_attendees.delete_many({"sessionId": session["_id"], "chunk": {"$gte": len(chunks)}})

    fields = {**numbers_fields(numbers), "attendeeChunkRows": size, "analyticsUpdatedAt": now()}
    await db.sessions.update_one({"_id": session["_id"]}, {"$set": fields})
    # Input that arrived while we read bumped rollupVersion: leave the session pending for it.
    await db.sessions.update_one(
        {"_id": session["_id"], "rollupVersion": version}, {"$set": {"rollupPending": False}}
    )


async def rollup_pending(db: Database, settings: Settings, max_batches: int = 20) -> dict[str, int]:
    """Roll up sessions flagged by ingestion or duration changes, in bounded batches."""
    done = 0
    for _ in range(max_batches):
        sessions = await db.sessions.find({"rollupPending": True}, _SESSION_FIELDS).limit(
            settings.rollup_batch_sessions
        ).to_list(length=settings.rollup_batch_sessions)
        if not sessions:
            break
        for session in sessions:
            await rollup_session(db, settings, session)
        await bump_analytics_version(db, {s["eventId"] for s in sessions})
        done += len(sessions)
    remaining = await db.sessions.count_documents({"rollupPending": True})
    if done:
        log.info("rolled up sessions", extra={"sessions": done, "remaining": remaining})
    return {"sessions": done, "remaining": remaining}


DurationSync = Callable[[Database, Settings, str], Awaitable[dict[str, Any]]]


async def recompute_event(
    db: Database,
    settings: Settings,
    task_id: str,
    event_id: str,
    sync_durations: DurationSync | None = None,
) -> dict[str, Any]:
    """Duration sync, then a full rollup of every session of one event, reporting progress."""
    task = await db.tasks.find_one({"_id": task_id})
    if task is not None and task["state"] in (SUCCESS, FAILURE):
        return task.get("result") or {}  # a redelivered message for a finished job
    try:
        session_ids = [
            doc["_id"]
            for doc in await db.sessions.find({"eventId": event_id}, {"_id": 1})
            .sort("_id", 1)
            .to_list(length=None)
        ]
        total = len(session_ids) + 1
        await update_task(db, task_id, state=STARTED, progress={"done": 0, "total": total})
        durations: dict[str, Any] = {}
        if sync_durations is not None:
            durations = await sync_durations(db, settings, event_id)
        await update_task(db, task_id, progress={"done": 1, "total": total})
        for done, session_id in enumerate(session_ids, start=2):
            session = await db.sessions.find_one({"_id": session_id}, _SESSION_FIELDS)
            if session is not None:
                await rollup_session(db, settings, session)
            await update_task(db, task_id, progress={"done": done, "total": total})
        await bump_analytics_version(db, [event_id])
        result = {"sessions": len(session_ids), "durations": durations}
        await update_task(db, task_id, state=SUCCESS, result=result)
        await release_recompute(db, event_id, task_id)
        return result
    except Exception as err:
        if not _transient(err):
            await update_task(db, task_id, state=FAILURE, error=f"{type(err).__name__}: {err}")
            await release_recompute(db, event_id, task_id)
        raise


def _transient(err: Exception) -> bool:
    from shared.db import UNAVAILABLE_ERRORS

    return isinstance(err, UNAVAILABLE_ERRORS)
