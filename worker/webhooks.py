"""Webhook delivery runs: the outbox turned into signed messages, sent at least once, in order.

One run per endpoint at a time (a lease on its document), so an endpoint's messages go out one
after another: a message is made from the numbers stored when the run reads them, and a newer
message of the same subject supersedes an older one still waiting for a retry, so a receiver
never gets older numbers after newer ones. Messages follow the Standard Webhooks specification
(`webhook-id`, `webhook-timestamp`, `webhook-signature`, signed by the `standardwebhooks`
library); a failed attempt is retried with capped, jittered exponential backoff (at least what
`Retry-After` asks, up to the cap), keeping its `webhook-id`; an endpoint that has failed for
WEBHOOK_RETRY_WINDOW_S is disabled, and says why.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import Counter, Histogram
from pymongo import ReturnDocument, UpdateOne
from standardwebhooks.webhooks import Webhook
from yarl import URL

from shared.db import Database, bulk_write
from shared.documents import WebhookDeliveryDoc, WebhookDoc, WebhookOutboxDoc
from shared.hooks import event_summary
from shared.models import format_utc
from shared.session_items import FULL_ITEM, ITEM_FIELDS, item_fields
from shared.settings import Settings
from shared.store import now
from shared.urlguard import UrlRefused, checked_addresses, endpoint_url
from shared.webhooks import (
    DELIVERED,
    EVENT_UPDATED,
    FAILED,
    PENDING,
    RECOMPUTE_FINISHED,
    SESSION_TOPICS,
    SUPERSEDED,
    new_delivery_id,
)

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "session_analytics_webhook_deliveries_total",
    "Webhook delivery attempts, by topic and outcome (delivered, failed, refused, disabled)",
    ["topic", "outcome"],
)
LAG = Histogram(
    "session_analytics_webhook_lag_seconds",
    "From a change being written to its message being delivered",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)

RUN_BUDGET_S = 60.0  # a run's sending; what is left goes to the next run
ATTEMPTS_PER_READ = 100
MAX_ERROR = 300  # characters of an error kept in the log


@dataclass(slots=True)
class RunResult:
    delivered: int = 0
    failed: int = 0
    busy: bool = False
    next_in_s: float | None = None  # when this endpoint has work again; None: nothing waits

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "busy": self.busy,
            "nextInS": self.next_in_s,
        }


async def deliver_webhook(db: Database, settings: Settings, webhook_id: str) -> RunResult:
    """Make the endpoint's due messages and send those due, under its lease."""
    owner = uuid.uuid4().hex
    endpoint = await _take_lease(db, settings, webhook_id, owner)
    if endpoint is None:
        exists = await db.webhooks.find_one({"_id": webhook_id}, {"_id": 1})
        return RunResult(busy=exists is not None, next_in_s=1.0 if exists else None)
    result = RunResult()
    try:
        if not endpoint.get("disabled"):
            await _make_messages(db, settings, endpoint)
            await _send_due(db, settings, endpoint, result)
    finally:
        await db.webhooks.update_one({"_id": webhook_id, "leaseOwner": owner}, {"$set": {"leaseUntil": None}})
    result.next_in_s = await _next_work_in(db, settings, webhook_id)
    return result


async def _take_lease(db: Database, settings: Settings, webhook_id: str, owner: str) -> WebhookDoc | None:
    moment = now()
    lease = timedelta(seconds=RUN_BUDGET_S + 2 * settings.webhook_timeout_s)
    free = {"$or": [{"leaseUntil": None}, {"leaseUntil": {"$lt": moment}}]}
    return await db.webhooks.find_one_and_update(
        {"_id": webhook_id, **free},
        {"$set": {"leaseUntil": moment + lease, "leaseOwner": owner}},
        return_document=ReturnDocument.AFTER,
    )


# --- making messages --------------------------------------------------------------------------


