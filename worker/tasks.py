"""Celery tasks: thin wrappers that take ids, run the async job on this process's loop, return."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, TypedDict

import redis
from celery import Task
from celery.signals import (
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout

from shared.inbox import settle_intents
from shared.jobs import Begin, Start, begin_recompute, sweep_recomputes
from shared.logs import task_id_var
from shared.settings import get_settings
from shared.tasks import SIGNAL_HOLD_S, TaskKwargs, TaskName, rollup_signal_key, webhook_signal_key
from worker import app, metrics
from worker.cleanup import cleanup_expired
from worker.durations import sync_durations, sync_event_durations
from worker.rollup import events_with_work, recompute_event, rollup_event
from worker.runtime import WorkerRuntime, run, runtime
from worker.webhooks import deliver_webhook, endpoints_due, forget_old_deliveries

log = logging.getLogger(__name__)

# Only errors that mean "try again later" are retried; a bug fails once, loudly.
TRANSIENT = (ConnectionFailure, NetworkTimeout, ExecutionTimeout, OSError)


class _RetryOptions(TypedDict):
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int


RETRY: _RetryOptions = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@task_prerun.connect
def _bind_task_id(task_id: str | None = None, **_: Any) -> None:
    task_id_var.set(task_id)
    if task_id is not None:
        metrics.task_started(task_id)


@task_postrun.connect
def _unbind_task_id(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    task_id_var.set(None)
    if task_id is not None and task is not None:
        metrics.task_finished(task.name, task_id, state)


@task_retry.connect
def _count_retry(sender: Any = None, **_: Any) -> None:
    if sender is not None:
        metrics.task_retried(sender.name)


@worker_process_init.connect
def _serve_child_metrics(**_: Any) -> None:
    """A prefork child serves its metrics on WORKER_METRICS_PORT + its pool index."""
    from shared.settings import get_settings

    metrics.serve(get_settings().worker_metrics_port, metrics.pool_index())


@worker_init.connect
def _serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    """Solo and thread pools run tasks in the main process, which then serves the metrics."""
    from shared.settings import get_settings

    pool = getattr(sender, "pool_cls", "")
    if "prefork" not in str(getattr(pool, "__module__", pool)):
        metrics.serve(get_settings().worker_metrics_port)


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
        await settle_intents(rt.db, rt.settings)  # items stored by requests whose last write failed
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
def recompute_event_task(self: Task[[str], dict[str, Any]], event_id: str) -> dict[str, Any]:
    """Runs the recompute unless it is done or alive on another worker; renews its heartbeat."""
    task_id = self.request.id
    assert task_id is not None  # Celery gives every task it runs an id
    run_id = uuid.uuid4().hex
    rt = runtime()

    async def begin(rt: WorkerRuntime) -> Begin:
        return await begin_recompute(
            rt.db, task_id, event_id, run_id, self.request.hostname or "", rt.settings.recompute_stale_s
        )

    started = rt.run(begin)
    if started.outcome == Start.DONE:
        log.info("recompute %s of event %s: already finished or replaced; nothing to do", task_id, event_id)
        return {}
    if started.outcome == Start.BUSY:
        log.info(
            "recompute %s of event %s runs on a live worker; looking again in %.0fs",
            task_id,
            event_id,
            started.retry_in_s,
        )
        raise self.retry(countdown=started.retry_in_s)

    async def body(rt: WorkerRuntime) -> dict[str, Any]:
        return await recompute_event(rt.db, rt.settings, task_id, event_id, sync_event_durations, run_id)

    with rt.heartbeat(task_id, run_id):
        return rt.run(body)


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


class _AppQueue:
    """Sends tasks from inside a worker through the worker's own Celery app."""

    async def enqueue(self, name: TaskName, *, task_id: str, kwargs: TaskKwargs) -> None:
        from shared.errors import Unavailable

        try:
            await asyncio.to_thread(app.send_task, name.value, kwargs=kwargs, task_id=task_id)
        except Exception as err:  # kombu raises many kinds; all mean "not sent"
            raise Unavailable(f"task broker unreachable: {type(err).__name__}") from err


@app.task(name=TaskName.SWEEP_RECOMPUTES.value, **RETRY)
def sweep_recomputes_task() -> dict[str, list[str]]:
    async def body(rt: WorkerRuntime) -> dict[str, list[str]]:
        report = await sweep_recomputes(rt.db, _AppQueue(), stale_s=rt.settings.recompute_stale_s)
        return {"restarted": report.restarted, "resent": report.resent, "failed": report.failed}

    return run(body)


# A delivery run due later than this is left to the sweep: a countdown past the Redis visibility
# timeout would be handed out more than once.
WEBHOOK_COUNTDOWN_MAX_S = 600.0


@app.task(name=TaskName.DELIVER_WEBHOOKS.value, **RETRY)
def deliver_webhooks_task(webhook_id: str) -> dict[str, Any]:
    """One delivery run of an endpoint (worker/webhooks.py); sends the next one when it is soon."""
    try:
        _signal_client().delete(webhook_signal_key(webhook_id))
    except redis.RedisError as err:  # the key expires by itself
        log.warning("could not clear the delivery signal of %s: %s", webhook_id, type(err).__name__)

    async def body(rt: WorkerRuntime) -> dict[str, Any]:
        return (await deliver_webhook(rt.db, rt.settings, webhook_id)).as_dict()

    result: dict[str, Any] = run(body)
    wait = result["nextInS"]
    if wait is not None and wait <= WEBHOOK_COUNTDOWN_MAX_S:
        deliver_webhooks_task.apply_async(kwargs={"webhook_id": webhook_id}, countdown=wait)
    return result


@app.task(name=TaskName.SWEEP_WEBHOOKS.value, **RETRY)
def sweep_webhooks_task() -> dict[str, int]:
    """Send a delivery run to every endpoint with work whose signal was lost; trim the log."""

    async def body(rt: WorkerRuntime) -> tuple[list[str], int]:
        return await endpoints_due(rt.db), await forget_old_deliveries(rt.db, rt.settings)

    endpoints, forgotten = run(body)
    for webhook_id in endpoints:
        deliver_webhooks_task.apply_async(kwargs={"webhook_id": webhook_id})
    return {"endpoints": len(endpoints), "forgotten": forgotten}
