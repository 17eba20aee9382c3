"""Live rollups on the test servers: freshness while attendance streams in, and a backlog drained.

    python bench/bench_live.py [--events 5 --sessions 50 --rate 2000 --seconds 60 --readers 16]
                               [--backlog-items 200000 --backlog-sessions 10000]

(a) live: the service as deployed (`session-analytics serve`, a Celery worker and beat, default
    settings) on the MongoDB-wire test server (or TEST_MONGODB_URL's MongoDB) and Redis.
    Segments are posted at `--rate` per second over all events while `--readers` connections
    read session lists; once a second a probe segment goes to a probe session, and the time from
    its ingestion answer until the session detail shows it is its freshness.
(b) backlog: `--backlog-items` inbox items over `--backlog-sessions` sessions of one event,
    drained by one worker process: time, items/s, peak memory, and the database commands it
    sent per batch (command monitoring: the figure that does not depend on the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import pymongo
from pymongo.errors import OperationFailure

from bench.machine import machine_line
from bench.mongo_server import describe, start_mongo
from tests.servers import Redis, free_port

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
PASSWORD = "bench password"
REQUEST_ITEMS = 200  # segments a request: a player posting every few seconds


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _setup_live(url: str, events: int, sessions: int) -> str:
    """Events, sessions (as PUT stores them), a super admin, and an ingest key for every event."""
    from shared.admin import create_event, create_ingest_key, create_user
    from shared.db import connect
    from shared.models import SessionIn
    from shared.settings import Settings
    from shared.store import upsert_session

    db = connect(Settings(mongodb_url=url, mongodb_timeout_ms=10_000))
    await db.ensure_indexes()
    await create_user(db, "bench@example.com", PASSWORD, "SUPER_ADMIN")
    for e in range(events):
        await create_event(db, f"ev{e}", "org", f"Event {e}")
        for s in ["probe", *range(sessions)]:
            await upsert_session(
                db,
                f"ev{e}-{s}",
                SessionIn(
                    eventId=f"ev{e}",
                    title=f"Session {s}",
                    startTime=T0,
                    endTime=T0 + timedelta(hours=1),
                    format="BREAKOUT_SESSION",
                    streamProvider="VIMEO",
                    videoId=f"v{s}",
                ),
            )
    key = await create_ingest_key(db, None)
    db.close()
    return key


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


async def _live(url: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    key = await _setup_live(url, args.events, args.sessions)
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URL": url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "false",
        # The 16 readers share one token and loop as fast as they can: a load generator, not a
        # dashboard; the defaults would answer most of them 429.
        "RATE_LIMIT_HOST_PER_MINUTE": "10000000",
        "RATE_LIMIT_INGEST_PER_MINUTE": "10000000",
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-live-"))
    python = sys.executable
    processes = [
        _start([python, "-m", "web.cli", "serve", "--port", str(port)], env, logs / "web.log"),
        _start(
            [
                python,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "-Q",
                "default,providers",
                "--loglevel",
                "INFO",  # task run times, read back below
                "--without-gossip",
                "--without-mingle",
            ],
            {**env, "LOG_LEVEL": "INFO"},
            logs / "worker.log",
        ),
        _start(
            [
                python,
                "-m",
                "celery",
                "-A",
                "worker",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(logs / "beat.schedule"),
            ],
            env,
            logs / "beat.log",
        ),
    ]
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(7)
    accepted = posted_errors = 0
    list_ms: list[float] = []
    list_errors = 0
    freshness: list[float] = []
    probe_errors: list[int] = []  # statuses of probe posts that were refused
    unseen: list[float] = []  # probes accepted but not shown within 60 s
    try:
        async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=64)) as http:
            for _ in range(200):
                try:
                    async with http.get("/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            async with http.post(
                "/rest/u/login", json={"username": "bench@example.com", "password": PASSWORD}
            ) as r:
                token = (await r.json())["access_token"]
            host = {"Authorization": f"Bearer {token}"}
            ingest = {"Authorization": f"Bearer {key}"}
            stop = time.monotonic() + args.seconds
            batch = REQUEST_ITEMS
            n = 0

            async def post_segments(worker: int, posters: int) -> None:
                nonlocal accepted, posted_errors, n
                interval = batch * posters / args.rate
                next_at = time.monotonic() + worker * interval / posters
                while time.monotonic() < stop:
                    event = rng.randrange(args.events)
                    items = []
                    for _ in range(batch):
                        n += 1
                        start = T0 + timedelta(seconds=rng.uniform(0, 3000))
                        items.append(
                            {
                                "segmentId": f"live-{n}",
                                "sessionId": f"ev{event}-{rng.randrange(args.sessions)}",
                                "userId": f"u{rng.randrange(5000)}",
                                "mode": "LIVE",
                                "start": _iso(start),
                                "end": _iso(start + timedelta(seconds=rng.choice([10, 40, 300]))),
                            }
                        )
                    try:
                        async with http.post(
                            f"/rest/events/ev{event}/watch-segments", json=items, headers=ingest
                        ) as r:
                            body = await r.json()
                            if r.status == 200:
                                accepted += body["accepted"]
                            else:
                                posted_errors += 1
                    except aiohttp.ClientError:
                        posted_errors += 1
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))

            async def read_lists() -> None:
                nonlocal list_errors
                while time.monotonic() < stop:
                    started = time.perf_counter()
                    async with http.get(
                        f"/rest/host/session/analytics?eventId=ev{rng.randrange(args.events)}&size=50",
                        headers=host,
                    ) as r:
                        await r.read()
                        if r.status != 200:
                            list_errors += 1
                    list_ms.append((time.perf_counter() - started) * 1000)

            watchers: list[asyncio.Future[None]] = []

            async def probe() -> None:
                count = 0
                while time.monotonic() < stop - 12:
                    count += 1
                    event = count % args.events
                    expected = (count - 1) // args.events + 1
                    start = T0 + timedelta(minutes=count)
                    segment = {
                        "segmentId": f"probe-{count}",
                        "sessionId": f"ev{event}-probe",
                        "userId": f"viewer{count}",
                        "mode": "LIVE",
                        "start": _iso(start),
                        "end": _iso(start + timedelta(seconds=45)),
                    }
                    async with http.post(
                        f"/rest/events/ev{event}/watch-segments", json=[segment], headers=ingest
                    ) as r:
                        if r.status != 200:  # refused (503 with nothing stored): counted, not watched
                            probe_errors.append(r.status)
                            count -= 1  # the same probe again
                            await asyncio.sleep(1.0)
                            continue
                    answered = time.monotonic()

                    async def watch(
                        session: str = f"ev{event}-probe", want: int = expected, t: float = answered
                    ) -> None:
                        while time.monotonic() - t < 60:
                            async with http.get(f"/rest/host/session/{session}/analytics", headers=host) as r:
                                if (await r.json()).get("attendeeCount", 0) >= want:
                                    freshness.append(time.monotonic() - t)
                                    return
                            await asyncio.sleep(0.1)
                        unseen.append(t)  # not visible within a minute: counted, never dropped

                    watchers.append(asyncio.ensure_future(watch()))
                    await asyncio.sleep(1.0)

            # Each poster posts once a second: the rate holds while answers take under 1 s.
            posters = max(2, args.rate // batch)
            await asyncio.gather(
                *(post_segments(i, posters) for i in range(posters)),
                *(read_lists() for _ in range(args.readers)),
                probe(),
            )
            await asyncio.gather(*watchers)  # the last probes' watchers finish
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    runs = [
        float(m.group(1))
        for m in re.finditer(
            r"analytics\.rollup_event\[[^\]]+\] succeeded in ([0-9.]+)s", (logs / "worker.log").read_text()
        )
    ]
    return {
        "rollup_runs": runs,
        "accepted_per_s": accepted / args.seconds,
        "ingest_errors": posted_errors,
        "freshness": freshness,
        "probe_errors": probe_errors,
        "unseen": unseen,
        "list_ms": list_ms,
        "list_errors": list_errors,
        "logs": str(logs),
    }


CHILD = r"""
import asyncio, json, resource, sys, time
from collections import Counter
from pymongo import monitoring

