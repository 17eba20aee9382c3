"""Viewers over time (DESIGN §4 rule 9): pure functions from per-user watch unions to the series.

Times are epoch milliseconds; every interval is half-open `[start, end)`. The inputs are each
user's segments of one mode (the stored unions, though raw overlapping segments give the same
answer: a user is counted once per bucket, instant or date whatever the number of tabs).

Buckets are `[t, t + b)` with `t = startTime + k·b` for every integer k, negative ones included:
a LIVE segment that starts before the session's start time falls into buckets before it (the
first point's `t` is then earlier than startTime), so the grid always stays aligned on the start
time and a point's time says exactly which slice of the session it counts. The last bucket is
the one holding the last watched instant: a segment ending exactly on a bucket boundary adds no
empty bucket after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
MAX_POINTS = 1440

MsInterval = tuple[int, int]
UserIntervals = Mapping[str, Iterable[MsInterval]]

__all__ = [
    "EMPTY_SUMMARY",
    "MAX_POINTS",
    "LiveSeries",
    "bucket_ms",
    "dates_of",
    "days_between",
    "live_series",
    "peak_concurrent",
    "recording_days",
    "shift",
    "stored_summary",
    "summary_answer",
    "viewers_answer",
    "viewers_summary",
]


@dataclass(frozen=True, slots=True)
class LiveSeries:
    bucket_ms: int
    first_t: int | None  # epoch ms of the first bucket's start; None without LIVE watching
    viewers: list[int]
    peak_concurrent: int
    peak_at: int | None


def _merged(intervals: Iterable[MsInterval]) -> list[MsInterval]:
    """A user's union: sorted, disjoint; touching intervals joined (half-open, so no gap)."""
    union: list[MsInterval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if union and start <= union[-1][1]:
            if end > union[-1][1]:
                union[-1] = (union[-1][0], end)
        else:
            union.append((start, end))
    return union


def _bucket_range(start_time: int, size: int, earliest: int, latest_end: int) -> tuple[int, int]:
    """First and last k: the bucket holding the earliest start and the one holding the last
    watched instant (latest_end - 1 ms)."""
    return (earliest - start_time) // size, (latest_end - 1 - start_time) // size


def bucket_ms(start_time: int, earliest: int, latest_end: int) -> int:
    """b: 60 s, or the smallest multiple of 60 s that keeps the series at MAX_POINTS or fewer."""
    # Smaller multiples cannot fit: the span alone needs more than MAX_POINTS of their buckets.
    # From there each try costs O(1); the grid's alignment on startTime may need a step or two.
    multiple = max(1, -(-(latest_end - earliest) // (MAX_POINTS * MINUTE_MS)))
    while True:
        first, last = _bucket_range(start_time, multiple * MINUTE_MS, earliest, latest_end)
        if last - first + 1 <= MAX_POINTS:
            return multiple * MINUTE_MS
        multiple += 1


def peak_concurrent(live: UserIntervals) -> tuple[int, int | None]:
    """The greatest number of users whose LIVE unions cover one instant, and the first such instant."""
    edges: list[tuple[int, int]] = []
    for intervals in live.values():
        for start, end in _merged(intervals):
            edges.append((start, 1))
            edges.append((end, -1))
    # At one instant, ends go before starts: [a, t) and [t, b) never overlap.
    edges.sort()
    current = peak = 0
    peak_at: int | None = None
    for moment, change in edges:
        current += change
        if current > peak:
            peak, peak_at = current, moment
    return peak, peak_at


def live_series(start_time: int, live: UserIntervals) -> LiveSeries:
    """The live series: every bucket from the first to the last watched one, 0 included."""
    unions = {user: _merged(intervals) for user, intervals in live.items()}
    unions = {user: union for user, union in unions.items() if union}
    if not unions:
        return LiveSeries(MINUTE_MS, None, [], 0, None)
    earliest = min(union[0][0] for union in unions.values())
    latest_end = max(union[-1][1] for union in unions.values())
    size = bucket_ms(start_time, earliest, latest_end)
    first, last = _bucket_range(start_time, size, earliest, latest_end)
    change = [0] * (last - first + 2)
    for union in unions.values():
        # The user's buckets as runs of k; a run touching or overlapping the previous one joins
        # it, so each bucket counts the user once however many intervals fall into it.
        runs: list[list[int]] = []
        for start, end in union:
            k0, k1 = _bucket_range(start_time, size, start, end)
            if runs and k0 <= runs[-1][1] + 1:
                runs[-1][1] = max(runs[-1][1], k1)
            else:
                runs.append([k0, k1])
        for k0, k1 in runs:
            change[k0 - first] += 1
            change[k1 - first + 1] -= 1
    viewers: list[int] = []
    running = 0
    for delta in change[:-1]:
        running += delta
        viewers.append(running)
    peak, peak_at = peak_concurrent(unions)
    return LiveSeries(size, start_time + first * size, viewers, peak, peak_at)


def _local_date(moment_ms: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(moment_ms / 1000, tz=UTC).astimezone(zone).date()


def dates_of(union: Iterable[tuple[float, float]], zone: ZoneInfo) -> set[str]:
    """The calendar dates of the zone on which a union (half-open intervals) holds time."""
    days: set[str] = set()
    for start, end in union:
        day, last = _local_date(int(start), zone), _local_date(int(end) - 1, zone)
        while day <= last:
            days.add(day.isoformat())
            day += timedelta(days=1)
    return days


def days_between(per_day: Mapping[str, int]) -> list[tuple[str, int]]:
    """Every date from the first to the last counted (0 included), as the charts show them."""
    if not per_day:
        return []
    first, last = date.fromisoformat(min(per_day)), date.fromisoformat(max(per_day))
    out = []
    while first <= last:
        out.append((first.isoformat(), per_day.get(first.isoformat(), 0)))
        first += timedelta(days=1)
    return out


def shift(counts: dict[Any, int], keys: Iterable[Any], n: int) -> None:
    """Add `n` to the count of each key; a count that reaches 0 is dropped (sparse counts)."""
    for key in keys:
        left = counts.get(key, 0) + n
        if left:
            counts[key] = left
        else:
            counts.pop(key, None)


def recording_days(recording: UserIntervals, time_zone: str) -> list[tuple[date, int]]:
    """Distinct users with RECORDING watched time on each calendar date of the event's zone,
    every date from the first to the last one watched (0 included)."""
    zone = ZoneInfo(time_zone)
    users_by_date: dict[date, set[str]] = {}
    for user, intervals in recording.items():
        for start, end in _merged(intervals):
            # A union is continuous, so it touches every date from its first to its last instant.
            day, last = _local_date(start, zone), _local_date(end - 1, zone)
            while day <= last:
                users_by_date.setdefault(day, set()).add(user)
                day += timedelta(days=1)
    if not users_by_date:
        return []
    day, last = min(users_by_date), max(users_by_date)
    days: list[tuple[date, int]] = []
    while day <= last:
        days.append((day, len(users_by_date.get(day, ()))))
        day += timedelta(days=1)
    return days


def iso_ms(moment_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with `Z`, milliseconds only when there are some."""
    moment = datetime.fromtimestamp(moment_ms // 1000, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment_ms % 1000:
        text += f".{moment_ms % 1000:03d}"
    return text + "Z"


def viewers_summary(
    start_time: int, live: UserIntervals, recording: UserIntervals, time_zone: str
) -> dict[str, Any]:
    """The series in the compact form a rollup stores on the session document (plain numbers,
    no formatted times): `summary_answer` turns it into the answer."""
    series = live_series(start_time, live)
    days = recording_days(recording, time_zone)
    return {
        "bucketMs": series.bucket_ms,
        "firstAt": series.first_t,
        "live": series.viewers,
        "peak": series.peak_concurrent,
        "peakAt": series.peak_at,
        "firstDay": days[0][0].isoformat() if days else None,
        "days": [count for _, count in days],
        "timeZone": time_zone,
    }


# What a session nobody watched (or one not rolled up yet) answers.
EMPTY_SUMMARY: dict[str, Any] = viewers_summary(0, {}, {}, "UTC")


def stored_summary(stored: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A session's stored summary, or the empty series before its first rollup."""
    return EMPTY_SUMMARY if stored is None else stored


def summary_answer(session_id: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The `GET /rest/host/session/{sessionId}/viewers` answer of DESIGN §3 from a stored summary."""
    size, first = int(summary["bucketMs"]), int(summary["firstAt"] or 0)  # None only without points
    first_day = date.fromisoformat(summary["firstDay"]) if summary["firstDay"] else None
    peak_at = summary["peakAt"]
    return {
        "sessionId": session_id,
        "bucketSeconds": size // 1000,
        "live": {
            "points": [{"t": iso_ms(first + i * size), "viewers": n} for i, n in enumerate(summary["live"])],
            "peakConcurrent": summary["peak"],
            "peakAt": None if peak_at is None else iso_ms(int(peak_at)),
        },
        "recording": {
            "days": [
                {"date": (first_day + timedelta(days=i)).isoformat(), "viewers": n}
                for i, n in enumerate(summary["days"])
                if first_day is not None
            ]
        },
    }


def viewers_answer(
    session_id: str,
    start_time: int,
    live: UserIntervals,
    recording: UserIntervals,
    time_zone: str,
) -> dict[str, Any]:
    """The `GET /rest/host/session/{sessionId}/viewers` answer of DESIGN §3."""
    return summary_answer(session_id, viewers_summary(start_time, live, recording, time_zone))
