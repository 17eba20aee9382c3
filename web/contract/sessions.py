"""Host session routes: the list query, the session list and detail, attendees, PUT's answer."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BeforeValidator, Field

from shared.db import SORT_FIELDS
from shared.documents import SessionDoc
from shared.models import SessionFormat, StreamProvider
from shared.rules import analytics_available
from shared.store import session_duration
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
    UtcTime,
)

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


class SessionListQuery(PageQuery):
    """The session list's query."""

    repeatable: ClassVar[frozenset[str]] = frozenset({"expand"})
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
    expand: Annotated[frozenset[ExpandName], BeforeValidator(_expand_values)] = Field(
        frozenset(),
        description="Extra fields of each item: `duration`, `watchTime`. The vendor's spellings are "
        "accepted too, in any case, spaces, `_` and `-` ignored; the parameter may be repeated.",
        examples=[["duration", "watchTime"]],
    )

    def cache_key(self) -> tuple[object, ...]:
        """Everything but the event: what makes two answers about one event differ."""
        return tuple(value for name, value in self if name != "eventId")

    @property
    def sort_field(self) -> str:
        return str(self.sort).removeprefix("-")

    @property
    def descending(self) -> bool:
        return str(self.sort).startswith("-")


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
    duration: Seconds | None = Field(None, description="Video length from the provider; null when unknown.")
    watchTime: WatchTime | None = None

    @classmethod
    def of(cls, doc: SessionDoc, expand: frozenset[str] = frozenset()) -> Self:
        """A stored session as the list shows it."""
        return cls.model_validate(_item_fields(doc, expand))


def _numbers(doc: SessionDoc, available: bool) -> dict[str, float | int | None]:
    """DESIGN §4 rule 7: without analytics from the provider, these numbers are null."""
    return {
        "avgAttendedDuration": doc.get("avgAttendedDuration", 0.0) if available else None,
        "recordingViews": doc.get("recordingViews", 0) if available else None,
        "liveViews": doc.get("liveViews", 0) if available else None,
    }


def _item_fields(doc: SessionDoc, expand: frozenset[str]) -> dict[str, object]:
    available = analytics_available(doc.get("streamProvider"))
    fields: dict[str, object] = {
        "sessionId": doc["_id"],
        "title": doc["title"],
        **{name: doc.get(name) for name in ("startTime", "endTime", "streamProvider", "analyticsUpdatedAt")},
        "format": doc["format"],
        "registeredUserCount": doc.get("registeredUserCount", 0),
        "attendeeCount": doc.get("attendeeCount", 0),
        "analyticsAvailable": available,
        **_numbers(doc, available),
    }
    if "duration" in expand:
        fields["duration"] = session_duration(doc)  # rule 8
    if "watchTime" in expand:
        watch = doc.get("watchTime")
        fields["watchTime"] = {
            key: watch.get(key, 0.0) if watch else 0.0 for key in ("total", "live", "recording")
        }
    return fields


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
    def of(cls, doc: SessionDoc, expand: frozenset[str] = frozenset({"duration", "watchTime"})) -> Self:
        available = analytics_available(doc.get("streamProvider"))
        split = {
            "avgLiveWatchDuration": doc.get("avgLiveWatch", 0.0) if available else None,
            "avgRecordingWatchDuration": doc.get("avgRecordingWatch", 0.0) if available else None,
            "liveEngagement": doc.get("engagementLive") if available else None,
            "recordingEngagement": doc.get("engagementRecording") if available else None,
        }
        fields = _item_fields(doc, expand) | {"eventId": doc["eventId"], "videoId": doc.get("videoId")}
        return cls.model_validate(fields | split)


class Attendee(Answer):
    """One registered or attending user of a session."""

    userId: Id
    attended: bool = Field(description="Whether attended time > 0.")
    attendedSeconds: Seconds = Field(description="Union of the user's segments over both modes.")
    liveSeconds: Seconds
    recordingSeconds: Seconds
    engagement: Percent | None = Field(description="min(attended / duration, 1) * 100; null without one.")
    registeredAt: UtcTime | None = Field(description="When the user registered; null when not registered.")


class AttendeeList(Answer):
    """One page of a session's attendees, ordered by userId."""

    recordsTotal: Count = Field(description="Registered or attending users of the session.")
    page: Count
    size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
    data: list[Attendee] = Field(max_length=MAX_PAGE_SIZE)