import bson

WRITES = {"insert": "documents", "update": "updates", "delete": "deletes"}

class Count(monitoring.CommandListener):  # commands by name; statements, bytes of writes
    def __init__(self): self.names, self.statements, self.write_bytes = Counter(), 0, 0
    def started(self, event):
        self.names[event.command_name] += 1
        if event.command_name in WRITES:
            self.statements += len(event.command.get(WRITES[event.command_name], ()))
            self.write_bytes += len(bson.encode(event.command))
    def succeeded(self, event): pass
    def failed(self, event): pass

counter = Count()
monitoring.register(counter)
from shared.db import connect
from shared.settings import Settings
from worker.rollup import rollup_event

async def main(url, event_id):
    # A long socket timeout: one bulk write carries the updates of many sessions.
    settings = Settings(mongodb_url=url, mongodb_timeout_ms=60_000)
    db = connect(settings)
    started = time.perf_counter()
    items = sessions = runs = 0
    while True:
        result = await rollup_event(db, settings, event_id)
        if result.busy:  # a lease left by a stopped worker: it expires within ROLLUP_LEASE_S
            await asyncio.sleep(1)
            started = time.perf_counter()
            continue
        runs += 1
        items += result.items
        sessions += result.sessions
        print(f"  {time.perf_counter() - started:7.1f} s: {items:,} items folded, "
              f"{sessions:,} session rollups written", file=sys.stderr, flush=True)
        if not result.more:
            break
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": elapsed, "peak_mib": usage.ru_maxrss / 1024, "items": items,
                      "sessions": sessions, "tasks": runs, "commands": dict(counter.names),
                      "statements": counter.statements, "write_bytes": counter.write_bytes,
                      "cpu_s": usage.ru_utime + usage.ru_stime}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _rollup_child(url: str, event_id: str) -> dict[str, Any]:
    """Roll up what waits for one event in a process of its own, counting the commands it sends;
    its progress (one line per task run) goes to stderr as it goes."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, event_id], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"the rollup process failed (exit {out.returncode}; its errors above)")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _queries(commands: dict[str, int]) -> dict[str, int]:
    return {
        k: v
        for k, v in commands.items()
        if k not in ("endSessions", "hello", "isMaster", "ping", "buildInfo")
    }


def _one_live_rollup(url: str, event_id: str, sessions: int, items: int) -> dict[str, Any]:
    """One more live batch of `items` segments over the event's sessions, queued as ingestion
    queues it, rolled up alone: the commands one rollup of a live event sends."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    db = client.get_default_database()
    rng = random.Random(11)
    received = datetime.now(UTC)
    docs = []
    for n in range(items):
        start = T0 + timedelta(seconds=rng.uniform(0, 3000))
        docs.append(
            {
                "_id": f"{event_id}:after-{n}",
                "eventId": event_id,
                "segmentId": f"after-{n}",
                "sessionId": f"{event_id}-{n % sessions}",
                "userId": f"u{rng.randrange(5000)}",
                "mode": "LIVE",
                "start": start.replace(microsecond=0),
                "end": (start + timedelta(seconds=40)).replace(microsecond=0),
            }
        )
    db.watch_segments.insert_many(docs, ordered=False)
    db.segment_inbox.insert_many(queued(event_id, docs, received), ordered=False)
    client.close()
    return _rollup_child(url, event_id)