async def _make_messages(db: Database, settings: Settings, endpoint: WebhookDoc) -> None:
    """Every dirty subject whose last message is old enough becomes one message with the numbers
    stored now; older messages of the subject still waiting are superseded."""
    moment = now()
    spacing = timedelta(seconds=settings.webhook_min_interval_s)
    dirty = await db.webhook_outbox.find({"webhookId": endpoint["_id"], "dirty": True}).to_list(None)
    ready = [doc for doc in dirty if _ready(doc.get("sentAt"), spacing, moment)]
    if not ready:
        return
    payloads = await _payloads(db, ready)
    messages: list[WebhookDeliveryDoc] = []
    for doc in ready:
        payload = payloads.get(doc["_id"])
        if payload is not None:
            messages.append(_message(endpoint["_id"], doc, payload, moment))
    if messages:
        await db.webhook_deliveries.insert_many(messages)
        await _supersede(db, settings, endpoint["_id"], messages)
    await bulk_write(settings, db.webhook_outbox, [op for doc in ready for op in _cleared(doc, moment)])


def _ready(sent_at: datetime | None, spacing: timedelta, moment: datetime) -> bool:
    return sent_at is None or sent_at + spacing <= moment


def _message(
    webhook_id: str, doc: WebhookOutboxDoc, payload: dict[str, Any], moment: datetime
) -> WebhookDeliveryDoc:
    return {
        "_id": new_delivery_id(),
        "webhookId": webhook_id,
        "eventId": doc["eventId"],
        "topic": doc["topic"],
        "subject": doc["subject"],
        "payload": {
            "type": doc["topic"],
            "timestamp": _utc(moment),
            "eventId": doc["eventId"],
            "data": payload,
        },
        "status": "PENDING",
        "attempts": 0,
        "responseStatus": None,
        "error": None,
        "createdAt": moment,
        "changedAt": doc.get("dirtySince") or moment,
        "lastAttemptAt": None,
        "nextAttemptAt": moment,
        "deliveredAt": None,
    }


def _cleared(doc: WebhookOutboxDoc, moment: datetime) -> list[UpdateOne]:
    """The subject was sent now; it is clean unless a change came after it was read."""
    return [
        UpdateOne({"_id": doc["_id"]}, {"$set": {"sentAt": moment}}),
        UpdateOne(
            {"_id": doc["_id"], "changes": doc.get("changes", 0)},
            {"$set": {"dirty": False}, "$unset": {"dirtySince": ""}},
        ),
    ]


async def _supersede(
    db: Database, settings: Settings, webhook_id: str, messages: list[WebhookDeliveryDoc]
) -> None:
    by_topic: dict[str, list[str]] = {}
    for message in messages:
        by_topic.setdefault(message["topic"], []).append(message["subject"])
    new_ids = [message["_id"] for message in messages]
    for topic, subjects in by_topic.items():
        await db.webhook_deliveries.update_many(
            {
                "webhookId": webhook_id,
                "status": PENDING,
                "topic": topic,
                "subject": {"$in": subjects},
                "_id": {"$nin": new_ids},
            },
            {"$set": {"status": SUPERSEDED, "nextAttemptAt": None}},
        )


async def _payloads(db: Database, ready: list[WebhookOutboxDoc]) -> dict[str, dict[str, Any]]:
    """Each outbox document's payload, from what is stored now; a subject gone has none."""
    payloads: dict[str, dict[str, Any]] = {}
    by_event: dict[str, list[WebhookOutboxDoc]] = {}
    for doc in ready:  # an organizer's endpoint hears of every event of the organizer
        by_event.setdefault(doc["eventId"], []).append(doc)
    for event_id, docs in by_event.items():
        session_ids = sorted({doc["subject"] for doc in docs if doc["topic"] in SESSION_TOPICS})
        items = await _session_items(db, event_id, session_ids) if session_ids else {}
        wants_summary = any(doc["topic"] == EVENT_UPDATED for doc in docs)
        summary = await event_summary(db, event_id) if wants_summary else None
        for doc in docs:
            if doc["topic"] in SESSION_TOPICS and doc["subject"] in items:
                payloads[doc["_id"]] = items[doc["subject"]]
            elif doc["topic"] == EVENT_UPDATED and summary is not None:
                payloads[doc["_id"]] = summary
            elif doc["topic"] == RECOMPUTE_FINISHED:
                payloads[doc["_id"]] = _json_ready(dict(doc.get("data") or {}))
    return payloads


def _json_ready(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: _utc(value) if isinstance(value, datetime) else value for key, value in fields.items()}


