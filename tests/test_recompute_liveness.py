"""A recompute never stays stuck: a dead worker's task is sent again, an untaken one too, then failed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shared.db import Database
from shared.documents import TaskDoc
from shared.jobs import (
    FAILURE,
    PENDING,
    PICKUP_S,
    STARTED,
    Start,
    begin_recompute,
    claim_recompute,
    recompute_running,
    sweep_recomputes,
)
from shared.settings import Settings
from shared.store import now
from tests.conftest import RecordingTaskQueue
from tests.seed import found, seed_world

DEFAULTS = Settings()


async def _age(database: Database, task_id: str, seconds: float) -> None:
    """The task's last heartbeat (or sending) as if `seconds` ago."""
    await database.tasks.update_one(
        {"_id": task_id}, {"$set": {"heartbeatAt": now() - timedelta(seconds=seconds)}}
    )


async def _state(database: Database, task_id: str) -> TaskDoc:
    return found(await database.tasks.find_one({"_id": task_id}))


async def test_a_started_recompute_without_heartbeat_is_sent_again_and_taken_by_the_next_worker(
    database: Database, task_queue: RecordingTaskQueue
) -> None:
    await seed_world(database)
    task, _ = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)
    first = await begin_recompute(database, task["_id"], "ev1", "run-1", "w1", DEFAULTS.recompute_stale_s)
    assert first.outcome == Start.RUN

    # Alive: a second message for it waits, the sweep leaves it, rollups leave the event alone.
    second = await begin_recompute(database, task["_id"], "ev1", "run-2", "w2", DEFAULTS.recompute_stale_s)
    assert second.outcome == Start.BUSY and 0 < second.retry_in_s <= DEFAULTS.recompute_stale_s + 1
    report = await sweep_recomputes(database, task_queue, stale_s=DEFAULTS.recompute_stale_s)
    assert report.restarted == [] and task_queue.sent == []
    assert await recompute_running(database, "ev1", DEFAULTS.recompute_stale_s)

    # Dead: the event is free for rollups, the task is sent again, and the next worker runs it.
    await _age(database, task["_id"], DEFAULTS.recompute_stale_s + 1)
    assert not await recompute_running(database, "ev1", DEFAULTS.recompute_stale_s)
    report = await sweep_recomputes(database, task_queue, stale_s=DEFAULTS.recompute_stale_s)
    assert report.restarted == [task["_id"]]
    assert task_queue.sent == [("analytics.recompute_event", task["_id"], {"event_id": "ev1"})]
    assert (await _state(database, task["_id"]))["state"] == PENDING
    # Asking again meanwhile gives the same task back: it is on its way to a worker.
    again, created = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)
    assert not created and again["_id"] == task["_id"]

    third = await begin_recompute(database, task["_id"], "ev1", "run-3", "w3", DEFAULTS.recompute_stale_s)
    assert third.outcome == Start.RUN
    taken = await _state(database, task["_id"])
    assert (taken["state"], taken["worker"], taken["attempts"], taken["restarts"]) == (STARTED, "w3", 2, 1)


async def test_a_recompute_no_worker_takes_is_sent_again_then_failed_with_a_reason(
    database: Database, task_queue: RecordingTaskQueue
) -> None:
    await seed_world(database)
    task, _ = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)

    await _age(database, task["_id"], PICKUP_S - 5)
    assert (await sweep_recomputes(database, task_queue, stale_s=DEFAULTS.recompute_stale_s)).resent == []
    for _ in range(2):
        await _age(database, task["_id"], PICKUP_S + 1)
        report = await sweep_recomputes(database, task_queue, stale_s=DEFAULTS.recompute_stale_s)
        assert report.resent == [task["_id"]]
    await _age(database, task["_id"], PICKUP_S + 1)
    report = await sweep_recomputes(database, task_queue, stale_s=DEFAULTS.recompute_stale_s)

    assert report.failed == [task["_id"]]
    assert [sent[1] for sent in task_queue.sent] == [task["_id"], task["_id"]]
    failed = await _state(database, task["_id"])
    assert failed["state"] == FAILURE
    assert (failed["error"] or "").startswith("no worker took the task within 60s, 3 times")
    # The event is free: the next request starts a new recompute.
    fresh, created = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)
    assert created and fresh["_id"] != task["_id"]


