"""Vimeo API 3.4: GET /videos/{id} with `fields=`, a bearer token and the versioned Accept header."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.settings import Settings
from worker.providers.base import (
    ERROR,
    LIVE,
    MISSING,
    OK,
    PROCESSING,
    Answer,
    CredentialsRejected,
    ProviderClient,
    VideoDuration,
    json_object,
)

ACCEPT = "application/vnd.vimeo.*+json;version=3.4"
# Asking only for these fields keeps answers small, and Vimeo grants a higher rate limit for it.
FIELDS = "uri,duration,status,type"
_IN_PROGRESS = frozenset({"uploading", "transcode_starting", "transcoding"})


def parse_video(body: dict[str, Any]) -> VideoDuration:
    """`duration` is whole seconds; 0 while a live event runs or the upload is not processed yet."""
    status = str(body.get("status") or "")
    duration = body.get("duration")
    if not isinstance(duration, int | float) or isinstance(duration, bool):
        return VideoDuration(ERROR, None, f"no duration in the answer (status {status or '?'})")
    if duration > 0 and status in ("available", ""):
        return VideoDuration(OK, float(duration))
    if status in _IN_PROGRESS:
        return VideoDuration(PROCESSING, None, f"status {status}")
    if status.endswith("_error") or status in ("unavailable", "quota_exceeded", "total_cap_exceeded"):
        return VideoDuration(ERROR, None, f"status {status}")
    if duration > 0:
        return VideoDuration(OK, float(duration))
    return VideoDuration(LIVE, None, f"{body.get('type') or 'video'} with duration 0")


class VimeoClient(ProviderClient):
    name = "VIMEO"

    def __init__(self, http: aiohttp.ClientSession, settings: Settings, **kwargs: Any) -> None:
        super().__init__(http, settings, **kwargs)
        self.base_url = settings.vimeo_api_url.rstrip("/")
        self._token = settings.vimeo_access_token

    def missing_credentials(self) -> list[str]:
        return [] if self._token and self._token.get_secret_value() else ["VIMEO_ACCESS_TOKEN"]

    async def fetch_batch(self, video_ids: Sequence[str]) -> dict[str, VideoDuration]:
        return {vid: await self._fetch_one(vid) for vid in video_ids}

    async def _fetch_one(self, video_id: str) -> VideoDuration:
        answer = await self.call(
            "GET",
            f"{self.base_url}/videos/{quote(video_id, safe='')}",
            params={"fields": FIELDS},
            headers={
                "Authorization": f"bearer {self._token.get_secret_value() if self._token else ''}",
                "Accept": ACCEPT,
            },
        )
        if answer.status == 200:
            return parse_video(json_object(self, answer, f"video {video_id}"))
        if answer.status == 404:
            return VideoDuration(MISSING, None, self.error_text(answer))
        if answer.status == 403:
            # The token is valid but may not see this (private) video: for us it is missing.
            return VideoDuration(MISSING, None, f"access denied: {self.error_text(answer)}")
        if answer.status == 401:
            raise CredentialsRejected(
                self.name,
                f"VIMEO_ACCESS_TOKEN was refused: {self.error_text(answer)}",
                http_status=401,
            )
        raise self.unexpected(answer, f"video {video_id}")

    def error_text(self, answer: Answer) -> str:
        body = answer.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            code = body.get("error_code")
            detail = body.get("developer_message") or body["error"]
            return f"{detail} (error_code {code})" if code is not None else str(detail)
        return super().error_text(answer)
