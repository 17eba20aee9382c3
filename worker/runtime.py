"""One event loop per worker process, and the clients created on it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.db import Database, connect
from shared.settings import Settings, get_settings

T = TypeVar("T")


class WorkerRuntime:
    """Owns the loop a worker process runs its async task bodies on; created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.runner = asyncio.Runner()
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = connect(self.settings)
        return self._db

    def run(self, body: Callable[[WorkerRuntime], Awaitable[T]]) -> T:
        return self.runner.run(body(self))  # type: ignore[arg-type]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self.runner.close()


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    """This process's runtime; a forked child never reuses its parent's loop or sockets."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = WorkerRuntime(get_settings())
    return _runtime


def run(body: Callable[[WorkerRuntime], Awaitable[Any]]) -> Any:
    return runtime().run(body)
