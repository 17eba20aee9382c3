"""A session's numbers as sums over its users (DESIGN §4 rules 2–6, 9), kept so that a rollup
moves only the users with new attendance out and in again, whatever the session's size.

Every user's row contributes integer counts and millisecond sums (`Contribution`); a session
stores their sums (`totals`) and its viewers counts (`viewersState`) beside the numbers and the
series the API reads, which are functions of them (`numbers_of`, `ViewersState.summary`). Sums of
integers are exact in any order: the numbers a session reaches by a thousand small rollups are
the ones a recompute reaches in one.

What depends on the duration (the view threshold T, engagement's cap) is summed for the duration
the session had when its rows were last written: a duration change flags the session, and its
next rollup sums every row again. The live series' bucket size depends on the span of live
viewing; unions only grow between recomputes, so the span only widens, and a rollup that needs a
larger bucket sums every row again too (a session with more than a day of live viewing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from zoneinfo import ZoneInfo

from shared.rules import SessionNumbers, analytics_available, view_threshold
from shared.viewers import MINUTE_MS, bucket_ms, dates_of, days_between, shift

MsInterval = tuple[int, int]


def duration_ms(duration: float | None) -> int | None:
    """The duration in whole milliseconds (engagement caps each watch at it); None without one."""
    if duration is None or duration <= 0:
        return None
    return round(duration * 1000)


@dataclass(slots=True)
class Totals:
    """Sums over a session's rows: counts of users, and milliseconds."""

    rows: int = 0
    registered: int = 0
    attendees: int = 0
    live_users: int = 0
    recording_users: int = 0
    live_views: int = 0
    recording_views: int = 0
    attended_ms: int = 0
    live_ms: int = 0
    recording_ms: int = 0
    live_capped_ms: int = 0  # Σ min(live, duration) over live views
    recording_capped_ms: int = 0

    def add(self, other: Totals, sign: int = 1) -> None:
        for name in _TOTALS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))

    def doc(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _TOTALS}

    @classmethod
    def of_doc(cls, doc: Mapping[str, Any] | None) -> Totals:
        doc = doc or {}
        return cls(**{name: int(doc.get(name, 0)) for name in _TOTALS})


_TOTALS = tuple(f.name for f in fields(Totals))


def contribution(
    registered: bool, live_ms: int, recording_ms: int, attended_ms: int, duration: float | None
) -> Totals:
    """What one user's row adds to its session's totals (rules 2–6)."""
    threshold = view_threshold(duration)
    cap = duration_ms(duration)
    live_view = live_ms > 0 and live_ms / 1000 >= threshold
    recording_view = recording_ms > 0 and recording_ms / 1000 >= threshold
    return Totals(
        rows=1,
        registered=int(registered),
        attendees=int(attended_ms > 0),
        live_users=int(live_ms > 0),
        recording_users=int(recording_ms > 0),
        live_views=int(live_view),
        recording_views=int(recording_view),
        attended_ms=attended_ms,
        live_ms=live_ms,
        recording_ms=recording_ms,
        live_capped_ms=min(live_ms, cap) if live_view and cap else 0,
        recording_capped_ms=min(recording_ms, cap) if recording_view and cap else 0,
    )


def numbers_of(totals: Totals, duration: float | None, stream_provider: str | None) -> SessionNumbers:
    """Rules 2–7 from the sums."""
    t = totals
    available = analytics_available(stream_provider)
    cap = duration_ms(duration)

    def mean(ms: int, count: int) -> float:
        return ms / 1000 / count if count else 0.0

    def engagement(capped: int, views: int) -> float | None:
        if cap is None:
            return None
        return capped / (views * cap) * 100 if views else 0.0

    return SessionNumbers(
        registered_user_count=t.registered,
        attendee_count=t.attendees,
        avg_attended_duration=mean(t.attended_ms, t.attendees) if available else None,
        live_views=t.live_views if available else None,
        recording_views=t.recording_views if available else None,
        watch_total=t.attended_ms / 1000,
        watch_live=t.live_ms / 1000,
        watch_recording=t.recording_ms / 1000,
        avg_live_watch=mean(t.live_ms, t.live_users) if available else None,
        avg_recording_watch=mean(t.recording_ms, t.recording_users) if available else None,
        engagement_live=engagement(t.live_capped_ms, t.live_views) if available else None,
        engagement_recording=engagement(t.recording_capped_ms, t.recording_views) if available else None,
    )


