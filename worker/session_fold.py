"""One session's fold: its users' new attendance into their rows, the session's totals and its
viewers counts (shared/session_totals.py).

A rollup reads the rows of the users with new items only (by `_id`), and moves each of those
users' old contribution out of the session's totals and viewers counts and the new one in: what
it reads and writes follows the new attendance. A session whose duration or video changed (its
threshold and every engagement change), one whose live span needs a larger bucket, and every
session of a recompute are summed again over all their rows (`full`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from bson import DatetimeMS

from shared.attendees import identity_fields, row_id
from shared.audience import RowView, edge_changes, length_ms
from shared.documents import SessionDoc
from shared.rules import LIVE, Interval, UserWatch, analytics_available, attendee_row, merge_intervals
from shared.session_totals import Totals, ViewersState, contribution, numbers_of
from shared.store import epoch_ms, from_epoch_ms, numbers_fields, session_duration
from worker.journal import insert

# What a rollup reads of a row: the user's state, and the numbers to tell whether it changed.
ROW_FIELDS = {
    "_id": 0,
    "sessionId": 1,
    "userId": 1,
    "live": 1,
    "recording": 1,
    "registeredAt": 1,
    "attendedSeconds": 1,
    "liveSeconds": 1,
    "recordingSeconds": 1,
    "engagement": 1,
    "completion": 1,
}


def _ms(moment: datetime | DatetimeMS | None) -> int | None:
    return None if moment is None else epoch_ms(moment)


@dataclass(slots=True)
class UserState:
    """One user's unions in one session (epoch milliseconds) and registration time."""

    live: list[Interval] = field(default_factory=list)
    recording: list[Interval] = field(default_factory=list)
    registered_at: datetime | None = None

    def add(self, mode: str, start: int, end: int) -> None:
        (self.live if mode == LIVE else self.recording).append((start, end))

    def register(self, registered_at: datetime) -> None:
        if self.registered_at is None or registered_at < self.registered_at:
            self.registered_at = registered_at

    def merged(self) -> UserState:
        return UserState(merge_intervals(self.live), merge_intervals(self.recording), self.registered_at)

    def with_new(self, new: UserState) -> UserState:
        """This (stored, merged) state with new items folded in, merged."""
        merged = UserState(
            merge_intervals([*self.live, *new.live]), merge_intervals([*self.recording, *new.recording])
        )
        merged.registered_at = self.registered_at
        if new.registered_at is not None:
            merged.register(new.registered_at)
        return merged

    def lengths(self) -> tuple[int, int, int]:
        """(live, recording, attended) milliseconds; the intervals are merged per mode."""
        return (
            length_ms(self.live),
            length_ms(self.recording),
            length_ms(merge_intervals([*self.live, *self.recording])),
        )

    def totals(self, duration: float | None) -> Totals:
        live, recording, attended = self.lengths()
        return contribution(self.registered_at is not None, live, recording, attended, duration)

    def journey(self) -> dict[str, Any]:
        """Rule 11's first join, last leave and number of separate attended intervals."""
        both = merge_intervals(self.live + self.recording)
        if not both:
            return {"firstJoinedAt": None, "lastLeftAt": None, "joins": 0}
        return {
            "firstJoinedAt": from_epoch_ms(int(both[0][0])),
            "lastLeftAt": from_epoch_ms(int(both[-1][1])),
            "joins": len(both),
        }

    def numbers(
        self, user_id: str, duration: float | None, available: bool, lengths: tuple[int, int, int]
    ) -> dict[str, Any]:
        """The row's fields other than ids and identity (rules 1, 6, 11); `lengths`: lengths()."""
        live, recording, attended = lengths
        watch = UserWatch(user_id, live / 1000, recording / 1000, attended / 1000)
        row = attendee_row(user_id, watch if attended else None, self.registered_at, duration, available)
        return {
            "attended": row["attended"],
            "attendedSeconds": row["attendedSeconds"],
            "liveSeconds": row["liveSeconds"],
            "recordingSeconds": row["recordingSeconds"],
            "engagement": row["engagement"],
            "completion": row["completion"],
            "registeredAt": self.registered_at,
            **self.journey(),
            "live": [[from_epoch_ms(int(s)), from_epoch_ms(int(e))] for s, e in self.live],
            "recording": [[from_epoch_ms(int(s)), from_epoch_ms(int(e))] for s, e in self.recording],
        }

    def view(self, session_id: str, completion: float | None) -> RowView:
        live = cast("tuple[tuple[int, int], ...]", tuple(self.live))
        recording = cast("tuple[tuple[int, int], ...]", tuple(self.recording))
        return RowView(session_id, self.registered_at is not None, live, recording, completion)


SessionState = dict[str, UserState]


def stored_state(doc: Mapping[str, Any]) -> UserState:
    """A row as read (dates as datetimes or milliseconds) as the user's state."""
    registered = doc.get("registeredAt")
    return UserState(
        [(epoch_ms(s), epoch_ms(e)) for s, e in doc.get("live") or ()],
        [(epoch_ms(s), epoch_ms(e)) for s, e in doc.get("recording") or ()],
        None if registered is None else from_epoch_ms(epoch_ms(registered)),
    )


