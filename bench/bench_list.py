"""Benchmark of the session list against a bare aiohttp handler of the same bytes.

One event with 1,000 sessions; GET /rest/host/session/analytics?eventId=…&size=500&expand=
duration,watchTime, 64 concurrent connections over loopback for 10 s (wrk). The service runs as
`session-analytics serve` in its own process; the ceiling is a bare aiohttp handler in another
process returning the very bytes the service answered. The database is the MongoDB-wire test
server, or TEST_MONGODB_URL's MongoDB when that is set. Targets: service ÷ ceiling ≥ 0.5 in
requests per second, service p99 < 100 ms.

    .venv/bin/python bench/bench_list.py [--seconds 10] [--connections 64] [--threads N]
        [--profile FILE]   # the service under pyinstrument (pip install pyinstrument)

CPU time per request of the server process, the test server and the load generator is printed
too: it tells a saturated machine from a server that waits (no database figure for an external
MongoDB, whose process is elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_model
from shared.documents import SessionDoc

SESSIONS = 1_000
PAGE_SIZE = 500
EVENT_ID = "bench-event"
EMAIL, PASSWORD = "bench@example.com", "bench password"
TARGET_RATIO = 0.5
TARGET_P99_MS = 100.0
SERVE = ["-m", "web.cli", "serve"]  # how the service process starts, after the interpreter


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    # CPU milliseconds per request: the server process, the test server (NaN: not measured),
    # the load generator.
    cpu_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)


# --- the machine -------------------------------------------------------------------------------


def machine_line(load_tool: str, database: str) -> str:
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("aiohttp", "motor", "pymongo", "orjson")
    )
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {versions}, database: {database}, load: {load_tool}"
    )


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    from tests.servers import free_port as pick

    return pick()


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu(pid: int | None) -> float:
    """The test server's CPU seconds; NaN for a database whose process is not on this machine."""
    return math.nan if pid is None else cpu_seconds(pid)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def http_json(
    method: str, url: str, body: object | None = None, headers: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), dict(response.headers)


# --- seeding -----------------------------------------------------------------------------------


async def seed(mongodb_url: str) -> None:
    """One event, one super admin, 1,000 rolled-up sessions on every provider and format.

    One session per provider goes through upsert_session (what PUT stores); the rest are copies
    of those documents with their own ids, times and numbers, written with insert_many (one
    command for all, where upserts would be a round trip each)."""
    from shared.admin import create_event, create_user
    from shared.db import connect
    from shared.models import SessionIn
    from shared.rules import FORMATS, PROVIDERS
    from shared.settings import Settings
    from shared.store import bump_analytics_version, upsert_session

    db = connect(Settings(mongodb_url=mongodb_url))
    try:
        await db.ensure_indexes()
        await create_event(db, EVENT_ID, "bench-org", "Benchmark event")
        await create_user(db, EMAIL, PASSWORD, "SUPER_ADMIN")
        start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
        templates = []
        for n, provider in enumerate([*PROVIDERS, None]):
            body = SessionIn(
                eventId=EVENT_ID,
                title="template",
                startTime=start,
                endTime=start,
                format="BREAKOUT_SESSION",
                streamProvider=provider,
                videoId=None if provider is None else f"video{n}",
            )
            templates.append((await upsert_session(db, f"template{n}", body))[0])
        await db.sessions.delete_many({"_id": {"$regex": "^template"}})

        rng = random.Random(1)
        documents: list[SessionDoc] = []
        for i in range(SESSIONS):
            begins = start + timedelta(minutes=15 * i)
            attendees = rng.randint(0, 5000)
            documents.append(
                {
                    **templates[i % len(templates)],
                    "_id": f"s{i:04d}",
                    "title": f"Session {i:04d}: {rng.choice(['Keynote', 'Panel', 'Demo', 'Q&A'])}",
                    "startTime": begins,
                    "endTime": begins + timedelta(minutes=45),
                    "format": FORMATS[i % len(FORMATS)],
                    "registeredUserCount": attendees + rng.randint(0, 2000),
                    "attendeeCount": attendees,
                    "avgAttendedDuration": rng.uniform(0, 3600),
                    "liveViews": rng.randint(0, attendees),
                    "recordingViews": rng.randint(0, attendees),
                    "watchTime": {
                        "total": rng.uniform(0, 1e7),
                        "live": rng.uniform(0, 5e6),
                        "recording": rng.uniform(0, 5e6),
                    },
                    "duration": rng.uniform(600, 7200),
                    "durationStatus": "OK",
                    "analyticsUpdatedAt": datetime.now(UTC),
                    "rollupPending": False,
                }
            )
        await db.sessions.insert_many(documents)
        await bump_analytics_version(db, [EVENT_ID])
    finally:
        db.close()


