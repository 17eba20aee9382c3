"""Every answer a test receives, checked against /openapi.json by openapi-core."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import StrOrURL
from openapi_core import Config, OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse

from web.contract.common import ErrorEnvelope

HOST = "http://127.0.0.1"


@cache
def document() -> OpenAPI:
    from web.openapi import SPEC

    text: dict[str, Callable[[bytes], Any]] = {
        media: _text for media in ("text/csv", "text/plain", "text/html", "text/*", "text/event-stream")
    }
    return OpenAPI.from_dict(SPEC, config=Config(extra_media_type_deserializers=text))


C = TypeVar("C", bound=TestClient[Any, Any])


def _text(body: bytes, **parameters: str) -> str:
    return body.decode("utf-8", errors="replace")  # a file route may answer any bytes


def check_answer(method: str, raw_path: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """Raise when the document does not describe this answer (openapi-core's own errors)."""
    path, _, query = raw_path.partition("?")
    request = MockRequest(HOST, method, path, args=_query_args(query))
    media = headers.get("Content-Type", "")
    response = MockResponse(body, status_code=status, headers=headers, content_type=media)
    if status == 405:  # the router's answer, before any operation: MethodNotAllowed
        assert "Allow" in headers, f"{method} {path}: 405 without Allow"
        ErrorEnvelope.model_validate_json(body)
        return
    try:
        document().validate_response(request, response)
    except (PathNotFound, OperationNotFound):
        # Paths outside the document: only the NoSuchRoute answer.
        assert status == 404, f"{method} {path} is not documented, yet answered {status}"
        ErrorEnvelope.model_validate_json(body)


def _query_args(query: str) -> dict[str, Any]:
    from urllib.parse import parse_qsl

    args: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        args.setdefault(name, value)
    return args


def validate_every_answer(client: C) -> C:
    """Make every request through this test client check its answer against the document.

    aiohttp keeps the body read here, so the test's own `.json()`, `.text()` and `.read()` work.
    """
    send = client._request

    async def _request(method: str, path: StrOrURL, **kwargs: Any) -> ClientResponse:
        response = await send(method, path, **kwargs)
        body = await response.read()
        check_answer(response.method, response.url.raw_path_qs, response.status, dict(response.headers), body)
        return response

    client._request = _request  # type: ignore[method-assign]
    return client
