"""What the operations gauges of /metrics read from MongoDB: inbox depth and age, provider pauses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from shared.db import Database
from shared.rules import PROVIDERS_WITH_DURATION
from shared.store import EPOCH


@dataclass(frozen=True, slots=True)
class InboxStats:
    """Ingested items not yet folded into the numbers, and when the oldest of them arrived."""

    items: int
    oldest_received_at: datetime | None


async def inbox_stats(db: Database) -> InboxStats:
    """Items summed over the waiting batches (a `$match` on receivedAt first: index-served, and
    the inbox holds one small document per request), and one index lookup for the oldest."""
    totals = await db.segment_inbox.aggregate(
        [{"$match": {"receivedAt": {"$gte": EPOCH}}}, {"$group": {"_id": None, "items": {"$sum": "$count"}}}]
    ).to_list(None)
    items = int(cast("dict[str, Any]", totals[0])["items"]) if totals else 0
    oldest = (
        await db.segment_inbox.find({"receivedAt": {"$gte": EPOCH}}, {"_id": 0, "receivedAt": 1})
        .sort("receivedAt", 1)
        .limit(1)
        .to_list(1)
    )
    return InboxStats(items, oldest[0]["receivedAt"] if oldest else None)


async def provider_pauses(db: Database, at: datetime) -> dict[str, bool]:
    """Per provider: paused for its quota until later than `at`, or waiting for credentials."""
    names = sorted(PROVIDERS_WITH_DURATION)
    states = {doc["_id"]: doc async for doc in db.provider_state.find({"_id": {"$in": names}})}
    paused: dict[str, bool] = {}
    for name in names:
        state = states.get(name, {})
        until = state.get("pausedUntil")
        paused[name] = bool(state.get("missingCredentials")) or (isinstance(until, datetime) and until > at)
    return paused
