"""The MongoDB access layer: one client, the collections, and every index their queries need."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from bson.codec_options import DatetimeConversion
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection, AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, DeleteOne, IndexModel, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout, PyMongoError

from shared.attendees import PEOPLE_SORT_FIELDS
from shared.attendees import SORT_FIELDS as ATTENDEE_SORT_FIELDS
from shared.documents import (
    AttendeeIdentityDoc,
    AttendeeRowDoc,
    AudienceEdgesDoc,
    EventDoc,
    EventSummaryDoc,
    InboxBatchDoc,
    IngestKeyDoc,
    JournalPartDoc,
    LoginAttemptDoc,
    PersonDoc,
    ProviderStateDoc,
    RecomputeLockDoc,
    RegistrationDoc,
    RollupLeaseDoc,
    SegmentIntentDoc,
    SessionDoc,
    TaskDoc,
    TokenDoc,
    UserDoc,
    WatchSegmentDoc,
    WebhookDeliveryDoc,
    WebhookDoc,
    WebhookOutboxDoc,
)
from shared.settings import Settings

# A document of a collection read by name, or an aggregation's output: the driver's own type.
RawDocument = dict[str, Any]
Collection = AsyncIOMotorCollection

log = logging.getLogger(__name__)

# Errors that mean "the database is unreachable right now", not "the request is wrong".
UNAVAILABLE_ERRORS: tuple[type[PyMongoError], ...] = (ConnectionFailure, NetworkTimeout, ExecutionTimeout)

SORT_FIELDS = ("startTime", "title", "attendeeCount", "liveViews", "recordingViews", "avgAttendedDuration")

# Every collection, and the indexes its queries need (each query's filter constrains the
# leading field of one of these, or `_id`; tests/test_*_queries.py record the commands sent).
INDEXES: dict[str, list[IndexModel]] = {
    # Login by email.
    "users": [IndexModel([("email", ASCENDING)], unique=True)],
    # Expiry by the cleanup task; a user's grants are copied to all its tokens (create-user).
    "tokens": [IndexModel([("expiresAt", ASCENDING)]), IndexModel([("userId", ASCENDING)])],
    # Read by `_id` (the key's digest) only.
    "ingest_keys": [],
    # The cleanup deletes finished throttle windows.
    "login_attempts": [IndexModel([("expiresAt", ASCENDING)])],
    # An organizer admin's events.
    "events": [IndexModel([("organizerId", ASCENDING)])],
    "sessions": [
        # One index per sort key of the session list, each led by eventId, _id as the tie-break.
        *[IndexModel([("eventId", ASCENDING), (key, ASCENDING), ("_id", ASCENDING)]) for key in SORT_FIELDS],
        IndexModel([("eventId", ASCENDING), ("format", ASCENDING), ("startTime", ASCENDING)]),
        # The beat tick finds sessions whose duration or video changed (see worker/rollup.py).
        IndexModel([("rollupPending", ASCENDING)]),
        IndexModel([("durationProvider", ASCENDING), ("durationCheckAt", ASCENDING)]),
    ],
    # Attendance, deduplicated by `_id` (eventId:segmentId, eventId:sessionId:userId); a full
    # recompute reads one event's at a time.
    "watch_segments": [IndexModel([("eventId", ASCENDING), ("sessionId", ASCENDING)])],
    "registrations": [IndexModel([("eventId", ASCENDING), ("sessionId", ASCENDING)])],
    # Items stored but not yet rolled up: a rollup reads one event's; the beat tick and the lag
    # gauge read the oldest. Consumed by `_id`. (Why each rollup collection exists: worker/rollup.py.)
    "segment_inbox": [
        IndexModel([("eventId", ASCENDING)]),
        IndexModel([("receivedAt", ASCENDING)]),
    ],
    # Ingestion's intents (shared/inbox.py): the beat tick reads the oldest; consumed by `_id`.
    "segment_intents": [IndexModel([("receivedAt", ASCENDING)])],
    # Personal fields of attendees, one document per (event, user), read and written by `_id`
    # (eventId:userId) only (shared/identities.py).
    "attendee_identities": [],
    # Attendee rows (shared/attendees.py): a rollup reads a session's by sessionId; the list
    # filters one session's and sorts by each of its sort keys, ties by userId; erasure and
    # identity changes update one user's rows of an event.
    "attendees": [
        *[
            IndexModel([("sessionId", ASCENDING), (key, ASCENDING), ("userId", ASCENDING)])
            for key in ATTENDEE_SORT_FIELDS.values()
        ],
        IndexModel([("eventId", ASCENDING), ("userId", ASCENDING)]),
    ],
    # The event's people (shared/audience.py): rollups read and write them by `_id`; the people
    # list filters one event's and sorts by each of its sort keys, ties by userId; a recompute
    # deletes the ones it did not rebuild.
    "people": [
        IndexModel([("eventId", ASCENDING), (key, ASCENDING), ("userId", ASCENDING)])
        for key in PEOPLE_SORT_FIELDS.values()
    ],
    # LIVE edge counts per chunk of an event's time, read and written by `_id`; a recompute
    # deletes an event's before it writes them again.
    "audience_edges": [IndexModel([("eventId", ASCENDING)])],
    # One summary per event (`_id`), one journal per event (`_id`) and its parts (`_id`).
    "event_summaries": [],
    "rollup_journal": [],
    # One lease per event (`_id` = eventId).
    "rollup_leases": [],
    "tasks": [
        IndexModel([("eventId", ASCENDING), ("createdAt", DESCENDING)]),
        # The sweep of recomputes whose worker died or that no worker took (shared/jobs.py).
        IndexModel([("state", ASCENDING), ("heartbeatAt", ASCENDING)]),
    ],
    # One lock per event (`_id`): the recompute that holds it.
    "recompute_locks": [],
    # One document per provider (`_id`).
    "provider_state": [],
    # Webhook endpoints (shared/webhooks.py): the hook finds an event's by eventId and by its
    # organizer's organizerId; the host lists them by either.
    "webhooks": [IndexModel([("eventId", ASCENDING)]), IndexModel([("organizerId", ASCENDING)])],
    # Changes not delivered yet: a delivery run reads its endpoint's dirty ones; the sweep finds
    # endpoints with some whose signal was lost.
    "webhook_outbox": [
        IndexModel([("webhookId", ASCENDING), ("dirty", ASCENDING)]),
        IndexModel([("dirty", ASCENDING)]),
    ],
    # The delivery log: an endpoint's newest first; its attempts due; the sweep's attempts due
    # of every endpoint; the retention cleanup of finished ones.
    "webhook_deliveries": [
        IndexModel([("webhookId", ASCENDING), ("createdAt", DESCENDING)]),
        IndexModel([("webhookId", ASCENDING), ("status", ASCENDING), ("nextAttemptAt", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("nextAttemptAt", ASCENDING)]),
        IndexModel([("createdAt", ASCENDING)]),
    ],
}


# Operations that make a round trip to the server: each waits for a slot of the process's gate.
_GATED_CALLS = frozenset(
    {
        "find_one",
        "insert_one",
        "insert_many",
        "update_one",
        "update_many",
        "replace_one",
        "delete_one",
        "delete_many",
        "find_one_and_update",
        "find_one_and_replace",
        "find_one_and_delete",
        "count_documents",
        "estimated_document_count",
        "distinct",
        "bulk_write",
        "create_index",
        "create_indexes",
        "drop_index",
        "drop_indexes",
        "index_information",
        "drop",
        "rename",
        # cursor reads
        "to_list",
        "next",
        "explain",
    }
)
_CURSOR_CALLS = frozenset({"find", "aggregate", "find_raw_batches", "aggregate_raw_batches", "list_indexes"})
_DEFAULT_BATCH = 101  # documents per batch of a cursor without batch_size (the server's first batch)


def _gated(call: Callable[..., Awaitable[Any]], gate: asyncio.Semaphore) -> Callable[..., Awaitable[Any]]:
    async def one_at_a_slot(*args: Any, **kwargs: Any) -> Any:
        async with gate:
            return await call(*args, **kwargs)

    return one_at_a_slot


class _GatedCursor:
    """A Motor cursor whose reads wait for the gate; building calls (sort, limit...) chain as usual."""

    def __init__(self, cursor: Any, gate: asyncio.Semaphore) -> None:
        self._cursor = cursor
        self._gate = gate
        self._buffer: deque[Any] = deque()
        self._batch = _DEFAULT_BATCH

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._cursor, name)
        if name in _GATED_CALLS:
            return _gated(attr, self._gate)
        if not callable(attr):
            return attr

        def chain(*args: Any, **kwargs: Any) -> Any:
            if name == "batch_size" and args and args[0]:
                self._batch = int(args[0])
            result = attr(*args, **kwargs)
            return self if result is self._cursor else result

        return chain

    def __aiter__(self) -> _GatedCursor:
        return self

    async def __anext__(self) -> Any:
        """One place in line per batch the server sends, not per document: a reader iterating a
        large cursor waits as often as it makes round trips."""
        if not self._buffer:
            async with self._gate:
                self._buffer.extend(await self._cursor.to_list(length=self._batch))
            if not self._buffer:
                raise StopAsyncIteration
        return self._buffer.popleft()


class _GatedCollection:
    def __init__(self, collection: Any, gate: asyncio.Semaphore) -> None:
        self._collection = collection
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if name in _GATED_CALLS:
            return _gated(attr, self._gate)
        if name in _CURSOR_CALLS:
            return lambda *args, **kwargs: _GatedCursor(attr(*args, **kwargs), self._gate)
        if name == "with_options":  # the same collection with other codec options: still in line
            return lambda *args, **kwargs: _GatedCollection(attr(*args, **kwargs), self._gate)
        return attr


class _GatedDatabase:
    """Collections whose operations wait in one FIFO line per process (asyncio.Semaphore wakes
    waiters in order), so list reads, ingestion and tasks share the database fairly instead of
    piling up on the driver's thread pool and timing out together. `command` (ping) does not
    wait: readiness must not queue behind user traffic."""

    def __init__(self, database: Any, gate: asyncio.Semaphore) -> None:
        self._database = database
        self._gate = gate

    def __getitem__(self, name: str) -> Any:
        return _GatedCollection(self._database[name], self._gate)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._database, name)
        if isinstance(attr, AsyncIOMotorCollection):
            return _GatedCollection(attr, self._gate)
        return attr


def database_slots(settings: Settings) -> int:
    """MONGODB_MAX_CONCURRENCY, but always two fewer than Motor's threads (MOTOR_MAX_WORKERS,
    default 5 per CPU), so a readiness ping always finds a free thread."""
    from motor.frameworks import asyncio as motor_asyncio

    threads = int(getattr(motor_asyncio, "max_workers", 10))
    return max(1, min(settings.mongodb_max_concurrency, threads - 2))


@dataclass
class Database:
    """The collections of one database, created on the running event loop."""

    client: AsyncIOMotorClient[RawDocument]
    db: AsyncIOMotorDatabase[RawDocument]
    # The per-process line every operation waits in (None: no limit, as for the embedded store).
    gate: asyncio.Semaphore | None = field(default=None, kw_only=True)

    def __getitem__(self, name: str) -> Collection[RawDocument]:
        return self.db[name]

    @property
    def users(self) -> Collection[UserDoc]:
        return cast("Collection[UserDoc]", self.db.users)

    @property
    def tokens(self) -> Collection[TokenDoc]:
        return cast("Collection[TokenDoc]", self.db.tokens)

    @property
    def ingest_keys(self) -> Collection[IngestKeyDoc]:
        return cast("Collection[IngestKeyDoc]", self.db.ingest_keys)

    @property
    def login_attempts(self) -> Collection[LoginAttemptDoc]:
        return cast("Collection[LoginAttemptDoc]", self.db.login_attempts)

    @property
    def events(self) -> Collection[EventDoc]:
        return cast("Collection[EventDoc]", self.db.events)

    @property
    def sessions(self) -> Collection[SessionDoc]:
        return cast("Collection[SessionDoc]", self.db.sessions)

    @property
    def watch_segments(self) -> Collection[WatchSegmentDoc]:
        return cast("Collection[WatchSegmentDoc]", self.db.watch_segments)

    @property
    def registrations(self) -> Collection[RegistrationDoc]:
        return cast("Collection[RegistrationDoc]", self.db.registrations)

    @property
    def attendee_identities(self) -> Collection[AttendeeIdentityDoc]:
        return cast("Collection[AttendeeIdentityDoc]", self.db.attendee_identities)

    @property
    def segment_inbox(self) -> Collection[InboxBatchDoc]:
        return cast("Collection[InboxBatchDoc]", self.db.segment_inbox)

    @property
    def segment_intents(self) -> Collection[SegmentIntentDoc]:
        return cast("Collection[SegmentIntentDoc]", self.db.segment_intents)

    @property
    def rollup_leases(self) -> Collection[RollupLeaseDoc]:
        return cast("Collection[RollupLeaseDoc]", self.db.rollup_leases)

    @property
    def attendees(self) -> Collection[AttendeeRowDoc]:
        return cast("Collection[AttendeeRowDoc]", self.db.attendees)

    @property
    def people(self) -> Collection[PersonDoc]:
        return cast("Collection[PersonDoc]", self.db.people)

    @property
    def audience_edges(self) -> Collection[AudienceEdgesDoc]:
        return cast("Collection[AudienceEdgesDoc]", self.db.audience_edges)

    @property
    def event_summaries(self) -> Collection[EventSummaryDoc]:
        return cast("Collection[EventSummaryDoc]", self.db.event_summaries)

    @property
    def rollup_journal(self) -> Collection[JournalPartDoc]:
        return cast("Collection[JournalPartDoc]", self.db.rollup_journal)

    @property
    def tasks(self) -> Collection[TaskDoc]:
        return cast("Collection[TaskDoc]", self.db.tasks)

    @property
    def recompute_locks(self) -> Collection[RecomputeLockDoc]:
        return cast("Collection[RecomputeLockDoc]", self.db.recompute_locks)

    @property
    def provider_state(self) -> Collection[ProviderStateDoc]:
        return cast("Collection[ProviderStateDoc]", self.db.provider_state)

    @property
    def webhooks(self) -> Collection[WebhookDoc]:
        return cast("Collection[WebhookDoc]", self.db.webhooks)

    @property
    def webhook_outbox(self) -> Collection[WebhookOutboxDoc]:
        return cast("Collection[WebhookOutboxDoc]", self.db.webhook_outbox)

    @property
    def webhook_deliveries(self) -> Collection[WebhookDeliveryDoc]:
        return cast("Collection[WebhookDeliveryDoc]", self.db.webhook_deliveries)

    async def ping(self) -> None:
        await self.db.command("ping")

    async def ensure_indexes(self) -> None:
        """Every collection's indexes, one command per collection (existing ones are kept)."""
        for name, models in INDEXES.items():
            if models:
                await self.db[name].create_indexes(models)

    def close(self) -> None:
        self.client.close()


