"""Benchmark of the duration sync against the fake providers: HTTP calls and wall time vs the ideal.

10,000 YouTube, 1,000 Vimeo, 500 TokBox and 500 Wistia sessions, every answer 50 ms late.
The ideal is what the configured concurrency allows: per provider ceil(calls / concurrency) x
latency, providers in parallel, so the slowest provider sets it. Target: ideal / actual >= 0.8.

The timed part is the provider phase of a sync: the clients from build_clients() fetching every
provider's durations at once, exactly as sync_durations() calls them, with the fakes serving from
a second process. The phase runs --runs times (default 3); every run is printed and the best is
judged, since other load on the machine only ever adds time. With --end-to-end it also times
sync_durations() itself on the embedded mongomock store; mongomock scans the whole collection for
every update, so that figure measures mongomock and is shown but not judged.

    .venv/bin/python bench/bench_durations.py [--latency-ms 50] [--concurrency N] [--runs 3]
                                              [--end-to-end]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_model
from shared.db import connect
from shared.settings import Settings
from worker.durations import sync_durations
from worker.providers import build_clients, new_http_session
from worker.providers.base import OK
from worker.providers.fakes import FakeVideo, run_fake_providers

SESSIONS = {"YOUTUBE": 10_000, "VIMEO": 1_000, "TOKBOX": 500, "WISTIA": 500}
YOUTUBE_IDS_PER_CALL = 50
TARGET = 0.8


def load_average() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def videos() -> list[FakeVideo]:
    return [
        FakeVideo(provider, f"{provider.lower()}-{n:05d}", float(60 + n % 3600))
        for provider, count in SESSIONS.items()
        for n in range(count)
    ]


def _serve_fakes(conn: Any, latency_s: float) -> None:
    """The fake providers in their own process, so serving them does not slow the client down."""

    async def serve() -> None:
        async with run_fake_providers(videos(), latency_s=latency_s) as fake:
            conn.send(fake.settings_overrides())
            loop = asyncio.get_running_loop()
            while await loop.run_in_executor(None, conn.recv) == "calls":
                conn.send(dict(fake.calls))
                fake.calls.clear()
                fake.requests.clear()

    asyncio.run(serve())


class FakeProcess:
    """Starts the fakes in a child process; `calls()` gives calls per provider since last asked."""

    def __init__(self, latency_s: float) -> None:
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_serve_fakes, args=(child, latency_s), daemon=True
        )
        self.overrides: dict[str, Any] = {}

    def __enter__(self) -> FakeProcess:
        self._process.start()
        if not self._conn.poll(60):
            raise RuntimeError("the fake providers did not start within 60 s")
        self.overrides = self._conn.recv()
        return self

    def calls(self) -> dict[str, int]:
        self._conn.send("calls")
        return dict(self._conn.recv())

    def __exit__(self, *_: object) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()


async def provider_phase(settings: Settings, catalogue: list[FakeVideo]) -> tuple[float, dict[str, Any]]:
    """Every provider's durations fetched at once, as one sync run does; no store involved."""
    ids: dict[str, list[str]] = {provider: [] for provider in SESSIONS}
    for video in catalogue:
        ids[video.provider].append(video.video_id)
    async with new_http_session(settings) as http:
        clients = build_clients(settings, http)
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(clients[provider].fetch_durations(ids[provider]) for provider in SESSIONS)
        )
        wall = time.perf_counter() - started
    filled = sum(1 for outcome in outcomes for answer in outcome.durations.values() if answer.status == OK)
    return wall, {"filled": filled, "retries": {p: clients[p].metrics.retries for p in SESSIONS}}


