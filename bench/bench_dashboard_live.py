"""Ingestion to the open dashboard: how long after an ingestion answer the number changes on the page.

    python bench/bench_dashboard_live.py [--probes 20]

The service as deployed at default settings (`session-analytics serve`, a Celery worker and beat)
on the MongoDB-wire test server (or TEST_MONGODB_URL's MongoDB) and Redis. Debian's headless
chromium opens the host dashboard (Playwright over DevTools, no browser download), signs in and
shows the event; then, `--probes` times, a watch segment of a new user is posted for the probed
session, and the time from the ingestion answer until the session's attendee cell on the page
shows the new count is measured: debounce, rollup, hook, Redis pub/sub, the event stream and
the page's own update, end to end. The target (issue 20) is ≤ 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp

from bench.machine import machine_line
from bench.mongo_server import describe, start_mongo
from tests.servers import Redis, free_port

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
PASSWORD = "bench password"
TARGET_S = 5.0


async def _seed(url: str) -> str:
    from shared.admin import create_event, create_ingest_key, create_user
    from shared.db import connect
    from shared.models import SessionIn
    from shared.settings import Settings
    from shared.store import upsert_session

    db = connect(Settings(mongodb_url=url, mongodb_timeout_ms=10_000))
    await db.client.drop_database(db.db.name)
    await db.ensure_indexes()
    await create_user(db, "bench@example.com", PASSWORD, "SUPER_ADMIN")
    await create_event(db, "live", "org", "Live Event")
    for n in range(10):
        body = SessionIn(
            eventId="live",
            title=f"Session {n}",
            startTime=T0 + timedelta(minutes=n),
            endTime=T0 + timedelta(hours=1),
            format="BREAKOUT_SESSION",
            streamProvider="VIMEO",
            videoId=f"v{n}",
        )
        await upsert_session(db, f"s{n}", body)
    key = await create_ingest_key(db, ["live"])
    db.close()
    return key


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _measure(base: str, key: str, probes: int) -> list[float]:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed: apt-get install -y chromium"
    seconds: list[float] = []
    async with aiohttp.ClientSession(base) as http, async_playwright() as playwright:
        for _ in range(300):
            try:
                async with http.get("/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        browser = await playwright.chromium.launch(executable_path=chromium)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{base}/host/")
            await page.fill("#login-email", "bench@example.com")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-submit")
            cell = page.locator('#session-rows tr[data-session-id="s0"] td:nth-child(6)')
            await cell.wait_for(timeout=30_000)
            await asyncio.sleep(1.0)  # the stream is open (it starts with the page)
            for n in range(probes):
                start = T0 + timedelta(minutes=1)
                segment = {
                    "segmentId": f"probe-{n}",
                    "sessionId": "s0",
                    "userId": f"probe-user-{n}",
                    "mode": "LIVE",
                    "start": _iso(start),
                    "end": _iso(start + timedelta(seconds=120)),
                }
                async with http.post(
                    "/rest/events/live/watch-segments",
                    json=[segment],
                    headers={"Authorization": f"Bearer {key}"},
                ) as r:
                    assert r.status == 200, await r.text()
                answered = time.monotonic()
                await page.wait_for_function(
                    "([selector, want]) => { const c = document.querySelector(selector);"
                    " return c && c.textContent.replace(/[^0-9]/g, '') === want; }",
                    arg=['#session-rows tr[data-session-id="s0"] td:nth-child(6)', str(n + 1)],
                    timeout=60_000,
                    polling=20,
                )
                seconds.append(time.monotonic() - answered)
                await asyncio.sleep(0.5)
        finally:
            await browser.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    broker = Redis()
    server = start_mongo()
    broker.start()
    logs = Path(tempfile.mkdtemp(prefix="bench-dashboard-live-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        url = server.url("bench_dashboard_live")
        key = asyncio.run(_seed(url))
        port = free_port()
        env = {**os.environ, "MONGODB_URL": url, "REDIS_URL": broker.url(), "LOG_LEVEL": "WARNING"}
        env["LOG_JSON"] = "false"
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "worker"]
        processes = [
            _start([python, "-m", "web.cli", "serve", "--port", str(port)], env, logs / "web.log"),
            _start([*celery, "worker", "--without-gossip", "--without-mingle"], env, logs / "worker.log"),
            _start([*celery, "beat", "--schedule", str(logs / "beat.schedule")], env, logs / "beat.log"),
        ]
        seconds = asyncio.run(_measure(f"http://127.0.0.1:{port}", key, args.probes))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.close()
        server.close()
    ordered = sorted(seconds)
    print(f"machine: {machine_line()}")
    print(f"database: {describe(server)}")
    print(
        f"ingestion answer → number changed on the open dashboard, {len(seconds)} probes, default settings:"
    )
    verdict = "met" if ordered[-1] <= TARGET_S else "MISSED"
    print(
        f"  p50 {statistics.median(ordered):.2f} s, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.2f} s, "
        f"max {ordered[-1]:.2f} s (target ≤ {TARGET_S:.0f} s: {verdict})"
    )


if __name__ == "__main__":
    main()
