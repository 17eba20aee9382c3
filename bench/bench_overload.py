"""Overload benchmark: the session list, ingestion and readiness together while a recompute runs.

On the MongoDB-wire test server (or TEST_MONGODB_URL's MongoDB) and a Redis of its own: one
event with 300 rolled-up sessions and 30,000 stored watch segments; `session-analytics serve` in
its own process (default settings); a recompute of the event in another process, started again
whenever it finishes, so one is always running. Then, for `--seconds` (60): 64 connections
reading the list in a loop, ingestion posting 400 segments/s (8 posts of 50 a second), and a
readiness probe every 0.5 s. Printed: list p50/p99, list errors, ingestion accepted/s and errors,
readiness flaps. Targets: no 5xx, list p99 < 500 ms.

    .venv/bin/python bench/bench_overload.py [--seconds 60] [--connections 64] [--rate 400]

The load generator is one Python process (aiohttp client): on a small machine it competes for
the same cores as the service, the test server and the recompute; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_list import free_port, http_json, stop, wait_for_http
from bench.machine import machine_line
from shared.documents import WatchSegmentDoc

EVENT_ID = "overload"
SESSIONS = 300
STORED_SEGMENTS = 30_000
USERS = 3_000
EMAIL, PASSWORD = "overload@example.com", "bench password"
TARGET_P99_MS = 500.0
LIST_PATH = f"/rest/host/session/analytics?eventId={EVENT_ID}&size=50&expand=duration,watchTime"


async def seed(mongodb_url: str) -> str:
    """The event, its sessions (as PUT stores them), stored attendance; an ingest key."""
    from shared.admin import create_event, create_ingest_key, create_user
    from shared.db import connect
    from shared.models import SessionIn
    from shared.settings import Settings
    from shared.store import upsert_session

    db = connect(Settings(mongodb_url=mongodb_url))
    try:
        await db.ensure_indexes()
        await create_event(db, EVENT_ID, "bench-org", "Overload event")
        await create_user(db, EMAIL, PASSWORD, "SUPER_ADMIN")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        template, _ = await upsert_session(
            db,
            "s0000",
            SessionIn(
                eventId=EVENT_ID,
                title="Session 0000",
                startTime=start,
                endTime=start + timedelta(hours=1),
                format="BREAKOUT_SESSION",
                streamProvider="YOUTUBE",
                videoId="video0",
            ),
        )
        await db.sessions.insert_many(
            [
                {
                    **template,
                    "_id": f"s{i:04d}",
                    "title": f"Session {i:04d}",
                    "startTime": start + timedelta(minutes=i),
                }
                for i in range(1, SESSIONS)
            ]
        )
        rng = random.Random(1)
        batch: list[WatchSegmentDoc] = []
        for n in range(STORED_SEGMENTS):
            begins = start + timedelta(seconds=rng.uniform(0, 20 * 3600))
            batch.append(
                {
                    "_id": f"{EVENT_ID}:old{n}",
                    "eventId": EVENT_ID,
                    "segmentId": f"old{n}",
                    "sessionId": f"s{n % SESSIONS:04d}",
                    "userId": f"u{rng.randrange(USERS):05d}",
                    "mode": "LIVE" if rng.random() < 0.6 else "RECORDING",
                    "start": begins,
                    "end": begins + timedelta(seconds=rng.choice([20, 120, 600, 1800])),
                }
            )
            if len(batch) == 5000:
                await db.watch_segments.insert_many(batch, ordered=False)
                batch = []
        if batch:
            await db.watch_segments.insert_many(batch, ordered=False)
        return await create_ingest_key(db, [EVENT_ID])
    finally:
        db.close()


RECOMPUTE = r"""
import asyncio, json, sys, time
from shared.db import connect
from shared.jobs import claim_recompute, release_recompute
from shared.settings import Settings
from worker.rollup import recompute_event

