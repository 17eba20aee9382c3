"""Rollups: fold watch segments and registrations into per-session numbers (DESIGN §4).

Each session keeps its per-user interval unions in `session_watch` and its attendee pages in
`session_attendees`, both written as a new *generation* and then switched to by one
conditional update of the session document; the old generation is deleted afterwards. A
reader or a crashed rollup therefore never sees half a session, and two rollups racing on one
session cannot both win.

Ingestion puts every accepted item in `segment_inbox` as well as in the permanent collections;
an incremental rollup merges the inbox into the stored unions, so its cost follows the new
input, not the session's history. Merging is idempotent: an interrupted rollup run again gives
the same document. A full recompute rebuilds the unions from the permanent collections in one
pass over the event. On a store without secondary indexes (the FerretDB test server) each
query other than a lookup by `_id` costs a scan, so these documents are read by `_id`, written
by insert, and a replaced generation is only recorded in `rollup_garbage` for the hourly
cleanup to delete.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bson import Binary
from pymongo.errors import BulkWriteError

from shared.db import UNAVAILABLE_ERRORS, Database
from shared.jobs import (
    FAILURE,
    STARTED,
    SUCCESS,
    TERMINAL,
    recompute_running,
    release_recompute,
    update_task,
)
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
    INBOX_SEGMENT,
    attendee_chunk_id,
    bump_analytics_version,
    encode_attendee_rows,
    now,
    numbers_fields,
    session_duration,
)

log = logging.getLogger(__name__)

INBOX_READ_LIMIT = 200_000
RECOMPUTE_SWITCHES_AT_ONCE = 4
LEASE_STALE_S = 300.0  # a rollup lease older than this belongs to a dead worker
STATE_DOC_ENTRIES = 100_000  # users + intervals per state document: a few MB, far from 16 MB
_SESSION_FIELDS = {
    "_id": 1,
    "rollupPending": 1,
    "eventId": 1,
    "streamProvider": 1,
    "format": 1,
    "duration": 1,
    "rollupVersion": 1,
    "rollupGen": 1,
    "stateDocs": 1,
    "attendeeChunks": 1,
}


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
        """Seconds watched; the intervals are already merged per mode."""
        live = sum(end - start for start, end in self.live)
        recording = sum(end - start for start, end in self.recording)
        attended = union_length(self.live + self.recording)
        return UserWatch(user_id, live / 1000, recording / 1000, attended / 1000)


SessionState = dict[str, UserState]


def _decode_state(docs: Iterable[dict[str, Any]]) -> SessionState:
    state: SessionState = {}
    for doc in docs:
        for user_id, registered_ms, live, recording in orjson.loads(zlib.decompress(doc["data"])):
            state[user_id] = UserState(
                list(zip(live[::2], live[1::2], strict=True)),
                list(zip(recording[::2], recording[1::2], strict=True)),
                None if registered_ms is None else datetime.fromtimestamp(registered_ms / 1000, UTC),
            )
    return state


def _state_id(session_id: str, gen: str | None, part: int) -> str:
    return f"{session_id}:{gen}:s{part:04d}"


def _generation_ids(session: dict[str, Any]) -> tuple[list[str], list[str]]:
    """`_id`s of the state and attendee documents of the generation a session points to."""
    gen = session.get("rollupGen")
    if not gen:  # never rolled up
        return [], []
    return (
        [_state_id(session["_id"], gen, n) for n in range(int(session.get("stateDocs") or 0))],
        [attendee_chunk_id(session["_id"], gen, n) for n in range(int(session.get("attendeeChunks") or 0))],
    )


async def _load_state(db: Database, session: dict[str, Any]) -> SessionState:
    state_ids, _ = _generation_ids(session)
    docs = await asyncio.gather(*(db.session_watch.find_one({"_id": i}) for i in state_ids))
    return _decode_state(doc for doc in docs if doc is not None)


def _encode_state(session: dict[str, Any], gen: str, state: SessionState) -> Iterator[dict[str, Any]]:
    """The unions as one compressed blob per document: read and written whole, by `_id`, never
    queried by field, so a blob is far cheaper to store and load than arrays of values."""
    entries: list[list[Any]] = []
    size = 0
    part = 0

    def document() -> dict[str, Any]:
        return {
            "_id": _state_id(session["_id"], gen, part),
            "sessionId": session["_id"],
            "eventId": session["eventId"],
            "gen": gen,
            "data": Binary(zlib.compress(orjson.dumps(entries), 1)),
        }

    for user_id in sorted(state):
        user = state[user_id]
        registered = None if user.registered_at is None else epoch_ms(user.registered_at)
        entries.append(
            [user_id, registered, [t for i in user.live for t in i], [t for i in user.recording for t in i]]
        )
        size += 1 + len(user.live) + len(user.recording)
        if size >= STATE_DOC_ENTRIES:
            yield document()
            entries, size, part = [], 0, part + 1
    if entries:
        yield document()


def _numbers(session: dict[str, Any], state: SessionState) -> SessionNumbers:
    provider = session.get("streamProvider")
    duration = session_duration(session)  # rule 8, as the API shows it
    watches = [user.watch(user_id) for user_id, user in state.items()]
    registrations = {u: s.registered_at for u, s in state.items() if s.registered_at is not None}
    return session_numbers(watches, registrations, duration, provider)


@dataclass(slots=True)
class Generation:
    """The documents of one session's next generation, and the fields that switch to it."""

    session: dict[str, Any]
    gen: str
    state_docs: list[dict[str, Any]]
    attendee_docs: list[dict[str, Any]]
    fields: dict[str, Any]