# --- viewers (rule 9) ---------------------------------------------------------------------------


@dataclass(slots=True)
class ViewersState:
    """Distinct live users per bucket and recording users per date, as counts a rollup moves
    users in and out of; the span of live viewing fixes the bucket size."""

    bucket: int = MINUTE_MS
    earliest: int | None = None  # the earliest LIVE start, the latest LIVE end
    latest: int | None = None
    live: dict[int, int] = field(default_factory=dict)  # bucket index k → users
    days: dict[str, int] = field(default_factory=dict)  # date → recording users
    chunks: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # the peak's (shared/audience.py)

    def widened(self, start_time: int, unions: Iterable[Iterable[MsInterval]]) -> bool:
        """Take in the span of these live unions; False when the bucket size must change (the
        caller then counts every user again, from an empty state with the new span)."""
        for union in unions:
            for start, end in union:
                self.earliest = start if self.earliest is None else min(self.earliest, start)
                self.latest = end if self.latest is None else max(self.latest, end)
        if self.earliest is None or self.latest is None:
            return True
        size = bucket_ms(start_time, self.earliest, self.latest)
        if size == self.bucket:
            return True
        if not self.live:  # nothing counted at the old size yet
            self.bucket = size
            return True
        return False

    def buckets(self, start_time: int, union: Iterable[MsInterval]) -> set[int]:
        ks: set[int] = set()
        for start, end in union:
            ks.update(range((start - start_time) // self.bucket, (end - 1 - start_time) // self.bucket + 1))
        return ks

    def move(
        self,
        start_time: int,
        zone: ZoneInfo,
        old: tuple[Iterable[MsInterval], Iterable[MsInterval]],
        new: tuple[Iterable[MsInterval], Iterable[MsInterval]],
    ) -> None:
        """One user's (live, recording) unions changed from `old` to `new`."""
        before, after = self.buckets(start_time, old[0]), self.buckets(start_time, new[0])
        shift(self.live, after - before, 1)
        shift(self.live, before - after, -1)
        days_before, days_after = dates_of(old[1], zone), dates_of(new[1], zone)
        shift(self.days, days_after - days_before, 1)
        shift(self.days, days_before - days_after, -1)

    def doc(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "earliest": self.earliest,
            "latest": self.latest,
            "live": {str(k): n for k, n in sorted(self.live.items())},
            "days": dict(sorted(self.days.items())),
            "chunks": {
                str(c): {"net": n, "high": h, "at": a} for c, (n, h, a) in sorted(self.chunks.items())
            },
        }

    @classmethod
    def of_doc(cls, doc: Mapping[str, Any] | None) -> ViewersState:
        if not doc:
            return cls()
        return cls(
            int(doc.get("bucket", MINUTE_MS)),
            doc.get("earliest"),
            doc.get("latest"),
            {int(k): n for k, n in (doc.get("live") or {}).items()},
            dict(doc.get("days") or {}),
            {int(c): (p["net"], p["high"], p["at"]) for c, p in (doc.get("chunks") or {}).items()},
        )

    def summary(self, start_time: int, time_zone: str, peak: tuple[int, int | None]) -> dict[str, Any]:
        """The series as shared/viewers.viewers_summary stores it for the API."""
        live: list[int] = []
        first_at = None
        if self.earliest is not None and self.latest is not None:
            first = (self.earliest - start_time) // self.bucket
            last = (self.latest - 1 - start_time) // self.bucket
            live = [self.live.get(k, 0) for k in range(first, last + 1)]
            first_at = start_time + first * self.bucket
        days = days_between(self.days)
        return {
            "bucketMs": self.bucket,
            "firstAt": first_at,
            "live": live,
            "peak": peak[0],
            "peakAt": peak[1],
            "firstDay": days[0][0] if days else None,
            "days": [n for _, n in days],
            "timeZone": time_zone,
        }
