"""OpenAPI 3.1 description of the API (/openapi.json) and the offline docs page (/docs)."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from shared.db import SORT_FIELDS
from shared.jobs import FAILURE, PENDING, STARTED, SUCCESS
from shared.models import ID_PATTERN
from shared.rules import FORMATS, PROVIDERS
from shared.security import ROLES
from web.ingest import MAX_ITEMS
from web.jsonio import dumps
from web.params import MAX_PAGE_SIZE
from web.sessions import CSV_COLUMNS

routes = web.RouteTableDef()

Schema = dict[str, Any]

# What format_utc writes: seconds, and milliseconds only when there are some.
UTC_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z$"
MAX_PAGE = 10_000_000
HOST_SECURITY: list[dict[str, list[str]]] = [{"userBearer": []}, {"userAuthenticationHeader": []}]
INGEST_SECURITY: list[dict[str, list[str]]] = [{"ingestKeyBearer": []}, {"ingestKeyAuthenticationHeader": []}]

DESCRIPTION = """\
Session analytics of a virtual-event platform: registrations, attendance, watch time and video
durations per session, for the event's hosts; attendance ingestion for the platform.

**Conventions.** All bodies are JSON unless stated. Times are ISO 8601 in UTC with `Z`; durations
are seconds. Every answer carries `X-Request-Id` (the caller's own, when it sends a printable
ASCII one of at most 64 characters, else a new one).

**Authentication.** Host routes take a user token from `POST /rest/u/login` as
`Authorization: Bearer <token>`, or as `AUTHENTICATION: <token>` (the header the vendor's clients
send). Ingestion routes take an ingest key the same two ways. A valid credential of the wrong kind
is answered 403, an unknown, expired or revoked one 401.

**Errors** always come as the `Error` envelope, never an HTML page or a stack trace:

| HTTP | errorCode | when |
|---|---|---|
| 400 | `400` | malformed input: bad number or value, wrong JSON type, unknown field, body too big |
| 401 | `401` | no token, unknown, expired or revoked token |
| 401 | `4010101` | login: wrong username or password (the same answer for both) |
| 401 | `4010102` | login: account locked after 5 failures, for 30 minutes |
| 403 | `4030201` | Not Event Host: a valid credential that does not administer this event |
| 403 | `403` | a valid credential used where its kind is not allowed |
| 404 | `4040200` | Event Not Found |
| 404 | `404800` | Session Not Found |
| 404 | `404` | no such route or task |
| 405 | `405` | a known path asked with a method it does not take (`Allow` lists the ones it takes) |
| 408 | `408` | the client did not send its whole body within the request time limit |
| 429 | `429` | too many login attempts from one address (`Retry-After` says when to retry) |
| 503 | `503` | MongoDB or Redis unreachable, or no answer within the request time limit (`Retry-After`) |

