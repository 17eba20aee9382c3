"""What ingestion writes so that its answer is true: 503 only when nothing it stored will count.

Three inserts per request, in this order, the first and last one document each:

1. the request's *intent* (`segment_intents`): "this request is storing these items";
2. the permanent documents (`watch_segments`, `registrations`), deduplicated by `_id`;
3. the request's inbox *batch* (`segment_inbox`): the items it stored, which rollups fold.

A failure of 1 or 2 answers 503: nothing permanent, or (when 2 failed half-way) items the
client's retry finds as duplicates. A failure of 3 answers 200: the items are stored, and the
beat tick's `settle_intents` queues them. Rollups read only the inbox, whose batches always
follow a permanent write, so nothing unstored is ever counted. The tick looks at intents older
than any write of their request can land (`uncommitted_grace_s`): the items of those whose batch
is missing and whose permanent document exists are queued in their stored version (a commit
that failed, or a duplicate whose first request failed half-way), the others are dropped. A
batch and its intent share the request's `_id` and are consumed together.

One batch per request, not one entry per item: a request's items are written, read and deleted
as one document, so the inbox and the intents hold as many documents as requests, and a
rollup's deletes list requests, not items. A batch keeps what a rollup folds of each item —
session, user, mode and times in epoch milliseconds — as one compressed blob (at most
MAX_ITEMS rows, tens of KB): it is only ever read whole, never queried by field.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar, cast

from pymongo.errors import BulkWriteError

from shared.blobs import pack, unpack
from shared.db import Collection, Database
from shared.documents import InboxBatchDoc, RegistrationDoc, SegmentIntentDoc, WatchSegmentDoc
from shared.settings import Settings
from shared.store import INBOX_REGISTRATION, INBOX_SEGMENT, epoch_ms, from_epoch_ms, now

DUPLICATE_KEY = 11000
# The permanent collection of each kind of item.
PERMANENT = {INBOX_SEGMENT: "watch_segments", INBOX_REGISTRATION: "registrations"}
D = TypeVar("D", bound=Mapping[str, Any])  # a collection's document type
INTENTS_PER_TICK = 1000  # intents one tick settles (bounded work; the next tick goes on)
IDS_PER_DELETE = 2000  # consumed batches per delete command
StoredItem = WatchSegmentDoc | RegistrationDoc


def request_id(kind: str) -> str:
    """The `_id` a request's intent and inbox batch share."""
    return f"{kind}|{uuid.uuid4().hex}"


def intent(batch_id: str, event_id: str, kind: str, documents: Sequence[StoredItem]) -> SegmentIntentDoc:
    return {
        "_id": batch_id,
        "eventId": event_id,
        "kind": kind,
        "receivedAt": now(),
        "ids": [d["_id"] for d in documents],
    }


class QueuedItem(NamedTuple):
    """What a rollup folds of one stored item."""

    session_id: str
    user_id: str
    mode: str  # a segment's LIVE or RECORDING; "" for a registration
    start_ms: int  # a registration's time
    end_ms: int

    @property
    def registered_at(self) -> datetime:
        return from_epoch_ms(self.start_ms)


def _queued(kind: str, document: Mapping[str, Any]) -> QueuedItem:
    if kind == INBOX_SEGMENT:
        segment = cast("WatchSegmentDoc", document)
        start, end = epoch_ms(segment["start"]), epoch_ms(segment["end"])
        return QueuedItem(segment["sessionId"], segment["userId"], segment["mode"], start, end)
    registration = cast("RegistrationDoc", document)
    at = epoch_ms(registration["registeredAt"])
    return QueuedItem(registration["sessionId"], registration["userId"], "", at, at)


def inbox_batch(batch_id: str, event_id: str, kind: str, documents: Sequence[StoredItem]) -> InboxBatchDoc:
    """The inbox batch of permanent documents: what a rollup folds of each, compressed."""
    rows = [list(_queued(kind, d)) for d in documents]
    return {
        "_id": batch_id,
        "eventId": event_id,
        "kind": kind,
        "receivedAt": now(),
        "count": len(rows),
        "data": pack(rows),
    }


