"""Fixtures: the real MongoDB-wire server and Redis for the run, a fresh database per test, the real app."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from shared.db import Database, connect
from shared.settings import Settings
from tests.servers import ExternalMongo, MongoTestServer, Redis, mongo_for_tests

_counter = itertools.count()
# The app under test, as the `client` fixture (and tests.seed.app_client) serve it.
Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="session")
def mongo() -> Iterator[MongoTestServer | ExternalMongo]:
    """The MongoDB-wire test server (or TEST_MONGODB_URL's server); a missing one is an error,
    never a skip."""
    server = mongo_for_tests()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    server = Redis()
    server.start()
    yield server
    server.close()


def _db_name() -> str:
    return f"t{os.getpid()}_{next(_counter)}"


@pytest.fixture(params=["mock", "real"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def mongodb_url(store_kind: str, request: pytest.FixtureRequest) -> str:
    if store_kind == "mock":
        return f"mem:///{_db_name()}"
    server: MongoTestServer | ExternalMongo = request.getfixturevalue("mongo")
    return server.url(_db_name())


@pytest.fixture
def settings(mongodb_url: str) -> Settings:
    return Settings(
        mongodb_url=mongodb_url,
        redis_url="redis://127.0.0.1:1/0",
        log_json=False,
        request_timeout_s=5.0,
        mongodb_timeout_ms=1500,
        host_cache_ttl_s=0,  # each test sees its own writes at once; tests/test_host_caches.py
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = connect(settings)
    await db.ensure_indexes()
    yield db
    if not settings.embedded:
        await db.client.drop_database(settings.mongodb_database_name)
    db.close()


class RecordingTaskQueue:
    """Stands in for the broker where a test checks only what was enqueued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.signals: list[tuple[str, str, dict[str, Any]]] = []
        self.down = False

    async def enqueue(self, name: Any, *, task_id: str, kwargs: dict[str, Any]) -> None:
        from shared.errors import Unavailable

        if self.down:
            raise Unavailable("broker down (test)")
        self.sent.append((str(name), task_id, kwargs))

    async def enqueue_debounced(self, name: Any, *, key: str, kwargs: dict[str, Any], delay_s: float) -> bool:
        if self.down:
            return False
        self.signals.append((str(name), key, kwargs))
        return True

    async def ping(self) -> None:
        from shared.errors import Unavailable

        if self.down:
            raise Unavailable("broker down (test)")

    async def queue_lengths(self) -> dict[str, int]:
        return {}  # no broker: no queue to gauge

    async def close(self) -> None:
        return None


@pytest.fixture
def task_queue() -> RecordingTaskQueue:
    return RecordingTaskQueue()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> Client:
    """The real app; every answer it gives is checked against its /openapi.json."""
    from tests.contract import validate_every_answer
    from web.app import create_app

    app = create_app(settings, database=database, task_queue=task_queue)
    return validate_every_answer(await aiohttp_client(app))
