"""One event loop per worker process, the clients created on it, and the heartbeat of long tasks."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pymongo import MongoClient

from shared.db import Database, RawDocument, connect
from shared.jobs import renew_heartbeat_filter
from shared.settings import Settings, get_settings
from shared.store import now

T = TypeVar("T")
log = logging.getLogger(__name__)


class WorkerRuntime:
    """Owns the loop a worker process runs its async task bodies on; created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.runner = asyncio.Runner()
        self._db: Database | None = None
        self._sync_client: MongoClient[RawDocument] | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = connect(self.settings)
        return self._db

    @property
    def sync_client(self) -> MongoClient[RawDocument]:
        """A blocking client for the heartbeat thread: it must not depend on the busy loop."""
        if self._sync_client is None:
            timeout = self.settings.mongodb_timeout_ms
            self._sync_client = MongoClient(
                self.settings.mongodb_url,
                tz_aware=True,
                serverSelectionTimeoutMS=timeout,
                connectTimeoutMS=timeout,
                socketTimeoutMS=max(timeout * 5, 10_000),
                retryWrites=False,
            )
        return self._sync_client

    def run(self, body: Callable[[WorkerRuntime], Coroutine[None, None, T]]) -> T:
        # asyncio.Runner copies the context once, when it starts; without a fresh copy per task
        # every task would see the context (and log the taskId) of the first one this process ran.
        return self.runner.run(body(self), context=contextvars.copy_context())

    @contextmanager
    def heartbeat(self, task_id: str, run_id: str) -> Iterator[None]:
        """Renew the task's `heartbeatAt` every `task_heartbeat_s` while the body runs,
        from a thread, so a long step without progress never looks like a dead worker."""
        if self.settings.embedded:
            yield
            return
        stop = threading.Event()
        tasks = self.sync_client[self.settings.mongodb_database_name].tasks
        interval = self.settings.task_heartbeat_s

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    held = tasks.update_one(
                        renew_heartbeat_filter(task_id, run_id), {"$set": {"heartbeatAt": now()}}
                    )
                except Exception as err:  # the next beat tries again; the database may be back
                    log.warning("heartbeat of task %s not written: %s", task_id, err)
                    continue
                if held.matched_count == 0:
                    log.warning("task %s is no longer held by this run; heartbeat stops", task_id)
                    return

        thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(beat,),
            name=f"heartbeat-{task_id}",
            daemon=True,
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            # A beat under way finishes first (bounded by the driver's socket timeout).
            thread.join()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._sync_client is not None:
            self._sync_client.close()
        self.runner.close()


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    """This process's runtime; a forked child never reuses its parent's loop or sockets."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = WorkerRuntime(get_settings())
    return _runtime


def run(body: Callable[[WorkerRuntime], Coroutine[None, None, T]]) -> T:
    return runtime().run(body)
