"""Task names, queues, and the client that enqueues them; web never imports worker code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any, Protocol

from shared.errors import Unavailable

log = logging.getLogger(__name__)


class Queue(StrEnum):
    DEFAULT = "default"
    # Provider polling waits on the network; it gets its own queue so rollups never queue behind it.
    PROVIDERS = "providers"


class TaskName(StrEnum):
    ROLLUP_PENDING = "analytics.rollup_pending"
    RECOMPUTE_EVENT = "analytics.recompute_event"
    SYNC_DURATIONS = "providers.sync_durations"
    CLEANUP_EXPIRED = "auth.cleanup_expired"
    SWEEP_RECOMPUTES = "analytics.sweep_recomputes"


def task_routes() -> dict[str, dict[str, str]]:
    """Where each task goes; tasks not named here go to the default queue."""
    return {TaskName.SYNC_DURATIONS.value: {"queue": Queue.PROVIDERS.value}}


class TaskQueue(Protocol):
    async def enqueue(self, name: TaskName, *, task_id: str, kwargs: dict[str, Any]) -> None: ...

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
        self._redis: Any = None

    def _send(self, name: str, task_id: str, kwargs: dict[str, Any]) -> None:
        self._celery.send_task(name, kwargs=kwargs, task_id=task_id, retry=False)

    async def enqueue(self, name: TaskName, *, task_id: str, kwargs: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                await asyncio.to_thread(self._send, name.value, task_id, kwargs)
        except Exception as err:  # kombu raises many kinds; all mean "not enqueued"
            raise Unavailable(f"task broker unreachable: {type(err).__name__}") from err

    def _client(self) -> Any:
        import redis.asyncio as aioredis

        if self._redis is None:
            self._redis = aioredis.from_url(
                self._redis_url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
            )
        return self._redis

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


TaskRunner = Callable[..., Coroutine[Any, Any, Any]]


class InProcessTaskQueue:
    """The embedded runner of `demo`: runs each task as an asyncio task of this process."""

    def __init__(self, runners: dict[TaskName, TaskRunner]) -> None:
        self._runners = runners
        self._running: set[asyncio.Task[Any]] = set()

    async def enqueue(self, name: TaskName, *, task_id: str, kwargs: dict[str, Any]) -> None:
        runner = self._runners[name]
        task = asyncio.create_task(runner(task_id=task_id, **kwargs))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("in-process task failed", exc_info=task.exception())

    async def ping(self) -> None:
        return None

    async def queue_lengths(self) -> dict[str, int]:
        """Tasks of this process not finished yet (all on one queue: there are no others)."""
        return {Queue.DEFAULT.value: len(self._running), Queue.PROVIDERS.value: 0}

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
