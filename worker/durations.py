"""Duration sync: ask each stream provider for its due sessions' video lengths and `$set` them."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from pymongo import UpdateOne

from shared.db import Database, bulk_write
from shared.documents import ProviderStateDoc, SessionDoc
from shared.duration_status import KNOWN, NO_CREDENTIALS, NOT_FOUND, PENDING, PROVIDER_ERROR
from shared.duration_status import LIVE as LIVE_STATUS
from shared.hooks import analytics_written
from shared.settings import Settings
from shared.store import bump_analytics_version, mark_for_rollup, now
from worker.providers import build_clients, new_http_session
from worker.providers.base import (
    ERROR,
    LIVE,
    MISSING,
    OK,
    PROCESSING,
    ProviderClient,
    ProviderMetrics,
    QuotaExceeded,
    VideoDuration,
    iso_z,
)

log = logging.getLogger(__name__)

# The rule 10 status a provider's answer leaves when it brings no length (DESIGN §4).
_STATUS_WITHOUT_LENGTH = {LIVE: LIVE_STATUS, MISSING: NOT_FOUND, ERROR: PROVIDER_ERROR, PROCESSING: PENDING}
# One event's sessions of one provider, in pages of duration_sync_batch: a generous bound.
MAX_EVENT_PAGES = 1000

# A session's filter and `$set` of one answer.
_Filter = dict[str, object]
_Update = dict[str, dict[str, object]]

_SESSION_FIELDS = {"_id": 1, "eventId": 1, "videoId": 1, "duration": 1, "durationStatus": 1}

__all__ = ["build_clients", "sync_durations"]


async def sync_durations(
    db: Database,
    settings: Settings,
    event_id: str | None = None,
    *,
    clients: dict[str, ProviderClient] | None = None,
    http: aiohttp.ClientSession | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Sync the durations of due sessions, every provider in parallel, each on its own.

    Without event_id: due sessions of all events, at most settings.duration_sync_batch per
    provider. With event_id: that event's due sessions, or with force all of them (force
    means nothing without an event).
    One provider's quota, credentials or outage never holds up the others.
    """
    started = now()
    own_http: aiohttp.ClientSession | None = None
    if clients is None:
        if http is None:
            http = own_http = new_http_session(settings)
        clients = build_clients(settings, http)
    try:
        async with asyncio.TaskGroup() as group:
            runs = {
                name: group.create_task(
                    _sync_provider(db, settings, client, event_id, force=force, started=started)
                )
                for name, client in clients.items()
            }
    finally:
        if own_http is not None:
            await own_http.close()
    providers = {name: run.result() for name, run in runs.items()}
    return {
        "startedAt": iso_z(started),
        "finishedAt": iso_z(now()),
        "eventId": event_id,
        "force": force,
        "updated": sum(m["updated"] for m in providers.values()),
        "changed": sum(m["changed"] for m in providers.values()),
        "providers": providers,
    }


async def _sync_provider(
    db: Database,
    settings: Settings,
    client: ProviderClient,
    event_id: str | None,
    *,
    force: bool,
    started: datetime,
) -> dict[str, Any]:
    name = client.name
    metrics = client.metrics = ProviderMetrics()
    state: ProviderStateDoc = await db.provider_state.find_one({"_id": name}) or {"_id": name}
    paused_until = state.get("pausedUntil")
    metrics.paused = isinstance(paused_until, datetime) and paused_until > started
    missing = client.missing_credentials()
    stopped = False
    new_pause: datetime | None = None
    last_id: str | None = None
    # Without an event, one bounded batch per run; for one event, page through all of it.
    for _ in range(1 if event_id is None else MAX_EVENT_PAGES):
        sessions = await _due_sessions(db, settings, name, event_id, force, started, last_id)
        if not sessions:
            break
        last_id = sessions[-1]["_id"]
        if metrics.paused or missing or stopped:
            metrics.waiting += len(sessions)
            if missing:
                await _mark_waiting(db, name, sessions)
        else:
            stop = await _sync_sessions(db, settings, client, sessions)
            stopped = stop is not None
            if isinstance(stop, QuotaExceeded):
                new_pause = stop.paused_until
                metrics.paused = True
        if len(sessions) < settings.duration_sync_batch:
            break
    if missing and metrics.waiting:
        metrics.error = f"{name}: {metrics.waiting} sessions wait for credentials; set {', '.join(missing)}"
        log.warning("%s", metrics.error, extra={"provider": name})
    elif metrics.paused and new_pause is None:
        metrics.error = f"{name}: paused until {iso_z(paused_until)} (daily quota exceeded)"
        if metrics.waiting:
            log.info("%s; %d sessions wait", metrics.error, metrics.waiting, extra={"provider": name})
    await _save_state(db, name, metrics, started, new_pause, missing_credentials=missing)
    if metrics.last_success_at is None and isinstance(state.get("lastSuccessAt"), datetime):
        metrics.last_success_at = state["lastSuccessAt"]
    result = metrics.as_dict()
    log.info(
        "duration sync %s: %d calls, %d updated, %d waiting",
        name,
        metrics.calls,
        metrics.updated,
        metrics.waiting,
        extra={"provider": name, "metrics": result},
    )
    return result


