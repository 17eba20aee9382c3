"""Test data: users of every role, two organizers' events, sessions with known numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.admin import create_event, create_user
from shared.db import Database
from shared.models import SessionIn
from shared.store import upsert_session

PASSWORD = "correct horse battery"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

USERS = {
    "super": ("super@example.com", "SUPER_ADMIN", [], []),
    "organizer": ("org@example.com", "ORGANIZER_ADMIN", [], ["org1"]),
    "event_admin": ("eventadmin@example.com", "EVENT_ADMIN", ["ev1"], []),
    "attendee": ("attendee@example.com", "ATTENDEE", [], []),
}


async def seed_world(db: Database) -> None:
    await create_event(db, "ev1", "org1", "Own Event")
    await create_event(db, "ev2", "org2", "Other Organizer's Event")
    for email, role, events, organizers in USERS.values():
        await create_user(db, email, PASSWORD, role, events, organizers)


async def add_session(
    db: Database,
    session_id: str,
    event_id: str = "ev1",
    *,
    title: str | None = None,
    start: datetime | None = None,
    session_format: str = "BREAKOUT_SESSION",
    provider: str | None = "YOUTUBE",
    video_id: str | None = "vid",
    numbers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    start = start or T0
    body = SessionIn(
        eventId=event_id,
        title=title or f"Session {session_id}",
        startTime=start,
        endTime=start + timedelta(hours=1),
        format=session_format,
        streamProvider=provider,
        videoId=video_id,
    )
    doc, _ = await upsert_session(db, session_id, body)
    if numbers:
        await db.sessions.update_one({"_id": session_id}, {"$set": numbers})
    return doc


async def login(client: Any, who: str) -> dict[str, str]:
    email = USERS[who][0]
    response = await client.post("/rest/u/login", json={"username": email, "password": PASSWORD})
    assert response.status == 200, await response.text()
    token = (await response.json())["access_token"]
    return {"Authorization": f"Bearer {token}"}
