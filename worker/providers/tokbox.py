"""Vonage Video API (formerly TokBox): an archive by id, with an RS256 application JWT."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt

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

JWT_LIFETIME_S = 300
# Renew a little before expiry so a token never expires between signing and arrival.
JWT_RENEW_MARGIN_S = 60
_FINISHED = frozenset({"available", "uploaded", "stopped", "expired"})


def application_jwt(application_id: str, private_key_pem: str, now: float | None = None) -> str:
    """The Vonage application JWT: RS256 over application_id, iat, exp, jti."""
    issued = int(now if now is not None else time.time())
    claims = {
        "application_id": application_id,
        "iat": issued,
        "exp": issued + JWT_LIFETIME_S,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, private_key_pem, algorithm="RS256")


def parse_archive(body: dict[str, Any]) -> VideoDuration:
    """`duration` is whole seconds and stays 0 while the archive is still recording."""
    status = str(body.get("status") or "")
    duration = body.get("duration")
    if status == "deleted":
        return VideoDuration(MISSING, None, "archive deleted")
    if status == "failed":
        return VideoDuration(ERROR, None, f"archive failed: {body.get('reason') or 'no reason given'}")
    if status in ("started", "paused"):
        return VideoDuration(LIVE, None, f"archive {status}")
    if not isinstance(duration, int | float) or isinstance(duration, bool):
        return VideoDuration(ERROR, None, f"no duration in the answer (status {status or '?'})")
    if status in _FINISHED and duration > 0:
        return VideoDuration(OK, float(duration))
    return VideoDuration(PROCESSING, None, f"archive {status or '?'} with duration {duration}")


class VonageVideoClient(ProviderClient):
    name = "TOKBOX"

    def __init__(self, http: aiohttp.ClientSession, settings: Settings, **kwargs: Any) -> None:
        super().__init__(http, settings, **kwargs)
        self.base_url = settings.vonage_video_api_url.rstrip("/")
        self._application_id = settings.vonage_application_id or ""
        self._private_key = settings.vonage_private_key
        self._jwt: tuple[str, float] | None = None

    def missing_credentials(self) -> list[str]:
        missing = []
        if not self._application_id:
            missing.append("VONAGE_APPLICATION_ID")
        if not (self._private_key and self._private_key.get_secret_value()):
            missing.append("VONAGE_PRIVATE_KEY")
        return missing

    def _bearer(self) -> str:
        now = time.time()
        if self._jwt is None or self._jwt[1] - JWT_RENEW_MARGIN_S <= now:
            key = self._private_key.get_secret_value() if self._private_key else ""
            try:
                token = application_jwt(self._application_id, key, now)
            except (ValueError, TypeError, jwt.PyJWTError) as err:
                raise CredentialsRejected(
                    self.name, f"VONAGE_PRIVATE_KEY is not a usable RSA private key: {err}"
                ) from err
            self._jwt = (token, now + JWT_LIFETIME_S)
        return self._jwt[0]

    async def fetch_batch(self, video_ids: Sequence[str]) -> dict[str, VideoDuration]:
        return {vid: await self._fetch_one(vid) for vid in video_ids}

    async def _fetch_one(self, archive_id: str) -> VideoDuration:
        url = (
            f"{self.base_url}/v2/project/{quote(self._application_id, safe='')}"
            f"/archive/{quote(archive_id, safe='')}"
        )
        answer = await self.call(
            "GET", url, headers={"Authorization": f"Bearer {self._bearer()}", "Accept": "application/json"}
        )
        if answer.status == 200:
            return parse_archive(json_object(self, answer, f"archive {archive_id}"))
        if answer.status == 404:
            return VideoDuration(MISSING, None, self.error_text(answer))
        if answer.status in (401, 403):
            raise CredentialsRejected(
                self.name,
                f"VONAGE_APPLICATION_ID / VONAGE_PRIVATE_KEY were refused: {self.error_text(answer)}",
                http_status=answer.status,
            )
        raise self.unexpected(answer, f"archive {archive_id}")

    def error_text(self, answer: Answer) -> str:
        body = answer.json()
        if isinstance(body, dict) and ("code" in body or "message" in body):
            return f"{body.get('message') or body.get('title') or ''} (code {body.get('code')})"
        return super().error_text(answer)