A request to any path not listed here is answered with the `NoSuchRoute` response (404); a
listed path asked with an unlisted method, with the `MethodNotAllowed` response (405).
"""


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def utc_time(description: str, *, nullable: bool = False) -> Schema:
    return {
        "type": ["string", "null"] if nullable else "string",
        "format": "date-time",
        "pattern": UTC_PATTERN,
        "description": description,
    }


def number(description: str, *, nullable: bool = False, maximum: float | None = None) -> Schema:
    schema: Schema = {"type": ["number", "null"] if nullable else "number", "minimum": 0}
    if maximum is not None:
        schema["maximum"] = maximum
    schema["description"] = description
    return schema


def count(description: str, *, nullable: bool = False) -> Schema:
    return {
        "type": ["integer", "null"] if nullable else "integer",
        "minimum": 0,
        "description": description,
    }


def closed_object(
    properties: dict[str, Schema],
    *,
    description: str,
    optional: tuple[str, ...] = (),
    title: str | None = None,
) -> Schema:
    """An object with exactly these fields; all of them always present except `optional`."""
    schema: Schema = {"type": "object"}
    if title:
        schema["title"] = title
    schema["description"] = description
    schema["required"] = [name for name in properties if name not in optional]
    schema["properties"] = properties
    schema["additionalProperties"] = False
    return schema


def _session_item_properties() -> dict[str, Schema]:
    return {
        "sessionId": ref("Id"),
        "title": {"type": "string", "description": "The session's title."},
        "startTime": utc_time("When the session starts."),
        "endTime": utc_time("When the session ends."),
        "format": ref("SessionFormat"),
        "streamProvider": ref("StreamProvider"),
        "registeredUserCount": count("Distinct users registered or bookmarked."),
        "attendeeCount": count("Users with attended time > 0."),
        "avgAttendedDuration": number(
            "Total attended seconds / attendeeCount (0 when nobody attended); null when the "
            "provider gives no analytics (ZOOM, FACEBOOK, WISTIA).",
            nullable=True,
        ),
        "recordingViews": count(
            "Users who watched the recording at least the view threshold; null without analytics.",
            nullable=True,
        ),
        "liveViews": count(
            "Users who watched live at least the view threshold; null without analytics.",
            nullable=True,
        ),
        "analyticsAvailable": {
            "type": "boolean",
            "description": "False for sessions streamed on ZOOM, FACEBOOK or WISTIA.",
        },
        "analyticsUpdatedAt": utc_time(
            "When the numbers were last rolled up; null before the first rollup.", nullable=True
        ),
        "duration": number(
            "Video length in seconds from the provider; null for ZOOM, FACEBOOK, no stream, "
            "WORKSHOP_SESSION and NETWORKING_SESSION, and until first synced.",
            nullable=True,
        ),
        "watchTime": ref("WatchTime"),
    }


def _schemas() -> dict[str, Schema]:
    item = _session_item_properties()
    detail = {
        **item,
        "eventId": ref("Id"),
        "videoId": {"type": ["string", "null"], "description": "The provider's video reference."},
        "avgLiveWatchDuration": number(
            "Mean live seconds over users who watched live; null without analytics.", nullable=True
        ),
        "avgRecordingWatchDuration": number(
            "Mean recording seconds over users who watched the recording; null without analytics.",
            nullable=True,
        ),
        "liveEngagement": number(
            "Mean over live viewers of min(watched / duration, 1) * 100; "
            "null without a duration or analytics.",
            nullable=True,
            maximum=100,
        ),
        "recordingEngagement": number(
            "Mean over recording viewers of min(watched / duration, 1) * 100; "
            "null without a duration "
            "or analytics.",
            nullable=True,
            maximum=100,
        ),
    }
    error_codes = "400, 401, 4010101, 4010102, 403, 4030201, 404, 404800, 4040200, 405, 429 or 503"
    return {
        "Id": {
            "type": "string",
            "pattern": ID_PATTERN,
            "description": "An id: 1-64 letters, digits, '-' and '_'.",
        },
        "InputTime": {
            "type": "string",
            "format": "date-time",
            "maxLength": 40,
            "description": "ISO 8601 with a zone (`Z` or an offset); stored in UTC, to the ms.",
            "examples": ["2024-05-01T10:00:00Z"],
        },
        "SessionFormat": {"type": "string", "enum": list(FORMATS)},
        "StreamProvider": {
            "type": ["string", "null"],
            "enum": [*PROVIDERS, None],
            "description": "Where the session is streamed; null for no stream.",
        },
        "UserRole": {"type": "string", "enum": list(ROLES)},
        "TaskState": {"type": "string", "enum": [PENDING, STARTED, SUCCESS, FAILURE]},
        "Error": closed_object(
            {
                "errorCode": {
                    "type": "string",
                    "pattern": "^[0-9]{3,7}$",
                    "description": f"One of {error_codes}.",
                },
                "errorMessage": {"type": "string", "description": "What went wrong, for people."},
                "developerMessage": {
                    "type": "string",
                    "description": "The detail, for developers.",
                },
                "requestId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "The X-Request-Id of this answer.",
                },
            },
            description="The envelope every error comes in.",
        ),
        "WatchTime": closed_object(
            {
                "total": number("Sum of users' attended seconds (both modes, overlaps once)."),
                "live": number("Sum of users' live seconds."),
                "recording": number("Sum of users' recording seconds."),
            },
            description="Watched seconds of a session.",
        ),
        "SessionItem": closed_object(
            item,
            optional=("duration", "watchTime"),
            description="A session as the list shows it. `duration` comes with `expand=duration`, "
            "`watchTime` with `expand=watchTime`.",
        ),
        "SessionList": closed_object(
            {
                "recordsTotal": count("Sessions of the event."),
                "recordsFiltered": count("Sessions matching searchString and sessionFormat."),
                "page": count("The page asked for, 0-based."),
                "size": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PAGE_SIZE,
                    "description": "The page size asked for.",
                },
                "data": {"type": "array", "items": ref("SessionItem"), "maxItems": MAX_PAGE_SIZE},
            },
            description="One page of an event's sessions.",
        ),
        "SessionDetail": closed_object(
            detail,
            description="One session: the list fields with `duration` and `watchTime`, plus the "
            "live/recording split.",
        ),
        "Attendee": closed_object(
            {
                "userId": ref("Id"),
                "attended": {"type": "boolean", "description": "Whether attended time > 0."},
                "attendedSeconds": number("Union of the user's segments over both modes."),
                "liveSeconds": number("Union of the user's live segments."),
                "recordingSeconds": number("Union of the user's recording segments."),
                "engagement": number(
                    "min(attended / duration, 1) * 100; null without a duration or analytics.",
                    nullable=True,
                    maximum=100,
                ),
                "registeredAt": utc_time(
                    "When the user registered; null when not registered.", nullable=True
                ),
            },
            description="One registered or attending user of a session.",
        ),
        "AttendeeList": closed_object(
            {
                "recordsTotal": count("Registered or attending users of the session."),
                "page": count("The page asked for, 0-based."),
                "size": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PAGE_SIZE,
                    "description": "The page size asked for.",
                },
                "data": {"type": "array", "items": ref("Attendee"), "maxItems": MAX_PAGE_SIZE},
            },
            description="One page of a session's attendees, ordered by userId.",
        ),
        "SessionIn": closed_object(
            {
                "eventId": {
                    **ref("Id"),
                    "description": "The event; a session never moves to another event.",
                },
                "title": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 500,
                    "pattern": r"\S",
                    "description": "Surrounding spaces are dropped.",
                },
                "startTime": ref("InputTime"),
                "endTime": {**ref("InputTime"), "description": "Not before startTime."},
                "format": ref("SessionFormat"),
                "streamProvider": {**ref("StreamProvider"), "default": None},
                "videoId": {
                    "type": ["string", "null"],
                    "pattern": "^[A-Za-z0-9_-]{1,128}$",
                    "default": None,
                    "description": "The YouTube or Vimeo video id, the Vonage archive id, "
                    "the Dolby "
                    "conference id or the Wistia media hashed id.",
                },
            },
            optional=("streamProvider", "videoId"),
            description="Body of PUT /rest/host/session/{sessionId}. JSON types are strict and "
            "unknown fields are refused.",
        ),
        "WatchSegment": closed_object(
            {
                "segmentId": {
                    **ref("Id"),
                    "description": "The client's unique id; sent twice, counted once.",
                },
                "sessionId": ref("Id"),
                "userId": ref("Id"),
                "mode": {"type": "string", "enum": ["LIVE", "RECORDING"]},
                "start": ref("InputTime"),
                "end": {
                    **ref("InputTime"),
                    "description": "After start, at most 24 h after it, at most 5 minutes in the future.",
                },
            },
            description="One stretch of one user watching one session.",
        ),
        "Registration": closed_object(
            {
                "sessionId": ref("Id"),
                "userId": ref("Id"),
                "registeredAt": {
                    **ref("InputTime"),
                    "description": "At most 5 minutes in the future.",
                },
            },
            description="A user registered for (or bookmarked) a session.",
        ),
        "WatchSegmentBatch": _batch("WatchSegment"),
        "RegistrationBatch": _batch("Registration"),
        "IngestResult": closed_object(
            {
                "accepted": count("Items stored now."),
                "duplicates": count("Items already stored before (same unique key)."),
                "rejected": {
                    "type": "array",
                    "description": "Items refused, by position in the request, in order.",
                    "items": closed_object(
                        {
                            "index": count("Position of the item in the request, 0-based."),
                            "reason": {"type": "string"},
                        },
                        description="One refused item.",
                    ),
                },
            },
            description="What became of each item of an ingestion request.",
        ),
        "LoginRequest": closed_object(
            {
                "username": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 320,
                    "description": "The user's email address, any case.",
                },
                "password": {"type": "string", "minLength": 1, "maxLength": 1024},
            },
            description="Body of POST /rest/u/login.",
        ),
        "LoginResponse": closed_object(
            {
                "access_token": {
                    "type": "string",
                    "pattern": "^sat_",
                    "description": "Send as `Authorization: Bearer <token>`.",
                },
                "token_type": {"type": "string", "const": "Bearer"},
                "expires_in": utc_time("When the token expires (a UTC time, as the vendor's API names it)."),
                "userId": ref("Id"),
                "userRole": ref("UserRole"),
            },
            description="A new user token.",
        ),
        "RecomputeAccepted": closed_object(
            {
                "taskId": ref("Id"),
                "status": {"type": "string", "enum": [PENDING, STARTED]},
                "eventId": ref("Id"),
            },
            description="The recompute of the event: a new one, or the one already running.",
        ),
        "TaskStatus": {
            **closed_object(
                {
                    "taskId": ref("Id"),
                    "eventId": ref("Id"),
                    "kind": {"type": "string", "enum": ["recompute"]},
                    "state": ref("TaskState"),
                    "status": {**ref("TaskState"), "description": "The same as state."},
                    "progress": closed_object(
                        {
                            "done": count("Steps done."),
                            "total": count("Steps in all; 0 until started."),
                        },
                        description="Progress in steps: the duration sync, then one per session.",
                    ),
                    "createdAt": utc_time("When the task was created.", nullable=True),
                    "updatedAt": utc_time("When the task last reported.", nullable=True),
                    "result": {
                        "type": ["object", "null"],
                        "description": "Only when state is SUCCESS.",
                        "properties": {
                            "sessions": count("Sessions rolled up."),
                            "durations": {
                                "type": "object",
                                "description": "What the duration sync did.",
                            },
                        },
                    },
                    "error": {
                        "type": ["string", "null"],
                        "description": "Only when state is FAILURE.",
                    },
                },
                optional=("result", "error"),
                description="An admin task and its progress.",
            ),
            "allOf": [
                {
                    "if": {"properties": {"state": {"const": SUCCESS}}},
                    "then": {"required": ["result"], "not": {"required": ["error"]}},
                },
                {
                    "if": {"properties": {"state": {"const": FAILURE}}},
                    "then": {"required": ["error"], "not": {"required": ["result"]}},
                },
                {
                    "if": {"properties": {"state": {"enum": [PENDING, STARTED]}}},
                    "then": {"not": {"anyOf": [{"required": ["result"]}, {"required": ["error"]}]}},
                },
            ],
        },
        "Health": closed_object(
            {"status": {"type": "string", "const": "ok"}},
            description="The process is alive.",
        ),
        "Ready": closed_object(
            {
                "status": {"type": "string", "const": "ready"},
                "checks": closed_object(
                    {
                        "mongodb": {"type": "string", "const": "ok"},
                        "redis": {"type": "string", "const": "ok"},
                    },
                    description="Each backing service answered.",
                ),
            },
            description="MongoDB and Redis are reachable.",
        ),
        "OpenAPIDocument": {
            "type": "object",
            "required": ["openapi", "info", "paths"],
            "properties": {"openapi": {"type": "string", "const": "3.1.0"}},
            "description": "This document.",
        },
    }


def _batch(item: str) -> Schema:
    items = {"type": "array", "maxItems": MAX_ITEMS, "items": ref(item)}
    return {
        "description": f'Up to {MAX_ITEMS} items, as a list or as `{{"items": [...]}}`. '
        "An item that "
        "fails validation, or names a session not of this event, is reported in "
        "`rejected` and does not fail the request.",
        "oneOf": [
            items,
            {
                "type": "object",
                "required": ["items"],
                "properties": {"items": items},
                "additionalProperties": False,
            },
        ],
    }


def _parameters() -> dict[str, Schema]:
    return {
        "EventIdQuery": {
            "name": "eventId",
            "in": "query",
            "required": True,
            "description": "The event.",
            "schema": ref("Id"),
        },
        "Page": {
            "name": "page",
            "in": "query",
            "required": False,
            "description": "0-based page number.",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE, "default": 0},
        },
        "Size": {
            "name": "size",
            "in": "query",
            "required": False,
            "description": f"Page size, at most {MAX_PAGE_SIZE}.",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 50},
        },
        "SearchString": {
            "name": "searchString",
            "in": "query",
            "required": False,
            "description": "Case-insensitive title substring, taken literally.",
            "schema": {"type": "string", "maxLength": 200},
        },
        "SessionFormatQuery": {
            "name": "sessionFormat",
            "in": "query",
            "required": False,
            "description": "Only sessions of this format.",
            "schema": ref("SessionFormat"),
        },
        "Sort": {
            "name": "sort",
            "in": "query",
            "required": False,
            "description": "Sort field; a leading `-` sorts descending. Ties go by sessionId.",
            "schema": {
                "type": "string",
                "enum": [form for field in SORT_FIELDS for form in (field, "-" + field)],
                "default": "startTime",
            },
        },
        "Expand": {
            "name": "expand",
            "in": "query",
            "required": False,
            "description": "Extra fields of each item: `duration`, `watchTime`. The vendor's "
            "spellings are accepted too, in any case, spaces, `_` and `-` ignored; the "
            "parameter may be repeated.",
            "style": "form",
            "explode": False,
            "schema": {
                "type": "array",
                "items": {
                    "type": "string",
                    "enum": ["duration", "watchTime", "Duration", "Watch Time", "WATCH_TIME"],
                },
                "uniqueItems": True,
            },
            "examples": {"both": {"value": ["duration", "watchTime"]}},
        },
        "SessionIdPath": {
            "name": "sessionId",
            "in": "path",
            "required": True,
            "description": "The session.",
            "schema": ref("Id"),
        },
        "EventIdPath": {
            "name": "eventId",
            "in": "path",
            "required": True,
            "description": "The event.",
            "schema": ref("Id"),
        },
        "TaskIdPath": {
            "name": "taskId",
            "in": "path",
            "required": True,
            "description": "The taskId `POST /rest/host/session/analytics/recompute` answered.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        "RequestId": {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            "description": "Echoed in the answer and logs when it is printable ASCII of at most 64 "
            "characters; otherwise the server makes one.",
            "schema": {"type": "string", "maxLength": 64},
        },
        "IfNoneMatch": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "ETags the client holds; a match is answered 304 without a body.",
            "schema": {"type": "string"},
        },
    }


def _headers() -> dict[str, Schema]:
    return {
        "XRequestId": {
            "description": "The request id: the caller's own, or a new one.",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        "ETag": {
            "description": "Entity tag of the body; send it back in If-None-Match.",
            "required": True,
            "schema": {"type": "string", "pattern": '^"[0-9a-f]+"$'},
        },
        "CacheControl": {
            "description": "`private, no-cache`: revalidate with If-None-Match.",
            "required": True,
            "schema": {"type": "string"},
        },
        "Location": {
            "description": "Where to follow the task.",
            "required": True,
            "schema": {"type": "string", "pattern": "^/rest/host/tasks/"},
        },
        "RetryAfter": {
            "description": "Seconds until another attempt may succeed.",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        },
        "Allow": {
            "description": "The methods this path takes.",
            "required": True,
            "schema": {"type": "string"},
        },
        "ContentDisposition": {
            "description": '`attachment; filename="session-overview-<eventId>.csv"`.',
            "required": True,
            "schema": {"type": "string"},
        },
        "ContentSecurityPolicy": {
            "description": "The page may run only its own inline code and fetch only this server.",
            "required": True,
            "schema": {"type": "string"},
        },
    }


def _header_refs(*names: str) -> dict[str, Schema]:
    wire = {
        "XRequestId": "X-Request-Id",
        "ETag": "ETag",
        "CacheControl": "Cache-Control",
        "Location": "Location",
        "RetryAfter": "Retry-After",
        "Allow": "Allow",
        "ContentDisposition": "Content-Disposition",
        "ContentSecurityPolicy": "Content-Security-Policy",
    }
    return {wire[name]: {"$ref": f"#/components/headers/{name}"} for name in ("XRequestId", *names)}


def answer(
    description: str,
    schema: Schema | None = None,
    *,
    media: str = "application/json",
    headers: tuple[str, ...] = (),
) -> Schema:
    response: Schema = {"description": description, "headers": _header_refs(*headers)}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


def error(description: str, *codes: str, headers: tuple[str, ...] = ()) -> Schema:
    """An error answer narrowed to the errorCodes this operation can give for its status."""
    return answer(
        description,
        {"allOf": [ref("Error"), {"properties": {"errorCode": {"enum": list(codes)}}}]},
        headers=headers,
    )


def common(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _responses() -> dict[str, Schema]:
    return {
        "BadRequest": error(
            "Malformed input: bad number, unknown value, wrong JSON type, unknown field, body too large.",
            "400",
        ),
        "Unauthorized": error("No credential, or an unknown, expired or revoked one.", "401"),
        "Unavailable": error(
            "MongoDB or Redis unreachable, or no answer within the time limit.",
            "503",
            headers=("RetryAfter",),
        ),
        "RequestTimeout": error("The body did not arrive within the request time limit.", "408"),
        "NoSuchRoute": error("No such route (any path not listed in this document).", "404"),
        "MethodNotAllowed": error(
            "A listed path asked with a method it does not take.", "405", headers=("Allow",)
        ),
        "TooManyLogins": error(
            "Too many login attempts from this address in this minute.",
            "429",
            headers=("RetryAfter",),
        ),
    }


def parameter(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


HOST_FORBIDDEN = error(
    "The user does not administer this event (4030201), or the credential is an ingest key (403).",
    "4030201",
    "403",
)


def operation(
    operation_id: str,
    tag: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    description: str | None = None,
    parameters: tuple[str, ...] = (),
    body: Schema | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> Schema:
    op: Schema = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        op["description"] = description
    op["security"] = security or []
    op["parameters"] = [parameter(name) for name in (*parameters, "RequestId")]
    if body is not None:
        op["requestBody"] = body
    op["responses"] = responses
    return op


def json_body(schema: Schema, description: str) -> Schema:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _paths() -> dict[str, dict[str, Schema]]:
    session_404 = error("No such session (404800), or its event is gone (4040200).", "404800", "4040200")
    event_404 = error("Event Not Found.", "4040200")
    host = {"401": common("Unauthorized"), "403": HOST_FORBIDDEN}
    cached = ("ETag", "CacheControl")
    not_modified = answer("The client's ETag still matches; no body.", headers=cached)
    list_params = (
        "EventIdQuery",
        "Page",
        "Size",
        "SearchString",
        "SessionFormatQuery",
        "Sort",
        "Expand",
        "IfNoneMatch",
    )
    ingest_errors = {
        "400": common("BadRequest"),
        "401": common("Unauthorized"),
        "403": error(
            "The key is not for this event (4030201), or the credential is a user token (403).",
            "4030201",
            "403",
        ),
        "404": event_404,
        "408": common("RequestTimeout"),
        "503": common("Unavailable"),
    }
    return {
        "/rest/u/login": {
            "post": operation(
                "login",
                "auth",
                "Log in",
                {
                    "200": answer("A new token.", ref("LoginResponse")),
                    "400": common("BadRequest"),
                    "401": error(
                        "Wrong username or password (4010101, the same for both), or the account "
                        "is locked after 5 failures, for 30 minutes (4010102).",
                        "4010101",
                        "4010102",
                    ),
                    "408": common("RequestTimeout"),
                    "429": common("TooManyLogins"),
                    "503": common("Unavailable"),
                },
                description="Exchanges an email and password for a user token.",
                body=json_body(ref("LoginRequest"), "The user's credentials."),
            ),
        },
        "/rest/u/logout": {
            "post": operation(
                "logout",
                "auth",
                "Log out",
                {
                    "204": answer("The token is revoked."),
                    "401": common("Unauthorized"),
                    "403": error("The credential is an ingest key.", "403"),
                    "503": common("Unavailable"),
                },
                description="Revokes the token the request carries.",
                security=HOST_SECURITY,
            ),
        },
        "/rest/host/session/analytics": {
            "get": operation(
                "listSessions",
                "sessions",
                "An event's sessions with their numbers",
                {
                    "200": answer("One page of sessions.", ref("SessionList"), headers=cached),
                    "304": not_modified,
                    "400": common("BadRequest"),
                    **host,
                    "404": event_404,
                    "503": common("Unavailable"),
                },
                description="Reads precomputed numbers; the answer carries an ETag.",
                parameters=list_params,
                security=HOST_SECURITY,
            ),
        },
        "/rest/host/session/analytics/csv": {
            "get": operation(
                "sessionOverviewCsv",
                "sessions",
                "Session Overview CSV of an event",
                {
                    "200": answer(
                        "The CSV, streamed, one row per session ordered by startTime. Columns: "
                        + ", ".join(CSV_COLUMNS)
                        + ". Empty cells are nulls.",
                        {"type": "string", "examples": [",".join(CSV_COLUMNS) + "\r\n"]},
                        media="text/csv",
                        headers=("ContentDisposition",),
                    ),
                    "400": common("BadRequest"),
                    **host,
                    "404": event_404,
                    "503": common("Unavailable"),
                },
                parameters=("EventIdQuery",),
                security=HOST_SECURITY,
            ),
        },
        "/rest/host/session/analytics/recompute": {
            "post": operation(
                "recomputeEvent",
                "tasks",
                "Recompute an event's numbers",
                {
                    "202": answer(
                        "The task; while one runs for the event, the same task.",
                        ref("RecomputeAccepted"),
                        headers=("Location",),
                    ),
                    "400": common("BadRequest"),
                    **host,
                    "404": event_404,
                    "503": common("Unavailable"),
                },
                description="Duration sync plus a full rollup of every session of the event, "
                "one at a "
                "time per event.",
                parameters=("EventIdQuery",),
                security=HOST_SECURITY,
            ),
        },
        "/rest/host/session/{sessionId}/analytics": {
            "get": operation(
                "sessionDetail",
                "sessions",
                "One session's numbers",
                {
                    "200": answer("The session.", ref("SessionDetail"), headers=cached),
                    "304": not_modified,
                    "400": common("BadRequest"),
                    **host,
                    "404": session_404,
                    "503": common("Unavailable"),
                },
                parameters=("SessionIdPath", "IfNoneMatch"),
                security=HOST_SECURITY,
            ),
        },
        "/rest/host/session/{sessionId}/attendee": {
            "get": operation(
                "sessionAttendees",
                "sessions",
                "A session's attendees",
                {
                    "200": answer("One page of attendees.", ref("AttendeeList")),
                    "400": common("BadRequest"),
                    **host,
                    "404": session_404,
                    "503": common("Unavailable"),
                },
                parameters=("SessionIdPath", "Page", "Size"),
                security=HOST_SECURITY,
            ),
        },
        "/rest/host/session/{sessionId}": {
            "put": operation(
                "putSession",
                "sessions",
                "Create or update a session",
                {
                    "200": answer("Updated; the session as the list shows it.", ref("SessionItem")),
                    "201": answer("Created; the session as the list shows it.", ref("SessionItem")),
                    "400": common("BadRequest"),
                    **host,
                    "404": event_404,
                    "408": common("RequestTimeout"),
                    "503": common("Unavailable"),
                },
                description="A changed video resets the duration and schedules a rollup. A session "
                "never moves to another event (400); a session of an event the user does not "
                "administer is 403 4030201.",
                parameters=("SessionIdPath",),
                body=json_body(ref("SessionIn"), "The session's fields."),
                security=HOST_SECURITY,
            ),
        },
        "/rest/host/tasks/{taskId}": {
            "get": operation(
                "taskStatus",
                "tasks",
                "Follow a task",
                {
                    "200": answer("The task.", ref("TaskStatus")),
                    **host,
                    "404": error("No such task (404), or its event is gone (4040200).", "404", "4040200"),
                    "503": common("Unavailable"),
                },
                parameters=("TaskIdPath",),
                security=HOST_SECURITY,
            ),
        },
        "/rest/events/{eventId}/watch-segments": {
            "post": operation(
                "postWatchSegments",
                "ingest",
                "Send watch segments",
                {
                    "200": answer("What became of each segment.", ref("IngestResult")),
                    **ingest_errors,
                },
                parameters=("EventIdPath",),
                body=json_body(ref("WatchSegmentBatch"), "The segments."),
                security=INGEST_SECURITY,
            ),
        },
        "/rest/events/{eventId}/registrations": {
            "post": operation(
                "postRegistrations",
                "ingest",
                "Send registrations",
                {
                    "200": answer("What became of each registration.", ref("IngestResult")),
                    **ingest_errors,
                },
                parameters=("EventIdPath",),
                body=json_body(ref("RegistrationBatch"), "The registrations."),
                security=INGEST_SECURITY,
            ),
        },
        "/healthz": {
            "get": operation("healthz", "operations", "Liveness", {"200": answer("Alive.", ref("Health"))}),
        },
        "/readyz": {
            "get": operation(
                "readyz",
                "operations",
                "Readiness",
                {
                    "200": answer("MongoDB and Redis reachable.", ref("Ready")),
                    "503": common("Unavailable"),
                },
            ),
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "operations",
                "Prometheus metrics",
                {"200": answer("Prometheus text exposition.", {"type": "string"}, media="text/plain")},
            ),
        },
        "/openapi.json": {
            "get": operation(
                "openapi",
                "docs",
                "This OpenAPI document",
                {"200": answer("OpenAPI 3.1.", ref("OpenAPIDocument"))},
            ),
        },
        "/docs": {
            "get": operation(
                "docs",
                "docs",
                "Docs page",
                {
                    "200": answer(
                        "An HTML page rendering this document; it fetches nothing else.",
                        {"type": "string"},
                        media="text/html",
                        headers=("ContentSecurityPolicy",),
                    )
                },
            ),
        },
    }


def _with_head(paths: dict[str, dict[str, Schema]], responses: dict[str, Schema]) -> None:
    """Every GET route also answers HEAD: the same statuses and headers, no body."""
    for item in paths.values():
        get = item.get("get")
        if get is None:
            continue
        head = copy.deepcopy(get)
        head["operationId"] = "head" + get["operationId"][0].upper() + get["operationId"][1:]
        head["summary"] = "Headers of: " + get["summary"]
        head.pop("description", None)
        head_responses = {}
        for status, response in get["responses"].items():
            if "$ref" in response:
                response = responses[response["$ref"].rsplit("/", 1)[1]]
            stripped = {key: copy.deepcopy(value) for key, value in response.items() if key != "content"}
            head_responses[status] = stripped
        head["responses"] = head_responses
        item["head"] = head


def build_spec() -> dict[str, Any]:
    responses = _responses()
    paths = _paths()
    _with_head(paths, responses)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Session Analytics Service",
            "version": "0.1.0",
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "auth", "description": "Log in and out."},
            {"name": "sessions", "description": "Session analytics for an event's hosts."},
            {"name": "tasks", "description": "Recomputations admins trigger, and their progress."},
            {"name": "ingest", "description": "Attendance from the platform, with an ingest key."},
            {"name": "operations", "description": "Liveness, readiness and metrics."},
            {"name": "docs", "description": "This description of the API."},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "parameters": _parameters(),
            "headers": _headers(),
            "responses": responses,
            "securitySchemes": {
                "userBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A user token from POST /rest/u/login (starts with `sat_`).",
                },
                "userAuthenticationHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "AUTHENTICATION",
                    "description": "The same user token as `AUTHENTICATION: <token>`, "
                    "as the vendor's "
                    "clients send it (a `Bearer ` prefix is allowed).",
                },
                "ingestKeyBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An ingest key from `session-analytics create-ingest-key` "
                    "(starts with `sak_`).",
                },
                "ingestKeyAuthenticationHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "AUTHENTICATION",
                    "description": "The same ingest key as `AUTHENTICATION: <key>`.",
                },
            },
        },
    }


SPEC: dict[str, Any] = build_spec()


@dataclass(frozen=True, slots=True)
class DocsPage:
    body: bytes
    content_security_policy: str


def _sources_hash(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
        for block in blocks
    )


@cache
def docs_page() -> DocsPage:
    """The page, read once, with a policy allowing its own inline code and same-origin fetches."""
    html = resources.files("web").joinpath("static/docs.html").read_text(encoding="utf-8")
    policy = (
        "default-src 'none'; connect-src 'self'; "
        f"script-src {_sources_hash(html, 'script')}; style-src {_sources_hash(html, 'style')}; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return DocsPage(html.encode("utf-8"), policy)


@cache
def _spec_body() -> bytes:
    return dumps(SPEC)


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_spec_body(), content_type="application/json")


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    page = docs_page()
    return web.Response(
        body=page.body,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": page.content_security_policy},
    )