def queued(event_id: str, docs: list[dict[str, Any]], received: datetime) -> list[dict[str, Any]]:
    """The inbox batches ingestion writes for `docs` posted in requests of REQUEST_ITEMS."""
    from shared.inbox import StoredItem, inbox_batch, request_id

    batches = []
    for first in range(0, len(docs), REQUEST_ITEMS):
        items = cast("list[StoredItem]", docs[first : first + REQUEST_ITEMS])
        batches.append({**inbox_batch(request_id("S"), event_id, "S", items), "receivedAt": received})
    return batches


def _load_backlog(url: str, items: int, sessions: int) -> None:
    """A backlog as ingestion leaves it: stored permanently and queued, nothing rolled up."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, tz_aware=True, socketTimeoutMS=600_000
    )
    db = client.get_default_database()
    db.events.insert_one({"_id": "backlog", "organizerId": "org", "name": "Backlog", "analyticsVersion": 0})
    db.sessions.insert_many(
        [
            {
                "_id": f"b{i:05d}",
                "eventId": "backlog",
                "title": f"Session {i}",
                "format": "BREAKOUT_SESSION",
                "streamProvider": "YOUTUBE",
                "videoId": f"v{i}",
                "duration": 1800.0,
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
    received = datetime.now(UTC)
    for first in range(0, items, 10_000):
        docs = []
        for n in range(first, min(items, first + 10_000)):
            start = T0 + timedelta(seconds=rng.uniform(0, 3600))
            docs.append(
                {
                    "_id": f"backlog:g{n}",
                    "eventId": "backlog",
                    "segmentId": f"g{n}",
                    "sessionId": f"b{n % sessions:05d}",
                    "userId": f"u{rng.randrange(50_000):06d}",
                    "mode": "LIVE" if rng.random() < 0.6 else "RECORDING",
                    "start": start.replace(microsecond=0),
                    "end": (start + timedelta(seconds=rng.choice([5, 45, 600]))).replace(microsecond=0),
                }
            )
        db.watch_segments.insert_many(docs, ordered=False)
        db.segment_inbox.insert_many(queued("backlog", docs, received), ordered=False)
    client.close()


def _statement_cost(url: str, probes: int = 50) -> tuple[float, str]:
    """What one update by `_id` costs on this server with the backlog's sessions stored (before
    the drain), and the plan the server reports for such a lookup (an `_id` index lookup on
    MongoDB): the server's own figure, which sets what a rollup's per-session writes cost there."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, tz_aware=True)
    db = client.get_default_database()
    ids = [doc["_id"] for doc in db.sessions.find({}, {"_id": 1}).limit(probes)]
    started = time.perf_counter()
    for n, session_id in enumerate(ids):
        db.sessions.update_one({"_id": session_id}, {"$set": {"statementProbe": n}})
    per_ms = (time.perf_counter() - started) / max(1, len(ids)) * 1000
    try:
        plan = db.command("explain", {"find": "sessions", "filter": {"_id": ids[0]}}) if ids else {}
        stage = str(plan.get("queryPlanner", {}).get("winningPlan", {}).get("stage", "(no plan reported)"))
    except OperationFailure:  # the test server has no explain command
        stage = "(no explain command on this server)"
    db.sessions.update_many({"_id": {"$in": ids}}, {"$unset": {"statementProbe": ""}})
    client.close()
    return per_ms, stage


