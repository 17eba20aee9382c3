"""One settings class: every knob is an environment variable with a sane default, except secrets."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Stores. Empty MONGODB_URL / REDIS_URL means the embedded defaults of `demo`.
    mongodb_url: str = "mongodb://127.0.0.1:27017/session_analytics"
    redis_url: str = "redis://127.0.0.1:6379/0"
    mongodb_timeout_ms: int = Field(2000, ge=100, description="server selection / socket timeout")

    # HTTP server.
    host: str = "127.0.0.1"
    port: int = 8080
    request_timeout_s: float = Field(5.0, gt=0)
    max_body_bytes: int = 1_048_576
    log_json: bool = True
    access_log: bool = Field(True, description="one INFO line per request (method, route, status, ms, ids)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="close a connection that sends no complete request head this long"
    )
    trusted_proxies: str = Field(
        "", description="comma-separated CIDRs whose X-Forwarded-For is believed; empty: none"
    )
    request_concurrency: int = Field(
        32, ge=1, description="API requests handled at once per web process; the rest wait in line (FIFO)"
    )
    ingest_concurrency: int = Field(
        8,
        ge=1,
        description="ingestion requests handled at once per web process, in a line of their own "
        "that other requests never take places in",
    )
    mongodb_max_concurrency: int = Field(
        8, ge=1, description="database operations in flight per process; the rest wait in line (FIFO)"
    )
    list_stale_after_s: float = Field(
        0.25, gt=0, description="the session list serves its last good answer when a fresh one takes longer"
    )
    log_level: str = "INFO"
    host_cache_ttl_s: float = Field(
        1.0,
        ge=0,
        le=10,
        description="how long a web process reuses a token's user and an event document; "
        "rollups wait this long after publishing before they count as finished",
    )

    # Authentication.
    token_ttl_s: int = 12 * 3600
    lockout_failures: int = 5
    lockout_s: int = 30 * 60
    login_throttle_per_minute: int = 20

    # Worker.
    rollup_interval_s: float = Field(60.0, gt=0, description="beat tick: the safety net for lost signals")
    rollup_debounce_s: float = Field(
        1.0, ge=0, description="ingestion's signal waits this long, so a burst of posts shares one rollup"
    )
    rollup_batch_items: int = Field(
        100_000, ge=1, description="waiting items one rollup batch reads (whole requests' batches)"
    )
    rollup_batch_sessions: int = Field(2_000, ge=1, description="sessions one rollup batch writes")
    rollup_lease_s: float = Field(
        30.0, gt=0, le=60, description="an event's rollup lease expires this long after its last renewal"
    )
    rollup_task_budget_s: float = Field(
        20.0, gt=0, description="a rollup task's work before it hands the rest to a new task"
    )
    duration_sync_interval_s: float = 15 * 60.0
    duration_refresh_s: int = 24 * 3600
    duration_missing_retry_s: int = 24 * 3600
    duration_live_retry_s: int = 15 * 60
    duration_sync_batch: int = 500
    token_cleanup_interval_s: float = 3600.0
    recompute_stale_s: int = Field(
        30, ge=5, description="a running recompute without a heartbeat for this long is taken as dead"
    )
    task_heartbeat_s: float = Field(5.0, gt=0, description="how often a running recompute renews heartbeatAt")
    task_sweep_interval_s: float = Field(10.0, gt=0, description="how often beat looks for dead recomputes")
    worker_metrics_port: int = Field(
        9808, ge=0, le=65535, description="first port of the worker processes' /metrics; 0 = off"
    )
    metrics_cache_s: float = Field(5.0, ge=0, description="how long /metrics reuses its database reads")
    visibility_timeout_s: int = 3600
    task_soft_time_limit_s: int = 1800
    task_max_retries: int = 5
    segment_read_batch: int = 5000
    write_batch: int = Field(
        1000, ge=1, description="statements per bulk write or ids per `$in` the service sends in one command"
    )

    # Webhooks (worker/webhooks.py) and the event stream (web/stream.py).
    webhook_allow_http: bool = Field(False, description="accept plain http:// endpoint URLs (tests, demos)")
    webhook_allowed_hosts: str = Field(
        "",
        description="comma-separated host names and CIDRs an endpoint may resolve to although they are "
        "loopback, private, link-local or metadata addresses; empty: none",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="one delivery attempt's time limit")
    webhook_debounce_s: float = Field(
        1.0, ge=0, description="a change waits this long before its delivery, so a burst shares one"
    )
    webhook_min_interval_s: float = Field(
        10.0, ge=0, description="a session's (or event's) deliveries to one endpoint at most this often"
    )
    webhook_backoff_base_s: float = Field(5.0, gt=0, description="first retry after about this long")
    webhook_backoff_cap_s: float = Field(3600.0, gt=0, description="retries at most this far apart")
    webhook_retry_window_s: float = Field(
        86400.0, gt=0, description="an endpoint failing this long is disabled"
    )
    webhook_sweep_interval_s: float = Field(
        30.0, gt=0, description="how often beat sends the deliveries due whose signal was lost"
    )
    webhook_log_retention_s: float = Field(
        7 * 86400.0, gt=0, description="finished deliveries stay in the log this long"
    )
    stream_heartbeat_s: float = Field(
        15.0, gt=0, description="an idle event stream sends a comment this often"
    )
    stream_replay: int = Field(
        1000, ge=10, description="changes per event kept in Redis for reconnects with Last-Event-ID"
    )
    stream_max_s: float = Field(
        3600.0, gt=0, description="a stream ends after this long; the client reconnects with Last-Event-ID"
    )

    # Rate limits per credential (web/ratelimit.py); 0 turns one off.
    rate_limit_host_per_minute: int = Field(
        1200, ge=0, description="requests a user token may make in any 60 s (moving window)"
    )
    rate_limit_ingest_per_minute: int = Field(
        6000, ge=0, description="requests an ingest key may make in any 60 s (moving window)"
    )

    # Provider access (base URLs default to the real APIs; credentials have no default).
    provider_timeout_s: float = 10.0
    provider_concurrency: int = 8
    provider_max_retries: int = 4
    provider_backoff_base_s: float = 0.5
    provider_backoff_cap_s: float = 30.0
    youtube_api_url: str = "https://www.googleapis.com/youtube/v3"
    youtube_api_key: SecretStr | None = None
    vimeo_api_url: str = "https://api.vimeo.com"
    vimeo_access_token: SecretStr | None = None
    vonage_video_api_url: str = "https://video.api.vonage.com"
    vonage_application_id: str | None = None
    vonage_private_key: SecretStr | None = None
    dolby_auth_url: str = "https://api.dolby.io"
    dolby_comms_api_url: str = "https://comms.api.dolby.io"
    dolby_app_key: str | None = None
    dolby_app_secret: SecretStr | None = None
    wistia_api_url: str = "https://api.wistia.com"
    wistia_api_token: SecretStr | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _cidr_list(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the bad entry
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _host_list(cls, value: str) -> str:
        for part in value.split(","):
            if "/" in part:
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the bad entry
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.trusted_proxies.split(",")
            if part.strip()
        )

    @property
    def mongodb_database_name(self) -> str:
        """The database named in MONGODB_URL's path, else `session_analytics`."""
        path = self.mongodb_url.split("://", 1)[-1].split("?", 1)[0]
        name = path.split("/", 1)[1] if "/" in path else ""
        return name or "session_analytics"

    @property
    def embedded(self) -> bool:
        """The in-process store and task runner of `demo` (MONGODB_URL=mem://)."""
        return self.mongodb_url.startswith("mem://")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
