"""Webhook endpoints and their outbox: what the hook records when numbers change, read by the
delivery runs of worker/webhooks.py.

Storage, and why each piece exists on MongoDB:

- `webhooks`: one document per endpoint (URL, topics, secret, whether it is disabled and why).
- `webhook_outbox`: one document per (endpoint, topic, subject) — bounded by sessions × topics
  per endpoint — marked dirty by each change. A delivery run turns dirty ones into messages
  with the numbers stored *then*, so a burst of changes becomes one message carrying the latest
  numbers, and a subject's messages carry numbers that only ever get newer.
- `webhook_deliveries`: one document per message (`_id` = its `webhook-id`), with its frozen
  payload and every attempt's outcome: the delivery log hosts read, and the retry schedule.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from typing import Any, Literal

from pymongo import UpdateOne

from shared.db import Database, bulk_write
from shared.settings import Settings
from shared.store import now

SESSION_UPDATED = "session.analytics.updated"
EVENT_UPDATED = "event.analytics.updated"
RECOMPUTE_FINISHED = "recompute.finished"
DURATION_UPDATED = "session.duration.updated"
TOPICS = (SESSION_UPDATED, EVENT_UPDATED, RECOMPUTE_FINISHED, DURATION_UPDATED)
Topic = Literal[
    "session.analytics.updated", "event.analytics.updated", "recompute.finished", "session.duration.updated"
]
# What wrote the numbers (the hook's `kind`): the topics each one changes.
Kind = Literal["rollup", "recompute", "durations"]
KIND_TOPICS: dict[str, tuple[str, ...]] = {
    "rollup": (SESSION_UPDATED, EVENT_UPDATED),
    "recompute": (SESSION_UPDATED, EVENT_UPDATED, RECOMPUTE_FINISHED),
    "durations": (DURATION_UPDATED,),
}
SESSION_TOPICS = frozenset({SESSION_UPDATED, DURATION_UPDATED})

PENDING, DELIVERED, FAILED, SUPERSEDED = "PENDING", "DELIVERED", "FAILED", "SUPERSEDED"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED, SUPERSEDED)


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(12)


def new_delivery_id() -> str:
    return "msg_" + secrets.token_hex(12)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def outbox_id(webhook_id: str, topic: str, subject: str) -> str:
    return f"{webhook_id}|{topic}|{subject}"


async def endpoints_of(db: Database, event_id: str) -> list[dict[str, Any]]:
    """The enabled endpoints of an event: its own and its organizer's."""
    event = await db.events.find_one({"_id": event_id}, {"organizerId": 1})
    branches: list[dict[str, Any]] = [{"eventId": event_id}]
    if event is not None and event.get("organizerId"):
        branches.append({"organizerId": event["organizerId"]})
    found = await db.webhooks.find({"$or": branches}, {"topics": 1, "disabled": 1}).to_list(None)
    return [dict(doc) for doc in found if not doc.get("disabled")]


async def record_changes(
    db: Database,
    settings: Settings,
    event_id: str,
    session_ids: Iterable[str],
    kind: str,
    *,
    with_event: bool,
) -> list[str]:
    """Mark the outbox of every endpoint concerned; the endpoints to signal. `with_event`: the
    event topic has a payload (the event summary) to send."""
    ids = sorted(set(session_ids))
    changed_at = now()
    writes: list[UpdateOne] = []
    signalled: list[str] = []
    for endpoint in await endpoints_of(db, event_id):
        topics = [t for t in KIND_TOPICS.get(kind, ()) if t in endpoint.get("topics", ())]
        if not with_event:
            topics = [t for t in topics if t != EVENT_UPDATED]
        for topic in topics:
            subjects = ids if topic in SESSION_TOPICS else [event_id]
            data = {"eventId": event_id, "sessions": len(ids)} if topic == RECOMPUTE_FINISHED else None
            writes += [
                _mark(endpoint["_id"], topic, subject, event_id, changed_at, data) for subject in subjects
            ]
        if topics:
            signalled.append(endpoint["_id"])
    if writes:
        await bulk_write(settings, db.webhook_outbox, writes)
    return signalled


def _mark(
    webhook_id: str, topic: str, subject: str, event_id: str, at: Any, data: dict[str, Any] | None
) -> UpdateOne:
    fields: dict[str, Any] = {
        "webhookId": webhook_id,
        "topic": topic,
        "subject": subject,
        "eventId": event_id,
    }
    fields["dirty"] = True
    if data is not None:
        fields["data"] = data | {"finishedAt": at}
    return UpdateOne(
        {"_id": outbox_id(webhook_id, topic, subject)},
        {"$set": fields, "$inc": {"changes": 1}, "$min": {"dirtySince": at}},
        upsert=True,
    )
