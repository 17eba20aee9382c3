"""`session-analytics demo`: the whole service in one process, on the embedded store and runner.

Part of the command-line composition root (with web/cli.py): it is where web meets worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from shared import hooks
from shared.admin import create_event, create_ingest_key, create_user
from shared.db import Database, connect
from shared.logs import configure_logging
from shared.models import SessionIn, format_utc
from shared.settings import Settings
from shared.store import upsert_session
from shared.tasks import InProcessTaskQueue, TaskName
from web.app import create_app
from worker.durations import sync_durations, sync_event_durations
from worker.providers.fakes import FakeVideo, run_fake_providers
from worker.rollup import recompute_event, rollup_event, rollup_pending
from worker.webhooks import run_until_idle

ADMIN_EMAIL = "host@demo.example"
ADMIN_PASSWORD = "demo-password"
EVENT_ID = "demo-event"

# (sessionId, title, format, provider, videoId, video seconds at the provider)
SESSIONS: list[tuple[str, str, str, str | None, str | None, float | None]] = [
    ("keynote", "Opening Keynote", "MAINSTAGE_SESSION", "YOUTUBE", "dQw4w9WgXcQ", 3725.0),
    ("product-deep-dive", "Product Deep Dive", "BREAKOUT_SESSION", "VIMEO", "76979871", 1820.0),
    ("live-qa", "Live Q&A", "BREAKOUT_SESSION", "VOXEET", "conf-4f1c2a", 2400.5),
    ("partner-panel", "Partner Panel", "BREAKOUT_SESSION", "TOKBOX", "archive-9b2e", 1500.0),
    ("customer-stories", "Customer Stories", "BREAKOUT_SESSION", "WISTIA", "h4sh3d1d", 900.25),
    ("town-hall", "Town Hall", "MAINSTAGE_SESSION", "ZOOM", "8123456789", None),
    ("social-stream", "Social Stream", "BREAKOUT_SESSION", "FACEBOOK", "10155", None),
    ("teaser", "Ten-Second Teaser", "MAINSTAGE_SESSION", "YOUTUBE", "teaser00001", 12.0),
    ("hands-on-lab", "Hands-on Lab", "WORKSHOP_SESSION", None, None, None),
    ("speed-networking", "Speed Networking", "NETWORKING_SESSION", None, None, None),
]


def demo_settings() -> Settings:
    return Settings(
        mongodb_url="mem:///session_analytics_demo",
        redis_url="redis://embedded.invalid:0/0",
        log_json=False,
        # The demo's webhook receiver listens on this machine, over plain http.
        webhook_allow_http=True,
        webhook_allowed_hosts="127.0.0.1",
        rollup_interval_s=10,
        duration_sync_interval_s=60,
    )


def _videos() -> list[FakeVideo]:
    return [
        FakeVideo(provider=provider, video_id=video_id, duration=seconds)
        for _, _, _, provider, video_id, seconds in SESSIONS
        if provider in ("YOUTUBE", "VIMEO", "VOXEET", "TOKBOX", "WISTIA") and video_id and seconds
    ]


FIRST_NAMES = (
    "Amara", "Bjorn", "Chen", "Dolores", "Emeka", "Farah", "Giulia", "Hiroshi", "Ines", "Jonas",
    "Keiko", "Lars", "Maya", "Nikolai", "Olga", "Pedro", "Quinn", "Rania", "Sofia", "Tomasz",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zanele",
)  # fmt: skip
LAST_NAMES = (
    "Abebe", "Becker", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "O'Brien", "Papadopoulos", "Rossi",
    "Santos", "Tanaka", "van Dijk", "Wang", "Yilmaz", "Zhou",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "acme.example", "globex.example")
USERS = 240
NO_SHOWS = 16  # more people who register and never come
SESSION_GAP = timedelta(minutes=90)  # sessions start this far apart; each lasts its video's length
RECORDING_DAYS = 4  # the recording is watched on the session's day and the days after, fewer each day


def _length(video_seconds: float | None) -> float:
    """How long a session runs: its video's length, or the scheduled hour when it has none."""
    return video_seconds or 3600.0


