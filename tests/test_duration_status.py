"""Rule 10: every durationStatus a host can see, reached through the duration sync and the fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.db import Database
from shared.duration_status import DURATION_STATUSES, duration_status
from shared.rules import FORMATS, FORMATS_WITHOUT_VIDEO, PROVIDERS, PROVIDERS_WITH_DURATION
from shared.settings import Settings
from tests.test_duration_sync import FAST, add_sessions, sessions_by_id
from worker.durations import sync_durations
from worker.providers.fakes import FakeProviders, run_fake_providers


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    async with run_fake_providers(retry_after_s=0) as running:
        yield running


def tuned(settings: Settings, fake: FakeProviders, **changes: Any) -> Settings:
    return settings.model_copy(update={**FAST, **fake.settings_overrides(), **changes})


async def statuses(db: Database, ids: list[str]) -> list[str]:
    docs = await sessions_by_id(db, ids)
    return [duration_status(docs[sid]) for sid in ids]


async def test_every_status_is_reached_through_the_sync_and_stored_as_shown(
    database: Database, settings: Settings, fake: FakeProviders
) -> None:
    fake.add("YOUTUBE", "done", 754.0)
    fake.add("YOUTUBE", "on-air", live=True)
    fake.add("VIMEO", "transcoding", status="transcoding")
    fake.add("WISTIA", "w1", 30.0)
    youtube = await add_sessions(database, "YOUTUBE", ["done", "on-air", "deleted"])
    vimeo = await add_sessions(database, "VIMEO", ["transcoding"])
    wistia = await add_sessions(database, "WISTIA", ["w1"])
    zoom = await add_sessions(database, "ZOOM", ["8123456789"])
    facebook = await add_sessions(database, "FACEBOOK", ["10155"])
    workshop = await add_sessions(
        database, "YOUTUBE", ["done"], prefix="workshop", session_format="WORKSHOP_SESSION"
    )
    networking = await add_sessions(
        database, "VIMEO", ["transcoding"], prefix="networking", session_format="NETWORKING_SESSION"
    )
    no_stream = await add_sessions(database, None, [None])
    no_video = await add_sessions(database, "VIMEO", [None], prefix="novideo")
    everything = youtube + vimeo + wistia + zoom + facebook + workshop + networking + no_stream + no_video

    assert set(await statuses(database, youtube + vimeo + wistia)) == {"PENDING"}

    await sync_durations(database, tuned(settings, fake, wistia_api_token=None))

    shown = dict(zip(everything, await statuses(database, everything), strict=True))
    assert [shown[sid] for sid in youtube] == ["KNOWN", "LIVE", "NOT_FOUND"]
    assert shown[vimeo[0]] == "PENDING"  # the provider has no final length yet
    assert shown[wistia[0]] == "NO_CREDENTIALS"
    assert [shown[zoom[0]], shown[facebook[0]]] == ["NOT_SUPPORTED", "NOT_SUPPORTED"]
    assert [shown[s] for s in workshop + networking + no_stream + no_video] == ["NO_VIDEO"] * 4
    # What the sync wrote is the status itself, for the sessions it asks about.
    docs = await sessions_by_id(database, youtube + vimeo + wistia)
    assert [docs[sid]["durationStatus"] for sid in youtube + vimeo + wistia] == [
        "KNOWN",
        "LIVE",
        "NOT_FOUND",
        "PENDING",
        "NO_CREDENTIALS",
    ]

    # An outage after its retries: PROVIDER_ERROR where no length was known, KNOWN where one was.
    fake.add("VIMEO", "transcoding", 600.0)
    fake.error_rate = 1.0
    await sync_durations(database, tuned(settings, fake), event_id="event-1", force=True)
    assert await statuses(database, vimeo + youtube[:2]) == ["PROVIDER_ERROR", "KNOWN", "PROVIDER_ERROR"]
    assert (await sessions_by_id(database, youtube[:1]))[youtube[0]]["duration"] == 754.0

    # The provider recovers: the next run finds the length.
    fake.error_rate = 0.0
    await sync_durations(database, tuned(settings, fake), event_id="event-1", force=True)
    assert await statuses(database, vimeo) == ["KNOWN"]
    assert set(await statuses(database, everything)) <= set(DURATION_STATUSES)


@pytest.mark.parametrize(
    ("session", "status"),
    [
        ({"streamProvider": None, "format": "MAINSTAGE_SESSION"}, "NO_VIDEO"),
        ({"streamProvider": "ZOOM", "format": "WORKSHOP_SESSION", "videoId": "z"}, "NO_VIDEO"),
        ({"streamProvider": "ZOOM", "format": "MAINSTAGE_SESSION", "videoId": "z"}, "NOT_SUPPORTED"),
        ({"streamProvider": "FACEBOOK", "format": "BREAKOUT_SESSION", "videoId": "f"}, "NOT_SUPPORTED"),
        ({"streamProvider": "VIMEO", "format": "MAINSTAGE_SESSION", "videoId": ""}, "NO_VIDEO"),
        ({"streamProvider": "VIMEO", "format": "MAINSTAGE_SESSION", "videoId": "v"}, "PENDING"),
        # Documents written before rule 10 carried the provider's answer words.
        ({"streamProvider": "VIMEO", "format": "MAINSTAGE_SESSION", "videoId": "v", "duration": 5.0,
          "durationStatus": "OK"}, "KNOWN"),
        ({"streamProvider": "VIMEO", "format": "MAINSTAGE_SESSION", "videoId": "v",
          "durationStatus": "MISSING"}, "NOT_FOUND"),
        ({"streamProvider": "WISTIA", "format": "MAINSTAGE_SESSION", "videoId": "v",
          "durationStatus": "WAITING_CREDENTIALS"}, "NO_CREDENTIALS"),
        ({"streamProvider": "TOKBOX", "format": "MAINSTAGE_SESSION", "videoId": "v",
          "durationStatus": "ERROR"}, "PROVIDER_ERROR"),
        ({"streamProvider": "TOKBOX", "format": "MAINSTAGE_SESSION", "videoId": "v",
          "durationStatus": "PROCESSING"}, "PENDING"),
        ({"streamProvider": "YOUTUBE", "format": "MAINSTAGE_SESSION", "videoId": "v",
          "durationStatus": "LIVE"}, "LIVE"),
    ],
)  # fmt: skip
def test_duration_status_of_a_stored_session(session: dict[str, Any], status: str) -> None:
    assert duration_status(session) == status


STORED = st.sampled_from(
    [None, "PENDING", "NONE", "OK", "LIVE", "MISSING", "ERROR", "PROCESSING", "WAITING_CREDENTIALS",
     "KNOWN", "NOT_FOUND", "NO_CREDENTIALS", "PROVIDER_ERROR", "something else"]
)  # fmt: skip


@given(
    provider=st.sampled_from([None, *PROVIDERS]),
    session_format=st.sampled_from(FORMATS),
    video_id=st.sampled_from([None, "", "v1"]),
    duration=st.sampled_from([None, 0.0, 754.0]),
    stored=STORED,
)
def test_what_the_session_is_decides_before_what_was_stored(
    provider: str | None,
    session_format: str,
    video_id: str | None,
    duration: float | None,
    stored: str | None,
) -> None:
    session = {
        "streamProvider": provider,
        "format": session_format,
        "videoId": video_id,
        "duration": duration,
        "durationStatus": stored,
    }
    status = duration_status(session)
    assert status in DURATION_STATUSES
    if (
        provider is None
        or session_format in FORMATS_WITHOUT_VIDEO
        or (provider in PROVIDERS_WITH_DURATION and not video_id)
    ):
        assert status == "NO_VIDEO"
    elif provider in ("ZOOM", "FACEBOOK"):
        assert status == "NOT_SUPPORTED"
    elif duration is not None:
        assert status == "KNOWN"
    else:
        assert status in ("PENDING", "LIVE", "NOT_FOUND", "NO_CREDENTIALS", "PROVIDER_ERROR")
