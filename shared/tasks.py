"""Task names, queues, and the client that enqueues them; web never imports worker code."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from shared.errors import Unavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

# A task takes ids only (it re-reads what it needs), by keyword.
TaskKwargs = dict[str, str]

log = logging.getLogger(__name__)

SIGNAL_PAUSE_S = 5.0  # after a failed signal, ingestion skips signalling this long


class Queue(StrEnum):
    DEFAULT = "default"
    # Provider polling waits on the network; it gets its own queue so rollups never queue behind it.
    PROVIDERS = "providers"
    # Webhook deliveries wait on the hosts' endpoints: neither rollups nor provider polling
    # queue behind a slow receiver.
    WEBHOOKS = "webhooks"


class TaskName(StrEnum):
    ROLLUP_PENDING = "analytics.rollup_pending"
    ROLLUP_EVENT = "analytics.rollup_event"
    RECOMPUTE_EVENT = "analytics.recompute_event"
    SYNC_DURATIONS = "providers.sync_durations"
    CLEANUP_EXPIRED = "auth.cleanup_expired"
    SWEEP_RECOMPUTES = "analytics.sweep_recomputes"
    DELIVER_WEBHOOKS = "webhooks.deliver"
    SWEEP_WEBHOOKS = "webhooks.sweep"


def task_routes() -> dict[str, dict[str, str]]:
    """Where each task goes; tasks not named here go to the default queue."""
    return {
        TaskName.SYNC_DURATIONS.value: {"queue": Queue.PROVIDERS.value},
        TaskName.DELIVER_WEBHOOKS.value: {"queue": Queue.WEBHOOKS.value},
    }


SIGNAL_HOLD_S = 30  # a signal key outlives a lost task by at most this; the beat tick covers that


def webhook_signal_key(webhook_id: str) -> str:
    """Set while a delivery run of the endpoint is on its way; the task deletes it before it reads."""
    return f"session-analytics:webhook-signal:{webhook_id}"


def rollup_signal_key(event_id: str) -> str:
    """Set while a rollup of the event is on its way; the task deletes it before it reads."""
    return f"session-analytics:rollup-signal:{event_id}"


class TaskSender(Protocol):
    async def enqueue(self, name: TaskName, *, task_id: str, kwargs: TaskKwargs) -> None: ...


class TaskQueue(TaskSender, Protocol):
    async def enqueue_debounced(
        self, name: TaskName, *, key: str, kwargs: TaskKwargs, delay_s: float
    ) -> bool: ...

    async def ping(self) -> None: ...

    async def queue_lengths(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


class CeleryTaskQueue:
    """Sends tasks by name through the Redis broker; fails fast with Unavailable when it is down."""

    def __init__(self, redis_url: str, timeout_s: float = 2.0) -> None:
        from celery import Celery

        self._timeout_s = timeout_s
        self._redis_url = redis_url
        # Send-only, no result backend: task state lives in MongoDB.
        self._celery = Celery("session-analytics-client", broker=redis_url)
        self._celery.conf.update(
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            broker_transport_options={
                "max_retries": 0,
                "socket_timeout": timeout_s,
                "socket_connect_timeout": timeout_s,
            },
            task_routes=task_routes(),
            task_default_queue=Queue.DEFAULT.value,
            task_send_sent_event=True,
        )
        self._redis: Redis | None = None
        self._signals_paused_until = 0.0

    def _send(self, name: str, task_id: str, kwargs: TaskKwargs) -> None:
        self._celery.send_task(name, kwargs=kwargs, task_id=task_id, retry=False)

    async def enqueue(self, name: TaskName, *, task_id: str, kwargs: TaskKwargs) -> None:
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                await asyncio.to_thread(self._send, name.value, task_id, kwargs)
        except Exception as err:  # kombu raises many kinds; all mean "not enqueued"
            raise Unavailable(f"task broker unreachable: {type(err).__name__}") from err

    def _client(self) -> Redis:
        import redis.asyncio as aioredis

        if self._redis is None:
            self._redis = aioredis.from_url(
                self._redis_url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
            )
        return self._redis

    async def enqueue_debounced(
        self, name: TaskName, *, key: str, kwargs: TaskKwargs, delay_s: float
    ) -> bool:
        """Send `name` in `delay_s` unless one with this key is already on its way; never raises.

        Whatever happens after this call (a new item queued, say) is seen by a task sent for the
        key: a task deletes its key before it reads. When Redis is unreachable nothing is sent
        (False) and the beat tick is the safety net; signalling then pauses for a few seconds
        so that every request does not wait for the same timeout.
        """
        if time.monotonic() < self._signals_paused_until:
            return False
        try:
            async with asyncio.timeout(self._timeout_s):
                if not await self._client().set(key, "1", nx=True, ex=SIGNAL_HOLD_S):
                    return True  # a task for this key is on its way
                try:
                    await asyncio.to_thread(self._send_later, name.value, kwargs, delay_s)
                except Exception:
                    await self._client().delete(key)  # let the next caller try again
                    raise
            return True
        except Exception as err:  # Redis or kombu, any kind: not sent
            self._signals_paused_until = time.monotonic() + SIGNAL_PAUSE_S
            log.warning("could not signal %s (%s); the beat tick will run it", name.value, type(err).__name__)
            return False

    def _send_later(self, name: str, kwargs: TaskKwargs, delay_s: float) -> None:
        self._celery.send_task(name, kwargs=kwargs, countdown=delay_s, retry=False)

    async def ping(self) -> None:
        try:
            await self._client().ping()
        except Exception as err:
            raise Unavailable(f"redis unreachable: {type(err).__name__}") from err

    async def queue_lengths(self) -> dict[str, int]:
        """Messages waiting in each queue (the Redis transport keeps a queue as a list of its name)."""
        try:
            async with self._client().pipeline(transaction=False) as pipe:
                for queue in Queue:
                    pipe.llen(queue.value)
                lengths = await pipe.execute()
        except Exception as err:
            raise Unavailable(f"redis unreachable: {type(err).__name__}") from err
        return {queue.value: int(length) for queue, length in zip(Queue, lengths, strict=True)}

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        await asyncio.to_thread(self._celery.close)


TaskRunner = Callable[..., Coroutine[None, None, object]]


class InProcessTaskQueue:
    """The embedded runner of `demo`: runs each task as an asyncio task of this process."""

    def __init__(self, runners: dict[TaskName, TaskRunner]) -> None:
        self._runners = runners
        self._running: set[asyncio.Task[object]] = set()
        self._signalled: set[str] = set()

    async def enqueue_debounced(
        self, name: TaskName, *, key: str, kwargs: TaskKwargs, delay_s: float
    ) -> bool:
        if key in self._signalled or name not in self._runners:
            return True
        self._signalled.add(key)

        async def later() -> object:
            await asyncio.sleep(delay_s)
            self._signalled.discard(key)  # before the task reads, as a worker does
            return await self._runners[name](task_id=key, **kwargs)

        task = asyncio.create_task(later())
        self._running.add(task)
        task.add_done_callback(self._done)
        return True

    async def enqueue(self, name: TaskName, *, task_id: str, kwargs: TaskKwargs) -> None:
        runner = self._runners[name]
        task = asyncio.create_task(runner(task_id=task_id, **kwargs))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("in-process task failed", exc_info=task.exception())

    async def ping(self) -> None:
        return None

    async def queue_lengths(self) -> dict[str, int]:
        """Tasks of this process not finished yet (all on one queue: there are no others)."""
        return {Queue.DEFAULT.value: len(self._running), Queue.PROVIDERS.value: 0, Queue.WEBHOOKS.value: 0}

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
