"""YouTube Data API v3: videos.list (part=contentDetails), 50 ids a call, API key as `key=`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from shared.settings import Settings
from worker.providers.base import (
    ERROR,
    LIVE,
    MISSING,
    OK,
    Answer,
    CredentialsRejected,
    ProviderClient,
    QuotaExceeded,
    TransientProviderError,
    UnexpectedAnswer,
    VideoDuration,
    json_object,
)

# The daily quota resets at midnight Pacific time.
PACIFIC = ZoneInfo("America/Los_Angeles")

_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)
_QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_KEY_REASONS = frozenset(
    {
        "keyInvalid",
        "keyExpired",
        "accessNotConfigured",
        "ipRefererBlocked",
        "API_KEY_INVALID",
        "API_KEY_SERVICE_BLOCKED",
        "SERVICE_DISABLED",
    }
)


def parse_iso8601_duration(text: str) -> float:
    """Seconds in a YouTube duration: PT15M33S, PT1H2M3S, P1DT2H3M4S, P0D, PT0S.

    Years and months are refused: their length in seconds is ambiguous, and YouTube never sends them.
    """
    match = _ISO_DURATION.fullmatch(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {
        key: float(value.replace(",", ".")) if value else 0.0 for key, value in match.groupdict().items()
    }
    return (
        parts["weeks"] * 604_800
        + parts["days"] * 86_400
        + parts["hours"] * 3_600
        + parts["minutes"] * 60
        + parts["seconds"]
    )


def next_quota_reset(now: datetime) -> datetime:
    """The next midnight in Pacific time (PST or PDT, as that day has it), in UTC."""
    tomorrow = now.astimezone(PACIFIC).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=PACIFIC).astimezone(UTC)


def _google_error(body: Any) -> tuple[str, str, set[str]]:
    """(message, domain of the first error, every reason named) of a Google error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", "", set()
    message = str(error.get("message") or "")
    reasons: set[str] = set()
    domain = ""
    for item in error.get("errors") or []:
        if isinstance(item, dict):
            reasons.add(str(item.get("reason") or ""))
            domain = domain or str(item.get("domain") or "")
    for item in error.get("details") or []:
        if isinstance(item, dict) and item.get("reason"):
            reasons.add(str(item["reason"]))
    return message, domain, reasons - {""}


class YouTubeClient(ProviderClient):
    name = "YOUTUBE"
    batch_size = 50

    def __init__(self, http: aiohttp.ClientSession, settings: Settings, **kwargs: Any) -> None:
        super().__init__(http, settings, **kwargs)
        self.base_url = settings.youtube_api_url.rstrip("/")
        self._api_key = settings.youtube_api_key

    def missing_credentials(self) -> list[str]:
        return [] if self._api_key and self._api_key.get_secret_value() else ["YOUTUBE_API_KEY"]

    async def fetch_batch(self, video_ids: Sequence[str]) -> dict[str, VideoDuration]:
        answer = await self.call(
            "GET",
            f"{self.base_url}/videos",
            params={
                "part": "contentDetails",
                "id": ",".join(video_ids),
                "key": self._api_key.get_secret_value() if self._api_key else "",
            },
            headers={"Accept": "application/json"},
        )
        if answer.status != 200:
            raise self._error(answer)
        return self.parse_videos(json_object(self, answer, "videos.list"), video_ids)

    def parse_videos(self, body: dict[str, Any], video_ids: Sequence[str]) -> dict[str, VideoDuration]:
        """Match items by id, not position: deleted, private and unknown ids are simply left out."""
        found: dict[str, VideoDuration] = {}
        for item in body.get("items") or []:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            raw = (item.get("contentDetails") or {}).get("duration")
            try:
                seconds = parse_iso8601_duration(raw) if isinstance(raw, str) else None
            except ValueError:
                seconds = None
            if seconds is None:
                found[item["id"]] = VideoDuration(ERROR, None, f"unreadable duration {raw!r}")
            elif seconds == 0:
                # Live and upcoming broadcasts report P0D / PT0S until they end.
                found[item["id"]] = VideoDuration(LIVE, None, f"live or upcoming ({raw})")
            else:
                found[item["id"]] = VideoDuration(OK, seconds)
        return {
            vid: found.get(vid, VideoDuration(MISSING, None, "not in videos.list items")) for vid in video_ids
        }

    def error_text(self, answer: Answer) -> str:
        message, domain, reasons = _google_error(answer.json())
        if message:
            return f"{message} ({domain}/{','.join(sorted(reasons))})"
        return super().error_text(answer)

    def _error(self, answer: Answer) -> Exception:
        message, _, reasons = _google_error(answer.json())
        text = self.error_text(answer)
        if reasons & _QUOTA_REASONS:
            until = next_quota_reset(datetime.now(UTC))
            return QuotaExceeded(
                self.name,
                f"daily quota exceeded; paused until {until.isoformat()}: {text}",
                paused_until=until,
                http_status=answer.status,
            )
        if reasons & _RATE_REASONS:
            return TransientProviderError(self.name, f"rate limited: {text}", http_status=answer.status)
        if (
            reasons & _KEY_REASONS
            or "API key" in message
            or (answer.status == 403 and "forbidden" in reasons)
        ):
            return CredentialsRejected(
                self.name, f"YOUTUBE_API_KEY was refused: {text}", http_status=answer.status
            )
        return UnexpectedAnswer(self.name, f"HTTP {answer.status}: {text}", http_status=answer.status)
