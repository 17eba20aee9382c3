"""Rollups: fold watch segments and registrations into per-session numbers and the event's
audience (DESIGN §4), reading and writing what follows the new attendance.

Storage, and why each piece exists on MongoDB:

- `segment_inbox`: a copy of every stored item not yet folded in, one document per ingestion
  request (its items as plain subdocuments), written *after* its permanent documents, so the
  permanent collections stay insert-only and a rollup reads only new input. (Ingestion's
  intents, `segment_intents`, make its answers true: shared/inbox.py.)
- `attendees`: one row per (session, user) holding the user's unions and numbers
  (shared/attendees.py). A rollup reads by `_id` the rows of the users with new items only,
  and writes the rows that changed (worker/session_fold.py).
- `sessions`: the numbers and the viewers series, with the sums and counts they come from
  (`totals`, `viewersState`: shared/session_totals.py), which a rollup moves the changed users
  out of and in again; a session's peak comes from its LIVE edges in `audience_edges`.
- `people`, `audience_edges`, `event_summaries`: the event's audience (shared/audience.py).
- A rollup's writes land all or none: committed first in the event summary's update, then
  applied (worker/journal.py); the next rollup applies what a dead one left committed.
- `rollup_leases`: one lease per event, held by the rollup or recompute writing its sessions
  (MongoDB has no cross-document lock, and transactions are not relied on); it expires unless
  renewed, so a dead worker holds an event for at most `ROLLUP_LEASE_S`.
- `rollupPending` / `rollupVersion` on sessions: a duration or video change flags its session
  in the same write that makes it (its next rollup sums every row again); the version tells a
  rollup whether a change came meanwhile.

Rollups set computed values, never increments: running one twice, or after a crash, gives the
same documents. A full recompute rebuilds every row, session, person and edge from the
permanent collections in one pass over the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from motor.core import AgnosticBaseCursor
from pymongo import UpdateMany
from pymongo.errors import DuplicateKeyError

from shared.attendees import row_id
from shared.audience import RowView, peak
from shared.db import UNAVAILABLE_ERRORS, Database, bulk_write, dates_as_ms
from shared.documents import RollupLeaseDoc, SessionDoc
from shared.hooks import analytics_written
from shared.identities import identities_of
from shared.inbox import QueuedItem, batch_items, consume, settle_intents
from shared.jobs import (
    STARTED,
    SUCCESS,
    TERMINAL,
    fail_task,
    release_recompute,
    take_task,
    update_task,
)
from shared.settings import Settings
from shared.store import bump_analytics_version, epoch_ms, now
from worker.audience import (
    EdgeScope,
    edge_ops,
    full_edge_docs,
    plan_people,
    rebuild_audience,
    session_scope,
    start_rebuild,
    summary_doc,
)
from worker.journal import Journal, op, settled_summary
from worker.session_fold import ROW_FIELDS, SessionState, SessionWrite, UserState, fold_session

log = logging.getLogger(__name__)
D = TypeVar("D", bound=Mapping[str, Any])  # a collection's document type

TICK_SCAN_ITEMS = 1000  # oldest inbox batches a beat tick looks at to find events with work
INBOX_READ_DOCS = 500  # inbox batches a rollup reads per round trip (each up to MAX_ITEMS items)
_SESSION_FIELDS = {
    "_id": 1,
    "rollupPending": 1,
    "eventId": 1,
    "startTime": 1,  # the viewers series' buckets are aligned on it (rule 9)
    "streamProvider": 1,
    "format": 1,
    "duration": 1,
    "rollupVersion": 1,
    "totals": 1,  # the sums and counts this rollup moves its users in and out of
    "viewersState": 1,
}


async def event_time_zone(db: Database, event_id: str) -> str:
    """The event's IANA zone (recording viewers are counted per date in it)."""
    event = await db.events.find_one({"_id": event_id}, {"timezone": 1})
    return (event.get("timezone") if event else None) or "UTC"


async def _write_rows_and_sessions(
    db: Database, settings: Settings, journal: Journal, writes: list[SessionWrite]
) -> set[str]:
    """Apply a committed journal; the sessions whose document was there to take their numbers
    (a session deleted meanwhile loses the rows just written for it)."""
    matched = await journal.apply(db, settings)
    written = {w.session["_id"] for w in writes}
    if matched.get("sessions", 0) != len(writes):
        there = await db.sessions.find({"_id": {"$in": sorted(written)}}, {"_id": 1}).to_list(None)
        gone = sorted(written - {doc["_id"] for doc in there})
        await db.attendees.delete_many({"sessionId": {"$in": gone}})
        written -= set(gone)
    return written


