"""The web /metrics: HTTP families, process collectors, and the gauges read from the stores."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from shared.db import Database
from shared.jobs import begin_recompute, claim_recompute
from shared.settings import Settings
from shared.store import now
from tests.conftest import RecordingTaskQueue
from tests.contract import validate_every_answer
from tests.seed import (
    T0,
    add_session,
    app_client,
    cheap_password_hashing,
    ingest_headers,
    iso_utc,
    seed_world,
)
from tests.servers import Redis
from worker.rollup import rollup_pending


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def segments(count: int) -> list[dict[str, Any]]:
    return [
        {
            "segmentId": f"g{n}",
            "sessionId": "s1",
            "userId": f"u{n}",
            "mode": "LIVE",
            "start": iso_utc(T0 + timedelta(seconds=n)),
            "end": iso_utc(T0 + timedelta(seconds=n + 40)),
        }
        for n in range(count)
    ]


async def _world(database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    cheap_password_hashing(monkeypatch)
    await seed_world(database)
    await add_session(database, "s1")
    return await ingest_headers(database, ["ev1"])


async def test_inbox_gauges_rise_while_items_wait_and_fall_once_rolled_up(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = await _world(database, monkeypatch)
    # Read on every scrape here; the default cache is the next test's.
    client = await app_client(aiohttp_client, settings, database, task_queue, metrics_cache_s=0)
    idle = await scrape(client)
    assert idle[("session_analytics_inbox_items", ())] == 0
    assert idle[("session_analytics_rollup_lag_seconds", ())] == 0

    posted = await client.post("/rest/events/ev1/watch-segments", json=segments(7), headers=headers)
    assert posted.status == 200
    waiting = await scrape(client)
    assert waiting[("session_analytics_inbox_items", ())] == 7
    assert waiting[("session_analytics_rollup_lag_seconds", ())] > 0

    await rollup_pending(database, settings)
    done = await scrape(client)
    assert done[("session_analytics_inbox_items", ())] == 0
    assert done[("session_analytics_rollup_lag_seconds", ())] == 0
    # The default process collectors and the HTTP families are there too.
    assert ("process_cpu_seconds_total", ()) in done
    assert any(name == "http_requests_total" for name, _ in done)


async def test_answers_are_counted_by_route_method_and_status_and_other_methods_as_other(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _world(database, monkeypatch)
    client = await app_client(aiohttp_client, settings, database, task_queue)
    for method in ("GET", "GET", "DELETE", "PROPFIND", "PURGE"):
        await client.request(method, "/healthz")
    counted = {
        labels: value
        for (name, labels), value in (await scrape(client)).items()
        if name == "http_requests_total" and dict(labels)["route"] in ("/healthz", "unmatched")
    }
    assert counted == {
        (("method", "GET"), ("route", "/healthz"), ("status", "200")): 2,
        (("method", "DELETE"), ("route", "unmatched"), ("status", "405")): 1,
        (("method", "OTHER"), ("route", "unmatched"), ("status", "405")): 2,
    }


async def test_gauges_are_read_from_the_stores_at_most_every_few_seconds(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = await _world(database, monkeypatch)
    client = await app_client(aiohttp_client, settings, database, task_queue)
    assert settings.metrics_cache_s == 5
    before = await scrape(client)
    await client.post("/rest/events/ev1/watch-segments", json=segments(3), headers=headers)

    cached = await scrape(client)

    assert cached[("session_analytics_inbox_items", ())] == before[("session_analytics_inbox_items", ())] == 0


async def test_paused_providers_and_running_recomputes_are_gauged(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _world(database, monkeypatch)
    await database.provider_state.insert_many(
        [
            {"_id": "YOUTUBE", "pausedUntil": now() + timedelta(hours=3), "missingCredentials": []},
            {"_id": "VIMEO", "missingCredentials": ["VIMEO_ACCESS_TOKEN"]},
            {"_id": "WISTIA", "pausedUntil": now() - timedelta(hours=1), "missingCredentials": []},
        ]
    )
    task, _ = await claim_recompute(database, "ev1", settings.recompute_stale_s)
    await begin_recompute(database, task["_id"], "ev1", "run", "w1", settings.recompute_stale_s)
    client = await app_client(aiohttp_client, settings, database, task_queue)

    samples = await scrape(client)

    paused = {
        dict(labels)["provider"]: value
        for (name, labels), value in samples.items()
        if name == "session_analytics_provider_paused"
    }
    assert paused == {"YOUTUBE": 1, "VIMEO": 1, "WISTIA": 0, "TOKBOX": 0, "VOXEET": 0}
    assert samples[("session_analytics_recomputes_running", ())] == 1


async def test_queue_lengths_are_read_from_the_broker(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, redis_server: Redis
) -> None:
    import redis

    from tests.seed import login
    from web.app import create_app

    broker = redis.Redis.from_url(redis_server.url(3))
    broker.flushdb()
    broker.close()
    await seed_world(database)
    app = create_app(settings.model_copy(update={"redis_url": redis_server.url(3)}), database=database)
    client = validate_every_answer(await aiohttp_client(app))
    posted = await client.post(
        "/rest/host/session/analytics/recompute?eventId=ev1", headers=await login(client, "organizer")
    )
    assert posted.status == 202

    samples = await scrape(client)

    assert samples[("session_analytics_queue_length", (("queue", "default"),))] == 1
    assert samples[("session_analytics_queue_length", (("queue", "providers"),))] == 0


async def test_a_provider_without_credentials_is_gauged_paused_once_a_sync_ran(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.durations import sync_durations

    await _world(database, monkeypatch)
    from pydantic import SecretStr

    configured = settings.model_copy(update={"vimeo_access_token": SecretStr("token")})
    client = await app_client(aiohttp_client, configured, database, task_queue)

    await sync_durations(database, configured)
    samples = await scrape(client)

    assert samples[("session_analytics_provider_paused", (("provider", "YOUTUBE"),))] == 1
    assert samples[("session_analytics_provider_paused", (("provider", "VIMEO"),))] == 0
