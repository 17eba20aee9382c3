"""OpenAPI 3.1 description of the API and an offline docs page."""

from __future__ import annotations

from aiohttp import web

from web.jsonio import json_response

routes = web.RouteTableDef()

SPEC: dict = {"openapi": "3.1.0", "info": {"title": "Session Analytics Service", "version": "0.1.0"}, "paths": {}}


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(SPEC)
