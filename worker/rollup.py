"""Rollups: fold watch segments and registrations into per-session numbers (DESIGN §4).

Storage, and why each piece exists (MongoDB would need each of them too):

- `segment_inbox`: a copy of every stored item not yet folded in, one batch per ingestion
  request, written *after* its permanent documents, so the permanent collections stay
  insert-only and a rollup reads only new input; an item is in the inbox only once it is
  stored for good, so nothing unstored is ever counted.
  (Ingestion's intents, `segment_intents`, make its answers true: shared/inbox.py.)
- `session_watch`: a session's per-user interval unions, read only by rollups and recomputes
  (one at a time per event, under the lease) and overwritten in place. Unions only grow, so a
  union written by a worker that died before its switch holds nothing that folding the inbox
  batches it left again would not add: no generations, no garbage.
- `session_attendees`: a session's attendee pages (read by the API), written as a new
  *generation* and switched to by one update of the session document (`rollupGen`), so a
  reader never sees half a session and a worker killed mid-write leaves the previous one in force.
- `rollup_garbage`: replaced attendee pages, deleted by the hourly cleanup once no request can
  still be reading them (a request reads the session, then its pages).
- `rollup_leases`: one lease per event, held by the rollup or recompute writing its sessions;
  it expires unless renewed, so a dead worker holds an event for at most `ROLLUP_LEASE_S`.
- `rollupPending` / `rollupVersion` on sessions: a duration or video change flags its session
  in the same write that makes it; the version tells a rollup whether a change came meanwhile.

A rollup of one event reads a bounded batch of its inbox, the affected sessions and their
unions in bulk, and writes the unions, the new attendee pages, the switches and the consumed
inbox batches in bulk, independent round trips together: its round trips per batch do not
depend on how many sessions the batch touches. Merging is idempotent: an interrupted rollup
run again gives the same document. A full recompute rebuilds the unions from the permanent
collections in one pass over the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from bson.codec_options import DatetimeConversion
from motor.core import AgnosticBaseCursor
from pymongo import ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.blobs import pack, unpack
from shared.db import UNAVAILABLE_ERRORS, Collection, Database
from shared.documents import (
    AttendeeChunkDoc,
    RollupGarbageDoc,
    RollupLeaseDoc,
    SessionDoc,
    SessionWatchDoc,
)
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
    encode_attendee_rows,
    epoch_ms,
    from_epoch_ms,
    now,
    numbers_fields,
    session_duration,
)
from shared.viewers import UserIntervals, pack_summary, viewers_summary

log = logging.getLogger(__name__)
D = TypeVar("D", bound=Mapping[str, Any])  # a collection's document type

RECOMPUTE_SWITCH_CHUNK = 25  # sessions switched per bulk write of a recompute (progress steps)
TICK_SCAN_ITEMS = 1000  # oldest inbox batches a beat tick looks at to find events with work
INBOX_READ_DOCS = 500  # inbox batches a rollup reads per round trip (each up to MAX_ITEMS items)
STATE_DOC_ENTRIES = 100_000  # users + intervals per state document: a few MB, far from 16 MB
_SESSION_FIELDS = {
    "_id": 1,
    "rollupPending": 1,
    "eventId": 1,
    "startTime": 1,  # the viewers series' buckets are aligned on it (rule 9)
    "streamProvider": 1,
    "format": 1,
    "duration": 1,
    "rollupVersion": 1,
    "rollupGen": 1,
    "stateDocs": 1,
    "attendeeChunks": 1,
}


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


def _decode_state(docs: Iterable[SessionWatchDoc]) -> SessionState:
    state: SessionState = {}
    for doc in docs:
        for user_id, registered_ms, live, recording in unpack(doc["data"]):
            # A user in two documents (an older copy left by a rollup that died, or the earlier
            # per-generation layout) keeps both: the caller merges the intervals.
            user = state.setdefault(user_id, UserState())
            user.live += zip(live[::2], live[1::2], strict=True)
            user.recording += zip(recording[::2], recording[1::2], strict=True)
            if registered_ms is not None:
                user.register(from_epoch_ms(registered_ms))
    return state


def _state_id(session_id: str, part: int) -> str:
    """A session's unions are overwritten in place: one `_id` per part, whatever the rollup."""
    return f"{session_id}:s{part:04d}"


