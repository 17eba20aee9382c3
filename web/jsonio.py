"""JSON in and out: orjson bodies, strict parsing of request bodies, ETags."""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from shared.errors import BadRequest, PayloadTooLarge
from shared.models import describe_validation_error

M = TypeVar("M", bound=BaseModel)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer without a contract model; every documented route answers with an
    `web.contract` model instead (`Answer.response`), so its shape is the document's."""
    return web.Response(body=dumps(value), status=status, content_type="application/json", headers=headers)


async def read_json(request: web.Request) -> Any:
    """The parsed body; BadRequest when it is missing, too large or not JSON."""
    if request.content_type not in ("application/json", "", "text/plain"):
        raise BadRequest(f"Content-Type must be application/json, got {request.content_type}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise PayloadTooLarge(f"body over the limit of {request.client_max_size} bytes") from err
    if not raw:
        raise BadRequest("a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"body is not valid JSON: {err}") from err


def parse_model(model: type[M], value: Any) -> M:
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise BadRequest(describe_validation_error(err)) from err


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def if_none_match(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates


def conditional_json(request: web.Request, body: bytes, etag: str) -> web.Response:
    """200 with the body, or 304 when the client already holds this ETag."""
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
