"""The OpenAPI 3.1 document, generated from the contract models and the route table; /docs."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from shared import errors
from shared.errors import ServiceError
from web.contract.common import ErrorEnvelope, Id
from web.contract.routes import OPERATIONS, Operation, Who

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
SECURITY = {
    Who.ANYONE: [],
    Who.HOST: [{"userBearer": []}, {"userAuthenticationHeader": []}],
    Who.INGEST: [{"ingestKeyBearer": []}, {"ingestKeyAuthenticationHeader": []}],
}
HEADERS: dict[str, tuple[str, str, Schema]] = {  # component name: wire name, meaning, schema
    "XRequestId": (
        "X-Request-Id",
        "The caller's printable id (<= 64 chars), or a new one.",
        {"type": "string"},
    ),
    "ETag": ("ETag", "Entity tag of the body; send it back in If-None-Match.", {"type": "string"}),
    "CacheControl": (
        "Cache-Control",
        "`private, no-cache`: revalidate with If-None-Match.",
        {"type": "string"},
    ),
    "Location": ("Location", "Where to follow the task.", {"type": "string"}),
    "RetryAfter": ("Retry-After", "Seconds until another attempt may succeed.", {"type": "string"}),
    "ContentDisposition": ("Content-Disposition", "`attachment; filename=...csv`.", {"type": "string"}),
    "ContentSecurityPolicy": ("Content-Security-Policy", "Only this server's assets.", {"type": "string"}),
}
DESCRIPTION = """\
Session analytics of a virtual-event platform: registrations, attendance, watch time and video
durations per session, for the event's hosts; attendance ingestion for the platform.

Times are ISO 8601 in UTC with `Z`; durations are seconds. Host routes take a user token from
`POST /rest/u/login` as `Authorization: Bearer <token>` or `AUTHENTICATION: <token>`; ingestion
routes take an ingest key the same two ways. A valid credential of the wrong kind is answered 403,
an unknown, expired or revoked one 401. Every answer carries `X-Request-Id`. Errors always come as
the `ErrorEnvelope`; a path not listed here gets `NoSuchRoute` (404), a listed path with another
method `MethodNotAllowed` (405).

