"""The documents each collection stores, as the code reads and writes them.

Every key is optional to the type checker except `_id`: reads name a projection (so a document
read holds only the fields asked for) and most writes are `$set` updates, not whole documents.
What the types do pin down is each field's name and the type of its value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Required, TypedDict


class UserDoc(TypedDict, total=False):
    """`users`: a host account; `_id` is a random hex id, `email` is unique."""

    _id: Required[str]
    email: str
    passwordHash: str
    role: str
    eventIds: list[str]
    organizerIds: list[str]
    failedLogins: int
    lockedUntil: datetime | None
    createdAt: datetime


class TokenDoc(TypedDict, total=False):
    """`tokens`: a host token by its digest, with a snapshot of the user's grants."""

    _id: Required[str]
    userId: str
    role: str
    eventIds: list[str]
    organizerIds: list[str]
    expiresAt: datetime
    createdAt: datetime
    revoked: bool


class IngestKeyDoc(TypedDict, total=False):
    """`ingest_keys`: an ingest key by its digest; `eventIds` None means every event."""

    _id: Required[str]
    eventIds: list[str] | None
    createdAt: datetime
    revoked: bool


class LoginAttemptDoc(TypedDict, total=False):
    """`login_attempts`: the attempts counted under one login key (`_id`) while its window is
    open (shared/login_counters.py)."""

    _id: Required[str]
    count: int
    expiresAt: datetime
    lockedUntil: datetime


class EventDoc(TypedDict, total=False):
    """`events`: an event; `analyticsVersion` changes whenever one of its numbers does."""

    _id: Required[str]
    organizerId: str
    name: str
    timezone: str
    analyticsVersion: int
    analyticsChangedAt: datetime
    createdAt: datetime


class WatchTimeDoc(TypedDict):
    total: float
    live: float
    recording: float


class SessionDoc(TypedDict, total=False):
    """`sessions`: what a host wrote, the duration sync's state and the rollup's numbers."""

    _id: Required[str]
    eventId: str
    title: str
    startTime: datetime
    endTime: datetime
    format: str
    streamProvider: str | None
    videoId: str | None
    createdAt: datetime
    # Duration sync (worker/durations.py)
    duration: float | None
    durationProvider: str | None
    durationCheckAt: datetime
    durationStatus: str
    durationDetail: str | None
    durationSyncedAt: datetime
    # Rollup (worker/rollup.py): computed values, set whole on every rollup
    rollupPending: bool
    rollupVersion: int
    registeredUserCount: int
    attendeeCount: int
    avgAttendedDuration: float | None
    liveViews: int | None
    recordingViews: int | None
    watchTime: WatchTimeDoc
    avgLiveWatch: float | None
    avgRecordingWatch: float | None
    engagementLive: float | None
    engagementRecording: float | None
    attendeeRows: int  # rows in `attendees`: the attendee list's recordsTotal
    analyticsUpdatedAt: datetime | None
    # Rule 9's series as shared/viewers.py stores it (up to 1,440 counts and one per date)
    viewers: dict[str, Any]
    # The sums and counts a rollup moves users in and out of (shared/session_totals.py).
    totals: dict[str, int]
    viewersState: dict[str, Any]


class WatchSegmentDoc(TypedDict, total=False):
    """`watch_segments`: one segment by `eventId:segmentId`, stored once."""

    _id: Required[str]
    eventId: str
    segmentId: str
    sessionId: str
    userId: str
    mode: str
    start: datetime
    end: datetime


class RegistrationDoc(TypedDict, total=False):
    """`registrations`: one user's registration by `eventId:sessionId:userId`."""

    _id: Required[str]
    eventId: str
    sessionId: str
    userId: str
    registeredAt: datetime


class AttendeeIdentityDoc(TypedDict, total=False):
    """`attendee_identities`: one user's personal fields for one event, `_id` = `eventId:userId`."""

    _id: Required[str]
    eventId: str
    userId: str
    email: str | None
    firstName: str | None
    lastName: str | None
    ticketId: str | None
    updatedAt: datetime


class InboxBatchDoc(TypedDict, total=False):
    """`segment_inbox`: the items one request stored, not rolled up yet (`kind` says which):
    `count` plain items (shared/inbox.py)."""

    _id: Required[str]
    eventId: str
    kind: str
    receivedAt: datetime
    count: int
    items: list[dict[str, Any]]


class SegmentIntentDoc(TypedDict, total=False):
    """`segment_intents`: "this request is storing these items" (shared/inbox.py); `_id` is the
    request's, as its inbox batch."""

    _id: Required[str]
    eventId: str
    kind: str
    receivedAt: datetime
    ids: list[str]


class AttendeeRowDoc(TypedDict, total=False):
    """`attendees`: one user's state and numbers in one session, `_id` = `sessionId:userId`
    (shared/attendees.py)."""

    _id: Required[str]
    eventId: str
    sessionId: str
    userId: str
    email: str | None
    firstName: str | None
    lastName: str | None
    ticketId: str | None
    sortName: str | None
    searchText: str
    attended: bool
    attendedSeconds: float
    liveSeconds: float
    recordingSeconds: float
    engagement: float | None
    completion: float | None
    registeredAt: datetime | None
    firstJoinedAt: datetime | None
    lastLeftAt: datetime | None
    joins: int
    live: list[list[datetime]]
    recording: list[list[datetime]]


