"""DESIGN §4 re-read plainly, with no code shared with shared.rules: what the API should answer.

Input is what the ingestion API takes (dicts with ISO 8601 strings); output uses the API's field
names. Watched time is found the slow, obvious way: cut the timeline at every segment boundary
and add up the pieces that some segment covers. Times are whole milliseconds, as stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

NO_ANALYTICS_PROVIDERS = {"ZOOM", "FACEBOOK", "WISTIA"}
PROVIDERS_WITH_DURATION = {"YOUTUBE", "VIMEO", "VOXEET", "TOKBOX", "WISTIA"}
FORMATS_WITHOUT_VIDEO = {"WORKSHOP_SESSION", "NETWORKING_SESSION"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(text: str) -> int:
    """Milliseconds since 1970 of an ISO 8601 string with a zone (finer parts dropped)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - _EPOCH) // _MS


def iso(ms: int) -> str:
    """The API's spelling of a time: UTC with `Z`, milliseconds only when there are some."""
    moment = _EPOCH + ms * _MS
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def covered_ms(intervals: list[tuple[int, int]]) -> int:
    """Length of the union: each piece between consecutive boundaries counts once if covered."""
    points = sorted({point for interval in intervals for point in interval})
    total = 0
    for left, right in itertools.pairwise(points):
        if any(start <= left and right <= end for start, end in intervals):
            total += right - left
    return total


def effective_duration(
    duration: float | None, stream_provider: str | None, session_format: str | None
) -> float | None:
    """Rule 8: only a video on a provider that reports durations has one."""
    if stream_provider not in PROVIDERS_WITH_DURATION or session_format in FORMATS_WITHOUT_VIDEO:
        return None
    return duration


def view_threshold(duration: float | None) -> float:
    """Rule 3: min(30 s, duration) when the duration is known and positive, else 30 s."""
    if duration is not None and duration > 0:
        return min(30.0, duration)
    return 30.0


