"""Attendance ingestion: the batches the platform posts and what became of each item."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from shared.models import REGISTRATION_EXAMPLE, SEGMENT_EXAMPLE, RegistrationIn, WatchSegmentIn
from web.contract.common import Answer, Count

MAX_ITEMS = 1000
BATCH = (
    f'Up to {MAX_ITEMS} items, as a list or as `{{"items": [...]}}`. An item that fails validation, '
    "or names a session not of this event, is reported in `rejected` and does not fail the request."
)


# Each item is judged alone: one that is not a valid item is reported in `rejected`, and the
# request still succeeds; so an item may be any JSON value, and the model says what is accepted.
Segments = Annotated[list[WatchSegmentIn | Any], Field(max_length=MAX_ITEMS)]
Registrations = Annotated[list[RegistrationIn | Any], Field(max_length=MAX_ITEMS)]


class _Items(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WatchSegmentItems(_Items):
    items: Segments


class RegistrationItems(_Items):
    items: Registrations


class WatchSegmentBatch(RootModel[Segments | WatchSegmentItems]):
    __doc__ = BATCH
    model_config = ConfigDict(json_schema_extra={"examples": [[SEGMENT_EXAMPLE]]})


class RegistrationBatch(RootModel[Registrations | RegistrationItems]):
    __doc__ = BATCH
    model_config = ConfigDict(json_schema_extra={"examples": [[REGISTRATION_EXAMPLE]]})


class Rejected(Answer):
    """One refused item."""

    index: Count = Field(description="Position of the item in the request, 0-based.")
    reason: str


class IngestResult(Answer):
    """What became of each item of an ingestion request."""

    accepted: Count = Field(description="Items stored now.")
    duplicates: Count = Field(description="Items already stored before (same unique key).")
    rejected: list[Rejected] = Field(description="Items refused, by position in the request, in order.")