class PersonDoc(TypedDict, total=False):
    """`people`: one person of an event, `_id` = `eventId:userId` (shared/audience.py)."""

    _id: Required[str]
    eventId: str
    userId: str
    email: str | None
    firstName: str | None
    lastName: str | None
    ticketId: str | None
    sortName: str | None
    searchText: str
    sessionRows: int  # sessions with a row of the person
    sessionsRegistered: int
    sessionsAttended: int
    attended: bool
    noShow: bool
    attendedSeconds: float
    liveSeconds: float
    recordingSeconds: float
    firstJoinedAt: datetime | None
    lastLeftAt: datetime | None
    completion: float | None
    completionSum: float  # of the sessions' known completions, and how many (the mean's parts)
    completionSessions: int
    live: list[list[datetime]]
    days: list[str]
    rebuild: str  # the recompute that wrote it last (the ones it did not write are deleted)


class AudienceEdgesDoc(TypedDict, total=False):
    """`audience_edges`: LIVE starts minus ends per millisecond offset of one chunk of one peak's
    scope (an event, or `eventId/sessionId`), `_id` = `scope:chunkStartMs`."""

    _id: Required[str]
    eventId: str
    scope: str
    start: datetime
    edges: dict[str, int]


class EventSummaryDoc(TypedDict, total=False):
    """`event_summaries`: an event's audience numbers (shared/audience.py), `_id` = eventId, and
    the writes of the rollup committing them (`pending`, worker/journal.py)."""

    _id: Required[str]
    eventId: str
    uniqueRegistrants: int
    uniqueAttendees: int
    noShows: int
    liveOnly: int
    recordingOnly: int
    both: int
    watchMs: dict[str, int]
    perDay: dict[str, int]
    chunks: dict[str, dict[str, int]]
    peakConcurrent: int
    peakAt: datetime | None
    updatedAt: datetime
    rebuilding: bool  # a recompute is rebuilding the audience
    pending: dict[str, Any]


class JournalPartDoc(TypedDict, total=False):
    """`rollup_journal`: a part of a rollup's committed writes too large for the summary."""

    _id: Required[str]
    eventId: str
    ops: list[dict[str, Any]]


class RollupLeaseDoc(TypedDict, total=False):
    """`rollup_leases`: who rolls an event (`_id`) up, until when."""

    _id: Required[str]
    owner: str
    kind: str
    expiresAt: datetime


class TaskProgressDoc(TypedDict):
    done: int
    total: int


class TaskDoc(TypedDict, total=False):
    """`tasks`: a recompute's state, progress and answer, as `GET /rest/host/tasks/{id}` shows it."""

    _id: Required[str]
    kind: Literal["recompute"]
    eventId: str
    state: str
    progress: TaskProgressDoc
    # The worker's answer: counts by what was done (its shape is the task's own).
    result: dict[str, Any] | None
    error: str | None
    createdAt: datetime
    heartbeatAt: datetime
    runId: str
    worker: str
    attempts: int
    resends: int
    restarts: int


class RecomputeLockDoc(TypedDict, total=False):
    """`recompute_locks`: the task that holds an event's (`_id`) recompute."""

    _id: Required[str]
    taskId: str


class ProviderStateDoc(TypedDict, total=False):
    """`provider_state`: a provider's (`_id`) last duration-sync run, pause and totals."""

    _id: Required[str]
    lastRunAt: datetime
    lastRun: dict[str, Any]
    lastError: str | None
    lastSuccessAt: datetime
    pausedUntil: datetime
    missingCredentials: list[str]
    totalCalls: int
    totalFailures: int
    totalRetries: int


class WebhookDoc(TypedDict, total=False):
    """`webhooks`: an endpoint a host registered for one event or one organizer's events."""

    _id: Required[str]  # `wh_` + random hex
    eventId: str | None  # one of eventId, organizerId is set
    organizerId: str | None
    url: str
    topics: list[str]
    secret: str  # `whsec_` + base64: deliveries are signed with it, so it is kept as given
    createdBy: str
    createdAt: datetime
    disabled: bool
    disabledAt: datetime | None
    disabledReason: str | None
    failingSince: datetime | None  # the first failed attempt since the last success
    leaseUntil: datetime | None  # one delivery run per endpoint at a time (worker/webhooks.py)
    leaseOwner: str | None


class WebhookOutboxDoc(TypedDict, total=False):
    """`webhook_outbox`: one document per (endpoint, topic, subject) whose numbers changed since
    its last delivery; `_id` is `webhookId|topic|subject`."""

    _id: Required[str]
    webhookId: str
    topic: str
    subject: str  # a sessionId, or the eventId for the event topics
    eventId: str
    dirty: bool
    changes: int  # bumped by every change: a delivery run clears `dirty` only if none came meanwhile
    dirtySince: datetime  # the first change not delivered yet (the lag metric)
    sentAt: datetime | None  # the subject's last delivery was made then (WEBHOOK_MIN_INTERVAL_S)
    data: dict[str, Any]  # what a topic without stored numbers carries (recompute.finished)


class WebhookDeliveryDoc(TypedDict, total=False):
    """`webhook_deliveries`: one message to one endpoint; `_id` is its `webhook-id` (`msg_` + hex),
    the same on every attempt."""

    _id: Required[str]
    webhookId: str
    eventId: str
    topic: str
    subject: str
    payload: dict[str, Any]  # the signed body, fixed when the message was made
    status: Literal["PENDING", "DELIVERED", "FAILED", "SUPERSEDED"]
    attempts: int
    responseStatus: int | None
    error: str | None
    createdAt: datetime
    changedAt: datetime  # when the change it carries was first written
    lastAttemptAt: datetime | None
    nextAttemptAt: datetime | None
    deliveredAt: datetime | None
