"""An event's audience: its people and its summary (DESIGN §4 rules 12–13), kept by rollups so
that each one follows the new attendance, never the size of the event.

Three collections, each document plain and readable:

- `people`: one document per (event, user), `_id` = `eventId:userId`, for everyone registered
  or attending in some session: the identity copies an attendee row keeps (shared/attendees.py),
  how many sessions it has a row in (`sessionRows`), the sums over those sessions, the LIVE
  union over all of them (`live`) and the dates with attended time (`days`); a rollup moves it
  by its changed rows alone. Bounded by the person's watching: 1,000 separate live intervals are a
  few hundred KB.
- `audience_edges`: the event's LIVE concurrency as edge counts, one document per
  CHUNK_MS of time (`_id` = `eventId:chunkStartMs`): `edges` maps a millisecond offset in the
  chunk to how many people's LIVE unions start (+) minus end (−) there. A change of one
  person's union changes the chunks its ends fall in, nothing else. Bounded by the distinct
  instants of ten minutes: 100,000 people joining within them is ~2 MB.
- `event_summaries`: one per event (`_id` = eventId): rule 12's counts and sums, attendees per
  date, and per chunk its net change, its highest running count and where (`chunks`), from
  which the event's peak is the running maximum over the chunks in order. Bounded by the
  chunks with live viewing: a month of continuous live viewing is 4,320 entries (~300 KB).

A rollup moves each touched person's old contribution out of the summary and the new one in:
the summary is set whole (never incremented), from a base it read, so it needs its writes to
land all or none — worker/audience.py journals them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.rules import Interval, merge_intervals
from shared.viewers import dates_of, days_between, shift

CHUNK_MS = 10 * 60 * 1000  # the span of time one `audience_edges` document counts
Ms = int
MsInterval = tuple[Ms, Ms]


def person_id(event_id: str, user_id: str) -> str:
    return f"{event_id}:{user_id}"


def edges_id(event_id: str, chunk: Ms) -> str:
    return f"{event_id}:{chunk}"


@dataclass(frozen=True, slots=True)
class RowView:
    """What a person's row in one session gives the person: merged unions in epoch ms."""

    session_id: str
    registered: bool
    live: tuple[MsInterval, ...]
    recording: tuple[MsInterval, ...]
    completion: float | None  # the row's min(attended / duration, 1) × 100, or None


def length_ms(intervals: Iterable[Interval]) -> Ms:
    """The length of merged intervals (a union), in milliseconds."""
    return int(sum(end - start for start, end in intervals))


@dataclass(slots=True)
class Person:
    """One person's part of the event: the `people` document's numbers, and the contribution
    the summary counts."""

    rows: int = 0  # sessions with a row of the person
    registered: int = 0  # sessions registered for
    attended_sessions: int = 0
    attended_ms: Ms = 0  # summed over sessions (rule 13), not the union over them
    live_ms: Ms = 0
    recording_ms: Ms = 0
    first: Ms | None = None
    last: Ms | None = None
    live: list[MsInterval] = field(default_factory=list)  # LIVE union over every session
    days: list[str] = field(default_factory=list)
    completion_sum: float = 0.0  # of the sessions' completions that are known
    completion_count: int = 0

    @property
    def completion(self) -> float | None:
        """The mean of the sessions' known completions."""
        return self.completion_sum / self.completion_count if self.completion_count else None

    @property
    def attendee(self) -> bool:
        return self.attended_ms > 0

    @property
    def registrant(self) -> bool:
        return self.registered > 0

    @property
    def empty(self) -> bool:
        return not self.rows


def person_of(rows: Iterable[RowView], zone: ZoneInfo) -> Person:
    """Rule 13 over a person's rows, one per session."""
    person = Person()
    live: list[Interval] = []
    attended: list[Interval] = []
    completions: list[float] = []
    for row in sorted(rows, key=lambda r: r.session_id):
        person.rows += 1
        person.registered += row.registered
        union = merge_intervals([*row.live, *row.recording])
        length = length_ms(union)
        person.attended_sessions += length > 0
        person.attended_ms += length
        person.live_ms += length_ms(row.live)
        person.recording_ms += length_ms(row.recording)
        if union:
            first, last = int(union[0][0]), int(union[-1][1])
            person.first = first if person.first is None else min(person.first, first)
            person.last = last if person.last is None else max(person.last, last)
        live += row.live
        attended += union
        if row.completion is not None:
            completions.append(row.completion)
    person.live = [(int(s), int(e)) for s, e in merge_intervals(live)]
    person.days = sorted(dates_of(merge_intervals(attended), zone))
    person.completion_sum, person.completion_count = sum(completions), len(completions)
    return person


