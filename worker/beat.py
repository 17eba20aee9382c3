"""The beat scheduler: redbeat's Redis-locked schedule, made to ride out Redis outages."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class _Entry(RedBeatSchedulerEntry):
    def reschedule_due_now(self) -> None:
        """Store "never ran" (redbeat's reschedule always stores a time), due at once."""
        client = get_redis(self.app)
        with client.pipeline() as pipe:
            pipe.hset(self.key, "meta", json.dumps({"last_run_at": None}))
            pipe.zadd(self.app.redbeat_conf.schedule_key, {self.key: self.score})
            pipe.execute()


class ResilientRedBeatScheduler(RedBeatScheduler):
    """RedBeatScheduler that waits out a Redis outage instead of exiting.

    Plain redbeat raises out of `tick` when Redis is unreachable, which ends the beat process,
    and it never takes its lock again once the lock expired. Here a tick that cannot reach Redis
    sleeps and retries, and a beat without the lock tries to take it (without blocking) on
    every tick: the lock still makes sure only one beat schedules at a time. Redis that comes
    back without its data (no persistence, a failover to an empty replica) has lost the schedule
    entries too: plain redbeat creates them only at start-up and would never send a task again,
    so every tick checks that they exist and creates the missing ones (due at once).
    """

    Entry: type[_Entry] = _Entry
    retry_interval_s = 2.0

    def setup_schedule(self) -> None:
        while True:
            try:
                missing = self._missing_entries()
                super().setup_schedule()
                self._make_due_now(missing)
                return
            except _REDIS_DOWN as err:
                log.warning("beat: Redis unreachable at start-up (%s); retrying", err)
                time.sleep(self.retry_interval_s)

    def _try_lock(self, lock_key: str) -> bool:
        client = get_redis(self.app)
        lock = client.lock(lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        if not lock.acquire(blocking=False):
            return False
        log.info("beat: Acquired lock")
        self.lock = lock
        return True

    def _missing_entries(self) -> list[str]:
        conf = self.app.redbeat_conf
        client = get_redis(self.app)
        keys = {name: self.Entry.generate_key(self.app, name) for name in conf.schedule}
        missing = [name for name, key in keys.items() if not client.exists(key)]
        if not missing and keys and not client.exists(conf.schedule_key):
            missing = list(keys)  # the index of due times is gone: all entries need it again
        return missing

    def _make_due_now(self, names: list[str]) -> None:
        """Entries Redis did not have run at once: nobody knows when they last ran.

        Two beats starting together both find them missing; only the first to mark an entry
        makes it due (an atomic HSETNX), so the other cannot mark it "never ran" again after the
        lock holder already sent it."""
        client = get_redis(self.app)
        token = uuid.uuid4().hex
        for name in names:
            key = self.Entry.generate_key(self.app, name)
            if not client.hsetnx(key, "madeDueBy", token):
                continue
            entry = self.Entry.from_key(key, app=self.app)
            entry.last_run_at = None
            entry.reschedule_due_now()

    def _restore_missing_entries(self) -> None:
        missing = self._missing_entries()
        if not missing:
            return
        log.warning(
            "beat: schedule entries missing from Redis (it lost its data?): %s; creating them, due now",
            ", ".join(sorted(missing)),
        )
        conf = self.app.redbeat_conf
        self.update_from_dict(conf.schedule)
        get_redis(self.app).sadd(conf.statics_key, *conf.schedule.keys())
        self._make_due_now(missing)

    # The signature of redbeat's tick (celery's also takes `event_t` first; beat never passes it).
    def tick(self, min: Callable[..., Any] = min, **kwargs: Any) -> float:  # type: ignore[override]
        try:
            if self.lock_key and self.lock is None and not self._try_lock(self.lock_key):
                return self.max_interval  # another beat schedules; stand by
            self._restore_missing_entries()
            return super().tick(min=min, **kwargs)
        except LockError as err:
            log.warning("beat: lost the schedule lock (%s); will take it again when free", err)
            self.lock = None
            return self.retry_interval_s
        except _REDIS_DOWN as err:
            log.warning("beat: Redis unreachable (%s); retrying in %ss", err, self.retry_interval_s)
            return self.retry_interval_s