def _generation_ids(session: SessionDoc) -> tuple[list[str], list[str]]:
    """`_id`s of the unions (before they were kept in place) and attendee pages of the generation
    a session points to."""
    gen = session.get("rollupGen")
    if not gen:  # never rolled up
        return [], []
    return (
        [f"{session['_id']}:{gen}:s{n:04d}" for n in range(int(session.get("stateDocs") or 0))],
        [attendee_chunk_id(session["_id"], gen, n) for n in range(int(session.get("attendeeChunks") or 0))],
    )


def _encode_state(session: SessionDoc, state: SessionState) -> Iterator[SessionWatchDoc]:
    """The unions as one compressed blob per document: read and written whole, never queried by
    field, so a blob is far cheaper to store and load than arrays of values."""
    entries: list[list[object]] = []
    size = 0
    part = 0

    def document() -> SessionWatchDoc:
        return {
            "_id": _state_id(session["_id"], part),
            "sessionId": session["_id"],
            "eventId": session["eventId"],
            "part": part,
            "data": pack(entries),
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


def _numbers(session: SessionDoc, state: SessionState) -> SessionNumbers:
    provider = session.get("streamProvider")
    duration = session_duration(session)  # rule 8, as the API shows it
    watches = [user.watch(user_id) for user_id, user in state.items()]
    registrations = {u: s.registered_at for u, s in state.items() if s.registered_at is not None}
    return session_numbers(watches, registrations, duration, provider)


def session_viewers(session: SessionDoc, state: SessionState, time_zone: str) -> dict[str, Any]:
    """Rule 9's series from the merged unions, stored with the numbers (`viewers` on the session)."""
    start = session.get("startTime")
    # The unions hold whole milliseconds (epoch_ms), as viewers_summary takes them.
    live = {user_id: user.live for user_id, user in state.items() if user.live}
    recording = {user_id: user.recording for user_id, user in state.items() if user.recording}
    start_ms = 0 if start is None else epoch_ms(start)
    return viewers_summary(start_ms, cast(UserIntervals, live), cast(UserIntervals, recording), time_zone)


async def event_time_zone(db: Database, event_id: str) -> str:
    """The event's IANA zone (recording viewers are counted per date in it)."""
    event = await db.events.find_one({"_id": event_id}, {"timezone": 1})
    return (event.get("timezone") if event else None) or "UTC"


@dataclass(slots=True)
class Generation:
    """The documents of one session's next generation, and the fields that switch to it."""

    session: SessionDoc
    gen: str
    state_docs: list[SessionWatchDoc]
    attendee_docs: list[AttendeeChunkDoc]
    fields: dict[str, object]


def build_generation(
    settings: Settings, session: SessionDoc, gen: str, state: SessionState, time_zone: str = "UTC"
) -> Generation:
    numbers = _numbers(session, state)
    rows, size = numbers.attendee_rows, settings.attendee_chunk_rows
    attendee_docs: list[AttendeeChunkDoc] = [
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
    state_docs = list(_encode_state(session, state))
    fields = {
        **numbers_fields(numbers),
        "attendeeChunkRows": size,
        "attendeeChunks": len(attendee_docs),
        "stateDocs": 0,  # the unions are kept in place (see _state_id), not per generation
        "rollupGen": gen,
        "analyticsUpdatedAt": now(),
        "viewers": pack_summary(session_viewers(session, state, time_zone)),
    }
    return Generation(session, gen, state_docs, attendee_docs, fields)


# --- writing generations ----------------------------------------------------------------------


async def _insert(collection: Collection[D], docs: list[D]) -> None:
    """One insert command (the driver splits it only past the server's batch or message limit)."""
    if docs:
        await collection.insert_many(docs, ordered=False)


_STATEMENT_LIMITS: dict[int, int | None] = {}
# FerretDB never answers 100 or more; at 99 a switch under load (each statement tens of ms there,
# serialised) outlasted the driver's 10 s socket timeout, so its pieces are 25.
FERRETDB_UPDATE_STATEMENTS = 25


async def _statements_per_update(db: Database) -> int | None:
    """How many statements one update command may carry on this server; None: no limit of ours.

    MongoDB takes 100,000 (the driver splits beyond). FerretDB 1.24, the test server, never
    answers an update command of 100 or more statements, and takes tens of milliseconds for each
    one under load, so there the bulk is cut in pieces that stay well inside the socket timeout.
    """
    key = id(db.client)
    if key not in _STATEMENT_LIMITS:
        info = await db.db.command("buildInfo")
        _STATEMENT_LIMITS[key] = FERRETDB_UPDATE_STATEMENTS if "ferretdbVersion" in info else None
    return _STATEMENT_LIMITS[key]


async def _update_each(
    db: Database,
    settings: Settings,
    collection: Collection[Any],
    ops: Sequence[UpdateOne | UpdateMany | ReplaceOne[Any]],
) -> int:
    """Updates as one bulk write; the number of documents matched. The embedded store
    (mongomock) rejects the bulk updates pymongo 4.10+ sends, so there they go one by one."""
    if not ops:
        return 0
    matched = 0
    if settings.embedded:
        for op in ops:
            if isinstance(op, ReplaceOne):
                done = await collection.replace_one(op._filter, op._doc, upsert=bool(op._upsert))
            elif isinstance(op, UpdateOne):
                done = await collection.update_one(op._filter, op._doc)
            else:
                done = await collection.update_many(op._filter, op._doc)
            matched += done.matched_count
        return matched
    step = await _statements_per_update(db) or len(ops)
    for start in range(0, len(ops), step):
        result = await collection.bulk_write(list(ops[start : start + step]), ordered=False)
        matched += int(result.matched_count)
    return matched


async def _store_states(db: Database, settings: Settings, docs: list[SessionWatchDoc]) -> None:
    """Overwrite sessions' unions in place, by `_id`, in one bulk write. Only rollups and
    recomputes read them, one at a time per event (the lease); unions only grow, so a union
    written by a rollup that then died holds nothing the inbox does not bring again."""
    await _update_each(
        db, settings, db.session_watch, [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs]
    )


async def _discard(db: Database, collection: str, ids: Iterable[str]) -> None:
    """Record documents no session points to any more, for cleanup_garbage to delete."""
    stamp = now()
    docs: list[RollupGarbageDoc] = [
        {"_id": f"{collection}|{i}", "collection": collection, "docId": i, "at": stamp} for i in ids
    ]
    try:
        await _insert(db.rollup_garbage, docs)
    except BulkWriteError as err:
        if any(e.get("code") != 11000 for e in err.details.get("writeErrors", [])):
            raise


async def _discard_generations(db: Database, sessions: Iterable[SessionDoc]) -> None:
    """The generations these session documents point to (replaced ones, or never switched to)."""
    state_ids: list[str] = []
    attendee_ids: list[str] = []
    for session in sessions:
        s_ids, a_ids = _generation_ids(session)
        state_ids += s_ids
        attendee_ids += a_ids
    await _discard(db, "session_watch", state_ids)
    await _discard(db, "session_attendees", attendee_ids)


def _pointing_to(generation: Generation) -> SessionDoc:
    """The session document as it would be once switched to `generation` (for _generation_ids)."""
    return {
        "_id": generation.session["_id"],
        "rollupGen": generation.gen,
        "attendeeChunks": len(generation.attendee_docs),
    }


async def cleanup_garbage(db: Database, older_than_s: int = 600) -> int:
    """Delete replaced generations once no reader can still be in the middle of one."""
    garbage = await db.rollup_garbage.find({"at": {"$lte": now() - timedelta(seconds=older_than_s)}}).to_list(
        None
    )
    by_collection: dict[str, list[str]] = defaultdict(list)
    for doc in garbage:
        by_collection[doc["collection"]].append(doc["docId"])
    for collection, ids in by_collection.items():
        for i in range(0, len(ids), 10_000):
            await db[collection].delete_many({"_id": {"$in": ids[i : i + 10_000]}})
    for i in range(0, len(garbage), 10_000):
        await db.rollup_garbage.delete_many({"_id": {"$in": [d["_id"] for d in garbage[i : i + 10_000]]}})
    return len(garbage)


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


def _apply_inbox(states: Mapping[str, SessionState], items: Iterable[QueuedItem]) -> None:
    """Fold items into the states of their sessions; those without one are skipped."""
    for item in items:
        state = states.get(item.session_id)
        if state is None:
            continue
        user = state.setdefault(item.user_id, UserState())
        if item.mode:
            user.add(item.mode, item.start_ms, item.end_ms)
        else:
            user.register(item.registered_at)


async def _load_states(db: Database, sessions: list[SessionDoc]) -> tuple[dict[str, SessionState], list[str]]:
    """The stored unions of many sessions, in one query, and the `_id`s of the documents read.

    Every document of a session counts, whatever its part number or age: unions only grow, so
    one left from an earlier rollup holds nothing the newer ones lack, and merging it changes
    nothing.
    """
    by_session: dict[str, list[SessionWatchDoc]] = defaultdict(list)
    ids = [s["_id"] for s in sessions]
    docs = await db.session_watch.find({"sessionId": {"$in": ids}}).to_list(None) if ids else []
    for doc in docs:
        by_session[doc.get("sessionId", "")].append(doc)
    states = {s["_id"]: _decode_state(by_session.get(s["_id"], ())) for s in sessions}
    return states, [doc["_id"] for doc in docs]


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
    await _update_each(db, settings, db.sessions, ops)


@dataclass(slots=True)
class BatchResult:
    sessions: int = 0
    items: int = 0
    more: bool = False  # input left over for another batch


@dataclass(slots=True)
class _Batch:
    """One request's inbox batch, decoded."""

    id: str
    items: list[QueuedItem]
    sessions: set[str]


async def _read_inbox(db: Database, event_id: str, limit: int) -> tuple[list[_Batch], bool]:
    """An event's inbox batches, whole, until they hold `limit` items (the first always, whatever
    its size); and whether more wait."""
    batches: list[_Batch] = []
    items = 0
    cursor = db.segment_inbox.find({"eventId": event_id}).batch_size(INBOX_READ_DOCS)
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
    # Independent round trips go out together: a batch waits for the slowest, not for their sum.
    (inbox, more_inbox), flagged = await asyncio.gather(
        _read_inbox(db, event_id, settings.rollup_batch_items),
        db.sessions.find({"eventId": event_id, "rollupPending": True}, {"_id": 1})
        .limit(settings.rollup_batch_sessions + 1)  # one more: tells whether some are left
        .to_list(None),
    )
    flagged_ids = [doc["_id"] for doc in flagged]
    chosen, taken = _take_whole_batches(flagged_ids, inbox, settings.rollup_batch_sessions)
    more = more_inbox or len(taken) < len(inbox) or len(flagged_ids) > settings.rollup_batch_sessions
    if not chosen:
        return BatchResult(more=False)
    sessions = await (
        db.sessions.find({"_id": {"$in": chosen}}, _SESSION_FIELDS).batch_size(len(chosen)).to_list(None)
    )
    found = {s["_id"] for s in sessions}
    (states, stored), time_zone = await asyncio.gather(
        _load_states(db, sessions), event_time_zone(db, event_id)
    )
    for batch in taken:  # items of sessions deleted since have nothing to be folded into
        _apply_inbox(states, batch.items)

    gen = uuid.uuid4().hex[:12]
    generations = []
    for session in sessions:
        merged = {user_id: user.merged() for user_id, user in states[session["_id"]].items()}
        generations.append(build_generation(settings, session, gen, merged, time_zone))

    await lease.renew()  # still ours: no other rollup or recompute writes these sessions
    state_docs = [d for g in generations for d in g.state_docs]
    await asyncio.gather(
        _store_states(db, settings, state_docs),
        _insert(db.session_attendees, [d for g in generations for d in g.attendee_docs]),
    )
    # The lease makes this worker the only writer of these sessions' generations: a switch is
    # a plain update by `_id`.
    switches = [UpdateOne({"_id": g.session["_id"]}, {"$set": g.fields}) for g in generations]
    matched = await _update_each(db, settings, db.sessions, switches)
    written, lost = generations, []
    if matched != len(generations):  # sessions deleted meanwhile
        now_at = await db.sessions.find({"_id": {"$in": list(found)}}, {"rollupGen": 1}).to_list(None)
        switched = {d["_id"] for d in now_at if d.get("rollupGen") == gen}
        written = [g for g in generations if g.session["_id"] in switched]
        lost = [g for g in generations if g.session["_id"] not in switched]
    # Union documents read but not rewritten (a session's unions now take fewer parts, or were
    # stored per generation before): their content is in the ones just written.
    current = {d["_id"] for d in state_docs}
    outdated = [i for i in stored if i not in current]
    await asyncio.gather(
        _clear_flags(db, settings, [g.session for g in written]),
        _discard_generations(db, [g.session for g in written] + [_pointing_to(g) for g in lost]),
        bump_analytics_version(db, [event_id] if written else []),
        db.session_watch.delete_many({"_id": {"$in": outdated}}) if outdated else asyncio.sleep(0),
    )
    # Last: a crash before this leaves the batches to be folded again, which changes nothing. A
    # batch is done once none of its sessions was lost to a deletion during the switch (those
    # are folded again next time, and found deleted then).
    unswitched = {g.session["_id"] for g in lost}
    consumed = [batch for batch in taken if not batch.sessions & unswitched]
    if consumed:
        await consume(db, event_id, [batch.id for batch in consumed])
    folded = sum(len(batch.items) for batch in consumed)
    return BatchResult(len(written), folded, more or bool(lost))


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
    segments = db.watch_segments
    if not settings.embedded:
        # Times as milliseconds straight from BSON: a million datetimes are never built, only
        # to be turned back into numbers.
        segments = segments.with_options(
            codec_options=segments.codec_options.with_options(
                datetime_conversion=DatetimeConversion.DATETIME_MS
            )
        )
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


async def _write_generations(db: Database, settings: Settings, generations: list[Generation]) -> None:
    """The unions and attendee pages of many sessions' new generations, one bulk write each;
    then only the switch fields are kept."""
    await asyncio.gather(
        _store_states(db, settings, [d for g in generations for d in g.state_docs]),
        _insert(db.session_attendees, [d for g in generations for d in g.attendee_docs]),
    )
    for generation in generations:
        generation.state_docs, generation.attendee_docs = [], []


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
    time_zone = await event_time_zone(db, event_id)
    await progress.report(2, force=True)
    gen = uuid.uuid4().hex[:12]
    # All new documents first, then the switches: a reader sees either generation, whole. They
    # go out RECOMPUTE_SWITCH_CHUNK sessions per write, the next chunk built while one is sent.
    generations: list[Generation] = []
    writing: asyncio.Future[None] = asyncio.ensure_future(asyncio.sleep(0))
    try:
        for start in range(0, len(sessions), RECOMPUTE_SWITCH_CHUNK):
            chunk = []
            for session in sessions[start : start + RECOMPUTE_SWITCH_CHUNK]:
                state = {user_id: user.merged() for user_id, user in states.pop(session["_id"], {}).items()}
                chunk.append(build_generation(settings, session, gen, state, time_zone))
            await writing
            writing = asyncio.ensure_future(_write_generations(db, settings, chunk))
            generations += chunk
        await writing
    finally:
        writing.cancel()  # only when something failed: nothing is switched then
    switched = 0
    for start in range(0, len(generations), RECOMPUTE_SWITCH_CHUNK):
        chunk = generations[start : start + RECOMPUTE_SWITCH_CHUNK]
        await lease.renew()  # nobody else wrote these sessions since they were read
        await _update_each(
            db,
            settings,
            db.sessions,
            [UpdateOne({"_id": g.session["_id"]}, {"$set": g.fields}) for g in chunk],
        )
        await _clear_flags(db, settings, [g.session for g in chunk])
        await _discard_generations(db, [g.session for g in chunk])
        switched += len(chunk)
        await progress.report(2 + switched)
    ids = [doc["_id"] for doc in queued]
    for i in range(0, len(ids), 10_000):
        await consume(db, event_id, ids[i : i + 10_000])
    await bump_analytics_version(db, [event_id])
    await _settle_caches(settings)
    return {"sessions": len(sessions), "durations": durations}
