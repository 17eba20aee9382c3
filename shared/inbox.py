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
rollup's deletes list requests, not items. A batch keeps what a rollup folds of each item as a
plain subdocument — `{sessionId, userId, mode, start, end}` for a segment, `{sessionId, userId,
registeredAt}` for a registration — at most MAX_ITEMS of them (~100 KB, far under 16 MB).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar, cast

from pymongo.errors import BulkWriteError

from shared.db import Collection, Database
from shared.documents import InboxBatchDoc, RegistrationDoc, SegmentIntentDoc, WatchSegmentDoc
from shared.settings import Settings
from shared.store import INBOX_REGISTRATION, INBOX_SEGMENT, epoch_ms, from_epoch_ms, now

DUPLICATE_KEY = 11000
# The permanent collection of each kind of item.
PERMANENT = {INBOX_SEGMENT: "watch_segments", INBOX_REGISTRATION: "registrations"}
D = TypeVar("D", bound=Mapping[str, Any])  # a collection's document type
INTENTS_PER_TICK = 1000  # intents one tick settles (bounded work; the next tick goes on)
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


def _item(kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """What a batch keeps of one stored item."""
    fields: tuple[str, ...] = ("sessionId", "userId", "registeredAt")
    if kind == INBOX_SEGMENT:
        fields = ("sessionId", "userId", "mode", "start", "end")
    return {name: document[name] for name in fields}


def inbox_batch(batch_id: str, event_id: str, kind: str, documents: Sequence[StoredItem]) -> InboxBatchDoc:
    """The inbox batch of permanent documents: what a rollup folds of each, as plain items."""
    return {
        "_id": batch_id,
        "eventId": event_id,
        "kind": kind,
        "receivedAt": now(),
        "count": len(documents),
        "items": [_item(kind, d) for d in documents],
    }


def batch_items(batch: InboxBatchDoc) -> list[QueuedItem]:
    """A batch's items (their dates read as datetimes or as BSON milliseconds)."""
    if batch.get("kind") == INBOX_REGISTRATION:
        return [
            QueuedItem(
                i["sessionId"], i["userId"], "", epoch_ms(i["registeredAt"]), epoch_ms(i["registeredAt"])
            )
            for i in batch["items"]
        ]
    return [
        QueuedItem(i["sessionId"], i["userId"], i["mode"], epoch_ms(i["start"]), epoch_ms(i["end"]))
        for i in batch["items"]
    ]


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


async def consume(db: Database, settings: Settings, event_id: str, batch_ids: list[str]) -> None:
    """Batches of one event folded into the numbers, and their intents: both done with.

    Scoped to the event whose lease the caller holds, so a rollup can never delete another
    event's input; WRITE_BATCH ids per delete."""
    for start in range(0, len(batch_ids), settings.write_batch):
        chunk = batch_ids[start : start + settings.write_batch]
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
        ids = [item_id for i in of_kind for item_id in i["ids"]]
        if not ids:
            continue
        found = await db[collection].find({"_id": {"$in": ids}}).to_list(None)
        stored = {doc["_id"]: cast("StoredItem", doc) for doc in found}
        batches = []
        for i in of_kind:
            items = [stored[item_id] for item_id in i["ids"] if item_id in stored]
            if items:
                batches.append(inbox_batch(i["_id"], i["eventId"], kind, items))
        duplicates = await insert_new(db.segment_inbox, batches)
        queued += sum(b["count"] for n, b in enumerate(batches) if n not in duplicates)
    if settled:
        await db.segment_intents.delete_many({"_id": {"$in": [i["_id"] for i in settled]}})
    return {"intents": len(settled), "queued": queued}
