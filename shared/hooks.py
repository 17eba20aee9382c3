"""The one hook of DESIGN §5: a rollup, recompute or duration sync has written an event's numbers.

Both consumers start here: the live feed (shared/live.py, read by the event stream) gets one
entry naming the changed sessions, and the webhook outbox (shared/webhooks.py) marks every
endpoint concerned, whose delivery run is then signalled. The hook never fails its caller: the
numbers are written already, and the beat sweep delivers what a lost signal left.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

import orjson

from shared.audience import event_summary_answer
from shared.db import Database
from shared.live import LiveFeed, RedisFeed, memory_feed
from shared.models import format_utc
from shared.settings import Settings
from shared.tasks import CeleryTaskQueue, TaskName, TaskQueue, webhook_signal_key
from shared.webhooks import record_changes

log = logging.getLogger(__name__)

PAUSE_S = 5.0  # after Redis failed the hook, it skips the live feed this long

_queue_override: TaskQueue | None = None
_paused_until: dict[str, float] = {}  # by Redis URL
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


async def analytics_written(
    db: Database, settings: Settings, event_id: str, session_ids: list[str], *, kind: str
) -> None:
    """Tell the event stream and the webhooks that these sessions' numbers changed; never raises
    (CancelledError excepted)."""
    ids = sorted(set(session_ids))
    if not ids and kind != "recompute":
        return
    if settings.embedded or time.monotonic() >= _paused_until.get(settings.redis_url, 0.0):
        try:
            await live_feed(settings).publish(
                event_id, {"kind": kind, "sessions": orjson.dumps(ids).decode()}
            )
        except Exception as err:  # Redis away: clients catch up from the stored numbers on reconnect
            _paused_until[settings.redis_url] = time.monotonic() + PAUSE_S
            log.warning("live feed of event %s not written: %s", event_id, type(err).__name__)
    try:
        for webhook_id in await record_changes(db, settings, event_id, ids, kind, with_event=True):
            await _signal_delivery(settings, webhook_id)
    except Exception as err:  # the beat sweep finds the outbox and the deliveries due
        log.warning("webhooks of event %s not queued: %s", event_id, type(err).__name__)


async def event_summary(db: Database, event_id: str) -> dict[str, Any] | None:
    """The event summary as GET /rest/host/event/{eventId}/analytics answers it (times in
    the API's spelling); None for an event that is gone."""
    event = await db.events.find_one({"_id": event_id}, {"timezone": 1})
    if event is None:
        return None
    answer = await event_summary_answer(db, event_id, event.get("timezone") or "UTC")
    for name in ("peakAt", "analyticsUpdatedAt"):
        answer[name] = format_utc(answer[name])
    return answer


def use_task_queue(queue: TaskQueue | None) -> None:
    """Send delivery signals through this queue (the embedded demo's runner, tests); None: Celery."""
    global _queue_override
    _queue_override = queue


def _loop_state() -> dict[tuple[str, ...], Any]:
    """Clients of this event loop: a worker process keeps one loop, a test one per test."""
    return _per_loop.setdefault(asyncio.get_running_loop(), {})


def live_feed(settings: Settings) -> LiveFeed:
    """The live feed of the settings' database: Redis, or the in-process one when embedded."""
    namespace = settings.mongodb_database_name
    if settings.embedded:
        return memory_feed(namespace, settings.stream_replay)
    state = _loop_state()
    key = ("feed", settings.redis_url, namespace)
    if key not in state:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        state[key] = RedisFeed(client, namespace, settings.stream_replay)
    feed: LiveFeed = state[key]
    return feed


def _task_queue(settings: Settings) -> TaskQueue:
    if _queue_override is not None:
        return _queue_override
    state = _loop_state()
    key = ("queue", settings.redis_url)
    if key not in state:
        state[key] = CeleryTaskQueue(settings.redis_url)
    queue: TaskQueue = state[key]
    return queue


async def _signal_delivery(settings: Settings, webhook_id: str) -> None:
    await _task_queue(settings).enqueue_debounced(
        TaskName.DELIVER_WEBHOOKS,
        key=webhook_signal_key(webhook_id),
        kwargs={"webhook_id": webhook_id},
        delay_s=settings.webhook_debounce_s,
    )
