"""The Celery application: Redis broker, late acks, redbeat scheduler, queues and routes."""

from __future__ import annotations

from celery import Celery
from kombu import Queue as KombuQueue

from shared.settings import Settings
from shared.tasks import Queue, task_routes
from worker.schedule import beat_schedule


def create_celery(settings: Settings) -> Celery:
    app = Celery("worker", broker=settings.redis_url, backend=settings.redis_url, include=["worker.tasks"])
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        # A message whose worker died is handed out again once the visibility timeout passed;
        # kombu looks for such messages every interval × throttle seconds (100 s by default).
        "unacked_restore_interval": min(10, settings.visibility_timeout_s),
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        # A task is acknowledged only after it finished; a worker killed mid-task gives it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=24 * 3600,
        task_default_queue=Queue.DEFAULT.value,
        # Every queue the app routes to: a plain `celery -A worker worker` consumes them all,
        # `-Q` narrows it to some.
        task_queues=[KombuQueue(queue.value, routing_key=queue.value) for queue in Queue],
        task_routes=task_routes(),
        # Events for Flower and `celery events`: received, started, succeeded, failed, retried.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_soft_time_limit_s + 60,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        beat_scheduler="worker.beat:ResilientRedBeatScheduler",
        redbeat_redis_url=settings.redis_url,
        redbeat_redis_options={"socket_timeout": 5, "socket_connect_timeout": 5},
        redbeat_key_prefix="session-analytics:redbeat",
        redbeat_lock_timeout=max(int(settings.rollup_interval_s) * 5, 30),
        beat_max_loop_interval=min(5.0, settings.rollup_interval_s),
        beat_schedule=beat_schedule(settings),
        timezone="UTC",
    )
    return app