def moved(person: Person, old: RowView | None, new: RowView, zone: ZoneInfo) -> Person:
    """The person once one of its rows changed from `old` (None: the row is new) to `new`.

    Between recomputes a row's unions only grow (segments are added, never taken away), so the
    person's LIVE union, its dates and its first and last instants take the new row in, and
    its counts and sums move the old row out and the new one in: no other row is read."""
    after = Person(
        rows=person.rows + (old is None),
        registered=person.registered,
        attended_sessions=person.attended_sessions,
        attended_ms=person.attended_ms,
        live_ms=person.live_ms,
        recording_ms=person.recording_ms,
        first=person.first,
        last=person.last,
        live=person.live,
        days=person.days,
        completion_sum=person.completion_sum,
        completion_count=person.completion_count,
    )
    for sign, row in ((-1, old), (1, new)):
        if row is None:
            continue
        union = merge_intervals([*row.live, *row.recording])
        length = length_ms(union)
        after.registered += sign * row.registered
        after.attended_sessions += sign * (length > 0)
        after.attended_ms += sign * length
        after.live_ms += sign * length_ms(row.live)
        after.recording_ms += sign * length_ms(row.recording)
        if row.completion is not None:
            after.completion_sum += sign * row.completion
            after.completion_count += sign
    union = merge_intervals([*new.live, *new.recording])
    if union:
        first, last = int(union[0][0]), int(union[-1][1])
        after.first = first if after.first is None else min(after.first, first)
        after.last = last if after.last is None else max(after.last, last)
        after.days = sorted(set(after.days) | dates_of(union, zone))
    if new.live:
        after.live = [(int(s), int(e)) for s, e in merge_intervals([*after.live, *new.live])]
    if not after.completion_count:
        after.completion_sum = 0.0
    return after


# --- the summary ------------------------------------------------------------------------------


@dataclass(slots=True)
class Chunk:
    """One chunk's LIVE edges, and what the running count does inside it."""

    edges: dict[Ms, int]  # offset in the chunk → starts minus ends there

    def part(self) -> tuple[int, int, Ms]:
        """(net change, highest running count relative to the chunk's start, the first offset
        where it is reached)."""
        running, best, at = 0, None, 0
        for offset in sorted(self.edges):
            running += self.edges[offset]
            if best is None or running > best:
                best, at = running, offset
        return running, best or 0, at


def edge_changes(old: Iterable[MsInterval], new: Iterable[MsInterval]) -> dict[Ms, int]:
    """The edge counts that turn a person's old LIVE union into the new one (zeros dropped)."""
    changes: dict[Ms, int] = {}
    for sign, union in ((-1, old), (1, new)):
        for start, end in union:
            changes[start] = changes.get(start, 0) + sign
            changes[end] = changes.get(end, 0) - sign
    return {ms: n for ms, n in changes.items() if n}


def peak(parts: Mapping[Ms, tuple[int, int, Ms]]) -> tuple[int, Ms | None]:
    """Rule 9's peak over the chunks in order: the running count before each chunk plus the
    chunk's own highest; the first instant it is reached."""
    level, best, best_at = 0, 0, None
    for chunk in sorted(parts):
        net, high, offset = parts[chunk]
        if level + high > best:
            best, best_at = level + high, chunk + offset
        level += net
    return best, best_at