def _backlog(url: str, items: int, sessions: int) -> dict[str, Any]:
    started = time.perf_counter()
    _load_backlog(url, items, sessions)
    print(
        f"backlog loaded: {items:,} items over {sessions:,} sessions in {time.perf_counter() - started:.0f} s"
    )
    per_ms, plan = _statement_cost(url)
    return {**_rollup_child(url, "backlog"), "update_ms": per_ms, "plan": plan}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=int, default=2000, help="segments posted per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--backlog-items", type=int, default=200_000)
    parser.add_argument("--backlog-sessions", type=int, default=10_000)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-backlog", action="store_true")
    args = parser.parse_args()

    broker = Redis()  # first: a missing redis-server fails before any server is started
    server = start_mongo()
    try:
        broker.start()
        print(f"machine: {machine_line()}")
        print(f"database: {describe(server)}; Redis on 127.0.0.1:{broker.port}", flush=True)
        if not args.skip_live:
            live = asyncio.run(_live(server.url("bench_live"), broker.url(), args))
            fresh = live["freshness"]
            print(
                f"\n(a) live: {args.events} events x {args.sessions} sessions, {args.rate:,} segments/s "
                f"posted for {args.seconds} s, {args.readers} list readers"
            )
            print("| figure | value | target |")
            print("|---|---|---|")
            print(
                f"| ingestion accepted | {live['accepted_per_s']:,.0f} segments/s "
                f"({live['ingest_errors']} failed requests) | {args.rate:,}/s |"
            )
            print(
                f"| freshness p50 / p99 / max ({len(fresh)} probes seen; {len(live['unseen'])} not seen "
                f"within 60 s; {len(live['probe_errors'])} probe posts refused) | "
                f"{percentile(fresh, 0.5):.1f} / "
                f"{percentile(fresh, 0.99):.1f} / {max(fresh, default=float('nan')):.1f} s | ≤ 10 s |"
            )
            lists = live["list_ms"]
            print(
                f"| list p50 / p99 ({len(lists):,} requests, {live['list_errors']} errors) | "
                f"{percentile(lists, 0.5):.0f} / {percentile(lists, 0.99):.0f} ms | |"
            )
            runs = live["rollup_runs"]
            print(
                f"| rollup tasks run (2 worker processes) | {len(runs)}, each p50 / max "
                f"{percentile(runs, 0.5):.2f} / {max(runs, default=float('nan')):.2f} s | |"
            )
            if fresh:
                print(f"freshness mean {statistics.mean(fresh):.2f} s; logs in {live['logs']}")
            one = _one_live_rollup(server.url("bench_live"), "ev0", args.sessions, 1000)
            queries = _queries(one["commands"])
            print(
                f"round trips of one live rollup, {one['items']:,} items over {one['sessions']} sessions "
                f"(command monitoring; the same on any server): {sum(queries.values())} "
                f"= {json.dumps(queries)}, {one['seconds']:.2f} s on this server"
            )
        if not args.skip_backlog:
            result = _backlog(server.url("bench_backlog"), args.backlog_items, args.backlog_sessions)
            queries = _queries(result["commands"])
            total = sum(queries.values())
            per_k = total / max(1, result["items"]) * 1000
            print(
                f"\n(b) backlog: {args.backlog_items:,} items over {args.backlog_sessions:,} sessions, "
                "one worker process"
            )
            print("| figure | value |")
            print("|---|---|")
            print(f"| drained in | {result['seconds']:.1f} s |")
            print(f"| items/s | {result['items'] / result['seconds']:,.0f} |")
            print(f"| session rollups written | {result['sessions']:,} in {result['tasks']} task runs |")
            print(f"| worker peak memory | {result['peak_mib']:.0f} MiB |")
            print(f"| database commands | {total} ({per_k:.1f} per 1,000 items): {json.dumps(queries)} |")
            per_1k = 1000 / max(1, result["items"])
            print(
                f"| written per 1,000 items | {result['statements'] * per_1k:,.0f} documents (insert, "
                f"update, delete statements), {result['write_bytes'] * per_1k / 1024:,.0f} KiB of writes |"
            )
            print(
                f"| the worker's own CPU per 1,000 items | {result['cpu_s'] * per_1k * 1000:,.0f} ms "
                "(process start included) |"
            )
            print(
                f"database: one session update by _id with {args.backlog_sessions:,} sessions stored "
                f"takes {result['update_ms']:.1f} ms; its plan for an _id lookup: {result['plan']}"
            )
    finally:
        broker.close()
        server.close()


if __name__ == "__main__":
    main()