async def _due_sessions(
    db: Database,
    settings: Settings,
    provider: str,
    event_id: str | None,
    force: bool,
    moment: datetime,
    after_id: str | None,
) -> list[SessionDoc]:
    query: dict[str, object] = {"durationProvider": provider}
    if event_id is None:
        query["durationCheckAt"] = {"$lte": moment}
        cursor = db.sessions.find(query, _SESSION_FIELDS).sort("durationCheckAt", 1)
    else:
        query["eventId"] = event_id
        if not force:
            query["durationCheckAt"] = {"$lte": moment}
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        cursor = db.sessions.find(query, _SESSION_FIELDS).sort("_id", 1)
    return await cursor.limit(settings.duration_sync_batch).to_list(length=None)


async def _sync_sessions(
    db: Database, settings: Settings, client: ProviderClient, sessions: list[SessionDoc]
) -> Exception | None:
    """Ask for one page of sessions and write what came back; returns why the provider stopped."""
    by_video: dict[str, list[SessionDoc]] = defaultdict(list)
    answers: list[tuple[SessionDoc, VideoDuration]] = []
    for session in sessions:
        video_id = session.get("videoId")
        if isinstance(video_id, str) and video_id:
            by_video[video_id].append(session)
        else:
            answers.append((session, VideoDuration(ERROR, None, "session has no videoId")))
    # Sessions sharing one video cost one lookup.
    outcome = await client.fetch_durations(by_video)
    failed: list[SessionDoc] = []
    for video_id, group in by_video.items():
        answer = outcome.durations.get(video_id)
        if answer is None:
            client.metrics.waiting += len(group)
            # Without a stop, a video left without an answer is one whose batch failed after
            # its retries; after a stop (quota, refused key) it was simply not asked.
            if outcome.stopped is None:
                failed.extend(group)
        else:
            answers.extend((session, answer) for session in group)
    await _write_answers(db, settings, client.name, client.metrics, answers)
    await _mark_failed(db, client.name, failed, client.metrics.error)
    return outcome.stopped


def _next_check(settings: Settings, status: str, moment: datetime) -> datetime:
    if status == OK:
        return moment + timedelta(seconds=settings.duration_refresh_s)
    if status in (LIVE, PROCESSING):
        return moment + timedelta(seconds=settings.duration_live_retry_s)
    return moment + timedelta(seconds=settings.duration_missing_retry_s)