def _projections_left_alone(collection_class: Any) -> None:
    """mongomock adds `_id: 1` to the projection dict a query hands it. A projection kept in a
    module and used on both stores in one process (the tests) would then reach a server as an
    exclusion carrying `_id: 1`, which the test server refuses (tests/test_mongo_test_server.py):
    the embedded store works on a copy instead."""
    original = collection_class._copy_only_fields
    if getattr(original, "leaves_projection_alone", False):
        return

    @functools.wraps(original)
    def copy_only_fields(self: Any, doc: Any, fields: Any, container: Any) -> Any:
        return original(self, doc, dict(fields) if isinstance(fields, dict) else fields, container)

    copy_only_fields.leaves_projection_alone = True  # type: ignore[attr-defined]
    collection_class._copy_only_fields = copy_only_fields


def embedded_client() -> Any:
    """The in-process store of `demo` (and of the fast test layer): mongomock behind Motor's API."""
    import mongomock.collection
    from mongomock_motor import AsyncMongoMockClient

    _projections_left_alone(mongomock.collection.Collection)
    return AsyncMongoMockClient(tz_aware=True)


async def bulk_write(settings: Settings, collection: Collection[Any], ops: Sequence[Any]) -> int:
    """Writes as unordered bulk commands of at most WRITE_BATCH statements; the documents matched.

    The embedded store (mongomock) rejects the bulk updates pymongo 4.10+ sends, so there they
    go one by one."""
    if settings.embedded:
        return await _one_by_one(collection, ops)
    matched = 0
    for start in range(0, len(ops), settings.write_batch):
        result = await collection.bulk_write(list(ops[start : start + settings.write_batch]), ordered=False)
        matched += int(result.matched_count)
    return matched


