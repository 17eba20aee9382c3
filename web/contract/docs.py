"""The docs page's assets: Swagger UI's files (from its package) and the page's own script."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel

DocsAsset = Literal["swagger-ui.css", "swagger-ui-bundle.js", "docs.js", "LICENSE"]
DOCS_ASSETS: tuple[str, ...] = get_args(DocsAsset)


class DocsAssetPath(BaseModel):
    asset: DocsAsset
