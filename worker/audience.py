"""A rollup's part in the event's audience (shared/audience.py), and a recompute's rebuild of it.

A rollup that wrote some attendee rows recomputes the people of those users from their rows
(read by `_id`), moves each person's old contribution out of the event summary and the new one
in, and changes the LIVE edges of the chunks their unions' ends fall in: every read and write is
by `_id` and follows the users with new attendance, whatever the size of the event.

The summary is a sum over the people, so one rollup's people, edges and summary must land all
or none, and MongoDB has no multi-document atomicity to rely on. The summary's own update is
the commit: it carries the people and edge writes as `pending` (in `rollup_journal` parts when
they outgrow a document), and goes out before the attendee rows; then the rows, the people and
the edges are written, and `pending` is cleared once the rollup consumed its inbox. Every
operation sets computed values, so the next rollup of the event applies a `pending` it finds
(a rollup died after its commit), and applying one twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import bson
from pymongo import DeleteOne, ReplaceOne, UpdateOne

from shared.attendees import identity_fields, row_id
from shared.audience import (
    Chunk,
    Person,
    RowView,
    Summary,
    add_edges,
    chunks_of,
    edge_changes,
    edges_id,
    person_id,
    person_of,
)
from shared.db import Database, bulk_write, dates_as_ms
from shared.identities import identities_of
from shared.settings import Settings
from shared.store import epoch_ms, from_epoch_ms, now

JOURNAL_PART_BYTES = 4 * 1024 * 1024  # pending writes inline up to this, well under 16 MB
_PERSON_FIELDS = {
    "_id": 0,
    "userId": 1,
    "sessions": 1,
    "sessionsRegistered": 1,
    "sessionsAttended": 1,
    "attendedSeconds": 1,
    "liveSeconds": 1,
    "recordingSeconds": 1,
    "firstJoinedAt": 1,
    "lastLeftAt": 1,
    "live": 1,
    "days": 1,
    "completion": 1,
}
_ROW_FIELDS = {
    "_id": 0,
    "sessionId": 1,
    "userId": 1,
    "live": 1,
    "recording": 1,
    "registeredAt": 1,
    "completion": 1,
}

Changes = Mapping[str, Mapping[str, RowView]]  # userId → sessionId → the row just written


def _ms_or_none(moment: Any) -> int | None:
    return None if moment is None else epoch_ms(moment)


def _seconds_ms(seconds: float | None) -> int:
    return round((seconds or 0) * 1000)


def person_from_doc(doc: Mapping[str, Any] | None) -> Person:
    """The contribution a stored person made (dates read as datetimes or milliseconds)."""
    if not doc:
        return Person()
    return Person(
        sessions=list(doc.get("sessions") or ()),
        registered=doc.get("sessionsRegistered", 0),
        attended_sessions=doc.get("sessionsAttended", 0),
        attended_ms=_seconds_ms(doc.get("attendedSeconds")),
        live_ms=_seconds_ms(doc.get("liveSeconds")),
        recording_ms=_seconds_ms(doc.get("recordingSeconds")),
        first=_ms_or_none(doc.get("firstJoinedAt")),
        last=_ms_or_none(doc.get("lastLeftAt")),
        live=[(epoch_ms(s), epoch_ms(e)) for s, e in doc.get("live") or ()],
        days=list(doc.get("days") or ()),
        completion=doc.get("completion"),
    )


def _date(ms: int | None) -> datetime | None:
    return None if ms is None else from_epoch_ms(ms)


def person_fields(event_id: str, user_id: str, person: Person) -> dict[str, Any]:
    """The `people` document's fields other than the identity copies."""
    return {
        "eventId": event_id,
        "userId": user_id,
        "sessions": person.sessions,
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
        "live": [[from_epoch_ms(s), from_epoch_ms(e)] for s, e in person.live],
        "days": person.days,
    }


def _edges_doc(event_id: str, chunk: int, edges: Mapping[int, int]) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "start": from_epoch_ms(chunk),
        "edges": {str(offset): n for offset, n in sorted(edges.items())},
    }


def summary_doc(event_id: str, summary: Summary) -> dict[str, Any]:
    return {"eventId": event_id, **summary.fields(), "updatedAt": now()}


# --- pending writes ---------------------------------------------------------------------------
# An operation is `{c: collection, id, set, insert}` (an upsert setting `set`, with `insert` on
# insert only) or `{c, id}` alone (a delete): plain fields, no `$` names stored.


