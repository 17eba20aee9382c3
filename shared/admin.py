"""Administrative writes shared by the command line, the demo and the tests."""

from __future__ import annotations

import asyncio
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from shared.access import INGEST_KEY_PREFIX
from shared.db import Database
from shared.documents import EventDoc, SessionDoc, UserDoc
from shared.errors import BadRequest, EventNotFound
from shared.models import SessionIn, is_id
from shared.security import ROLES, hash_password, new_token, token_digest
from shared.settings import Settings
from shared.store import bump_analytics_version, now, session_upsert

# Rows per insert or update command and ids per existence read, unless the caller says (its
# settings' WRITE_BATCH): a few round trips per thousand rows.
DEFAULT_WRITE_BATCH: int = Settings.model_fields["write_batch"].default


def _check_ids(ids: Sequence[str], what: str) -> list[str]:
    for value in ids:
        if not is_id(value):
            raise BadRequest(f"{what} {value!r} must be 1-64 letters, digits, '-' or '_'")
    return list(dict.fromkeys(ids))


async def _check_events_exist(db: Database, event_ids: Sequence[str], context: str = "") -> None:
    found = {e["_id"] async for e in db.events.find({"_id": {"$in": list(event_ids)}}, {"_id": 1})}
    if missing := [e for e in event_ids if e not in found]:
        raise EventNotFound(f"{context}unknown events: {', '.join(missing)}")


def check_role_scope(role: str, event_ids: Sequence[str], organizer_ids: Sequence[str]) -> None:
    """Each role takes only the grants it uses: a grant the role ignores is a mistake to name."""
    if role == "EVENT_ADMIN":
        if not event_ids:
            raise BadRequest("an EVENT_ADMIN needs at least one --event")
        if organizer_ids:
            raise BadRequest("an EVENT_ADMIN takes --event, not --organizer")
    elif role == "ORGANIZER_ADMIN":
        if not organizer_ids:
            raise BadRequest("an ORGANIZER_ADMIN needs at least one --organizer")
        if event_ids:
            raise BadRequest("an ORGANIZER_ADMIN takes --organizer, not --event")
    elif event_ids or organizer_ids:
        raise BadRequest(f"a {role} takes neither --event nor --organizer")


async def create_user(
    db: Database,
    email: str,
    password: str,
    role: str,
    event_ids: Sequence[str] = (),
    organizer_ids: Sequence[str] = (),
) -> UserDoc:
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
    check_role_scope(role, grants["eventIds"], grants["organizerIds"])
    if grants["eventIds"]:
        await _check_events_exist(db, grants["eventIds"])
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
) -> EventDoc:
    _check_ids([event_id], "event id")
    _check_ids([organizer_id], "organizer id")
    if not name.strip():
        raise BadRequest("name must not be empty")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise BadRequest(f"unknown time zone {timezone!r}: give an IANA name such as Europe/Paris") from err
    before = await db.events.find_one({"_id": event_id}, {"timezone": 1})
    await db.events.update_one(
        {"_id": event_id},
        {
            "$set": {"organizerId": organizer_id, "name": name.strip(), "timezone": timezone},
            "$setOnInsert": {"analyticsVersion": 0, "createdAt": now()},
        },
        upsert=True,
    )
    if before is not None and (before.get("timezone") or "UTC") != timezone:
        # Local times and the recording viewers per date follow the zone: cached lists go stale
        # (the version), and every session's series is counted again by the next rollup.
        await db.sessions.update_many(
            {"eventId": event_id}, {"$set": {"rollupPending": True}, "$inc": {"rollupVersion": 1}}
        )
        await bump_analytics_version(db, [event_id])
    event = await db.events.find_one({"_id": event_id})
    assert event is not None
    return event


async def create_ingest_key(db: Database, event_ids: Sequence[str] | None = None) -> str:
    """A new ingest key for these events (None or empty: every event); only its digest is kept."""
    key = INGEST_KEY_PREFIX + new_token()
    scoped = _check_ids(event_ids, "event id") if event_ids else None
    if scoped:
        await _check_events_exist(db, scoped)
    await db.ingest_keys.insert_one(
        {"_id": token_digest(key), "eventIds": scoped, "createdAt": now(), "revoked": False}
    )
    return key


@dataclass(frozen=True)
class ImportResult:
    created: int
    changed: int
    unchanged: int

    @property
    def rows(self) -> int:
        return self.created + self.changed + self.unchanged


