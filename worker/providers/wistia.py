"""Wistia Data API: GET /v1/medias/{hashed_id}.json with a bearer token; duration in seconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.settings import Settings
from worker.providers.base import (
    ERROR,
    MISSING,
    OK,
    PROCESSING,
    CredentialsRejected,
    ProviderClient,
    VideoDuration,
    json_object,
)


def parse_media(body: dict[str, Any]) -> VideoDuration:
    """A media is final once `ready`; queued and processing media are asked again soon."""
    status = str(body.get("status") or "")
    duration = body.get("duration")
    if status in ("queued", "processing"):
        return VideoDuration(PROCESSING, None, f"media {status}")
    if status == "failed":
        return VideoDuration(ERROR, None, "media processing failed")
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0:
        return VideoDuration(OK, float(duration))
    return VideoDuration(ERROR, None, f"{body.get('type') or 'media'} without a duration")


class WistiaClient(ProviderClient):
    name = "WISTIA"

    def __init__(self, http: aiohttp.ClientSession, settings: Settings, **kwargs: Any) -> None:
        super().__init__(http, settings, **kwargs)
        self.base_url = settings.wistia_api_url.rstrip("/")
        self._token = settings.wistia_api_token

    def missing_credentials(self) -> list[str]:
        return [] if self._token and self._token.get_secret_value() else ["WISTIA_API_TOKEN"]

    async def fetch_batch(self, video_ids: Sequence[str]) -> dict[str, VideoDuration]:
        return {vid: await self._fetch_one(vid) for vid in video_ids}

    async def _fetch_one(self, hashed_id: str) -> VideoDuration:
        answer = await self.call(
            "GET",
            f"{self.base_url}/v1/medias/{quote(hashed_id, safe='')}.json",
            headers={
                "Authorization": f"Bearer {self._token.get_secret_value() if self._token else ''}",
                "Accept": "application/json",
            },
        )
        if answer.status == 200:
            return parse_media(json_object(self, answer, f"media {hashed_id}"))
        if answer.status == 404:
            return VideoDuration(MISSING, None, self.error_text(answer))
        if answer.status in (401, 403):
            raise CredentialsRejected(
                self.name,
                f"WISTIA_API_TOKEN was refused: {self.error_text(answer)}",
                http_status=answer.status,
            )
        raise self.unexpected(answer, f"media {hashed_id}")