def build_generation(
    settings: Settings, session: dict[str, Any], gen: str, state: SessionState
) -> Generation:
    numbers = _numbers(session, state)
    rows, size = numbers.attendee_rows, settings.attendee_chunk_rows
    attendee_docs = [
        {
            "_id": attendee_chunk_id(session["_id"], gen, n),
            "sessionId": session["_id"],
            "eventId": session["eventId"],
            "gen": gen,
            "chunk": n,
            "data": encode_attendee_rows(rows[i : i + size]),
        }
        for n, i in enumerate(range(0, len(rows), size))
    ]
    state_docs = list(_encode_state(session, gen, state))
    fields = {
        **numbers_fields(numbers),
        "attendeeChunkRows": size,
        "attendeeChunks": len(attendee_docs),
        "stateDocs": len(state_docs),
        "rollupGen": gen,
        "analyticsUpdatedAt": now(),
    }
    return Generation(session, gen, state_docs, attendee_docs, fields)


async def _insert(collection: Any, docs: list[dict[str, Any]]) -> None:
    for i in range(0, len(docs), 500):
        await collection.insert_many(docs[i : i + 500], ordered=False)


async def _switch(db: Database, generation: Generation, *, clear_pending: bool) -> bool:
    """Point the session at its new generation, if no other rollup switched it meanwhile.

    The pending flag is cleared only when no input arrived since the session was read (its
    rollupVersion is unchanged); otherwise the numbers are still written and it stays pending.
    """
    session = generation.session
    # Sessions are created with rollupGen "" (see upsert_session): matching a string is far
    # cheaper on the test server than matching a missing field (None), which still works.
    expected = {"_id": session["_id"], "rollupGen": session.get("rollupGen")}
    if clear_pending:
        done = await db.sessions.update_one(
            {**expected, "rollupVersion": session.get("rollupVersion", 0)},
            {"$set": {**generation.fields, "rollupPending": False}},
        )
        if done.matched_count:
            return True
    done = await db.sessions.update_one(expected, {"$set": generation.fields})
    return bool(done.matched_count)


async def _discard(db: Database, collection: str, ids: Iterable[str]) -> None:
    """Record documents no session points to any more, for cleanup_garbage (deletes are scans)."""
    docs = [{"_id": f"{collection}|{i}", "collection": collection, "docId": i, "at": now()} for i in ids]
    for i in range(0, len(docs), 1000):
        try:
            await db.rollup_garbage.insert_many(docs[i : i + 1000], ordered=False)
        except BulkWriteError as err:
            if any(e.get("code") != 11000 for e in err.details.get("writeErrors", [])):
                raise


