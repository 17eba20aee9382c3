"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.errors import Unavailable
from web.contract.health import Checks, Health, Ready
from web.keys import DB, HTTP_METRICS, REGISTRY, SETTINGS, TASKS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return Health(status="ok").response()


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    # Within the request's own limit, by a margin: a check still waiting when that limit ends
    # would turn the answer into a bare timeout that names no dependency.
    timeout = min(settings.request_timeout_s * 0.8, settings.mongodb_timeout_ms / 1000 + 0.5)
    checks = {
        "mongodb": _check(request.app[DB].ping(), timeout),
        "redis": _check(request.app[TASKS].ping(), timeout),
    }
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    down = [name for name, ok in results.items() if not ok]
    if down:
        raise Unavailable(f"not ready: {', '.join(down)} unreachable")
    return Ready(status="ready", checks=Checks(mongodb="ok", redis="ok")).response()


async def _check(probe: object, limit_s: float) -> bool:
    try:
        async with asyncio.timeout(limit_s):
            await probe  # type: ignore[misc]
        return True
    except asyncio.CancelledError:
        raise
    except Exception:
        return False


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    await app[HTTP_METRICS].operations.refresh(app[DB], app[TASKS], app[SETTINGS])
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
