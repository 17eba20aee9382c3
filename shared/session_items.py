"""A session as the list shows it (DESIGN §3 item), as plain fields: the list, the event stream and
the webhook payloads all build their items here, so they can never disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from shared.documents import SessionDoc
from shared.duration_status import duration_status
from shared.rules import analytics_available
from shared.store import session_duration

# What a list item reads of a stored session (the list, the stream and webhooks project this).
ITEM_FIELDS = {
    "_id": 1,
    "eventId": 1,
    "title": 1,
    "startTime": 1,
    "endTime": 1,
    "format": 1,
    "streamProvider": 1,
    "registeredUserCount": 1,
    "attendeeCount": 1,
    "avgAttendedDuration": 1,
    "recordingViews": 1,
    "liveViews": 1,
    "analyticsUpdatedAt": 1,
    "duration": 1,
    "watchTime": 1,
    # durationStatus (rule 10) reads these besides streamProvider, format and duration.
    "videoId": 1,
    "durationStatus": 1,
}
# Both expand values: a pushed item carries every number the list can show.
FULL_ITEM = frozenset({"duration", "watchTime"})


@lru_cache(maxsize=256)
def time_zone(name: str | None) -> ZoneInfo:
    """An event's IANA zone (create-event checked it); UTC when it has none."""
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo("UTC")


def format_local(value: datetime | None, zone: ZoneInfo) -> str | None:
    """A stored UTC time in the event's zone: `2024-05-01T11:00:00+02:00`, milliseconds only
    when there are some (as the UTC times)."""
    if value is None:
        return None
    local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
        f"T{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    if local.microsecond:
        text += f".{local.microsecond // 1000:03d}"
    delta = local.utcoffset()
    offset = int(delta.total_seconds()) if delta else 0
    sign, offset = ("-" if offset < 0 else "+"), abs(offset)
    text += f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"
    return text + (f":{offset % 60:02d}" if offset % 60 else "")


def _numbers(doc: SessionDoc, available: bool) -> dict[str, float | int | None]:
    """DESIGN §4 rule 7: without analytics from the provider, these numbers are null."""
    return {
        "avgAttendedDuration": doc.get("avgAttendedDuration", 0.0) if available else None,
        "recordingViews": doc.get("recordingViews", 0) if available else None,
        "liveViews": doc.get("liveViews", 0) if available else None,
    }


def item_fields(doc: SessionDoc, expand: frozenset[str], zone_name: str | None) -> dict[str, object]:
    """A stored session as the list item's fields; `zone_name`: its event's IANA time zone."""
    available = analytics_available(doc.get("streamProvider"))
    zone = time_zone(zone_name)
    fields = {
        "sessionId": doc["_id"],
        "title": doc["title"],
        **{name: doc.get(name) for name in ("startTime", "endTime", "streamProvider", "analyticsUpdatedAt")},
        "format": doc["format"],
        "registeredUserCount": doc.get("registeredUserCount", 0),
        "attendeeCount": doc.get("attendeeCount", 0),
        "analyticsAvailable": available,
        **_numbers(doc, available),
        "durationStatus": duration_status(doc),
        "timeZone": zone.key,
        "startTimeLocal": format_local(doc.get("startTime"), zone),
        "endTimeLocal": format_local(doc.get("endTime"), zone),
    }
    if "duration" in expand:
        fields["duration"] = session_duration(doc)  # rule 8
    if "watchTime" in expand:
        watch = doc.get("watchTime")
        fields["watchTime"] = {
            key: watch.get(key, 0.0) if watch else 0.0 for key in ("total", "live", "recording")
        }
    return fields