async def _discard_replaced(db: Database, sessions: Iterable[dict[str, Any]]) -> None:
    """The generations these session documents pointed to before their switch."""
    state_ids: list[str] = []
    attendee_ids: list[str] = []
    for session in sessions:
        s_ids, a_ids = _generation_ids(session)
        state_ids += s_ids
        attendee_ids += a_ids
    await _discard(db, "session_watch", state_ids)
    await _discard(db, "session_attendees", attendee_ids)


async def _discard_unused(db: Database, generations: Iterable[Generation]) -> None:
    """New generations that lost a race and were never switched to."""
    generations = list(generations)
    await _discard(db, "session_watch", [d["_id"] for g in generations for d in g.state_docs])
    await _discard(db, "session_attendees", [d["_id"] for g in generations for d in g.attendee_docs])


async def _consume_inbox(db: Database, query: dict[str, Any], cutoff: datetime) -> None:
    """Delete inbox entries that were folded in: those received before the read's cutoff."""
    await db.segment_inbox.delete_many({**query, "receivedAt": {"$lt": cutoff}})


async def cleanup_garbage(db: Database, older_than_s: int = 600) -> int:
    """Delete replaced generations once no reader can still be in the middle of one."""
    garbage = await db.rollup_garbage.find({"at": {"$lte": now() - timedelta(seconds=older_than_s)}}).to_list(
        None
    )
    by_collection: dict[str, list[str]] = defaultdict(list)
    for doc in garbage:
        by_collection[doc["collection"]].append(doc["docId"])
    for collection, ids in by_collection.items():
        for i in range(0, len(ids), 1000):
            await db[collection].delete_many({"_id": {"$in": ids[i : i + 1000]}})
    for i in range(0, len(garbage), 1000):
        await db.rollup_garbage.delete_many({"_id": {"$in": [d["_id"] for d in garbage[i : i + 1000]]}})
    return len(garbage)


def _apply_inbox(state: SessionState, entries: Iterable[dict[str, Any]]) -> None:
    for entry in entries:
        user = state.setdefault(entry["userId"], UserState())
        if entry["kind"] == INBOX_SEGMENT:
            user.add(entry["mode"], epoch_ms(entry["start"]), epoch_ms(entry["end"]))
        else:
            user.register(entry["registeredAt"])


async def _rollup_batch(db: Database, settings: Settings, sessions: list[dict[str, Any]]) -> list[str]:
    """Fold the settled inbox into a batch of sessions; the ids of the sessions written.

    Entries younger than `inbox_settle_s` are left for the next run (their sessions stay
    pending): an ingestion request still writing could otherwise insert an entry older than
    the cutoff after the read, and the delete below would drop it unseen.
    """
    ids = [s["_id"] for s in sessions]
    cutoff = now() - timedelta(seconds=settings.inbox_settle_s)
    inbox = await db.segment_inbox.find({"sessionId": {"$in": ids}}).limit(INBOX_READ_LIMIT).to_list(None)
    ripe: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in inbox:
        if entry["receivedAt"] < cutoff:
            ripe[entry["sessionId"]].append(entry)
    complete = len(inbox) < INBOX_READ_LIMIT
    # Sessions whose only input is still settling wait for a later run.
    sessions = [s for s in sessions if s.get("rollupPending") or s["_id"] in ripe]
    states = await asyncio.gather(*(_load_state(db, session) for session in sessions))

    gen = uuid.uuid4().hex[:12]
    generations = []
    for session, state in zip(sessions, states, strict=True):
        _apply_inbox(state, ripe[session["_id"]])
        merged = {user_id: user.merged() for user_id, user in state.items()}
        generations.append(build_generation(settings, session, gen, merged))

    # A lease on the events first, then the recompute check (after reading the inbox): a
    # recompute that begins later waits for the lease; one that began earlier is seen here.
    events = sorted({s["eventId"] for s in sessions})
    lease: dict[str, Any] = {"_id": uuid.uuid4().hex, "events": events, "at": now()}
    await db.rollup_leases.insert_one(lease)
    try:
        busy = {e for e in events if await recompute_running(db, e, settings.recompute_stale_s)}
        generations = [g for g in generations if g.session["eventId"] not in busy]
        await _insert(db.session_watch, [d for g in generations for d in g.state_docs])
        await _insert(db.session_attendees, [d for g in generations for d in g.attendee_docs])
        written: list[Generation] = []
        lost: list[Generation] = []
        for generation in generations:
            (written if await _switch(db, generation, clear_pending=complete) else lost).append(generation)
        await _discard_replaced(db, [g.session for g in written])
        await _discard_unused(db, lost)
        written_ids = [g.session["_id"] for g in written]
        if written_ids:
            await _consume_inbox(db, {"sessionId": {"$in": written_ids}}, cutoff)
    finally:
        await db.rollup_leases.delete_one({"_id": lease["_id"]})
    return written_ids