# --- the ceiling: a bare handler returning the same bytes ---------------------------------------


def serve_ceiling(port: int, body_path: str, headers_json: str) -> None:
    from aiohttp import web

    body = Path(body_path).read_bytes()
    headers = json.loads(headers_json)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/rest/host/session/analytics", handler)
    app.router.add_get("/healthz", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- load --------------------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    if shutil.which("wrk"):
        return shutil.which("wrk")
    print("wrk not found; trying apt-get install -y wrk", file=sys.stderr)
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return shutil.which("wrk")


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> Load:
    percentile = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.M))
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, socket.groups())) if socket else 0)
    return Load(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(percentile["50"]),
        p99_ms=_ms(percentile["99"]),
        requests=requests,
        errors=errors,
    )


def run_wrk(wrk: str, url: str, token: str, seconds: float, connections: int, threads: int) -> Load:
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def run_python_load(url: str, token: str, seconds: float, connections: int) -> Load:
    """Fallback without wrk: the aiohttp client in another process (its own cost is higher)."""
    done = subprocess.run(
        [sys.executable, __file__, "--python-load", url, token, str(seconds), str(connections)],
        capture_output=True,
        text=True,
        check=True,
    )
    return Load(**json.loads(done.stdout))


def python_load(url: str, token: str, seconds: float, connections: int) -> None:
    import aiohttp

    async def main() -> None:
        latencies: list[float] = []
        errors = 0
        deadline = time.monotonic() + seconds
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal errors
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        errors += response.status != 200
                    latencies.append((time.perf_counter() - started) * 1000)

            began = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.monotonic() - began
        latencies.sort()
        print(
            json.dumps(
                {
                    "requests_per_s": len(latencies) / elapsed,
                    "requests": len(latencies),
                    "errors": errors,
                    "p50_ms": latencies[len(latencies) // 2],
                    "p99_ms": latencies[int(len(latencies) * 0.99)],
                }
            )
        )

    asyncio.run(main())


# --- the run -----------------------------------------------------------------------------------


def table(service: Load, ceiling: Load, size_kb: float) -> str:
    ratio = service.requests_per_s / ceiling.requests_per_s
    rows = [
        "| target | requests/s | p50 ms | p99 ms | requests | errors "
        "| CPU ms/request: server / database / load |",
        "|---|---:|---:|---:|---:|---:|---|",
        *(
            f"| {name} | {load.requests_per_s:,.0f} | {load.p50_ms:.1f} | {load.p99_ms:.1f} | "
            f"{load.requests:,} | {load.errors} | "
            f"{' / '.join('n/a' if math.isnan(ms) else f'{ms:.2f}' for ms in load.cpu_ms)} |"
            for name, load in (
                ("service (`session-analytics serve`)", service),
                ("bare aiohttp handler, same bytes (ceiling)", ceiling),
            )
        ),
        f"| **service ÷ ceiling** | **{ratio:.2f}** | | | | | |",
    ]
    verdict = (
        f"Answer: {size_kb:.0f} KB ({PAGE_SIZE} of {SESSIONS:,} sessions, both expands). "
        f"Targets: ratio ≥ {TARGET_RATIO} — {'met' if ratio >= TARGET_RATIO else 'MISSED'}; "
        f"service p99 < {TARGET_P99_MS:g} ms — "
        f"{'met' if service.p99_ms < TARGET_P99_MS else 'MISSED'}."
    )
    return "\n".join(rows) + "\n\n" + verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="wrk threads (default: half the cores; the servers need the rest)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument(
        "--profile", metavar="FILE", help="run the service under pyinstrument and write its text report here"
    )
    args = parser.parse_args()

    from bench.mongo_server import describe, server_pid, start_mongo

    wrk = ensure_wrk()
    tool = (
        subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
        if wrk
        else "aiohttp client (wrk unavailable)"
    )
    tool += f", {args.threads} thread(s), {args.connections} connections, {args.seconds:g} s"
    work = Path(tempfile.mkdtemp(prefix="bench-list-"))
    mongo = start_mongo()
    service = ceiling = None
    try:
        database = describe(mongo)
        mongodb_url = mongo.url("bench_list")
        started = time.monotonic()
        asyncio.run(seed(mongodb_url))
        print(f"seeded {SESSIONS:,} sessions in {time.monotonic() - started:.1f}s", file=sys.stderr)

        port = free_port()
        env = {
            **os.environ,
            "MONGODB_URL": mongodb_url,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        profiler = ["-m", "pyinstrument", "-r", "text", "-o", args.profile] if args.profile else []
        service = subprocess.Popen(
            [sys.executable, *profiler, *SERVE, "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=ROOT
        )
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz", service)
        token = json.loads(
            http_json("POST", f"{base}/rest/u/login", {"username": EMAIL, "password": PASSWORD})[0]
        )["access_token"]
        path = f"/rest/host/session/analytics?eventId={EVENT_ID}&size={PAGE_SIZE}&expand=duration,watchTime"
        body, headers = http_json("GET", base + path, headers={"Authorization": f"Bearer {token}"})
        answer = json.loads(body)
        assert answer["recordsTotal"] == SESSIONS and len(answer["data"]) == PAGE_SIZE, answer.keys()
        assert {"duration", "watchTime"} <= set(answer["data"][0])

        body_path = work / "body.json"
        body_path.write_bytes(body)
        same_headers = {k: v for k, v in headers.items() if k in ("ETag", "Cache-Control", "X-Request-Id")}
        ceiling_port = free_port()
        ceiling = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--ceiling",
                str(ceiling_port),
                str(body_path),
                json.dumps(same_headers),
            ],
            cwd=ROOT,
        )
        ceiling_base = f"http://127.0.0.1:{ceiling_port}"
        wait_for_http(f"{ceiling_base}/healthz", ceiling)
        assert http_json("GET", ceiling_base + path)[0] == body

        def measure(url: str, seconds: float) -> Load:
            if wrk:
                return run_wrk(wrk, url, token, seconds, args.connections, args.threads)
            return run_python_load(url, token, seconds, args.connections)

        results = {}
        database_pid = server_pid(mongo)
        for name, url, server in (
            ("service", base + path, service),
            ("ceiling", ceiling_base + path, ceiling),
        ):
            if args.warmup:
                measure(url, args.warmup)
            before = [cpu_seconds(server.pid), database_cpu(database_pid), children_cpu_seconds()]
            load = measure(url, args.seconds)
            after = [cpu_seconds(server.pid), database_cpu(database_pid), children_cpu_seconds()]
            load.cpu_ms = tuple(  # type: ignore[assignment]
                (b - a) * 1000 / max(load.requests, 1) for a, b in zip(before, after, strict=True)
            )
            results[name] = load
            print(f"{name}: {load}", file=sys.stderr)

        print(f"Machine: {machine_line(tool, database)}")
        print()
        print(table(results["service"], results["ceiling"], len(body) / 1024))
    finally:
        stop(service)
        stop(ceiling)
        mongo.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--ceiling":
        serve_ceiling(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--python-load":
        python_load(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
