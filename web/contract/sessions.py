"""Host session routes: the list query, the session list and detail, viewers over time, PUT's
answer (attendees: web/contract/attendees.py)."""

from __future__ import annotations

import re
from datetime import date as CalendarDate
from functools import cached_property
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BeforeValidator, Field

from shared.db import SORT_FIELDS
from shared.documents import SessionDoc
from shared.duration_status import DURATION_STATUSES
from shared.models import SessionFormat, StreamProvider
from shared.rules import analytics_available
from shared.session_items import format_local as format_local  # web/sessions.py reads these here
from shared.session_items import item_fields
from shared.session_items import time_zone as time_zone
from web.contract.common import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    Answer,
    Count,
    Digits,
    Id,
    NotEmpty,
    Percent,
    Query,
    Seconds,
    SortOrder,
    UtcTime,
)

DurationStatus = Literal[DURATION_STATUSES]  # type: ignore[valid-type]
SORTS = tuple(form for field in SORT_FIELDS for form in (field, "-" + field))
Sort = Literal[SORTS]  # type: ignore[valid-type]
# The vendor's spellings of each expand value, compared after lower-casing and dropping
# spaces, underscores and hyphens.
EXPANDS = {"duration": "duration", "watchtime": "watchTime"}
ExpandName = Literal["duration", "watchTime", "Duration", "Watch Time", "WATCH_TIME"]


def _expand_values(value: object) -> object:
    """`expand` may repeat and hold a comma list; each value in the canonical spelling."""
    chosen: set[str] = set()
    for raw in value if isinstance(value, list) else [value]:
        for part in str(raw).split(","):
            key = re.sub(r"[\s_-]", "", part).lower()
            if key and key not in EXPANDS:
                raise ValueError(f"unknown expand value {part.strip()!r}; use duration or watchTime")
            if key:
                chosen.add(EXPANDS[key])
    return chosen


Page = Annotated[int, Field(ge=0, le=MAX_PAGE), Digits]
Size = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE), Digits]
EventId = Annotated[Id, NotEmpty, Field(description="The event.", examples=["ev1"])]


class EventQuery(Query):
    """`?eventId=E`: the routes that act on one event."""

    eventId: EventId


class PageQuery(Query):
    page: Page = Field(0, description="0-based page number.")
    size: Size = Field(DEFAULT_PAGE_SIZE, description=f"Page size, at most {MAX_PAGE_SIZE}.")

    @property
    def skip(self) -> int:
        return self.page * self.size


class SessionFilterQuery(SortOrder, Query):
    """Which sessions of an event, in which order: the list's query without paging, and the
    whole query of the session CSV (so the CSV lists the list's rows in the list's order)."""

    eventId: EventId
    searchString: str | None = Field(
        None, max_length=200, description="Case-insensitive title substring, taken literally."
    )
    sessionFormat: Annotated[SessionFormat | None, NotEmpty] = Field(
        None, description="Only sessions of this format."
    )
    sort: Annotated[Sort, NotEmpty] = Field(
        "startTime", description="Sort field; a leading `-` sorts descending. Ties go by sessionId."
    )


class SessionListQuery(SessionFilterQuery, PageQuery):
    """The session list's query."""

    repeatable: ClassVar[frozenset[str]] = frozenset({"expand"})
    expand: Annotated[frozenset[ExpandName], BeforeValidator(_expand_values)] = Field(
        frozenset(),
        description="Extra fields of each item: `duration`, `watchTime`. The vendor's spellings are "
        "accepted too, in any case, spaces, `_` and `-` ignored; the parameter may be repeated.",
        examples=[["duration", "watchTime"]],
    )

    def cache_key(self) -> tuple[object, ...]:
        """Everything but the event: what makes two answers about one event differ."""
        return self.key_parts

    @cached_property
    def key_parts(self) -> tuple[object, ...]:  # once per query: a list request asks three times
        return tuple(value for name, value in self if name != "eventId")


# ISO 8601 with the zone's offset (seconds only for the odd historical offset), four-digit year.
LOCAL_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?[+-][0-9]{2}:[0-9]{2}(:[0-9]{2})?$"
)
LocalTime = Annotated[str, Field(pattern=LOCAL_PATTERN)]


class WatchTime(Answer):
    """Watched seconds of a session."""

    total: Seconds = Field(description="Sum of users' attended seconds (both modes, overlaps once).")
    live: Seconds = Field(description="Sum of users' live seconds.")
    recording: Seconds = Field(description="Sum of users' recording seconds.")


