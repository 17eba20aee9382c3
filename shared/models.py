"""Request bodies and their validation: strict JSON types, no unknown fields, times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)

from shared.rules import FORMATS, PROVIDERS

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

Id = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]
VideoId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Title = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500, strip_whitespace=True)]


def parse_utc(value: object) -> datetime:
    """An ISO 8601 string with a zone (`Z` or an offset), as an aware UTC datetime."""
    if isinstance(value, datetime):  # built in Python (CLI, tests); JSON never gives one
        parsed = value
    elif isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError as err:
            raise ValueError("must be an ISO 8601 time string") from err
    else:
        raise ValueError("must be an ISO 8601 time string")
    if parsed.tzinfo is None:
        raise ValueError("must carry a time zone, e.g. 2024-05-01T10:00:00Z")
    parsed = parsed.astimezone(UTC)
    # BSON dates hold milliseconds; truncate here so what is stored is what was validated.
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def format_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with `Z`, milliseconds only when there are some."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


UtcTime = Annotated[datetime, BeforeValidator(parse_utc), PlainSerializer(format_utc, when_used="json")]
SessionFormat = Literal[FORMATS]  # type: ignore[valid-type]
StreamProvider = Literal[PROVIDERS]  # type: ignore[valid-type]
Mode = Literal["LIVE", "RECORDING"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionIn(Strict):
    """Body of PUT /rest/host/session/{sessionId}."""

    eventId: Id
    title: Title
    startTime: UtcTime
    endTime: UtcTime
    format: SessionFormat
    streamProvider: StreamProvider | None = None
    videoId: VideoId | None = None

    @model_validator(mode="after")
    def _check(self) -> SessionIn:
        if self.endTime < self.startTime:
            raise ValueError("endTime must not be before startTime")
        return self


class WatchSegmentIn(Strict):
    segmentId: Id
    sessionId: Id
    userId: Id
    mode: Mode
    start: UtcTime
    end: UtcTime


class RegistrationIn(Strict):
    sessionId: Id
    userId: Id
    registeredAt: UtcTime


class LoginIn(Strict):
    username: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=320)]
    password: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1024)]


def describe_validation_error(err: ValidationError) -> str:
    """One line naming each bad field, for errorMessage / rejected reasons."""
    parts = []
    for item in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "body"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
