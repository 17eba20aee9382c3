"""What every provider client shares: batching, a concurrency limit, timeouts, retries, rate limits."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp
import orjson

from shared.settings import Settings
from worker.metrics import provider_call

log = logging.getLogger(__name__)

# What a provider said about one video. LIVE and PROCESSING are not final: asked again soon.
OK = "OK"
LIVE = "LIVE"
PROCESSING = "PROCESSING"
MISSING = "MISSING"
ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class VideoDuration:
    """One video's answer: a status and, when OK, its length in seconds."""

    status: str
    seconds: float | None = None
    detail: str | None = None


class ProviderError(Exception):
    """A call to a provider that gave no usable answer."""

    def __init__(self, provider: str, message: str, *, http_status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.http_status = http_status


class TransientProviderError(ProviderError):
    """Timeouts, network errors, 5xx, 429: the same call may work later. Only these are retried."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(provider, message, http_status=http_status)
        self.retry_after_s = retry_after_s


class ProviderStopped(ProviderError):
    """Base of the errors after which no further call to this provider is made in this run."""


class QuotaExceeded(ProviderStopped):
    """The provider's quota is spent until `paused_until`; only this provider pauses."""

    def __init__(
        self, provider: str, message: str, *, paused_until: datetime, http_status: int | None = None
    ) -> None:
        super().__init__(provider, message, http_status=http_status)
        self.paused_until = paused_until


class CredentialsRejected(ProviderStopped):
    """The provider refused our credentials: retrying cannot help until someone fixes them."""


class Throttled(ProviderStopped):
    """The provider asked us to wait longer than the backoff cap: the rest waits for the next run."""


class UnexpectedAnswer(ProviderError):
    """An answer we cannot read (unknown 4xx, malformed body): not retried, the videos are ERROR."""


@dataclass(slots=True)
class Answer:
    """One HTTP answer, read in full so the connection goes back to the pool at once."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (an HTML error page from a proxy)."""
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None


@dataclass(slots=True)
class ProviderMetrics:
    """Counters of one provider in one run; also persisted in provider_state."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    updated: int = 0
    missing: int = 0
    live: int = 0
    errors: int = 0
    changed: int = 0
    waiting: int = 0
    last_success_at: datetime | None = None
    paused: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failures": self.failures,
            "retries": self.retries,
            "updated": self.updated,
            "missing": self.missing,
            "live": self.live,
            "errors": self.errors,
            "changed": self.changed,
            "waiting": self.waiting,
            "lastSuccessAt": iso_z(self.last_success_at),
            "paused": self.paused,
            "error": self.error,
        }


@dataclass(slots=True)
class FetchOutcome:
    """Answers for the videos a run could resolve; the others stay due for a later run."""

    durations: dict[str, VideoDuration] = field(default_factory=dict)
    stopped: ProviderStopped | None = None
    failed_batches: int = 0


def iso_z(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _parse_instant(value: str, now: datetime) -> float | None:
    """Seconds from now until `value`: an epoch number (s or ms), a delay, or an ISO/HTTP date."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            return None
        if number > 1e12:  # epoch milliseconds
            return number / 1000 - now.timestamp()
        if number > 1e9:  # epoch seconds
            return number - now.timestamp()
        return number  # already a delay in seconds
    for parse in (datetime.fromisoformat, parsedate_to_datetime):
        try:
            moment = parse(value)
        except (ValueError, TypeError):
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - now).total_seconds()
    return None


def rate_limit_wait_s(headers: Mapping[str, str], now: datetime, *, throttled: bool) -> float | None:
    """How long the provider asks us to wait, from Retry-After or X-RateLimit-Remaining/Reset.

    Retry-After wins when present. X-RateLimit-Reset counts only when the window is used up
    (Remaining 0) or the answer is a 429; a reset in the past means no wait.
    """
    retry_after = headers.get("Retry-After")
    if retry_after:
        wait = _parse_instant(retry_after, now)
        if wait is not None:
            return max(wait, 0.0)
    remaining = headers.get("X-RateLimit-Remaining")
    reset = headers.get("X-RateLimit-Reset")
    if reset and (throttled or (remaining is not None and remaining.strip() == "0")):
        wait = _parse_instant(reset, now)
        if wait is not None:
            return max(wait, 0.0)
    return None


