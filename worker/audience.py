"""A rollup's part in the event's audience (shared/audience.py), and a recompute's rebuild of it.

A rollup that wrote some attendee rows recomputes the people of those users from their rows
(read by `_id`), moves each person's old contribution out of the event summary and the new one
in, and changes the LIVE edges of the chunks their unions' ends fall in: every read and write is
by `_id` and follows the users with new attendance, whatever the size of the event. Its writes
land with the rollup's others, all or none (worker/journal.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ReplaceOne

from shared.attendees import identity_fields
from shared.audience import (
    Chunk,
    Person,
    RowView,
    Summary,
    add_edges,
    chunks_of,
    edge_changes,
    edges_id,
    moved,
    person_id,
    person_of,
)
from shared.db import Database, bulk_write, dates_as_ms
from shared.identities import identities_of
from shared.settings import Settings
from shared.store import epoch_ms, from_epoch_ms, now
from worker.journal import clear_pending, insert, op

JOURNAL_PART_BYTES = 4 * 1024 * 1024  # pending writes inline up to this, well under 16 MB
_PERSON_FIELDS = {
    "_id": 0,
    "userId": 1,
    "sessionRows": 1,
    "sessionsRegistered": 1,
    "sessionsAttended": 1,
    "attendedSeconds": 1,
    "liveSeconds": 1,
    "recordingSeconds": 1,
    "firstJoinedAt": 1,
    "lastLeftAt": 1,
    "live": 1,
    "days": 1,
    "completionSum": 1,
    "completionSessions": 1,
}
# userId → sessionId → (the row as it was, None when new; the row about to be written)
Changes = Mapping[str, Mapping[str, tuple[RowView | None, RowView]]]


def _ms_or_none(moment: Any) -> int | None:
    return None if moment is None else epoch_ms(moment)


def _seconds_ms(seconds: float | None) -> int:
    return round((seconds or 0) * 1000)


def person_from_doc(doc: Mapping[str, Any] | None) -> Person:
    """The contribution a stored person made (dates read as datetimes or milliseconds)."""
    if not doc:
        return Person()
    return Person(
        rows=int(doc.get("sessionRows") or 0),
        registered=doc.get("sessionsRegistered", 0),
        attended_sessions=doc.get("sessionsAttended", 0),
        attended_ms=_seconds_ms(doc.get("attendedSeconds")),
        live_ms=_seconds_ms(doc.get("liveSeconds")),
        recording_ms=_seconds_ms(doc.get("recordingSeconds")),
        first=_ms_or_none(doc.get("firstJoinedAt")),
        last=_ms_or_none(doc.get("lastLeftAt")),
        live=[(epoch_ms(s), epoch_ms(e)) for s, e in doc.get("live") or ()],
        days=list(doc.get("days") or ()),
        completion_sum=float(doc.get("completionSum") or 0.0),
        completion_count=int(doc.get("completionSessions") or 0),
    )


def _date(ms: int | None) -> datetime | None:
    return None if ms is None else from_epoch_ms(ms)


def person_fields(event_id: str, user_id: str, person: Person) -> dict[str, Any]:
    """The `people` document's fields other than the identity copies."""
    return {
        "eventId": event_id,
        "userId": user_id,
        "sessionRows": person.rows,
        "sessionsRegistered": person.registered,
        "sessionsAttended": person.attended_sessions,
        "attended": person.attendee,
        "noShow": person.registrant and not person.attendee,
        "attendedSeconds": person.attended_ms / 1000,
        "liveSeconds": person.live_ms / 1000,
        "recordingSeconds": person.recording_ms / 1000,
        "firstJoinedAt": _date(person.first),
        "lastLeftAt": _date(person.last),
        "completion": person.completion,
        # What the mean is of, so a changed session moves its part out and in again.
        "completionSum": person.completion_sum,
        "completionSessions": person.completion_count,
        "live": [[from_epoch_ms(s), from_epoch_ms(e)] for s, e in person.live],
        "days": person.days,
    }