async def _read_rows(
    db: Database, settings: Settings, every_row: list[str], users: Mapping[str, Iterable[str]]
) -> dict[str, dict[str, Any]]:
    """Stored rows by session and userId: every row of the sessions in `every_row` (one query by
    the indexed sessionId), and the rows of these users in the others (by `_id`)."""
    stored: dict[str, dict[str, Any]] = defaultdict(dict)
    rows = dates_as_ms(db.attendees, settings)
    if every_row:
        cursor = rows.find({"sessionId": {"$in": every_row}}, ROW_FIELDS).batch_size(
            settings.segment_read_batch
        )
        async for doc in cursor:
            stored[doc["sessionId"]][doc["userId"]] = doc
    ids = [row_id(s, u) for s, us in users.items() if s not in every_row for u in us]
    for start in range(0, len(ids), settings.write_batch):
        part = ids[start : start + settings.write_batch]
        async for doc in rows.find({"_id": {"$in": part}}, ROW_FIELDS).batch_size(len(part)):
            stored[doc["sessionId"]][doc["userId"]] = doc
    return stored


async def _clear_flags(db: Database, settings: Settings, sessions: list[SessionDoc]) -> None:
    """Clear the pending flag of sessions just written, where no change arrived since they were
    read (their version is unchanged). One update per version number: usually one or two."""
    by_version: dict[int, list[str]] = defaultdict(list)
    for session in sessions:
        if session.get("rollupPending"):
            by_version[int(session.get("rollupVersion", 0))].append(session["_id"])
    ops = [
        UpdateMany({"_id": {"$in": ids}, "rollupVersion": version}, {"$set": {"rollupPending": False}})
        for version, ids in sorted(by_version.items())
    ]
    await bulk_write(settings, db.sessions, ops)


# --- the per-event lease ----------------------------------------------------------------------


class LeaseLost(RuntimeError):
    """Another worker took the event's lease: this one stopped renewing it in time."""


