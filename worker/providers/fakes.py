"""Fake stream providers in the real APIs' shapes, with latency, 5xx, 429 and quota injection."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

PROVIDERS = ("YOUTUBE", "VIMEO", "TOKBOX", "VOXEET", "WISTIA")
YOUTUBE_MAX_IDS = 50
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class FakeVideo:
    """One video as its provider knows it. A video not in the registry is one the provider lacks."""

    provider: str  # YOUTUBE, VIMEO, TOKBOX, VOXEET or WISTIA
    video_id: str
    duration: float | None = None  # seconds; the fake converts to each provider's unit
    live: bool = False  # still streaming or recording: duration 0 / P0D / status started
    status: str | None = None  # the provider's own status word, e.g. "processing", "transcoding"
    recordings: int = 1  # VOXEET: the conference's duration split over this many recordings


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """What a client sent, for tests that check URLs, auth headers and parameters."""

    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, str]


@lru_cache(maxsize=1)
def _rsa_key_pair() -> tuple[str, str]:
    """One RSA key pair per process: generating 2048-bit keys is slow enough to matter in tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@dataclass(slots=True)
class FakeCredentials:
    """The credentials the fake accepts; settings_overrides() hands out the same ones."""

    youtube_api_key: str = "fake-youtube-key"
    vimeo_access_token: str = "fake-vimeo-token"
    vonage_application_id: str = "5f0e4e3a-0000-4000-8000-00000000fa6e"
    dolby_app_key: str = "fake-dolby-key"
    dolby_app_secret: str = "fake-dolby-secret"
    wistia_api_token: str = "fake-wistia-token"
    vonage_private_key: str = field(default_factory=lambda: _rsa_key_pair()[0])
    vonage_public_key: str = field(default_factory=lambda: _rsa_key_pair()[1])


def iso8601_duration(seconds: float) -> str:
    """YouTube's form: PT15M33S, PT1H2M3S, P1DT2H3M4S; P0D for live and upcoming videos."""
    total = round(seconds)
    if total <= 0:
        return "P0D"
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    time_part = "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if value
    )
    return f"P{days}D" + (f"T{time_part}" if time_part else "") if days else f"PT{time_part}"


def _etag(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:27]


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=dict(headers or {}))


def _google_error(
    status: int, message: str, reason: str, domain: str = "global", extra: Mapping[str, Any] | None = None
) -> web.Response:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
    }
    error.update(extra or {})
    return _json(status, {"error": error})


def _vimeo_error(status: int, message: str, code: int, headers: Mapping[str, str]) -> web.Response:
    return _json(
        status,
        {"error": message, "link": None, "developer_message": message, "error_code": code},
        headers,
    )


def _dolby_error(status: int, error: str, message: str) -> web.Response:
    return _json(status, {"type": "ErrorResponse", "status": status, "error": error, "message": message})


