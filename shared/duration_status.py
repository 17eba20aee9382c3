"""Why a session's duration is what it is (DESIGN §4 rule 10), from its stored fields alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from shared.rules import FORMATS_WITHOUT_VIDEO, PROVIDERS_WITH_DURATION

KNOWN: Final = "KNOWN"  # the duration came from the provider
NO_VIDEO: Final = "NO_VIDEO"  # a WORKSHOP/NETWORKING session, no stream, or no video reference
NOT_SUPPORTED: Final = "NOT_SUPPORTED"  # ZOOM, FACEBOOK: no provider to ask
PENDING: Final = "PENDING"  # not asked yet, or the provider has no final length yet (processing)
LIVE: Final = "LIVE"  # the provider says the video is live; asked again later
NOT_FOUND: Final = "NOT_FOUND"  # the provider says there is no such video
NO_CREDENTIALS: Final = "NO_CREDENTIALS"  # the provider is not configured
PROVIDER_ERROR: Final = "PROVIDER_ERROR"  # the last attempt failed after its retries; asked again later

DURATION_STATUSES: Final = (
    KNOWN,
    NO_VIDEO,
    NOT_SUPPORTED,
    PENDING,
    LIVE,
    NOT_FOUND,
    NO_CREDENTIALS,
    PROVIDER_ERROR,
)

# What documents written before rule 10 carry in `durationStatus`: read as the status they meant.
_EARLIER_NAMES: Final = {
    "OK": KNOWN,
    "MISSING": NOT_FOUND,
    "ERROR": PROVIDER_ERROR,
    "PROCESSING": PENDING,
    "WAITING_CREDENTIALS": NO_CREDENTIALS,
    "NONE": NO_VIDEO,
}

__all__ = ["DURATION_STATUSES", "duration_status", *DURATION_STATUSES]


def duration_status(session: Mapping[str, object]) -> str:
    """The rule 10 status of a session document (`streamProvider`, `format`, `videoId`,
    `duration` and the `durationStatus` the duration sync wrote).

    What the session is decides first: without a video to measure the status is NO_VIDEO or
    NOT_SUPPORTED whatever was stored. Then a stored duration is KNOWN, even when a later
    attempt failed or found the video processing again (the sync keeps the last good length).
    Otherwise the sync's last word, PENDING when it has not spoken yet.
    """
    provider = session.get("streamProvider")
    if provider is None or session.get("format") in FORMATS_WITHOUT_VIDEO:
        return NO_VIDEO
    if provider not in PROVIDERS_WITH_DURATION:
        return NOT_SUPPORTED
    if not session.get("videoId"):
        return NO_VIDEO
    if session.get("duration") is not None:
        return KNOWN
    stored = session.get("durationStatus")
    stored = _EARLIER_NAMES.get(stored, stored) if isinstance(stored, str) else None
    if stored in (LIVE, NOT_FOUND, NO_CREDENTIALS, PROVIDER_ERROR):
        return stored
    # KNOWN without a duration cannot be stored by the sync; anything else was never answered.
    return PENDING
