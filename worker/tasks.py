"""Celery tasks: thin wrappers that take ids, run the async job on this process's loop, return."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task
from celery.signals import task_postrun, task_prerun, worker_process_shutdown
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout

from shared.logs import task_id_var
from shared.settings import get_settings
from shared.tasks import SIGNAL_HOLD_S, TaskName, rollup_signal_key
from worker import app
from worker.cleanup import cleanup_expired
from worker.durations import sync_durations, sync_event_durations
from worker.rollup import events_with_work, recompute_event, rollup_event
from worker.runtime import WorkerRuntime, run

log = logging.getLogger(__name__)

# Only errors that mean "try again later" are retried; a bug fails once, loudly.
TRANSIENT = (ConnectionFailure, NetworkTimeout, ExecutionTimeout, OSError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@task_prerun.connect
def _bind_task_id(task_id: str | None = None, **_: Any) -> None:
    task_id_var.set(task_id)


@task_postrun.connect
def _unbind_task_id(**_: Any) -> None:
    task_id_var.set(None)


@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    from worker import runtime as runtime_module

    if runtime_module._runtime is not None:
        runtime_module._runtime.close()


_signals: redis.Redis | None = None


def _signal_client() -> redis.Redis:
    global _signals
    if _signals is None:
        _signals = redis.Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)
    return _signals


def _signal_rollup(event_id: str, delay_s: float = 0.0) -> None:
    """Send a rollup of the event unless one is already on its way (the key ingestion sets)."""
    try:
        if _signal_client().set(rollup_signal_key(event_id), "1", nx=True, ex=SIGNAL_HOLD_S):
            rollup_event_task.apply_async(kwargs={"event_id": event_id}, countdown=delay_s)
    except Exception as err:  # the broker is away: the next beat tick finds the event again
        log.warning("could not send the rollup of %s: %s", event_id, type(err).__name__)


@app.task(name=TaskName.ROLLUP_PENDING.value, **RETRY)
def rollup_pending_task() -> dict[str, int]:
    """The beat tick: one rollup task per event with input waiting, for signals that were lost."""

    async def body(rt: WorkerRuntime) -> list[str]:
        return await events_with_work(rt.db)

    events = run(body)
    for event_id in events:
        _signal_rollup(event_id)
    return {"events": len(events)}


@app.task(name=TaskName.ROLLUP_EVENT.value, **RETRY)
def rollup_event_task(event_id: str) -> dict[str, Any]:
    """Fold one event's new input (bounded work); what is left goes to a new task."""
    # Deleted before the inbox is read: an item queued from now on sends a task of its own.
    try:
        _signal_client().delete(rollup_signal_key(event_id))
    except redis.RedisError as err:  # the key expires by itself
        log.warning("could not clear the rollup signal of %s: %s", event_id, type(err).__name__)

    async def body(rt: WorkerRuntime) -> dict[str, Any]:
        return (await rollup_event(rt.db, rt.settings, event_id)).as_dict()

    result: dict[str, Any] = run(body)
    if result["more"]:
        _signal_rollup(event_id)
    return result


@app.task(name=TaskName.RECOMPUTE_EVENT.value, bind=True, **RETRY)
def recompute_event_task(self: Task, event_id: str) -> dict[str, Any]:
    task_id = self.request.id

    async def body(rt: WorkerRuntime) -> dict[str, Any]:
        return await recompute_event(rt.db, rt.settings, task_id, event_id, sync_event_durations)

    return run(body)


@app.task(name=TaskName.SYNC_DURATIONS.value, **RETRY)
def sync_durations_task() -> dict[str, Any]:
    async def body(rt: WorkerRuntime) -> dict[str, Any]:
        return await sync_durations(rt.db, rt.settings)

    return run(body)


@app.task(name=TaskName.CLEANUP_EXPIRED.value, **RETRY)
def cleanup_expired_task() -> dict[str, int]:
    async def body(rt: WorkerRuntime) -> dict[str, int]:
        return await cleanup_expired(rt.db)

    return run(body)