@dataclass(slots=True)
class Summary:
    """Rule 12's numbers as integer counts and millisecond sums, so that moving one person's
    contribution out and in again is exact."""

    registrants: int = 0
    attendees: int = 0
    no_shows: int = 0
    live_only: int = 0
    recording_only: int = 0
    both: int = 0
    watch_ms: list[Ms] = field(default_factory=lambda: [0, 0, 0])  # total, live, recording
    per_day: dict[str, int] = field(default_factory=dict)
    parts: dict[Ms, tuple[int, int, Ms]] = field(default_factory=dict)  # chunk start → Chunk.part

    def count(self, person: Person, sign: int) -> None:
        """Add (+1) or take out (−1) a person's contribution (not the LIVE edges)."""
        self.registrants += sign * person.registrant
        self.attendees += sign * person.attendee
        self.no_shows += sign * (person.registrant and not person.attendee)
        live, recording = person.live_ms > 0, person.recording_ms > 0
        self.live_only += sign * (live and not recording)
        self.recording_only += sign * (recording and not live)
        self.both += sign * (live and recording)
        for i, ms in enumerate((person.attended_ms, person.live_ms, person.recording_ms)):
            self.watch_ms[i] += sign * ms
        if person.attendee:
            shift(self.per_day, person.days, sign)

    def fields(self) -> dict[str, Any]:
        """The summary document's numbers."""
        top, top_at = peak(self.parts)
        return {
            "uniqueRegistrants": self.registrants,
            "uniqueAttendees": self.attendees,
            "noShows": self.no_shows,
            "liveOnly": self.live_only,
            "recordingOnly": self.recording_only,
            "both": self.both,
            "watchMs": {"total": self.watch_ms[0], "live": self.watch_ms[1], "recording": self.watch_ms[2]},
            "perDay": dict(sorted(self.per_day.items())),
            "chunks": {str(c): {"net": n, "high": h, "at": a} for c, (n, h, a) in sorted(self.parts.items())},
            "peakConcurrent": top,
            "peakAt": None if top_at is None else datetime.fromtimestamp(top_at / 1000, tz=UTC),
        }

    @classmethod
    def of_doc(cls, doc: Mapping[str, Any] | None) -> Summary:
        if not doc:
            return cls()
        watch = doc.get("watchMs") or {}
        chunks = doc.get("chunks") or {}
        return cls(
            doc.get("uniqueRegistrants", 0),
            doc.get("uniqueAttendees", 0),
            doc.get("noShows", 0),
            doc.get("liveOnly", 0),
            doc.get("recordingOnly", 0),
            doc.get("both", 0),
            [watch.get("total", 0), watch.get("live", 0), watch.get("recording", 0)],
            dict(doc.get("perDay") or {}),
            {int(c): (p["net"], p["high"], p["at"]) for c, p in chunks.items()},
        )


def chunks_of(changes: Mapping[Ms, int]) -> dict[Ms, dict[Ms, int]]:
    """Edge changes grouped by the chunk they fall in, as offsets."""
    grouped: dict[Ms, dict[Ms, int]] = {}
    for ms, n in changes.items():
        chunk = ms - ms % CHUNK_MS
        grouped.setdefault(chunk, {})[ms - chunk] = n
    return grouped


def add_edges(stored: Mapping[Ms, int], changes: Mapping[Ms, int]) -> dict[Ms, int]:
    edges = dict(stored)
    for offset, n in changes.items():
        shift(edges, (offset,), n)
    return edges


# --- the answer ---------------------------------------------------------------------------------

_SUMMARY_FIELDS = {"chunks": 0, "pending": 0}  # the rollups' bookkeeping


def summary_body(
    event_id: str, time_zone: str, sessions: int, doc: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The summary as `GET /rest/host/event/{eventId}/analytics` answers it (an event no rollup
    reached yet has all zeros)."""
    doc = doc or {}
    watch = doc.get("watchMs") or {}
    total, live, recording = (watch.get(k, 0) / 1000 for k in ("total", "live", "recording"))
    attendees = doc.get("uniqueAttendees", 0)
    peak_at = doc.get("peakAt")
    updated = doc.get("updatedAt")
    return {
        "eventId": event_id,
        "timeZone": time_zone,
        "sessions": sessions,
        "uniqueRegistrants": doc.get("uniqueRegistrants", 0),
        "uniqueAttendees": attendees,
        "noShows": doc.get("noShows", 0),
        "liveOnly": doc.get("liveOnly", 0),
        "recordingOnly": doc.get("recordingOnly", 0),
        "both": doc.get("both", 0),
        "watchTime": {"total": total, "live": live, "recording": recording},
        "avgWatchPerAttendee": total / attendees if attendees else 0.0,
        "peakConcurrent": doc.get("peakConcurrent", 0),
        "peakAt": peak_at,
        "attendeesPerDay": [{"date": d, "attendees": n} for d, n in days_between(doc.get("perDay") or {})],
        "analyticsUpdatedAt": updated,
    }


async def event_summary_answer(db: Any, event_id: str, time_zone: str) -> dict[str, Any]:
    """The event's summary answer, read from what the rollups left (one document by `_id`, and
    the event's sessions counted by the indexed eventId)."""
    doc = await db.event_summaries.find_one({"_id": event_id}, _SUMMARY_FIELDS)
    sessions = await db.sessions.count_documents({"eventId": event_id})
    return summary_body(event_id, time_zone, sessions, doc)