async def _one_by_one(collection: Collection[Any], ops: Sequence[Any]) -> int:
    matched = 0
    for op in ops:
        if isinstance(op, InsertOne):
            await collection.insert_one(op._doc)
            continue
        if isinstance(op, ReplaceOne):
            done = await collection.replace_one(op._filter, op._doc, upsert=bool(op._upsert))
        elif isinstance(op, UpdateOne):
            done = await collection.update_one(op._filter, op._doc, upsert=bool(op._upsert))
        elif isinstance(op, UpdateMany):
            done = await collection.update_many(op._filter, op._doc, upsert=bool(op._upsert))
        elif isinstance(op, DeleteOne):
            await collection.delete_one(op._filter)
            continue
        else:
            raise TypeError(f"no one-by-one form of {type(op).__name__}")
        matched += done.matched_count
    return matched


def dates_as_ms(collection: Collection[Any], settings: Settings) -> Collection[Any]:
    """The collection read with its dates as milliseconds straight from BSON (no datetimes built
    only to be turned back into numbers); the embedded store gives datetimes, which epoch_ms
    also takes."""
    if settings.embedded:
        return collection
    options = collection.codec_options.with_options(datetime_conversion=DatetimeConversion.DATETIME_MS)
    return collection.with_options(codec_options=options)


def connect(settings: Settings) -> Database:
    """A Motor client for settings.mongodb_url, or the embedded in-process store for `mem://`."""
    if settings.mongodb_url.startswith("mem://"):
        client: Any = embedded_client()
        return Database(client, client[settings.mongodb_database_name])
    client = AsyncIOMotorClient(
        settings.mongodb_url,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        socketTimeoutMS=max(settings.mongodb_timeout_ms * 5, 10_000),
    )
    gate = asyncio.Semaphore(database_slots(settings))
    database = _GatedDatabase(client[settings.mongodb_database_name], gate)
    gated = cast("AsyncIOMotorDatabase[RawDocument]", database)
    return Database(client, gated, gate=gate)