async def _write_answers(
    db: Database,
    settings: Settings,
    provider: str,
    metrics: ProviderMetrics,
    answers: list[tuple[SessionDoc, VideoDuration]],
) -> None:
    moment = now()
    updates: list[tuple[_Filter, _Update]] = []
    changed: dict[str, list[str]] = defaultdict(list)
    for session, answer in answers:
        old = session.get("duration")
        if answer.status == OK:
            duration = answer.seconds
            metrics.updated += 1
        elif answer.status in (LIVE, MISSING):
            # A live video has no final length yet; a missing one has none at all.
            duration = None
            metrics.missing += answer.status == MISSING
            metrics.live += answer.status == LIVE
        else:
            # Processing or failed on the provider's side: keep what we knew.
            duration = old
            metrics.live += answer.status == PROCESSING
            metrics.errors += answer.status == ERROR
        if duration != old:
            changed[session["eventId"]].append(session["_id"])
        # The video may have changed while we asked: then this answer is not for it.
        match: _Filter = {
            "_id": session["_id"],
            "durationProvider": provider,
            "videoId": session.get("videoId"),
        }
        updates.append(
            (
                match,
                {
                    "$set": {
                        "duration": duration,
                        # Rule 10 as shared.duration_status reads it: a kept length stays KNOWN.
                        "durationStatus": (
                            KNOWN if duration is not None else _STATUS_WITHOUT_LENGTH[answer.status]
                        ),
                        "durationDetail": answer.detail,
                        "durationSyncedAt": moment,
                        "durationCheckAt": _next_check(settings, answer.status, moment),
                    }
                },
            )
        )
    await _set_all(db, settings, updates)
    for event_id, session_ids in changed.items():
        await mark_for_rollup(db, event_id, session_ids)
    if changed:
        await bump_analytics_version(db, changed)
    for event_id, session_ids in changed.items():
        await analytics_written(db, settings, event_id, session_ids, kind="durations")
    metrics.changed += sum(len(ids) for ids in changed.values())


async def _set_all(db: Database, settings: Settings, updates: list[tuple[_Filter, _Update]]) -> None:
    """The `$set`s in bulk writes of WRITE_BATCH updates."""
    await bulk_write(settings, db.sessions, [UpdateOne(m, c) for m, c in updates])


async def _mark_waiting(db: Database, provider: str, sessions: list[SessionDoc]) -> None:
    """Show why never-synced sessions have no duration yet (NO_CREDENTIALS); known durations keep
    their status."""
    ids = [s["_id"] for s in sessions if s.get("durationStatus") == PENDING]
    if ids:
        await db.sessions.update_many(
            {"_id": {"$in": ids}, "durationProvider": provider, "durationStatus": PENDING},
            {"$set": {"durationStatus": NO_CREDENTIALS}},
        )


async def _mark_failed(db: Database, provider: str, sessions: list[SessionDoc], reason: str | None) -> None:
    """PROVIDER_ERROR for sessions without a length whose lookup failed after its retries; they
    stay due (durationCheckAt untouched), so the next run asks again. A known length stays KNOWN."""
    ids = [s["_id"] for s in sessions if s.get("duration") is None]
    if ids:
        await db.sessions.update_many(
            {"_id": {"$in": ids}, "durationProvider": provider, "duration": None},
            {"$set": {"durationStatus": PROVIDER_ERROR, "durationDetail": reason}},
        )


async def _save_state(
    db: Database,
    provider: str,
    metrics: ProviderMetrics,
    started: datetime,
    paused_until: datetime | None,
    *,
    missing_credentials: Sequence[str] = (),
) -> None:
    """Persist the run's counters; the quota pause is shared by every worker process through it."""
    fields: dict[str, object] = {
        "lastRunAt": started,
        "lastRun": metrics.as_dict(),
        "lastError": metrics.error,
        # Read by the web's session_analytics_provider_paused gauge (shared/ops.py).
        "missingCredentials": list(missing_credentials),
    }
    if metrics.last_success_at is not None:
        fields["lastSuccessAt"] = metrics.last_success_at
    if paused_until is not None:
        fields["pausedUntil"] = paused_until
    await db.provider_state.update_one(
        {"_id": provider},
        {
            "$set": fields,
            "$inc": {
                "totalCalls": metrics.calls,
                "totalFailures": metrics.failures,
                "totalRetries": metrics.retries,
            },
        },
        upsert=True,
    )


async def sync_event_durations(db: Database, settings: Settings, event_id: str) -> dict[str, Any]:
    """The duration step of a recompute: every session of the event, due or not."""
    return await sync_durations(db, settings, event_id, force=True)
