"""Provider clients against the fakes and canned real-shaped answers: requests, parsing, errors, retries."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from shared.settings import Settings
from worker.providers import build_clients
from worker.providers.base import (
    ERROR,
    LIVE,
    MISSING,
    OK,
    PROCESSING,
    CredentialsRejected,
    ProviderClient,
    QuotaExceeded,
    Throttled,
    VideoDuration,
    rate_limit_wait_s,
)
from worker.providers.fakes import FakeProviders, FakeVideo, iso8601_duration, run_fake_providers
from worker.providers.youtube import next_quota_reset, parse_iso8601_duration

FAST = {
    "provider_backoff_base_s": 0.001,
    "provider_backoff_cap_s": 0.05,
    "provider_timeout_s": 2.0,
    "provider_max_retries": 4,
}


def client_settings(fake: FakeProviders | None = None, **changes: Any) -> Settings:
    overrides = fake.settings_overrides() if fake is not None else {}
    return Settings(mongodb_url="mem:///unused").model_copy(update={**FAST, **overrides, **changes})


@asynccontextmanager
async def clients_for(settings: Settings) -> AsyncIterator[dict[str, ProviderClient]]:
    async with aiohttp.ClientSession() as http:
        yield build_clients(settings, http)


async def fetch(
    settings: Settings, provider: str, ids: Iterable[str]
) -> tuple[dict[str, VideoDuration], ProviderClient, Any]:
    async with clients_for(settings) as clients:
        client = clients[provider]
        outcome = await client.fetch_durations(ids)
        return outcome.durations, client, outcome


# --- pure parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT15M33S", 933.0),
        ("PT1H2M3S", 3723.0),
        ("P1DT2H3M4S", 93_784.0),
        ("P1D", 86_400.0),
        ("PT45S", 45.0),
        ("PT2H", 7200.0),
        ("PT1.5S", 1.5),
        ("P0D", 0.0),
        ("PT0S", 0.0),
        ("P1W", 604_800.0),
    ],
)
def test_iso8601_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_iso8601_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "15M", "PT1H2X", "P1Y", "P2M", "-PT5S"])
def test_malformed_or_ambiguous_iso8601_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso8601_duration(text)


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 3725, 86_399, 86_400, 93_784, 200_000])
def test_the_fakes_youtube_durations_read_back_exactly(seconds: int) -> None:
    assert parse_iso8601_duration(iso8601_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("now", "reset"),
    [
        # Winter (PST, UTC-8): midnight is 08:00 UTC.
        ("2024-01-15T20:00:00+00:00", "2024-01-16T08:00:00+00:00"),
        # Summer (PDT, UTC-7), one minute before midnight Pacific: the reset is that midnight.
        ("2024-07-15T06:59:00+00:00", "2024-07-15T07:00:00+00:00"),
        # The day clocks spring forward: the next midnight is already PDT.
        ("2024-03-10T12:00:00+00:00", "2024-03-11T07:00:00+00:00"),
        # The day before it, the next midnight is still PST.
        ("2024-03-09T12:00:00+00:00", "2024-03-10T08:00:00+00:00"),
    ],
)
def test_youtube_quota_resets_at_the_next_midnight_pacific(now: str, reset: str) -> None:
    assert next_quota_reset(datetime.fromisoformat(now)) == datetime.fromisoformat(reset)


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "throttled", "wait"),
    [
        ({"Retry-After": "7"}, True, 7.0),
        ({"Retry-After": "Wed, 01 May 2024 12:00:30 GMT"}, True, 30.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(NOW.timestamp() + 12)}, False, 12.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2024-05-01T12:00:20+00:00"}, False, 20.0),
        ({"X-RateLimit-Reset": "2024-05-01T12:00:05+00:00"}, True, 5.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2024-05-01T11:59:00+00:00"}, False, 0.0),
        ({"X-RateLimit-Remaining": "41", "X-RateLimit-Reset": "2024-05-01T12:00:20+00:00"}, False, None),
        ({}, True, None),
    ],
)
def test_waits_follow_retry_after_and_rate_limit_headers(
    headers: dict[str, str], throttled: bool, wait: float | None
) -> None:
    assert rate_limit_wait_s(headers, NOW, throttled=throttled) == wait


def test_backoff_is_jittered_capped_and_never_shorter_than_the_providers_ask() -> None:
    settings = client_settings(provider_backoff_base_s=0.5, provider_backoff_cap_s=4.0)
    client = build_clients(settings, None)["VIMEO"]  # type: ignore[arg-type]
    delays = [client.retry_delay_s(attempt, None) for attempt in range(8) for _ in range(20)]
    assert all(0.25 <= d <= 4.0 for d in delays)
    assert max(client.retry_delay_s(7, None) for _ in range(50)) <= 4.0
    assert client.retry_delay_s(0, 3.0) == 3.0


# --- canned answers, for error bodies the fakes do not produce ----------------------------------


@dataclass
class Canned:
    """A server answering from a script of (status, JSON body, headers), recording each request."""

    answers: list[tuple[int, Any, dict[str, str]]]
    requests: list[web.Request] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        status, body, headers = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return web.json_response(body, status=status, headers=headers)


@asynccontextmanager
async def canned(*answers: tuple[int, Any, dict[str, str]]) -> AsyncIterator[Canned]:
    script = Canned(list(answers))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    script.url = str(server.make_url("")).rstrip("/")
    try:
        yield script
    finally:
        await server.close()


def google_error(status: int, reason: str, message: str, domain: str = "global") -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
        }
    }


# --- YouTube -----------------------------------------------------------------------------------


async def test_youtube_asks_50_ids_a_call_with_the_api_key_and_content_details() -> None:
    videos = [FakeVideo("YOUTUBE", f"yt-{n:03d}", 60 + n) for n in range(120)]
    async with run_fake_providers(videos) as fake:
        durations, client, _ = await fetch(client_settings(fake), "YOUTUBE", [v.video_id for v in videos])
    assert fake.calls["YOUTUBE"] == 3 and client.metrics.calls == 3
    asked = sorted((r.query["id"].split(",") for r in fake.requests), key=len, reverse=True)
    assert [len(ids) for ids in asked] == [50, 50, 20]
    assert sorted(vid for ids in asked for vid in ids) == [v.video_id for v in videos]
    for request in fake.requests:
        assert request.path == "/youtube/v3/videos"
        assert request.query["part"] == "contentDetails"
        assert request.query["key"] == "fake-youtube-key"
    assert durations["yt-000"] == VideoDuration(OK, 60.0)
    assert durations["yt-119"] == VideoDuration(OK, 179.0)


async def test_youtube_reads_day_long_live_and_left_out_videos() -> None:
    async with run_fake_providers() as fake:
        fake.add("YOUTUBE", "marathon", 93_784)
        fake.add("YOUTUBE", "on-air", live=True)
        durations, _, _ = await fetch(client_settings(fake), "YOUTUBE", ["marathon", "on-air", "deleted"])
    assert durations["marathon"] == VideoDuration(OK, 93_784.0)
    assert durations["on-air"].status == LIVE and durations["on-air"].seconds is None
    assert durations["deleted"].status == MISSING


async def test_youtube_reads_pt0s_as_live_and_matches_items_by_id_not_position() -> None:
    body = {
        "kind": "youtube#videoListResponse",
        "items": [
            {"kind": "youtube#video", "id": "b", "contentDetails": {"duration": "PT0S"}},
            {"kind": "youtube#video", "id": "a", "contentDetails": {"duration": "PT4M13S"}},
        ],
        "pageInfo": {"totalResults": 7, "resultsPerPage": 7},
    }
    async with canned((200, body, {})) as server:
        settings = client_settings(youtube_api_url=server.url, youtube_api_key=SecretStr("k"))
        durations, _, _ = await fetch(settings, "YOUTUBE", ["a", "b", "c"])
    assert durations == {
        "a": VideoDuration(OK, 253.0),
        "b": VideoDuration(LIVE, None, "live or upcoming (PT0S)"),
        "c": VideoDuration(MISSING, None, "not in videos.list items"),
    }


async def test_a_wrong_youtube_key_is_a_clear_error_without_retries() -> None:
    async with run_fake_providers([FakeVideo("YOUTUBE", "a", 10.0)]) as fake:
        settings = client_settings(fake, youtube_api_key=SecretStr("stale-key"))
        durations, client, outcome = await fetch(settings, "YOUTUBE", ["a"])
    assert durations == {}
    assert isinstance(outcome.stopped, CredentialsRejected)
    assert "YOUTUBE_API_KEY was refused" in str(outcome.stopped)
    assert "API key not valid" in str(outcome.stopped)
    assert fake.calls["YOUTUBE"] == 1 and client.metrics.retries == 0


@pytest.mark.parametrize(
    ("status", "reason", "message", "domain"),
    [
        (400, "keyInvalid", "Bad Request", "usageLimits"),
        (403, "accessNotConfigured", "YouTube Data API v3 has not been used in project 1", "usageLimits"),
        (403, "forbidden", "The request is missing a valid API key.", "global"),
    ],
)
async def test_every_youtube_key_problem_stops_youtube_without_retries(
    status: int, reason: str, message: str, domain: str
) -> None:
    async with canned((status, google_error(status, reason, message, domain), {})) as server:
        settings = client_settings(youtube_api_url=server.url, youtube_api_key=SecretStr("k"))
        _, client, outcome = await fetch(settings, "YOUTUBE", ["a"])
    assert isinstance(outcome.stopped, CredentialsRejected)
    assert message in str(outcome.stopped)
    assert len(server.requests) == 1 and client.metrics.retries == 0


async def test_youtube_quota_exceeded_stops_youtube_until_midnight_pacific() -> None:
    async with run_fake_providers(
        [FakeVideo("YOUTUBE", f"v{n}", 30.0) for n in range(100)], youtube_quota=0
    ) as fake:
        _, client, outcome = await fetch(
            client_settings(fake, provider_concurrency=1), "YOUTUBE", [f"v{n}" for n in range(100)]
        )
    assert isinstance(outcome.stopped, QuotaExceeded)
    assert outcome.stopped.paused_until == next_quota_reset(datetime.now(UTC))
    assert fake.calls["YOUTUBE"] == 1 and client.metrics.retries == 0


async def test_youtube_rate_limit_and_backend_errors_are_retried() -> None:
    ok = {"items": [{"id": "a", "contentDetails": {"duration": "PT1M"}}]}
    async with canned(
        (403, google_error(403, "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits"), {}),
        (500, google_error(500, "backendError", "Backend Error"), {}),
        (200, ok, {}),
    ) as server:
        settings = client_settings(youtube_api_url=server.url, youtube_api_key=SecretStr("k"))
        durations, client, _ = await fetch(settings, "YOUTUBE", ["a"])
    assert durations["a"] == VideoDuration(OK, 60.0)
    assert len(server.requests) == 3
    assert (client.metrics.failures, client.metrics.retries) == (2, 2)


async def test_youtube_bad_request_is_not_retried_and_marks_the_batch_as_error() -> None:
    body = google_error(400, "invalidFilters", "The request specifies an invalid filter parameter.")
    async with canned((400, body, {})) as server:
        settings = client_settings(youtube_api_url=server.url, youtube_api_key=SecretStr("k"))
        durations, client, _ = await fetch(settings, "YOUTUBE", ["a", "b"])
    assert {d.status for d in durations.values()} == {ERROR}
    assert "invalid filter parameter" in (durations["a"].detail or "")
    assert len(server.requests) == 1 and client.metrics.retries == 0


# --- Vimeo -------------------------------------------------------------------------------------


async def test_vimeo_asks_one_video_with_fields_bearer_token_and_versioned_accept() -> None:
    async with run_fake_providers([FakeVideo("VIMEO", "76979871", 1820.0)]) as fake:
        durations, _, _ = await fetch(client_settings(fake), "VIMEO", ["76979871"])
    (request,) = fake.requests
    assert request.path == "/vimeo/videos/76979871"
    assert request.query == {"fields": "uri,duration,status,type"}
    assert request.headers["Authorization"] == "bearer fake-vimeo-token"
    assert request.headers["Accept"] == "application/vnd.vimeo.*+json;version=3.4"
    assert durations["76979871"] == VideoDuration(OK, 1820.0)


async def test_vimeo_reads_live_transcoding_missing_and_private_videos() -> None:
    private = {
        "error": "You don't have permission to view this video.",
        "link": None,
        "developer_message": "Access denied",
        "error_code": 3200,
    }
    async with run_fake_providers() as fake:
        fake.add("VIMEO", "live", live=True)
        fake.add("VIMEO", "fresh", 0, status="transcoding")
        durations, _, _ = await fetch(client_settings(fake), "VIMEO", ["live", "fresh", "gone"])
    assert durations["live"].status == LIVE
    assert durations["fresh"].status == PROCESSING
    assert durations["gone"].status == MISSING and "5000" in (durations["gone"].detail or "")
    async with canned((403, private, {})) as server:
        settings = client_settings(vimeo_api_url=server.url, vimeo_access_token=SecretStr("t"))
        durations, _, _ = await fetch(settings, "VIMEO", ["secret"])
    assert durations["secret"].status == MISSING and "Access denied" in (durations["secret"].detail or "")


async def test_a_wrong_vimeo_token_is_a_clear_error_without_retries() -> None:
    async with run_fake_providers([FakeVideo("VIMEO", "1", 10.0)]) as fake:
        settings = client_settings(fake, vimeo_access_token=SecretStr("revoked"))
        _, client, outcome = await fetch(settings, "VIMEO", ["1"])
    assert isinstance(outcome.stopped, CredentialsRejected)
    assert "VIMEO_ACCESS_TOKEN was refused" in str(outcome.stopped) and "8003" in str(outcome.stopped)
    assert fake.calls["VIMEO"] == 1 and client.metrics.retries == 0


async def test_vimeo_429_waits_until_the_rate_limit_reset() -> None:
    reset = datetime.fromtimestamp(time.time() + 1.2, UTC).isoformat()
    throttled = {
        "error": "Too many API requests.",
        "link": None,
        "developer_message": "Too many API requests.",
        "error_code": 9000,
    }
    async with canned(
        (429, throttled, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}),
        (200, {"uri": "/videos/1", "duration": 42, "status": "available", "type": "video"}, {}),
    ) as server:
        settings = client_settings(
            vimeo_api_url=server.url, vimeo_access_token=SecretStr("t"), provider_backoff_cap_s=5.0
        )
        started = time.monotonic()
        durations, client, _ = await fetch(settings, "VIMEO", ["1"])
        waited = time.monotonic() - started
    assert durations["1"] == VideoDuration(OK, 42.0)
    assert waited >= 1.0 and client.metrics.retries == 1


# --- Vonage Video (TokBox) -----------------------------------------------------------------------


async def test_tokbox_asks_the_archive_with_an_rs256_application_jwt() -> None:
    async with run_fake_providers([FakeVideo("TOKBOX", "archive-9b2e", 1500.0)]) as fake:
        durations, _, _ = await fetch(client_settings(fake), "TOKBOX", ["archive-9b2e"])
    (request,) = fake.requests
    app_id = fake.credentials.vonage_application_id
    assert request.path == f"/vonage/v2/project/{app_id}/archive/archive-9b2e"
    scheme, token = request.headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, fake.credentials.vonage_public_key, algorithms=["RS256"])
    assert claims["application_id"] == app_id
    assert 0 < claims["exp"] - claims["iat"] <= 300 and claims["jti"]
    assert durations["archive-9b2e"] == VideoDuration(OK, 1500.0)


async def test_tokbox_reads_recording_failed_and_missing_archives() -> None:
    async with run_fake_providers() as fake:
        fake.add("TOKBOX", "rec", live=True)
        fake.add("TOKBOX", "halted", status="paused")
        fake.add("TOKBOX", "broken", 0, status="failed")
        fake.add("TOKBOX", "old", 600, status="expired")
        durations, _, _ = await fetch(
            client_settings(fake), "TOKBOX", ["rec", "halted", "broken", "old", "x"]
        )
    assert durations["rec"].status == LIVE and durations["halted"].status == LIVE
    assert durations["broken"].status == ERROR
    assert durations["old"] == VideoDuration(OK, 600.0)
    assert durations["x"].status == MISSING


async def test_a_tokbox_jwt_signed_with_another_key_is_refused_without_retries() -> None:
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    async with run_fake_providers([FakeVideo("TOKBOX", "a", 10.0)]) as fake:
        _, client, outcome = await fetch(
            client_settings(fake, vonage_private_key=SecretStr(other)), "TOKBOX", ["a"]
        )
    assert isinstance(outcome.stopped, CredentialsRejected)
    assert "VONAGE_APPLICATION_ID / VONAGE_PRIVATE_KEY were refused" in str(outcome.stopped)
    assert fake.calls["TOKBOX"] == 1 and client.metrics.retries == 0


async def test_a_tokbox_private_key_that_is_not_a_key_fails_before_any_call() -> None:
    async with run_fake_providers([FakeVideo("TOKBOX", "a", 10.0)]) as fake:
        _, _, outcome = await fetch(
            client_settings(fake, vonage_private_key=SecretStr("not a pem")), "TOKBOX", ["a"]
        )
    assert isinstance(outcome.stopped, CredentialsRejected)
    assert "VONAGE_PRIVATE_KEY is not a usable RSA private key" in str(outcome.stopped)
    assert fake.calls["TOKBOX"] == 0


# --- Dolby.io (VOXEET) ---------------------------------------------------------------------------


async def test_voxeet_gets_one_client_credentials_token_and_reads_milliseconds() -> None:
    async with run_fake_providers() as fake:
        fake.add("VOXEET", "conf-a", 2400.5, recordings=3)
        for n in range(4):
            fake.add("VOXEET", f"conf-{n}", 60.0 * (n + 1))
        durations, _, _ = await fetch(
            client_settings(fake), "VOXEET", ["conf-a", *(f"conf-{n}" for n in range(4))]
        )
    token_requests = [r for r in fake.requests if r.method == "POST"]
    assert len(token_requests) == 1
    (auth,) = token_requests
    assert auth.path == "/dolby-auth/v1/auth/token"
    assert (
        auth.headers["Authorization"]
        == "Basic " + base64.b64encode(b"fake-dolby-key:fake-dolby-secret").decode()
    )
    assert auth.body["grant_type"] == "client_credentials"
    gets = [r for r in fake.requests if r.method == "GET"]
    conferences = ["conf-a", *(f"conf-{n}" for n in range(4))]
    assert {r.path for r in gets} == {
        f"/dolby-comms/v1/monitor/conferences/{c}/recordings" for c in conferences
    }
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in gets)
    # 2,400,500 ms over three recordings.
    assert durations["conf-a"] == VideoDuration(OK, 2400.5)
    assert durations["conf-3"] == VideoDuration(OK, 240.0)


async def test_voxeet_pages_through_recordings_and_reads_live_and_missing_conferences() -> None:
    async with run_fake_providers() as fake:
        fake.add("VOXEET", "long", 1500.0, recordings=150)
        fake.add("VOXEET", "now", live=True)
        durations, _, _ = await fetch(client_settings(fake), "VOXEET", ["long", "now", "none"])
    pages = [r for r in fake.requests if r.path.endswith("/long/recordings")]
    assert [r.query.get("start") for r in pages] == [None, "100"]
    assert durations["long"] == VideoDuration(OK, 1500.0)
    assert durations["now"].status == LIVE
    assert durations["none"].status == MISSING


async def test_a_wrong_dolby_secret_is_a_clear_error_without_retries() -> None:
    async with run_fake_providers([FakeVideo("VOXEET", "c", 10.0)]) as fake:
        _, client, outcome = await fetch(
            client_settings(fake, dolby_app_secret=SecretStr("nope")), "VOXEET", ["c"]
        )
    assert isinstance(outcome.stopped, CredentialsRejected)
    assert "DOLBY_APP_KEY / DOLBY_APP_SECRET were refused" in str(outcome.stopped)
    assert "Invalid client credentials" in str(outcome.stopped)
    assert fake.calls["VOXEET"] == 1 and client.metrics.retries == 0


async def test_voxeet_renews_a_token_the_api_no_longer_accepts() -> None:
    async with run_fake_providers([FakeVideo("VOXEET", "c1", 10.0), FakeVideo("VOXEET", "c2", 20.0)]) as fake:
        async with clients_for(client_settings(fake, provider_concurrency=1)) as clients:
            client = clients["VOXEET"]
            first = await client.fetch_durations(["c1"])
            fake.revoke_dolby_tokens()
            second = await client.fetch_durations(["c2"])
    assert first.durations["c1"].seconds == 10.0 and second.durations["c2"].seconds == 20.0
    assert [r.method for r in fake.requests] == ["POST", "GET", "GET", "POST", "GET"]


# --- Wistia ------------------------------------------------------------------------------------


async def test_wistia_asks_the_media_json_with_a_bearer_token() -> None:
    async with run_fake_providers([FakeVideo("WISTIA", "h4sh3d1d", 900.25)]) as fake:
        durations, _, _ = await fetch(client_settings(fake), "WISTIA", ["h4sh3d1d"])
    (request,) = fake.requests
    assert request.path == "/wistia/v1/medias/h4sh3d1d.json"
    assert request.headers["Authorization"] == "Bearer fake-wistia-token"
    assert durations["h4sh3d1d"] == VideoDuration(OK, 900.25)


async def test_wistia_reads_processing_failed_and_missing_media() -> None:
    async with run_fake_providers() as fake:
        fake.add("WISTIA", "queued", status="queued")
        fake.add("WISTIA", "bad", status="failed")
        durations, _, _ = await fetch(client_settings(fake), "WISTIA", ["queued", "bad", "gone"])
    assert durations["queued"].status == PROCESSING
    assert durations["bad"].status == ERROR
    assert durations["gone"].status == MISSING


async def test_a_wrong_wistia_token_is_a_clear_error_without_retries() -> None:
    async with run_fake_providers([FakeVideo("WISTIA", "w", 10.0)]) as fake:
        _, client, outcome = await fetch(
            client_settings(fake, wistia_api_token=SecretStr("x")), "WISTIA", ["w"]
        )
    assert isinstance(outcome.stopped, CredentialsRejected)
    assert "WISTIA_API_TOKEN was refused" in str(outcome.stopped)
    assert fake.calls["WISTIA"] == 1 and client.metrics.retries == 0


async def test_wistia_429_honours_retry_after() -> None:
    media = {"hashed_id": "w", "duration": 12.5, "status": "ready", "type": "Video"}
    throttled = (429, {"error": "Rate limit exceeded"}, {"Retry-After": "1"})
    async with canned(throttled, (200, media, {})) as server:
        settings = client_settings(
            wistia_api_url=server.url, wistia_api_token=SecretStr("t"), provider_backoff_cap_s=5.0
        )
        started = time.monotonic()
        durations, client, _ = await fetch(settings, "WISTIA", ["w"])
        waited = time.monotonic() - started
    assert durations["w"] == VideoDuration(OK, 12.5)
    assert waited >= 1.0 and client.metrics.retries == 1


# --- the shared retry policy -----------------------------------------------------------------


async def test_with_30_percent_5xx_and_429_every_video_is_fetched_within_the_retry_bound() -> None:
    videos = [
        FakeVideo(provider, f"{provider.lower()}-{n}", 100.0 + n)
        for provider in ("YOUTUBE", "VIMEO", "TOKBOX", "VOXEET", "WISTIA")
        for n in range(60 if provider == "YOUTUBE" else 25)
    ]
    async with run_fake_providers(
        videos, error_rate=0.3, retry_after_s=0, max_errors_per_request=3, seed=11
    ) as fake:
        settings = client_settings(fake)
        async with clients_for(settings) as clients:
            outcomes = {
                p: await clients[p].fetch_durations([v.video_id for v in videos if v.provider == p])
                for p in clients
            }
            for provider, outcome in outcomes.items():
                metrics = clients[provider].metrics
                asked = [v for v in videos if v.provider == provider]
                assert {d.status for d in outcome.durations.values()} == {OK}
                assert len(outcome.durations) == len(asked)
                assert metrics.retries == fake.errors[provider] == metrics.failures
        by_request: dict[tuple[str, ...], int] = {}
        for request in fake.requests:
            key = (request.method, request.path, request.query.get("id", ""))
            by_request[key] = by_request.get(key, 0) + 1
    assert sum(fake.errors.values()) > 0.15 * sum(fake.calls.values())
    assert max(by_request.values()) <= settings.provider_max_retries + 1


async def test_a_provider_that_keeps_failing_is_asked_at_most_max_retries_plus_one_times() -> None:
    async with canned((503, {"error": "Service Unavailable"}, {})) as server:
        settings = client_settings(
            wistia_api_url=server.url, wistia_api_token=SecretStr("t"), provider_max_retries=3
        )
        durations, client, outcome = await fetch(settings, "WISTIA", ["w"])
    assert durations == {} and outcome.failed_batches == 1
    assert len(server.requests) == 4
    assert (client.metrics.retries, client.metrics.failures) == (3, 4)
    assert "HTTP 503" in (client.metrics.error or "")


async def test_a_wait_longer_than_the_cap_stops_the_provider_instead_of_sleeping() -> None:
    async with canned((429, {"error": "slow down"}, {"Retry-After": "3600"})) as server:
        settings = client_settings(wistia_api_url=server.url, wistia_api_token=SecretStr("t"))
        started = time.monotonic()
        _, client, outcome = await fetch(settings, "WISTIA", ["a", "b", "c"])
    assert isinstance(outcome.stopped, Throttled) and "3600" in str(outcome.stopped)
    assert time.monotonic() - started < 1.0
    assert client.metrics.retries == 0


async def test_timeouts_are_retried_then_given_up() -> None:
    async with run_fake_providers([FakeVideo("WISTIA", "w", 10.0)], latency_s=0.3) as fake:
        settings = client_settings(fake, provider_timeout_s=0.05, provider_max_retries=2)
        durations, client, outcome = await fetch(settings, "WISTIA", ["w"])
    assert durations == {} and outcome.failed_batches == 1
    assert client.metrics.calls == 3 and client.metrics.retries == 2
    assert "no answer within 0.05s" in (client.metrics.error or "")


async def test_concurrency_per_provider_stays_within_the_setting() -> None:
    in_flight = peak = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.json_response({"hashed_id": "x", "duration": 5.0, "status": "ready"})

    app = web.Application()
    app.router.add_get("/v1/medias/{id}.json", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        settings = client_settings(
            wistia_api_url=str(server.make_url("")).rstrip("/"),
            wistia_api_token=SecretStr("t"),
            provider_concurrency=3,
        )
        durations, _, _ = await fetch(settings, "WISTIA", [f"m{n}" for n in range(12)])
    finally:
        await server.close()
    assert len(durations) == 12 and peak == 3


async def test_cancelling_a_fetch_cancels_it_rather_than_being_swallowed() -> None:
    async with run_fake_providers([FakeVideo("VIMEO", "1", 10.0)], latency_s=5.0) as fake:
        async with clients_for(client_settings(fake)) as clients:
            task = asyncio.create_task(clients["VIMEO"].fetch_durations(["1"]))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert clients["VIMEO"].metrics.retries == 0