async def sessions_with_work(db: Database) -> list[str]:
    """Sessions flagged for a rollup (new duration, new video) or with input in the inbox.

    The inbox itself marks the sessions ingestion touched: ingestion writes no session
    document, so a batch of attendance costs inserts only.
    """
    flagged = await db.sessions.find({"rollupPending": True}, {"_id": 1}).to_list(None)
    queued = await db.segment_inbox.aggregate([{"$group": {"_id": "$sessionId"}}]).to_list(None)
    return sorted({doc["_id"] for doc in flagged} | {doc["_id"] for doc in queued})


async def rollup_pending(db: Database, settings: Settings, max_batches: int = 20) -> dict[str, int]:
    """Fold new input into the sessions that have some, in bounded batches.

    Events under a full recompute are left alone: the recompute reads everything stored before
    it began, and inbox entries it did not see stay for the next run. The lock is checked after
    the inbox was read, so anything this rollup consumes was stored before any recompute that
    it did not see began.
    """
    work = await sessions_with_work(db)
    size = settings.rollup_batch_sessions
    done = 0
    for start in range(0, min(len(work), size * max_batches), size):
        ids = work[start : start + size]
        sessions = await db.sessions.find({"_id": {"$in": ids}}, _SESSION_FIELDS).to_list(None)
        written = await _rollup_batch(db, settings, sessions) if sessions else []
        done += len(written)
        await bump_analytics_version(db, {s["eventId"] for s in sessions if s["_id"] in written})
    # Sessions left for a later run (still settling, under a recompute, past the batch bound);
    # input that arrived meanwhile is found by the next run.
    remaining = len(work) - done
    if done:
        log.info("rolled up sessions", extra={"sessions": done, "remaining": remaining})
        await _settle_caches(settings)
    return {"sessions": done, "remaining": remaining}


async def _settle_caches(settings: Settings) -> None:
    """A rollup is finished only once no web process can still hold an event document read
    before it published its numbers (see web/cache.py)."""
    await asyncio.sleep(settings.host_cache_ttl_s)


DurationSync = Callable[[Database, Settings, str], Awaitable[dict[str, Any]]]


