"""The application factory: every client is created on the running loop and closed with the app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from shared.db import Database, connect
from shared.settings import Settings
from shared.tasks import CeleryTaskQueue, TaskQueue
from web import (
    admin_tasks,
    attendees,
    audience,
    auth,
    dashboard,
    docs,
    events,
    health,
    ingest,
    plugins,
    sessions,
)
from web.cache import ListCache, TtlCache
from web.keys import (
    DB,
    EVENTS,
    HTTP_METRICS,
    INGEST_KEYS,
    KNOWN_SESSIONS,
    LIST_CACHE,
    PRINCIPALS,
    REGISTRY,
    SETTINGS,
    TASKS,
)
from web.metrics import HttpMetrics
from web.middleware import (
    OWN_LINES,
    REQUEST_LINE,
    STREAMING,
    UNQUEUED,
    request_context,
    trusted_proxy_middleware,
)

log = logging.getLogger("web.app")
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    task_queue: TaskQueue | None = None,
) -> web.Application:
    """Build the app. `database` / `task_queue` let the embedded demo and tests inject their own."""
    app = web.Application(
        middlewares=_middlewares(settings),
        client_max_size=settings.max_body_bytes,
        # aiohttp closes a connection that has not sent a complete request head within its
        # keep-alive timeout, counted from the connection's start or its last answer.
        handler_args={"keepalive_timeout": settings.header_timeout_s},
    )
    _keep_state(app, settings)
    app.cleanup_ctx.extend([_database_ctx(settings, database), _task_queue_ctx(settings, task_queue)])
    for module in (auth, sessions, attendees, audience, ingest, admin_tasks, health, docs, events, dashboard):
        app.add_routes(module.routes)
    plugins.setup(app, settings)
    return app


KNOWN_SESSION_TTL_S = 24 * 3600.0


def _middlewares(settings: Settings) -> list[Middleware]:
    middlewares: list[Middleware] = [request_context]
    if settings.trusted_proxy_networks:
        middlewares.insert(0, trusted_proxy_middleware(settings.trusted_proxy_networks))
    return middlewares


def _keep_state(app: web.Application, settings: Settings) -> None:
    """The settings, metrics, caches and request line of this process, under their AppKeys."""
    app[SETTINGS] = settings
    registry = CollectorRegistry()
    app[REGISTRY] = registry
    app[HTTP_METRICS] = HttpMetrics(registry)
    app[LIST_CACHE] = ListCache()
    app[PRINCIPALS] = TtlCache(settings.host_cache_ttl_s)
    app[EVENTS] = TtlCache(settings.host_cache_ttl_s, max_entries=1000)
    app[INGEST_KEYS] = TtlCache(settings.host_cache_ttl_s, max_entries=1000)
    # A session never moves to another event nor goes away: once seen, it is known for a day
    # (bounded by count), so ingestion looks a session up once, not once a second.
    app[KNOWN_SESSIONS] = TtlCache(KNOWN_SESSION_TTL_S, max_entries=100_000)
    app[STREAMING] = {"/rest/host/session/analytics/csv"}
    app[UNQUEUED] = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/{asset}", "/host/"}
    app[REQUEST_LINE] = asyncio.Semaphore(settings.request_concurrency)
    ingest_line = asyncio.Semaphore(settings.ingest_concurrency)
    app[OWN_LINES] = {route: ingest_line for route in ingest.OWN_LINE_ROUTES}


def _database_ctx(settings: Settings, database: Database | None) -> CleanupContext:
    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        db = database or connect(settings)
        app[DB] = db
        await db.ensure_indexes()
        yield
        if database is None:
            db.close()

    return database_ctx


def _task_queue_ctx(settings: Settings, task_queue: TaskQueue | None) -> CleanupContext:
    async def task_queue_ctx(app: web.Application) -> AsyncIterator[None]:
        queue: TaskQueue = task_queue or CeleryTaskQueue(settings.redis_url)
        app[TASKS] = queue
        yield
        if task_queue is None:
            await queue.close()

    return task_queue_ctx


def service_version() -> str:
    try:
        return version("session-analytics")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def log_start(settings: Settings, host: str, port: int) -> None:
    """The start-up line of `serve`: what runs, where, and the settings that shape it (no secrets,
    no credentials inside the URLs)."""
    log.info(
        "session-analytics %s serving on http://%s:%s",
        service_version(),
        host,
        port,
        extra=_start_fields(settings, host, port),
    )


def _start_fields(settings: Settings, host: str, port: int) -> dict[str, object]:
    return {
        "version": service_version(),
        "address": f"{host}:{port}",
        "mongodb": _without_credentials(settings.mongodb_url),
        "redis": _without_credentials(settings.redis_url),
        "requestTimeoutS": settings.request_timeout_s,
        "headerTimeoutS": settings.header_timeout_s,
        "requestConcurrency": settings.request_concurrency,
        "ingestConcurrency": settings.ingest_concurrency,
        "mongodbMaxConcurrency": settings.mongodb_max_concurrency,
        "trustedProxies": settings.trusted_proxies or "none",
        "accessLog": settings.access_log,
        "loginThrottlePerMinute": settings.login_throttle_per_minute,
    }


def _without_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{path.split('?', 1)[0]}"
