"""Rollups: fold watch segments and registrations into per-session numbers (DESIGN §4).

Each session keeps its per-user interval unions in `session_watch` (16 chunk documents read
and written by `_id`). Ingestion puts every accepted item in `segment_inbox` as well as in
the permanent collections; an incremental rollup merges the inbox into the stored unions and
rewrites the numbers, so its cost follows the new input, not the session's history. Merging
is idempotent, so a rollup interrupted at any point and run again gives the same document.
A full recompute rebuilds the unions from the permanent collections in one pass per event.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.db import UNAVAILABLE_ERRORS, Database
from shared.jobs import FAILURE, STARTED, SUCCESS, TERMINAL, release_recompute, update_task
from shared.rules import (
    LIVE,
    Interval,
    SessionNumbers,
    UserWatch,
    merge_intervals,
    session_numbers,
    union_length,
)
from shared.settings import Settings
from shared.store import (
    attendee_chunk_id,
    bump_analytics_version,
    duration_source,
    now,
    numbers_fields,
)

log = logging.getLogger(__name__)

STATE_CHUNKS = 16
INBOX_READ_LIMIT = 200_000
_SESSION_FIELDS = {"_id": 1, "eventId": 1, "streamProvider": 1, "format": 1, "duration": 1,
                   "rollupVersion": 1, "attendeeChunks": 1}


def epoch_ms(moment: datetime) -> int:
    """Stored times are whole milliseconds: integer unions stay exact until one final division."""
    return round(moment.timestamp() * 1000)


@dataclass(slots=True)
class UserState:
    live: list[Interval] = field(default_factory=list)
    recording: list[Interval] = field(default_factory=list)
    registered_at: datetime | None = None

    def add(self, mode: str, start: int, end: int) -> None:
        (self.live if mode == LIVE else self.recording).append((start, end))

    def register(self, registered_at: datetime) -> None:
        if self.registered_at is None or registered_at < self.registered_at:
            self.registered_at = registered_at

    def merged(self) -> UserState:
        return UserState(merge_intervals(self.live), merge_intervals(self.recording), self.registered_at)

    def watch(self, user_id: str) -> UserWatch:
        live = sum(end - start for start, end in self.live)
        recording = sum(end - start for start, end in self.recording)
        attended = union_length(self.live + self.recording)
        return UserWatch(user_id, live / 1000, recording / 1000, attended / 1000)


SessionState = dict[str, UserState]


def _chunk_of(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % STATE_CHUNKS


def _state_id(session_id: str, chunk: int) -> str:
    return f"{session_id}:{chunk:02d}"


async def _load_state(db: Database, session_id: str) -> SessionState:
    docs = await asyncio.gather(
        *(db.session_watch.find_one({"_id": _state_id(session_id, k)}) for k in range(STATE_CHUNKS))
    )
    state: SessionState = {}
    for doc in docs:
        if doc is None:
            continue
        users = [UserState(registered_at=reg) for reg in doc["reg"]]
        for index, mode, start, end in zip(doc["iu"], doc["im"], doc["ist"], doc["ien"], strict=True):
            (users[index].live if mode == 0 else users[index].recording).append((start, end))
        state.update(zip(doc["users"], users, strict=True))
    return state


def _state_documents(session: dict[str, Any], state: SessionState) -> list[dict[str, Any]]:
    """Parallel flat arrays: DESIGN §6 allows no nested arrays."""
    chunks: list[dict[str, Any]] = [
        {"_id": _state_id(session["_id"], k), "sessionId": session["_id"], "eventId": session["eventId"],
         "users": [], "reg": [], "iu": [], "im": [], "ist": [], "ien": []}
        for k in range(STATE_CHUNKS)
    ]
    for user_id in sorted(state):
        user = state[user_id]
        chunk = chunks[_chunk_of(user_id)]
        index = len(chunk["users"])
        chunk["users"].append(user_id)
        chunk["reg"].append(user.registered_at)
        for mode, intervals in ((0, user.live), (1, user.recording)):
            for start, end in intervals:
                chunk["iu"].append(index)
                chunk["im"].append(mode)
                chunk["ist"].append(start)
                chunk["ien"].append(end)
    return chunks


def _numbers(session: dict[str, Any], state: SessionState) -> SessionNumbers:
    provider = session.get("streamProvider")
    # Rule 8: a session without a video has no duration, whatever its document holds.
    duration = session.get("duration") if duration_source(provider, session.get("format")) else None
    watches = [user.watch(user_id) for user_id, user in state.items()]
    registrations = {u: s.registered_at for u, s in state.items() if s.registered_at is not None}
    return session_numbers(watches, registrations, duration, provider)


async def _put_all(collection: Any, documents: list[dict[str, Any]]) -> None:
    """Upsert whole documents by `_id`, concurrently. Not bulk_write: the embedded store
    (mongomock 4.3) fails every bulk update or replace sent by pymongo 4.11 and later."""
    await asyncio.gather(
        *(collection.replace_one({"_id": doc["_id"]}, doc, upsert=True) for doc in documents)
    )


async def _write_session(db: Database, settings: Settings, session: dict[str, Any],
                         state: SessionState) -> None:
    """Store the unions, the attendee pages and the numbers of one session (all `$set`)."""
    numbers = _numbers(session, state)
    await _put_all(db.session_watch, _state_documents(session, state))
    rows, size = numbers.attendee_rows, settings.attendee_chunk_rows
    pages = [rows[i : i + size] for i in range(0, len(rows), size)]
    await _put_all(db.session_attendees, [
        {"_id": attendee_chunk_id(session["_id"], n), "sessionId": session["_id"], "chunk": n,
         "rows": page}
        for n, page in enumerate(pages)
    ])
    for stale in range(len(pages), int(session.get("attendeeChunks") or 0)):
        await db.session_attendees.delete_one({"_id": attendee_chunk_id(session["_id"], stale)})
    fields = {**numbers_fields(numbers), "attendeeChunks": len(pages), "attendeeChunkRows": size,
              "analyticsUpdatedAt": now()}
    await db.sessions.update_one({"_id": session["_id"]}, {"$set": fields})


async def _clear_pending(db: Database, session: dict[str, Any]) -> None:
    # Input that arrived while we worked bumped rollupVersion: leave the session pending for it.
    await db.sessions.update_one(
        {"_id": session["_id"], "rollupVersion": session.get("rollupVersion", 0)},
        {"$set": {"rollupPending": False}},
    )


def _apply_inbox(state: SessionState, entries: Iterable[dict[str, Any]]) -> None:
    for entry in entries:
        user = state.setdefault(entry["userId"], UserState())
        if entry["kind"] == "S":
            user.add(entry["mode"], epoch_ms(entry["start"]), epoch_ms(entry["end"]))
        else:
            user.register(entry["registeredAt"])


async def _recompute_running(db: Database, event_id: str, stale_s: int) -> bool:
    lock = await db.recompute_locks.find_one({"_id": event_id})
    if lock is None:
        return False
    task = await db.tasks.find_one({"_id": lock["taskId"]})
    return (
        task is not None
        and task["state"] not in TERMINAL
        and task["heartbeatAt"] > now() - timedelta(seconds=stale_s)
    )


async def rollup_pending(db: Database, settings: Settings, max_batches: int = 20) -> dict[str, int]:
    """Fold new input into sessions flagged by ingestion or duration changes, in bounded batches.

    Events under a full recompute are left alone: the recompute reads everything stored before
    it began, and the inbox entries it did not see stay for the next run.
    """
    done = 0
    skipped: set[str] = set()
    for _ in range(max_batches):
        sessions = [
            s for s in await db.sessions.find({"rollupPending": True}, _SESSION_FIELDS)
            .limit(settings.rollup_batch_sessions + len(skipped)).to_list(None)
            if s["_id"] not in skipped
        ][: settings.rollup_batch_sessions]
        if not sessions:
            break
        busy = {e for e in {s["eventId"] for s in sessions}
                if await _recompute_running(db, e, settings.recompute_stale_s)}
        work = [s for s in sessions if s["eventId"] not in busy]
        skipped.update(s["_id"] for s in sessions if s["eventId"] in busy)
        if not work:
            continue
        inbox = await db.segment_inbox.find({"sessionId": {"$in": [s["_id"] for s in work]}}).limit(
            INBOX_READ_LIMIT
        ).to_list(None)
        complete = len(inbox) < INBOX_READ_LIMIT
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in inbox:
            by_session[entry["sessionId"]].append(entry)
        for session in work:
            entries = by_session.get(session["_id"], [])
            state = await _load_state(db, session["_id"])
            _apply_inbox(state, entries)
            merged = {user_id: user.merged() for user_id, user in state.items()}
            if await _recompute_running(db, session["eventId"], settings.recompute_stale_s):
                skipped.add(session["_id"])
                continue
            await _write_session(db, settings, session, merged)
            ids = [e["_id"] for e in entries]
            for i in range(0, len(ids), 1000):
                await db.segment_inbox.delete_many({"_id": {"$in": ids[i : i + 1000]}})
            if complete:
                await _clear_pending(db, session)
            done += 1
        await bump_analytics_version(db, {s["eventId"] for s in work})
    remaining = await db.sessions.count_documents({"rollupPending": True})
    if done:
        log.info("rolled up sessions", extra={"sessions": done, "remaining": remaining})
    return {"sessions": done, "remaining": remaining}


DurationSync = Callable[[Database, Settings, str], Awaitable[dict[str, Any]]]


async def _event_state(db: Database, settings: Settings, event_id: str) -> dict[str, SessionState]:
    """Every session's users and raw intervals, from one pass over the event's attendance."""
    states: dict[str, SessionState] = defaultdict(dict)
    batch = settings.segment_read_batch
    cursor = db.watch_segments.find(
        {"eventId": event_id}, {"_id": 0, "sessionId": 1, "userId": 1, "mode": 1, "start": 1, "end": 1}
    ).batch_size(batch)
    while docs := await cursor.to_list(length=batch):
        for seg in docs:
            session = states[seg["sessionId"]]
            user = session.get(seg["userId"])
            if user is None:
                user = session[seg["userId"]] = UserState()
            user.add(seg["mode"], epoch_ms(seg["start"]), epoch_ms(seg["end"]))
    cursor = db.registrations.find(
        {"eventId": event_id}, {"_id": 0, "sessionId": 1, "userId": 1, "registeredAt": 1}
    ).batch_size(batch)
    while docs := await cursor.to_list(length=batch):
        for reg in docs:
            states[reg["sessionId"]].setdefault(reg["userId"], UserState()).register(reg["registeredAt"])
    return states


async def recompute_event(
    db: Database,
    settings: Settings,
    task_id: str,
    event_id: str,
    sync_durations: DurationSync | None = None,
) -> dict[str, Any]:
    """Duration sync, then every session of one event rebuilt from its stored attendance."""
    task = await db.tasks.find_one({"_id": task_id})
    if task is not None and task["state"] in TERMINAL:
        return task.get("result") or {}  # a redelivered message for a finished job
    try:
        count = await db.sessions.count_documents({"eventId": event_id})
        total = count + 2
        await update_task(db, task_id, state=STARTED, progress={"done": 0, "total": total})
        durations: dict[str, Any] = {}
        if sync_durations is not None:
            durations = await sync_durations(db, settings, event_id)
        await update_task(db, task_id, progress={"done": 1, "total": total})
        # Inbox entries present now are in the permanent collections the pass below reads.
        seen = [e["_id"] for e in await db.segment_inbox.find({"eventId": event_id}, {"_id": 1}).to_list(None)]
        sessions = await db.sessions.find({"eventId": event_id}, _SESSION_FIELDS).sort("_id", 1).to_list(None)
        states = await _event_state(db, settings, event_id)
        total = len(sessions) + 2
        await update_task(db, task_id, progress={"done": 2, "total": total})
        for done, session in enumerate(sessions, start=3):
            state = {user_id: user.merged() for user_id, user in states.pop(session["_id"], {}).items()}
            await _write_session(db, settings, session, state)
            await update_task(db, task_id, progress={"done": done, "total": total})
        for i in range(0, len(seen), 1000):
            await db.segment_inbox.delete_many({"_id": {"$in": seen[i : i + 1000]}})
        for session in sessions:
            await _clear_pending(db, session)
        await bump_analytics_version(db, [event_id])
        result = {"sessions": len(sessions), "durations": durations}
        await update_task(db, task_id, state=SUCCESS, result=result)
        await release_recompute(db, event_id, task_id)
        return result
    except Exception as err:
        if not isinstance(err, UNAVAILABLE_ERRORS):
            await update_task(db, task_id, state=FAILURE, error=f"{type(err).__name__}: {err}")
            await release_recompute(db, event_id, task_id)
        raise
