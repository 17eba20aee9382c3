"""Attendee identities: the personal fields of registrations, kept in one place so they can be erased.

One document per (event, user) in `attendee_identities`, `_id` = `eventId:userId`, holding the
latest `email`, `firstName`, `lastName` and `ticketId` its registrations gave: the source a
rollup copies into a user's new attendee row and person. The attendee rows of the user in the
event's sessions and the user's person of the event keep a copy (shared/attendees.py,
shared/audience.py) so the database searches and sorts by them; a changed identity is written
to those copies at once, and erasing a user of an event deletes the
identity and clears the copies (registrations and the inbox keep only ids, times and numbers).
A registration posted again after an erasure stores its identity again: the platform that
sends registrations is where a person's data comes from, and a tombstone kept here would itself
be a record of that person.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from pymongo import UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError

from shared.attendees import erased_fields, identity_fields
from shared.db import Database, bulk_write
from shared.documents import AttendeeIdentityDoc
from shared.models import IDENTITY_FIELDS, RegistrationIn
from shared.settings import Settings
from shared.store import now

DUPLICATE_KEY = 11000


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
    db: Database, settings: Settings, event_id: str, registrations: Iterable[RegistrationIn]
) -> int:
    """Keep the identity fields of these registrations; the number of identities written.

    Reads the stored identities once by `_id`, inserts the new ones in one command, and updates
    only those whose fields changed, then their copies in the users' attendee rows: posting the
    same registrations again writes nothing.
    """
    wanted = _wanted(event_id, registrations)
    if not wanted:
        return 0
    stored = {doc["_id"]: doc for doc in await _find(db, settings, list(wanted), None)}
    new = [_new_identity(event_id, key, fields) for key, fields in wanted.items() if key not in stored]
    changed = {
        key: fields
        for key, fields in wanted.items()
        if key in stored and any(stored[key].get(name) != value for name, value in fields.items())
    }
    changed |= {key: wanted[key] for key in await _insert_new(db, new)}  # inserted meanwhile: update
    await _update(db, settings, changed)
    written = {doc["_id"]: dict(doc) for doc in new} | {
        key: {**stored.get(key, {}), **fields} for key, fields in changed.items()
    }
    await _copy_to_rows(db, settings, event_id, written)
    return len(new) + len(changed)


async def _copy_to_rows(
    db: Database, settings: Settings, event_id: str, identities: dict[str, dict[str, object]]
) -> None:
    """The users' attendee rows and people of this event take their new identity (one update
    per user and collection; a person's `_id` is the identity's)."""
    rows = [
        UpdateMany(
            {"eventId": event_id, "userId": key[len(event_id) + 1 :]},
            {"$set": identity_fields(identity)},
        )
        for key, identity in identities.items()
    ]
    people = [
        UpdateOne({"_id": key}, {"$set": identity_fields(identity)}) for key, identity in identities.items()
    ]
    await bulk_write(settings, db.attendees, rows)
    await bulk_write(settings, db.people, people)


def _new_identity(event_id: str, key: str, fields: dict[str, str]) -> AttendeeIdentityDoc:
    user_id = key[len(event_id) + 1 :]
    document = {"_id": key, "eventId": event_id, "userId": user_id, **fields, "updatedAt": now()}
    return cast(AttendeeIdentityDoc, document)  # `fields` holds only IDENTITY_FIELDS


async def _insert_new(db: Database, documents: list[AttendeeIdentityDoc]) -> list[str]:
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


async def _update(db: Database, settings: Settings, changed: dict[str, dict[str, str]]) -> None:
    ops = [
        UpdateOne({"_id": key}, {"$set": {**fields, "updatedAt": now()}}) for key, fields in changed.items()
    ]
    await bulk_write(settings, db.attendee_identities, ops)


async def _find(
    db: Database, settings: Settings, ids: list[str], projection: dict[str, int] | None
) -> list[AttendeeIdentityDoc]:
    found: list[AttendeeIdentityDoc] = []
    for start in range(0, len(ids), settings.write_batch):
        part = ids[start : start + settings.write_batch]
        cursor = db.attendee_identities.find({"_id": {"$in": part}}, projection).batch_size(len(part))
        found += await cursor.to_list(None)
    return found


async def identities_of(
    db: Database, settings: Settings, event_id: str, user_ids: Iterable[str]
) -> dict[str, AttendeeIdentityDoc]:
    """The stored identities of these users of one event, by userId (WRITE_BATCH `_id`s a read)."""
    ids = [identity_id(event_id, user_id) for user_id in dict.fromkeys(user_ids)]
    projection = {"userId": 1, **dict.fromkeys(IDENTITY_FIELDS, 1)}
    return {doc.get("userId", ""): doc for doc in await _find(db, settings, ids, projection)}


async def erase_identity(db: Database, event_id: str, user_id: str) -> None:
    """Remove a user's personal fields for one event from everything stored (see the module doc):
    the identity, then its copies in the user's attendee rows and in the event's person."""
    await db.attendee_identities.delete_one({"_id": identity_id(event_id, user_id)})
    await db.attendees.update_many({"eventId": event_id, "userId": user_id}, {"$set": erased_fields()})
    await db.people.update_one({"_id": identity_id(event_id, user_id)}, {"$set": erased_fields()})