class EventLease:
    """One rollup or recompute writes an event's sessions at a time.

    The lease is a document `{_id: eventId, owner, expiresAt}`. The holder renews it while it
    works (every third of its lifetime, and before each write); a holder that dies stops
    renewing, and the lease is free again once `expiresAt` passed. Leaving the `async with`
    block — normally, by an error, or by cancellation — deletes it.
    """

    def __init__(self, db: Database, event_id: str, ttl_s: float, kind: str) -> None:
        self.db, self.event_id, self.ttl_s, self.kind = db, event_id, ttl_s, kind
        self.owner = uuid.uuid4().hex
        self.lost = False
        self._renewer: asyncio.Task[None] | None = None

    def _expiry(self) -> datetime:
        return now() + timedelta(seconds=self.ttl_s)

    async def try_acquire(self) -> bool:
        doc: RollupLeaseDoc = {
            "_id": self.event_id,
            "owner": self.owner,
            "kind": self.kind,
            "expiresAt": self._expiry(),
        }
        try:
            await self.db.rollup_leases.insert_one(doc)
            return True
        except DuplicateKeyError:
            taken = await self.db.rollup_leases.update_one(
                {"_id": self.event_id, "expiresAt": {"$lt": now()}},
                {"$set": {"owner": self.owner, "kind": self.kind, "expiresAt": doc["expiresAt"]}},
            )
            return taken.matched_count == 1

    async def acquire(self, poll_s: float = 0.2) -> None:
        """Wait for the lease: a holder finishes its bounded batch, or its lease expires."""
        waited = 0.0
        while not await self.try_acquire():
            if waited == 0.0:
                log.info("waiting for the rollup of event %s to finish", self.event_id)
            await asyncio.sleep(poll_s)
            waited += poll_s

    async def renew(self) -> None:
        """Extend the lease; raise LeaseLost when another worker holds it now."""
        if self.lost:
            raise LeaseLost(self.event_id)
        kept = await self.db.rollup_leases.update_one(
            {"_id": self.event_id, "owner": self.owner}, {"$set": {"expiresAt": self._expiry()}}
        )
        if kept.matched_count != 1:
            self.lost = True
            raise LeaseLost(self.event_id)

    async def _keep_renewed(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.renew()
            except LeaseLost:
                log.warning("lost the lease of event %s", self.event_id)
                return
            except UNAVAILABLE_ERRORS:
                continue  # the next write will tell; the lease lasts ttl_s meanwhile

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
        await self.db.rollup_leases.delete_one({"_id": self.event_id, "owner": self.owner})

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[EventLease]:
        """The lease, renewed in the background, released however the block ends."""
        self._renewer = asyncio.create_task(self._keep_renewed())
        try:
            yield self
        finally:
            # Also on CancelledError (a worker losing its broker cancels running tasks): the
            # delete is shielded so a second cancellation cannot skip it.
            await asyncio.shield(self.release())


# --- incremental rollups ----------------------------------------------------------------------


def _new_items(sessions: Iterable[str], batches: Iterable[_Batch]) -> dict[str, SessionState]:
    """Each session's users and their new items (unmerged); items of sessions deleted since
    have nothing to be folded into."""
    new: dict[str, SessionState] = {session_id: {} for session_id in sessions}
    for batch in batches:
        for item in batch.items:
            state = new.get(item.session_id)
            if state is None:
                continue
            user = state.get(item.user_id)
            if user is None:
                user = state[item.user_id] = UserState()
            if item.mode:
                user.add(item.mode, item.start_ms, item.end_ms)
            else:
                user.register(item.registered_at)
    return new


@dataclass(slots=True)
class BatchResult:
    sessions: int = 0
    items: int = 0
    more: bool = False  # input left over for another batch


@dataclass(slots=True)
class _Batch:
    """One request's inbox batch, read."""

    id: str
    items: list[QueuedItem]
    sessions: set[str]


async def _read_inbox(
    db: Database, settings: Settings, event_id: str, limit: int
) -> tuple[list[_Batch], bool]:
    """An event's inbox batches, whole, until they hold `limit` items (the first always, whatever
    its size); and whether more wait."""
    batches: list[_Batch] = []
    items = 0
    cursor = dates_as_ms(db.segment_inbox, settings).find({"eventId": event_id}).batch_size(INBOX_READ_DOCS)
    async for doc in cursor:
        count = doc.get("count", 1)
        if batches and items + count > limit:
            await cursor.close()
            return batches, True
        queued = batch_items(doc)
        batches.append(_Batch(doc["_id"], queued, {item.session_id for item in queued}))
        items += count
    return batches, False


def _take_whole_batches(
    flagged: list[str], inbox: list[_Batch], limit: int
) -> tuple[list[str], list[_Batch]]:
    """The sessions of one rollup batch: flagged ones first, then those of whole inbox batches
    (a batch is folded and consumed whole) up to `limit` sessions. The first inbox batch always
    fits, and so does a later one whose sessions are all chosen already, whatever came between:
    folding is order-free, so a backlog of requests that each span many sessions still folds
    every waiting item of the chosen sessions."""
    chosen = dict.fromkeys(flagged[:limit])
    taken: list[_Batch] = []
    for batch in inbox:
        added = batch.sessions - chosen.keys()
        if taken and added and len(chosen) + len(added) > limit:
            continue
        chosen.update(dict.fromkeys(sorted(added)))
        taken.append(batch)
    return list(chosen), taken


async def _rollup_batch(db: Database, settings: Settings, lease: EventLease) -> BatchResult:
    """Fold one bounded batch of an event's inbox (and its flagged sessions) into their numbers.

    Only what was read is consumed, by `_id`: a batch queued after the read waits for the next
    one. Ingestion queues items only after their permanent write finished, so every item read
    here is stored for good, and no settling delay is needed.
    """
    event_id = lease.event_id
    summary = await settled_summary(db, settings, event_id)  # what a rollup that died left pending
    # Independent round trips go out together: a batch waits for the slowest, not for their sum.
    (inbox, more_inbox), flagged = await asyncio.gather(
        _read_inbox(db, settings, event_id, settings.rollup_batch_items),
        db.sessions.find({"eventId": event_id, "rollupPending": True}, {"_id": 1})
        .limit(settings.rollup_batch_sessions + 1)  # one more: tells whether some are left
        .to_list(None),
    )
    flagged_ids = [doc["_id"] for doc in flagged]
    chosen, taken = _take_whole_batches(flagged_ids, inbox, settings.rollup_batch_sessions)
    more = more_inbox or len(taken) < len(inbox) or len(flagged_ids) > settings.rollup_batch_sessions
    if not chosen:
        return BatchResult(more=False)
    sessions, time_zone = await asyncio.gather(
        db.sessions.find({"_id": {"$in": chosen}}, _SESSION_FIELDS).to_list(None),
        event_time_zone(db, event_id),
    )
    writes, written, journal = await _fold(db, settings, lease, sessions, taken, time_zone, summary)
    await asyncio.gather(
        _clear_flags(db, settings, [w.session for w in writes if w.session["_id"] in written]),
        bump_analytics_version(db, [event_id] if written else []),
    )
    await analytics_written(db, settings, event_id, sorted(written), kind="rollup")
    # Last: a crash before this leaves the batches to be folded again, which changes nothing.
    await consume(db, settings, event_id, [batch.id for batch in taken])
    await journal.done(db)
    folded = sum(len(batch.items) for batch in taken)
    return BatchResult(len(written), folded, more)


async def _fold(
    db: Database,
    settings: Settings,
    lease: EventLease,
    sessions: list[SessionDoc],
    taken: list[_Batch],
    time_zone: str,
    summary: Mapping[str, Any] | None,
) -> tuple[list[SessionWrite], set[str], Journal]:
    """Fold the batches into these sessions and the event's audience, and write it all.

    Rows are read by `_id` for the users with new items only; a flagged session (its duration or
    video changed), each while a recompute rebuilds the event, and one whose live span outgrew
    its bucket are summed over all their rows. The writes are committed as one journal before
    any is applied (worker/journal.py).
    """
    rebuilding = bool(summary and summary.get("rebuilding"))
    new = _new_items([s["_id"] for s in sessions], taken)
    full = {s["_id"] for s in sessions if rebuilding or s.get("rollupPending")}
    # A session without totals has no rows yet (a rollup writes them together): nothing to read
    # for it — unless a recompute that died left rows ahead of their session's numbers.
    every_row = [
        s["_id"] for s in sessions if s["_id"] in full and (rebuilding or (s.get("totals") or {}).get("rows"))
    ]
    stored = await _read_rows(db, settings, every_row, new)
    first_rows = sorted({u for s, users in new.items() for u in users if u not in stored[s]})
    found = await identities_of(db, settings, lease.event_id, first_rows) if first_rows else {}
    identities = {user: found.get(user) for user in first_rows}  # None: looked up, none stored
    writes: list[SessionWrite] = []
    again: list[SessionDoc] = []
    for session in sessions:
        sid = session["_id"]
        write = fold_session(session, stored[sid], new[sid], identities, time_zone, full=sid in full)
        if write is None:
            again.append(session)
        else:
            writes.append(write)
    if again:  # a larger bucket for their live series: every row counted again
        more = await _read_rows(db, settings, [s["_id"] for s in again], {})
        for session in again:
            write = fold_session(
                session, more[session["_id"]], new[session["_id"]], identities, time_zone, full=True
            )
            writes.append(cast(SessionWrite, write))  # a full fold always fits its bucket
    journal = await _journal(db, settings, lease.event_id, writes, time_zone, identities, summary)
    await lease.renew()  # still ours: no other rollup or recompute writes these sessions
    await journal.commit(db, settings)
    return writes, await _write_rows_and_sessions(db, settings, journal, writes), journal


async def _journal(
    db: Database,
    settings: Settings,
    event_id: str,
    writes: list[SessionWrite],
    time_zone: str,
    identities: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
) -> Journal:
    """Every write of one fold: rows, sessions, people, edges, and the summary's new fields
    (left alone while a recompute rebuilds them)."""
    changes: dict[str, dict[str, tuple[RowView | None, RowView]]] = defaultdict(dict)
    for write in writes:
        for user_id, views in write.changed.items():
            changes[user_id][write.session["_id"]] = views
    rebuilding = bool(summary and summary.get("rebuilding"))
    people = await plan_people(
        db, settings, event_id, time_zone, {} if rebuilding else changes, identities, summary
    )
    scopes = {
        w.session["_id"]: EdgeScope(
            session_scope(event_id, w.session["_id"]), w.viewers.chunks, w.edges, w.full
        )
        for w in writes
    }
    everything = (
        [*scopes.values()]
        if rebuilding
        else [*scopes.values(), EdgeScope(event_id, people.summary.parts, people.edges)]
    )
    edges = await edge_ops(db, settings, event_id, everything)
    at = now()
    ops = [row for w in writes for row in w.rows]
    for w in writes:
        fields = w.fields(time_zone, peak(w.viewers.chunks), at)
        ops.append(op("sessions", w.session["_id"], fields, upsert=False))
    ops += people.ops + edges
    return Journal(event_id, ops, None if rebuilding else summary_doc(event_id, people.summary))


@dataclass(slots=True)
class RollupResult:
    sessions: int = 0
    items: int = 0
    busy: bool = False  # another rollup or a recompute holds the event
    more: bool = False  # the time budget ran out with input left: run again

    def as_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "items": self.items, "busy": self.busy, "more": self.more}


