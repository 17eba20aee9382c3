"""Query-string parsing for the host routes: every malformed value is a 400, never a default."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from shared.db import SORT_FIELDS
from shared.errors import BadRequest
from shared.models import is_id
from shared.rules import FORMATS

MAX_PAGE_SIZE = 500

# The vendor's spellings of each expand value, compared after lower-casing and dropping
# spaces, underscores and hyphens.
_EXPANDS = {"duration": "duration", "watchtime": "watchTime"}


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"{name} given more than once")
    return values[0] if values else None


def valid_id(value: str | None, name: str) -> str:
    if value is None or value == "":
        raise BadRequest(f"{name} is required")
    if not is_id(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits, '-' or '_'")
    return value


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = _single(request, name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return value


def event_id_param(request: web.Request) -> str:
    return valid_id(_single(request, "eventId"), "eventId")


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    size: int

    @property
    def skip(self) -> int:
        return self.page * self.size


def paging(request: web.Request) -> Paging:
    return Paging(
        page=int_param(request, "page", 0, 0, 10_000_000),
        size=int_param(request, "size", 50, 1, MAX_PAGE_SIZE),
    )


@dataclass(frozen=True, slots=True)
class SessionListQuery:
    event_id: str
    paging: Paging
    search: str | None
    session_format: str | None
    sort_field: str
    descending: bool
    expand: frozenset[str]

    def cache_key(self) -> tuple[object, ...]:
        return (
            self.paging.page,
            self.paging.size,
            self.search,
            self.session_format,
            self.sort_field,
            self.descending,
            tuple(sorted(self.expand)),
        )


def expand_param(request: web.Request) -> frozenset[str]:
    chosen: set[str] = set()
    for raw in request.query.getall("expand", []):
        for part in raw.split(","):
            key = re.sub(r"[\s_-]", "", part).lower()
            if not key:
                continue
            if key not in _EXPANDS:
                raise BadRequest(f"unknown expand value {part.strip()!r}; use duration or watchTime")
            chosen.add(_EXPANDS[key])
    return frozenset(chosen)


def session_list_query(request: web.Request) -> SessionListQuery:
    """Parsed once per distinct query string: hosts' portals repeat the same few queries."""
    return _parse_session_list(request.query_string, request)


def _parse_session_list(query_string: str, request: web.Request) -> SessionListQuery:
    # Only valid queries are kept (a bad one raises), at most 1,024 of them, oldest out first.
    cached = _LIST_QUERIES.get(query_string)
    if cached is None:
        cached = _LIST_QUERIES[query_string] = _build_session_list_query(request)
        if len(_LIST_QUERIES) > 1024:
            _LIST_QUERIES.pop(next(iter(_LIST_QUERIES)))
    return cached


_LIST_QUERIES: dict[str, SessionListQuery] = {}


def _build_session_list_query(request: web.Request) -> SessionListQuery:
    search = _single(request, "searchString")
    if search is not None and len(search) > 200:
        raise BadRequest("searchString is longer than 200 characters")
    session_format = _single(request, "sessionFormat") or None
    if session_format is not None and session_format not in FORMATS:
        raise BadRequest(f"sessionFormat must be one of {', '.join(FORMATS)}")
    sort = _single(request, "sort") or "startTime"
    descending = sort.startswith("-")
    sort_field = sort.removeprefix("-")
    if sort_field not in SORT_FIELDS:
        raise BadRequest(f"sort must be one of {', '.join(SORT_FIELDS)}, optionally with '-'")
    return SessionListQuery(
        event_id=event_id_param(request),
        paging=paging(request),
        search=search or None,
        session_format=session_format,
        sort_field=sort_field,
        descending=descending,
        expand=expand_param(request),
    )
