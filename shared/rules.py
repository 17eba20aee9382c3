"""The rules of DESIGN §4: pure functions from watch segments and a duration to the numbers hosts see."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

LIVE = "LIVE"
RECORDING = "RECORDING"
MODES = (LIVE, RECORDING)

VIEW_THRESHOLD_S = 30.0
MAX_SEGMENT_S = 24 * 3600.0
MAX_FUTURE_S = 5 * 60.0

FORMATS = ("MAINSTAGE_SESSION", "BREAKOUT_SESSION", "WORKSHOP_SESSION", "NETWORKING_SESSION")
FORMATS_WITHOUT_VIDEO = frozenset({"WORKSHOP_SESSION", "NETWORKING_SESSION"})
PROVIDERS = ("YOUTUBE", "VIMEO", "VOXEET", "TOKBOX", "WISTIA", "ZOOM", "FACEBOOK")
PROVIDERS_WITHOUT_ANALYTICS = frozenset({"ZOOM", "FACEBOOK", "WISTIA"})
PROVIDERS_WITH_DURATION = frozenset({"YOUTUBE", "VIMEO", "VOXEET", "TOKBOX", "WISTIA"})

Interval = tuple[float, float]


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of half-open intervals as sorted, disjoint, non-touching intervals.

    Merging is idempotent (merging an interval already inside the union changes nothing), which
    is what lets a rollup fold new segments into a stored union, and run again after a crash.
    """
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def union_length(intervals: Iterable[Interval]) -> float:
    """Length of the union of half-open intervals: overlapping time counts once."""
    total = 0.0
    cur_start = cur_end = None
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start  # type: ignore[operator]
            cur_start, cur_end = start, end
        elif end > cur_end:
            cur_end = end
    if cur_end is not None:
        total += cur_end - cur_start  # type: ignore[operator]
    return total


def analytics_available(stream_provider: str | None) -> bool:
    return stream_provider not in PROVIDERS_WITHOUT_ANALYTICS


def has_provider_duration(stream_provider: str | None, session_format: str | None) -> bool:
    """Whether a session's duration comes from its provider (else it is null by rule)."""
    return stream_provider in PROVIDERS_WITH_DURATION and session_format not in FORMATS_WITHOUT_VIDEO


def view_threshold(duration: float | None) -> float:
    """T = min(30 s, duration) when the duration is known and positive, else 30 s."""
    if duration is not None and duration > 0:
        return min(VIEW_THRESHOLD_S, float(duration))
    return VIEW_THRESHOLD_S


def engagement_percent(watched: float, duration: float | None) -> float | None:
    """One viewer's engagement: min(watched ÷ duration, 1) × 100; null without a duration."""
    if duration is None or duration <= 0:
        return None
    return min(watched / duration, 1.0) * 100.0


@dataclass(frozen=True, slots=True)
class UserWatch:
    """One user's watched seconds in a session: per mode, and over both modes."""

    user_id: str
    live: float
    recording: float
    attended: float


def user_watch(user_id: str, segments: Iterable[tuple[str, int, int]]) -> UserWatch:
    """Fold one user's (mode, start, end) segments, times in epoch milliseconds, into seconds.

    Stored times are whole milliseconds. Differences of float seconds since 1970 lose the last
    bits (a 12.345 s watch can come out as 12.344999…) and would miss a threshold it meets;
    integer milliseconds keep every union exact until the one division at the end.
    """
    by_mode: dict[str, list[Interval]] = {LIVE: [], RECORDING: []}
    for mode, start, end in segments:
        by_mode[mode].append((start, end))
    live = union_length(by_mode[LIVE])
    recording = union_length(by_mode[RECORDING])
    attended = union_length(by_mode[LIVE] + by_mode[RECORDING])
    return UserWatch(user_id, live / 1000, recording / 1000, attended / 1000)


@dataclass(slots=True)
class SessionNumbers:
    """Everything a rollup writes into a session document."""

    registered_user_count: int
    attendee_count: int
    avg_attended_duration: float | None
    live_views: int | None
    recording_views: int | None
    watch_total: float
    watch_live: float
    watch_recording: float
    avg_live_watch: float | None
    avg_recording_watch: float | None
    engagement_live: float | None
    engagement_recording: float | None
    attendee_rows: list[dict[str, object]] = field(default_factory=list)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


def mode_engagement(watched: list[float], threshold: float, duration: float | None) -> float | None:
    """Mean over a mode's viewers (watched ≥ T) of min(watched ÷ duration, 1) × 100."""
    if duration is None or duration <= 0:
        return None
    viewers = [w for w in watched if w >= threshold]
    return _mean([min(w / duration, 1.0) * 100.0 for w in viewers])


def session_numbers(
    watches: Iterable[UserWatch],
    registrations: Mapping[str, object],
    duration: float | None,
    stream_provider: str | None,
) -> SessionNumbers:
    """Apply §4 to one session: `registrations` maps userId to registration time."""
    attendees = [w for w in watches if w.attended > 0]
    threshold = view_threshold(duration)
    live_watched = [w.live for w in attendees if w.live > 0]
    recording_watched = [w.recording for w in attendees if w.recording > 0]
    # fsum: exactly rounded, so the numbers do not depend on the order users are read in.
    total = math.fsum(w.attended for w in attendees)
    available = analytics_available(stream_provider)
    count = len(attendees)

    rows: dict[str, dict[str, object]] = {}
    for user_id, registered_at in registrations.items():
        rows[user_id] = attendee_row(user_id, None, registered_at, duration, available)
    for w in attendees:
        rows[w.user_id] = attendee_row(w.user_id, w, registrations.get(w.user_id), duration, available)

    return SessionNumbers(
        registered_user_count=len(registrations),
        attendee_count=count,
        avg_attended_duration=(total / count if count else 0.0) if available else None,
        live_views=sum(1 for w in live_watched if w >= threshold) if available else None,
        recording_views=(sum(1 for w in recording_watched if w >= threshold) if available else None),
        watch_total=total,
        watch_live=math.fsum(live_watched),
        watch_recording=math.fsum(recording_watched),
        avg_live_watch=_mean(live_watched) if available else None,
        avg_recording_watch=_mean(recording_watched) if available else None,
        engagement_live=mode_engagement(live_watched, threshold, duration) if available else None,
        engagement_recording=(mode_engagement(recording_watched, threshold, duration) if available else None),
        attendee_rows=[rows[k] for k in sorted(rows)],
    )


def attendee_row(
    user_id: str,
    watch: UserWatch | None,
    registered_at: object,
    duration: float | None,
    available: bool,
) -> dict[str, object]:
    attended = watch.attended if watch else 0.0
    return {
        "userId": user_id,
        "attended": attended > 0,
        "attendedSeconds": attended,
        "liveSeconds": watch.live if watch else 0.0,
        "recordingSeconds": watch.recording if watch else 0.0,
        "engagement": engagement_percent(attended, duration) if available else None,
        "completion": engagement_percent(attended, duration),  # rule 11: any known duration
        "registeredAt": registered_at,
    }