async def test_a_recompute_replaced_by_a_newer_one_never_runs(
    database: Database, task_queue: RecordingTaskQueue
) -> None:
    await seed_world(database)
    old, _ = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)
    await begin_recompute(database, old["_id"], "ev1", "run-1", "w1", DEFAULTS.recompute_stale_s)
    await _age(database, old["_id"], DEFAULTS.recompute_stale_s + 1)
    new, created = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)
    assert created

    late = await begin_recompute(database, old["_id"], "ev1", "run-2", "w2", DEFAULTS.recompute_stale_s)

    assert late.outcome == Start.DONE
    replaced = await _state(database, old["_id"])
    assert replaced["state"] == FAILURE and "replaced by a newer recompute" in (replaced["error"] or "")
    started = await begin_recompute(database, new["_id"], "ev1", "run-3", "w2", DEFAULTS.recompute_stale_s)
    assert started.outcome == Start.RUN


async def test_a_run_that_lost_its_task_writes_neither_progress_nor_a_final_state(
    database: Database, task_queue: RecordingTaskQueue
) -> None:
    from shared.jobs import SUCCESS, fail_task, update_task

    await seed_world(database)
    task, _ = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)
    await begin_recompute(database, task["_id"], "ev1", "run-1", "w1", DEFAULTS.recompute_stale_s)
    await _age(database, task["_id"], DEFAULTS.recompute_stale_s + 1)
    taken = await begin_recompute(database, task["_id"], "ev1", "run-2", "w2", DEFAULTS.recompute_stale_s)
    assert taken.outcome == Start.RUN

    # The first run was only slow, not dead: its late writes change nothing.
    assert not await update_task(database, task["_id"], "run-1", progress={"done": 9, "total": 9})
    assert not await update_task(database, task["_id"], "run-1", state=SUCCESS, result={})
    assert not await fail_task(database, task["_id"], "boom", run_id="run-1")
    current = await _state(database, task["_id"])
    assert (current["state"], current["runId"], current["progress"]["done"]) == (STARTED, "run-2", 0)

    # The run holding it finishes it; a late copy of its message, finding the event's lock
    # released, leaves the answer as it is.
    assert await update_task(database, task["_id"], "run-2", state=SUCCESS, result={"sessions": 0})
    from shared.jobs import release_recompute

    await release_recompute(database, "ev1", task["_id"])
    late = await begin_recompute(database, task["_id"], "ev1", "run-3", "w3", DEFAULTS.recompute_stale_s)
    assert late.outcome == Start.DONE
    assert (await _state(database, task["_id"]))["state"] == SUCCESS


@pytest.mark.parametrize("store_kind", ["real"], indirect=True)  # the embedded store beats no heart
async def test_heartbeats_during_a_runs_writes_never_undo_them(
    database: Database, settings: Settings
) -> None:
    from shared.jobs import SUCCESS, update_task
    from worker.runtime import WorkerRuntime

    await seed_world(database)
    task, _ = await claim_recompute(database, "ev1", DEFAULTS.recompute_stale_s)
    await begin_recompute(database, task["_id"], "ev1", "run-1", "w1", DEFAULTS.recompute_stale_s)
    # Heartbeats as often as the thread can send them, so they interleave with every write.
    runtime = WorkerRuntime(settings.model_copy(update={"task_heartbeat_s": 0.001}))
    try:
        with runtime.heartbeat(task["_id"], "run-1"):
            for done in range(1, 51):
                assert await update_task(database, task["_id"], "run-1", progress={"done": done, "total": 50})
            assert await update_task(database, task["_id"], "run-1", state=SUCCESS, result={"sessions": 50})
            await asyncio.sleep(0.05)  # beats still under way find the task finished
    finally:
        runtime.close()
    current = await _state(database, task["_id"])
    assert (current["state"], current["progress"], current["result"]) == (
        SUCCESS,
        {"done": 50, "total": 50},
        {"sessions": 50},
    )
