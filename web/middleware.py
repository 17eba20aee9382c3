"""Request id, client address, time limit, metrics, the access log, and the one place every
failure becomes the error envelope."""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp_remotes import XForwardedFiltered
from pymongo.errors import PyMongoError

from shared.db import UNAVAILABLE_ERRORS
from shared.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    Unavailable,
)
from shared.logs import request_id_var
from web.contract.common import ErrorEnvelope
from web.keys import HTTP_METRICS, SETTINGS

log = logging.getLogger("web.request")
access_log = logging.getLogger("web.access")

# Who made the request (user id or ingest key id), set by authentication, read by the access log.
credential_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("credential_id", default=None)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that stream their answer: the time limit covers them only until the first byte.
STREAMING = web.AppKey("streaming_routes", set)
# Routes that never wait in the request line: probes must answer while the line is long.
UNQUEUED = web.AppKey("unqueued_routes", set)
# The per-process line of API requests (REQUEST_CONCURRENCY handlers at a time, FIFO).
REQUEST_LINE = web.AppKey("request_line", asyncio.Semaphore)
# Routes with a line of their own (ingestion: INGEST_CONCURRENCY), so that a flood of other
# requests never holds the places their writes need.
OWN_LINES = web.AppKey("own_lines", dict)


_PROCESS_ID = secrets.token_hex(6)
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    """Unique across processes (random per process) and cheap (a counter within one)."""
    return f"{_PROCESS_ID}{next(_request_numbers):012x}"


def envelope(err: ServiceError, request_id: str) -> web.Response:
    body = ErrorEnvelope.of(err, request_id).body()
    headers = {**err.headers(), "X-Request-Id": request_id}
    return web.Response(body=body, status=err.http_status, content_type="application/json", headers=headers)


def _from_http_exception(exc: web.HTTPException) -> ServiceError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such route")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            f"method {exc.method} not allowed here", allowed=frozenset(exc.allowed_methods)
        )
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
    credential_token = credential_id_var.set(None)
    started = time.perf_counter()
    metrics = request.app[HTTP_METRICS]
    route = _route_name(request)
    status = 500
    try:
        response = await _answer(
            request,
            handler,
            request_id,
            streaming=route in request.app[STREAMING],
            line=_line_of(request, route),
        )
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        metrics.answered(route, request.method, status, elapsed)
        _log_access(request, route, status, elapsed)
        credential_id_var.reset(credential_token)
        request_id_var.reset(token)


def _line_of(request: web.Request, route: str) -> asyncio.Semaphore | None:
    """The line a request waits in: none for probes, its own for ingestion, else the common one."""
    if route in request.app[UNQUEUED]:
        return None
    return request.app[OWN_LINES].get(route) or request.app[REQUEST_LINE]


def _log_access(request: web.Request, route: str, status: int, elapsed: float) -> None:
    """One line a request with ACCESS_LOG on; otherwise only server errors and slow answers."""
    troubling = status >= 500 or elapsed > 1.0
    if not (request.app[SETTINGS].access_log or troubling):
        return
    (access_log.warning if troubling else access_log.info)(
        "%s %s %s %.1fms",
        request.method,
        route,
        status,
        elapsed * 1000,
        extra={
            "method": request.method,
            "route": route,
            "status": status,
            "ms": round(elapsed * 1000, 1),
            "client": request.remote,
            "credential": credential_id_var.get(),
        },
    )


async def _answer(
    request: web.Request,
    handler: Handler,
    request_id: str,
    *,
    streaming: bool,
    line: asyncio.Semaphore | None,
) -> web.StreamResponse:
    timeout = request.app[SETTINGS].request_timeout_s
    try:
        if streaming:
            return await handler(request)
        async with asyncio.timeout(timeout):
            return await _in_line(request, handler, line) if line is not None else await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return envelope(_from_http_exception(exc), request_id)
    except Exception as exc:  # CancelledError is not an Exception: it goes on up
        err, close = _failure(request, exc, timeout)
        response = envelope(err, request_id)
        if close:
            response.force_close()
        return response


async def _in_line(request: web.Request, handler: Handler, line: asyncio.Semaphore) -> web.StreamResponse:
    if request.body_exists:
        # The body first, outside the line: a slow client must not hold a place in it.
        await request.read()
    # FIFO lines, so a flood of one kind of request (cheap list reads) cannot starve another of
    # the event loop; ingestion has a line of its own, so its writes never wait behind them.
    async with line:
        return await handler(request)


def _failure(request: web.Request, exc: Exception, timeout: float) -> tuple[ServiceError, bool]:
    """The error a failure is answered with, and whether the connection must close after it."""
    if isinstance(exc, ServiceError):
        if exc.http_status >= 500:
            log.warning("service unavailable: %s", exc.developer_message)
        return exc, False
    if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
        # aiohttp's own parsing, met while the handler reads the body (e.g. an undecodable gzip).
        return BadRequest(f"malformed request body: {' '.join(str(exc).split())}"), True
    if isinstance(exc, TimeoutError):
        return _timed_out(request, timeout)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return Unavailable(f"database unreachable: {type(exc).__name__}"), False
    if isinstance(exc, PyMongoError):
        log.exception("database error")
        return Unavailable(f"database error: {type(exc).__name__}"), False
    log.exception("unhandled error")
    return ServiceError("unexpected error; see the server log for this requestId"), False


def _timed_out(request: web.Request, timeout: float) -> tuple[ServiceError, bool]:
    if _body_unfinished(request):
        # The client is slow, not the service: 408, and the connection is not reused.
        return RequestTimeout(f"the body was not received within {timeout:g}s"), True
    log.warning("request timed out after %.1fs", timeout)
    return Unavailable(f"no answer within {timeout:g}s"), False


def _body_unfinished(request: web.Request) -> bool:
    return request.body_exists and not request.content.is_eof()


def trusted_proxy_middleware(
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> Middleware:
    """`request.remote` becomes the client named in `X-Forwarded-For`, but only when the peer is
    one of the trusted proxies (TRUSTED_PROXIES); anyone else's header is ignored. Within the
    header, aiohttp-remotes skips trusted hops from the right and takes the first other address."""
    forwarded = XForwardedFiltered(networks)

    @web.middleware
    async def client_address(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _from_trusted_peer(request, networks):
            return await handler(request)
        try:
            return await forwarded.middleware(request, handler)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # Raised while reading the header, before the request reaches request_context.
            return envelope(BadRequest(exc.reason), _new_request_id())

    return client_address


def _from_trusted_peer(
    request: web.Request, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:  # a Unix socket has no address
        return False
    return any(peer in network for network in networks)
