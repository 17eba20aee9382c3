"""Celery tasks: thin wrappers that take ids, run the async job on this process's loop, return."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import task_postrun, task_prerun, worker_process_shutdown
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout

from shared.logs import task_id_var
from shared.tasks import TaskName
from worker import app
from worker.cleanup import cleanup_expired
from worker.durations import sync_durations, sync_event_durations
from worker.rollup import recompute_event, rollup_pending
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


@app.task(name=TaskName.ROLLUP_PENDING.value, **RETRY)
def rollup_pending_task() -> dict[str, int]:
    async def body(rt: WorkerRuntime) -> dict[str, int]:
        return await rollup_pending(rt.db, rt.settings)

    return run(body)


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