class SessionItem(Answer):
    """A session as the list shows it; `duration` with `expand=duration`, `watchTime` with
    `expand=watchTime`. Numbers are null for providers without analytics (ZOOM, FACEBOOK, WISTIA)."""

    sessionId: Id
    title: str
    startTime: UtcTime | None
    endTime: UtcTime | None
    format: SessionFormat
    streamProvider: StreamProvider | None = Field(description="Where it is streamed; null for no stream.")
    registeredUserCount: Count = Field(description="Distinct users registered or bookmarked.")
    attendeeCount: Count = Field(description="Users with attended time > 0.")
    avgAttendedDuration: Seconds | None = Field(description="Total attended seconds / attendeeCount.")
    recordingViews: Count | None = Field(description="Users who watched the recording >= the threshold.")
    liveViews: Count | None = Field(description="Users who watched live >= the view threshold.")
    analyticsAvailable: bool = Field(description="False for sessions streamed on ZOOM, FACEBOOK or WISTIA.")
    analyticsUpdatedAt: UtcTime | None = Field(description="Last rollup; null before the first.")
    durationStatus: DurationStatus = Field(
        description="Why `duration` is what it is (DESIGN §4 rule 10): KNOWN, NO_VIDEO (workshop, "
        "networking, no stream), NOT_SUPPORTED (ZOOM, FACEBOOK), PENDING (not asked yet), LIVE, "
        "NOT_FOUND, NO_CREDENTIALS (provider not configured), PROVIDER_ERROR (asked again later)."
    )
    timeZone: str = Field(description="The event's IANA time zone.", examples=["Europe/Paris"])
    startTimeLocal: LocalTime | None = Field(description="startTime in the event's zone, with its offset.")
    endTimeLocal: LocalTime | None = Field(description="endTime in the event's zone, with its offset.")
    duration: Seconds | None = Field(None, description="Video length from the provider; null when unknown.")
    watchTime: WatchTime | None = None

    @classmethod
    def of(cls, doc: SessionDoc, expand: frozenset[str] = frozenset(), zone: str | None = None) -> Self:
        """A stored session as the list shows it; `zone`: its event's IANA time zone."""
        return cls.model_validate(item_fields(doc, expand, zone))


class SessionList(Answer):
    """One page of an event's sessions."""

    recordsTotal: Count = Field(description="Sessions of the event.")
    recordsFiltered: Count = Field(description="Sessions matching searchString and sessionFormat.")
    page: Count
    size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
    data: list[SessionItem] = Field(max_length=MAX_PAGE_SIZE)


class SessionDetail(SessionItem):
    """One session: the list fields with `duration` and `watchTime`, plus the live/recording split."""

    eventId: Id
    videoId: str | None = Field(description="The provider's video reference.")
    avgLiveWatchDuration: Seconds | None = Field(description="Mean live seconds over live viewers.")
    avgRecordingWatchDuration: Seconds | None = Field(description="Mean recording seconds over viewers.")
    liveEngagement: Percent | None = Field(description="Mean over live viewers of min(watched/duration, 1).")
    recordingEngagement: Percent | None = Field(description="The same over recording viewers.")

    @classmethod
    def of(
        cls,
        doc: SessionDoc,
        expand: frozenset[str] = frozenset({"duration", "watchTime"}),
        zone: str | None = None,
    ) -> Self:
        available = analytics_available(doc.get("streamProvider"))
        split = {
            "avgLiveWatchDuration": doc.get("avgLiveWatch", 0.0) if available else None,
            "avgRecordingWatchDuration": doc.get("avgRecordingWatch", 0.0) if available else None,
            "liveEngagement": doc.get("engagementLive") if available else None,
            "recordingEngagement": doc.get("engagementRecording") if available else None,
        }
        fields = item_fields(doc, expand, zone) | {"eventId": doc["eventId"], "videoId": doc.get("videoId")}
        return cls.model_validate(fields | split)


class ViewerPoint(Answer):
    """One bucket `[t, t + bucketSeconds)` of the live series."""

    t: UtcTime = Field(description="Start of the bucket: the session's startTime + k x bucketSeconds.")
    viewers: Count = Field(description="Distinct users whose live watching overlaps the bucket.")


class LiveViewers(Answer):
    """The live series, every bucket from the first watched to the last (0 included)."""

    points: list[ViewerPoint] = Field(max_length=1440)
    peakConcurrent: Count = Field(description="Most users watching live at one instant.")
    peakAt: UtcTime | None = Field(description="The first such instant; null when nobody watched live.")


class RecordingDay(Answer):
    date: CalendarDate = Field(description="A calendar date in the event's time zone.")
    viewers: Count = Field(description="Distinct users who watched the recording on that date.")


class RecordingViewers(Answer):
    """Every date from the first to the last one the recording was watched (0 included)."""

    days: list[RecordingDay]


class SessionViewers(Answer):
    """Viewers over time (DESIGN §4 rule 9), precomputed by the rollup; empty before anyone
    watched (points [], peakConcurrent 0, peakAt null, days [])."""

    sessionId: Id
    bucketSeconds: Annotated[int, Field(ge=60, multiple_of=60)] = Field(
        description="60, or the smallest multiple of 60 that keeps the series at 1,440 points or fewer."
    )
    live: LiveViewers
    recording: RecordingViewers
