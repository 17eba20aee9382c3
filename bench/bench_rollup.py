"""Rollup benchmarks on the MongoDB-wire test server (or TEST_MONGODB_URL's MongoDB): full
recompute against the read floor, incremental rollup, and ingestion throughput through the HTTP
endpoint.

    python bench/bench_rollup.py [--segments 1000000 --sessions 500 --users 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typing import Any

import aiohttp
import pymongo

from bench.bench_live import queued
from bench.machine import machine_line
from bench.mongo_server import describe, start_mongo
from tests.servers import free_port

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
EVENT = "bench"


def segment(rng: random.Random, n: int, sessions: int, users: int, prefix: str = "g") -> dict[str, Any]:
    session = n % sessions
    start = T0 + timedelta(minutes=session, seconds=rng.uniform(0, 3600))
    end = start + timedelta(seconds=rng.choice([5, 20, 45, 120, 600, 1800]))
    return {
        "_id": f"{EVENT}:{prefix}{n}",
        "eventId": EVENT,
        "segmentId": f"{prefix}{n}",
        "sessionId": f"s{session:04d}",
        "userId": f"u{rng.randrange(users):06d}",
        "mode": "LIVE" if rng.random() < 0.6 else "RECORDING",
        "start": start.replace(microsecond=0),
        "end": end.replace(microsecond=0),
    }


def load(url: str, segments: int, sessions: int, users: int) -> float:
    """Write the event directly (not through HTTP): the data set the rollups read."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    db = client.get_default_database()
    db.events.insert_one({"_id": EVENT, "organizerId": "org", "name": "Bench", "analyticsVersion": 0})
    db.sessions.insert_many(
        [
            {
                "_id": f"s{i:04d}",
                "eventId": EVENT,
                "title": f"Session {i}",
                "format": "BREAKOUT_SESSION",
                "streamProvider": "YOUTUBE",
                "videoId": f"v{i}",
                "duration": [12.0, 45.0, 3600.0][i % 3],
                "startTime": T0,
                "endTime": T0,
                "rollupVersion": 0,
                "rollupPending": False,
                "rollupGen": "",
            }
            for i in range(sessions)
        ]
    )
    rng = random.Random(1)
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for n in range(segments):
        batch.append(segment(rng, n, sessions, users))
        if len(batch) == 10_000:
            db.watch_segments.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.watch_segments.insert_many(batch, ordered=False)
    client.close()
    return time.perf_counter() - started


CHILD = r"""
import asyncio, json, resource, sys, time
from shared.db import connect
from shared.settings import Settings
from shared.jobs import claim_recompute
from worker.rollup import recompute_event, rollup_event, _event_state

async def main(mode, url):
    # A generous socket timeout: building indexes over a million segments is one long command.
    settings = Settings(mongodb_url=url, mongodb_timeout_ms=60_000)
    db = connect(settings)
    await db.ensure_indexes()
    started = time.perf_counter()
    if mode == "floor":
        # Merely read the segments: the same query, projection and batches as the recompute.
        cursor = db.watch_segments.find(
            {"eventId": "bench"}, {"_id": 0, "sessionId": 1, "userId": 1, "mode": 1, "start": 1, "end": 1}
        ).batch_size(settings.segment_read_batch)
        count = 0
        while docs := await cursor.to_list(length=settings.segment_read_batch):
            count += len(docs)
        result = {"segments": count}
    elif mode == "recompute":
        task, _ = await claim_recompute(db, "bench", 600)
        result = await recompute_event(db, settings, task["_id"], "bench")
    else:
        # What the worker's rollup task runs (worker.tasks.rollup_event_task): the event's new
        # input, batch after batch, until none is left.
        result = {"sessions": 0, "items": 0, "tasks": 0}
        more = True
        while more:
            done = await rollup_event(db, settings, "bench")
            result["sessions"] += done.sessions
            result["items"] += done.items
            result["tasks"] += 1
            more = done.more
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "peak_mib": peak_mib, "result": result}, default=str))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def child(mode: str, url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, url],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if out.returncode != 0:
        raise RuntimeError(f"the {mode} process failed:\n{out.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def add_new_segments(url: str, count: int, sessions: int, users: int) -> None:
    """New attendance as ingestion stores it: queued in the inbox, and permanent."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    db = client.get_default_database()
    rng = random.Random(2)
    docs = [segment(rng, n, 10, users, prefix="new") for n in range(count)]
    for doc in docs:
        doc["sessionId"] = f"s{int(doc['sessionId'][1:]) * (sessions // 10):04d}"
    settled = datetime.now(UTC) - timedelta(minutes=5)
    db.segment_inbox.insert_many(queued(EVENT, docs, settled), ordered=False)
    db.watch_segments.insert_many(docs, ordered=False)
    client.close()


