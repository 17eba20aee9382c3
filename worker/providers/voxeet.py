"""Dolby.io Communications (formerly Voxeet): a conference's recordings, durations in milliseconds."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.settings import Settings
from worker.providers.base import (
    LIVE,
    MISSING,
    OK,
    PROCESSING,
    Answer,
    CredentialsRejected,
    ProviderClient,
    UnexpectedAnswer,
    VideoDuration,
    json_object,
)

TOKEN_LIFETIME_S = 3600
TOKEN_RENEW_MARGIN_S = 60
PAGE_SIZE = 100
# A conference with more recordings than this is not a session video; stop paging.
MAX_PAGES = 20


def parse_recordings(pages: Sequence[dict[str, Any]]) -> VideoDuration:
    """A conference's video length: the sum of its recordings (ms), as they play one after another."""
    recordings = [rec for page in pages for rec in (page.get("recordings") or []) if isinstance(rec, dict)]
    live = any(bool(page.get("liveConference")) for page in pages)
    total_ms = 0.0
    for rec in recordings:
        value = rec.get("duration")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            total_ms += float(value)
    if live:
        # Recording may still be going on: what exists now is not the final length.
        return VideoDuration(LIVE, None, "conference still live")
    if not recordings:
        return VideoDuration(MISSING, None, "conference has no recordings")
    if total_ms <= 0:
        return VideoDuration(PROCESSING, None, "recordings without a duration yet")
    return VideoDuration(OK, total_ms / 1000.0)


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class DolbyClient(ProviderClient):
    name = "VOXEET"

    def __init__(self, http: aiohttp.ClientSession, settings: Settings, **kwargs: Any) -> None:
        super().__init__(http, settings, **kwargs)
        self.auth_url = settings.dolby_auth_url.rstrip("/")
        self.comms_url = settings.dolby_comms_api_url.rstrip("/")
        self._app_key = settings.dolby_app_key or ""
        self._app_secret = settings.dolby_app_secret
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    def missing_credentials(self) -> list[str]:
        missing = []
        if not self._app_key:
            missing.append("DOLBY_APP_KEY")
        if not (self._app_secret and self._app_secret.get_secret_value()):
            missing.append("DOLBY_APP_SECRET")
        return missing

    async def _access_token(self, stale: str | None = None) -> str:
        """A cached client-credentials token; one refresh at a time, however many batches wait."""
        async with self._token_lock:
            if self._token is not None and self._token[0] != stale and self._token[1] > time.time():
                return self._token[0]
            secret = self._app_secret.get_secret_value() if self._app_secret else ""
            answer = await self.call(
                "POST",
                f"{self.auth_url}/v1/auth/token",
                data={"grant_type": "client_credentials", "expires_in": str(TOKEN_LIFETIME_S)},
                headers={
                    "Authorization": _basic_auth(self._app_key, secret),
                    "Accept": "application/json",
                },
            )
            if answer.status in (400, 401, 403):
                raise CredentialsRejected(
                    self.name,
                    f"DOLBY_APP_KEY / DOLBY_APP_SECRET were refused: {self.error_text(answer)}",
                    http_status=answer.status,
                )
            if answer.status != 200:
                raise self.unexpected(answer, "the access token")
            body = json_object(self, answer, "the access token")
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                raise UnexpectedAnswer(self.name, "token answer without access_token")
            lifetime = body.get("expires_in")
            lifetime_s = float(lifetime) if isinstance(lifetime, int | float) else 600.0
            self._token = (token, time.time() + lifetime_s - TOKEN_RENEW_MARGIN_S)
            return token

    async def fetch_batch(self, video_ids: Sequence[str]) -> dict[str, VideoDuration]:
        return {vid: await self._fetch_one(vid) for vid in video_ids}

    async def _fetch_one(self, conference_id: str) -> VideoDuration:
        url = f"{self.comms_url}/v1/monitor/conferences/{quote(conference_id, safe='')}/recordings"
        pages: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = {"max": str(PAGE_SIZE)}
            if cursor:
                params["start"] = cursor
            answer = await self._get(url, params)
            if answer.status == 404:
                return VideoDuration(MISSING, None, self.error_text(answer))
            if answer.status != 200:
                raise self.unexpected(answer, f"conference {conference_id}")
            page = json_object(self, answer, f"conference {conference_id}")
            pages.append(page)
            cursor = page.get("next") or None
            if not cursor:
                break
        return parse_recordings(pages)

    async def _get(self, url: str, params: dict[str, str]) -> Answer:
        token = await self._access_token()
        answer = await self.call("GET", url, params=params, headers=self._headers(token))
        if answer.status == 401:
            # The token may have expired early (revoked, clock skew): one fresh token, one more try.
            token = await self._access_token(stale=token)
            answer = await self.call("GET", url, params=params, headers=self._headers(token))
        if answer.status in (401, 403):
            raise CredentialsRejected(
                self.name,
                f"the Dolby access token was refused: {self.error_text(answer)}",
                http_status=answer.status,
            )
        return answer

    @staticmethod
    def _headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def error_text(self, answer: Answer) -> str:
        body = answer.json()
        if isinstance(body, dict):
            reason = body.get("error_reason") or body.get("error") or ""
            description = body.get("error_description") or body.get("message") or ""
            code = body.get("error_code") or body.get("status")
            if reason or description:
                return f"{description or reason} ({reason or '?'}, {code})"
        return super().error_text(answer)
