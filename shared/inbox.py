"""What ingestion writes so that its answer is true: 503 only when nothing it stored will count.

Three inserts per request, in this order:

1. an *intent* per item (`segment_intents`): "this request is storing this item";
2. the permanent documents (`watch_segments`, `registrations`), deduplicated by `_id`;
3. the inbox entries (`segment_inbox`) of the items the request stored: what rollups fold.

A failure of 1 or 2 answers 503: nothing permanent, or (when 2 failed half-way) items the
client's retry finds as duplicates. A failure of 3 answers 200: the items are stored, and the
beat tick's `settle_intents` queues them. Rollups read only the inbox, whose entries always
follow a permanent write, so nothing unstored is ever counted. The tick looks at intents older
than any write of their request can land (`uncommitted_grace_s`): those whose permanent
document exists are queued in its stored version (a commit that failed, or a duplicate whose
first request failed half-way), the others are deleted. Entries and intents share their `_id`
and are consumed together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, cast

from pymongo.errors import BulkWriteError

from shared.db import Collection, Database
from shared.documents import InboxEntryDoc, RegistrationDoc, WatchSegmentDoc
from shared.settings import Settings
from shared.store import INBOX_REGISTRATION, INBOX_SEGMENT, now

DUPLICATE_KEY = 11000
# The permanent collection of each kind of item.
PERMANENT = {INBOX_SEGMENT: "watch_segments", INBOX_REGISTRATION: "registrations"}
D = TypeVar("D", bound=Mapping[str, Any])  # a collection's document type
INTENTS_PER_TICK = 1000  # intents one tick settles (bounded work; the next tick goes on)
IDS_PER_DELETE = 2000  # consumed entries per delete command


def inbox_entries(kind: str, documents: Iterable[WatchSegmentDoc | RegistrationDoc]) -> list[InboxEntryDoc]:
    """The inbox entries (and intents) of permanent documents: same content, own `_id`."""
    received = now()
    return [{**d, "_id": f"{kind}|{d['_id']}", "kind": kind, "receivedAt": received} for d in documents]


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


async def consume(db: Database, event_id: str, entry_ids: list[str]) -> None:
    """Entries of one event folded into the numbers, and their intents: both done with.

    Scoped to the event whose lease the caller holds, so a rollup can never delete another
    event's input; `eventId` comes first in the filter, which also lets the test server (which
    matches filters itself, field by field) pass over other events' entries without comparing
    them with every listed id. In deletes of IDS_PER_DELETE: FerretDB matches `$in` entry by
    entry, so one delete of a 20,000-entry batch held its single writer past the driver's
    socket timeout while ingestion's inserts waited; MongoDB sends a few more commands."""
    for start in range(0, len(entry_ids), IDS_PER_DELETE):
        chunk = entry_ids[start : start + IDS_PER_DELETE]
        await db.segment_inbox.delete_many({"eventId": event_id, "_id": {"$in": chunk}})
        await db.segment_intents.delete_many({"eventId": event_id, "_id": {"$in": chunk}})


async def settle_intents(db: Database, settings: Settings, limit: int = INTENTS_PER_TICK) -> dict[str, int]:
    """Intents whose request is over: queue those stored for good, delete the others.

    Bounded and index-served: the oldest `limit` intents (receivedAt), one `_id $in` find on the
    inbox, then one per kind on the permanent collections for those no longer in the inbox.
    """
    cutoff = now() - timedelta(seconds=uncommitted_grace_s(settings))
    intents = await (
        db.segment_intents.find({"receivedAt": {"$lte": cutoff}}, {"_id": 1, "kind": 1})
        .sort("receivedAt", 1)
        .limit(limit)
        .to_list(None)
    )
    if not intents:
        return {"intents": 0, "queued": 0}
    # Those whose entry still waits in the inbox are consumed with it: only the others are
    # looked up in the (large) permanent collections.
    waiting = await db.segment_inbox.find({"_id": {"$in": [i["_id"] for i in intents]}}, {"_id": 1}).to_list(
        None
    )
    in_inbox = {doc["_id"] for doc in waiting}
    settled = [i for i in intents if i["_id"] not in in_inbox]
    queued = 0
    for kind, collection in PERMANENT.items():
        ids = [str(i["_id"]).split("|", 1)[1] for i in settled if i["kind"] == kind]
        if not ids:
            continue
        found = await db[collection].find({"_id": {"$in": ids}}).to_list(None)
        stored = cast("list[WatchSegmentDoc | RegistrationDoc]", found)
        queued += len(stored) - len(await insert_new(db.segment_inbox, inbox_entries(kind, stored)))
    if settled:
        await db.segment_intents.delete_many({"_id": {"$in": [i["_id"] for i in settled]}})
    return {"intents": len(settled), "queued": queued}
