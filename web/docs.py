"""Serves /openapi.json and /docs: Swagger UI from its package, offline, on this document."""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib import resources
from pathlib import Path

from aiohttp import web

from shared.errors import NotFound
from web.contract.docs import DOCS_ASSETS
from web.jsonio import dumps
from web.openapi import SPEC

routes = web.RouteTableDef()
SWAGGER_UI_ASSETS = tuple(name for name in DOCS_ASSETS if name != "docs.js")
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MEDIA = {".css": "text/css", ".js": "text/javascript", ".html": "text/html"}


def swagger_ui_dist() -> Path:
    """Swagger UI's files as the `flask-swagger-ui` distribution ships them (Flask is not imported)."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


@cache
def _asset(name: str) -> tuple[bytes, str]:
    if name in SWAGGER_UI_ASSETS:
        path = swagger_ui_dist() / name
        body = path.read_bytes()
    else:
        body = resources.files("web").joinpath(f"static/{name}").read_bytes()
    return body, MEDIA.get(Path(name).suffix, "text/plain")


@cache
def _spec_body() -> bytes:
    return dumps(SPEC)


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_spec_body(), content_type="application/json")


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    body, media = _asset("docs.html")
    return web.Response(
        body=body, content_type=media, charset="utf-8", headers={"Content-Security-Policy": POLICY}
    )


@routes.get("/docs/{asset}")
async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in DOCS_ASSETS:
        raise NotFound(f"no docs asset {name[:64]}")
    body, media = _asset(name)
    return web.Response(body=body, content_type=media, headers={"Cache-Control": "public, max-age=3600"})
