"""The parts of the app that reach hosts and their clients beyond one answer: webhook routes, the
event stream and the rate limits, each a `setup(app)` wired here in one call of the factory."""

from __future__ import annotations

from aiohttp import web

from shared.settings import Settings
from web import ratelimit, stream, webhooks
from web.middleware import STREAMING, UNQUEUED


def setup(app: web.Application, settings: Settings) -> None:
    # Inside request_context (appended after it): a 429 gets the error envelope, every answer
    # of a counted request its rate-limit headers.
    app.middlewares.append(ratelimit.rate_limit)
    ratelimit.setup(app, settings)
    stream.setup(app, settings)
    app.add_routes(webhooks.routes)
    app.add_routes(stream.routes)
    # An event stream stays open for long: no time limit once it started, no place in the line.
    app[STREAMING].add(stream.PATH)
    app[UNQUEUED].add(stream.PATH)
