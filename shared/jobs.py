"""Admin-triggered jobs (recomputes): their stored state, progress, and one-per-event claim."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.db import Database
from shared.models import format_utc
from shared.store import now

PENDING, STARTED, SUCCESS, FAILURE = "PENDING", "STARTED", "SUCCESS", "FAILURE"
TERMINAL = frozenset({SUCCESS, FAILURE})


def _is_live(task: dict[str, Any] | None, stale_s: int) -> bool:
    if task is None or task["state"] in TERMINAL:
        return False
    return task["heartbeatAt"] > now() - timedelta(seconds=stale_s)


async def claim_recompute(db: Database, event_id: str, stale_s: int) -> tuple[dict[str, Any], bool]:
    """The running recompute of an event, or a new PENDING one; True when it is new.

    A lock document per event names the task that holds it; a task that finished, or whose
    worker stopped sending heartbeats for `stale_s`, no longer holds it.
    """
    for _ in range(5):
        lock = await db.recompute_locks.find_one({"_id": event_id})
        if lock is not None:
            current = await db.tasks.find_one({"_id": lock["taskId"]})
            if current is not None and _is_live(current, stale_s):
                return current, False
        task = {
            "_id": uuid.uuid4().hex,
            "kind": "recompute",
            "eventId": event_id,
            "state": PENDING,
            "progress": {"done": 0, "total": 0},
            "result": None,
            "error": None,
            "createdAt": now(),
            "heartbeatAt": now(),
        }
        if lock is None:
            try:
                await db.recompute_locks.insert_one({"_id": event_id, "taskId": task["_id"]})
            except DuplicateKeyError:
                continue
        else:
            swapped = await db.recompute_locks.update_one(
                {"_id": event_id, "taskId": lock["taskId"]}, {"$set": {"taskId": task["_id"]}}
            )
            if swapped.modified_count != 1:
                continue
        await db.tasks.insert_one(task)
        return task, True
    raise RuntimeError("could not claim the recompute lock")  # pragma: no cover


async def recompute_running(db: Database, event_id: str, stale_s: int) -> bool:
    """Whether a live recompute holds the event (rollups leave such an event alone)."""
    lock = await db.recompute_locks.find_one({"_id": event_id})
    if lock is None:
        return False
    return _is_live(await db.tasks.find_one({"_id": lock["taskId"]}), stale_s)


async def release_recompute(db: Database, event_id: str, task_id: str) -> None:
    await db.recompute_locks.delete_one({"_id": event_id, "taskId": task_id})


async def update_task(db: Database, task_id: str, **fields: Any) -> None:
    await db.tasks.update_one({"_id": task_id}, {"$set": {**fields, "heartbeatAt": now()}})


def task_view(task: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "taskId": task["_id"],
        "eventId": task["eventId"],
        "kind": task.get("kind", "recompute"),
        "state": task["state"],
        "status": task["state"],
        "progress": {"done": task["progress"]["done"], "total": task["progress"]["total"]},
        "createdAt": format_utc(task.get("createdAt")),
        "updatedAt": format_utc(task.get("heartbeatAt")),
    }
    if task["state"] == SUCCESS:
        view["result"] = task.get("result")
    if task["state"] == FAILURE:
        view["error"] = task.get("error")
    return view


async def start_recompute(
    db: Database, queue: Any, event_id: str, stale_s: int
) -> tuple[dict[str, Any], bool]:
    """The event's running recompute, or a new one handed to the workers; True when new.

    When the broker cannot take it, the new task is marked failed and the event freed, and
    Unavailable propagates: the caller answers 503 and nothing is left half-started.
    """
    from shared.errors import Unavailable
    from shared.tasks import TaskName

    task, created = await claim_recompute(db, event_id, stale_s)
    if created:
        try:
            await queue.enqueue(TaskName.RECOMPUTE_EVENT, task_id=task["_id"], kwargs={"event_id": event_id})
        except Unavailable:
            await update_task(db, task["_id"], state=FAILURE, error="task broker unreachable")
            await release_recompute(db, event_id, task["_id"])
            raise
    return task, created