async def rollup_event(db: Database, settings: Settings, event_id: str) -> RollupResult:
    """Fold an event's new input in bounded batches, under its lease, for at most
    `rollup_task_budget_s`; `more` says input is waiting for another run.

    When another worker holds the event, this returns at once (busy): the holder looks at the
    inbox again after it let the lease go, so nothing queued meanwhile is left waiting.
    """
    result = RollupResult()
    deadline = time.monotonic() + settings.rollup_task_budget_s
    lease = EventLease(db, event_id, settings.rollup_lease_s, "rollup")
    if not await lease.try_acquire():
        log.info(
            "event %s is held by another rollup or a recompute; its holder folds in what waits",
            event_id,
        )
        result.busy = True
        return result
    async with lease.held():
        while True:
            batch = await _rollup_batch(db, settings, lease)
            result.sessions += batch.sessions
            result.items += batch.items
            if not batch.more:
                break
            if time.monotonic() >= deadline:
                result.more = True
                return result
    # Input queued while the lease was held may have been signalled to a worker that found the
    # event busy and left it: say so, and the caller sends another rollup (behind other events).
    result.more = await db.segment_inbox.find_one({"eventId": event_id}, {"_id": 1}) is not None
    return result


async def events_with_work(db: Database, limit: int = TICK_SCAN_ITEMS) -> list[str]:
    """Events with input waiting: those of the oldest inbox batches, and of flagged sessions.

    The beat tick's safety net for signals that never reached a worker; both reads are bounded
    and index-served, so a tick costs the same however large the backlog.
    """
    oldest = await (
        db.segment_inbox.find({"receivedAt": {"$lte": now()}}, {"eventId": 1})
        .sort("receivedAt", 1)
        .limit(limit)
        .to_list(None)
    )
    flagged = await db.sessions.find({"rollupPending": True}, {"eventId": 1}).limit(limit).to_list(None)
    return sorted({doc["eventId"] for doc in oldest} | {doc["eventId"] for doc in flagged})


