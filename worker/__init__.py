"""Celery workers: duration sync, rollups and recomputes. `celery -A worker worker|beat`."""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging

from shared.logs import configure_logging
from shared.settings import get_settings
from worker.celeryconf import create_celery

app = create_celery(get_settings())


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


__all__ = ["app"]
