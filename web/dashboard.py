"""GET /host/: the host dashboard page (DESIGN §7) and its assets, all shipped in the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

routes = web.RouteTableDef()

# Every script and style is a file of the package: nothing inline, nothing from another origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
ASSETS = Path(str(resources.files("web").joinpath("static/host")))


@routes.get("/host/")
async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(ASSETS / "index.html", headers={**_HEADERS, "Cache-Control": "no-cache"})


@routes.get("/host/assets/{path:(vendor/)?[A-Za-z0-9_.-]+}")
async def dashboard_asset(request: web.Request) -> web.FileResponse:
    """The page's scripts, styles, and the charting library with its licence."""
    path = ASSETS / request.match_info["path"]
    if path.name == "index.html" or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={**_HEADERS, "Cache-Control": "no-cache"})