| HTTP | errorCode | meaning |
|---|---|---|
"""


def _error_classes() -> list[type[ServiceError]]:
    found = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ServiceError)]
    return sorted((c for c in found if c is not ServiceError), key=lambda c: (c.http_status, c.error_code))


def _header_refs(*names: str) -> Schema:
    return {HEADERS[n][0]: {"$ref": f"#/components/headers/{n}"} for n in ("XRequestId", *names)}


def _content(media: str, schema: Schema, example: Any = None) -> Schema:
    return {media: {"schema": schema} | ({"example": example} if example is not None else {})}


def _error_reply(classes: list[type[ServiceError]]) -> Schema:
    codes = list(dict.fromkeys(c.error_code for c in classes))
    schema = {
        "allOf": [{"$ref": REF.format(model="ErrorEnvelope")}, {"properties": {"errorCode": {"enum": codes}}}]
    }
    headers = ("RetryAfter",) if classes[0] is errors.TooManyRequests else ()
    text = "; ".join(f"{c.error_message} ({c.error_code})" for c in classes)
    return {
        "description": text,
        "headers": _header_refs(*headers),
        "content": _content("application/json", schema),
    }


def _query_parameters(op: Operation) -> list[Schema]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        prop = next((s for s in prop.pop("anyOf", []) if s.get("type") != "null"), {}) | prop
        if prop.get("default", "") is None:  # absent, not null: a query string has no null
            del prop["default"]
        param = {"name": name, "in": "query", "required": name in schema.get("required", [])}
        param |= {"description": prop.pop("description", ""), "schema": prop}
        if prop.pop("title", None) and prop.get("type") == "array":
            param |= {"style": "form", "explode": False}
        params.append(param | ({"example": op.example[name]} if name in op.example else {}))
    return params


def _parameters(op: Operation) -> list[Schema]:
    typed = op.path_model.model_json_schema()["properties"] if op.path_model else {}
    path = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": typed.get(name, TypeAdapter(Id).json_schema()),
        }
        | ({"example": op.example[name]} if name in op.example else {})
        for name in re.findall(r"\{(\w+)\}", op.path)
    ]
    headers = [{"name": "X-Request-Id", "in": "header", "required": False, "schema": {"type": "string"}}]
    if "ETag" in {h for reply in op.replies.values() for h in reply.headers}:
        headers.append(
            {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}
        )
    return path + _query_parameters(op) + headers


def _operation(op: Operation) -> Schema:
    replies: Schema = {}
    for status, reply in op.replies.items():
        body = {"type": "string"} if reply.model is None else {"$ref": REF.format(model=reply.model.__name__)}
        replies[str(status)] = {"description": reply.description, "headers": _header_refs(*reply.headers)}
        if reply.media != "application/json" or reply.model is not None:
            example = op.example.get("answer") if status < 300 else None
            replies[str(status)]["content"] = _content(reply.media, body, example)
    by_status: dict[int, list[type[ServiceError]]] = defaultdict(list)
    for err in op.all_errors:
        by_status[err.http_status].append(err)
    replies |= {str(status): _error_reply(classes) for status, classes in sorted(by_status.items())}
    document = {"operationId": op.operation_id, "tags": [op.tag], "summary": op.summary}
    document |= {"description": f"{op.description}\n\nWho may call it: {op.who.value}.".strip()}
    document |= {"security": SECURITY[op.who], "parameters": _parameters(op), "responses": replies}
    if op.body is not None:
        body = {"$ref": REF.format(model=op.body.__name__)}
        document["requestBody"] = {
            "required": True,
            "content": _content("application/json", body, op.example["body"]),
        }
    return document


def _head(get: Schema) -> Schema:
    """Every GET route also answers HEAD: the same statuses and headers, no body."""
    name = get["operationId"]
    replies = {
        status: {k: v for k, v in reply.items() if k != "content"}
        for status, reply in get["responses"].items()
    }
    return get | {
        "operationId": "head" + name[0].upper() + name[1:],
        "summary": "Headers of: " + get["summary"],
        "responses": replies,
    }


def _schemas() -> Schema:
    models: list[tuple[type[BaseModel], Any]] = [(ErrorEnvelope, "serialization")]
    for op in OPERATIONS:
        models += [(reply.model, "serialization") for reply in op.replies.values() if reply.model]
        models += [(op.body, "validation")] if op.body else []
    _, defs = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    return defs["$defs"]


def build_spec() -> Schema:
    paths: dict[str, Schema] = defaultdict(dict)
    for op in OPERATIONS:
        paths[op.path][op.method.lower()] = _operation(op)
        if op.method == "GET":
            paths[op.path]["head"] = _head(paths[op.path]["get"])
    table = "".join(f"| {c.http_status} | `{c.error_code}` | {c.error_message} |\n" for c in _error_classes())
    unmatched = {"NoSuchRoute": [errors.NotFound], "MethodNotAllowed": [errors.MethodNotAllowed]}
    bearer = {"type": "http", "scheme": "bearer"}
    header = {"type": "apiKey", "in": "header", "name": "AUTHENTICATION"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Session Analytics Service",
            "version": "0.1.0",
            "description": DESCRIPTION + table,
        },
        "servers": [{"url": "/"}],
        "paths": dict(paths),
        "components": {
            "schemas": _schemas(),
            "headers": {
                n: {"description": d, "required": True, "schema": s} for n, (_, d, s) in HEADERS.items()
            },
            "responses": {name: _error_reply(classes) for name, classes in unmatched.items()},
            "securitySchemes": {
                "userBearer": bearer | {"description": "A user token from POST /rest/u/login (`sat_...`)."},
                "userAuthenticationHeader": header | {"description": "The same user token, vendor style."},
                "ingestKeyBearer": bearer | {"description": "An ingest key (`sak_...`)."},
                "ingestKeyAuthenticationHeader": header
                | {"description": "The same ingest key, vendor style."},
            },
        },
    }


SPEC: Schema = build_spec()