def _op(
    collection: str, doc_id: str, fields: dict[str, Any] | None, insert: dict[str, Any] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {"c": collection, "id": doc_id}
    if fields is not None:
        op["set"] = fields
        if insert:
            op["insert"] = insert
    return op


def _pymongo(op: Mapping[str, Any]) -> UpdateOne | DeleteOne:
    if "set" not in op:
        return DeleteOne({"_id": op["id"]})
    update: dict[str, Any] = {"$set": op["set"]}
    if op.get("insert"):
        update["$setOnInsert"] = op["insert"]
    return UpdateOne({"_id": op["id"]}, update, upsert=True)


async def apply_ops(db: Database, settings: Settings, ops: Iterable[Mapping[str, Any]]) -> None:
    """The people's and the edges' writes."""
    by_collection: dict[str, list[UpdateOne | DeleteOne]] = defaultdict(list)
    for op in ops:
        by_collection[op["c"]].append(_pymongo(op))
    for name in ("people", "audience_edges"):
        if by_collection.get(name):
            await bulk_write(settings, db[name], by_collection[name])


def _parts(ops: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    parts: list[list[dict[str, Any]]] = [[]]
    size = 0
    for op in ops:
        op_size = len(bson.encode(op))
        if parts[-1] and size + op_size > JOURNAL_PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(op)
        size += op_size
    return parts


@dataclass(slots=True)
class AudienceWrite:
    """One rollup's audience: the summary (the commit) and the people and edge writes."""

    event_id: str
    summary: dict[str, Any]
    ops: list[dict[str, Any]]
    pending: dict[str, Any] = field(default_factory=dict)

    async def commit(self, db: Database) -> None:
        """The summary with the writes it rests on as `pending`, in one document write (after
        the parts, when the writes need more than one document)."""
        parts = _parts(self.ops)
        if len(parts) == 1:
            self.pending = {"ops": parts[0]}
        else:
            run = uuid.uuid4().hex
            ids = [f"{self.event_id}:{run}:{n}" for n in range(len(parts))]
            for part_id, part in zip(ids, parts, strict=True):
                await db.rollup_journal.insert_one({"_id": part_id, "eventId": self.event_id, "ops": part})
            self.pending = {"parts": ids}
        doc = {"_id": self.event_id, **self.summary, "pending": self.pending}
        await db.event_summaries.replace_one({"_id": self.event_id}, doc, upsert=True)

    async def apply(self, db: Database, settings: Settings) -> None:
        await apply_ops(db, settings, self.ops)

    async def done(self, db: Database) -> None:
        await clear_pending(db, self.event_id, self.pending)


async def clear_pending(db: Database, event_id: str, pending: Mapping[str, Any]) -> None:
    await db.event_summaries.update_one({"_id": event_id}, {"$unset": {"pending": ""}})
    if pending.get("parts"):
        await db.rollup_journal.delete_many({"_id": {"$in": list(pending["parts"])}})


async def settled_summary(db: Database, settings: Settings, event_id: str) -> dict[str, Any] | None:
    """The event's summary once the writes a rollup left pending (it died after its commit) are
    applied: the base the next rollup moves contributions in and out of."""
    doc = await db.event_summaries.find_one({"_id": event_id})
    if doc is None or not doc.get("pending"):
        return doc
    pending = doc.pop("pending")
    ops = list(pending.get("ops") or ())
    for part_id in pending.get("parts") or ():
        part = await db.rollup_journal.find_one({"_id": part_id})
        ops += (part or {}).get("ops") or ()
    await apply_ops(db, settings, ops)
    await clear_pending(db, event_id, pending)
    return doc


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


def _view(doc: Mapping[str, Any]) -> RowView:
    return RowView(
        doc["sessionId"],
        doc.get("registeredAt") is not None,
        tuple((epoch_ms(s), epoch_ms(e)) for s, e in doc.get("live") or ()),
        tuple((epoch_ms(s), epoch_ms(e)) for s, e in doc.get("recording") or ()),
        doc.get("completion"),
    )


async def plan_audience(
    db: Database,
    settings: Settings,
    event_id: str,
    time_zone: str,
    changes: Changes,
    identities: Mapping[str, Any],
    stored_summary: Mapping[str, Any] | None,
) -> AudienceWrite | None:
    """What brings the people of these users, the edges and the summary up to the rows about to
    be written (`stored_summary`: settled_summary's). None while a recompute rebuilds the event's
    audience, or when no row changed."""
    if not changes or (stored_summary and stored_summary.get("rebuilding")):
        return None
    users = sorted(changes)
    docs = await _by_id(db, settings, "people", [person_id(event_id, u) for u in users], _PERSON_FIELDS)
    old = {doc["userId"]: person_from_doc(doc) for doc in docs}
    wanted = [
        row_id(session, user)
        for user in users
        for session in old.get(user, Person()).sessions
        if session not in changes[user]
    ]
    views: dict[str, list[RowView]] = {user: list(changes[user].values()) for user in users}
    for doc in await _by_id(db, settings, "attendees", wanted, _ROW_FIELDS):
        views[doc["userId"]].append(_view(doc))
    zone = ZoneInfo(time_zone)
    summary = Summary.of_doc(stored_summary)
    edge_total: dict[int, int] = {}
    ops: list[dict[str, Any]] = []
    missing = [user for user in users if user not in old and user not in identities]
    found = await identities_of(db, settings, event_id, missing) if missing else {}
    for user in users:
        before, after = old.get(user, Person()), person_of(views[user], zone)
        summary.count(before, -1)
        summary.count(after, 1)
        for ms, n in edge_changes(before.live, after.live).items():
            edge_total[ms] = edge_total.get(ms, 0) + n
        key = person_id(event_id, user)
        if after.empty:
            ops.append(_op("people", key, None))
        else:
            identity = None if user in old else identity_fields(identities.get(user) or found.get(user))
            ops.append(_op("people", key, person_fields(event_id, user, after), identity))
    ops += await _edge_ops(db, settings, event_id, summary, edge_total)
    return AudienceWrite(event_id, summary_doc(event_id, summary), ops)


async def _edge_ops(
    db: Database, settings: Settings, event_id: str, summary: Summary, changes: Mapping[int, int]
) -> list[dict[str, Any]]:
    grouped = chunks_of({ms: n for ms, n in changes.items() if n})
    ids = {chunk: edges_id(event_id, chunk) for chunk in grouped}
    stored = {
        doc["_id"]: doc
        for doc in await _by_id(db, settings, "audience_edges", sorted(ids.values()), {"edges": 1})
    }
    ops = []
    for chunk, change in sorted(grouped.items()):
        before = {int(k): n for k, n in (stored.get(ids[chunk]) or {}).get("edges", {}).items()}
        edges = add_edges(before, change)
        if edges:
            summary.parts[chunk] = Chunk(edges).part()
            ops.append(_op("audience_edges", ids[chunk], _edges_doc(event_id, chunk, edges)))
        else:
            summary.parts.pop(chunk, None)
            ops.append(_op("audience_edges", ids[chunk], None))
    return ops


# --- a recompute's rebuild --------------------------------------------------------------------


async def start_rebuild(db: Database, event_id: str) -> None:
    """Before a recompute rewrites the rows: rollups leave the audience alone until it is rebuilt
    (a recompute that dies is run again, and rebuilds it then), and what a rollup left pending is
    moot."""
    doc = await db.event_summaries.find_one_and_update(
        {"_id": event_id}, {"$set": {"eventId": event_id, "rebuilding": True}}, {"pending": 1}, upsert=True
    )
    if doc and doc.get("pending"):
        await clear_pending(db, event_id, doc["pending"])


async def rebuild_audience(
    db: Database,
    settings: Settings,
    event_id: str,
    time_zone: str,
    views: Mapping[str, list[RowView]],
    identities: Mapping[str, Any],
) -> None:
    """Every person, edge and the summary of an event from all its rows; people and edges no
    longer there are deleted; the summary is written last, ending the rebuild."""
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
    await db.audience_edges.delete_many({"eventId": event_id})
    edge_docs = []
    for chunk, change in sorted(chunks_of({ms: n for ms, n in edges.items() if n}).items()):
        summary.parts[chunk] = Chunk(change).part()
        edge_docs.append(
            ReplaceOne({"_id": edges_id(event_id, chunk)}, _edges_doc(event_id, chunk, change), upsert=True)
        )
    await bulk_write(settings, db.audience_edges, edge_docs)
    await db.event_summaries.replace_one({"_id": event_id}, summary_doc(event_id, summary), upsert=True)
