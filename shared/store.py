"""Writes that both web and worker make to session and event documents."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import DatetimeMS
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.db import Database
from shared.documents import SessionDoc
from shared.errors import BadRequest
from shared.models import SessionIn
from shared.rules import SessionNumbers, has_provider_duration, session_numbers

# Kinds of rollup-inbox batches (written by ingestion, read by rollups).
INBOX_SEGMENT = "S"
INBOX_REGISTRATION = "R"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def now() -> datetime:
    return datetime.now(UTC)


def epoch_ms(moment: datetime | DatetimeMS) -> int:
    """Stored times are whole milliseconds: integer unions stay exact until one final division.

    A datetime counts as BSON stores it (whole milliseconds, rounded down); the recompute reads
    segment times as milliseconds (`DatetimeMS`), never building datetimes."""
    if isinstance(moment, datetime):
        return (moment - EPOCH) // _MS
    return int(moment)


def from_epoch_ms(ms: int) -> datetime:
    return EPOCH + ms * _MS


def numbers_fields(numbers: SessionNumbers) -> dict[str, object]:
    """The `$set` a rollup makes: computed values, never increments."""
    return {
        "registeredUserCount": numbers.registered_user_count,
        "attendeeCount": numbers.attendee_count,
        "avgAttendedDuration": numbers.avg_attended_duration,
        "liveViews": numbers.live_views,
        "recordingViews": numbers.recording_views,
        "watchTime": {
            "total": numbers.watch_total,
            "live": numbers.watch_live,
            "recording": numbers.watch_recording,
        },
        "avgLiveWatch": numbers.avg_live_watch,
        "avgRecordingWatch": numbers.avg_recording_watch,
        "engagementLive": numbers.engagement_live,
        "engagementRecording": numbers.engagement_recording,
        "attendeeRows": len(numbers.attendee_rows),
    }


def duration_source(stream_provider: str | None, session_format: str | None) -> str | None:
    """The provider to ask for this session's duration, or None when it has none by rule."""
    return stream_provider if has_provider_duration(stream_provider, session_format) else None


def session_duration(session: SessionDoc) -> float | None:
    """A stored session's duration under rule 8: null when its video has none by rule."""
    if duration_source(session.get("streamProvider"), session.get("format")) is None:
        return None
    return session.get("duration")


async def bump_analytics_version(db: Database, event_ids: Iterable[str]) -> None:
    """Tell readers (and their caches) that numbers of these events changed. Call after writing."""
    ids = sorted(set(event_ids))
    if ids:
        await db.events.update_many(
            {"_id": {"$in": ids}}, {"$inc": {"analyticsVersion": 1}, "$set": {"analyticsChangedAt": now()}}
        )


async def mark_for_rollup(db: Database, event_id: str, session_ids: Iterable[str]) -> None:
    """Flag sessions whose duration or video changed (new attendance is flagged by the inbox);
    the version lets a running rollup notice a change that arrived while it worked."""
    ids = sorted(set(session_ids))
    if ids:
        await db.sessions.update_many(
            {"_id": {"$in": ids}, "eventId": event_id},
            {"$inc": {"rollupVersion": 1}, "$set": {"rollupPending": True}},
        )


async def upsert_session(db: Database, session_id: str, body: SessionIn) -> tuple[SessionDoc, bool]:
    """Create or update a session; a changed video resets its duration and schedules a rollup."""
    existing = await db.sessions.find_one({"_id": session_id})
    if existing is not None and existing["eventId"] != body.eventId:
        raise BadRequest(f"session {session_id} belongs to another event; eventId cannot change")
    query, update = session_upsert(session_id, body, existing)
    try:
        doc = await db.sessions.find_one_and_update(
            query, update, upsert=True, return_document=ReturnDocument.AFTER
        )
    except DuplicateKeyError as err:
        raise BadRequest(f"session {session_id} belongs to another event") from err
    await bump_analytics_version(db, [body.eventId])
    return doc, existing is None


def session_upsert(
    session_id: str, body: SessionIn, existing: SessionDoc | None
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The filter and update (with upsert) that write `body` over the stored `existing` session.

    Shared by the single PUT and the bulk import, so both write the same document.
    """
    fields: dict[str, Any] = body.model_dump(mode="python")
    update: dict[str, dict[str, Any]] = {"$set": fields}
    video = (body.streamProvider, body.videoId, body.format)
    if (
        existing is None
        or (existing.get("streamProvider"), existing.get("videoId"), existing.get("format")) != video
    ):
        source = duration_source(body.streamProvider, body.format) if body.videoId else None
        fields.update(
            duration=None,
            durationProvider=source,
            durationCheckAt=now(),
            durationStatus="PENDING" if source else "NONE",
            rollupPending=True,
        )
        update["$inc"] = {"rollupVersion": 1}
    elif existing.get("startTime") != body.startTime:
        # The viewers series' buckets are aligned on the start time (rule 9): rebuild it.
        fields["rollupPending"] = True
        update["$inc"] = {"rollupVersion": 1}
    if existing is None:
        fields["createdAt"] = now()
        update["$setOnInsert"] = {
            **numbers_fields(session_numbers([], {}, None, body.streamProvider)),
            "analyticsUpdatedAt": None,
        }
    return {"_id": session_id, "eventId": body.eventId}, update
