"""Durations from the providers reach the hosts: the list shows them, and rollups use them."""

from __future__ import annotations

from typing import Any

from shared.db import Database
from shared.settings import Settings
from tests.conftest import Client
from tests.seed import add_session, ingest_headers, login, seed_world, watch_segment
from worker.durations import sync_durations
from worker.providers.fakes import FakeVideo, run_fake_providers
from worker.rollup import rollup_pending


async def _list(client: Any, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = await client.get("/rest/host/session/analytics?eventId=ev1&expand=duration", headers=headers)
    assert answer.status == 200
    return {item["sessionId"]: item for item in (await answer.json())["data"]}


async def test_synced_durations_show_in_the_list_and_set_the_view_threshold(
    client: Client, database: Database, settings: Settings
) -> None:
    await seed_world(database)
    await add_session(database, "teaser", provider="YOUTUBE", video_id="teaser12345")
    await add_session(database, "talk", provider="VIMEO", video_id="76979871")
    headers = await login(client, "super")
    before = await _list(client, headers)
    assert before["teaser"]["duration"] is None and before["talk"]["duration"] is None

    # Three viewers watch 20 s of each: below the 30 s default threshold, above a 12 s video.
    segments = [
        watch_segment(f"{sid}-{u}", sid, f"u{u}", seconds=20) for sid in ("teaser", "talk") for u in range(3)
    ]
    posted = await client.post(
        "/rest/events/ev1/watch-segments", json=segments, headers=await ingest_headers(database, ["ev1"])
    )
    assert (await posted.json())["accepted"] == 6
    await rollup_pending(database, settings)
    unsynced = await _list(client, headers)
    assert unsynced["teaser"]["liveViews"] == 0

    videos = [
        FakeVideo(provider="YOUTUBE", video_id="teaser12345", duration=12.0),
        FakeVideo(provider="VIMEO", video_id="76979871", duration=1800.0),
    ]
    async with run_fake_providers(videos=videos) as fake:
        synced = settings.model_copy(update=fake.settings_overrides())
        result = await sync_durations(database, synced)
    assert result["providers"]["YOUTUBE"]["updated"] == 1
    assert result["providers"]["VIMEO"]["updated"] == 1

    after_sync = await _list(client, headers)
    assert after_sync["teaser"]["duration"] == 12.0
    assert after_sync["talk"]["duration"] == 1800.0

    # The new durations flagged both sessions; the next rollup applies T = min(30 s, duration).
    await rollup_pending(database, settings)
    rolled = await _list(client, headers)
    assert rolled["teaser"]["liveViews"] == 3  # 20 s ≥ 12 s: a view of the whole teaser
    assert rolled["talk"]["liveViews"] == 0  # 20 s < 30 s
    detail = await (await client.get("/rest/host/session/teaser/analytics", headers=headers)).json()
    assert detail["liveEngagement"] == 100.0  # min(20 ÷ 12, 1) × 100
