"""GET /host/: the host dashboard page (DESIGN §7) and its assets, all shipped in the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal, get_args

from aiohttp import web
from pydantic import BaseModel

routes = web.RouteTableDef()

# Every script and style is a file of the package: nothing inline, nothing from another origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
ASSETS = Path(str(resources.files("web").joinpath("static/host")))

# The page's own script and style, and the charting library (uPlot) with its licence.
HostAsset = Literal["app.js", "live.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE"]
HOST_ASSETS: tuple[str, ...] = get_args(HostAsset)
_FILES = {name: ASSETS / ("vendor/" + name if name.startswith("uPlot") else name) for name in HOST_ASSETS}


class HostAssetPath(BaseModel):
    asset: HostAsset


@routes.get("/host/")
async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(ASSETS / "index.html", headers={**_HEADERS, "Cache-Control": "no-cache"})


@routes.get("/host/assets/{asset}")
async def dashboard_asset(request: web.Request) -> web.FileResponse:
    path = _FILES.get(request.match_info["asset"])
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={**_HEADERS, "Cache-Control": "no-cache"})