def _edges_doc(event_id: str, scope: str, chunk: int, edges: Mapping[int, int]) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "scope": scope,
        "start": from_epoch_ms(chunk),
        "edges": {str(offset): n for offset, n in sorted(edges.items())},
    }


def summary_doc(event_id: str, summary: Summary) -> dict[str, Any]:
    return {"eventId": event_id, **summary.fields(), "updatedAt": now()}


# --- a rollup's plan --------------------------------------------------------------------------


async def _by_id(
    db: Database, settings: Settings, name: str, ids: list[str], fields: dict[str, int]
) -> list[Any]:
    collection = dates_as_ms(db[name], settings)
    found: list[Any] = []
    for start in range(0, len(ids), settings.write_batch):
        part = ids[start : start + settings.write_batch]
        found += await collection.find({"_id": {"$in": part}}, fields).batch_size(len(part)).to_list(None)
    return found


@dataclass(slots=True)
class PeoplePlan:
    """The people writes of one rollup, the summary they move, and the event's LIVE edge changes."""

    summary: Summary
    ops: list[dict[str, Any]]
    edges: dict[int, int]


async def plan_people(
    db: Database,
    settings: Settings,
    event_id: str,
    time_zone: str,
    changes: Changes,
    identities: Mapping[str, Any],
    stored_summary: Mapping[str, Any] | None,
) -> PeoplePlan:
    """What brings the people of these users and the summary up to the rows about to be written
    (`stored_summary`: the settled summary; the edges' counts come with edge_ops). A person moves
    by its changed rows alone (shared/audience.moved): no other row of it is read."""
    summary = Summary.of_doc(stored_summary)
    if not changes:
        return PeoplePlan(summary, [], {})
    users = sorted(changes)
    docs = await _by_id(db, settings, "people", [person_id(event_id, u) for u in users], _PERSON_FIELDS)
    old = {doc["userId"]: person_from_doc(doc) for doc in docs}
    zone = ZoneInfo(time_zone)
    edge_total: dict[int, int] = {}
    ops: list[dict[str, Any]] = []
    missing = [user for user in users if user not in old and user not in identities]
    found = await identities_of(db, settings, event_id, missing) if missing else {}
    for user in users:
        before = after = old.get(user, Person())
        for session_id in sorted(changes[user]):
            was, now = changes[user][session_id]
            after = moved(after, was, now, zone)
        summary.count(before, -1)
        summary.count(after, 1)
        for ms, n in edge_changes(before.live, after.live).items():
            edge_total[ms] = edge_total.get(ms, 0) + n
        key = person_id(event_id, user)
        if after.empty:
            ops.append(op("people", key, None))
        else:
            fields = person_fields(event_id, user, after)
            if user in old:
                ops.append(op("people", key, fields))
            else:
                ops.append(
                    insert(
                        "people", key, {**identity_fields(identities.get(user) or found.get(user)), **fields}
                    )
                )
    return PeoplePlan(summary, ops, edge_total)


@dataclass(slots=True)
class EdgeScope:
    """The LIVE edges of one peak: the event's (`scope` = eventId) or a session's
    (`eventId/sessionId`), the chunk parts it keeps, and this rollup's changes (with `full`, the
    whole set: the stored chunks not in it are deleted)."""

    scope: str
    parts: dict[int, tuple[int, int, int]]
    changes: Mapping[int, int]
    full: bool = False


def session_scope(event_id: str, session_id: str) -> str:
    return f"{event_id}/{session_id}"  # ids hold no `/`


