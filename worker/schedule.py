"""The beat schedule: every periodic job, with why it runs as often as it does."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings
from shared.tasks import TaskName


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        # The safety net: ingestion signals a rollup of its event within seconds; a signal lost
        # with Redis or a worker is made up for here, and so are flagged sessions (a duration or
        # video changed). The inbox and the flags persist, so a tick that expires unrun is harmless.
        "rollup-pending": {
            "task": TaskName.ROLLUP_PENDING.value,
            "schedule": settings.rollup_interval_s,
            "options": {"expires": settings.rollup_interval_s},
        },
        # Durations change rarely; providers meter calls, so sync only due sessions every 15 min.
        "sync-durations": {
            "task": TaskName.SYNC_DURATIONS.value,
            "schedule": settings.duration_sync_interval_s,
            "options": {"expires": settings.duration_sync_interval_s},
        },
        # Recomputes whose worker died or that no worker took are sent again (shared/jobs.py):
        # often, so that another worker takes over within a minute.
        "sweep-recomputes": {
            "task": TaskName.SWEEP_RECOMPUTES.value,
            "schedule": settings.task_sweep_interval_s,
            "options": {"expires": settings.task_sweep_interval_s},
        },
        # Webhook deliveries due whose signal was lost, and retries too far off for a countdown
        # (worker/tasks.py); finished deliveries leave the log after WEBHOOK_LOG_RETENTION_S.
        "sweep-webhooks": {
            "task": TaskName.SWEEP_WEBHOOKS.value,
            "schedule": settings.webhook_sweep_interval_s,
            "options": {"expires": settings.webhook_sweep_interval_s},
        },
        # Expired tokens, login-throttle windows: there are no TTL indexes (DESIGN §6).
        "cleanup-expired": {
            "task": TaskName.CLEANUP_EXPIRED.value,
            "schedule": settings.token_cleanup_interval_s,
            "options": {"expires": settings.token_cleanup_interval_s},
        },
    }
