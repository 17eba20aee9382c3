"""Worker faults at the settings users deploy: real worker and beat processes, Redis, the test MongoDB.

The `stack` fixture of test_worker_processes shortens the rollup interval, the visibility
timeout and the inbox settling time; every test here puts them back to their defaults first.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from shared.documents import TaskDoc
from shared.jobs import begin_recompute, claim_recompute
from shared.settings import Settings
from shared.tasks import CeleryTaskQueue, TaskName
from tests import test_worker_processes
from tests.processes import CeleryProcess, eventually
from tests.seed import add_session, found
from tests.servers import free_port
from tests.test_worker_processes import (
    Stack,
    _all_rolled_up,
    _assert_numbers_match_oracle,
    _ingest,
    _post_all,
    _random_event,
)

stack = test_worker_processes.stack  # the deployed stack: worker and beat on Redis and the test MongoDB

DEFAULTS = Settings()
SHORTENED = ("ROLLUP_INTERVAL_S", "VISIBILITY_TIMEOUT_S", "DURATION_SYNC_INTERVAL_S")


def at_defaults(stack: Stack, **env: str) -> None:
    for name in SHORTENED:
        stack.env.pop(name, None)
    stack.env["WORKER_METRICS_PORT"] = "0"
    stack.env.update(env)


def start(stack: Stack, role: str, *extra: str, queues: str | None = "default,providers") -> CeleryProcess:
    process = CeleryProcess(role, stack.env, *extra, queues=queues).start()
    stack.processes.append(process)
    return process


def succeeded(process: CeleryProcess, task: str) -> int:
    return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded", process.output()))


async def _wait_for_log(process: CeleryProcess, predicate: Any, timeout: float, what: str) -> None:
    async def probe() -> bool:
        return bool(predicate(process))

    await eventually(probe, timeout=timeout, interval=0.5, what=what)


async def test_a_recompute_whose_worker_was_killed_is_finished_by_another_worker_within_a_minute(
    stack: Stack,
) -> None:
    at_defaults(stack)
    # Enough sessions that writing them outlasts a progress report (twice a second), so the
    # kill falls while some are written and others not.
    data = await _random_event(stack.db, random.Random(5), sessions=400, users=200, segments_per_session=25)
    await _ingest(stack, data)
    workers = {name: start(stack, "worker", "-n", f"{name}@%h") for name in ("w1", "w2")}
    start(stack, "beat")
    response = await stack.http.post(
        "/rest/host/session/analytics/recompute?eventId=ev1", headers=stack.headers
    )
    assert response.status == 202
    task_id = (await response.json())["taskId"]

    async def midway() -> TaskDoc | None:
        task = found(await stack.db.tasks.find_one({"_id": task_id}))
        done, total = task["progress"]["done"], task["progress"]["total"]
        return task if task["state"] == "STARTED" and 3 <= done < total - 20 else None

    running = await eventually(midway, timeout=90, interval=0.02, what="recompute under way")
    victim = running["worker"].split("@")[0]
    workers[victim].kill()
    killed_at = time.monotonic()
    status = await (await stack.http.get(f"/rest/host/tasks/{task_id}", headers=stack.headers)).json()
    assert status["state"] == "STARTED" and 0 < status["progress"]["done"] < status["progress"]["total"]

    async def finished() -> TaskDoc | None:
        task = found(await stack.db.tasks.find_one({"_id": task_id}))
        return task if task["state"] in ("SUCCESS", "FAILURE") else None

    final = await eventually(
        finished, timeout=120, interval=0.3, what="recompute finished by the other worker"
    )
    took = time.monotonic() - killed_at
    print(f"recompute finished {took:.1f}s after its worker was killed")
    assert final["state"] == "SUCCESS", final
    assert final["worker"].split("@")[0] != victim
    assert final["restarts"] == 1
    assert took <= 60
    assert final["progress"]["done"] == final["progress"]["total"] == len(data.sessions) + 2
    await _assert_numbers_match_oracle(stack, data)


async def test_a_recompute_whose_message_was_lost_is_sent_again_and_finished(stack: Stack) -> None:
    at_defaults(stack)
    data = await _random_event(stack.db, random.Random(7), sessions=6, users=40, segments_per_session=30)
    await _ingest(stack, data)
    response = await stack.http.post(
        "/rest/host/session/analytics/recompute?eventId=ev1", headers=stack.headers
    )
    task_id = (await response.json())["taskId"]
    sent_at = time.monotonic()
    broker = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert broker.delete("default") == 1  # the message is gone, as with a broker that lost its data
    broker.close()
    start(stack, "worker")
    start(stack, "beat")

    async def finished() -> TaskDoc | None:
        task = found(await stack.db.tasks.find_one({"_id": task_id}))
        return task if task["state"] in ("SUCCESS", "FAILURE") else None

    final = await eventually(finished, timeout=120, interval=0.5, what="lost recompute sent again")
    took = time.monotonic() - sent_at
    print(f"lost recompute finished {took:.1f}s after it was first sent")
    assert final["state"] == "SUCCESS" and final["resends"] == 1
    assert took <= 60 + DEFAULTS.task_sweep_interval_s + 20
    await _assert_numbers_match_oracle(stack, data)


async def test_a_plain_worker_consumes_every_queue_and_runs_the_scheduled_duration_sync(
    stack: Stack,
) -> None:
    at_defaults(stack)
    narrow = start(stack, "worker", "-n", "narrow@%h", queues="default")
    start(stack, "beat")  # a new schedule entry is due at once, the sync included
    broker = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        await eventually(
            lambda: asyncio.to_thread(broker.llen, "providers"), timeout=60, what="sync sent to its queue"
        )
        await _wait_for_log(
            narrow, lambda p: succeeded(p, TaskName.ROLLUP_PENDING.value), 60, "rollup on the narrow worker"
        )
        assert succeeded(narrow, TaskName.SYNC_DURATIONS.value) == 0  # -Q default narrows it

        plain = start(stack, "worker", "-n", "plain@%h", queues=None)
        await _wait_for_log(
            plain, lambda p: succeeded(p, TaskName.SYNC_DURATIONS.value), 60, "sync on the plain worker"
        )
        assert broker.llen("providers") == 0
    finally:
        broker.close()


async def _send(stack: Stack, name: TaskName, task_id: str) -> None:
    queue = CeleryTaskQueue(stack.env["REDIS_URL"])
    try:
        await queue.enqueue(name, task_id=task_id, kwargs={})
    finally:
        await queue.close()


async def test_each_task_logs_its_own_task_id_in_a_worker_process_that_ran_another_before(
    stack: Stack,
) -> None:
    at_defaults(stack)
    worker = start(stack, "worker")  # one pool process: both tasks run in it, one after the other
    for count, task_id in enumerate(("first-task", "second-task"), start=1):
        await _send(stack, TaskName.SYNC_DURATIONS, task_id)
        await _wait_for_log(
            worker, lambda p, n=count: succeeded(p, TaskName.SYNC_DURATIONS.value) == n, 60, task_id
        )

    lines = [line for line in worker.output().splitlines() if "duration sync " in line]
    ids = [re.search(r"\[([^\]]+)\] worker\.durations", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert ids == ["first-task"] * 5 + ["second-task"] * 5, lines


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_worker_process_serves_its_task_and_provider_metrics_over_http(stack: Stack) -> None:
    port = free_port()
    # YouTube configured but unreachable: the sync's calls fail on the network.
    at_defaults(stack, WORKER_METRICS_PORT=str(port), YOUTUBE_API_KEY="key", PROVIDER_MAX_RETRIES="1")
    await add_session(stack.db, "yt1", provider="YOUTUBE", video_id="abc")
    # A recompute alive on another worker: a message for it is retried later.
    busy, _ = await claim_recompute(stack.db, "ev1", DEFAULTS.recompute_stale_s)
    await begin_recompute(stack.db, busy["_id"], "ev1", "run", "elsewhere", DEFAULTS.recompute_stale_s)
    worker = start(stack, "worker")
    await _send(stack, TaskName.SYNC_DURATIONS, "sync-1")
    await _wait_for_log(worker, lambda p: succeeded(p, TaskName.SYNC_DURATIONS.value) == 1, 60, "the sync")
    queue = CeleryTaskQueue(stack.env["REDIS_URL"])
    await queue.enqueue(TaskName.RECOMPUTE_EVENT, task_id=busy["_id"], kwargs={"event_id": "ev1"})
    await queue.close()
    await _wait_for_log(worker, lambda p: "runs on a live worker" in p.output(), 60, "the retry")

    samples = await asyncio.to_thread(_scrape, port)

    sync = (("state", "SUCCESS"), ("task", TaskName.SYNC_DURATIONS.value))
    assert samples[("session_analytics_tasks_total", sync)] == 1
    assert samples[("session_analytics_task_seconds_count", (("task", TaskName.SYNC_DURATIONS.value),))] == 1
    calls = samples[
        ("session_analytics_provider_calls_total", (("outcome", "network_error"), ("provider", "YOUTUBE")))
    ]
    assert calls == 2  # the first call and its one retry
    recompute = TaskName.RECOMPUTE_EVENT.value
    assert samples[("session_analytics_task_retries_total", (("task", recompute),))] == 1
    assert samples[("session_analytics_tasks_total", (("state", "RETRY"), ("task", recompute)))] == 1
    assert ("process_resident_memory_bytes", ()) in samples


async def test_rollups_syncs_and_a_recompute_in_flight_run_again_after_redis_restarted_empty(
    stack: Stack,
) -> None:
    at_defaults(stack)
    data = await _random_event(stack.db, random.Random(3), sessions=60, users=120, segments_per_session=40)
    half = len(data.segments) // 2
    await _post_all(stack, "/rest/events/ev1/registrations", data.registrations)
    await _post_all(stack, "/rest/events/ev1/watch-segments", data.segments[:half])
    worker = start(stack, "worker")
    beat = start(stack, "beat")
    await _wait_for_log(worker, lambda p: succeeded(p, TaskName.SYNC_DURATIONS.value) >= 1, 90, "first sync")
    rollups_before = succeeded(worker, TaskName.ROLLUP_PENDING.value)
    response = await stack.http.post(
        "/rest/host/session/analytics/recompute?eventId=ev1", headers=stack.headers
    )
    task_id = (await response.json())["taskId"]

    async def started() -> bool:
        task = found(await stack.db.tasks.find_one({"_id": task_id}))
        return bool(task["state"] == "STARTED")

    await eventually(started, timeout=60, interval=0.05, what="recompute under way")
    stack.redis.restart_empty()  # the recompute's message, the schedule and beat's lock are gone
    restarted_at = time.monotonic()
    await _post_all(stack, "/rest/events/ev1/watch-segments", data.segments[half:])

    async def recomputed() -> bool:
        task = found(await stack.db.tasks.find_one({"_id": task_id}))
        return bool(task["state"] == "SUCCESS")

    await eventually(lambda: _all_rolled_up(stack), timeout=120, interval=1, what="rollup after empty Redis")
    await _wait_for_log(
        worker,
        lambda p: succeeded(p, TaskName.SYNC_DURATIONS.value) >= 2,
        max(1.0, 120 - (time.monotonic() - restarted_at)),
        "sync after empty Redis",
    )
    await eventually(
        recomputed,
        timeout=max(1.0, 120 - (time.monotonic() - restarted_at)),
        what="recompute after empty Redis",
    )
    print(f"rollups, syncs and the recompute ran again within {time.monotonic() - restarted_at:.1f}s")
    assert succeeded(worker, TaskName.ROLLUP_PENDING.value) > rollups_before
    assert worker.alive() and beat.alive()
    assert "Unrecoverable error" not in worker.output()
    await _assert_numbers_match_oracle(stack, data)
