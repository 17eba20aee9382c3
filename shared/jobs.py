"""Admin-triggered jobs (recomputes): their stored state, progress, one-per-event claim, liveness.

A running recompute renews `heartbeatAt` every few seconds (worker/tasks.py); one whose
heartbeat is older than `recompute_stale_s` belongs to a dead worker: it no longer holds its
event, and the sweep (`sweep_recomputes`, run by beat) sends it again so that another worker
starts it over (a recompute is idempotent). A recompute that no worker took within
a minute (`PICKUP_S`) is sent again, and failed with a reason after `MAX_RESENDS` re-sends.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from pymongo.errors import DuplicateKeyError

from shared.db import Database
from shared.documents import TaskDoc
from shared.store import now

if TYPE_CHECKING:
    from shared.tasks import TaskSender

log = logging.getLogger(__name__)

PENDING, STARTED, SUCCESS, FAILURE = "PENDING", "STARTED", "SUCCESS", "FAILURE"
TERMINAL = frozenset({SUCCESS, FAILURE})
PICKUP_S = 60  # a recompute no worker took within a minute is sent again ...
MAX_RESENDS = 2  # ... twice, then failed with the reason


def _is_live(task: TaskDoc | None, stale_s: float, pickup_s: float | None = None) -> bool:
    """A STARTED task is live while its heartbeat is fresher than `stale_s`; a PENDING one while
    it was sent less than `pickup_s` ago (`stale_s` when not given)."""
    if task is None or task["state"] in TERMINAL:
        return False
    limit = stale_s if task["state"] == STARTED or pickup_s is None else pickup_s
    return bool(task["heartbeatAt"] > now() - timedelta(seconds=limit))


async def claim_recompute(
    db: Database, event_id: str, stale_s: float, pickup_s: float = PICKUP_S
) -> tuple[TaskDoc, bool]:
    """The running recompute of an event, or a new PENDING one; True when it is new.

    A lock document per event names the task that holds it; a task that finished, whose worker
    stopped sending heartbeats for `stale_s`, or that no worker took within `pickup_s`, no
    longer holds it.
    """
    for _ in range(5):
        lock = await db.recompute_locks.find_one({"_id": event_id})
        if lock is not None:
            current = await db.tasks.find_one({"_id": lock["taskId"]})
            if current is not None and _is_live(current, stale_s, pickup_s):
                return current, False
        task: TaskDoc = {
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


async def recompute_running(db: Database, event_id: str, stale_s: float) -> bool:
    """Whether a live recompute holds the event (rollups leave such an event alone).

    Whether it runs or waits to be taken, it holds the event for at most `stale_s` after its
    last heartbeat or sending: a dead worker never holds rollups back for longer.
    """
    lock = await db.recompute_locks.find_one({"_id": event_id})
    if lock is None:
        return False
    return _is_live(await db.tasks.find_one({"_id": lock["taskId"]}), stale_s)


async def count_running_recomputes(db: Database, stale_s: float) -> int:
    """Recomputes running on a live worker, in all events."""
    return int(
        await db.tasks.count_documents(
            {"state": STARTED, "heartbeatAt": {"$gt": now() - timedelta(seconds=stale_s)}}
        )
    )


async def release_recompute(db: Database, event_id: str, task_id: str) -> None:
    await db.recompute_locks.delete_one({"_id": event_id, "taskId": task_id})


def held_by(task_id: str, run_id: str) -> dict[str, str]:
    """The task as long as this run holds it: STARTED by this run, not taken over since."""
    return {"_id": task_id, "runId": run_id, "state": STARTED}


async def take_task(db: Database, task_id: str, run_id: str) -> bool:
    """An unfinished task, taken by a run that did not go through begin_recompute (the demo's
    in-process queue, benchmarks): STARTED by `run_id` from now on."""
    taken = await db.tasks.update_one(
        {"_id": task_id, "state": {"$in": [PENDING, STARTED]}},
        {"$set": {"state": STARTED, "runId": run_id, "heartbeatAt": now()}},
    )
    return bool(taken.matched_count == 1)


async def update_task(db: Database, task_id: str, run_id: str, **fields: object) -> bool:
    """Progress, result or final state of a run, written only while that run holds the task
    (False: another run took it over, or it finished)."""
    held = await db.tasks.update_one(held_by(task_id, run_id), {"$set": {**fields, "heartbeatAt": now()}})
    return bool(held.matched_count == 1)


async def start_recompute(
    db: Database, queue: TaskSender, event_id: str, stale_s: float, pickup_s: float = PICKUP_S
) -> tuple[TaskDoc, bool]:
    """The event's running recompute, or a new one handed to the workers; True when new.

    When the broker cannot take it, the new task is marked failed and the event freed, and
    Unavailable propagates: the caller answers 503 and nothing is left half-started.
    """
    from shared.errors import Unavailable
    from shared.tasks import TaskName

    task, created = await claim_recompute(db, event_id, stale_s, pickup_s)
    if created:
        try:
            await queue.enqueue(TaskName.RECOMPUTE_EVENT, task_id=task["_id"], kwargs={"event_id": event_id})
        except Unavailable:
            await fail_task(db, task["_id"], "task broker unreachable")
            await release_recompute(db, event_id, task["_id"])
            raise
    return task, created


class Start(StrEnum):
    """What a worker that received a recompute message does with it."""

    RUN = "run"  # this worker now runs it
    BUSY = "busy"  # another worker runs it and is alive
    DONE = "done"  # finished, failed, or replaced by a newer recompute: nothing to do


@dataclass(frozen=True, slots=True)
class Begin:
    outcome: Start
    retry_in_s: float = 0.0


async def begin_recompute(
    db: Database, task_id: str, event_id: str, run_id: str, worker: str, stale_s: float
) -> Begin:
    """Take a recompute for this run, unless it is finished, replaced, or alive elsewhere.

    The take is one conditional update: of two workers holding a message for the same task
    (a redelivery and a re-send), exactly one runs it.
    """
    task = await db.tasks.find_one({"_id": task_id})
    if task is None or task["state"] in TERMINAL:
        return Begin(Start.DONE)
    lock = await db.recompute_locks.find_one({"_id": event_id})
    if lock is None or lock["taskId"] != task_id:
        # Unless a run touched it since it was read (it is alive, or it just finished).
        reason = "replaced by a newer recompute of the event"
        await fail_task(db, task_id, reason, heartbeat_at=task["heartbeatAt"])
        return Begin(Start.DONE)
    cutoff = now() - timedelta(seconds=stale_s)
    taken = await db.tasks.update_one(
        {"_id": task_id, "$or": [{"state": PENDING}, {"state": STARTED, "heartbeatAt": {"$lte": cutoff}}]},
        {
            "$set": {"state": STARTED, "runId": run_id, "worker": worker, "heartbeatAt": now()},
            "$inc": {"attempts": 1},
        },
    )
    if taken.modified_count == 1:
        if task["state"] == STARTED:
            log.info("recompute %s: its worker stopped sending heartbeats; starting it over", task_id)
        return Begin(Start.RUN)
    current = await db.tasks.find_one({"_id": task_id}, {"state": 1, "heartbeatAt": 1})
    if current is None or current["state"] in TERMINAL:
        return Begin(Start.DONE)
    age = (now() - current["heartbeatAt"]).total_seconds()
    return Begin(Start.BUSY, max(1.0, stale_s - age + 1.0))


def renew_heartbeat_filter(task_id: str, run_id: str) -> dict[str, str]:
    """The task as long as this run holds it: a heartbeat never revives a task taken over or
    finished. The run's own writes need no turn-taking with it: each update applies to the
    document as it is then (MongoDB's single-document atomicity), and a heartbeat sets
    `heartbeatAt` alone."""
    return held_by(task_id, run_id)


async def fail_task(
    db: Database,
    task_id: str,
    reason: str,
    *,
    run_id: str | None = None,
    heartbeat_at: datetime | None = None,
) -> bool:
    """Mark an unfinished task failed: only while `run_id` holds it when given, and only if its
    `heartbeatAt` is still the one read when given (nobody touched it since). False: not failed."""
    unfinished: dict[str, object] = {"_id": task_id, "state": {"$in": [PENDING, STARTED]}}
    query: dict[str, object] = {**held_by(task_id, run_id)} if run_id is not None else unfinished
    if heartbeat_at is not None:
        query["heartbeatAt"] = heartbeat_at
    failed = await db.tasks.update_one(
        query, {"$set": {"state": FAILURE, "error": reason, "heartbeatAt": now()}}
    )
    return bool(failed.matched_count == 1)


@dataclass(slots=True)
class SweepReport:
    restarted: list[str]
    resent: list[str]
    failed: list[str]


async def sweep_recomputes(
    db: Database,
    queue: TaskSender,
    *,
    stale_s: float,
    pickup_s: float = PICKUP_S,
    max_resends: int = MAX_RESENDS,
    at: datetime | None = None,
) -> SweepReport:
    """Send again every recompute whose worker died or that no worker took; fail the hopeless.

    A re-sent task is PENDING again with a fresh `heartbeatAt` (its sending time), so the next
    sweep leaves it alone until it is overdue once more.
    """
    from shared.errors import Unavailable
    from shared.tasks import TaskName

    moment = at or now()
    report = SweepReport([], [], [])
    overdue = await db.tasks.find(
        {
            "state": {"$in": [PENDING, STARTED]},
            "heartbeatAt": {"$lte": moment - timedelta(seconds=min(stale_s, pickup_s))},
        },
        {"_id": 1, "eventId": 1, "state": 1, "heartbeatAt": 1, "resends": 1},
    ).to_list(1000)
    for task in overdue:
        task_id, event_id = task["_id"], task["eventId"]
        age = (moment - task["heartbeatAt"]).total_seconds()
        if task["state"] == PENDING and age <= pickup_s:
            continue
        lock = await db.recompute_locks.find_one({"_id": event_id})
        if lock is None or lock["taskId"] != task_id:
            reason = "replaced by a newer recompute of the event"
            await fail_task(db, task_id, reason, heartbeat_at=task["heartbeatAt"])
            continue
        resends = int(task.get("resends") or 0)
        if task["state"] == PENDING:
            if resends >= max_resends:
                reason = (
                    f"no worker took the task within {pickup_s:.0f}s, {resends + 1} times; "
                    "is a worker running and consuming the default queue?"
                )
                log.warning("recompute %s of event %s: %s", task_id, event_id, reason)
                if await fail_task(db, task_id, reason, heartbeat_at=task["heartbeatAt"]):
                    await release_recompute(db, event_id, task_id)
                    report.failed.append(task_id)
                continue
            log.info(
                "recompute %s of event %s: no worker took it within %.0fs; sending it again",
                task_id,
                event_id,
                pickup_s,
            )
            update: dict[str, dict[str, object]] = {"$set": {"heartbeatAt": now()}, "$inc": {"resends": 1}}
            report.resent.append(task_id)
        else:
            log.info(
                "recompute %s of event %s: no heartbeat for %.0fs, its worker is gone; "
                "sending it again to start over",
                task_id,
                event_id,
                age,
            )
            update = {"$set": {"state": PENDING, "heartbeatAt": now()}, "$inc": {"restarts": 1}}
            report.restarted.append(task_id)
        # Only if nobody touched it since it was read: a task that just came alive stays as is.
        changed = await db.tasks.update_one(
            {"_id": task_id, "state": task["state"], "heartbeatAt": task["heartbeatAt"]}, update
        )
        if changed.modified_count != 1:
            continue
        try:
            await queue.enqueue(TaskName.RECOMPUTE_EVENT, task_id=task_id, kwargs={"event_id": event_id})
        except Unavailable as err:
            log.warning("recompute %s: could not send it again (%s); next sweep retries", task_id, err)
    return report
