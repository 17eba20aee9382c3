"""The live feed of an event's changes: a bounded replay log per event and a wake-up for listeners.

With Redis (every deployment), each change is an entry of a Redis stream per event (trimmed to
STREAM_REPLAY entries, so a client reconnecting with `Last-Event-ID` reads what it missed), and
a pub/sub message on one channel wakes every web process, which reads the entries after its
clients' last ids: any web process serves any client, and a lost wake-up is made up for by the
next heartbeat's read. The embedded demo keeps the same log in process memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

# An entry of the log: its id (as the stream's `Last-Event-ID`) and its fields.
Entry = tuple[str, dict[str, str]]
STREAM_KEEP_S = 7 * 86400  # an event's log goes once it has had no change for a week


@dataclass(slots=True)
class Replay:
    """What a listener missed after its last id: the entries, and whether some were trimmed away
    before it could read them (then it must start over from a fresh read of everything)."""

    entries: list[Entry]
    lost: bool = False


class LiveFeed(Protocol):
    async def publish(self, event_id: str, fields: dict[str, str]) -> str: ...

    async def since(self, event_id: str, last_id: str | None, limit: int) -> Replay: ...

    async def latest_id(self, event_id: str) -> str: ...


def _id_key(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis or 0), int(seq or 0)


def valid_id(entry_id: str) -> bool:
    """A stream entry id as Redis writes it: `milliseconds-sequence`."""
    millis, dash, seq = entry_id.partition("-")
    return bool(dash) and millis.isdigit() and seq.isdigit() and len(entry_id) <= 41


@dataclass
class Waiters:
    """This process's listeners, by event: each is woken when a change of its event lands."""

    by_event: dict[str, set[asyncio.Event]] = field(default_factory=lambda: defaultdict(set))

    @contextmanager
    def listen(self, event_id: str) -> Iterator[asyncio.Event]:
        woken = asyncio.Event()
        self.by_event[event_id].add(woken)
        try:
            yield woken
        finally:
            self.by_event[event_id].discard(woken)
            if not self.by_event[event_id]:
                del self.by_event[event_id]

    def wake(self, event_id: str) -> None:
        for woken in self.by_event.get(event_id, ()):
            woken.set()

    def wake_all(self) -> None:
        for event_id in list(self.by_event):
            self.wake(event_id)


class RedisFeed:
    """The log as one Redis stream per event (`namespace` keeps databases apart on one Redis)."""

    def __init__(self, redis: Redis, namespace: str, replay: int) -> None:
        self.redis = redis
        self.replay = replay
        self.prefix = f"session-analytics:{namespace}:live:"
        self.channel = f"session-analytics:{namespace}:live"

    async def publish(self, event_id: str, fields: dict[str, str]) -> str:
        key = self.prefix + event_id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, dict(fields), maxlen=self.replay, approximate=False)  # type: ignore[arg-type]
            pipe.expire(key, STREAM_KEEP_S)
            pipe.publish(self.channel, event_id)
            entry_id, *_ = await pipe.execute()
        return _text(entry_id)

    async def since(self, event_id: str, last_id: str | None, limit: int) -> Replay:
        key = self.prefix + event_id
        if last_id is None:
            return Replay([])
        raw = await self.redis.xrange(key, min="(" + last_id, count=limit) or []
        entries = [
            (_text(entry_id), {_text(k): _text(v) for k, v in (values or {}).items()})
            for entry_id, values in raw
        ]
        return Replay(entries, lost=await self._trimmed_after(key, last_id))

    async def _trimmed_after(self, key: str, last_id: str) -> bool:
        """Whether an entry newer than `last_id` was trimmed away (Redis ≥ 7 says which was the
        newest it deleted)."""
        try:
            info = await self.redis.xinfo_stream(key)
        except Exception as err:  # no such stream: nothing was ever lost
            if "no such key" in str(err).lower():
                return False
            raise
        deleted = _text(info.get("max-deleted-entry-id") or "0-0")
        return _id_key(deleted) > _id_key(last_id)

    async def latest_id(self, event_id: str) -> str:
        last = await self.redis.xrevrange(self.prefix + event_id, count=1)
        return _text(last[0][0]) if last else "0-0"

    async def listen(self, waiters: Waiters, stop: asyncio.Event) -> None:
        """Wake this process's listeners on every change published, until `stop`; a lost
        connection is retried, and the listeners read on their heartbeat meanwhile."""
        while not stop.is_set():
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    waiters.wake_all()  # changes may have landed while unsubscribed
                    while not stop.is_set():
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None:
                            waiters.wake(_text(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Redis away: listeners still read on their heartbeat
                log.warning("live feed subscription lost (%s); retrying", type(err).__name__)
                await asyncio.sleep(1.0)


class MemoryFeed:
    """The same log in this process (the embedded demo, and tests on the embedded store)."""

    def __init__(self, replay: int) -> None:
        self.replay = replay
        self.logs: dict[str, deque[Entry]] = {}
        self.trimmed: dict[str, str] = {}
        self.waiters = Waiters()
        self._last = (0, 0)

    def _next_id(self) -> str:
        import time

        millis = int(time.time() * 1000)
        self._last = (millis, 0) if millis > self._last[0] else (self._last[0], self._last[1] + 1)
        return f"{self._last[0]}-{self._last[1]}"

    async def publish(self, event_id: str, fields: dict[str, str]) -> str:
        entries = self.logs.setdefault(event_id, deque())
        entry_id = self._next_id()
        entries.append((entry_id, dict(fields)))
        while len(entries) > self.replay:
            self.trimmed[event_id] = entries.popleft()[0]
        self.waiters.wake(event_id)
        return entry_id

    async def since(self, event_id: str, last_id: str | None, limit: int) -> Replay:
        if last_id is None:
            return Replay([])
        after = _id_key(last_id)
        entries = [e for e in self.logs.get(event_id, ()) if _id_key(e[0]) > after][:limit]
        lost = _id_key(self.trimmed.get(event_id, "0-0")) > after
        return Replay(entries, lost=lost)

    async def latest_id(self, event_id: str) -> str:
        entries = self.logs.get(event_id)
        return entries[-1][0] if entries else "0-0"


_memory_feeds: dict[str, MemoryFeed] = {}


def memory_feed(namespace: str, replay: int) -> MemoryFeed:
    """The in-process log of one database (the demo's, or one test's)."""
    feed = _memory_feeds.get(namespace)
    if feed is None:
        feed = _memory_feeds[namespace] = MemoryFeed(replay)
    return feed


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
