"""Test data: users of every role, two organizers' events, sessions with known numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from shared.admin import create_event, create_user
from shared.db import Database
from shared.documents import SessionDoc
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


D = TypeVar("D")


def found(document: D | None) -> D:
    """The document a read found: the test fails here, not on a later `None[...]`, when none was."""
    assert document is not None, "no such document"
    return document


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
) -> SessionDoc:
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


def cheap_password_hashing(monkeypatch: Any) -> None:
    """argon2id at its smallest cost: login runs the same code, a hash takes microseconds."""
    from argon2 import PasswordHasher

    import shared.security

    monkeypatch.setattr(shared.security, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


async def app_client(
    aiohttp_client: Any, settings: Any, database: Database, task_queue: Any, **changes: Any
) -> Any:
    """A client of the real app with some settings changed, e.g. login_throttle_per_minute."""
    from tests.contract import validate_every_answer
    from web.app import create_app

    app = create_app(settings.model_copy(update=changes), database=database, task_queue=task_queue)
    return validate_every_answer(await aiohttp_client(app))


async def clone_sessions(db: Database, template_id: str, count: int, *, prefix: str = "bulk") -> list[str]:
    """`count` copies of a stored session (as PUT stored it), each a minute later than the last,
    inserted in one write: many sessions without `count` round trips of upsert_session."""
    template = await db.sessions.find_one({"_id": template_id})
    assert template is not None
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    await db.sessions.insert_many(
        [
            {
                **template,
                "_id": session_id,
                "title": f"{template['title']} {i:05d}",
                "startTime": template["startTime"] + timedelta(minutes=i + 1),
            }
            for i, session_id in enumerate(ids)
        ]
    )
    return ids


async def database_state(db: Database, skip: tuple[str, ...] = ("login_attempts",)) -> dict[str, list[Any]]:
    """Every document of every collection (but `skip`), for "this request wrote nothing" checks."""
    state: dict[str, list[Any]] = {}
    for name in sorted(await db.db.list_collection_names()):
        if name not in skip:
            docs = await db[name].find({}).to_list(length=None)
            state[name] = sorted(docs, key=lambda doc: str(doc["_id"]))
    return state


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ERROR_KEYS = {"errorCode", "errorMessage", "developerMessage", "requestId"}


async def error_of(response: Any) -> tuple[int, str]:
    """(status, errorCode) of an error answer, after checking it is the JSON envelope."""
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["requestId"] == response.headers["X-Request-Id"]
    return response.status, body["errorCode"]


async def ingest_headers(db: Database, event_ids: list[str] | None = None) -> dict[str, str]:
    """The Authorization header of a new ingest key for these events (None: every event)."""
    from shared.admin import create_ingest_key

    return {"Authorization": f"Bearer {await create_ingest_key(db, event_ids)}"}


def iso_utc(moment: datetime) -> str:
    """A time as the ingestion API takes it: UTC, `Z`, milliseconds when there are some."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    ms = moment.microsecond // 1000
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def watch_segment(
    segment_id: str,
    session_id: str = "s1",
    user_id: str = "u1",
    *,
    mode: str = "LIVE",
    start: datetime | None = None,
    seconds: float = 60.0,
) -> dict[str, Any]:
    """One watch segment as posted to /rest/events/{eventId}/watch-segments."""
    start = start or T0
    return {
        "segmentId": segment_id,
        "sessionId": session_id,
        "userId": user_id,
        "mode": mode,
        "start": iso_utc(start),
        "end": iso_utc(start + timedelta(seconds=seconds)),
    }


def registration(session_id: str = "s1", user_id: str = "u1", at: datetime | None = None) -> dict[str, Any]:
    """One registration as posted to /rest/events/{eventId}/registrations."""
    return {"sessionId": session_id, "userId": user_id, "registeredAt": iso_utc(at or T0 - timedelta(days=1))}


# A valid body for PUT /rest/host/session/{sessionId}, which input tests vary one field at a time.
GOOD_BODY = {
    "eventId": "ev1",
    "title": "Opening",
    "startTime": "2024-05-01T09:00:00Z",
    "endTime": "2024-05-01T10:00:00Z",
    "format": "MAINSTAGE_SESSION",
    "streamProvider": "YOUTUBE",
    "videoId": "dQw4w9WgXcQ",
}
