"""GET /rest/host/event/{eventId}/stream: an event's changes as Server-Sent Events (aiohttp-sse).

Fed by the live feed (shared/live.py) that the rollup hook writes: each web process subscribes
once to its Redis wake-ups and reads, for each of its clients, the log entries after the last
one that client saw. The client's `Last-Event-ID` is such an entry's id, so a reconnect (to any
web process) resumes where it left off; a client that fell further behind than the log keeps
gets `reset` and reads everything again. Every event carries the sessions' numbers as stored
when it is sent, never the numbers of the moment of the change, so nothing older follows newer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse
from prometheus_client import Gauge

from shared.documents import EventDoc
from shared.errors import BadRequest
from shared.hooks import event_summary
from shared.live import Entry, LiveFeed, RedisFeed, Waiters, memory_feed, valid_id
from shared.session_items import FULL_ITEM, ITEM_FIELDS
from shared.settings import Settings
from web.auth import authenticate_host, hosted_event
from web.contract.common import path_id
from web.contract.sessions import SessionItem
from web.keys import DB, REGISTRY, SETTINGS
from web.sessions import event_zone

routes = web.RouteTableDef()
PATH = "/rest/host/event/{eventId}/stream"
REPLAY_READ = 500  # log entries read at a time


@dataclass
class Live:
    """This process's end of the live feed: the log, and its listeners to wake."""

    feed: LiveFeed
    waiters: Waiters
    streams_open: Gauge
    # The Redis subscription, started with the first stream: a process nobody streams from
    # holds no subscription.
    start_listening: Callable[[], None] = lambda: None


LIVE = web.AppKey("live", Live)


def setup(app: web.Application, settings: Settings) -> None:
    """The stream route's feed and its Redis subscription, created and closed with the app."""
    streams_open = Gauge(
        "session_analytics_streams_open", "Event streams open in this web process", registry=app[REGISTRY]
    )
    app.cleanup_ctx.append(_live_ctx(settings, streams_open))


def _live_ctx(settings: Settings, streams_open: Gauge) -> Callable[[web.Application], AsyncIterator[None]]:
    async def live_ctx(app: web.Application) -> AsyncIterator[None]:
        namespace = settings.mongodb_database_name
        if settings.embedded:
            memory = memory_feed(namespace, settings.stream_replay)
            app[LIVE] = Live(memory, memory.waiters, streams_open)
            yield
            return
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        feed, waiters, stop = RedisFeed(client, namespace, settings.stream_replay), Waiters(), asyncio.Event()
        listeners: list[asyncio.Task[None]] = []

        def start_listening() -> None:
            if not listeners:
                listeners.append(asyncio.create_task(feed.listen(waiters, stop)))

        app[LIVE] = Live(feed, waiters, streams_open, start_listening)
        yield
        stop.set()
        for listener in listeners:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        await client.aclose()

    return live_ctx


def _last_event_id(request: web.Request) -> str | None:
    value = request.headers.get("Last-Event-ID")
    if value is None or value == "":
        return None
    if not valid_id(value):
        raise BadRequest("Last-Event-ID must be an id this stream sent")
    return value


@routes.get(PATH)
async def event_stream(request: web.Request) -> web.StreamResponse:
    settings, live = request.app[SETTINGS], request.app[LIVE]
    async with asyncio.timeout(settings.request_timeout_s):  # until the stream starts
        event_id = await _authorized_event(request)
        last_id = _last_event_id(request)
        start = last_id or await live.feed.latest_id(event_id)
    if request.method == "HEAD":
        return web.Response(content_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    live.start_listening()
    response = EventSourceResponse(ping_interval=settings.stream_heartbeat_s)
    await response.prepare(request)
    live.streams_open.inc()
    try:
        with live.waiters.listen(event_id) as woken:
            await response.send("{}", id=start, event="ready")
            await _follow(request, response, event_id, start, woken)
    except (ConnectionResetError, TimeoutError):
        pass  # the client went away
    finally:
        live.streams_open.dec()
    return response


async def _authorized_event(request: web.Request) -> str:
    principal = await authenticate_host(request)
    event_id = path_id(request, "eventId")
    await hosted_event(request, principal, event_id)
    return event_id


async def _follow(
    request: web.Request, response: EventSourceResponse, event_id: str, cursor: str, woken: asyncio.Event
) -> None:
    """Send what lands after `cursor` until STREAM_MAX_S; the token is checked again on every
    heartbeat, so a revoked one ends the stream."""
    settings, feed = request.app[SETTINGS], request.app[LIVE].feed
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.stream_max_s
    while True:
        woken.clear()
        replay = await feed.since(event_id, cursor, REPLAY_READ)
        if replay.lost:
            cursor = await feed.latest_id(event_id)
            await response.send("{}", id=cursor, event="reset")
        elif replay.entries:
            cursor = await _send_changes(request, response, event_id, replay.entries)
            if len(replay.entries) == REPLAY_READ:
                continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(settings.stream_heartbeat_s, remaining)):
                await woken.wait()
        if not woken.is_set():
            await _authorized_event(request)  # raises when the token is no longer good


async def _send_changes(
    request: web.Request, response: EventSourceResponse, event_id: str, entries: list[Entry]
) -> str:
    """The changed sessions and the summary, as stored now; the last entry's id on the last event."""
    db = request.app[DB]
    last = entries[-1][0]
    ids = sorted({sid for _, fields in entries for sid in orjson.loads(fields.get("sessions", "[]"))})
    summary = await event_summary(db, event_id)
    if ids:
        event = await _hosted_event_doc(request, event_id)
        docs = await db.sessions.find({"_id": {"$in": ids}}, ITEM_FIELDS).to_list(None)
        items = [
            SessionItem.of(doc, FULL_ITEM, event_zone(event)).model_dump(mode="json", exclude_unset=True)
            for doc in docs
        ]
        body = orjson.dumps({"eventId": event_id, "items": items}).decode()
        await response.send(body, id=None if summary is not None else last, event="sessions")
    if summary is not None or not ids:
        await response.send(orjson.dumps(summary or {}).decode(), id=last, event="summary")
    return last


async def _hosted_event_doc(request: web.Request, event_id: str) -> EventDoc:
    """The event document (cached for HOST_CACHE_TTL_S), for its time zone."""
    principal = await authenticate_host(request)
    return await hosted_event(request, principal, event_id)