def _unique(items: Iterable[dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    """The first item of each key, as the store keeps it; later copies are duplicates."""
    seen: dict[Any, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(key(item), item)
    return list(seen.values())


def _session_inputs(
    segments: Iterable[dict[str, Any]],
    registrations: Iterable[dict[str, Any]],
    session_id: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    segments = _unique(segments, lambda s: s["segmentId"])
    registrations = _unique(registrations, lambda r: (r["sessionId"], r["userId"]))
    if session_id is not None:
        segments = [s for s in segments if s["sessionId"] == session_id]
        registrations = [r for r in registrations if r["sessionId"] == session_id]
    return segments, registrations


def watched_seconds(segments: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per user: seconds watched LIVE, RECORDING, and attended (either mode) — rule 1."""
    by_user: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for segment in segments:
        modes = by_user.setdefault(segment["userId"], {"LIVE": [], "RECORDING": []})
        modes[segment["mode"]].append((to_ms(segment["start"]), to_ms(segment["end"])))
    return {
        user: {
            "live": covered_ms(modes["LIVE"]) / 1000,
            "recording": covered_ms(modes["RECORDING"]) / 1000,
            "attended": covered_ms(modes["LIVE"] + modes["RECORDING"]) / 1000,
        }
        for user, modes in by_user.items()
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def expected_session(
    segments: Iterable[dict[str, Any]],
    registrations: Iterable[dict[str, Any]],
    duration: float | None,
    stream_provider: str | None,
    *,
    session_format: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """A session's numbers as the detail answer names them.

    `segments` / `registrations` are ingestion items (repeats allowed: they count once). With
    `session_id`, items of other sessions are left out; without it all belong to the session.
    `duration` is what the document holds; rule 8 may still make it null.
    """
    segments, registrations = _session_inputs(segments, registrations, session_id)
    duration = effective_duration(duration, stream_provider, session_format)
    available = stream_provider not in NO_ANALYTICS_PROVIDERS
    watched = watched_seconds(segments)
    attendees = {user: w for user, w in watched.items() if w["attended"] > 0}
    threshold = view_threshold(duration)
    total = sum(w["attended"] for w in attendees.values())

    def mode_numbers(mode: str) -> tuple[int, float, float, float | None]:
        times = [w[mode] for w in attendees.values() if w[mode] > 0]
        viewers = [t for t in times if t >= threshold]
        if duration is None or duration <= 0:
            engagement = None
        else:
            engagement = _mean([min(t / duration, 1.0) * 100 for t in viewers])
        return len(viewers), sum(times), _mean(times), engagement

    live_views, live_total, live_average, live_engagement = mode_numbers("live")
    rec_views, rec_total, rec_average, rec_engagement = mode_numbers("recording")

    def when_available(value: Any) -> Any:
        return value if available else None

    return {
        "registeredUserCount": len({r["userId"] for r in registrations}),
        "attendeeCount": len(attendees),
        "avgAttendedDuration": when_available(total / len(attendees) if attendees else 0.0),
        "liveViews": when_available(live_views),
        "recordingViews": when_available(rec_views),
        "analyticsAvailable": available,
        "duration": duration,
        "watchTime": {"total": total, "live": live_total, "recording": rec_total},
        "avgLiveWatchDuration": when_available(live_average),
        "avgRecordingWatchDuration": when_available(rec_average),
        "liveEngagement": when_available(live_engagement),
        "recordingEngagement": when_available(rec_engagement),
    }


def expected_attendees(
    segments: Iterable[dict[str, Any]],
    registrations: Iterable[dict[str, Any]],
    duration: float | None,
    stream_provider: str | None,
    *,
    session_format: str | None = None,
    session_id: str | None = None,
) -> list[dict[str, Any]]:
    """One row per user who registered or attended, ordered by userId, as the attendee pages."""
    segments, registrations = _session_inputs(segments, registrations, session_id)
    duration = effective_duration(duration, stream_provider, session_format)
    available = stream_provider not in NO_ANALYTICS_PROVIDERS
    watched = watched_seconds(segments)
    registered_at = {r["userId"]: iso(to_ms(r["registeredAt"])) for r in registrations}
    rows = []
    for user in sorted(set(watched) | set(registered_at)):
        w = watched.get(user, {"live": 0.0, "recording": 0.0, "attended": 0.0})
        completion = None
        if duration is not None and duration > 0:
            completion = min(w["attended"] / duration, 1.0) * 100
        spans = [(to_ms(s["start"]), to_ms(s["end"])) for s in segments if s["userId"] == user]
        rows.append(
            {
                "userId": user,
                "attended": w["attended"] > 0,
                "attendedSeconds": w["attended"],
                "liveSeconds": w["live"],
                "recordingSeconds": w["recording"],
                "engagement": completion if available else None,
                "registeredAt": registered_at.get(user),
                "firstJoinedAt": iso(min(a for a, _ in spans)) if spans else None,
                "lastLeftAt": iso(max(e for _, e in spans)) if spans else None,
                "joins": covered_runs(spans),
                "completion": completion,
            }
        )
    return rows


def covered_runs(intervals: list[tuple[int, int]]) -> int:
    """Rule 11's joins the slow way: cut the timeline at every boundary and count the runs of
    covered pieces (a piece right after a covered one continues its run)."""
    points = sorted({point for interval in intervals for point in interval})
    runs, covering = 0, False
    for left, right in itertools.pairwise(points):
        now_covered = any(start <= left and right <= end for start, end in intervals)
        runs += now_covered and not covering
        covering = now_covered
    return runs


def expected_audience(
    segments: Iterable[dict[str, Any]],
    registrations: Iterable[dict[str, Any]],
    sessions: dict[str, dict[str, Any]],
    time_zone: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Rules 12 and 13 the slow way: (the event summary, the event's people by userId).

    `sessions`: sessionId → {duration, streamProvider, format} as the documents hold them."""
    from zoneinfo import ZoneInfo

    segments = _unique(segments, lambda s: s["segmentId"])
    registrations = _unique(registrations, lambda r: (r["sessionId"], r["userId"]))
    users = sorted({s["userId"] for s in segments} | {r["userId"] for r in registrations})
    people = []
    totals = {"total": 0.0, "live": 0.0, "recording": 0.0}
    modes = {"liveOnly": 0, "recordingOnly": 0, "both": 0}
    for user in users:
        mine = [s for s in segments if s["userId"] == user]
        registered_in = {r["sessionId"] for r in registrations if r["userId"] == user}
        per_session = {
            sid: watched_seconds([s for s in mine if s["sessionId"] == sid]).get(user) for sid in sessions
        }
        attended = {sid: w for sid, w in per_session.items() if w and w["attended"] > 0}
        seconds = {k: sum(w[k] for w in attended.values()) for k in ("attended", "live", "recording")}
        completions = []
        for sid in registered_in | set(attended):
            spec = sessions[sid]
            duration = effective_duration(
                spec.get("duration"), spec.get("streamProvider"), spec.get("format")
            )
            if duration is not None and duration > 0:
                completions.append(
                    min((attended.get(sid) or {"attended": 0})["attended"] / duration, 1.0) * 100
                )
        live, recording = seconds["live"] > 0, seconds["recording"] > 0
        modes["liveOnly"] += live and not recording
        modes["recordingOnly"] += recording and not live
        modes["both"] += live and recording
        for key, name in (("total", "attended"), ("live", "live"), ("recording", "recording")):
            totals[key] += seconds[name]
        people.append(
            {
                "userId": user,
                "sessionsRegistered": len(registered_in),
                "sessionsAttended": len(attended),
                "attended": bool(attended),
                "noShow": bool(registered_in) and not attended,
                "attendedSeconds": seconds["attended"],
                "liveSeconds": seconds["live"],
                "recordingSeconds": seconds["recording"],
                "firstJoinedAt": iso(min(to_ms(s["start"]) for s in mine)) if mine else None,
                "lastLeftAt": iso(max(to_ms(s["end"]) for s in mine)) if mine else None,
                "completion": _mean(completions) if completions else None,
            }
        )
    # The peak: every LIVE start is a candidate instant; count the users covering it.
    live_spans: dict[str, list[tuple[int, int]]] = {}
    for s in segments:
        if s["mode"] == "LIVE":
            live_spans.setdefault(s["userId"], []).append((to_ms(s["start"]), to_ms(s["end"])))
    peak, peak_at = 0, None
    for instant in sorted({a for spans in live_spans.values() for a, _ in spans}):
        covering = sum(any(a <= instant < e for a, e in spans) for spans in live_spans.values())
        if covering > peak:
            peak, peak_at = covering, iso(instant)
    zone = ZoneInfo(time_zone)
    all_spans: dict[str, list[tuple[int, int]]] = {}
    for s in segments:
        all_spans.setdefault(s["userId"], []).append((to_ms(s["start"]), to_ms(s["end"])))
    per_day = []
    if all_spans:
        flat = [span for spans in all_spans.values() for span in spans]
        day = (_EPOCH + min(a for a, _ in flat) * _MS).astimezone(zone).date()
        last_day = (_EPOCH + (max(e for _, e in flat) - 1) * _MS).astimezone(zone).date()
        while day <= last_day:
            after = day + timedelta(days=1)
            lo = to_ms(datetime(day.year, day.month, day.day, tzinfo=zone).isoformat())
            hi = to_ms(datetime(after.year, after.month, after.day, tzinfo=zone).isoformat())
            count = sum(any(max(a, lo) < min(e, hi) for a, e in spans) for spans in all_spans.values())
            per_day.append({"date": day.isoformat(), "attendees": count})
            day = after
    registrants = sum(p["sessionsRegistered"] > 0 for p in people)
    attendees = sum(p["attended"] for p in people)
    summary = {
        "sessions": len(sessions),
        "uniqueRegistrants": registrants,
        "uniqueAttendees": attendees,
        "noShows": sum(p["noShow"] for p in people),
        **modes,
        "watchTime": totals,
        "avgWatchPerAttendee": totals["total"] / attendees if attendees else 0.0,
        "peakConcurrent": peak,
        "peakAt": peak_at,
        "attendeesPerDay": per_day,
    }
    return summary, people


IDENTITY_FIELDS = ("email", "firstName", "lastName", "ticketId")


def listed_attendees(
    rows: list[dict[str, Any]], identities: dict[str, dict[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Rows as the attendee list answers them by default: identities joined (null when unknown),
    most attended seconds first, ties by userId."""
    identities = identities or {}
    joined = [
        {**row, **{k: identities.get(row["userId"], {}).get(k) for k in IDENTITY_FIELDS}} for row in rows
    ]
    # Stored seconds are whole milliseconds: rounded so, equal times tie as they do when stored.
    return sorted(joined, key=lambda row: (-round(row["attendedSeconds"], 3), row["userId"]))


def expected_viewers(
    segments: Iterable[dict[str, Any]], session_id: str, start_time: str, time_zone: str
) -> dict[str, Any]:
    """Rule 9 the slow way: every bucket of every candidate size tried in turn, each user tested
    against each bucket, instant and local date by direct overlap of the raw (repeated,
    overlapping) segments; the `/viewers` answer."""
    from zoneinfo import ZoneInfo

    segments, _ = _session_inputs(segments, [], session_id)
    start = to_ms(start_time)
    by_mode: dict[str, dict[str, list[tuple[int, int]]]] = {"LIVE": {}, "RECORDING": {}}
    for segment in segments:
        users = by_mode[segment["mode"]]
        users.setdefault(segment["userId"], []).append((to_ms(segment["start"]), to_ms(segment["end"])))

    def overlapping(lo: int, hi: int, users: dict[str, list[tuple[int, int]]]) -> int:
        return sum(any(max(a, lo) < min(e, hi) for a, e in spans) for spans in users.values())

    live = by_mode["LIVE"]
    size, points, peak, peak_at = 60_000, [], 0, None
    if live:
        earliest = min(a for spans in live.values() for a, _ in spans)
        latest = max(e for spans in live.values() for _, e in spans)
        while True:
            first = (earliest - start) // size  # floor: the bucket holding the earliest start
            last = -((start - latest) // size) - 1  # ceil - 1: the bucket holding the last instant
            if last - first + 1 <= 1440:
                break
            size += 60_000
        for k in range(first, last + 1):
            t0 = start + k * size
            points.append({"t": iso(t0), "viewers": overlapping(t0, t0 + size, live)})
        for instant in sorted({a for spans in live.values() for a, _ in spans}):
            covering = sum(any(a <= instant < e for a, e in spans) for spans in live.values())
            if covering > peak:
                peak, peak_at = covering, iso(instant)

    zone = ZoneInfo(time_zone)

    def midnight_ms(day: Any) -> int:
        return to_ms(datetime(day.year, day.month, day.day, tzinfo=zone).isoformat())

    recording = by_mode["RECORDING"]
    days: list[dict[str, Any]] = []
    if recording:
        spans = [span for user_spans in recording.values() for span in user_spans]
        day = (_EPOCH + min(a for a, _ in spans) * _MS).astimezone(zone).date()
        last_day = (_EPOCH + (max(e for _, e in spans) - 1) * _MS).astimezone(zone).date()
        while day <= last_day:
            after = day + timedelta(days=1)
            watching = overlapping(midnight_ms(day), midnight_ms(after), recording)
            days.append({"date": day.isoformat(), "viewers": watching})
            day = after
    return {
        "sessionId": session_id,
        "bucketSeconds": size // 1000,
        "live": {"points": points, "peakConcurrent": peak, "peakAt": peak_at},
        "recording": {"days": days},
    }
