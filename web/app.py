"""The application factory: every client is created on the running loop and closed with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from shared.db import Database, connect
from shared.settings import Settings
from shared.tasks import CeleryTaskQueue, TaskQueue
from web import admin_tasks, auth, docs, health, ingest, sessions
from web.cache import ListCache, TtlCache
from web.keys import DB, EVENTS, HTTP_METRICS, LIST_CACHE, PRINCIPALS, REGISTRY, SETTINGS, TASKS
from web.metrics import HttpMetrics
from web.middleware import STREAMING, request_context


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    task_queue: TaskQueue | None = None,
) -> web.Application:
    """Build the app. `database` / `task_queue` let the embedded demo and tests inject their own."""
    app = web.Application(middlewares=[request_context], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    registry = CollectorRegistry()
    app[REGISTRY] = registry
    app[HTTP_METRICS] = HttpMetrics(registry)
    app[LIST_CACHE] = ListCache()
    app[PRINCIPALS] = TtlCache(settings.host_cache_ttl_s)
    app[EVENTS] = TtlCache(settings.host_cache_ttl_s, max_entries=1000)
    app[STREAMING] = {"/rest/host/session/analytics/csv"}

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        db = database or connect(settings)
        app[DB] = db
        await db.ensure_indexes()
        yield
        if database is None:
            db.close()

    async def task_queue_ctx(app: web.Application) -> AsyncIterator[None]:
        queue: Any = task_queue or CeleryTaskQueue(settings.redis_url)
        app[TASKS] = queue
        yield
        if task_queue is None:
            await queue.close()

    app.cleanup_ctx.extend([database_ctx, task_queue_ctx])
    for module in (auth, sessions, ingest, admin_tasks, health, docs):
        app.add_routes(module.routes)
    return app
