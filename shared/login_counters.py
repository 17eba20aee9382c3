"""Login counters: one document per login key (a client address, an account name) that every web
process counts attempts in with one atomic update, for the throttle and the lock-out.

A `login_attempts` document's fields, and why MongoDB needs each:

- `count`: attempts counted in the window, `$inc`ed by findAndModify, so concurrent attempts in
  any process get distinct numbers and exactly the allowance passes;
- `expiresAt`: the window's end; a counter past it counts as empty (TTL expiry is not relied
  on), and the cleanup task deletes it by the index on this field;
- `lockedUntil`: set by the failure that reached the lock-out limit; a login before it is
  refused unchecked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.db import Collection
from shared.documents import LoginAttemptDoc


async def count_attempt(
    counters: Collection[LoginAttemptDoc],
    key: str,
    now: datetime,
    expires_at: datetime,
    *,
    extend: bool,
) -> int:
    """This attempt's number (1, 2, ...) among those counted under `key` in its open window.

    A window starts with the first attempt after the previous one's `expiresAt` and ends at
    `expires_at`; with `extend`, every attempt moves the end to its own `expires_at` (failures
    forgotten a while after the latest one), otherwise the first attempt's end holds (fixed
    windows). The count is one findAndModify `$inc` with upsert. When the key's document is an
    ended window (not deleted yet), the upsert meets its `_id` and fails; one conditional update
    then starts the window again, and of concurrent attempts only one can, the others count on.
    """
    expiry = "$set" if extend else "$setOnInsert"
    for _ in range(4):
        try:
            counted = await counters.find_one_and_update(
                {"_id": key, "expiresAt": {"$gt": now}},
                {"$inc": {"count": 1}, expiry: {"expiresAt": expires_at}},
                projection=_COUNT,
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            return int(counted["count"])
        except DuplicateKeyError:
            pass  # an ended window, or a concurrent first attempt that created the document
        restarted = await counters.find_one_and_update(
            {"_id": key, "expiresAt": {"$lte": now}},
            {"$set": {"count": 1, "expiresAt": expires_at}, "$unset": {"lockedUntil": ""}},
            projection=_COUNT,
        )
        if restarted is not None:
            return 1
    raise RuntimeError(f"login counter {key[:20]} kept changing under this attempt")  # pragma: no cover


async def lock(counters: Collection[LoginAttemptDoc], key: str, until: datetime) -> bool:
    """Lock `key` until `until` unless it is locked already; True when this call locked it."""
    locked = await counters.update_one(
        {"_id": key, "lockedUntil": {"$exists": False}},
        {"$set": {"lockedUntil": until, "expiresAt": until}},
    )
    return bool(locked.modified_count == 1)


async def locked_until(counters: Collection[LoginAttemptDoc], key: str) -> datetime | None:
    """When the lock of `key` ends (perhaps in the past), or None when it has none."""
    doc = await counters.find_one({"_id": key}, _LOCK)
    return None if doc is None else doc.get("lockedUntil")


async def forget(counters: Collection[LoginAttemptDoc], key: str) -> None:
    """Drop the count and the lock of `key`: its next attempt starts a new window."""
    await counters.delete_one({"_id": key})


_COUNT: dict[str, Any] = {"_id": 0, "count": 1}
_LOCK: dict[str, Any] = {"_id": 0, "lockedUntil": 1}
