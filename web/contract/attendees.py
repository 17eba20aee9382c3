"""Attendee routes: the list's and the CSV's query, one attendee row, a page of them."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from web.contract.common import (
    MAX_PAGE_SIZE,
    Answer,
    Count,
    Id,
    NotEmpty,
    Percent,
    Query,
    Seconds,
    SortOrder,
    UtcTime,
)
from web.contract.sessions import PageQuery

AttendeeSort = Literal[
    "attendedSeconds",
    "-attendedSeconds",
    "engagement",
    "-engagement",
    "lastName",
    "-lastName",
    "registeredAt",
    "-registeredAt",
    "firstJoinedAt",
    "-firstJoinedAt",
]
SORT_TEXT = (
    "`attendedSeconds`, `engagement`, `lastName` (case-insensitive), `registeredAt` or `firstJoinedAt`; "
    "a leading `-` sorts descending. Rows without a value (no name, no registration, never joined) come "
    "last either way; ties go by userId."
)


class RowFilter(Query):
    """Filters the session attendee list and the event's people share."""

    searchString: str | None = Field(
        None,
        max_length=200,
        description="Case-insensitive substring of the first name, last name, both (`Ada Lovelace`) "
        "or email, taken literally.",
    )
    attended: Annotated[bool | None, NotEmpty] = Field(
        None, description="`true`: only those who attended; `false`: only registered people who never did."
    )
    minCompletion: Annotated[float | None, Field(ge=0, le=100), NotEmpty] = Field(
        None, description="Only rows whose completion (rule 11) is at least this percentage (0–100)."
    )


class AttendeeOrder(SortOrder, RowFilter):
    """What the list and the CSV share: which rows, in which order. Unknown parameters are 400."""

    unknown_allowed: ClassVar[bool] = False
    sort: Annotated[AttendeeSort, NotEmpty] = Field("-attendedSeconds", description=SORT_TEXT)


class AttendeeQuery(AttendeeOrder, PageQuery):
    """The attendee list's query: search, sort and paging."""


def _identity(text: str) -> Any:
    return Field(description=f"{text}; null when unknown or erased.")


class Identified(Answer):
    """A user with the identity its registrations gave (a session's attendee, an event's person)."""

    userId: Id
    email: str | None = _identity("Email address")
    firstName: str | None = _identity("First name")
    lastName: str | None = _identity("Last name")
    ticketId: str | None = _identity("Ticket id")


class Attendee(Identified):
    """One registered or attending user of a session, with the identity its registrations gave."""

    attended: bool = Field(description="Whether attended time > 0.")
    attendedSeconds: Seconds = Field(description="Union of the user's segments over both modes.")
    liveSeconds: Seconds
    recordingSeconds: Seconds
    engagement: Percent | None = Field(
        description="min(attended / duration, 1) * 100; null without a duration or analytics (rule 7)."
    )
    registeredAt: UtcTime | None = Field(description="When the user registered; null when not registered.")
    firstJoinedAt: UtcTime | None = Field(
        description="The earliest start of the user's segments; null if none."
    )
    lastLeftAt: UtcTime | None = Field(description="The latest end of the user's segments; null if none.")
    joins: Count = Field(description="Separate intervals of the user's attended time (rule 11).")
    completion: Percent | None = Field(
        description="min(attended / duration, 1) * 100; null without a known positive duration."
    )


class AttendeeList(Answer):
    """One page of a session's attendees, in the order `sort` asks."""

    recordsTotal: Count = Field(description="Registered or attending users of the session.")
    recordsFiltered: Count = Field(description="Those matching searchString and the filters.")
    page: Count
    size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
    data: list[Attendee] = Field(max_length=MAX_PAGE_SIZE)
