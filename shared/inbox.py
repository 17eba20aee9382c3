"""The rollup inbox: ingested items waiting to be folded into the numbers, and when one counts.

Ingestion writes an item's inbox entry *first*, then its permanent document (`watch_segments`,
`registrations`). The permanent document is the commit: a rollup folds an entry only once that
document exists, and folds the stored version of it (the first one sent under its id), never
the entry's copy. So a request whose second write fails leaves an entry that is never counted,
and a request that answers 503 stored nothing that a rollup folds in. Such an orphan is deleted
once no write of its request can still land (`uncommitted_grace_s`); a retry of the request
writes it again, and its permanent document commits it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from shared.db import Database
from shared.settings import Settings
from shared.store import INBOX_REGISTRATION, INBOX_SEGMENT, now

# The permanent collection of each kind of entry, and the fields a rollup folds from it.
PERMANENT: dict[str, tuple[str, dict[str, int]]] = {
    INBOX_SEGMENT: ("watch_segments", {"sessionId": 1, "userId": 1, "mode": 1, "start": 1, "end": 1}),
    INBOX_REGISTRATION: ("registrations", {"sessionId": 1, "userId": 1, "registeredAt": 1}),
}
IDS_PER_QUERY = 20_000  # `_id $in` lists per find: one command per rollup batch at default settings


def inbox_entries(kind: str, documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The inbox entries of permanent documents about to be written (same content, own `_id`)."""
    received = now()
    return [{**d, "_id": f"{kind}|{d['_id']}", "kind": kind, "receivedAt": received} for d in documents]


def permanent_id(entry: dict[str, Any]) -> str:
    return str(entry["_id"]).split("|", 1)[1]


def uncommitted_grace_s(settings: Settings) -> float:
    """How long an entry may wait for its permanent document: past the request time limit, a
    permanent insert already sent can still land until the driver's socket timeout; a minute
    more of margin. After that its request has answered an error and the entry is an orphan."""
    socket_timeout_s = max(settings.mongodb_timeout_ms * 5, 10_000) / 1000
    return settings.request_timeout_s + socket_timeout_s + 60.0


@dataclass(slots=True)
class Settled:
    """Inbox entries sorted by what their permanent documents say."""

    # Committed: each entry carries its stored version's fields (and its own `_id` and kind).
    committed: list[dict[str, Any]] = field(default_factory=list)
    # Not committed yet, younger than the grace: their request may still be writing.
    waiting: list[str] = field(default_factory=list)
    # Not committed and past the grace: their request failed; deleted already.
    orphans: list[str] = field(default_factory=list)


async def settle(db: Database, settings: Settings, event_id: str, entries: list[dict[str, Any]]) -> Settled:
    """Look up the permanent documents of one event's `entries` (one `_id $in` find per kind and
    IDS_PER_QUERY entries) and sort the entries by them; orphans are deleted here.

    Entries need `_id`, `kind` and `receivedAt`. (The `eventId` in the filter changes nothing on
    MongoDB, which looks the ids up in `_id`'s index; FerretDB, which filters `$in` itself,
    then reads only the event's documents.)
    """
    settled = Settled()
    stored: dict[str, dict[str, Any]] = {}
    for kind, (collection, fields) in PERMANENT.items():
        ids = [permanent_id(e) for e in entries if e["kind"] == kind]
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start : start + IDS_PER_QUERY]
            query = {"_id": {"$in": chunk}, "eventId": event_id}
            cursor = db[collection].find(query, fields).batch_size(len(chunk))
            stored.update((f"{kind}|{doc['_id']}", doc) for doc in await cursor.to_list(None))
    cutoff = now() - timedelta(seconds=uncommitted_grace_s(settings))
    for entry in entries:
        doc = stored.get(entry["_id"])
        if doc is not None:
            settled.committed.append({**entry, **doc, "_id": entry["_id"]})
        elif entry["receivedAt"] <= cutoff:
            settled.orphans.append(entry["_id"])
        else:
            settled.waiting.append(entry["_id"])
    if settled.orphans:
        await db.segment_inbox.delete_many({"_id": {"$in": settled.orphans}})
    return settled


async def any_committed(db: Database, event_id: str, entry_ids: list[str]) -> bool:
    """Whether any of these (waiting) entries got its permanent document since it was read."""
    for kind, (collection, _) in PERMANENT.items():
        ids = [i.split("|", 1)[1] for i in entry_ids if i.startswith(f"{kind}|")]
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start : start + IDS_PER_QUERY]
            if await db[collection].find_one({"_id": {"$in": chunk}, "eventId": event_id}, {"_id": 1}):
                return True
    return False
