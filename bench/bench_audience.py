"""Benchmark of the event's audience (DESIGN §4 rules 12–13): what a rollup of new attendance
costs as the event grows, and what the event's people list answers at 50,000 people.

For each size, one event of 20 sessions whose people each watch two of them (a tenth only
register), built by a recompute; then rounds of new attendance — 200 segments of 100 people,
half of them already known, over two sessions — each folded by one rollup, as the worker runs
it: per rollup, its time and its database commands (all of them, and those of the event's
audience: `people`, `audience_edges`, `event_summaries`), which must follow the new
attendance, not the event's size. Then the people list of the largest event through the real
app: first page, a search, each sort, a filter, the whole CSV, p50/p99. On the MongoDB-wire
test server (or on TEST_MONGODB_URL's MongoDB when that is set).

    .venv/bin/python bench/bench_audience.py [--sizes 1000,10000,50000] [--rounds 5] [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
from aiohttp import web
from pymongo import monitoring

from bench.bench_attendees import measure
from bench.bench_live import queued
from bench.machine import machine_line
from bench.mongo_server import describe, start_mongo
from shared.admin import create_user
from shared.db import connect
from shared.jobs import claim_recompute
from shared.settings import Settings
from tests.servers import free_port
from web.app import create_app
from worker.rollup import recompute_event, rollup_event

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
SESSIONS = 20
EMAIL, PASSWORD = "bench@example.com", "bench password"
AUDIENCE = {"people", "audience_edges", "event_summaries"}


class Commands(monitoring.CommandListener):
    """Commands per collection while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.seen: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on:
            target = event.command.get(event.command_name)
            self.seen[target if isinstance(target, str) else event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _segment(event: str, n: int, session: int, user: str, start: datetime, minutes: int) -> dict[str, Any]:
    return {
        "_id": f"{event}:g{n}",
        "eventId": event,
        "segmentId": f"g{n}",
        "sessionId": f"{event}-s{session:02d}",
        "userId": user,
        "mode": "LIVE" if n % 3 else "RECORDING",
        "start": start,
        "end": start + timedelta(minutes=minutes),
    }


async def build(db: Any, settings: Settings, event: str, people: int) -> float:
    """The event written as ingestion stores it, then rolled up by a recompute: its time."""
    await db.events.insert_one({"_id": event, "organizerId": "org", "name": event, "analyticsVersion": 0})
    await db.sessions.insert_many(
        [
            {
                "_id": f"{event}-s{i:02d}",
                "eventId": event,
                "title": f"Session {i}",
                "format": "BREAKOUT_SESSION",
                "streamProvider": "YOUTUBE",
                "videoId": f"v{i}",
                "duration": 3600.0,
                "startTime": T0 + timedelta(hours=i % 5),
                "endTime": T0 + timedelta(hours=i % 5 + 1),
                "rollupVersion": 0,
                "rollupPending": False,
            }
            for i in range(SESSIONS)
        ]
    )
    rng = random.Random(people)
    segments: list[dict[str, Any]] = []
    registrations: list[dict[str, Any]] = []
    for p in range(people):
        user = f"p{p:06d}"
        for session in (p % SESSIONS, (p * 7 + 3) % SESSIONS):
            registrations.append(
                {
                    "_id": f"{event}:{event}-s{session:02d}:{user}",
                    "eventId": event,
                    "sessionId": f"{event}-s{session:02d}",
                    "userId": user,
                    "registeredAt": T0 - timedelta(days=1),
                }
            )
            if p % 10:  # a tenth never come
                start = T0 + timedelta(hours=session % 5, seconds=rng.randrange(3600))
                segments.append(_segment(event, len(segments), session, user, start, rng.choice([5, 20, 45])))
    for docs, collection in ((registrations, db.registrations), (segments, db.watch_segments)):
        for first in range(0, len(docs), 10_000):
            await collection.insert_many(docs[first : first + 10_000], ordered=False)
    began = time.perf_counter()
    task, _ = await claim_recompute(db, event, 600)
    await recompute_event(db, settings, task["_id"], event)
    return time.perf_counter() - began


async def one_round(
    db: Any, settings: Settings, event: str, people: int, n: int, commands: Commands
) -> tuple[float, Counter[str]]:
    """200 new segments of 100 people (50 known, 50 new) over two sessions, queued as ingestion
    queues them, and the one rollup that folds them: its time and commands."""
    rng = random.Random(n)
    docs = []
    for k in range(100):
        user = f"p{rng.randrange(people):06d}" if k % 2 else f"new{n:02d}{k:03d}"
        for j in range(2):
            start = T0 + timedelta(hours=2, seconds=rng.randrange(7200))
            docs.append(
                _segment(event, 10_000_000 + n * 1000 + k * 2 + j, (n * 2 + j) % SESSIONS, user, start, 10)
            )
    await db.watch_segments.insert_many(docs, ordered=False)
    await db.segment_inbox.insert_many(queued(event, docs, datetime.now(UTC) - timedelta(minutes=5)))
    commands.seen.clear()
    commands.on = True
    began = time.perf_counter()
    result = await rollup_event(db, settings, event)
    elapsed = time.perf_counter() - began
    commands.on = False
    assert result.items == len(docs) and not result.more, result
    return elapsed, Counter(commands.seen)


async def main(sizes: list[int], rounds: int, requests: int) -> None:
    logging.disable(logging.WARNING)
    commands = Commands()
    monitoring.register(commands)
    server = start_mongo()
    try:
        settings = Settings(
            mongodb_url=server.url("bench_audience"), redis_url="redis://127.0.0.1:1/0", log_json=False
        )
        db = connect(settings)
        await db.ensure_indexes()
        print(f"machine: {machine_line()}\ndatabase: {describe(server)}\n")
        print("a rollup of 200 new segments (100 people, 50 of them new) over 2 of 20 sessions")
        print(
            f"{'people':>7} {'build s':>8} {'rollup ms p50':>14} {'max':>7} {'commands':>9}"
            f" {'audience cmds':>14}"
        )
        for size in sizes:
            event = f"ev{size}"
            built = await build(db, settings, event, size)
            times, counts = [], []
            for n in range(rounds):
                elapsed, seen = await one_round(db, settings, event, size, n, commands)
                times.append(elapsed * 1000)
                counts.append(seen)
            total = statistics.median(sum(c.values()) for c in counts)
            audience = statistics.median(sum(v for k, v in c.items() if k in AUDIENCE) for c in counts)
            print(
                f"{size:>7,} {built:>8.1f} {statistics.median(times):>14.1f} {max(times):>7.1f}"
                f" {total:>9.0f} {audience:>14.0f}"
            )
        largest = f"ev{max(sizes)}"
        await create_user(db, EMAIL, PASSWORD, "SUPER_ADMIN")
        runner = web.AppRunner(create_app(settings, database=db), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        listener = cast(Any, _Counting(commands))  # what measure() reads: .count
        print(
            f"\nthe people list of {largest} ({max(sizes):,} people + the rounds' new ones):"
            f" ms, {requests} requests"
        )
        print(f"{'case':<40} {'p50':>8} {'p99':>8} {'commands':>9} {'errors':>7}")
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.post("/rest/u/login", json={"username": EMAIL, "password": PASSWORD}) as r:
                http.headers["Authorization"] = f"Bearer {(await r.json())['access_token']}"
            base = f"/rest/host/event/{largest}/attendee"
            cases = {
                "first page (size 50)": f"{base}?size=50",
                "page 500 (size 50)": f"{base}?size=50&page=500",
                "sort=lastName": f"{base}?size=50&sort=lastName",
                "sort=-firstJoinedAt": f"{base}?size=50&sort=-firstJoinedAt",
                "sort=-sessionsAttended": f"{base}?size=50&sort=-sessionsAttended",
                "attended=false (no-shows)": f"{base}?size=50&attended=false",
                "minCompletion=50": f"{base}?size=50&minCompletion=50",
                "searchString=p00012": f"{base}?size=50&searchString=p00012",
                "summary": f"/rest/host/event/{largest}/analytics",
                "CSV, every person": f"{base}/csv",
            }
            await measure(http, cases["first page (size 50)"], listener, 2)
            for name, path in cases.items():
                p50, p99, per, errors = await measure(
                    http, path, listener, max(3, requests // 5) if "CSV" in name else requests
                )
                print(f"{name:<40} {p50:>8.1f} {p99:>8.1f} {per:>9.1f} {errors:>7}")
        await runner.cleanup()
        db.close()
    finally:
        server.close()


class _Counting:
    """bench_attendees.measure's counter: every command, while the list is measured."""

    def __init__(self, commands: Commands) -> None:
        self._commands = commands
        commands.on = True

    @property
    def count(self) -> int:
        return sum(self._commands.seen.values())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.rounds, args.requests))
