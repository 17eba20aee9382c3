"""Attendee identities: the personal fields of registrations, kept in one place so they can be erased.

One document per (event, user) in `attendee_identities`, `_id` = `eventId:userId`, holding the
latest `email`, `firstName`, `lastName` and `ticketId` its registrations gave. Nothing else
stores these fields: registrations, the rollup inbox and the rollup's generation documents keep
only ids, times and numbers, and the attendee routes join identities at read time by `_id`.
Erasing a user of an event is therefore one delete, and no replaced generation waiting for the
garbage cleanup can still hold a name. A registration posted again after an erasure stores its
identity again: the platform that sends registrations is where a person's data comes from, and
a tombstone kept here would itself be a record of that person.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from shared.db import Database
from shared.models import IDENTITY_FIELDS, RegistrationIn
from shared.store import now

DUPLICATE_KEY = 11000
# FerretDB 1.24 never answers an update command of 100 or more statements (see worker/rollup.py);
# identities change rarely, so the few changed ones go in bulks of this size on every server.
UPDATE_BULK = 99
READ_BULK = 10_000  # `_id`s per identity read: a query of a few hundred KB


def identity_id(event_id: str, user_id: str) -> str:
    return f"{event_id}:{user_id}"


def _wanted(event_id: str, registrations: Iterable[RegistrationIn]) -> dict[str, dict[str, str]]:
    """Per identity `_id`, the fields the batch gives; a later item wins over an earlier one."""
    wanted: dict[str, dict[str, str]] = {}
    for registration in registrations:
        given = registration.identity()
        if given:
            wanted.setdefault(identity_id(event_id, registration.userId), {}).update(given)
    return wanted


async def store_identities(
    db: Database, event_id: str, registrations: Iterable[RegistrationIn], *, embedded: bool = False
) -> int:
    """Keep the identity fields of these registrations; the number of identities written.

    Reads the stored identities once by `_id`, inserts the new ones in one command, and updates
    only those whose fields changed: posting the same registrations again writes nothing.
    """
    wanted = _wanted(event_id, registrations)
    if not wanted:
        return 0
    stored = {doc["_id"]: doc for doc in await _find(db, list(wanted), None)}
    new = [_new_identity(event_id, key, fields) for key, fields in wanted.items() if key not in stored]
    changed = {
        key: fields
        for key, fields in wanted.items()
        if key in stored and any(stored[key].get(name) != value for name, value in fields.items())
    }
    changed |= {key: wanted[key] for key in await _insert_new(db, new)}  # inserted meanwhile: update
    await _update(db, changed, embedded=embedded)
    return len(new) + len(changed)


def _new_identity(event_id: str, key: str, fields: dict[str, str]) -> dict[str, Any]:
    user_id = key[len(event_id) + 1 :]
    return {"_id": key, "eventId": event_id, "userId": user_id, **fields, "updatedAt": now()}


async def _insert_new(db: Database, documents: list[dict[str, Any]]) -> list[str]:
    """Insert; the `_id`s another request inserted first (a race), to be updated instead."""
    if not documents:
        return []
    try:
        await db.attendee_identities.insert_many(documents, ordered=False)
        return []
    except BulkWriteError as err:
        errors = err.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return [documents[e["index"]]["_id"] for e in errors]


async def _update(db: Database, changed: dict[str, dict[str, str]], *, embedded: bool) -> None:
    ops = [
        UpdateOne({"_id": key}, {"$set": {**fields, "updatedAt": now()}}) for key, fields in changed.items()
    ]
    if embedded:  # the embedded store (mongomock) rejects the bulk updates pymongo sends
        for op in ops:
            await db.attendee_identities.update_one(op._filter, op._doc)
        return
    for start in range(0, len(ops), UPDATE_BULK):
        await db.attendee_identities.bulk_write(ops[start : start + UPDATE_BULK], ordered=False)


async def _find(db: Database, ids: list[str], projection: dict[str, int] | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), READ_BULK):
        part = ids[start : start + READ_BULK]
        cursor = db.attendee_identities.find({"_id": {"$in": part}}, projection).batch_size(len(part))
        found += await cursor.to_list(None)
    return found


async def identities_of(
    db: Database, event_id: str, user_ids: Iterable[str], fields: Iterable[str] = IDENTITY_FIELDS
) -> dict[str, dict[str, Any]]:
    """The stored identities of these users of one event, by userId (one read per 10,000 users)."""
    ids = [identity_id(event_id, user_id) for user_id in dict.fromkeys(user_ids)]
    projection = {"userId": 1, **dict.fromkeys(fields, 1)}
    return {doc["userId"]: doc for doc in await _find(db, ids, projection)}


async def erase_identity(db: Database, event_id: str, user_id: str) -> None:
    """Remove a user's personal fields for one event from everything stored (see the module doc)."""
    await db.attendee_identities.delete_one({"_id": identity_id(event_id, user_id)})