async def main(url, event_id, seconds):
    settings = Settings(mongodb_url=url)
    db = connect(settings)
    deadline = time.monotonic() + seconds
    runs = []
    while time.monotonic() < deadline:
        task, created = await claim_recompute(db, event_id, 600)
        started = time.perf_counter()
        await recompute_event(db, settings, task["_id"], event_id)
        await release_recompute(db, event_id, task["_id"])
        runs.append(time.perf_counter() - started)
    print(json.dumps({"runs": len(runs), "seconds": [round(r, 1) for r in runs]}))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def drive(
    base: str, token: str, key: str, seconds: float, connections: int, rate: int
) -> dict[str, Any]:
    """The three kinds of traffic at once; what each of them saw."""
    import aiohttp

    list_ms: list[float] = []
    list_status: dict[int, int] = {}
    ingest_status: dict[int, int] = {}
    accepted = 0
    ready_seen: list[int] = []
    deadline = time.monotonic() + seconds
    per_post = 50
    posts_per_s = max(1, rate // per_post)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections + 32), timeout=timeout
    ) as http:

        async def lister() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    async with http.get(base + LIST_PATH, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                list_ms.append((time.perf_counter() - started) * 1000)
                list_status[status] = list_status.get(status, 0) + 1

        async def post(n: int) -> None:
            nonlocal accepted
            now = datetime.now(UTC).replace(microsecond=0)
            items = [
                {
                    "segmentId": f"new{n}-{i}",
                    "sessionId": f"s{(n * per_post + i) % SESSIONS:04d}",
                    "userId": f"u{(n * 7 + i) % USERS:05d}",
                    "mode": "LIVE",
                    "start": (now - timedelta(seconds=90)).isoformat().replace("+00:00", "Z"),
                    "end": (now - timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
                }
                for i in range(per_post)
            ]
            try:
                async with http.post(
                    f"{base}/rest/events/{EVENT_ID}/watch-segments",
                    json=items,
                    headers={"Authorization": f"Bearer {key}"},
                ) as response:
                    body = await response.json(content_type=None)
                    status = response.status
                    if status == 200:
                        accepted += body["accepted"]
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            ingest_status[status] = ingest_status.get(status, 0) + 1

        async def ingester() -> None:
            pending: set[asyncio.Task[None]] = set()
            n = 0
            while time.monotonic() < deadline:
                for _ in range(posts_per_s):
                    task = asyncio.create_task(post(n))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    n += 1
                await asyncio.sleep(1.0)
            await asyncio.gather(*pending)

        async def readiness() -> None:
            while time.monotonic() < deadline:
                try:
                    async with http.get(base + "/readyz") as response:
                        ready_seen.append(response.status)
                except (aiohttp.ClientError, TimeoutError):
                    ready_seen.append(0)
                await asyncio.sleep(0.5)

        began = time.monotonic()
        await asyncio.gather(*(lister() for _ in range(connections)), ingester(), readiness())
        elapsed = time.monotonic() - began
    flaps = sum(1 for a, b in itertools.pairwise(ready_seen) if (a == 200) != (b == 200))
    return {
        "seconds": round(elapsed, 1),
        "list_requests": len(list_ms),
        "list_p50_ms": round(percentile(list_ms, 0.5), 1),
        "list_p99_ms": round(percentile(list_ms, 0.99), 1),
        "list_status": list_status,
        "ingest_posts": sum(ingest_status.values()),
        "ingest_status": ingest_status,
        "ingest_accepted_per_s": round(accepted / elapsed, 1),
        "readiness_probes": len(ready_seen),
        "readiness_not_ready": sum(1 for s in ready_seen if s != 200),
        "readiness_flaps": flaps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=400, help="segments a second posted")
    parser.add_argument("--no-recompute", action="store_true", help="the same load without the recompute")
    args = parser.parse_args()

    from bench.mongo_server import describe, start_mongo
    from tests.servers import Redis

    work = Path(tempfile.mkdtemp(prefix="bench-overload-"))
    (work / "redis").mkdir()
    redis = Redis(work / "redis")  # first: a missing redis-server fails before any server is started
    mongo = start_mongo()
    service = recompute = None
    try:
        database = describe(mongo)
        redis.start()
        mongodb_url = mongo.url("bench_overload")
        started = time.monotonic()
        key = asyncio.run(seed(mongodb_url))
        print(f"seeded in {time.monotonic() - started:.1f}s", file=sys.stderr)
        env = {
            **os.environ,
            "MONGODB_URL": mongodb_url,
            "REDIS_URL": redis.url(),
            "LOG_LEVEL": "WARNING",
            "ACCESS_LOG": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        port = free_port()
        service = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz", service)
        token = json.loads(
            http_json("POST", f"{base}/rest/u/login", {"username": EMAIL, "password": PASSWORD})[0]
        )["access_token"]
        # A host has looked at the list before the rush: this process knows a good answer.
        http_json("GET", base + LIST_PATH, headers={"Authorization": f"Bearer {token}"})
        recompute = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RECOMPUTE,
                mongodb_url,
                EVENT_ID,
                "0" if args.no_recompute else str(args.seconds),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        load_before = os.getloadavg()
        figures = asyncio.run(drive(base, token, key, args.seconds, args.connections, args.rate))
        load_after = os.getloadavg()
        out, _ = recompute.communicate(timeout=600)
        lines = out.strip().splitlines()
        # A recompute that failed (its traceback is above) still leaves the run's figures.
        figures["recomputes"] = json.loads(lines[-1]) if lines else {"runs": "failed", "seconds": []}
    finally:
        stop(service)
        if recompute is not None and recompute.poll() is None:
            recompute.kill()
        redis.close()
        mongo.close()
        shutil.rmtree(work, ignore_errors=True)

    five_xx = sum(n for s, n in figures["list_status"].items() if s >= 500 or s == 0)
    five_xx += sum(n for s, n in figures["ingest_status"].items() if s >= 500 or s == 0)
    print(f"Machine: {machine_line()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"Database: {database}")
    print(f"Run: {args.seconds:g} s, {args.connections} list connections, {args.rate} segments/s posted")
    print()
    print("| measure | value |")
    print("|---|---:|")
    list_errors = sum(n for s, n in figures["list_status"].items() if s != 200)
    rows = [
        ("list requests", f"{figures['list_requests']:,}"),
        ("list p50 ms", f"{figures['list_p50_ms']:.1f}"),
        ("list p99 ms", f"{figures['list_p99_ms']:.1f}"),
        ("list non-200 (share)", f"{list_errors} ({list_errors / max(1, figures['list_requests']):.2%})"),
        ("ingestion posts (statuses)", f"{figures['ingest_posts']} {figures['ingest_status']}"),
        ("ingestion accepted segments/s", f"{figures['ingest_accepted_per_s']:.1f}"),
        (
            "readiness probes / not ready / flaps",
            " / ".join(
                str(figures[k]) for k in ("readiness_probes", "readiness_not_ready", "readiness_flaps")
            ),
        ),
        (
            "recomputes finished during the run",
            f"{figures['recomputes']['runs']} {figures['recomputes']['seconds']}",
        ),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    p99_ok = figures["list_p99_ms"] < TARGET_P99_MS
    print(
        f"Targets: no 5xx — {'met' if five_xx == 0 else f'MISSED ({five_xx})'}; "
        f"list p99 < {TARGET_P99_MS:g} ms — {'met' if p99_ok else 'MISSED'}."
    )


if __name__ == "__main__":
    main()
