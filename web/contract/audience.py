"""An event's audience: its summary (DESIGN §4 rule 12) and its people (rule 13)."""

from __future__ import annotations

from datetime import date as CalendarDate
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from web.contract.attendees import Identified, RowFilter
from web.contract.common import (
    MAX_PAGE_SIZE,
    Answer,
    Count,
    Id,
    NotEmpty,
    Percent,
    Seconds,
    SortOrder,
    UtcTime,
)
from web.contract.sessions import PageQuery, WatchTime


class DayAttendees(Answer):
    date: CalendarDate = Field(description="A calendar date in the event's time zone.")
    attendees: Count = Field(description="Distinct people with attended time on that date.")


class EventSummary(Answer):
    """The event's unique audience, over all its sessions (sessions without analytics included)."""

    eventId: Id
    timeZone: str = Field(description="The event's IANA time zone: the dates of attendeesPerDay are in it.")
    sessions: Count = Field(description="Sessions of the event.")
    uniqueRegistrants: Count = Field(description="People registered for at least one session.")
    uniqueAttendees: Count = Field(description="People with attended time > 0 in at least one session.")
    noShows: Count = Field(description="Unique registrants who attended no session.")
    liveOnly: Count = Field(description="Unique attendees who watched only live.")
    recordingOnly: Count = Field(description="Unique attendees who watched only recordings.")
    both: Count = Field(description="Unique attendees who watched live and recordings.")
    watchTime: WatchTime = Field(description="The sum of the sessions' watch time (rule 5).")
    avgWatchPerAttendee: Seconds = Field(description="watchTime.total / uniqueAttendees; 0 when none.")
    peakConcurrent: Count = Field(
        description="The most people watching live at one instant across the event (a person in "
        "two sessions at once counts once)."
    )
    peakAt: UtcTime | None = Field(description="The first instant of that peak; null without live viewing.")
    attendeesPerDay: list[DayAttendees] = Field(
        description="Every date from the first to the last with attendance (0 included)."
    )
    analyticsUpdatedAt: UtcTime | None = Field(description="When a rollup last changed these numbers.")


PeopleSort = Literal[
    "attendedSeconds",
    "-attendedSeconds",
    "sessionsAttended",
    "-sessionsAttended",
    "completion",
    "-completion",
    "lastName",
    "-lastName",
    "firstJoinedAt",
    "-firstJoinedAt",
    "lastLeftAt",
    "-lastLeftAt",
]
PEOPLE_SORT_TEXT = (
    "`attendedSeconds`, `sessionsAttended`, `completion`, `lastName` (case-insensitive), `firstJoinedAt` or "
    "`lastLeftAt`; a leading `-` sorts descending. People without a value come last either way; ties go "
    "by userId."
)


class PeopleOrder(SortOrder, RowFilter):
    """Which of the event's people, in which order: the list's and the CSV's query."""

    unknown_allowed: ClassVar[bool] = False
    sort: Annotated[PeopleSort, NotEmpty] = Field("-attendedSeconds", description=PEOPLE_SORT_TEXT)


class PeopleQuery(PeopleOrder, PageQuery):
    """The people list's query: search, filters, sort and paging."""


class Person(Identified):
    """One person of the event: registered for or attending at least one of its sessions."""

    sessionsRegistered: Count = Field(description="Sessions the person registered for.")
    sessionsAttended: Count = Field(description="Sessions with attended time > 0.")
    attended: bool = Field(description="Whether the person attended any session.")
    noShow: bool = Field(description="Registered, and attended no session.")
    attendedSeconds: Seconds = Field(description="Attended seconds summed over sessions.")
    liveSeconds: Seconds = Field(description="Live seconds summed over sessions.")
    recordingSeconds: Seconds = Field(description="Recording seconds summed over sessions.")
    firstJoinedAt: UtcTime | None = Field(description="The earliest start over the event; null if none.")
    lastLeftAt: UtcTime | None = Field(description="The latest end over the event; null if none.")
    completion: Percent | None = Field(
        description="The mean completion (rule 11) of the person's sessions with a known duration; "
        "null when none has one."
    )


class PeopleList(Answer):
    """One page of the event's people, in the order `sort` asks."""

    recordsTotal: Count = Field(description="People of the event.")
    recordsFiltered: Count = Field(description="Those matching searchString and the filters.")
    page: Count
    size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
    data: list[Person] = Field(max_length=MAX_PAGE_SIZE)