class ProviderClient(ABC):
    """One provider's duration client. Subclasses say how to ask for one batch and read the answer."""

    name: ClassVar[str]
    batch_size: ClassVar[int] = 1

    def __init__(
        self, http: aiohttp.ClientSession, settings: Settings, *, rng: random.Random | None = None
    ) -> None:
        self.http = http
        self.timeout = aiohttp.ClientTimeout(total=settings.provider_timeout_s)
        self.concurrency = max(1, settings.provider_concurrency)
        self.max_retries = max(0, settings.provider_max_retries)
        self.backoff_base_s = settings.provider_backoff_base_s
        self.backoff_cap_s = settings.provider_backoff_cap_s
        self.metrics = ProviderMetrics()
        self._rng = rng or random.Random()
        # loop.time() before which no call goes out: set by 429s and used-up rate-limit windows,
        # so all concurrent batches slow down together instead of each finding out by itself.
        self._not_before = 0.0

    def missing_credentials(self) -> list[str]:
        """Environment names of the credentials this provider needs and does not have."""
        return []

    @abstractmethod
    async def fetch_batch(self, video_ids: Sequence[str]) -> dict[str, VideoDuration]:
        """Ask for at most `batch_size` videos; every id asked about gets an answer or an error."""

    async def fetch_durations(self, video_ids: Iterable[str]) -> FetchOutcome:
        """Batches, at most `concurrency` in flight; a stop (quota, credentials) ends the run."""
        ids = list(dict.fromkeys(video_ids))
        batches = iter([ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)])
        outcome = FetchOutcome()

        async def worker() -> None:
            # One shared iterator: each batch is taken by exactly one worker.
            for batch in batches:
                if outcome.stopped is not None:
                    return
                try:
                    outcome.durations.update(await self._fetch_with_retries(batch))
                except ProviderStopped as err:
                    if outcome.stopped is None:
                        outcome.stopped = err
                        log.warning("%s", err, extra={"provider": self.name})
                    return
                except UnexpectedAnswer as err:
                    log.warning("%s", err, extra={"provider": self.name, "videoIds": batch})
                    outcome.durations.update({vid: VideoDuration(ERROR, None, str(err)) for vid in batch})
                except TransientProviderError as err:
                    outcome.failed_batches += 1
                    self.metrics.error = str(err)
                    log.warning(
                        "%s; giving up on %d videos until the next run",
                        err,
                        len(batch),
                        extra={"provider": self.name},
                    )

        workers = min(self.concurrency, math.ceil(len(ids) / self.batch_size))
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
        if outcome.stopped is not None:
            self.metrics.error = str(outcome.stopped)
        return outcome

    async def _fetch_with_retries(self, batch: Sequence[str]) -> dict[str, VideoDuration]:
        for attempt in range(self.max_retries + 1):
            try:
                durations = await self.fetch_batch(batch)
            except TransientProviderError as err:
                self.metrics.failures += 1
                hint = err.retry_after_s
                if hint is not None and hint > self.backoff_cap_s:
                    raise Throttled(
                        self.name,
                        f"asked to wait {hint:.0f}s, more than the {self.backoff_cap_s:.0f}s cap",
                        http_status=err.http_status,
                    ) from err
                if attempt == self.max_retries:
                    raise
                self.metrics.retries += 1
                await asyncio.sleep(self.retry_delay_s(attempt, hint))
            except ProviderError:
                self.metrics.failures += 1
                raise
            else:
                self.metrics.last_success_at = datetime.now(UTC)
                return durations
        raise AssertionError("unreachable: the last attempt returns or raises")

    def retry_delay_s(self, attempt: int, hint_s: float | None) -> float:
        """Capped exponential backoff with jitter, never shorter than what the provider asked for."""
        backoff = min(self.backoff_cap_s, self.backoff_base_s * 2.0**attempt)
        jittered = backoff * self._rng.uniform(0.5, 1.0)
        return max(jittered, hint_s or 0.0)

    def _hold_calls(self, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._not_before = max(self._not_before, loop.time() + min(wait_s, self.backoff_cap_s))

    async def call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
    ) -> Answer:
        """One HTTP call. 5xx, 429, timeouts and network errors raise TransientProviderError;
        every other answer is returned for the provider to read."""
        wait = self._not_before - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        self.metrics.calls += 1
        try:
            async with self.http.request(
                method, url, params=params, headers=headers, data=data, timeout=self.timeout
            ) as response:
                answer = Answer(response.status, response.headers.copy(), await response.read())
        except TimeoutError as err:
            provider_call(self.name, "timeout")
            raise TransientProviderError(
                self.name, f"no answer within {self.timeout.total}s from {method} {_path(url)}"
            ) from err
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
            provider_call(self.name, "network_error")
            raise TransientProviderError(self.name, f"network error on {method} {_path(url)}: {err}") from err
        provider_call(self.name, call_outcome(answer.status))
        throttled = answer.status == 429
        wait_s = rate_limit_wait_s(answer.headers, datetime.now(UTC), throttled=throttled)
        if wait_s:
            self._hold_calls(wait_s)
        if throttled or answer.status >= 500:
            raise TransientProviderError(
                self.name,
                f"HTTP {answer.status} on {method} {_path(url)}: {self.error_text(answer)}",
                http_status=answer.status,
                retry_after_s=wait_s,
            )
        return answer

    def error_text(self, answer: Answer) -> str:
        """A short, human message from an error body; providers override for their shapes."""
        body = answer.json()
        if isinstance(body, dict):
            for key in ("message", "error_description", "developer_message", "error"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return value
        return answer.body[:200].decode("utf-8", "replace") or "(empty body)"

    def unexpected(self, answer: Answer, what: str) -> UnexpectedAnswer:
        return UnexpectedAnswer(
            self.name,
            f"HTTP {answer.status} for {what}: {self.error_text(answer)}",
            http_status=answer.status,
        )


def call_outcome(status: int) -> str:
    """The `outcome` label of session_analytics_provider_calls_total for an HTTP status."""
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


def _path(url: str) -> str:
    """The URL without its query, which may carry an API key."""
    return url.split("?", 1)[0]


def json_object(client: ProviderClient, answer: Answer, what: str) -> dict[str, Any]:
    """The body of a 2xx answer as a JSON object, else UnexpectedAnswer."""
    body = answer.json()
    if not isinstance(body, dict):
        raise UnexpectedAnswer(
            client.name, f"{what}: the answer is not a JSON object", http_status=answer.status
        )
    return body