async def sessions_with_work(db: Database) -> list[str]:
    """Every session with input waiting (reads the whole inbox: for tests and operators)."""
    queued = await db.segment_inbox.find({"receivedAt": {"$lte": now()}}).to_list(None)
    flagged = await db.sessions.find({"rollupPending": True}, {"_id": 1}).to_list(None)
    waiting = {item.session_id for batch in queued for item in batch_items(batch)}
    return sorted(waiting | {doc["_id"] for doc in flagged})


async def rollup_pending(db: Database, settings: Settings, max_rounds: int = 20) -> dict[str, int]:
    """Roll up every event with input waiting, in this process (the demo, tests, benchmarks).

    Events held by a recompute or another worker are left to their holder; `busyEvents` counts
    them. Returns once no web process can still show numbers older than these (see
    _settle_caches).
    """
    sessions = items = 0
    busy: set[str] = set()
    await settle_intents(db, settings)
    for _ in range(max_rounds):
        events = [e for e in await events_with_work(db) if e not in busy]
        if not events:
            break
        for event_id in events:
            result = await rollup_event(db, settings, event_id)  # `more`: the next round
            sessions += result.sessions
            items += result.items
            if result.busy:
                busy.add(event_id)
    if sessions:
        log.info("rolled up sessions", extra={"sessions": sessions, "items": items})
        await _settle_caches(settings)
    return {"sessions": sessions, "items": items, "busyEvents": len(busy)}


