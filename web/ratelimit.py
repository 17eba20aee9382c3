"""Rate limits per user token and per ingest key, counted in Redis so they are exact however many
web processes answer (the `limits` library's moving window: an atomic script per request).

Every answer to a `/rest/` request carrying a credential says where its caller stands, in the
IETF headers (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy: "host";q=1200;w=60`
and `RateLimit: "host";r=<left>;t=<seconds until the window frees one>`. Over the limit: 429
with `Retry-After` and the error envelope. Login has its own throttle (per client address),
and `/healthz`, `/readyz`, `/metrics` are never limited. When Redis does not answer, requests go
through unlimited (and without the headers) rather than fail: the limits protect the service,
they are not worth an outage.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from shared.access import INGEST_KEY_PREFIX
from shared.errors import ServiceError, TooManyRequests
from shared.settings import Settings
from web.keys import REGISTRY

log = logging.getLogger(__name__)

PAUSE_S = 5.0  # after Redis failed a count, requests go uncounted this long
UNLIMITED = frozenset({"/rest/u/login"})  # throttled per client address instead (web/auth.py)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one credential stands after this request."""

    policy: str
    limit: int
    remaining: int
    reset_s: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w=60',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_s}',
        }


class Limiter:
    """The per-credential limits of one web process, on shared storage."""

    def __init__(self, settings: Settings, storage: Storage, refused: Counter) -> None:
        self.storage = storage
        self.window = MovingWindowRateLimiter(storage)
        self.items: dict[str, RateLimitItem] = {
            kind: RateLimitItemPerMinute(amount)
            for kind, amount in (
                ("host", settings.rate_limit_host_per_minute),
                ("ingest", settings.rate_limit_ingest_per_minute),
            )
            if amount > 0
        }
        self.refused = refused
        self._paused_until = 0.0

    async def count(self, kind: str, credential: str) -> Standing | None:
        """Count one request of this credential; None when its kind is not limited or Redis is away."""
        item = self.items.get(kind)
        if item is None or time.monotonic() < self._paused_until:
            return None
        key = hashlib.sha256(credential.encode()).hexdigest()[:32]  # never the credential itself
        try:
            allowed = await self.window.hit(item, kind, key)
            stats = await self.window.get_window_stats(item, kind, key)
        except Exception as err:  # Redis away or slow: go through uncounted for a while
            self._paused_until = time.monotonic() + PAUSE_S
            log.warning("rate limits not counted for %.0fs: %s", PAUSE_S, type(err).__name__)
            return None
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return Standing(kind, item.amount, max(0, stats.remaining), reset, allowed)


LIMITER = web.AppKey("rate_limiter", Limiter)
STANDING: web.RequestKey[Standing] = web.RequestKey("rate_limit_standing", Standing)


def _credential(request: web.Request) -> tuple[str, str] | None:
    """(kind, credential) of a request the limits count; None for the rest."""
    if not request.path.startswith("/rest/") or request.path in UNLIMITED:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    token = token or request.headers.get("AUTHENTICATION", "").removeprefix("Bearer ").strip()
    if not token or len(token) > 100:
        return None  # answered 401 without any lookup
    return ("ingest" if token.startswith(INGEST_KEY_PREFIX) else "host"), token


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    caller = _credential(request)
    if caller is None:
        return await handler(request)
    limiter = request.app[LIMITER]
    standing = await limiter.count(*caller)
    if standing is not None:
        request[STANDING] = standing
        if not standing.allowed:
            limiter.refused.labels(standing.policy).inc()
            raise _over(standing)
    return await handler(request)


def _over(standing: Standing) -> ServiceError:
    credential = "ingest key" if standing.policy == "ingest" else "token"
    err = TooManyRequests(
        f"more than {standing.limit} requests a minute with this {credential}",
        retry_after_s=standing.reset_s,
    )
    err.error_message = "Rate limit exceeded; retry after the time Retry-After gives"
    return err


async def _standing_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer of a counted request carries its standing, error envelopes included."""
    standing = request.get(STANDING)
    if standing is not None:
        response.headers.update(standing.headers())


def setup(app: web.Application, settings: Settings) -> None:
    """The limiter on Redis (in process memory for the embedded demo), the headers on answers.
    The middleware itself is `rate_limit`, placed by the app factory inside request_context."""
    refused = Counter(
        "session_analytics_rate_limited",
        "Requests answered 429 for being over a rate limit, by credential kind (host, ingest)",
        ["kind"],
        registry=app[REGISTRY],
    )
    app.on_response_prepare.append(_standing_headers)

    async def limiter_ctx(app: web.Application) -> AsyncIterator[None]:
        storage: Storage
        if settings.embedded:
            storage = MemoryStorage()
        else:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=f"session-analytics:{settings.mongodb_database_name}:ratelimit",
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
        app[LIMITER] = Limiter(settings, storage, refused)
        yield

    app.cleanup_ctx.append(limiter_ctx)
