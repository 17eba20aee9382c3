# What worker/beat.py uses of celery-redbeat, which ships no types.
from collections.abc import Callable
from typing import Any, Self

import redis
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from redis.lock import Lock

LUA_EXTEND_TO_SCRIPT: str

class RedBeatConfig:
    key_prefix: str
    schedule_key: str
    statics_key: str
    lock_key: str | None
    lock_timeout: int | None
    schedule: dict[str, dict[str, Any]]

class _RedBeatApp(Celery):
    redbeat_conf: RedBeatConfig

def get_redis(app: Celery | None = None) -> redis.Redis: ...

class RedBeatSchedulerEntry(ScheduleEntry):
    app: _RedBeatApp
    @staticmethod
    def generate_key(app: Celery, name: str) -> str: ...
    @classmethod
    def from_key(cls, key: str, app: Celery | None = None) -> Self: ...
    @property
    def key(self) -> str: ...
    @property
    def score(self) -> float: ...
    def reschedule(self, last_run_at: Any = None) -> RedBeatSchedulerEntry: ...

class RedBeatScheduler(Scheduler):
    Entry: type[RedBeatSchedulerEntry]
    app: _RedBeatApp
    lock: Lock | None
    lock_key: str | None
    lock_timeout: int
    max_interval: int
    def __init__(
        self, app: Celery, lock_key: str | None = None, lock_timeout: int | None = None, **kwargs: Any
    ) -> None: ...
    def update_from_dict(self, dict_: dict[str, dict[str, Any]]) -> None: ...
    # redbeat's own override, which drops celery's positional `event_t`.
    def tick(self, min: Callable[..., Any] = ..., **kwargs: Any) -> float: ...  # type: ignore[override]
