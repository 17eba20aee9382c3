"""A recompute and the rollups of its event never write the same sessions at once."""

from __future__ import annotations

import asyncio

from shared.jobs import claim_recompute
from shared.store import now
from tests.seed import add_session, seed_world
from worker.rollup import recompute_event


async def test_a_recompute_waits_for_a_rollup_already_writing_its_event(database, settings):
    await seed_world(database)
    await add_session(database, "s1")
    await database.rollup_leases.insert_one({"_id": "in-flight", "events": ["ev1"], "at": now()})
    task, _ = await claim_recompute(database, "ev1", settings.recompute_stale_s)

    running = asyncio.create_task(recompute_event(database, settings, task["_id"], "ev1"))
    await asyncio.sleep(0.6)
    waiting = await database.tasks.find_one({"_id": task["_id"]})
    assert not running.done()
    assert waiting["state"] == "STARTED" and waiting["progress"]["done"] == 0

    await database.rollup_leases.delete_one({"_id": "in-flight"})
    result = await asyncio.wait_for(running, timeout=30)
    assert result["sessions"] == 1
    assert (await database.tasks.find_one({"_id": task["_id"]}))["state"] == "SUCCESS"


async def test_a_lease_left_by_a_dead_worker_does_not_block_a_recompute(database, settings):
    from datetime import timedelta

    await seed_world(database)
    await add_session(database, "s1")
    stale = now() - timedelta(minutes=10)
    await database.rollup_leases.insert_one({"_id": "dead", "events": ["ev1"], "at": stale})
    task, _ = await claim_recompute(database, "ev1", settings.recompute_stale_s)

    result = await asyncio.wait_for(recompute_event(database, settings, task["_id"], "ev1"), timeout=30)
    assert result["sessions"] == 1
