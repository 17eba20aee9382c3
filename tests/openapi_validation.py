"""Checks that an HTTP answer is one the OpenAPI document describes: status, headers and body."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import StrOrURL
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:session-analytics:openapi"
UNMATCHED_STATUSES = {404: "NoSuchRoute", 405: "MethodNotAllowed"}
_PARAM = re.compile(r"^\{[^{}/]+\}$")


class OpenAPIMismatch(AssertionError):
    """An answer the OpenAPI document does not describe."""


@dataclass(frozen=True, slots=True)
class Operation:
    template: str
    method: str
    pointer: str  # JSON pointer of the operation object inside the document
    spec: dict[str, Any]


def escape(segment: str) -> str:
    """One JSON-pointer segment, percent-encoded for use in a URI fragment."""
    return quote(segment.replace("~", "~0").replace("/", "~1"), safe="~")


def _pointer_join(pointer: str, *segments: str) -> str:
    return pointer + "".join("/" + escape(s) for s in segments)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _excerpt(body: bytes, limit: int = 600) -> str:
    text = body.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "…"


class OpenAPIValidator:
    """Finds the operation a request reached and checks the answer against what it documents."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
        self._templates = [(template, template.strip("/").split("/")) for template in spec.get("paths", {})]
        self._validators: dict[str, Draft202012Validator] = {}

    # -- finding things in the document ------------------------------------------------------

    def resolve(self, pointer: str) -> tuple[str, Any]:
        """The object at a JSON pointer, following OpenAPI `$ref`s; and where it really is."""
        for _ in range(20):
            node: Any = self.spec
            for raw in pointer.lstrip("/").split("/") if pointer else []:
                key = unquote(raw).replace("~1", "/").replace("~0", "~")
                node = node[int(key)] if isinstance(node, list) else node[key]
            if isinstance(node, dict) and isinstance(node.get("$ref"), str):
                ref = node["$ref"]
                if not ref.startswith("#/"):
                    raise OpenAPIMismatch(f"only local $refs are supported, found {ref!r}")
                pointer = ref[1:]
                continue
            return pointer, node
        raise OpenAPIMismatch(f"$ref loop at {pointer}")

    def candidates(self, path: str) -> list[str]:
        """Path templates matching a concrete path, literal segments preferred over parameters."""
        segments = [unquote(s) for s in path.strip("/").split("/")]
        found: list[tuple[tuple[int, ...], str]] = []
        for template, parts in self._templates:
            if len(parts) != len(segments):
                continue
            rank: list[int] = []
            for part, segment in zip(parts, segments, strict=True):
                if _PARAM.match(part):
                    if not segment:
                        break
                    rank.append(1)
                elif part == segment:
                    rank.append(0)
                else:
                    break
            else:
                found.append((tuple(rank), template))
        return [template for _, template in sorted(found)]

    def find_operation(self, method: str, path: str) -> Operation | None:
        method = method.lower()
        for template in self.candidates(path):
            item_pointer = _pointer_join("", "paths", template)
            _, item = self.resolve(item_pointer)
            if method in item:
                op_pointer = _pointer_join(item_pointer, method)
                return Operation(template, method.upper(), op_pointer, item[method])
        return None

    def schema_validator(self, pointer: str) -> Draft202012Validator:
        validator = self._validators.get(pointer)
        if validator is None:
            validator = Draft202012Validator(
                {"$ref": f"{SPEC_URI}#{pointer}"},
                registry=self.registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
            self._validators[pointer] = validator
        return validator

    # -- checking an answer ------------------------------------------------------------------

    def validate(
        self,
        method: str,
        path: str,
        status: int,
        content_type: str | None,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Raise OpenAPIMismatch unless the document describes this answer to this request."""
        where = f"{method.upper()} {path} -> {status}"
        operation = self.find_operation(method, path)
        if operation is None:
            name = UNMATCHED_STATUSES.get(status)
            if name is None:
                known = self.candidates(path)
                raise OpenAPIMismatch(
                    f"{where}: no documented operation for this method and path "
                    f"(templates of this path: {known or 'none'}); only a 404 or 405 error "
                    f"envelope may answer it. Body: {_excerpt(body)}"
                )
            response_pointer = f"/components/responses/{name}"
            self._check_response(where, method, response_pointer, content_type, body, headers)
            return
        where = f"{where} (documented as {operation.method} {operation.template})"
        responses = operation.spec.get("responses", {})
        if str(status) not in responses:
            raise OpenAPIMismatch(
                f"{where}: status {status} is not documented; documented: "
                f"{sorted(responses)}. Body: {_excerpt(body)}"
            )
        response_pointer = _pointer_join(operation.pointer, "responses", str(status))
        self._check_response(where, method, response_pointer, content_type, body, headers)

    def _check_response(
        self,
        where: str,
        method: str,
        response_pointer: str,
        content_type: str | None,
        body: bytes,
        headers: Mapping[str, str] | None,
    ) -> None:
        response_pointer, response = self.resolve(response_pointer)
        if headers is not None:
            self._check_headers(where, response_pointer, response, headers)
        content = response.get("content")
        if method.upper() == "HEAD" or not content:
            if body:
                raise OpenAPIMismatch(f"{where}: no body is documented but one came: {_excerpt(body)}")
            return
        media_type = _media_type(content_type)
        if media_type not in content:
            raise OpenAPIMismatch(
                f"{where}: Content-Type {content_type!r} is not documented; documented: {sorted(content)}"
            )
        schema_pointer = _pointer_join(response_pointer, "content", media_type, "schema")
        if _is_json(media_type):
            try:
                instance = json.loads(body)
            except ValueError as err:
                problem = f"{where}: body is not JSON ({err}): {_excerpt(body)}"
                raise OpenAPIMismatch(problem) from err
        else:
            try:
                instance = body.decode("utf-8")
            except UnicodeDecodeError as err:
                raise OpenAPIMismatch(f"{where}: {media_type} body is not UTF-8 text") from err
        self._check_schema(where, schema_pointer, instance, body)

    def _check_headers(
        self,
        where: str,
        response_pointer: str,
        response: dict[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        present = {name.lower(): value for name, value in headers.items()}
        for name in response.get("headers", {}):
            header_pointer, header = self.resolve(_pointer_join(response_pointer, "headers", name))
            value = present.get(name.lower())
            if value is None:
                if header.get("required"):
                    raise OpenAPIMismatch(f"{where}: documented header {name} is missing")
                continue
            schema = header.get("schema", {})
            instance: Any = value
            if schema.get("type") == "integer" and value.strip().isdigit():
                instance = int(value)
            self._check_schema(
                f"{where}, header {name}", _pointer_join(header_pointer, "schema"), instance, None
            )

    def _check_schema(self, where: str, pointer: str, instance: Any, body: bytes | None) -> None:
        found = self.schema_validator(pointer).iter_errors(instance)
        errors = sorted(found, key=lambda e: [str(p) for p in e.absolute_path])
        if not errors:
            return
        lines = []
        for err in errors[:10]:
            at = "/".join(str(p) for p in err.absolute_path) or "(root)"
            lines.append(f"  at {at}: {err.message}")
        more = f"\n  … and {len(errors) - 10} more" if len(errors) > 10 else ""
        shown = f"\nBody: {_excerpt(body)}" if body is not None else ""
        raise OpenAPIMismatch(
            f"{where}: does not match the schema at #{pointer}:\n" + "\n".join(lines) + more + shown
        )


@cache
def app_validator() -> OpenAPIValidator:
    """A validator of the document the app serves at /openapi.json."""
    from web.openapi import SPEC

    return OpenAPIValidator(SPEC)


def validate_every_answer(client: TestClient) -> TestClient:
    """Make every request through this test client check its answer against the document.

    The body is read here, before the test sees the response; aiohttp keeps it, so the test's own
    `.json()`, `.text()` and `.read()` work as usual. A mismatch fails the request with
    OpenAPIMismatch.
    """
    validator = app_validator()
    send = client._request

    async def _request(method: str, path: StrOrURL, **kwargs: Any) -> ClientResponse:
        response = await send(method, path, **kwargs)
        body = await response.read()
        validator.validate(
            response.method,
            response.url.raw_path,
            response.status,
            response.headers.get("Content-Type"),
            body,
            response.headers,
        )
        return response

    client._request = _request  # type: ignore[method-assign]
    return client
