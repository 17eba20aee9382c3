"""The stored-document types of shared/documents.py name every field the service really stores."""

from __future__ import annotations

import pytest

import web.demo as demo
from shared import documents
from shared.db import Database, connect
from shared.settings import Settings
from tests.servers import free_port

# The type each collection's documents are read and written as (shared/db.py).
DECLARED: dict[str, type] = {
    "users": documents.UserDoc,
    "tokens": documents.TokenDoc,
    "ingest_keys": documents.IngestKeyDoc,
    "login_attempts": documents.LoginAttemptDoc,
    "events": documents.EventDoc,
    "sessions": documents.SessionDoc,
    "watch_segments": documents.WatchSegmentDoc,
    "registrations": documents.RegistrationDoc,
    "attendee_identities": documents.AttendeeIdentityDoc,
    "segment_inbox": documents.InboxBatchDoc,
    "segment_intents": documents.SegmentIntentDoc,
    "attendees": documents.AttendeeRowDoc,
    "people": documents.PersonDoc,
    "audience_edges": documents.AudienceEdgesDoc,
    "event_summaries": documents.EventSummaryDoc,
    "rollup_journal": documents.JournalPartDoc,
    "rollup_leases": documents.RollupLeaseDoc,
    "tasks": documents.TaskDoc,
    "recompute_locks": documents.RecomputeLockDoc,
    "provider_state": documents.ProviderStateDoc,
    "webhooks": documents.WebhookDoc,
    "webhook_outbox": documents.WebhookOutboxDoc,
    "webhook_deliveries": documents.WebhookDeliveryDoc,
}


def _fields(doc_type: type) -> frozenset[str]:
    keys: frozenset[str] = doc_type.__required_keys__ | doc_type.__optional_keys__  # type: ignore[attr-defined]
    return keys


async def test_every_field_the_demo_stores_is_declared_in_shared_documents(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo runs every flow (login, sessions, ingestion, rollups, duration sync, recompute)."""
    opened: list[Database] = []

    def keep(settings: Settings) -> Database:
        opened.append(connect(settings))
        return opened[-1]

    monkeypatch.setattr(demo, "connect", keep)
    monkeypatch.setattr(demo, "configure_logging", lambda *args, **kwargs: None)
    await demo.run_demo("127.0.0.1", free_port(), check=True)
    assert "Sessions after the worker jobs" in capsys.readouterr().out
    (db,) = opened
    stored = set(await db.db.list_collection_names())
    assert stored <= set(DECLARED)
    undeclared = {}
    for name in sorted(stored):
        fields = {key for doc in await db[name].find({}).to_list(None) for key in doc}
        undeclared[name] = sorted(fields - _fields(DECLARED[name]))
    assert {name: keys for name, keys in undeclared.items() if keys} == {}
    assert {"users", "tokens", "events", "sessions", "watch_segments", "tasks"} <= stored