async def edge_ops(
    db: Database, settings: Settings, event_id: str, scopes: Iterable[EdgeScope]
) -> list[dict[str, Any]]:
    """The edge documents' writes of every scope (the chunks touched, read in one query), with
    each scope's `parts` brought up to them."""
    scopes = list(scopes)
    grouped = {id(s): chunks_of({ms: n for ms, n in s.changes.items() if n}) for s in scopes}
    wanted = sorted(edges_id(s.scope, chunk) for s in scopes if not s.full for chunk in grouped[id(s)])
    stored = {doc["_id"]: doc for doc in await _by_id(db, settings, "audience_edges", wanted, {"edges": 1})}
    ops = []
    for s in scopes:
        chunks = grouped[id(s)]
        if s.full:
            ops += [
                op("audience_edges", edges_id(s.scope, c), None) for c in sorted(set(s.parts) - set(chunks))
            ]
            s.parts.clear()
        for chunk, change in sorted(chunks.items()):
            key = edges_id(s.scope, chunk)
            before = (
                {} if s.full else {int(k): n for k, n in (stored.get(key) or {}).get("edges", {}).items()}
            )
            edges = add_edges(before, change)
            if edges:
                s.parts[chunk] = Chunk(edges).part()
                ops.append(op("audience_edges", key, _edges_doc(event_id, s.scope, chunk, edges)))
            else:
                s.parts.pop(chunk, None)
                ops.append(op("audience_edges", key, None))
    return ops


# --- a recompute's rebuild --------------------------------------------------------------------


async def start_rebuild(db: Database, event_id: str) -> None:
    """Before a recompute rewrites the rows: rollups leave the people and the summary alone and
    sum every session over all its rows until it is done (a recompute that dies is run again),
    and what a rollup left pending is moot. Every edge is written again."""
    doc = await db.event_summaries.find_one_and_update(
        {"_id": event_id}, {"$set": {"eventId": event_id, "rebuilding": True}}, {"pending": 1}, upsert=True
    )
    if doc and doc.get("pending"):
        await clear_pending(db, event_id, doc["pending"])
    await db.audience_edges.delete_many({"eventId": event_id})


def full_edge_docs(event_id: str, scope: EdgeScope) -> list[ReplaceOne[Any]]:
    """A recompute's edge documents of one scope, its parts filled (nothing to read)."""
    docs = []
    for chunk, change in sorted(chunks_of({ms: n for ms, n in scope.changes.items() if n}).items()):
        scope.parts[chunk] = Chunk(change).part()
        key = edges_id(scope.scope, chunk)
        docs.append(
            ReplaceOne(
                {"_id": key}, {"_id": key, **_edges_doc(event_id, scope.scope, chunk, change)}, upsert=True
            )
        )
    return docs


async def rebuild_audience(
    db: Database,
    settings: Settings,
    event_id: str,
    time_zone: str,
    views: Mapping[str, list[RowView]],
    identities: Mapping[str, Any],
) -> None:
    """Every person, the event's edges and the summary from all its rows; people no longer there
    are deleted; the summary is written last, ending the rebuild."""
    zone = ZoneInfo(time_zone)
    run = uuid.uuid4().hex
    summary = Summary()
    edges: dict[int, int] = {}
    ops: list[ReplaceOne[Any]] = []
    for user, rows in views.items():
        person = person_of(rows, zone)
        if person.empty:
            continue
        summary.count(person, 1)
        for ms, n in edge_changes((), person.live).items():
            edges[ms] = edges.get(ms, 0) + n
        key = person_id(event_id, user)
        doc = {
            "_id": key,
            **identity_fields(identities.get(user)),
            **person_fields(event_id, user, person),
            "rebuild": run,  # people of the event without it are no longer there
        }
        ops.append(ReplaceOne({"_id": key}, doc, upsert=True))
        if len(ops) >= settings.write_batch:
            await bulk_write(settings, db.people, ops)
            ops = []
    await bulk_write(settings, db.people, ops)
    await db.people.delete_many({"eventId": event_id, "rebuild": {"$ne": run}})
    scope = EdgeScope(event_id, summary.parts, edges, full=True)
    await bulk_write(settings, db.audience_edges, full_edge_docs(event_id, scope))
    await db.event_summaries.replace_one({"_id": event_id}, summary_doc(event_id, summary), upsert=True)