async def ingestion(
    url: str, batches: int, concurrency: int, sessions: int, users: int
) -> tuple[float, float, float]:
    """Segments accepted per second through POST /rest/events/{id}/watch-segments, and the p50 and
    p99 of one post in ms (every answer must be 200: a 503 fails the run)."""
    port = free_port()
    env = {**os.environ, "MONGODB_URL": url, "LOG_LEVEL": "WARNING", "REDIS_URL": "redis://127.0.0.1:9/0"}
    key = subprocess.run(
        [sys.executable, "-m", "web.cli", "create-ingest-key", "--event", EVENT],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    server = subprocess.Popen([sys.executable, "-m", "web.cli", "serve", "--port", str(port)], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{base}/healthz"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            rng = random.Random(3)
            bodies = []
            for b in range(batches):
                items = []
                for n in range(1000):
                    doc = segment(rng, b * 1000 + n, sessions, users, prefix="http")
                    items.append(
                        {
                            "segmentId": doc["segmentId"],
                            "sessionId": doc["sessionId"],
                            "userId": doc["userId"],
                            "mode": doc["mode"],
                            "start": doc["start"].isoformat().replace("+00:00", "Z"),
                            "end": doc["end"].isoformat().replace("+00:00", "Z"),
                        }
                    )
                bodies.append(json.dumps(items).encode())
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            for body in bodies:
                queue.put_nowait(body)
            accepted = 0
            took: list[float] = []

            async def client() -> None:
                nonlocal accepted
                while not queue.empty():
                    body = queue.get_nowait()
                    began = time.perf_counter()
                    async with http.post(
                        f"{base}/rest/events/{EVENT}/watch-segments",
                        data=body,
                        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                    ) as response:
                        answer = await response.json()
                        assert response.status == 200, answer
                        accepted += answer["accepted"]
                    took.append((time.perf_counter() - began) * 1000)

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            assert accepted == batches * 1000, accepted
            took.sort()
            return accepted / elapsed, took[len(took) // 2], took[min(len(took) - 1, int(len(took) * 0.99))]
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--new-segments", type=int, default=10_000)
    parser.add_argument("--ingest-batches", type=int, default=50)
    args = parser.parse_args()

    server = start_mongo()
    try:
        url = server.url("bench_rollup")
        print(f"machine: {machine_line()}")
        print(f"database: {describe(server)}")
        load_s = load(url, args.segments, args.sessions, args.users)
        print(f"loaded {args.segments:,} segments, {args.sessions} sessions, {args.users:,} users", end="")
        print(f" in {load_s:.1f}s")
        floor = child("floor", url)
        print(f"floor: {floor}", flush=True)
        full = child("recompute", url)
        print(f"recompute: {full}", flush=True)
        add_new_segments(url, args.new_segments, args.sessions, args.users)
        incremental = child("rollup", url)
        print(f"incremental: {incremental}", flush=True)
        rate, p50, p99 = asyncio.run(ingestion(url, args.ingest_batches, 4, args.sessions, args.users))
        ratio = full["seconds"] / floor["seconds"]
        share = incremental["seconds"] / full["seconds"]
        print()
        print("| figure | value | target |")
        print("|---|---|---|")
        print(f"| read {args.segments:,} segments (floor) | {floor['seconds']:.1f} s | |")
        print(f"| full recompute, {args.sessions} sessions | {full['seconds']:.1f} s | |")
        print(f"| recompute ÷ floor | {ratio:.2f} | ≤ 1.3 |")
        print(f"| recompute worker peak memory | {full['peak_mib']:.0f} MiB | ≤ 1024 MiB |")
        print(
            f"| incremental rollup, {args.new_segments:,} new segments over 10 sessions | "
            f"{incremental['seconds']:.2f} s ({share:.1%} of full) | ≤ 5 % |"
        )
        print(
            f"| ingestion, one web process, batches of 1,000, 4 concurrent clients | {rate:,.0f} "
            f"segments/s, every answer 200, post p50 / p99 {p50:.0f} / {p99:.0f} ms "
            "| ≥ 10,000/s, p99 < 500 ms |"
        )
        print(f"\nincremental result: {incremental['result']}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
