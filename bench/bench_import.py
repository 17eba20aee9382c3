"""Benchmark of `session-analytics import-sessions`: 1,000 rows of CSV, as a user runs it.

On the MongoDB-wire test server, or on TEST_MONGODB_URL's MongoDB when that is set.

Three imports of the same 1,000 sessions, each through the installed command in a subprocess
(wall time includes start-up): all new, all unchanged, all changed (a new title each). Then the
same three in process with PyMongo command monitoring: the commands each sends, which is the
figure that holds on MongoDB whatever the test server's speed. Target: 1,000 rows under 10 s.

    .venv/bin/python bench/bench_import.py [--rows 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from bench.machine import machine_line
from bench.mongo_server import describe, start_mongo
from shared.admin import create_event, import_sessions
from shared.db import Database, RawDocument, connect
from shared.models import SessionIn
from shared.settings import Settings

COMMAND = str(Path(sys.executable).with_name("session-analytics"))
HEADER = ["sessionId", "eventId", "title", "startTime", "endTime", "format", "streamProvider", "videoId"]


def rows(count: int, title: str) -> list[list[str]]:
    times = ["2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"]
    return [
        [f"s{n:05d}", "bench", f"{title} {n}", *times, "BREAKOUT_SESSION", "YOUTUBE", f"video{n}"]
        for n in range(count)
    ]


def timed_import(url: str, path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [COMMAND, "import-sessions", str(path)],
        env={**os.environ, "MONGODB_URL": url},
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, done.stderr.strip().splitlines()[-1]


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def commands_sent(url: str, count: int) -> list[tuple[str, Counter[str]]]:
    listener = Commands()
    client: AsyncIOMotorClient[RawDocument] = AsyncIOMotorClient(
        url, tz_aware=True, event_listeners=[listener]
    )
    db = Database(client, client.get_default_database())  # the URL's (prefixed under TEST_MONGODB_URL)
    figures = []
    try:
        for label, title in (("new", "Talk"), ("unchanged", "Talk"), ("changed", "Renamed")):
            parsed = [
                (r[0], SessionIn.model_validate(dict(zip(HEADER[1:], r[1:], strict=True))))
                for r in rows(count, title)
            ]
            listener.names.clear()
            await import_sessions(db, parsed)
            figures.append((label, Counter(listener.names)))
    finally:
        client.close()
    return figures


async def seed(url: str) -> None:
    db = connect(Settings(mongodb_url=url))
    await db.ensure_indexes()
    await create_event(db, "bench", "bench-org", "Import benchmark")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    count = parser.parse_args().rows
    print(f"machine: {machine_line()}")
    server = start_mongo()
    try:
        print(f"database: {describe(server)}")
        with tempfile.TemporaryDirectory() as folder:
            url = server.url("bench_import")
            asyncio.run(seed(url))
            for label, title in (("new", "Talk"), ("unchanged", "Talk"), ("changed", "Renamed")):
                path = Path(folder) / f"{label}.csv"
                with path.open("w", newline="") as out:
                    writer = csv.writer(out)
                    writer.writerow(HEADER)
                    writer.writerows(rows(count, title))
                seconds, summary = timed_import(url, path)
                print(f"{count} rows {label:<9}: {seconds:6.2f} s  ({summary})")
            url = server.url("bench_import_commands")
            asyncio.run(seed(url))
            for label, names in asyncio.run(commands_sent(url, count)):
                total = sum(names.values())
                detail = ", ".join(f"{name} {n}" for name, n in sorted(names.items()))
                print(f"{count} rows {label:<9}: {total} commands ({detail})")
    finally:
        server.close()


if __name__ == "__main__":
    main()