async def _settle_caches(settings: Settings) -> None:
    """A rollup is finished only once no web process can still hold an event document read
    before it published its numbers (see web/cache.py)."""
    await asyncio.sleep(settings.host_cache_ttl_s)


# --- full recompute ---------------------------------------------------------------------------


DurationSync = Callable[[Database, Settings, str], Awaitable[dict[str, Any]]]


async def _prefetched(cursor: AgnosticBaseCursor[D], batch: int) -> AsyncIterator[list[D]]:
    """Batches of a cursor, the next one already being fetched while the caller works."""
    pending = asyncio.ensure_future(cursor.to_list(length=batch))
    while docs := await pending:
        pending = asyncio.ensure_future(cursor.to_list(length=batch))
        yield docs


async def _event_state(db: Database, settings: Settings, event_id: str) -> dict[str, SessionState]:
    """Every session's users and raw intervals, from one pass over the event's attendance."""
    states: dict[str, SessionState] = defaultdict(dict)
    batch = settings.segment_read_batch
    segments = dates_as_ms(db.watch_segments, settings)  # a million datetimes never built
    cursor = segments.find(
        {"eventId": event_id}, {"_id": 0, "sessionId": 1, "userId": 1, "mode": 1, "start": 1, "end": 1}
    ).batch_size(batch)
    async for docs in _prefetched(cursor, batch):
        for seg in docs:
            session = states[seg["sessionId"]]
            user = session.get(seg["userId"])
            if user is None:
                user = session[seg["userId"]] = UserState()
            user.add(seg["mode"], epoch_ms(seg["start"]), epoch_ms(seg["end"]))
    registrations = db.registrations.find(
        {"eventId": event_id}, {"_id": 0, "sessionId": 1, "userId": 1, "registeredAt": 1}
    ).batch_size(batch)
    while regs := await registrations.to_list(length=batch):
        for reg in regs:
            states[reg["sessionId"]].setdefault(reg["userId"], UserState()).register(reg["registeredAt"])
    return states


class _Progress:
    """Task progress, written at most twice a second (each write is a database round trip),
    only while this run holds the task."""

    def __init__(self, db: Database, task_id: str, run_id: str, total: int) -> None:
        self.db, self.task_id, self.run_id, self.total, self._last = db, task_id, run_id, total, 0.0

    async def report(self, done: int, *, force: bool = False, **fields: object) -> bool:
        """False when this run no longer holds the task (nothing written)."""
        if force or time.monotonic() - self._last >= 0.5:
            self._last = time.monotonic()  # before the write: concurrent callers skip theirs
            progress = {"done": done, "total": self.total}
            return await update_task(self.db, self.task_id, self.run_id, progress=progress, **fields)
        return True