async def _prefetched(cursor: Any, batch: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of a cursor, the next one already being fetched while the caller works."""
    pending = asyncio.ensure_future(cursor.to_list(length=batch))
    while docs := await pending:
        pending = asyncio.ensure_future(cursor.to_list(length=batch))
        yield docs


async def _event_state(db: Database, settings: Settings, event_id: str) -> dict[str, SessionState]:
    """Every session's users and raw intervals, from one pass over the event's attendance."""
    states: dict[str, SessionState] = defaultdict(dict)
    batch = settings.segment_read_batch
    cursor = db.watch_segments.find(
        {"eventId": event_id}, {"_id": 0, "sessionId": 1, "userId": 1, "mode": 1, "start": 1, "end": 1}
    ).batch_size(batch)
    async for docs in _prefetched(cursor, batch):
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


async def _wait_for_rollups(db: Database, event_id: str, stale_s: float = LEASE_STALE_S) -> None:
    """Let rollups that began before this recompute claimed its event finish writing."""
    # Polling the database: the rollups run in other processes, nothing here could signal it.
    while await db.rollup_leases.find_one(  # noqa: ASYNC110
        {"events": event_id, "at": {"$gt": now() - timedelta(seconds=stale_s)}}
    ):
        await asyncio.sleep(0.2)


async def _switch_for_recompute(db: Database, generation: Generation) -> None:
    """No rollup writes this event meanwhile (see _wait_for_rollups), so a plain update by `_id`
    does: the cheapest write there is. The pending flag is cleared afterwards, only where no
    input arrived meanwhile."""
    session = generation.session
    current = await db.sessions.find_one({"_id": session["_id"]}, _SESSION_FIELDS)
    if current is None:
        return
    await db.sessions.update_one({"_id": session["_id"]}, {"$set": generation.fields})
    await _discard_replaced(db, [current])
    if session.get("rollupPending"):
        await db.sessions.update_one(
            {"_id": session["_id"], "rollupVersion": session.get("rollupVersion", 0)},
            {"$set": {"rollupPending": False}},
        )


class _Progress:
    """Task progress, written at most twice a second (each write is a database round trip)."""

    def __init__(self, db: Database, task_id: str, total: int) -> None:
        self.db, self.task_id, self.total, self._last = db, task_id, total, 0.0

    async def report(self, done: int, *, force: bool = False, **fields: Any) -> None:
        if force or time.monotonic() - self._last >= 0.5:
            self._last = time.monotonic()  # before the write: concurrent callers skip theirs
            await update_task(self.db, self.task_id, progress={"done": done, "total": self.total}, **fields)


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
    # The event's attendance is millions of small objects without reference cycles; the cyclic
    # collector would traverse all of them again and again while they are built and used.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return await _recompute_event(db, settings, task_id, event_id, sync_durations)
    finally:
        if collecting:
            gc.enable()


async def _recompute_event(
    db: Database,
    settings: Settings,
    task_id: str,
    event_id: str,
    sync_durations: DurationSync | None,
) -> dict[str, Any]:
    try:
        progress = _Progress(db, task_id, await db.sessions.count_documents({"eventId": event_id}) + 2)
        await progress.report(0, force=True, state=STARTED)
        await _wait_for_rollups(db, event_id)
        durations: dict[str, Any] = {}
        if sync_durations is not None:
            durations = await sync_durations(db, settings, event_id)
        await progress.report(1, force=True)
        # Inbox entries received before this cutoff are in the permanent collections the pass
        # below reads (ingestion writes the inbox first, then the permanent collection).
        cutoff = now() - timedelta(seconds=settings.inbox_settle_s)
        sessions = await db.sessions.find({"eventId": event_id}, _SESSION_FIELDS).sort("_id", 1).to_list(None)
        progress.total = len(sessions) + 2
        states = await _event_state(db, settings, event_id)
        await progress.report(2, force=True)
        gen = uuid.uuid4().hex[:12]
        # All new documents first, then the switches: interleaving large inserts with small
        # updates makes every update wait on the growing write-ahead log of the test server.
        generations = []
        for session in sessions:
            state = {user_id: user.merged() for user_id, user in states.pop(session["_id"], {}).items()}
            generation = build_generation(settings, session, gen, state)
            await _insert(db.session_watch, generation.state_docs)
            await _insert(db.session_attendees, generation.attendee_docs)
            generations.append(generation)
        # A few switches at once: each is a small write the database serves in parallel.
        gate = asyncio.Semaphore(RECOMPUTE_SWITCHES_AT_ONCE)
        switched = 0

        async def switch(generation: Generation) -> None:
            nonlocal switched
            async with gate:
                await _switch_for_recompute(db, generation)
                switched += 1
                await progress.report(2 + switched)

        await asyncio.gather(*(switch(g) for g in generations))
        await _consume_inbox(db, {"eventId": event_id}, cutoff)
        await bump_analytics_version(db, [event_id])
        await _settle_caches(settings)
        result = {"sessions": len(sessions), "durations": durations}
        await progress.report(len(sessions) + 2, force=True, state=SUCCESS, result=result)
        await release_recompute(db, event_id, task_id)
        return result
    except Exception as err:
        if not isinstance(err, UNAVAILABLE_ERRORS):
            await update_task(db, task_id, state=FAILURE, error=f"{type(err).__name__}: {err}")
            await release_recompute(db, event_id, task_id)
        raise
