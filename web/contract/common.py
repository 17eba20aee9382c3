"""What every resource shares: ids, times, page limits, the error envelope, strict query fields."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, cast

import orjson
from aiohttp import web
from multidict import MultiDictProxy
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)
from yarl import URL

from shared.errors import BadRequest, ServiceError
from shared.models import ID_PATTERN, describe_validation_error, format_utc, is_id

MAX_PAGE_SIZE = 500
MAX_PAGE = 10_000_000
DEFAULT_PAGE_SIZE = 50
# What format_utc writes: seconds, and milliseconds only when there are some.
UTC_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z$"

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
Percent = Annotated[float, Field(ge=0, le=100)]
UtcTime = Annotated[
    datetime,
    PlainSerializer(format_utc, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": UTC_PATTERN}),
]


class Answer(BaseModel):
    """An answer body: exactly the fields its model names; optional ones only when set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_unset=True))

    def response(self, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(body=self.body(), status=status, content_type="application/json", headers=headers)


class ErrorEnvelope(Answer):
    """The envelope every error comes in."""

    errorCode: str = Field(pattern=r"^[0-9]{3,7}$", description="See the error table.")
    errorMessage: str = Field(description="What went wrong, for people.")
    developerMessage: str = Field(description="The detail, for developers.")
    requestId: str = Field(min_length=1, max_length=64, description="The X-Request-Id of this answer.")

    @classmethod
    def of(cls, err: ServiceError, request_id: str) -> Self:
        return cls(
            errorCode=err.error_code,
            errorMessage=err.error_message,
            developerMessage=err.developer_message,
            requestId=request_id,
        )


class OpenAPIDocument(BaseModel):
    """This document."""

    model_config = ConfigDict(extra="allow")
    openapi: Literal["3.1.0"]
    info: dict[str, Any]
    paths: dict[str, Any]


# -- query strings -------------------------------------------------------------------------------


def _digits(value: object) -> object:
    # int("+1"), int(" 1"), int("1_000") all succeed in Python; a query number is plain digits.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,9}", value):
        raise ValueError("must be a whole number written in digits")
    return value


def _not_empty(value: object) -> object:
    if value == "":
        raise ValueError("must not be empty")
    return value


NotEmpty = BeforeValidator(_not_empty)
# A query number: digits only (no sign, spaces, `_` or point); bounds come with Field.
Digits = BeforeValidator(_digits)


# Per request: each Query model's parse of it.
_PARSED: web.RequestKey[dict[type[Query], Query]] = web.RequestKey("parsed_queries", dict)


class Query(BaseModel):
    """A query string. Each parameter at most once; unknown parameters are ignored (or, where
    `unknown_allowed` is off, 400)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    repeatable: ClassVar[frozenset[str]] = frozenset()  # parameters that may come more than once
    unknown_allowed: ClassVar[bool] = True

    @classmethod
    def parse(cls, request: web.Request) -> Self:
        """The request's query as this model, parsed once per request (the models are frozen)."""
        parsed = request.setdefault(_PARSED, {})
        if (known := parsed.get(cls)) is None:
            known = parsed[cls] = _parse_query_string(cls, request.rel_url.raw_query_string)
        return cast(Self, known)

    @classmethod
    def _parse(cls, query: MultiDictProxy[str]) -> Self:
        values: dict[str, Any] = {}
        for name in query.keys():
            if name not in cls.model_fields and not cls.unknown_allowed:
                raise BadRequest(f"unknown parameter {name!r}")
            if name in values or name not in cls.model_fields:
                continue
            given = query.getall(name)
            if name in cls.repeatable:
                values[name] = given
            elif len(given) > 1:
                raise BadRequest(f"{name} given more than once")
            else:
                values[name] = given[0]
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise BadRequest(describe_validation_error(err)) from err


class SortOrder:
    """For a query model whose `sort` parameter names a field (each model lists its own, with
    its default); a leading `-` sorts descending."""

    if TYPE_CHECKING:  # declared by each model: an annotation here would reorder its fields
        sort: str

    @property
    def sort_field(self) -> str:
        return str(self.sort).removeprefix("-")

    @property
    def descending(self) -> bool:
        return str(self.sort).startswith("-")


@lru_cache(maxsize=512)
def _parse_query_string(model: type[Query], raw: str) -> Query:
    """A query string as `model`, kept per process: a host's portal repeats the same few queries
    (a list page re-polled), and the models are frozen. The query is decoded as aiohttp decodes a
    request's, from the same raw string; a refused query is not kept."""
    return model._parse(URL.build(query_string=raw, encoded=True).query)


def path_id(request: web.Request, name: str) -> str:
    """An id from the path, matched whole against the one id pattern."""
    value = request.match_info[name]
    if not is_id(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits, '-' or '_'")
    return value
