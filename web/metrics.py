"""Prometheus metrics of the HTTP side, in a registry owned by one app, and the operations gauges
read from MongoDB and Redis at scrape time (DESIGN §8)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from shared.db import Database
from shared.jobs import count_running_recomputes
from shared.ops import inbox_stats, provider_pauses
from shared.settings import Settings
from shared.store import now
from shared.tasks import TaskQueue

log = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # The default process collectors (CPU, memory, file descriptors, GC, Python version).
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            ["route", "method"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.list_cache = Counter(
            "session_list_cache_total",
            "Session list answers served from this process's cache or built anew",
            ["outcome"],
            registry=registry,
        )
        self.operations = OperationsGauges(registry)
        # Each (route, method, status)'s children, looked up once: `labels()` takes a lock and
        # builds its key on every call, and this runs on every request.
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answer and its time. Methods the parser knows beyond HTTP's own (WebDAV's
        PROPFIND, PURGE, …) are counted as OTHER: the service answers them 405 anyway."""
        method = method if method in _METHODS else "OTHER"
        children = self._answered.get((route, method, status))
        if children is None:
            children = self._answered[(route, method, status)] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)


class OperationsGauges:
    """The state of the whole service, read from the stores at most every `metrics_cache_s`.

    A store that does not answer leaves its gauges at their last values (and logs why): the
    scrape itself still answers, with the HTTP families.
    """

    read_timeout_s = 2.0

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rollup_lag = Gauge(
            "session_analytics_rollup_lag_seconds",
            "Age of the oldest ingested item not yet in the numbers (0 when none waits)",
            registry=registry,
        )
        self.inbox_items = Gauge(
            "session_analytics_inbox_items", "Ingested items waiting for a rollup", registry=registry
        )
        self.queue_length = Gauge(
            "session_analytics_queue_length", "Task messages waiting in a queue", ["queue"], registry=registry
        )
        self.provider_paused = Gauge(
            "session_analytics_provider_paused",
            "1 while a provider is paused for its quota or waits for credentials",
            ["provider"],
            registry=registry,
        )
        self.recomputes_running = Gauge(
            "session_analytics_recomputes_running",
            "Recomputes running on a live worker",
            registry=registry,
        )
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, db: Database, tasks: TaskQueue, settings: Settings) -> None:
        if time.monotonic() - self._read_at < settings.metrics_cache_s:
            return
        async with self._lock:
            if time.monotonic() - self._read_at < settings.metrics_cache_s:
                return  # another scrape read them while this one waited
            await asyncio.gather(
                self._read("database", self._read_database(db, settings)),
                self._read("redis", self._read_queues(tasks)),
            )
            self._read_at = time.monotonic()

    async def _read(self, store: str, reading: Awaitable[None]) -> None:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                await reading
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("metrics: %s not read (%s); gauges keep their last values", store, err)

    async def _read_database(self, db: Database, settings: Settings) -> None:
        at = now()
        inbox = await inbox_stats(db)
        pauses = await provider_pauses(db, at)
        running = await count_running_recomputes(db, settings.recompute_stale_s)
        self.inbox_items.set(inbox.items)
        oldest = inbox.oldest_received_at
        self.rollup_lag.set(max(0.0, (at - oldest).total_seconds()) if oldest else 0.0)
        for provider, paused in pauses.items():
            self.provider_paused.labels(provider).set(1 if paused else 0)
        self.recomputes_running.set(running)

    async def _read_queues(self, tasks: TaskQueue) -> None:
        lengths = getattr(tasks, "queue_lengths", None)
        if lengths is None:
            return
        for queue, length in (await lengths()).items():
            self.queue_length.labels(queue).set(length)
