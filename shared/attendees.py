"""Attendee rows: one document per (session, user) in `attendees`, written by rollups, read by
the attendee routes.

A row is the user's whole state in the session, so one update changes it all or nothing: the
numbers the attendee list shows (DESIGN §4 rules 1–6, 11) and the unions they come from, which
the next rollup folds new segments into. A rollup writes only the rows of users with new
attendance (or of every user when the session's duration changed, which changes every row's
engagement): the bytes written follow new attendance, not the size of the session.

- `_id` = `sessionId:userId` (ids never hold `:`), so a rollup reads and writes rows by `_id`.
- `live` / `recording`: the user's unions per mode, `[[start, end], ...]` as dates, sorted and
  disjoint. A user's unions are bounded by what one person can watch in one session: even
  10,000 separate intervals are ~300 KB, far under MongoDB's 16 MB.
- `email`, `firstName`, `lastName`, `ticketId`: copies of the event's identity of the user
  (shared/identities.py holds the source), so the database filters and sorts by them; erasure
  clears them in every row of the event. `sortName` is the case-folded last name the list sorts
  by (null when none); `searchText` the case-folded `first last` and email a search matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.models import IDENTITY_FIELDS

# The row's numbers, as the attendee list shows them.
NUMBER_FIELDS = (
    "attended",
    "attendedSeconds",
    "liveSeconds",
    "recordingSeconds",
    "engagement",
    "completion",
    "registeredAt",
    "firstJoinedAt",
    "lastLeftAt",
    "joins",
)
# The list's sort keys and the row field each sorts by.
SORT_FIELDS = {
    "attendedSeconds": "attendedSeconds",
    "engagement": "engagement",
    "lastName": "sortName",
    "registeredAt": "registeredAt",
    "firstJoinedAt": "firstJoinedAt",
}
# The event people list's sort keys (shared/audience.py) and the field each sorts by.
PEOPLE_SORT_FIELDS = {
    "attendedSeconds": "attendedSeconds",
    "sessionsAttended": "sessionsAttended",
    "completion": "completion",
    "lastName": "sortName",
    "firstJoinedAt": "firstJoinedAt",
    "lastLeftAt": "lastLeftAt",
}


def row_id(session_id: str, user_id: str) -> str:
    return f"{session_id}:{user_id}"


def identity_fields(identity: Mapping[str, Any] | None) -> dict[str, Any]:
    """The identity copy a row keeps, with the fields the database sorts and searches by."""
    identity = identity or {}
    fields = {name: identity.get(name) for name in IDENTITY_FIELDS}
    first, last = fields.get("firstName") or "", fields.get("lastName") or ""
    fields["sortName"] = last.casefold() or None
    fields["searchText"] = f"{first} {last}\n{fields.get('email') or ''}".casefold()
    return fields


def erased_fields() -> dict[str, Any]:
    return identity_fields(None)


def dated(intervals: Iterable[tuple[datetime, datetime]]) -> list[list[datetime]]:
    return [[start, end] for start, end in intervals]