def _same(doc: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a stored row already holds these numbers (dates compared as milliseconds)."""
    if doc is None:
        return False
    for name in ("attendedSeconds", "liveSeconds", "recordingSeconds", "engagement", "completion"):
        if doc.get(name) != new[name]:
            return False
    if _ms(doc.get("registeredAt")) != _ms(new["registeredAt"]):
        return False
    for mode in ("live", "recording"):
        stored = [(epoch_ms(s), epoch_ms(e)) for s, e in doc.get(mode) or ()]
        if stored != [(epoch_ms(s), epoch_ms(e)) for s, e in new[mode]]:
            return False
    return True


@dataclass(slots=True)
class SessionWrite:
    """One session's fold: its row writes (journal operations, shared by rollups and recomputes),
    its totals and viewers counts, the LIVE edge changes of its peak, and its users' new views."""

    session: SessionDoc
    rows: list[dict[str, Any]]
    totals: Totals
    viewers: ViewersState
    edges: dict[int, int]  # LIVE edge changes (full: the whole set)
    full: bool
    changed: dict[str, tuple[RowView | None, RowView]]  # by userId: its person's part, was and now

    def fields(self, time_zone: str, peak: tuple[int, int | None], at: datetime) -> dict[str, Any]:
        """The session document's new numbers, series and bookkeeping."""
        session = self.session
        numbers = numbers_of(self.totals, session_duration(session), session.get("streamProvider"))
        start = session.get("startTime")
        start_ms = 0 if start is None else epoch_ms(start)
        return {
            **numbers_fields(numbers),
            "attendeeRows": self.totals.rows,
            "analyticsUpdatedAt": at,
            "viewers": self.viewers.summary(start_ms, time_zone, peak),
            # The sums and counts the next rollup moves users in and out of.
            "totals": self.totals.doc(),
            "viewersState": self.viewers.doc(),
        }


def _start_ms(session: SessionDoc) -> int:
    start = session.get("startTime")
    return 0 if start is None else epoch_ms(start)


def fold_session(
    session: SessionDoc,
    stored: Mapping[str, Mapping[str, Any]],
    new: Mapping[str, UserState],
    identities: Mapping[str, Any],
    time_zone: str,
    *,
    full: bool,
    replace: bool = False,
) -> SessionWrite | None:
    """Fold `new` (each user's items, unmerged) into the stored rows (by userId: with `full`,
    every row of the session; else those of the users in `new`). None when an incremental fold
    finds the live span needs a larger bucket: fold again with `full` and every row.

    `replace` (a recompute): every row is written whole, identity included."""
    duration = session_duration(session)
    available = analytics_available(session.get("streamProvider"))
    zone = ZoneInfo(time_zone)
    start = _start_ms(session)
    users = sorted(set(stored) | set(new)) if full else sorted(new)
    before = {u: stored_state(stored[u]) for u in users if u in stored}
    after = {u: before.get(u, UserState()).with_new(new.get(u, UserState())) for u in users}
    if full:
        totals, viewers = Totals(), ViewersState()
    else:
        totals = Totals.of_doc(session.get("totals"))
        viewers = ViewersState.of_doc(session.get("viewersState"))
    if not viewers.widened(start, (_ints(state.live) for state in after.values())):
        return None
    edges: dict[int, int] = {}
    rows: list[dict[str, Any]] = []
    changed: dict[str, tuple[RowView | None, RowView]] = {}
    for user in users:
        old, now_state = before.get(user), after[user]
        old_live = [] if full or old is None else _ints(old.live)
        old_recording = [] if full or old is None else _ints(old.recording)
        live, recording = _ints(now_state.live), _ints(now_state.recording)
        viewers.move(start, zone, (old_live, old_recording), (live, recording))
        for ms, n in edge_changes(old_live, live).items():
            edges[ms] = edges.get(ms, 0) + n
        if not full and old is not None:
            totals.add(old.totals(duration), -1)
        lengths = now_state.lengths()
        totals.add(contribution(now_state.registered_at is not None, *lengths, duration))
        numbers = now_state.numbers(user, duration, available, lengths)
        key = row_id(session["_id"], user)
        if replace:
            rows.append(
                _row_op(key, {**_ids(session, user), **identity_fields(identities.get(user)), **numbers})
            )
        elif user not in stored:
            rows.append(
                insert(
                    "attendees",
                    key,
                    {**_ids(session, user), **identity_fields(identities.get(user)), **numbers},
                )
            )
        elif not _same(stored[user], numbers):
            rows.append(_row_op(key, numbers))
        else:
            continue
        was = None if old is None else old.view(session["_id"], stored[user].get("completion"))
        changed[user] = (was, now_state.view(session["_id"], numbers["completion"]))
    return SessionWrite(session, rows, totals, viewers, {k: n for k, n in edges.items() if n}, full, changed)


def _ints(intervals: Iterable[Interval]) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in intervals]


def _ids(session: SessionDoc, user: str) -> dict[str, Any]:
    return {"eventId": session["eventId"], "sessionId": session["_id"], "userId": user}


def _row_op(key: str, fields: dict[str, Any], insert: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"c": "attendees", "id": key, "set": fields}
    if insert:
        op["insert"] = insert
    return op