class FakeProviders:
    """The registry, the knobs and the counters behind the fake application.

    Knobs may change between calls (tests flip `youtube_quota` or `error_rate` mid-way).
    - latency_s: every answer waits this long first.
    - error_rate: share of calls answered with an injected 5xx or 429, as each provider sends them
      (YouTube has no 429: 500/503 backendError). `max_errors_per_request` caps injected errors per
      distinct request, so a test can prove that a bounded number of retries always gets through.
    - retry_after_s: the wait a 429 asks for (Retry-After, or X-RateLimit-Reset for Vimeo).
    - youtube_quota: YouTube units left today (1 per videos.list call); at 0 → 403 quotaExceeded.
    What it saw: `calls` and injected `errors` per provider, and every request in `requests`.
    """

    def __init__(
        self,
        videos: Iterable[FakeVideo] = (),
        *,
        latency_s: float = 0.0,
        error_rate: float = 0.0,
        max_errors_per_request: int | None = None,
        retry_after_s: int = 1,
        youtube_quota: int | None = None,
        credentials: FakeCredentials | None = None,
        seed: int = 0,
    ) -> None:
        self.videos: dict[str, dict[str, FakeVideo]] = {name: {} for name in PROVIDERS}
        for video in videos:
            self.add_video(video)
        self.latency_s = latency_s
        self.error_rate = error_rate
        self.max_errors_per_request = max_errors_per_request
        self.retry_after_s = retry_after_s
        self.youtube_quota = youtube_quota
        self.credentials = credentials or FakeCredentials()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.errors_by_request: Counter[tuple[str, ...]] = Counter()
        self.requests: list[FakeRequest] = []
        self.base_url: str | None = None
        self._rng = random.Random(seed)
        self._dolby_tokens: set[str] = set()
        self._vimeo_window: tuple[datetime, int] | None = None

    # -- registry -------------------------------------------------------------------------

    def add_video(self, video: FakeVideo) -> FakeVideo:
        if video.provider not in self.videos:
            raise ValueError(f"the fake has no provider {video.provider!r}")
        self.videos[video.provider][video.video_id] = video
        return video

    def add(
        self,
        provider: str,
        video_id: str,
        duration: float | None = None,
        *,
        live: bool = False,
        status: str | None = None,
        recordings: int = 1,
    ) -> FakeVideo:
        """Register a video with its duration in seconds (None while live or processing)."""
        return self.add_video(FakeVideo(provider, video_id, duration, live, status, recordings))

    def remove(self, provider: str, video_id: str) -> None:
        self.videos[provider].pop(video_id, None)

    def revoke_dolby_tokens(self) -> None:
        """Forget every Dolby access token issued so far, as an expiry or revocation would."""
        self._dolby_tokens.clear()

    # -- wiring ---------------------------------------------------------------------------

    def settings_overrides(self) -> dict[str, Any]:
        """Settings field names → values that point every provider at this fake."""
        if self.base_url is None:
            raise RuntimeError("the fake is not running: use run_fake_providers()")
        root, creds = self.base_url, self.credentials
        return {
            "youtube_api_url": f"{root}/youtube/v3",
            "youtube_api_key": SecretStr(creds.youtube_api_key),
            "vimeo_api_url": f"{root}/vimeo",
            "vimeo_access_token": SecretStr(creds.vimeo_access_token),
            "vonage_video_api_url": f"{root}/vonage",
            "vonage_application_id": creds.vonage_application_id,
            "vonage_private_key": SecretStr(creds.vonage_private_key),
            "dolby_auth_url": f"{root}/dolby-auth",
            "dolby_comms_api_url": f"{root}/dolby-comms",
            "dolby_app_key": creds.dolby_app_key,
            "dolby_app_secret": SecretStr(creds.dolby_app_secret),
            "wistia_api_url": f"{root}/wistia",
            "wistia_api_token": SecretStr(creds.wistia_api_token),
        }

    def environment(self) -> dict[str, str]:
        """The same as environment variables, for a worker started in another process."""
        return {
            name.upper(): value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            for name, value in self.settings_overrides().items()
        }

    def create_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/youtube/v3/videos", self._wrap("YOUTUBE", self._youtube_videos))
        app.router.add_get("/vimeo/videos/{video_id}", self._wrap("VIMEO", self._vimeo_video))
        app.router.add_get(
            "/vonage/v2/project/{application_id}/archive/{archive_id}",
            self._wrap("TOKBOX", self._vonage_archive),
        )
        app.router.add_post("/dolby-auth/v1/auth/token", self._wrap("VOXEET", self._dolby_token))
        app.router.add_get(
            "/dolby-comms/v1/monitor/conferences/{conference_id}/recordings",
            self._wrap("VOXEET", self._dolby_recordings),
        )
        app.router.add_get("/wistia/v1/medias/{hashed_id}.json", self._wrap("WISTIA", self._wistia_media))
        return app

    # -- the common part of every call: count, record, wait, maybe fail ---------------------

    def _wrap(self, provider: str, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.calls[provider] += 1
            body = dict(await request.post()) if request.method == "POST" else {}
            self.requests.append(
                FakeRequest(
                    provider,
                    request.method,
                    request.path,
                    dict(request.query),
                    dict(request.headers),
                    {k: str(v) for k, v in body.items()},
                )
            )
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            injected = self._maybe_inject(provider, request)
            if injected is not None:
                return injected
            return await handler(request)

        return wrapped

    def _maybe_inject(self, provider: str, request: web.Request) -> web.Response | None:
        if self.error_rate <= 0:
            return None
        key = (
            provider,
            request.method,
            request.path,
            *sorted(f"{k}={v}" for k, v in request.query.items() if k != "key"),
        )
        limit = self.max_errors_per_request
        if limit is not None and self.errors_by_request[key] >= limit:
            return None
        if self._rng.random() >= self.error_rate:
            return None
        self.errors[provider] += 1
        self.errors_by_request[key] += 1
        throttle = provider != "YOUTUBE" and self._rng.random() < 0.5
        return self._throttled(provider) if throttle else self._server_error(provider)

    def _server_error(self, provider: str) -> web.Response:
        if provider == "YOUTUBE":
            status = self._rng.choice((500, 503))
            message = "Backend Error" if status == 500 else "The service is currently unavailable."
            return _google_error(status, message, "backendError")
        if provider == "VIMEO":
            return _vimeo_error(
                503,
                "Vimeo is temporarily unavailable. Please try again later.",
                7300,
                self._vimeo_rate_headers(),
            )
        if provider == "TOKBOX":
            return _json(500, {"code": 500, "message": "An unexpected error occurred."})
        if provider == "VOXEET":
            return _dolby_error(502, "Bad Gateway", "Upstream service unavailable")
        return _json(503, {"error": "Service Unavailable"})

    def _throttled(self, provider: str) -> web.Response:
        retry_after = {"Retry-After": str(self.retry_after_s)}
        if provider == "VIMEO":
            # Vimeo signals with its rate-limit headers, not Retry-After.
            reset = datetime.now(UTC) + timedelta(seconds=self.retry_after_s)
            headers = {
                "X-RateLimit-Limit": "2500",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.replace(microsecond=0).isoformat(),
            }
            return _vimeo_error(429, "Too many API requests. Please wait and try again.", 9000, headers)
        if provider == "TOKBOX":
            return _json(429, {"code": 429, "message": "Too many requests"}, retry_after)
        if provider == "VOXEET":
            return _json(
                429,
                {
                    "type": "ErrorResponse",
                    "status": 429,
                    "error": "Too Many Requests",
                    "message": "Rate limit exceeded",
                },
                retry_after,
            )
        return _json(429, {"error": "Rate limit exceeded. Try again later."}, retry_after)

    # -- YouTube Data API v3 ----------------------------------------------------------------

    async def _youtube_videos(self, request: web.Request) -> web.Response:
        key = request.query.get("key")
        if not key:
            return _google_error(
                403,
                "The request is missing a valid API key.",
                "forbidden",
                extra={"status": "PERMISSION_DENIED"},
            )
        if key != self.credentials.youtube_api_key:
            message = "API key not valid. Please pass a valid API key."
            return _google_error(
                400,
                message,
                "badRequest",
                extra={
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "youtube.googleapis.com"},
                        }
                    ],
                },
            )
        if self.youtube_quota is not None:
            if self.youtube_quota <= 0:
                return _google_error(
                    403,
                    "The request cannot be completed because you have exceeded your "
                    '<a href="/youtube/v3/getting-started#quota">quota</a>.',
                    "quotaExceeded",
                    "youtube.quota",
                )
            self.youtube_quota -= 1
        parts = request.query.get("part", "")
        if not parts:
            return _google_error(400, "Required parameter: part", "required")
        ids = [vid for vid in request.query.get("id", "").split(",") if vid]
        if not ids:
            return _google_error(
                400, "No filter selected. Expected one of: myRated, chart, id", "missingRequiredParameter"
            )
        if len(ids) > YOUTUBE_MAX_IDS:
            # The fake is strict here so a client that forgets to batch finds out in tests.
            return _google_error(
                400,
                "The request specifies an invalid filter parameter.",
                "invalidFilters",
                "youtube.parameter",
            )
        items = []
        for vid in ids:
            video = self.videos["YOUTUBE"].get(vid)
            if video is None:
                continue  # unknown, deleted and private videos are left out, with a 200
            item: dict[str, Any] = {"kind": "youtube#video", "etag": _etag("yt", vid), "id": vid}
            if "contentDetails" in parts:
                seconds = 0.0 if video.live else (video.duration or 0.0)
                item["contentDetails"] = {
                    "duration": iso8601_duration(seconds),
                    "dimension": "2d",
                    "definition": "hd",
                    "caption": "false",
                    "licensedContent": False,
                    "contentRating": {},
                    "projection": "rectangular",
                }
            items.append(item)
        return _json(
            200,
            {
                "kind": "youtube#videoListResponse",
                "etag": _etag("list", *ids),
                "items": items,
                "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
            },
        )

    # -- Vimeo API 3.4 ----------------------------------------------------------------------

    def _vimeo_rate_headers(self) -> dict[str, str]:
        now = datetime.now(UTC)
        if self._vimeo_window is None or now >= self._vimeo_window[0]:
            self._vimeo_window = (now + timedelta(minutes=1), 0)
        reset, used = self._vimeo_window
        self._vimeo_window = (reset, used + 1)
        return {
            "X-RateLimit-Limit": "2500",
            "X-RateLimit-Remaining": str(max(2500 - used - 1, 1)),
            "X-RateLimit-Reset": reset.replace(microsecond=0).isoformat(),
        }

    async def _vimeo_video(self, request: web.Request) -> web.Response:
        headers = self._vimeo_rate_headers()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token != self.credentials.vimeo_access_token:
            return _vimeo_error(401, "You must provide a valid authenticated access token.", 8003, headers)
        video_id = request.match_info["video_id"]
        video = self.videos["VIMEO"].get(video_id)
        if video is None:
            return _vimeo_error(404, "The requested video couldn't be found.", 5000, headers)
        duration = 0 if video.live else round(video.duration or 0)
        full: dict[str, Any] = {
            "uri": f"/videos/{video_id}",
            "name": f"Video {video_id}",
            "type": "live" if video.live else "video",
            "link": f"https://vimeo.com/{video_id}",
            "duration": duration,
            "width": 1920,
            "height": 1080,
            "created_time": "2024-03-01T10:00:00+00:00",
            "status": video.status or "available",
            "stats": {"plays": None},
            "privacy": {"view": "anybody"},
        }
        return _json(200, _vimeo_fields(full, request.query.get("fields")), headers)

    # -- Vonage Video API ---------------------------------------------------------------------

    async def _vonage_archive(self, request: web.Request) -> web.Response:
        application_id = request.match_info["application_id"]
        refusal = self._vonage_refusal(request, application_id)
        if refusal is not None:
            return _json(403, {"code": 403, "message": "Authentication failed.", "description": refusal})
        archive_id = request.match_info["archive_id"]
        video = self.videos["TOKBOX"].get(archive_id)
        if video is None:
            return _json(404, {"code": 404, "message": f"Archive {archive_id} not found."})
        status = video.status or ("started" if video.live else "available")
        duration = 0 if video.live else round(video.duration or 0)
        return _json(
            200,
            {
                "id": archive_id,
                "status": status,
                "name": f"Session recording {archive_id}",
                "reason": "",
                "sessionId": f"2_MX4{archive_id}",
                "applicationId": application_id,
                "createdAt": 1_709_287_200_000,
                "updatedAt": 1_709_287_200_000 + duration * 1000,
                "size": 0 if status == "started" else duration * 250_000,
                "duration": duration,
                "outputMode": "composed",
                "streamMode": "auto",
                "hasAudio": True,
                "hasVideo": True,
                "resolution": "1280x720",
                "url": f"https://example.invalid/archives/{archive_id}.mp4"
                if status == "available"
                else None,
                "sha256sum": _etag("archive", archive_id) if status == "available" else None,
                "streams": [],
            },
        )

    def _vonage_refusal(self, request: web.Request, application_id: str) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return "missing bearer JWT"
        try:
            claims = jwt.decode(
                token,
                self.credentials.vonage_public_key,
                algorithms=["RS256"],
                options={"require": ["application_id", "iat", "exp", "jti"]},
            )
        except jwt.PyJWTError as err:
            return f"invalid JWT: {err}"
        if claims["application_id"] != self.credentials.vonage_application_id:
            return "unknown application"
        if application_id != claims["application_id"]:
            return "the JWT is for another application"
        return None

    # -- Dolby.io: auth and monitor -----------------------------------------------------------

    async def _dolby_token(self, request: web.Request) -> web.Response:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            key, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            key = secret = ""
        creds = self.credentials
        if scheme != "Basic" or (key, secret) != (creds.dolby_app_key, creds.dolby_app_secret):
            return _dolby_error(401, "Unauthorized", "Invalid client credentials")
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _dolby_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        token = secrets.token_urlsafe(24)
        self._dolby_tokens.add(token)
        lifetime = int(str(form.get("expires_in") or 600))
        return _json(200, {"token_type": "Bearer", "access_token": token, "expires_in": lifetime})

    async def _dolby_recordings(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._dolby_tokens:
            return _dolby_error(401, "Unauthorized", "Invalid or expired access token")
        conference_id = request.match_info["conference_id"]
        video = self.videos["VOXEET"].get(conference_id)
        if video is None:
            return _dolby_error(404, "Not Found", f"Conference {conference_id} not found")
        recordings = [] if video.live else _dolby_recordings(conference_id, video)
        try:
            size = max(1, min(int(request.query.get("max", "100")), 1000))
            start = int(request.query.get("start") or 0)
        except ValueError:
            return _dolby_error(400, "Bad Request", "max and start must be numbers")
        page = recordings[start : start + size]
        following = start + size if start + size < len(recordings) else None
        return _json(
            200,
            {
                "first": "0",
                "next": str(following) if following is not None else None,
                "conference": {"confId": conference_id, "confAlias": f"session-{conference_id}"},
                "liveConference": video.live,
                "recordings": page,
            },
        )

    # -- Wistia ------------------------------------------------------------------------------

    async def _wistia_media(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token != self.credentials.wistia_api_token:
            return _json(401, {"error": "Invalid credentials."})
        hashed_id = request.match_info["hashed_id"]
        video = self.videos["WISTIA"].get(hashed_id)
        if video is None:
            return _json(404, {"error": "The requested media could not be found."})
        status = video.status or ("processing" if video.live else "ready")
        return _json(
            200,
            {
                "id": int(hashlib.sha1(hashed_id.encode()).hexdigest()[:8], 16),
                "name": f"Media {hashed_id}",
                "type": "Video",
                "archived": False,
                "created": "2024-03-01T10:00:00+00:00",
                "updated": "2024-03-01T10:05:00+00:00",
                "duration": 0.0 if video.live else float(video.duration or 0.0),
                "hashed_id": hashed_id,
                "description": "",
                "progress": 1.0 if status == "ready" else 0.4,
                "status": status,
                "thumbnail": {
                    "url": f"https://embed-ssl.wistia.com/deliveries/{hashed_id}.jpg",
                    "width": 200,
                    "height": 120,
                },
                "project": {"id": 1, "name": "Sessions", "hashed_id": "sessions01"},
            },
        )


def _vimeo_fields(full: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """Vimeo's `fields=a,b.c` filter: only the named (dotted) paths come back."""
    if not fields:
        return full
    out: dict[str, Any] = {}
    for path in filter(None, (part.strip() for part in fields.split(","))):
        source, target = full, out
        names = path.split(".")
        for name in names[:-1]:
            if not isinstance(source.get(name), dict):
                break
            source = source[name]
            target = target.setdefault(name, {})
        else:
            if names[-1] in source:
                target[names[-1]] = source[names[-1]]
    return out


def _dolby_recordings(conference_id: str, video: FakeVideo) -> list[dict[str, Any]]:
    """The conference's duration in milliseconds, split over its recordings."""
    total_ms = round((video.duration or 0.0) * 1000)
    count = max(1, video.recordings)
    parts = [total_ms // count] * count
    parts[-1] += total_ms - sum(parts)
    started = 1_709_287_200_000
    out = []
    for n, duration_ms in enumerate(parts):
        out.append(
            {
                "region": "us-west-1",
                "url": f"https://example.invalid/recordings/{conference_id}-{n}.mp4",
                "createdAt": started + duration_ms,
                "recordingType": "MP4",
                "duration": duration_ms,
                "filename": f"{conference_id}-{n}.mp4",
                "size": duration_ms * 250,
                "startTime": started,
                "mediaType": "MP4",
                "mix": {"mixId": "default", "width": 1280, "height": 720, "layoutUrl": None},
            }
        )
        started += duration_ms + 60_000
    return out


@asynccontextmanager
async def run_fake_providers(
    videos: Iterable[FakeVideo] = (),
    *,
    fake: FakeProviders | None = None,
    **knobs: Any,
) -> AsyncIterator[FakeProviders]:
    """Serve the fakes on 127.0.0.1 on a free port for the duration of the block.

    YouTube, Vimeo, Vonage Video, Dolby.io (auth and monitor) and Wistia answer under path
    prefixes of one server; point the settings at it with

        async with run_fake_providers([FakeVideo("YOUTUBE", "dQw4w9WgXcQ", 212.0)]) as fake:
            settings = settings.model_copy(update=fake.settings_overrides())
    """
    fake = fake or FakeProviders(videos, **knobs)
    # Handlers stop when their client goes away, and shutdown does not wait for slow answers.
    runner = web.AppRunner(
        fake.create_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake
    finally:
        fake.base_url = None
        await runner.cleanup()


def create_fake_providers_app(fake: FakeProviders | None = None) -> web.Application:
    """The application alone, for callers that run it on their own server or test client."""
    return (fake or FakeProviders()).create_app()