async def end_to_end(settings: Settings, catalogue: list[FakeVideo]) -> tuple[float, int]:
    """sync_durations() over sessions in mongomock: selection, calls, writes, rollup marks."""
    db = connect(settings)
    await db.ensure_indexes()
    moment = datetime.now(UTC)
    await db.sessions.insert_many(
        [
            {
                "_id": f"s-{video.video_id}",
                "eventId": "bench",
                "streamProvider": video.provider,
                "format": "MAINSTAGE_SESSION",
                "videoId": video.video_id,
                "duration": None,
                "durationProvider": video.provider,
                "durationStatus": "PENDING",
                "durationCheckAt": moment,
            }
            for video in catalogue
        ]
    )
    started = time.perf_counter()
    await sync_durations(db, settings)
    wall = time.perf_counter() - started
    filled = await db.sessions.count_documents({"durationStatus": "KNOWN"})
    db.close()
    return wall, filled


async def run(latency_s: float, concurrency: int | None, runs: int, with_store: bool) -> bool:
    catalogue = videos()
    total = sum(SESSIONS.values())
    load_before = load_average()
    with FakeProcess(latency_s) as fake:
        settings = Settings(
            mongodb_url="mem:///bench", log_json=False, duration_sync_batch=max(SESSIONS.values())
        ).model_copy(
            update={**fake.overrides, **({"provider_concurrency": concurrency} if concurrency else {})}
        )
        conc = settings.provider_concurrency
        walls: list[float] = []
        for _ in range(runs):
            fake.calls()
            wall, phase = await provider_phase(settings, catalogue)
            calls = fake.calls()
            walls.append(wall)
        store_wall: float | None = None
        store_filled = 0
        if with_store:
            store_wall, store_filled = await end_to_end(settings, catalogue)

    ideal = {p: math.ceil(calls.get(p, 0) / conc) * latency_s for p in SESSIONS}
    slowest = max(ideal.values())
    best = min(walls)
    ratio = slowest / best
    expected_youtube = math.ceil(SESSIONS["YOUTUBE"] / YOUTUBE_IDS_PER_CALL)

    print("duration sync benchmark")
    print(
        f"  machine : {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        f" ({platform.python_implementation()}, {platform.system()} {platform.release()}),"
        f" load average {load_before}"
    )
    print(
        f"  setup   : fake providers on 127.0.0.1 in a second process, {latency_s * 1000:.0f} ms"
        f" latency, provider_concurrency {conc}, timeout {settings.provider_timeout_s:.0f} s"
    )
    print(f"  {'provider':<9}{'sessions':>10}{'calls':>8}{'retries':>9}{'ideal s':>9}")
    for provider, count in SESSIONS.items():
        print(
            f"  {provider:<9}{count:>10}{calls.get(provider, 0):>8}"
            f"{phase['retries'][provider]:>9}{ideal[provider]:>9.2f}"
        )
    print(f"  durations fetched: {phase['filled']} of {total} (last run)")
    print(
        f"  provider phase wall time, {runs} runs: "
        + ", ".join(f"{w:.2f}" for w in walls)
        + f" s (median {statistics.median(walls):.2f})"
    )
    print(
        f"  ideal {slowest:.2f} s; best run {best:.2f} s; ideal/actual = {ratio:.2f}"
        f" (median run {slowest / statistics.median(walls):.2f}; target >= {TARGET})"
    )
    print(f"  YouTube calls: {calls.get('YOUTUBE', 0)} (expected exactly {expected_youtube})")
    if store_wall is not None:
        print(
            f"  end-to-end sync_durations on mongomock: {store_wall:.2f} s,"
            f" {store_filled} of {total} sessions filled (mongomock's cost; not judged)"
        )
    passed = (
        calls.get("YOUTUBE") == expected_youtube
        and ratio >= TARGET
        and phase["filled"] == total
        and (store_wall is None or store_filled == total)
    )
    print("  result: " + ("PASS" if passed else "FAIL"))
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="provider_concurrency (default: the setting's default)"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the provider phase")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="also time sync_durations() on the mongomock store (minutes)",
    )
    args = parser.parse_args()
    ok = asyncio.run(run(args.latency_ms / 1000, args.concurrency, max(1, args.runs), args.end_to_end))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
