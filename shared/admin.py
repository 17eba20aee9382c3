"""Administrative writes shared by the command line, the demo and the tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from shared.access import INGEST_KEY_PREFIX
from shared.db import Database
from shared.errors import BadRequest
from shared.models import ID_PATTERN
from shared.security import ROLES, hash_password, new_token, token_digest
from shared.store import now


def _check_ids(ids: Sequence[str], what: str) -> list[str]:
    import re

    for value in ids:
        if not re.match(ID_PATTERN, value):
            raise BadRequest(f"{what} {value!r} must be 1-64 letters, digits, '-' or '_'")
    return list(dict.fromkeys(ids))


async def create_user(
    db: Database,
    email: str,
    password: str,
    role: str,
    event_ids: Sequence[str] = (),
    organizer_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Create a user, or update the password and grants of the user with this email."""
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}")
    if "@" not in email or len(email) > 320:
        raise BadRequest("email must be an email address")
    if len(password) < 8:
        raise BadRequest("password must have at least 8 characters")
    email = email.strip().lower()
    grants = {
        "role": role,
        "eventIds": _check_ids(event_ids, "event id"),
        "organizerIds": _check_ids(organizer_ids, "organizer id"),
    }
    password_hash = await asyncio.to_thread(hash_password, password)
    await db.users.update_one(
        {"email": email},
        {
            "$set": {**grants, "passwordHash": password_hash, "failedLogins": 0, "lockedUntil": None},
            "$setOnInsert": {"_id": uuid.uuid4().hex, "createdAt": now()},
        },
        upsert=True,
    )
    user = await db.users.find_one({"email": email})
    assert user is not None
    # Tokens carry a snapshot of the grants: keep live tokens in step with the user.
    await db.tokens.update_many({"userId": user["_id"]}, {"$set": grants})
    return user


async def create_event(
    db: Database, event_id: str, organizer_id: str, name: str, timezone: str = "UTC"
) -> dict[str, Any]:
    _check_ids([event_id], "event id")
    _check_ids([organizer_id], "organizer id")
    if not name.strip():
        raise BadRequest("name must not be empty")
    await db.events.update_one(
        {"_id": event_id},
        {
            "$set": {"organizerId": organizer_id, "name": name.strip(), "timezone": timezone},
            "$setOnInsert": {"analyticsVersion": 0, "createdAt": now()},
        },
        upsert=True,
    )
    event = await db.events.find_one({"_id": event_id})
    assert event is not None
    return event


async def create_ingest_key(db: Database, event_ids: Sequence[str] | None = None) -> str:
    """A new ingest key for these events (None or empty: every event); only its digest is kept."""
    key = INGEST_KEY_PREFIX + new_token()
    scoped = _check_ids(event_ids, "event id") if event_ids else None
    await db.ingest_keys.insert_one(
        {"_id": token_digest(key), "eventIds": scoped, "createdAt": now(), "revoked": False}
    )
    return key
