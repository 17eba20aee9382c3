"""Prometheus metrics of a worker process, served on WORKER_METRICS_PORT + its pool index.

Every process that runs tasks serves its own metrics, with the default process collectors,
on a port of its own: a prefork child on `WORKER_METRICS_PORT` + its pool index (0 …
concurrency-1, reused when a child is replaced), a solo or threads worker on
`WORKER_METRICS_PORT` itself. A second worker on the same host needs another
`WORKER_METRICS_PORT` (at least `--concurrency` apart); a port already taken is logged and
that process serves no metrics rather than failing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

TASKS = Counter(
    "session_analytics_tasks_total", "Tasks this process ran, by task name and final state", ["task", "state"]
)
TASK_SECONDS = Histogram(
    "session_analytics_task_seconds",
    "Time a task body ran, by task name",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
TASK_RETRIES = Counter(
    "session_analytics_task_retries_total", "Task retries scheduled, by task name", ["task"]
)
PROVIDER_CALLS = Counter(
    "session_analytics_provider_calls_total",
    "HTTP calls to the video providers, by provider and outcome "
    "(ok, client_error, throttled, server_error, timeout, network_error)",
    ["provider", "outcome"],
)

_started: dict[str, float] = {}
_serving: int | None = None


def task_started(task_id: str) -> None:
    _started[task_id] = time.perf_counter()


def task_finished(task_name: str, task_id: str, state: str | None) -> None:
    began = _started.pop(task_id, None)
    TASKS.labels(task_name, state or "UNKNOWN").inc()
    if began is not None:
        TASK_SECONDS.labels(task_name).observe(time.perf_counter() - began)


def task_retried(task_name: str) -> None:
    TASK_RETRIES.labels(task_name).inc()


def provider_call(provider: str, outcome: str) -> None:
    PROVIDER_CALLS.labels(provider, outcome).inc()


def serve(base_port: int, index: int = 0) -> int | None:
    """Serve this process's metrics on `base_port + index`; the port, or None when off or taken."""
    global _serving
    if base_port == 0 or _serving is not None:
        return _serving
    port = base_port + index
    try:
        start_http_server(port)
    except OSError as err:
        log.warning("worker metrics not served: port %d: %s", port, err)
        return None
    _serving = port
    log.info("worker metrics on port %d", port)
    return port


def pool_index(process: Any = None) -> int:
    """The pool index of this prefork child (0 in any other process)."""
    if process is None:
        from billiard.process import current_process

        process = current_process()
    return int(getattr(process, "index", 0) or 0)
