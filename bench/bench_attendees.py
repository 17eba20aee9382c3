"""Benchmark of the attendee list and CSV: what a page costs as a session grows.

One session with N attendees (rows written as a rollup writes them, every one with an identity),
the real app in this process on a loopback port, one client asking one request at a time:
latency p50/p99 and database commands per request for the default page, the last page, a
search, a sort by last name, and the whole CSV, on the MongoDB-wire test server (or on
TEST_MONGODB_URL's MongoDB when that is set). Each attendee is a row document that the
database filters, sorts and pages: this shows what a page and the CSV cost as the session grows.

    .venv/bin/python bench/bench_attendees.py [--sizes 1000,10000,50000] [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
from aiohttp import web
from pymongo import ReplaceOne, monitoring

from bench.machine import machine_line
from bench.mongo_server import describe, start_mongo
from shared.admin import create_event, create_user
from shared.db import bulk_write, connect
from shared.models import SessionIn
from shared.settings import Settings
from shared.store import upsert_session
from tests.servers import free_port
from web.app import create_app
from worker.journal import Journal
from worker.session_fold import UserState, fold_session

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
EMAIL, PASSWORD = "bench@example.com", "bench password"


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def seed(db: Any, settings: Settings, session_id: str, size: int) -> None:
    """A session of `size` attendees, its rows and numbers written as a rollup writes them."""
    body = SessionIn(
        eventId="ev1",
        title=session_id,
        startTime=T0,
        endTime=T0 + timedelta(hours=1),
        format="BREAKOUT_SESSION",
    )
    session, _ = await upsert_session(db, session_id, body)
    ms = int(T0.timestamp() * 1000)
    state = {
        f"user{n:06d}": UserState(
            live=[(ms, ms + 1000 * (n % 3600 + 1))], registered_at=T0 - timedelta(minutes=n)
        )
        for n in range(size)
    }
    # Identities stored before the rows, as registrations leave them: the rows take copies when
    # they are written, as a rollup's new rows do.
    identities = {
        user: {
            "email": f"{user}@example.com",
            "firstName": "Pat",
            "lastName": f"Surname{(n * 7919) % size:06d}",
        }
        for n, user in enumerate(state)
    }
    docs = [
        ReplaceOne(
            {"_id": f"ev1:{u}"}, {"_id": f"ev1:{u}", "eventId": "ev1", "userId": u, **identity}, upsert=True
        )
        for u, identity in identities.items()
    ]
    await bulk_write(settings, db.attendee_identities, docs)
    write = fold_session(session, {}, state, identities, "UTC", full=True)
    assert write is not None
    await Journal("ev1", write.rows, None).apply(db, settings)
    await db.sessions.update_one({"_id": session_id}, {"$set": write.fields("UTC", (0, None), T0)})


async def measure(
    http: aiohttp.ClientSession, path: str, commands: Commands, requests: int
) -> tuple[float, float, float, int]:
    """(p50 ms, p99 ms, database commands per request, answers other than 200)."""
    times = []
    errors = 0
    before = commands.count
    for _ in range(requests):
        began = time.perf_counter()
        async with http.get(path) as response:
            await response.read()
            errors += response.status != 200  # 503: past the request time limit (REQUEST_TIMEOUT_S)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return statistics.median(times), p99, (commands.count - before) / requests, errors


async def main(sizes: list[int], requests: int) -> None:
    logging.disable(logging.WARNING)  # the access log of slow requests would cut the table
    commands = Commands()
    monitoring.register(commands)
    server = start_mongo()
    try:
        settings = Settings(
            mongodb_url=server.url("bench_attendees"), redis_url="redis://127.0.0.1:1/0", log_json=False
        )
        db = connect(settings)
        await db.ensure_indexes()
        await create_event(db, "ev1", "org1", "Bench")
        await create_user(db, EMAIL, PASSWORD, "SUPER_ADMIN")
        for size in sizes:
            await seed(db, settings, f"s{size}", size)
        runner = web.AppRunner(create_app(settings, database=db), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"machine: {machine_line()}\ndatabase: {describe(server)}")
        print(f"{requests} sequential requests per case; ms; commands: database commands per request\n")
        print(f"{'attendees':>9}  {'case':<34} {'p50':>8} {'p99':>8} {'commands':>9} {'errors':>7}")
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.post("/rest/u/login", json={"username": EMAIL, "password": PASSWORD}) as r:
                token = (await r.json())["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            for size in sizes:
                base = f"/rest/host/session/s{size}/attendee"
                cases = {
                    "first page (size 50)": f"{base}?size=50",
                    "last page (size 50)": f"{base}?size=50&page={(size - 1) // 50}",
                    "sort=lastName, first page": f"{base}?size=50&sort=lastName",
                    "searchString=surname0001 (literal)": f"{base}?size=50&searchString=surname0001",
                    "CSV, whole list": f"{base}/csv",
                }
                await measure(http, cases["first page (size 50)"], commands, 2)  # warm the caches
                for name, path in cases.items():
                    p50, p99, per_request, errors = await measure(
                        http, path, commands, max(3, requests // 5) if "CSV" in name else requests
                    )
                    print(f"{size:>9,}  {name:<34} {p50:>8.1f} {p99:>8.1f} {per_request:>9.1f} {errors:>7}")
        await runner.cleanup()
        db.close()
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.requests))
