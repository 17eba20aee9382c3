"""Schemathesis against the real app on the real test servers: every check, bounded examples.

The service runs on a loopback port in its own thread and event loop (Schemathesis calls it with
`requests`), on the MongoDB-wire test server and Redis started by the test run, with a seeded
event `ev1`, session `s1`, a host token and an ingest key for `ev1`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from shared.admin import create_ingest_key
from shared.db import connect
from shared.settings import Settings
from tests.seed import PASSWORD, USERS, add_session, seed_world
from tests.servers import AnyMongo, Redis
from web.app import create_app
from web.openapi import SPEC

schema = schemathesis.openapi.from_dict(SPEC)
BOUNDED = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


class LiveService:
    """The real app on 127.0.0.1, served from a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.headers: dict[str, dict[str, str]] = {}

    def run(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=60)

    def start(self) -> None:
        self.thread.start()
        self.run(self._serve())

    async def _serve(self) -> None:
        self.runner = web.AppRunner(create_app(self.settings))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def seed(self) -> None:
        db = connect(self.settings)
        await seed_world(db)
        await add_session(db, "s1")
        self.headers["ingest"] = {"Authorization": f"Bearer {await create_ingest_key(db, ['ev1'])}"}
        db.close()

    def close(self) -> None:
        if self.runner is not None:
            self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(mongo: AnyMongo, redis_server: Redis) -> Iterator[LiveService]:
    import requests

    settings = Settings(
        mongodb_url=mongo.url(f"fuzz{os.getpid()}"),
        redis_url=redis_server.url(),
        log_json=False,
        stream_max_s=1,  # an event stream answers in a second, so every check can read it whole
        webhook_allow_http=True,
    )
    service = LiveService(settings)
    service.start()
    service.run(service.seed())
    body = {"username": USERS["super"][0], "password": PASSWORD}
    token = requests.post(f"{service.url}/rest/u/login", json=body, timeout=30).json()["access_token"]
    service.headers["host"] = {"Authorization": f"Bearer {token}"}
    yield service
    service.close()


@schema.include(path_regex="^/rest/(host|u)/").parametrize()
@BOUNDED
def test_host_routes_with_a_host_token(case: Any, live: LiveService) -> None:
    case.call_and_validate(base_url=live.url, headers=live.headers["host"])


@schema.include(path_regex="^/rest/events/").parametrize()
@BOUNDED
def test_ingest_routes_with_an_ingest_key(case: Any, live: LiveService) -> None:
    case.call_and_validate(base_url=live.url, headers=live.headers["ingest"])


@schema.exclude(path_regex="^/rest/").parametrize()
@BOUNDED
def test_open_routes(case: Any, live: LiveService) -> None:
    case.call_and_validate(base_url=live.url)