async def import_sessions(
    db: Database,
    sessions: Sequence[tuple[str, SessionIn]],
    progress: Callable[[int], None] = lambda rows_done: None,
    *,
    write_batch: int = DEFAULT_WRITE_BATCH,
) -> ImportResult:
    """Create or update sessions in bulk, all or none: every check runs before the first write.

    Round trips per `write_batch` rows: one read of the stored sessions, one unordered insert of
    the new ones, one update command of the changed ones; identical rows are not written.
    `progress` hears the number of rows done so far.
    """
    by_id = dict(sessions)
    if len(by_id) != len(sessions):
        raise BadRequest("nothing imported: a sessionId appears twice")
    await _check_events_exist(db, sorted({s.eventId for s in by_id.values()}), "nothing imported: ")
    ids = list(by_id)
    stored: dict[str, SessionDoc] = {}
    for start in range(0, len(ids), write_batch):
        chunk = ids[start : start + write_batch]
        cursor = db.sessions.find({"_id": {"$in": chunk}}, dict.fromkeys(SessionIn.model_fields, 1))
        stored.update({doc["_id"]: doc async for doc in cursor.batch_size(len(chunk))})
    if moved := sorted(sid for sid, doc in stored.items() if doc["eventId"] != by_id[sid].eventId):
        raise BadRequest(
            f"nothing imported: sessions of another event (eventId cannot change): {', '.join(moved)}"
        )

    new = [(sid, body) for sid, body in by_id.items() if sid not in stored]
    changed = [(sid, body) for sid, body in by_id.items() if sid in stored and _differs(body, stored[sid])]
    done = len(by_id) - len(new) - len(changed)  # identical rows: nothing to write
    progress(done)
    for start in range(0, len(new), write_batch):
        batch = new[start : start + write_batch]
        try:
            await db.sessions.insert_many(
                [_inserted_document(*session_upsert(sid, body, None)) for sid, body in batch], ordered=False
            )
        except BulkWriteError as err:
            # Created meanwhile by someone else: write those over what is there now.
            raced = [batch[e["index"]] for e in err.details["writeErrors"] if e["code"] == 11000]
            if len(raced) != len(err.details["writeErrors"]):
                raise
            await _write_changes(db, raced, await _stored_sessions(db, [sid for sid, _ in raced]))
        done += len(batch)
        progress(done)
    for start in range(0, len(changed), write_batch):
        batch = changed[start : start + write_batch]
        await _write_changes(db, batch, stored)
        done += len(batch)
        progress(done)
    if new or changed:
        await bump_analytics_version(db, {body.eventId for _, body in [*new, *changed]})
    return ImportResult(
        created=len(new), changed=len(changed), unchanged=len(by_id) - len(new) - len(changed)
    )


def _differs(body: SessionIn, stored: SessionDoc) -> bool:
    def stored_form(value: object) -> object:  # BSON keeps milliseconds
        return (
            value.replace(microsecond=value.microsecond // 1000 * 1000)
            if isinstance(value, datetime)
            else value
        )

    return any(stored_form(value) != stored.get(key) for key, value in body.model_dump(mode="python").items())


def _inserted_document(query: dict[str, str], update: dict[str, dict[str, Any]]) -> SessionDoc:
    """The document an upsert of (query, update) creates when nothing matches."""
    document: dict[str, object] = dict(query)
    for operator, fields in update.items():
        if operator not in ("$set", "$setOnInsert", "$inc") or any("." in key for key in fields):
            raise ValueError(f"an upsert with {operator} {sorted(fields)} has no plain insert form")
        document.update(fields)  # $inc on a missing field starts it at the increment
    return cast(SessionDoc, document)  # the fields session_upsert writes


async def _stored_sessions(db: Database, ids: list[str]) -> dict[str, SessionDoc]:
    projection = dict.fromkeys(SessionIn.model_fields, 1)
    return {doc["_id"]: doc async for doc in db.sessions.find({"_id": {"$in": ids}}, projection)}


async def _write_changes(
    db: Database, sessions: Sequence[tuple[str, SessionIn]], stored: dict[str, SessionDoc]
) -> None:
    """One update command for sessions that exist. A session's eventId never changes once
    stored, so after the check above `_id` alone selects it."""
    if moved := sorted(sid for sid, body in sessions if stored[sid]["eventId"] != body.eventId):
        raise BadRequest(
            f"import stopped: sessions created meanwhile under another event: {', '.join(moved)}"
        )
    updates = []
    for sid, body in sessions:
        _, update = session_upsert(sid, body, stored[sid])
        updates.append(UpdateOne({"_id": sid}, update))
    await db.sessions.bulk_write(updates, ordered=False)
