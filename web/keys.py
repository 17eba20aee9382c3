"""Typed keys for what the application shares between handlers."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from shared.access import HostPrincipal, IngestPrincipal
from shared.db import Database
from shared.documents import EventDoc
from shared.settings import Settings
from shared.tasks import TaskQueue
from web.cache import ListCache, TtlCache
from web.metrics import HttpMetrics

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
TASKS = web.AppKey("tasks", TaskQueue)
REGISTRY = web.AppKey("registry", CollectorRegistry)
HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)
LIST_CACHE = web.AppKey("list_cache", ListCache)
PRINCIPALS = web.AppKey("principals", TtlCache[str, HostPrincipal])
EVENTS = web.AppKey("events", TtlCache[str, EventDoc])
INGEST_KEYS = web.AppKey("ingest_keys", TtlCache[str, IngestPrincipal])
# (eventId, sessionId) pairs ingestion found stored: a session never changes event nor goes away.
KNOWN_SESSIONS = web.AppKey("known_sessions", TtlCache[tuple[str, str], bool])
