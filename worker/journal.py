"""A rollup's writes, landing all or none on a database without multi-document atomicity.

A rollup moves users' contributions out of sums and in again (a session's totals, the event's
summary), so its writes — attendee rows, sessions, people, LIVE edges — must land together: a
crash after some of them would leave sums that no longer match their documents. They are
committed first, by one document write: the event summary's update carries them as `pending`
(in `rollup_journal` parts when they outgrow one document). Then they are applied, and `pending`
is cleared once the rollup consumed its inbox. Every operation sets computed values, so the next
rollup of the event applies a `pending` it finds (the rollup that wrote it died), and applying
one twice changes nothing.

An operation is `{c: collection, id, set, insert, upsert}` — an update of the document `id`
setting `set`, with `insert` on insert only, upserting unless `upsert` is false — or `{c, id}`
alone, a delete: plain fields, no `$` names stored.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.db import Database, bulk_write
from shared.documents import EventSummaryDoc
from shared.inbox import DUPLICATE_KEY
from shared.settings import Settings

PART_BYTES = 4 * 1024 * 1024  # writes inline in the summary up to this, well under 16 MB
ORDER = ("attendees", "sessions", "people", "audience_edges")  # a reader meets rows first


def op(
    collection: str,
    doc_id: str,
    fields: dict[str, Any] | None,
    insert: dict[str, Any] | None = None,
    *,
    upsert: bool = True,
) -> dict[str, Any]:
    """An operation: `fields` None deletes the document."""
    written: dict[str, Any] = {"c": collection, "id": doc_id}
    if fields is not None:
        written["set"] = fields
        if insert:
            written["insert"] = insert
        if not upsert:
            written["upsert"] = False
    return written


def insert(collection: str, doc_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """An operation inserting a new document whole (applied again, it finds the document there)."""
    return {"c": collection, "id": doc_id, "doc": doc}


def _pymongo(written: Mapping[str, Any]) -> InsertOne[Any] | UpdateOne | DeleteOne:
    if "doc" in written:
        return InsertOne({"_id": written["id"], **written["doc"]})
    if "set" not in written:
        return DeleteOne({"_id": written["id"]})
    update: dict[str, Any] = {"$set": written["set"]}
    if written.get("insert"):
        update["$setOnInsert"] = written["insert"]
    return UpdateOne({"_id": written["id"]}, update, upsert=written.get("upsert", True))


async def apply_ops(
    db: Database, settings: Settings, ops: Iterable[Mapping[str, Any]], *, again: bool = False
) -> dict[str, int]:
    """The operations, a collection at a time in ORDER; the documents matched per collection.
    `again`: a committed journal applied once more, whose inserts may have landed already."""
    by_collection: dict[str, list[InsertOne[Any] | UpdateOne | DeleteOne]] = defaultdict(list)
    for written in ops:
        by_collection[written["c"]].append(_pymongo(written))
    matched = {}
    for name in ORDER:
        if by_collection.get(name):
            try:
                matched[name] = await bulk_write(settings, getattr(db, name), by_collection[name])
            except (BulkWriteError, DuplicateKeyError) as err:
                if not (again and _only_duplicates(err)):
                    raise
    return matched


def _only_duplicates(err: BulkWriteError | DuplicateKeyError) -> bool:
    if isinstance(err, DuplicateKeyError):
        return True
    errors = err.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)


def _parts(ops: list[dict[str, Any]], raw: bool) -> list[list[Any]]:
    """The operations encoded once, in parts of at most PART_BYTES (an operation larger than
    that alone in its part); `raw`: as the encoded documents, which the driver sends as they are
    (the embedded store takes the plain ones)."""
    parts: list[list[Any]] = [[]]
    size = 0
    for written in ops:
        encoded = bson.encode(written)
        if parts[-1] and size + len(encoded) > PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(RawBSONDocument(encoded) if raw else written)
        size += len(encoded)
    return parts


@dataclass(slots=True)
class Journal:
    """One rollup's writes: committed with the summary's fields (None: leave the summary's
    numbers as they are, as while a recompute rebuilds them), applied, then cleared."""

    event_id: str
    ops: list[dict[str, Any]]
    summary: dict[str, Any] | None
    pending: dict[str, Any] = field(default_factory=dict)

    async def commit(self, db: Database, settings: Settings) -> None:
        parts = _parts(self.ops, raw=not settings.embedded)
        if len(parts) == 1:
            self.pending = {"ops": parts[0]}
        else:
            run = uuid.uuid4().hex
            ids = [f"{self.event_id}:{run}:{n}" for n in range(len(parts))]
            for part_id, part in zip(ids, parts, strict=True):
                await db.rollup_journal.insert_one({"_id": part_id, "eventId": self.event_id, "ops": part})
            self.pending = {"parts": ids}
        fields = {**(self.summary or {}), "eventId": self.event_id, "pending": self.pending}
        await db.event_summaries.update_one({"_id": self.event_id}, {"$set": fields}, upsert=True)

    async def apply(self, db: Database, settings: Settings) -> dict[str, int]:
        return await apply_ops(db, settings, self.ops)

    async def done(self, db: Database) -> None:
        await clear_pending(db, self.event_id, self.pending)


async def clear_pending(db: Database, event_id: str, pending: Mapping[str, Any]) -> None:
    await db.event_summaries.update_one({"_id": event_id}, {"$unset": {"pending": ""}})
    if pending.get("parts"):
        await db.rollup_journal.delete_many({"_id": {"$in": list(pending["parts"])}})


async def settled_summary(db: Database, settings: Settings, event_id: str) -> EventSummaryDoc | None:
    """The event's summary once the writes a rollup left pending are applied: the base the next
    rollup moves contributions in and out of."""
    doc = await db.event_summaries.find_one({"_id": event_id})
    if doc is None or not doc.get("pending"):
        return doc
    pending = doc.pop("pending")
    ops = list(pending.get("ops") or ())
    for part_id in pending.get("parts") or ():
        part = await db.rollup_journal.find_one({"_id": part_id})
        ops += part.get("ops", []) if part else []
    await apply_ops(db, settings, ops, again=True)
    await clear_pending(db, event_id, pending)
    return doc
