"""Request bodies and their validation: strict JSON types, no unknown fields, times in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

import email_validator
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonDict

from shared.rules import FORMATS, PROVIDERS

# `$` here is the end of the text as JSON Schema and pydantic read it. Python's `re` lets `$`
# match before a final newline, so Python code checks ids with `is_id` (a whole match).
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# DESIGN §3: times sent to the service lie in [1970-01-01, 2100-01-01) UTC.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)


def is_id(value: object) -> bool:
    """1-64 letters, digits, `-` and `_`, and nothing else (no trailing newline)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


Id = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]
VideoId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Title = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=500, strip_whitespace=True, pattern=r"\S")
]


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
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError as err:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("must lie between 1970-01-01 and 2100-01-01 UTC") from err
    if not EARLIEST_TIME <= parsed < LATEST_TIME:
        raise ValueError("must lie between 1970-01-01 and 2100-01-01 UTC")
    # BSON dates hold milliseconds; truncate here so what is stored is what was validated.
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def format_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with `Z` and a four-digit year, milliseconds only when there are some."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    # Not strftime("%Y"): the C library writes year 347 as "347", which is not ISO 8601.
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        return f"{text}.{value.microsecond // 1000:03d}Z"
    return text + "Z"


UtcTime = Annotated[datetime, BeforeValidator(parse_utc), PlainSerializer(format_utc, when_used="json")]
SessionFormat = Literal[FORMATS]  # type: ignore[valid-type]
StreamProvider = Literal[PROVIDERS]  # type: ignore[valid-type]
Mode = Literal["LIVE", "RECORDING"]


# Examples of each body, shown in the OpenAPI document and the /docs page.
SESSION_EXAMPLE: JsonDict = {
    "eventId": "ev1",
    "title": "Keynote",
    "startTime": "2024-05-01T09:00:00Z",
    "endTime": "2024-05-01T10:00:00Z",
    "format": "MAINSTAGE_SESSION",
    "streamProvider": "VIMEO",
    "videoId": "76979871",
}
SEGMENT_EXAMPLE: JsonDict = {
    "segmentId": "g1",
    "sessionId": "s1",
    "userId": "u1",
    "mode": "LIVE",
    "start": "2024-05-01T09:00:00Z",
    "end": "2024-05-01T09:05:00Z",
}
REGISTRATION_EXAMPLE: JsonDict = {
    "sessionId": "s1",
    "userId": "u1",
    "registeredAt": "2024-04-20T08:00:00Z",
    "email": "ada@example.com",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "ticketId": "T-1001",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionIn(Strict):
    """Body of PUT /rest/host/session/{sessionId}."""

    model_config = ConfigDict(json_schema_extra={"examples": [SESSION_EXAMPLE]})

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
    model_config = ConfigDict(json_schema_extra={"examples": [SEGMENT_EXAMPLE]})

    segmentId: Id
    sessionId: Id
    userId: Id
    mode: Mode
    start: UtcTime
    end: UtcTime


def _email(value: str) -> str:
    """A well-formed address (syntax only: no DNS look-up), in email-validator's normal form."""
    try:
        return email_validator.validate_email(value, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as err:
        raise ValueError(f"not a valid email address: {err}") from err


MAX_EMAIL = 254  # RFC 5321's limit on a forward path, as email-validator also applies it
MAX_NAME = 100
Email = Annotated[
    str,
    StringConstraints(strict=True, max_length=MAX_EMAIL),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": MAX_EMAIL}),
]


def _printable(value: str) -> str:
    # Control characters have no place in a name, and a CSV cell or a page shows what was sent.
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("must not contain control characters")
    return value


PersonName = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_NAME),
    AfterValidator(_printable),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": "^[^\\u0000-\\u001f\\u007f]+$"}
    ),
]


class RegistrationIn(Strict):
    """A registration; the identity fields are optional and only kept until erased (DELETE
    /rest/host/event/{eventId}/attendee/{userId}). Absent or null: nothing known, nothing changed."""

    model_config = ConfigDict(json_schema_extra={"examples": [REGISTRATION_EXAMPLE]})

    sessionId: Id
    userId: Id
    registeredAt: UtcTime
    email: Email | None = None
    firstName: PersonName | None = None
    lastName: PersonName | None = None
    ticketId: Id | None = None

    def identity(self) -> dict[str, str]:
        """The identity fields this registration gives (absent and null ones left out)."""
        return {name: value for name in IDENTITY_FIELDS if (value := getattr(self, name)) is not None}


# The personal fields of an attendee: stored once per (event, user), never in the rollup's documents.
IDENTITY_FIELDS = ("email", "firstName", "lastName", "ticketId")


class LoginIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "host@example.com", "password": "pw"}]}
    )

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
