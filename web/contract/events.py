"""The events a host may host: the dashboard's event picker."""

from __future__ import annotations

from pydantic import ConfigDict, RootModel

from web.contract.common import Answer


class HostEvent(Answer):
    """One event of the answer; `timeZone` is the IANA zone `create-event --timezone` stored."""

    eventId: str
    name: str
    organizerId: str
    timeZone: str


class HostEvents(RootModel[list[HostEvent]]):
    """The answer: the events the user may host, by name."""

    model_config = ConfigDict(frozen=True)
