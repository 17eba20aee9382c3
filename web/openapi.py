"""The OpenAPI 3.1 document, generated from the contract models and the route table."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from shared import errors
from web.contract.common import ErrorEnvelope, Id
from web.contract.descriptions import DESCRIPTION, HEADERS, OPTIONAL_HEADERS, SCHEMES
from web.contract.routes import OPERATIONS, Operation

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"


def _header_refs(*wire_names: str) -> Schema:
    names = ("X-Request-Id", *wire_names, *sorted(OPTIONAL_HEADERS))
    return {n: {"$ref": "#/components/headers/" + n.replace("-", "")} for n in dict.fromkeys(names)}


def _content(media: str, schema: Schema, example: Any = None) -> Schema:
    return {media: {"schema": schema} | ({"example": example} if example is not None else {})}


def _error_reply(classes: list[type[errors.ServiceError]]) -> Schema:
    codes = list(dict.fromkeys(c.error_code for c in classes))
    narrowed = {"properties": {"errorCode": {"enum": codes}}}
    content = _content("application/json", {"allOf": [{"$ref": REF.format(model="ErrorEnvelope")}, narrowed]})
    headers = _header_refs(*(header for c in classes for header in c().headers()))  # what each adds
    text = "; ".join(f"{c.error_message} ({c.error_code})" for c in classes)
    return {"description": text, "headers": headers, "content": content}


def _parameter(op: Operation, name: str, where: str, schema: Schema, required: bool) -> Schema:
    example = {"example": op.example[name]} if name in op.example else {}
    described = {"description": schema.pop("description")} if "description" in schema else {}
    return {"name": name, "in": where, "required": required, "schema": schema} | described | example


def _query_parameters(op: Operation) -> list[Schema]:
    schema = op.query.model_json_schema() if op.query else {"properties": {}}
    params = []
    for name, prop in schema["properties"].items():
        prop = next((s for s in prop.pop("anyOf", []) if s.get("type") != "null"), {}) | prop
        prop.pop("title", None)
        if prop.get("default", "") is None:  # absent, not null: a query string has no null
            del prop["default"]
        param = _parameter(op, name, "query", prop, name in schema.get("required", []))
        params.append(param | ({"style": "form", "explode": False} if prop.get("type") == "array" else {}))
    return params


def _parameters(op: Operation) -> list[Schema]:
    typed = op.path_model.model_json_schema()["properties"] if op.path_model else {}
    names = re.findall(r"\{(\w+)\}", op.path)
    path = [_parameter(op, n, "path", typed.get(n, TypeAdapter(Id).json_schema()), True) for n in names]
    cached = any("ETag" in r.headers for r in op.replies.values())  # If-None-Match can match
    headers = [
        _parameter(op, h, "header", {"type": "string"}, False) for h in ("X-Request-Id", "If-None-Match")
    ]
    return path + _query_parameters(op) + headers[: 2 if cached else 1]


def _responses(op: Operation) -> Schema:
    replies: Schema = {}
    for status, reply in op.replies.items():
        replies[str(status)] = {"description": reply.description, "headers": _header_refs(*reply.headers)}
        if reply.model is not None or reply.media != "application/json":
            text = {} if reply.media == "*/*" else {"type": "string"}  # any file: any bytes
            body = {"$ref": REF.format(model=reply.model.__name__)} if reply.model else text
            replies[str(status)]["content"] = _content(reply.media, body)
    by_status: dict[int, list[type[errors.ServiceError]]] = defaultdict(list)
    for err in op.all_errors:
        by_status[err.http_status].append(err)
    return replies | {str(status): _error_reply(classes) for status, classes in sorted(by_status.items())}


def _operation(op: Operation) -> Schema:
    document: Schema = {"operationId": op.operation_id, "tags": [op.tag], "summary": op.summary}
    document |= {"description": f"{op.description}\n\nWho may call it: {op.who.value}.".strip()}
    security: list[Schema] = [{name: []} for name, (_, who, _) in SCHEMES.items() if who is op.who]
    document |= {"security": security, "parameters": _parameters(op), "responses": _responses(op)}
    if op.body is not None:
        body = {"$ref": REF.format(model=op.body.__name__)}
        example = op.body.model_json_schema()["examples"][0]  # each body model carries one
        document["requestBody"] = {"required": True, "content": _content("application/json", body, example)}
    return document


def _head(get: Schema) -> Schema:
    """Every GET route also answers HEAD: the same statuses and headers, no body."""
    replies = {status: {k: r[k] for k in r if k != "content"} for status, r in get["responses"].items()}
    name = "head" + get["operationId"][0].upper() + get["operationId"][1:]
    return get | {"operationId": name, "summary": "Headers of: " + get["summary"], "responses": replies}


def _paths() -> Schema:
    paths: dict[str, Schema] = defaultdict(dict)
    for op in OPERATIONS:
        paths[op.path][op.method.lower()] = _operation(op)
        if op.method == "GET":
            paths[op.path]["head"] = _head(paths[op.path]["get"])
    return dict(paths)


def _schemas() -> Any:
    models: list[tuple[type[BaseModel], Any]] = [(ErrorEnvelope, "serialization")]
    for op in OPERATIONS:
        models += [(reply.model, "serialization") for reply in op.replies.values() if reply.model]
        models += [(op.body, "validation")] if op.body else []
    return models_json_schema(list(dict.fromkeys(models)), ref_template=REF)[1]["$defs"]


def _components() -> Schema:
    unmatched = {"NoSuchRoute": errors.NotFound, "MethodNotAllowed": errors.MethodNotAllowed}
    header = {"required": True, "schema": {"type": "string"}}
    return {
        "schemas": _schemas(),
        "headers": {
            n.replace("-", ""): header | {"description": d, "required": n not in OPTIONAL_HEADERS}
            for n, d in HEADERS.items()
        },
        "responses": {name: _error_reply([error]) for name, error in unmatched.items()},
        "securitySchemes": {name: kind | {"description": d} for name, (kind, _, d) in SCHEMES.items()},
    }


def build_spec() -> Schema:
    base = errors.ServiceError
    found = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, base) and c != base]
    table = sorted({(c.http_status, c.error_code, c.error_message) for c in found})
    description = DESCRIPTION + "".join(f"| {status} | `{code}` | {text} |\n" for status, code, text in table)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Session Analytics Service", "version": "0.1.0", "description": description},
        "servers": [{"url": "/"}],
        "paths": _paths(),
        "components": _components(),
    }


SPEC: Schema = build_spec()
