"""Login, logout, and resolving the credential on a request to a host user or an ingest key."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pymongo import ReturnDocument

from shared.access import (
    INGEST_KEY_PREFIX,
    USER_TOKEN_PREFIX,
    HostPrincipal,
    IngestPrincipal,
    may_host,
    may_ingest,
)
from shared.errors import (
    AccountLocked,
    EventNotFound,
    NotEventHost,
    TooManyRequests,
    Unauthorized,
    WrongCredentialKind,
    WrongCredentials,
)
from shared.models import LoginIn, format_utc
from shared.security import HOST_ROLES, new_token, token_digest, verify_password
from web.contract.auth import LoginAnswer
from web.jsonio import parse_model, read_json
from web.keys import DB, EVENTS, PRINCIPALS, SETTINGS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _now() -> datetime:
    return datetime.now(UTC)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    alt = request.headers.get("AUTHENTICATION", "").strip()
    if alt.lower().startswith("bearer "):
        alt = alt[7:].strip()
    if alt:
        return alt
    raise Unauthorized("send Authorization: Bearer <token>")


async def authenticate_host(request: web.Request, *, host_role: bool = True) -> HostPrincipal:
    """The user behind the token. With `host_role` (every host route), a user whose role has no
    host access is refused before any event or session is looked up, so that role cannot learn
    which ids exist."""
    token = _bearer(request)
    if token.startswith(INGEST_KEY_PREFIX):
        await _ingest_key(request, token)  # a valid key is 403 here, an unknown one 401
        raise WrongCredentialKind("ingest keys may only post attendance")
    if not token.startswith(USER_TOKEN_PREFIX) or len(token) > 100:
        raise Unauthorized("unknown token")
    cache = request.app[PRINCIPALS]
    principal = cache.get(token)
    if principal is None:
        doc = await request.app[DB].tokens.find_one({"_id": token_digest(token)})
        if doc is None or doc.get("revoked"):
            raise Unauthorized("unknown, expired or revoked token")
        principal = HostPrincipal(
            user_id=doc["userId"],
            role=doc["role"],
            event_ids=frozenset(doc.get("eventIds") or ()),
            organizer_ids=frozenset(doc.get("organizerIds") or ()),
            expires_at=doc["expiresAt"],
        )
        cache.put(token, principal)
    if principal.expires_at is None or principal.expires_at <= _now():
        raise Unauthorized("unknown, expired or revoked token")
    if host_role and principal.role not in HOST_ROLES:
        raise NotEventHost(f"role {principal.role} has no host access")
    return principal


async def _ingest_key(request: web.Request, token: str) -> IngestPrincipal:
    if len(token) > 100:
        raise Unauthorized("unknown ingest key")
    doc = await request.app[DB].ingest_keys.find_one({"_id": token_digest(token)})
    if doc is None or doc.get("revoked"):
        raise Unauthorized("unknown or revoked ingest key")
    event_ids = doc.get("eventIds")
    return IngestPrincipal(doc["_id"][:12], None if event_ids is None else frozenset(event_ids))


async def authenticate_ingest(request: web.Request, event_id: str) -> IngestPrincipal:
    token = _bearer(request)
    if token.startswith(USER_TOKEN_PREFIX):
        await authenticate_host(request, host_role=False)
        raise WrongCredentialKind("user tokens may not post attendance; use an ingest key")
    if not token.startswith(INGEST_KEY_PREFIX):
        raise Unauthorized("unknown ingest key")
    principal = await _ingest_key(request, token)
    if not may_ingest(principal, event_id):
        raise NotEventHost(f"this ingest key is not for event {event_id}")
    return principal


async def hosted_event(request: web.Request, principal: HostPrincipal, event_id: str) -> dict:
    """The event document, when it exists and the principal administers it."""
    cache = request.app[EVENTS]
    event = cache.get(event_id)
    if event is None:
        event = await request.app[DB].events.find_one({"_id": event_id})
        if event is None:
            raise EventNotFound(f"no event {event_id}")
        cache.put(event_id, event)
    if not may_host(principal, event):
        raise NotEventHost(f"user {principal.user_id} does not administer event {event_id}")
    return event


async def _throttle(request: web.Request) -> None:
    """Fixed one-minute windows per client address, shared by every web process via MongoDB."""
    settings = request.app[SETTINGS]
    now = _now()
    window = now.replace(second=0, microsecond=0)
    address = request.remote or "unknown"
    doc = await request.app[DB].login_attempts.find_one_and_update(
        {"_id": f"{address}|{window.isoformat()}"},
        {"$inc": {"count": 1}, "$setOnInsert": {"expiresAt": window + timedelta(minutes=2)}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    if doc["count"] > settings.login_throttle_per_minute:
        retry_after = 60 - now.second
        raise TooManyRequests(
            f"more than {settings.login_throttle_per_minute} logins a minute from {address}",
            retry_after_s=retry_after,
        )


@routes.post("/rest/u/login")
async def login(request: web.Request) -> web.Response:
    await _throttle(request)
    body = parse_model(LoginIn, await read_json(request))
    db, settings = request.app[DB], request.app[SETTINGS]
    user = await db.users.find_one({"email": body.username.strip().lower()})
    now = _now()
    if user is not None and user.get("lockedUntil") and user["lockedUntil"] > now:
        raise AccountLocked(f"locked until {format_utc(user['lockedUntil'])}")
    ok = await asyncio.to_thread(verify_password, user and user.get("passwordHash"), body.password)
    if user is None:
        raise WrongCredentials("no such user or wrong password")
    if not ok:
        failures = await db.users.find_one_and_update(
            {"_id": user["_id"]},
            {"$inc": {"failedLogins": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if failures and failures.get("failedLogins", 0) >= settings.lockout_failures:
            await db.users.update_one(
                {"_id": user["_id"]},
                {"$set": {"lockedUntil": now + timedelta(seconds=settings.lockout_s), "failedLogins": 0}},
            )
            log.warning("account locked", extra={"userId": user["_id"]})
            raise AccountLocked(f"{settings.lockout_failures} wrong passwords in a row")
        raise WrongCredentials("no such user or wrong password")
    if user.get("failedLogins") or user.get("lockedUntil"):
        await db.users.update_one({"_id": user["_id"]}, {"$set": {"failedLogins": 0, "lockedUntil": None}})
    token = USER_TOKEN_PREFIX + new_token()
    expires_at = (now + timedelta(seconds=settings.token_ttl_s)).replace(microsecond=0)
    await db.tokens.insert_one(
        {
            "_id": token_digest(token),
            "userId": user["_id"],
            "role": user["role"],
            "eventIds": user.get("eventIds", []),
            "organizerIds": user.get("organizerIds", []),
            "expiresAt": expires_at,
            "createdAt": now,
            "revoked": False,
        }
    )
    return LoginAnswer(
        access_token=token,
        token_type="Bearer",
        expires_in=expires_at,
        userId=user["_id"],
        userRole=user["role"],
    ).response()


@routes.post("/rest/u/logout")
async def logout(request: web.Request) -> web.Response:
    await authenticate_host(request, host_role=False)
    token = _bearer(request)
    await request.app[DB].tokens.update_one({"_id": token_digest(token)}, {"$set": {"revoked": True}})
    request.app[PRINCIPALS].drop(token)
    return web.Response(status=204)
