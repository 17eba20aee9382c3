"""Per-process caches of the read path, each bounded in size and kept honest by design.

- `ListCache`: list answers keyed by the event's `analyticsVersion`. Every write to an event's
  sessions (rollup, duration sync, PUT) bumps that version *after* writing, so an answer is
  reused only for the version the request looked up. It also keeps the last good answer of
  each query, whatever its version: while the database is too slow to look the version up
  (LIST_STALE_AFTER_S), a host who was already allowed that event gets that answer instead
  of a timeout.
- `TtlCache`: the principal behind a token and event documents, reused for at most
  `HOST_CACHE_TTL_S`. A rollup counts as finished only that long after it bumped the version
  (it waits before returning), so an event document cached by a request can never hide a
  rollup that finished before the request began. A logout drops the token at once in its own
  process; other processes stop accepting it within the TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    body: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class LastGoodAnswer:
    event: dict[str, object]  # the fields the host check reads (`_id`, `organizerId`)
    answer: CachedAnswer


class ListCache:
    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[tuple[object, ...], CachedAnswer] = OrderedDict()
        self._last_good: OrderedDict[tuple[object, ...], LastGoodAnswer] = OrderedDict()
        # When each fresh answer still being worked out for a query began (monotonic).
        self._refreshing: dict[tuple[object, ...], list[float]] = {}
        # The refresh under way per token and query: one at a time, the others wait for it.
        self._flights: dict[tuple[object, ...], asyncio.Future[Any]] = {}
        self._max = max_entries

    def flight(self, key: tuple[object, ...]) -> asyncio.Future[Any] | None:
        return self._flights.get(key)

    def fly(self, key: tuple[object, ...], refresh: asyncio.Future[Any]) -> None:
        """`refresh` is the one under way for `key` until it ends."""
        self._flights[key] = refresh
        refresh.add_done_callback(lambda _: self._flights.pop(key, None))

    def refresh_started(self, key: tuple[object, ...]) -> float:
        began = time.monotonic()
        self._refreshing.setdefault(key, []).append(began)
        return began

    def refresh_ended(self, key: tuple[object, ...], began: float) -> None:
        running = self._refreshing.get(key, [])
        if began in running:
            running.remove(began)
        if not running:
            self._refreshing.pop(key, None)

    def refreshing_for(self, key: tuple[object, ...]) -> float:
        """Seconds the oldest running refresh of this query has taken (0 when none runs)."""
        running = self._refreshing.get(key)
        return time.monotonic() - min(running) if running else 0.0

    def remember(self, key: tuple[object, ...], event: Mapping[str, object], answer: CachedAnswer) -> None:
        """The newest answer to a query (event id and query parameters, no version)."""
        self._last_good[key] = LastGoodAnswer({k: event.get(k) for k in ("_id", "organizerId")}, answer)
        self._last_good.move_to_end(key)
        while len(self._last_good) > self._max:
            self._last_good.popitem(last=False)

    def last_good(self, key: tuple[object, ...]) -> LastGoodAnswer | None:
        return self._last_good.get(key)

    def get(self, key: tuple[object, ...]) -> CachedAnswer | None:
        answer = self._entries.get(key)
        if answer is not None:
            self._entries.move_to_end(key)
        return answer

    def put(self, key: tuple[object, ...], answer: CachedAnswer) -> None:
        self._entries[key] = answer
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class TtlCache(Generic[K, V]):
    """Values kept for `ttl_s` seconds (0 disables the cache), least recently used evicted."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None  # an expired entry stays (bounded by max_entries) for get_stale
        self._entries.move_to_end(key)
        return entry[1]

    def get_stale(self, key: K) -> V | None:
        """The value even past its TTL: only for answering while the database is too slow."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: K, value: V) -> None:
        if self._ttl <= 0:
            return
        self._entries[key] = (time.monotonic() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)
