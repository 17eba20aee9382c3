"""Duration sync end to end: due sessions, the fake providers, and what lands in the session documents."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from shared.db import Database
from shared.documents import SessionDoc
from shared.duration_status import NO_CREDENTIALS
from shared.models import SessionIn
from shared.settings import Settings
from shared.store import upsert_session
from tests.seed import found
from worker.durations import sync_durations
from worker.providers import build_clients
from worker.providers.base import VideoDuration
from worker.providers.fakes import FakeProviders, run_fake_providers
from worker.providers.wistia import WistiaClient
from worker.providers.youtube import next_quota_reset

EVENT = "event-1"
FAST = {
    "provider_backoff_base_s": 0.001,
    "provider_backoff_cap_s": 0.05,
    "provider_timeout_s": 5.0,
    "provider_max_retries": 4,
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    async with run_fake_providers(retry_after_s=0) as running:
        yield running


def sync_settings(settings: Settings, fake: FakeProviders, **changes: Any) -> Settings:
    return settings.model_copy(update={**FAST, **fake.settings_overrides(), **changes})


async def add_sessions(
    db: Database,
    provider: str | None,
    video_ids: Sequence[str | None],
    *,
    event_id: str = EVENT,
    prefix: str | None = None,
    session_format: str = "MAINSTAGE_SESSION",
) -> list[str]:
    """Sessions as the API creates them: the first through shared.store.upsert_session, the
    others as copies of it with their own id and video (one insert instead of many upserts)."""
    if await db.events.find_one({"_id": event_id}) is None:
        await db.events.insert_one(
            {"_id": event_id, "organizerId": "org", "name": event_id, "analyticsVersion": 0}
        )
    ids = [f"{prefix or (provider or 'none').lower()}-{event_id}-{n:03d}" for n in range(len(video_ids))]
    body = SessionIn(
        eventId=event_id,
        title="Session",
        startTime=datetime(2024, 5, 1, 10, tzinfo=UTC),
        endTime=datetime(2024, 5, 1, 11, tzinfo=UTC),
        format=session_format,
        streamProvider=provider,
        videoId=video_ids[0],
    )
    template, _ = await upsert_session(db, ids[0], body)
    copies: list[SessionDoc] = [
        {**template, "_id": sid, "videoId": vid} for sid, vid in zip(ids[1:], video_ids[1:], strict=True)
    ]
    if copies:
        await db.sessions.insert_many(copies)
    return ids


async def sessions_by_id(db: Database, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {doc["_id"]: doc async for doc in db.sessions.find({"_id": {"$in": list(ids)}})}


async def test_120_youtube_sessions_take_exactly_3_calls_and_get_their_durations(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    for n in range(120):
        fake.add("YOUTUBE", f"yt{n:03d}", 300 + n)
    ids = await add_sessions(database, "YOUTUBE", [f"yt{n:03d}" for n in range(120)])
    await database.sessions.update_many({}, {"$set": {"rollupPending": False}})
    version_before = found(await database.events.find_one({"_id": EVENT}))["analyticsVersion"]

    result = await sync_durations(database, sync_settings(settings, fake))

    assert fake.calls["YOUTUBE"] == 3
    youtube = result["providers"]["YOUTUBE"]
    assert (youtube["calls"], youtube["updated"], youtube["failures"], youtube["retries"]) == (3, 120, 0, 0)
    assert youtube["lastSuccessAt"] is not None and youtube["paused"] is False
    docs = await sessions_by_id(database, ids)
    assert [docs[i]["duration"] for i in ids] == [300.0 + n for n in range(120)]
    assert {docs[i]["durationStatus"] for i in ids} == {"KNOWN"}
    assert all(docs[i]["rollupPending"] is True for i in ids)
    checked = docs[ids[0]]
    assert checked["durationCheckAt"] - checked["durationSyncedAt"] == timedelta(days=1)
    event = found(await database.events.find_one({"_id": EVENT}))
    assert event["analyticsVersion"] > version_before


async def test_every_provider_is_filled_with_30_percent_5xx_and_429_and_retries_stay_bounded(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    expected: dict[str, float] = {}
    all_ids: list[str] = []
    for provider, count in (("YOUTUBE", 60), ("VIMEO", 8), ("TOKBOX", 8), ("VOXEET", 8), ("WISTIA", 8)):
        videos = [f"{provider.lower()}{n}" for n in range(count)]
        for n, video_id in enumerate(videos):
            fake.add(provider, video_id, 120.0 + n)
        ids = await add_sessions(database, provider, videos)
        expected.update({sid: 120.0 + n for n, sid in enumerate(ids)})
        all_ids += ids
    fake.error_rate, fake.max_errors_per_request = 0.3, 3
    tuned = sync_settings(settings, fake)

    result = await sync_durations(database, tuned)

    docs = await sessions_by_id(database, all_ids)
    assert {sid: docs[sid]["duration"] for sid in all_ids} == expected
    assert sum(fake.errors.values()) > 0
    for provider, metrics in result["providers"].items():
        batches = 2 if provider == "YOUTUBE" else 8
        assert metrics["retries"] == fake.errors[provider]
        assert metrics["retries"] <= tuned.provider_max_retries * batches
        assert metrics["waiting"] == 0 and metrics["error"] is None
    state = found(await database.provider_state.find_one({"_id": "VIMEO"}))
    assert state["totalCalls"] == fake.calls["VIMEO"]
    assert state["totalRetries"] == fake.errors["VIMEO"]
    assert state["lastSuccessAt"] is not None


async def test_youtube_quota_exceeded_pauses_youtube_while_the_others_finish(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    for n in range(60):
        fake.add("YOUTUBE", f"q{n}", 60.0)
    youtube = await add_sessions(database, "YOUTUBE", [f"q{n}" for n in range(60)])
    fake.add("VIMEO", "v1", 61.0)
    fake.add("WISTIA", "w1", 62.0)
    others = await add_sessions(database, "VIMEO", ["v1"]) + await add_sessions(database, "WISTIA", ["w1"])
    fake.youtube_quota = 1  # one call's worth of quota left today
    tuned = sync_settings(settings, fake, provider_concurrency=1)

    first = await sync_durations(database, tuned)

    assert fake.calls["YOUTUBE"] == 2
    assert first["providers"]["YOUTUBE"]["paused"] is True
    assert first["providers"]["YOUTUBE"]["updated"] == 50
    assert first["providers"]["YOUTUBE"]["waiting"] == 10
    assert first["providers"]["YOUTUBE"]["retries"] == 0
    assert "quota" in first["providers"]["YOUTUBE"]["error"]
    state = found(await database.provider_state.find_one({"_id": "YOUTUBE"}))
    expected_reset = next_quota_reset(datetime.now(UTC))
    assert abs(state["pausedUntil"] - expected_reset) < timedelta(seconds=1)
    docs = await sessions_by_id(database, youtube + others)
    assert [docs[sid]["duration"] for sid in others] == [61.0, 62.0]
    assert sum(docs[sid]["duration"] is not None for sid in youtube) == 50

    # Another run (any worker process) before the reset does not call YouTube at all.
    second = await sync_durations(database, tuned)
    assert fake.calls["YOUTUBE"] == 2
    assert second["providers"]["YOUTUBE"]["paused"] is True
    assert second["providers"]["YOUTUBE"]["waiting"] == 10

    # After the reset, YouTube is asked again and the rest is filled.
    await database.provider_state.update_one(
        {"_id": "YOUTUBE"}, {"$set": {"pausedUntil": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    fake.youtube_quota = None
    third = await sync_durations(database, tuned)
    assert third["providers"]["YOUTUBE"]["paused"] is False
    assert third["providers"]["YOUTUBE"]["updated"] == 10
    docs = await sessions_by_id(database, youtube)
    assert all(doc["duration"] == 60.0 for doc in docs.values())


async def test_a_wrong_credential_is_a_clear_error_with_no_retries_and_no_effect_on_others(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    for n in range(120):
        fake.add("YOUTUBE", f"k{n}", 60.0)
    youtube = await add_sessions(database, "YOUTUBE", [f"k{n}" for n in range(120)])
    fake.add("TOKBOX", "arch", 1500.0)
    tokbox = await add_sessions(database, "TOKBOX", ["arch"])
    tuned = sync_settings(settings, fake, youtube_api_key=SecretStr("revoked-key"))
    before = await sessions_by_id(database, youtube)

    result = await sync_durations(database, tuned)

    metrics = result["providers"]["YOUTUBE"]
    assert "YOUTUBE_API_KEY was refused" in metrics["error"]
    assert "API key not valid" in metrics["error"]
    assert metrics["retries"] == 0 and 1 <= metrics["calls"] <= tuned.provider_concurrency
    assert metrics["updated"] == 0 and metrics["waiting"] == 120
    docs = await sessions_by_id(database, youtube + tokbox)
    assert docs[tokbox[0]]["duration"] == 1500.0
    # Still due, untouched: the next run tries again (once) after someone fixes the key.
    assert all(docs[sid]["durationStatus"] == "PENDING" for sid in youtube)
    assert all(docs[sid]["durationCheckAt"] == before[sid]["durationCheckAt"] for sid in youtube)
    state = found(await database.provider_state.find_one({"_id": "YOUTUBE"}))
    assert "YOUTUBE_API_KEY was refused" in (state["lastError"] or "")


async def test_a_missing_credential_makes_its_sessions_wait_with_a_clear_log_line(
    database: Database, settings: Settings, fake: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add("WISTIA", "w1", 30.0)
    fake.add("VIMEO", "v1", 40.0)
    wistia = await add_sessions(database, "WISTIA", ["w1"])
    vimeo = await add_sessions(database, "VIMEO", ["v1"])
    tuned = sync_settings(settings, fake, wistia_api_token=None)

    with caplog.at_level(logging.WARNING, logger="worker.durations"):
        first = await sync_durations(database, tuned)
        second = await sync_durations(database, tuned)

    assert fake.calls["WISTIA"] == 0
    assert any(
        "WISTIA_API_TOKEN" in record.getMessage() and record.levelno == logging.WARNING
        for record in caplog.records
    )
    for result in (first, second):
        assert result["providers"]["WISTIA"]["waiting"] == 1
        assert result["providers"]["WISTIA"]["calls"] == 0
        assert "set WISTIA_API_TOKEN" in result["providers"]["WISTIA"]["error"]
    docs = await sessions_by_id(database, wistia + vimeo)
    assert docs[wistia[0]]["durationStatus"] == NO_CREDENTIALS
    assert docs[wistia[0]]["duration"] is None
    assert docs[vimeo[0]]["duration"] == 40.0


async def test_left_out_videos_are_not_asked_again_next_run_but_live_ones_are(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    fake.add("YOUTUBE", "done", 754.0)
    fake.add("YOUTUBE", "on-air", live=True)
    ids = await add_sessions(database, "YOUTUBE", ["done", "on-air", "deleted"])
    tuned = sync_settings(settings, fake, duration_live_retry_s=0)

    first = await sync_durations(database, tuned)
    docs = await sessions_by_id(database, ids)
    assert [docs[sid]["durationStatus"] for sid in ids] == ["KNOWN", "LIVE", "NOT_FOUND"]
    assert [docs[sid]["duration"] for sid in ids] == [754.0, None, None]
    missing = docs[ids[2]]
    assert missing["durationCheckAt"] - missing["durationSyncedAt"] == timedelta(
        seconds=tuned.duration_missing_retry_s
    )
    assert first["providers"]["YOUTUBE"]["missing"] == 1

    fake.requests.clear()
    await sync_durations(database, tuned)
    (request,) = fake.requests
    assert request.query["id"] == "on-air"

    # The stream ended: the next run reads its final length.
    fake.add("YOUTUBE", "on-air", 5400.0)
    await sync_durations(database, tuned)
    docs = await sessions_by_id(database, ids)
    assert docs[ids[1]]["duration"] == 5400.0 and docs[ids[1]]["durationStatus"] == "KNOWN"


async def test_zoom_facebook_and_sessions_without_video_get_no_duration_and_no_call(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    ids = (
        await add_sessions(database, "ZOOM", ["8123456789"])
        + await add_sessions(database, "FACEBOOK", ["10155"])
        + await add_sessions(
            database, "YOUTUBE", ["workshop-video"], prefix="workshop", session_format="WORKSHOP_SESSION"
        )
        + await add_sessions(database, None, [None])
    )
    result = await sync_durations(database, sync_settings(settings, fake))
    assert sum(fake.calls.values()) == 0
    assert all(m["calls"] == 0 for m in result["providers"].values())
    docs = await sessions_by_id(database, ids)
    assert all(doc["duration"] is None and doc["durationStatus"] == "NONE" for doc in docs.values())


async def test_recompute_of_one_event_with_force_asks_again_only_that_event(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    fake.add("VIMEO", "shared", 100.0)
    fake.add("VIMEO", "other", 200.0)
    mine = await add_sessions(database, "VIMEO", ["shared", "shared"], event_id="mine")
    theirs = await add_sessions(database, "VIMEO", ["other"], event_id="theirs")
    tuned = sync_settings(settings, fake)
    await sync_durations(database, tuned)
    # Two sessions on one video cost one lookup.
    assert fake.calls["VIMEO"] == 2

    fake.add("VIMEO", "shared", 150.0)  # the video was re-cut
    fake.add("VIMEO", "other", 250.0)
    unforced = await sync_durations(database, tuned, "mine")
    assert unforced["providers"]["VIMEO"]["calls"] == 0  # nothing of "mine" is due yet
    forced = await sync_durations(database, tuned, "mine", force=True)

    assert forced["providers"]["VIMEO"]["calls"] == 1
    assert forced["providers"]["VIMEO"]["changed"] == 2
    docs = await sessions_by_id(database, mine + theirs)
    assert [docs[sid]["duration"] for sid in mine] == [150.0, 150.0]
    assert docs[theirs[0]]["duration"] == 200.0


async def test_one_run_asks_at_most_the_batch_size_per_provider(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    for n in range(60):
        fake.add("YOUTUBE", f"b{n}", 10.0)
    await add_sessions(database, "YOUTUBE", [f"b{n}" for n in range(60)])
    tuned = sync_settings(settings, fake, duration_sync_batch=25)

    first = await sync_durations(database, tuned)
    assert first["providers"]["YOUTUBE"]["updated"] == 25 and fake.calls["YOUTUBE"] == 1
    assert await database.sessions.count_documents({"durationStatus": "KNOWN"}) == 25
    await sync_durations(database, tuned)
    await sync_durations(database, tuned)
    assert await database.sessions.count_documents({"durationStatus": "KNOWN"}) == 60
    assert fake.calls["YOUTUBE"] == 3


async def test_an_unchanged_duration_does_not_schedule_a_rollup(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    fake.add("WISTIA", "same", 42.0)
    (sid,) = await add_sessions(database, "WISTIA", ["same"])
    tuned = sync_settings(settings, fake)
    await sync_durations(database, tuned)
    await database.sessions.update_one({"_id": sid}, {"$set": {"rollupPending": False}})
    version = found(await database.sessions.find_one({"_id": sid}))["rollupVersion"]

    result = await sync_durations(database, tuned, EVENT, force=True)

    doc = found(await database.sessions.find_one({"_id": sid}))
    assert result["providers"]["WISTIA"]["updated"] == 1
    assert result["providers"]["WISTIA"]["changed"] == 0
    assert doc["rollupPending"] is False and doc["rollupVersion"] == version


async def test_an_answer_for_a_video_the_session_no_longer_shows_is_not_written(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    fake.add("WISTIA", "old", 42.0)
    (sid,) = await add_sessions(database, "WISTIA", ["old"])
    tuned = sync_settings(settings, fake)

    class HostChangesVideoMidway(WistiaClient):
        async def fetch_batch(self, video_ids: Sequence[str]) -> dict[str, VideoDuration]:
            answers = await super().fetch_batch(video_ids)
            await database.sessions.update_one({"_id": sid}, {"$set": {"videoId": "new"}})
            return answers

    async with aiohttp.ClientSession() as http:
        clients = build_clients(tuned, http)
        clients["WISTIA"] = HostChangesVideoMidway(http, tuned)
        await sync_durations(database, tuned, clients=clients)

    doc = found(await database.sessions.find_one({"_id": sid}))
    assert doc["videoId"] == "new" and doc["duration"] is None and doc["durationStatus"] == "PENDING"


async def test_the_result_is_json_ready_and_reports_every_provider(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    import json

    fake.add("VOXEET", "conf", 2400.5, recordings=2)
    (sid,) = await add_sessions(database, "VOXEET", ["conf"])
    result = await sync_durations(database, sync_settings(settings, fake))
    assert json.loads(json.dumps(result)) == result
    assert set(result["providers"]) == {"YOUTUBE", "VIMEO", "TOKBOX", "VOXEET", "WISTIA"}
    for metrics in result["providers"].values():
        assert {"calls", "failures", "retries", "updated", "missing", "lastSuccessAt", "paused"} <= set(
            metrics
        )
    assert result["providers"]["VOXEET"]["calls"] == 2  # the token, then the recordings
    assert found(await database.sessions.find_one({"_id": sid}))["duration"] == 2400.5
