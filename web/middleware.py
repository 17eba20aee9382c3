"""Request id, time limit, metrics, and the one place every failure becomes the error envelope."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from pymongo.errors import PyMongoError

from shared.db import UNAVAILABLE_ERRORS
from shared.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    TooManyRequests,
    Unavailable,
)
from shared.logs import request_id_var
from web.contract.common import ErrorEnvelope
from web.keys import HTTP_METRICS, SETTINGS

log = logging.getLogger("web.request")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that stream their answer: the time limit covers them only until the first byte.
STREAMING = web.AppKey("streaming_routes", set)


_PROCESS_ID = secrets.token_hex(6)
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    """Unique across processes (random per process) and cheap (a counter within one)."""
    return f"{_PROCESS_ID}{next(_request_numbers):012x}"


def envelope(err: ServiceError, request_id: str) -> web.Response:
    body = ErrorEnvelope.of(err, request_id).body()
    headers = {"X-Request-Id": request_id}
    if isinstance(err, TooManyRequests):
        headers["Retry-After"] = str(err.retry_after_s)
    return web.Response(body=body, status=err.http_status, content_type="application/json", headers=headers)


def _from_http_exception(exc: web.HTTPException) -> ServiceError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such route")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"method {exc.method} not allowed here")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("request body over the size limit")
    if exc.status == 400:
        return BadRequest(exc.text or "bad request")
    err = ServiceError(exc.text or exc.reason)
    err.http_status = exc.status
    err.error_code = str(exc.status)
    err.error_message = exc.reason
    return err


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")
    if not (0 < len(request_id) <= 64 and request_id.isascii() and request_id.isprintable()):
        request_id = _new_request_id()
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    metrics = request.app[HTTP_METRICS]
    route = _route_name(request)
    status = 500
    try:
        response = await _answer(request, handler, request_id, streaming=route in request.app[STREAMING])
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        metrics.requests.labels(route, request.method, str(status)).inc()
        metrics.latency.labels(route, request.method).observe(elapsed)
        if status >= 500 or elapsed > 1.0:
            log.warning(
                "request answered",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                },
            )
        request_id_var.reset(token)


async def _answer(
    request: web.Request, handler: Handler, request_id: str, *, streaming: bool
) -> web.StreamResponse:
    timeout = request.app[SETTINGS].request_timeout_s
    try:
        if streaming:
            return await handler(request)
        async with asyncio.timeout(timeout):
            return await handler(request)
    except ServiceError as err:
        if err.http_status >= 500:
            log.warning("service unavailable: %s", err.developer_message)
        return envelope(err, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return envelope(_from_http_exception(exc), request_id)
    except TimeoutError:
        log.warning("request timed out after %.1fs", timeout)
        return envelope(Unavailable(f"no answer within {timeout:g}s"), request_id)
    except UNAVAILABLE_ERRORS as err:
        return envelope(Unavailable(f"database unreachable: {type(err).__name__}"), request_id)
    except PyMongoError as err:
        log.exception("database error")
        return envelope(Unavailable(f"database error: {type(err).__name__}"), request_id)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error")
        return envelope(ServiceError("unexpected error; see the server log for this requestId"), request_id)