def _identity(u: int) -> dict[str, str]:
    first = FIRST_NAMES[u % len(FIRST_NAMES)]
    last = LAST_NAMES[(u * 7 + u // len(FIRST_NAMES)) % len(LAST_NAMES)]
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    domain = EMAIL_DOMAINS[u % len(EMAIL_DOMAINS)]
    return {
        "firstName": first,
        "lastName": last,
        "email": f"{local}{u}@{domain}",
        "ticketId": f"TKT-{10000 + u}",
    }


def _interval(begins: datetime, start_s: float, end_s: float) -> tuple[str | None, str | None]:
    """Seconds from the session's start as the times a segment carries, whole seconds."""
    return format_utc(begins + timedelta(seconds=round(start_s))), format_utc(
        begins + timedelta(seconds=round(end_s))
    )


def _live_watch(rng: random.Random, length: float) -> list[tuple[float, float]]:
    """When one viewer watched live, in seconds from the start: most join in the first minutes,
    leave at spread-out times (so the curve rises, peaks and falls), a few step away and return."""
    if length < 300:  # a short clip is mostly watched whole
        return [(0.0, length if rng.random() < 0.8 else rng.uniform(0.3, 1.0) * length)]
    join = rng.triangular(0.0, 0.35 * length, 0.02 * length)
    leave = min(length, join + (length - join) * rng.betavariate(2.2, 1.2))
    if rng.random() < 0.2:  # stepped away for a while
        away = rng.uniform(join, leave)
        back = min(leave, away + rng.uniform(60, 600))
        return [(join, away), (back, leave)] if back < leave else [(join, away)]
    if rng.random() < 0.1:  # a second tab open meanwhile: counted once
        return [(join, leave), (join + (leave - join) / 3, join + (leave - join) / 2)]
    return [(join, leave)]


def _recording_watch(
    rng: random.Random, length: float, budget: float
) -> tuple[int, list[tuple[float, float]]]:
    """(day after the session, seconds watched of the video): never more than the `budget` of
    video this viewer did not see live."""
    day = min(int(rng.expovariate(1.1)), RECORDING_DAYS - 1)
    watched = budget if length < 300 else min(budget, length * rng.betavariate(1.4, 1.8))
    at = 3600.0 * (2 + rng.uniform(0, 8)) + day * 86400.0 + length
    return day, [(at, at + watched)]


def _attendance(start: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Registrations (with names, email and ticket) and watch segments of 240 demo users, the same
    on every run. A viewer's watch time never exceeds the session's length."""
    rng = random.Random(2024)
    registrations: list[dict[str, Any]] = []
    segments: list[dict[str, Any]] = []
    for n, (session_id, _, session_format, _, _, video_seconds) in enumerate(SESSIONS):
        begins, length = start + n * SESSION_GAP, _length(video_seconds)
        live_share = 0.75 if session_format == "MAINSTAGE_SESSION" else 0.5
        for u in range(USERS):
            user_id = f"user-{u:03d}"
            registered = rng.random() < 0.6
            if registered:
                at = format_utc(begins - timedelta(minutes=rng.randint(24 * 60, 20 * 24 * 60)))
                registrations.append(
                    {"sessionId": session_id, "userId": user_id, "registeredAt": at, **_identity(u)}
                )
            chance = live_share if registered else 0.08  # a few join without registering
            watched: list[tuple[str, float, float]] = []
            if rng.random() < chance:
                watched += [("LIVE", a, b) for a, b in _live_watch(rng, length)]
            live = sum(b - a for _, a, b in watched)  # tabs overlap rarely: a bound is enough
            if rng.random() < (0.1 if watched else 0.25) * (1 if registered else 0.3) and length - live >= 5:
                _, parts = _recording_watch(rng, length, length - live)
                watched += [("RECORDING", a, b) for a, b in parts]
            for part, (mode, a, b) in enumerate(watched):
                if b - a < 1:
                    continue
                seg_start, seg_end = _interval(begins, a, b)
                segments.append(
                    {
                        "segmentId": f"{session_id}-{user_id}-{part}",
                        "sessionId": session_id,
                        "userId": user_id,
                        "mode": mode,
                        "start": seg_start,
                        "end": seg_end,
                    }
                )
    # People who register for a session or two and never come: the event's no-shows.
    for u in range(USERS, USERS + NO_SHOWS):
        for session_id, *_ in rng.sample(SESSIONS, rng.randint(1, 2)):
            at = format_utc(start - timedelta(days=rng.randint(1, 20)))
            registrations.append(
                {"sessionId": session_id, "userId": f"user-{u:03d}", "registeredAt": at, **_identity(u)}
            )
    return registrations, segments


async def _post_batches(http: aiohttp.ClientSession, url: str, key: str, items: list[dict[str, Any]]) -> int:
    accepted = 0
    for i in range(0, len(items), 1000):
        async with http.post(url, json=items[i : i + 1000], headers={"Authorization": f"Bearer {key}"}) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"ingestion failed: {r.status} {body}")
            accepted += body["accepted"]
    return accepted


async def run_demo(host: str, port: int, *, check: bool = False) -> None:
    settings = demo_settings()
    configure_logging("WARNING", json_lines=False)
    async with run_fake_providers(videos=_videos()) as fake:
        settings = settings.model_copy(update=fake.settings_overrides())
        db = connect(settings)
        await db.ensure_indexes()
        queue = _in_process_queue(db, settings)
        hooks.use_task_queue(queue)  # webhook deliveries run in this process too
        runner = web.AppRunner(create_app(settings, database=db, task_queue=queue), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        base = f"http://{host}:{port}"
        receiver = DemoReceiver()
        await receiver.start(host)
        try:
            seeded = await _seed(db, settings, base)
            jobs = asyncio.create_task(_periodic_jobs(db, settings))
            report = await _walkthrough(base, receiver)
            _print_intro(base, {**report, **seeded, "rollup_interval_s": settings.rollup_interval_s})
            if not check:
                await asyncio.Event().wait()
            jobs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs
        finally:
            hooks.use_task_queue(None)
            await queue.close()
            await receiver.stop()
            await runner.cleanup()


def _in_process_queue(db: Database, settings: Settings) -> InProcessTaskQueue:
    """The worker's tasks, run in this process on this loop."""

    async def run_recompute(task_id: str, event_id: str) -> dict[str, Any]:
        return await recompute_event(db, settings, task_id, event_id, sync_event_durations)

    async def run_rollup(task_id: str) -> dict[str, int]:
        return await rollup_pending(db, settings)

    async def run_event_rollup(task_id: str, event_id: str) -> dict[str, Any]:
        return (await rollup_event(db, settings, event_id)).as_dict()

    async def run_sync(task_id: str) -> dict[str, Any]:
        return await sync_durations(db, settings)

    async def run_deliveries(task_id: str, webhook_id: str) -> dict[str, Any]:
        return (await run_until_idle(db, settings, webhook_id)).as_dict()

    return InProcessTaskQueue(
        {
            TaskName.RECOMPUTE_EVENT: run_recompute,
            TaskName.ROLLUP_PENDING: run_rollup,
            TaskName.ROLLUP_EVENT: run_event_rollup,
            TaskName.SYNC_DURATIONS: run_sync,
            TaskName.DELIVER_WEBHOOKS: run_deliveries,
        }
    )


async def _seed(db: Database, settings: Settings, base: str) -> dict[str, Any]:
    """The demo's event, host, sessions and attendance; returns the ingest key and keynote start."""
    await create_event(db, EVENT_ID, "demo-organizer", "Demo Conference 2024")
    await create_user(db, ADMIN_EMAIL, ADMIN_PASSWORD, "ORGANIZER_ADMIN", organizer_ids=["demo-organizer"])
    # Far enough back for the recordings' days after each session to have passed.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=RECORDING_DAYS + 2)
    for n, (session_id, title, session_format, provider, video_id, seconds) in enumerate(SESSIONS):
        begins = start + n * SESSION_GAP
        await upsert_session(
            db,
            session_id,
            SessionIn(
                eventId=EVENT_ID,
                title=title,
                startTime=begins,
                endTime=begins + timedelta(seconds=_length(seconds)),
                format=session_format,
                streamProvider=provider,
                videoId=video_id,
            ),
        )
    key = await create_ingest_key(db, [EVENT_ID])
    registrations, segments = _attendance(start)
    async with aiohttp.ClientSession() as http:
        await _post_batches(http, f"{base}/rest/events/{EVENT_ID}/registrations", key, registrations)
        await _post_batches(http, f"{base}/rest/events/{EVENT_ID}/watch-segments", key, segments)
    return {"ingest_key": key, "keynote_start": start}


async def _periodic_jobs(db: Database, settings: Settings) -> None:
    """The beat schedule, in process: rollups and duration sync on their intervals."""
    last_sync = 0.0
    loop = asyncio.get_running_loop()
    while True:
        if loop.time() - last_sync >= settings.duration_sync_interval_s:
            await sync_durations(db, settings)
            last_sync = loop.time()
        await rollup_pending(db, settings)
        await asyncio.sleep(settings.rollup_interval_s)


class DemoReceiver:
    """A webhook receiver on this machine: keeps what it is sent and checks its signature."""

    def __init__(self) -> None:
        self.secret = ""
        self.got: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}/hook"

    async def _receive(self, request: web.Request) -> web.Response:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        body = await request.read()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            payload, verified = json.loads(body), False
        self.got.append({"id": request.headers.get("webhook-id"), "verified": verified, "payload": payload})
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _register_receiver(
    http: aiohttp.ClientSession, auth: dict[str, str], receiver: DemoReceiver
) -> str:
    topics = ["recompute.finished", "session.analytics.updated"]
    body = {"url": receiver.url, "topics": topics, "eventId": EVENT_ID}
    async with http.post("/rest/host/webhooks", json=body, headers=auth) as r:
        created = await r.json()
        if r.status != 201:
            raise RuntimeError(f"demo webhook not registered: {created}")
    receiver.secret = created["secret"]
    return str(created["webhookId"])


async def _walkthrough(base: str, receiver: DemoReceiver) -> dict[str, Any]:
    """Log in, register the demo's webhook receiver, recompute the event, and read the list back,
    as a host would."""
    async with aiohttp.ClientSession(base_url=base) as http:
        async with http.post(
            "/rest/u/login", json={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ) as r:
            login = await r.json()
        auth = {"Authorization": f"Bearer {login['access_token']}"}
        webhook_id = await _register_receiver(http, auth, receiver)
        async with http.post(f"/rest/host/session/analytics/recompute?eventId={EVENT_ID}", headers=auth) as r:
            task_id = (await r.json())["taskId"]
        for _ in range(600):
            async with http.get(f"/rest/host/tasks/{task_id}", headers=auth) as r:
                task = await r.json()
            if task["state"] in ("SUCCESS", "FAILURE"):
                break
            await asyncio.sleep(0.05)
        if task["state"] != "SUCCESS":
            raise RuntimeError(f"demo recompute did not succeed: {task}")
        async with http.get(
            f"/rest/host/session/analytics?eventId={EVENT_ID}&expand=duration,watchTime", headers=auth
        ) as r:
            listing = await r.json()
        async with http.get("/rest/host/session/keynote/attendee?size=3", headers=auth) as r:
            top = (await r.json())["data"]
        async with http.get(f"/rest/host/event/{EVENT_ID}/analytics", headers=auth) as r:
            audience = await r.json()
    for _ in range(200):  # the recompute's messages: after the debounce, within seconds
        if any(got["payload"]["type"] == "recompute.finished" for got in receiver.got):
            break
        await asyncio.sleep(0.05)
    with_duration = [s for s in listing["data"] if s.get("duration")]
    attended = [s for s in listing["data"] if s["attendeeCount"]]
    if len(with_duration) < 5 or len(attended) < len(SESSIONS) - 1:
        raise RuntimeError("demo numbers missing after recompute")
    if not audience["uniqueAttendees"] or not audience["noShows"]:
        raise RuntimeError(f"demo audience missing after recompute: {audience}")
    return {
        "token": login["access_token"],
        "task": task,
        "listing": listing,
        "top": top,
        "audience": audience,
        "webhook_id": webhook_id,
        "deliveries": list(receiver.got),
        "receiver": receiver.url,
    }


def _segment_example(base: str, key: str, keynote_start: datetime) -> list[str]:
    """A `curl` that posts one watch segment with the demo's ingest key, as a player would."""
    begins = keynote_start + timedelta(minutes=10)
    segment = {
        "segmentId": "try-it-1",
        "sessionId": "keynote",
        "userId": "you",
        "mode": "LIVE",
        "start": format_utc(begins),
        "end": format_utc(begins + timedelta(minutes=5)),
    }
    body = json.dumps([segment], separators=(",", ":"))
    return [
        f"  INGEST_KEY={key}",
        f"  curl -s -X POST '{base}/rest/events/{EVENT_ID}/watch-segments' \\",
        "       -H \"Authorization: Bearer $INGEST_KEY\" -H 'Content-Type: application/json' \\",
        f"       -d '{body}'",
    ]


def _curl_examples(base: str, token: str) -> list[str]:
    curl = 'curl -s -H "Authorization: Bearer $TOKEN"'
    return [
        f"  curl -s -X POST {base}/rest/u/login -H 'Content-Type: application/json' \\",
        f'       -d \'{{"username":"{ADMIN_EMAIL}","password":"{ADMIN_PASSWORD}"}}\'',
        f"  TOKEN={token}",
        f"  {curl} '{base}/rest/host/session/analytics?eventId={EVENT_ID}&expand=duration,watchTime'",
        f"  {curl} '{base}/rest/host/session/keynote/analytics'",
        f"  {curl} '{base}/rest/host/session/keynote/attendee?size=5&searchString=garc%C3%ADa'",
        f"  {curl} '{base}/rest/host/session/keynote/attendee/csv?sort=lastName'",
        f"  {curl} '{base}/rest/host/session/analytics/csv?eventId={EVENT_ID}'",
        f"  {curl} '{base}/rest/host/event/{EVENT_ID}/analytics'",
        f"  {curl} '{base}/rest/host/event/{EVENT_ID}/attendee?attended=false&size=5'",
        f"  {curl} '{base}/rest/host/event/{EVENT_ID}/attendee/csv?sort=-sessionsAttended'",
        f"  {curl} -X POST '{base}/rest/host/session/analytics/recompute?eventId={EVENT_ID}'",
        f"  {curl} '{base}/rest/host/webhooks?eventId={EVENT_ID}'",
        f"  {curl} -N '{base}/rest/host/event/{EVENT_ID}/stream'   # live changes; Ctrl-C to stop",
    ]


def _print_intro(base: str, report: dict[str, Any]) -> None:
    lines = [
        "",
        f"Session Analytics demo is running on {base}",
        f"  login:    {ADMIN_EMAIL} / {ADMIN_PASSWORD}   (event {EVENT_ID})",
        f"  docs:     {base}/docs",
        "",
        "Try:",
        *_curl_examples(base, report["token"]),
        "",
        "Post attendance with the demo's ingest key (the keynote's numbers show it after the next",
        f"rollup, within {report['rollup_interval_s']:.0f} s):",
        *_segment_example(base, report["ingest_key"], report["keynote_start"]),
        "",
        "Sessions after the worker jobs (duration sync, rollup, recompute):",
        *_session_lines(report["listing"]["data"]),
        "",
    ]
    a = report["audience"]
    lines += [
        f"The event's audience (GET /rest/host/event/{EVENT_ID}/analytics): {a['uniqueAttendees']} people"
        f" of {a['uniqueRegistrants']} registrants, {a['noShows']} no-shows,"
        f" peak {a['peakConcurrent']} watching live at {a['peakAt']}",
        "",
    ]
    lines += _delivery_lines(base, report)
    lines += ["The keynote's longest watchers (GET /rest/host/session/keynote/attendee):"]
    for a in report["top"]:
        name = f"{a['firstName']} {a['lastName']} <{a['email']}>"
        lines.append(f"  {name:<50} watched={a['attendedSeconds']:.0f}s engagement={a['engagement']:.0f}%")
    lines.append("")
    print("\n".join(lines), file=sys.stdout, flush=True)


def _delivery_lines(base: str, report: dict[str, Any]) -> list[str]:
    """The webhook message the demo's receiver got for the recompute, as it arrived."""
    got = report["deliveries"]
    finished = next((g for g in got if g["payload"]["type"] == "recompute.finished"), None)
    lines = [f"Webhooks: the demo registered a receiver ({report['receiver']}); it got {len(got)} messages."]
    if finished is not None:
        verified = "signature verified" if finished["verified"] else "signature NOT verified"
        lines.append(f"  {finished['id']} ({verified}): {json.dumps(finished['payload'])}")
    lines += [
        "  Its delivery log:",
        f'  curl -s -H "Authorization: Bearer $TOKEN" \\\n'
        f"       '{base}/rest/host/webhooks/{report['webhook_id']}/deliveries'",
        "",
    ]
    return lines


def _session_lines(items: list[dict[str, Any]]) -> list[str]:
    return [
        f"  {item['title']:<22} {item['streamProvider'] or '-':<9}"
        f" duration={item.get('duration')!s:<8} attendees={item['attendeeCount']:<4}"
        f" live={item['liveViews']!s:<5} rec={item['recordingViews']!s:<5}"
        f" avg={item['avgAttendedDuration']}"
        for item in items
    ]