def batch_items(batch: InboxBatchDoc) -> list[QueuedItem]:
    """A batch's items; an entry of the earlier one-item-per-entry layout is its own item."""
    if "data" in batch:
        return [QueuedItem(*row) for row in unpack(batch["data"])]
    return [_queued(batch.get("kind", INBOX_SEGMENT), batch)]


def _intent_ids(found: SegmentIntentDoc) -> list[str]:
    """The permanent `_id`s an intent names; one of the earlier per-item layout (`kind|_id`)
    names its own."""
    if "ids" in found:
        return found["ids"]
    return [str(found["_id"]).split("|", 1)[1]]


def uncommitted_grace_s(settings: Settings) -> float:
    """How long after an intent its request may still be writing: the request time limit, then
    the driver's socket timeout for an insert already sent, then a minute of margin."""
    socket_timeout_s = max(settings.mongodb_timeout_ms * 5, 10_000) / 1000
    return settings.request_timeout_s + socket_timeout_s + 60.0


async def insert_new(collection: Collection[D], documents: list[D]) -> set[int]:
    """Insert what is not stored yet; the positions of items already there (duplicates)."""
    if not documents:
        return set()
    try:
        await collection.insert_many(documents, ordered=False)
        return set()
    except BulkWriteError as err:
        errors = err.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return {e["index"] for e in errors}


async def consume(db: Database, event_id: str, batch_ids: list[str]) -> None:
    """Batches of one event folded into the numbers, and their intents: both done with.

    Scoped to the event whose lease the caller holds, so a rollup can never delete another
    event's input; `eventId` comes first in the filter, which also lets the test server (which
    matches filters itself, field by field) pass over other events' batches without comparing
    them with every listed id. In deletes of IDS_PER_DELETE, so no one command holds the test
    server's single writer for long; MongoDB sends a few more commands."""
    for start in range(0, len(batch_ids), IDS_PER_DELETE):
        chunk = batch_ids[start : start + IDS_PER_DELETE]
        await db.segment_inbox.delete_many({"eventId": event_id, "_id": {"$in": chunk}})
        await db.segment_intents.delete_many({"eventId": event_id, "_id": {"$in": chunk}})


async def settle_intents(db: Database, settings: Settings, limit: int = INTENTS_PER_TICK) -> dict[str, int]:
    """Intents whose request is over: queue what they stored for good, delete them.

    Bounded and index-served: the oldest `limit` intents (receivedAt), one `_id $in` find on the
    inbox, then one per kind on the permanent collections for the intents whose batch is gone.
    """
    cutoff = now() - timedelta(seconds=uncommitted_grace_s(settings))
    oldest = db.segment_intents.find({"receivedAt": {"$lte": cutoff}}).sort("receivedAt", 1)
    intents = await oldest.limit(limit).to_list(None)
    if not intents:
        return {"intents": 0, "queued": 0}
    # Those whose batch still waits in the inbox are consumed with it: only the others are
    # looked up in the (large) permanent collections.
    waiting = await db.segment_inbox.find({"_id": {"$in": [i["_id"] for i in intents]}}, {"_id": 1}).to_list(
        None
    )
    in_inbox = {doc["_id"] for doc in waiting}
    settled = [i for i in intents if i["_id"] not in in_inbox]
    queued = 0
    for kind, collection in PERMANENT.items():
        of_kind = [i for i in settled if i.get("kind") == kind]
        ids = [item_id for i in of_kind for item_id in _intent_ids(i)]
        if not ids:
            continue
        found = await db[collection].find({"_id": {"$in": ids}}).to_list(None)
        stored = {doc["_id"]: cast("StoredItem", doc) for doc in found}
        batches = []
        for i in of_kind:
            items = [stored[item_id] for item_id in _intent_ids(i) if item_id in stored]
            if items:
                batches.append(inbox_batch(i["_id"], i["eventId"], kind, items))
        duplicates = await insert_new(db.segment_inbox, batches)
        queued += sum(b["count"] for n, b in enumerate(batches) if n not in duplicates)
    if settled:
        await db.segment_intents.delete_many({"_id": {"$in": [i["_id"] for i in settled]}})
    return {"intents": len(settled), "queued": queued}