async def _session_items(db: Database, event_id: str, session_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The sessions as the list shows them (with duration and watchTime), JSON-ready."""
    event = await db.events.find_one({"_id": event_id}, {"timezone": 1})
    zone = event.get("timezone") if event is not None else None
    docs = await db.sessions.find({"_id": {"$in": session_ids}}, ITEM_FIELDS).to_list(None)
    return {doc["_id"]: _json_ready(item_fields(doc, FULL_ITEM, zone)) for doc in docs}


def _utc(moment: datetime) -> str:
    return str(format_utc(moment))


# --- sending ----------------------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """Resolves as the SSRF guard allows: the connection goes only to addresses it checked."""

    def __init__(self, settings: Settings, url: URL) -> None:
        self.settings = settings
        self.url = url

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await checked_addresses(self.url, self.settings)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class Attempt:
    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    refused: bool = False


async def _send_due(db: Database, settings: Settings, endpoint: WebhookDoc, result: RunResult) -> None:
    deadline = time.monotonic() + RUN_BUDGET_S
    signer = Webhook(endpoint["secret"])
    while time.monotonic() < deadline:
        due = (
            await db.webhook_deliveries.find(
                {"webhookId": endpoint["_id"], "status": PENDING, "nextAttemptAt": {"$lte": now()}}
            )
            .sort([("createdAt", 1), ("_id", 1)])
            .limit(ATTEMPTS_PER_READ)
            .to_list(None)
        )
        if not due:
            return
        for message in due:
            if time.monotonic() >= deadline:
                return
            attempt = await send(settings, endpoint["url"], signer, message)
            if await _record(db, settings, endpoint, message, attempt):
                result.delivered += 1
            else:
                result.failed += 1
                if await _disabled(db, endpoint["_id"]):
                    return


async def send(settings: Settings, url_text: str, signer: Webhook, message: WebhookDeliveryDoc) -> Attempt:
    """One signed attempt of a message; never raises for what the receiver or the network does."""
    body = orjson.dumps(message["payload"]).decode()
    moment = now()
    headers = {
        "webhook-id": message["_id"],
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signer.sign(message["_id"], moment, body),
        "Content-Type": "application/json",
        "User-Agent": "session-analytics-webhooks",
    }
    try:
        url = endpoint_url(url_text, settings)
        await checked_addresses(url, settings)  # IP literals never reach the resolver
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(settings, url), use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_s)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
            http.post(url, data=body.encode(), headers=headers, allow_redirects=False) as answer,
        ):
            await answer.read()
            if 200 <= answer.status < 300:
                return Attempt(ok=True, status=answer.status)
            return Attempt(
                ok=False,
                status=answer.status,
                error=f"answered {answer.status}",
                retry_after_s=_retry_after(answer.headers.get("Retry-After")),
            )
    except UrlRefused as err:
        log.warning("webhook delivery %s refused: %s", message["_id"], err.developer_message)
        return Attempt(ok=False, error=f"refused: {err.developer_message}"[:MAX_ERROR], refused=True)
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        return Attempt(ok=False, error=f"{type(err).__name__}: {err}"[:MAX_ERROR])


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (an HTTP date is turned into seconds from now)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, (parsedate_to_datetime(value) - now()).total_seconds())
    except (TypeError, ValueError):
        return None


def backoff_s(settings: Settings, attempts: int, retry_after_s: float | None) -> float:
    """Capped, jittered exponential backoff after `attempts` failures; at least `Retry-After`."""
    ceiling = min(settings.webhook_backoff_cap_s, settings.webhook_backoff_base_s * 2 ** (attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, settings.webhook_backoff_cap_s))
    return delay


async def _record(
    db: Database, settings: Settings, endpoint: WebhookDoc, message: WebhookDeliveryDoc, attempt: Attempt
) -> bool:
    moment = now()
    attempts = message.get("attempts", 0) + 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "responseStatus": attempt.status,
        "error": attempt.error,
        "lastAttemptAt": moment,
    }
    if attempt.ok:
        DELIVERIES.labels(message["topic"], "delivered").inc()
        LAG.observe(max(0.0, (moment - message.get("changedAt", moment)).total_seconds()))
        fields |= {"status": DELIVERED, "deliveredAt": moment, "nextAttemptAt": None}
        await db.webhook_deliveries.update_one({"_id": message["_id"]}, {"$set": fields})
        await db.webhooks.update_one({"_id": endpoint["_id"]}, {"$set": {"failingSince": None}})
        return True
    DELIVERIES.labels(message["topic"], "refused" if attempt.refused else "failed").inc()
    await db.webhooks.update_one(
        {"_id": endpoint["_id"], "failingSince": None}, {"$set": {"failingSince": moment}}
    )
    failing = await db.webhooks.find_one({"_id": endpoint["_id"]}, {"failingSince": 1})
    since = (failing.get("failingSince") if failing is not None else None) or moment
    if (moment - since).total_seconds() >= settings.webhook_retry_window_s:
        fields |= {"status": FAILED, "nextAttemptAt": None}
        await db.webhook_deliveries.update_one({"_id": message["_id"]}, {"$set": fields})
        await _disable(db, endpoint, since, attempt, message["topic"])
        return False
    delay = backoff_s(settings, attempts, attempt.retry_after_s)
    fields["nextAttemptAt"] = moment + timedelta(seconds=delay)
    await db.webhook_deliveries.update_one({"_id": message["_id"]}, {"$set": fields})
    return False


async def _disable(db: Database, endpoint: WebhookDoc, since: datetime, attempt: Attempt, topic: str) -> None:
    reason = f"every delivery failed since {_utc(since)}; the last: {attempt.error}"[:MAX_ERROR]
    await db.webhooks.update_one(
        {"_id": endpoint["_id"]}, {"$set": {"disabled": True, "disabledAt": now(), "disabledReason": reason}}
    )
    await db.webhook_deliveries.update_many(
        {"webhookId": endpoint["_id"], "status": PENDING},
        {"$set": {"status": FAILED, "nextAttemptAt": None, "error": "endpoint disabled"}},
    )
    DELIVERIES.labels(topic, "disabled").inc()
    log.warning("webhook %s disabled: %s", endpoint["_id"], reason)


async def _disabled(db: Database, webhook_id: str) -> bool:
    doc = await db.webhooks.find_one({"_id": webhook_id}, {"disabled": 1})
    return doc is None or bool(doc.get("disabled"))


async def _next_work_in(db: Database, settings: Settings, webhook_id: str) -> float | None:
    """Seconds until this endpoint has something to make or send; None when nothing waits."""
    moment = now()
    waits: list[float] = []
    nxt = (
        await db.webhook_deliveries.find({"webhookId": webhook_id, "status": PENDING}, {"nextAttemptAt": 1})
        .sort("nextAttemptAt", 1)
        .limit(1)
        .to_list(None)
    )
    next_attempt = nxt[0].get("nextAttemptAt") if nxt else None
    if next_attempt is not None:
        waits.append((next_attempt - moment).total_seconds())
    spacing = timedelta(seconds=settings.webhook_min_interval_s)
    dirty = await db.webhook_outbox.find({"webhookId": webhook_id, "dirty": True}, {"sentAt": 1}).to_list(
        None
    )
    for doc in dirty:
        sent = doc.get("sentAt")
        waits.append(0.0 if sent is None else (sent + spacing - moment).total_seconds())
    return max(0.0, min(waits)) if waits else None


# --- the beat sweep ---------------------------------------------------------------------------


async def endpoints_due(db: Database) -> list[str]:
    """Endpoints with a message due or a change waiting: the safety net for lost signals."""
    due = await db.webhook_deliveries.distinct(
        "webhookId", {"status": PENDING, "nextAttemptAt": {"$lte": now()}}
    )
    dirty = await db.webhook_outbox.distinct("webhookId", {"dirty": True})
    return sorted({*map(str, due), *map(str, dirty)})


async def forget_old_deliveries(db: Database, settings: Settings) -> int:
    """Finished messages leave the log after WEBHOOK_LOG_RETENTION_S (no TTL index: DESIGN §6)."""
    cutoff = now() - timedelta(seconds=settings.webhook_log_retention_s)
    done = await db.webhook_deliveries.delete_many(
        {"createdAt": {"$lt": cutoff}, "status": {"$in": [DELIVERED, FAILED, SUPERSEDED]}}
    )
    return int(done.deleted_count)


async def run_until_idle(
    db: Database, settings: Settings, webhook_id: str, horizon_s: float = 60.0
) -> RunResult:
    """Delivery runs until nothing is due within `horizon_s` (the embedded demo, tests)."""
    total = RunResult()
    while True:
        result = await deliver_webhook(db, settings, webhook_id)
        total.delivered += result.delivered
        total.failed += result.failed
        total.next_in_s = result.next_in_s
        if result.next_in_s is None or result.next_in_s > horizon_s:
            return total
        await asyncio.sleep(result.next_in_s)
