"""Login, logout, and resolving the credential on a request to a host user or an ingest key."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web

from shared.access import (
    INGEST_KEY_PREFIX,
    USER_TOKEN_PREFIX,
    HostPrincipal,
    IngestPrincipal,
    may_host,
    may_ingest,
)
from shared.db import Database
from shared.documents import EventDoc, UserDoc
from shared.errors import (
    AccountLocked,
    EventNotFound,
    NotEventHost,
    TooManyRequests,
    Unauthorized,
    WrongCredentialKind,
    WrongCredentials,
)
from shared.login_counters import count_attempt, forget, lock, locked_until
from shared.models import LoginIn
from shared.security import HOST_ROLES, new_token, token_digest, verify_password
from web.contract.auth import LoginAnswer
from web.jsonio import parse_model, read_json
from web.keys import DB, EVENTS, INGEST_KEYS, PRINCIPALS, SETTINGS
from web.middleware import credential_id_var

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _now() -> datetime:
    return datetime.now(UTC)


def bearer_token(request: web.Request) -> str:
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
    token = bearer_token(request)
    if token.startswith(INGEST_KEY_PREFIX):
        await _ingest_key(request, token)  # a valid key is 403 here, an unknown one 401
        raise WrongCredentialKind("ingest keys may only post attendance")
    if not token.startswith(USER_TOKEN_PREFIX) or len(token) > 100:
        raise Unauthorized("unknown token")
    principal = await _user_principal(request, token)
    if principal.expires_at is None or principal.expires_at <= _now():
        raise Unauthorized("unknown, expired or revoked token")
    credential_id_var.set(principal.user_id)
    if host_role and principal.role not in HOST_ROLES:
        raise NotEventHost(f"role {principal.role} has no host access")
    return principal


async def _user_principal(request: web.Request, token: str) -> HostPrincipal:
    """The token's user, from this process's cache or the stored token (not checked for expiry)."""
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
    return principal


async def _ingest_key(request: web.Request, token: str) -> IngestPrincipal:
    if len(token) > 100:
        raise Unauthorized("unknown ingest key")
    # Reused for HOST_CACHE_TTL_S like a user's token: a player posts every few seconds.
    cache = request.app[INGEST_KEYS]
    principal = cache.get(token)
    if principal is None:
        doc = await request.app[DB].ingest_keys.find_one({"_id": token_digest(token)})
        if doc is None or doc.get("revoked"):
            raise Unauthorized("unknown or revoked ingest key")
        event_ids = doc.get("eventIds")
        principal = IngestPrincipal(doc["_id"][:12], None if event_ids is None else frozenset(event_ids))
        cache.put(token, principal)
    credential_id_var.set("key:" + principal.key_id)
    return principal


async def authenticate_ingest(request: web.Request, event_id: str) -> IngestPrincipal:
    token = bearer_token(request)
    if token.startswith(USER_TOKEN_PREFIX):
        await authenticate_host(request, host_role=False)
        raise WrongCredentialKind("user tokens may not post attendance; use an ingest key")
    if not token.startswith(INGEST_KEY_PREFIX):
        raise Unauthorized("unknown ingest key")
    principal = await _ingest_key(request, token)
    if not may_ingest(principal, event_id):
        raise NotEventHost(f"this ingest key is not for event {event_id}")
    return principal


async def hosted_event(request: web.Request, principal: HostPrincipal, event_id: str) -> EventDoc:
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
    counters, window_end = request.app[DB].login_attempts, window + timedelta(minutes=1)
    rank = await count_attempt(counters, "address|" + address, now, window_end, extend=False)
    if rank > settings.login_throttle_per_minute:
        retry_after = 60 - now.second
        raise TooManyRequests(
            f"more than {settings.login_throttle_per_minute} logins a minute from {address}",
            retry_after_s=retry_after,
        )


def _lock_key(username: str) -> str:
    """The lock-out of a username, whether or not an account has it: unknown names lock the same
    way, so the answers never tell which accounts exist."""
    return "account|" + hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()


async def _count_failure(request: web.Request, lock_key: str, now: datetime) -> None:
    """Count a wrong password; the one that reaches LOCKOUT_FAILURES locks the name, and every
    failure past it answers "locked" however many run at once. Failures are forgotten LOCKOUT_S
    after the latest one."""
    counters, settings = request.app[DB].login_attempts, request.app[SETTINGS]
    until = now + timedelta(seconds=settings.lockout_s)
    rank = await count_attempt(counters, lock_key, now, until, extend=True)
    if rank < settings.lockout_failures:
        raise WrongCredentials("no such user or wrong password")
    # The failure that reached the limit locks; a later one locks only if that one could not.
    if await lock(counters, lock_key, until):
        log.warning("login locked", extra={"lockKey": lock_key[8:20]})
    raise AccountLocked(f"{settings.lockout_failures} wrong passwords in a row")


@routes.post("/rest/u/login")
async def login(request: web.Request) -> web.Response:
    await _throttle(request)
    body = parse_model(LoginIn, await read_json(request))
    db, settings = request.app[DB], request.app[SETTINGS]
    username = body.username.strip().lower()
    lock_key = _lock_key(username)
    now = _now()
    counters = db.login_attempts
    lock_end = await locked_until(counters, lock_key)
    if lock_end is not None:
        if lock_end > now:
            raise AccountLocked("locked after repeated wrong passwords")
        await forget(counters, lock_key)  # the lock has ended: its count goes with it
    user = await db.users.find_one({"email": username})
    ok = await asyncio.to_thread(verify_password, user and user.get("passwordHash"), body.password)
    if user is None or not ok:
        await _count_failure(request, lock_key, now)
    assert user is not None
    await forget(counters, lock_key)  # a right password starts the count again
    credential_id_var.set(user["_id"])
    return (await _new_token(db, user, now, settings.token_ttl_s)).response()


async def _new_token(db: Database, user: UserDoc, now: datetime, ttl_s: float) -> LoginAnswer:
    """A new token for the user, stored by its digest only."""
    token = USER_TOKEN_PREFIX + new_token()
    expires_at = (now + timedelta(seconds=ttl_s)).replace(microsecond=0)
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
    )


@routes.post("/rest/u/logout")
async def logout(request: web.Request) -> web.Response:
    await authenticate_host(request, host_role=False)
    token = bearer_token(request)
    await request.app[DB].tokens.update_one({"_id": token_digest(token)}, {"$set": {"revoked": True}})
    request.app[PRINCIPALS].drop(token)
    return web.Response(status=204)