async def recompute_event(
    db: Database,
    settings: Settings,
    task_id: str,
    event_id: str,
    sync_durations: DurationSync | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Duration sync, then every session of one event rebuilt from its stored attendance.

    `run_id`: the run that took the task (shared/jobs.begin_recompute); without one, this call
    takes the unfinished task itself. Every write of the task's state is this run's only.
    """
    task = await db.tasks.find_one({"_id": task_id})
    if task is not None and task["state"] in TERMINAL:
        return task.get("result") or {}  # a redelivered message for a finished job
    if run_id is None:
        run_id = uuid.uuid4().hex
        await take_task(db, task_id, run_id)
    # The event's attendance is millions of small objects without reference cycles; the cyclic
    # collector would traverse all of them again and again while they are built and used.
    collecting = gc.isenabled()
    gc.disable()
    try:
        result = await _recompute_event(db, settings, task_id, run_id, event_id, sync_durations)
    finally:
        if collecting:
            gc.enable()
    # Input queued while the recompute held the event, and not read by it, is folded in now.
    await rollup_event(db, settings, event_id)
    return result


async def _recompute_event(
    db: Database,
    settings: Settings,
    task_id: str,
    run_id: str,
    event_id: str,
    sync_durations: DurationSync | None,
) -> dict[str, Any]:
    try:
        total = await db.sessions.count_documents({"eventId": event_id}) + 2
        progress = _Progress(db, task_id, run_id, total)
        await progress.report(0, force=True, state=STARTED)
        lease = EventLease(db, event_id, settings.rollup_lease_s, "recompute")
        await lease.acquire()  # a rollup already writing this event finishes its batch first
        async with lease.held():
            result = await _rebuild_event(db, settings, lease, progress, sync_durations)
        if await progress.report(progress.total, force=True, state=SUCCESS, result=result):
            await release_recompute(db, event_id, task_id)
        return result
    except Exception as err:
        if not isinstance(err, UNAVAILABLE_ERRORS):
            # Only the run holding the task fails it: a late error of a run that was taken over
            # never overwrites the answer another worker already finished.
            if await fail_task(db, task_id, f"{type(err).__name__}: {err}", run_id=run_id):
                await release_recompute(db, event_id, task_id)
        raise


async def _rebuild_event(
    db: Database,
    settings: Settings,
    lease: EventLease,
    progress: _Progress,
    sync_durations: DurationSync | None,
) -> dict[str, Any]:
    event_id = lease.event_id
    durations: dict[str, Any] = {}
    if sync_durations is not None:
        durations = await sync_durations(db, settings, event_id)
    await progress.report(1, force=True)
    # The inbox batches present now are stored in the permanent collections already (ingestion
    # queues after storing), so the pass below includes them: exactly these are consumed.
    queued = await db.segment_inbox.find({"eventId": event_id}, {"_id": 1}).to_list(None)
    sessions = await db.sessions.find({"eventId": event_id}, _SESSION_FIELDS).sort("_id", 1).to_list(None)
    progress.total = len(sessions) + 2
    states = await _event_state(db, settings, event_id)
    users = sorted({user for state in states.values() for user in state})
    identities = await identities_of(db, settings, event_id, users)
    time_zone = await event_time_zone(db, event_id)
    await start_rebuild(db, event_id)
    views: dict[str, list[RowView]] = defaultdict(list)  # every row's part in its person
    await progress.report(2, force=True)
    # Every row is written whole (a recompute also mends a row a fault left wrong), then its
    # session's numbers: WRITE_BATCH rows or so per write, the next chunk built while one is sent.
    done = 0
    writing: asyncio.Future[set[str]] = asyncio.ensure_future(_write_chunk(db, settings, [], time_zone))
    chunk: list[SessionWrite] = []
    rows = 0
    try:
        for n, session in enumerate(sessions):
            state = states.pop(session["_id"], {})
            write = fold_session(session, {}, state, identities, time_zone, full=True, replace=True)
            assert write is not None  # a full fold always fits its bucket
            for user_id, (_, view) in write.changed.items():
                views[user_id].append(view)
            chunk.append(write)
            rows += len(write.rows)
            if rows < settings.write_batch and n < len(sessions) - 1:
                continue
            await writing
            await progress.report(2 + done)
            await lease.renew()  # nobody else wrote these sessions since they were read
            writing = asyncio.ensure_future(_write_chunk(db, settings, chunk, time_zone))
            done += len(chunk)
            chunk, rows = [], 0
        await writing
    finally:
        writing.cancel()  # only when something failed
    await progress.report(2 + done)
    await lease.renew()
    await rebuild_audience(db, settings, event_id, time_zone, views, identities)
    ids = [doc["_id"] for doc in queued]
    await consume(db, settings, event_id, ids)
    await bump_analytics_version(db, [event_id])
    await analytics_written(db, settings, event_id, [doc["_id"] for doc in sessions], kind="recompute")
    await _settle_caches(settings)
    return {"sessions": len(sessions), "durations": durations}


async def _write_chunk(
    db: Database, settings: Settings, chunk: list[SessionWrite], time_zone: str
) -> set[str]:
    """A recompute's writes of some sessions: their rows, their edges, their numbers (no journal:
    a recompute that dies is run again, and writes everything again)."""
    if not chunk:
        return set()
    at = now()
    edges: list[Any] = []
    ops = [row for w in chunk for row in w.rows]
    for w in chunk:
        scope = EdgeScope(
            session_scope(w.session["eventId"], w.session["_id"]), w.viewers.chunks, w.edges, True
        )
        edges += full_edge_docs(w.session["eventId"], scope)
        ops.append(
            op("sessions", w.session["_id"], w.fields(time_zone, peak(w.viewers.chunks), at), upsert=False)
        )
    await bulk_write(settings, db.audience_edges, edges)
    journal = Journal(chunk[0].session["eventId"], ops, None)
    written = await _write_rows_and_sessions(db, settings, journal, chunk)
    await _clear_flags(db, settings, [w.session for w in chunk if w.session["_id"] in written])
    return written
