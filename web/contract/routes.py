"""The route table: every operation once, with who may call it, its inputs, answers and errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel

from shared import errors as e
from shared.models import LoginIn, SessionIn
from web.contract import attendees, audience, auth, events, health, ingest, sessions, tasks, webhooks
from web.contract.common import OpenAPIDocument, Query
from web.contract.docs import DocsAssetPath
from web.dashboard import HostAssetPath


class Who(Enum):
    ANYONE = "anyone"
    HOST = "host roles (user token)"
    INGEST = "ingest key"


# What any route a kind of caller may call can answer, besides the route's own errors.
CREDENTIALS = (e.Unauthorized, e.NotEventHost, e.WrongCredentialKind, e.TooManyRequests, e.Unavailable)
CALLER_ERRORS: dict[Who, tuple[type[e.ServiceError], ...]] = {
    Who.ANYONE: (), Who.HOST: CREDENTIALS, Who.INGEST: (e.BadRequest, e.EventNotFound, *CREDENTIALS)
}  # fmt: skip


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None
    media: str = "application/json"
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    who: Who
    replies: dict[int, Reply]
    errors: tuple[type[e.ServiceError], ...] = ()
    query: type[Query] | None = None
    body: type[BaseModel] | None = None
    description: str = ""
    example: dict[str, Any] = field(default_factory=dict)  # parameter values
    path_model: type[BaseModel] | None = None  # path parameters other than ids

    @property
    def all_errors(self) -> tuple[type[e.ServiceError], ...]:
        slow_body = (e.RequestTimeout,) if self.body is not None else ()  # body not in in time
        return tuple(dict.fromkeys((*self.errors, *CALLER_ERRORS[self.who], *slow_body)))


CACHED = ("ETag", "Cache-Control")
NOT_MODIFIED = Reply("The client's ETag still matches; no body.", headers=CACHED)
SESSION_ERRORS = (e.BadRequest, e.SessionNotFound, e.EventNotFound)
EVENT_ERRORS = (e.BadRequest, e.EventNotFound)

OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/rest/u/login", "login", "auth", "Log in", Who.ANYONE,
              {200: Reply("A new token.", auth.LoginAnswer)},
              (e.BadRequest, e.WrongCredentials, e.AccountLocked, e.TooManyRequests, e.Unavailable),
              body=LoginIn, description="Exchanges an email and password for a user token."),
    Operation("POST", "/rest/u/logout", "logout", "auth", "Log out", Who.HOST,
              {204: Reply("The token is revoked.")}, description="Revokes the token the request carries."),
    Operation("GET", "/rest/host/session/analytics", "listSessions", "sessions",
              "An event's sessions with their numbers", Who.HOST,
              {200: Reply("One page of sessions.", sessions.SessionList, headers=CACHED), 304: NOT_MODIFIED},
              EVENT_ERRORS, query=sessions.SessionListQuery, example={"eventId": "ev1", "size": 50},
              description="Reads precomputed numbers; the answer carries an ETag."),
    Operation("GET", "/rest/host/session/analytics/csv", "sessionOverviewCsv", "sessions",
              "Session Overview CSV of an event", Who.HOST,
              {200: Reply("The CSV, streamed: the list's rows in its order, every page; dates in the event's "
                          "zone, named in the header; empty cells are nulls.",
                          media="text/csv", headers=("Content-Disposition",))},
              (*EVENT_ERRORS, e.NotAcceptable), query=sessions.SessionFilterQuery, example={"eventId": "ev1"},
              description="The list's searchString, sessionFormat, sort. 406 when Accept excludes text/csv."),
    Operation("POST", "/rest/host/session/analytics/recompute", "recomputeEvent", "tasks",
              "Recompute an event's numbers", Who.HOST,
              {202: Reply("The task; while one runs for the event, the same task.", tasks.RecomputeAccepted,
                          headers=("Location",))},
              EVENT_ERRORS, query=sessions.EventQuery, example={"eventId": "ev1"},
              description="Duration sync plus a full rollup of every session of the event, one at a time."),
    Operation("GET", "/rest/host/session/{sessionId}/analytics", "sessionDetail", "sessions",
              "One session's numbers", Who.HOST,
              {200: Reply("The session.", sessions.SessionDetail, headers=CACHED), 304: NOT_MODIFIED},
              SESSION_ERRORS, example={"sessionId": "s1"}),
    Operation("GET", "/rest/host/session/{sessionId}/viewers", "sessionViewers", "sessions",
              "A session's viewers over time", Who.HOST,
              {200: Reply("Live viewers per bucket, the peak, recording viewers per date.",
                          sessions.SessionViewers, headers=CACHED), 304: NOT_MODIFIED},
              SESSION_ERRORS, example={"sessionId": "s1"}, description="Precomputed by the rollup (rule 9)."),
    Operation("GET", "/rest/host/session/{sessionId}/attendee", "sessionAttendees", "attendees",
              "A session's attendees", Who.HOST, {200: Reply("A page of attendees.", attendees.AttendeeList)},
              SESSION_ERRORS, query=attendees.AttendeeQuery, example={"sessionId": "s1", "size": 50}),
    Operation("GET", "/rest/host/session/{sessionId}/attendee/csv", "sessionAttendeesCsv", "attendees",
              "A session's attendees as CSV", Who.HOST, {200: Reply("Every row the list would give, in its "
              "order, streamed; empty cells are nulls.", media="text/csv", headers=("Content-Disposition",))},
              (*SESSION_ERRORS, e.NotAcceptable), query=attendees.AttendeeOrder, example={"sessionId": "s1"}),
    Operation("GET", "/rest/host/event/{eventId}/analytics", "eventSummary", "audience",
              "An event's unique audience", Who.HOST,
              {200: Reply("People, no-shows, modes, watch time, the peak and attendees per day.",
                          audience.EventSummary, headers=CACHED), 304: NOT_MODIFIED},
              EVENT_ERRORS, example={"eventId": "ev1"},
              description="Precomputed by the rollup (rule 12): fresh within 10 s of ingestion."),
    Operation("GET", "/rest/host/event/{eventId}/attendee", "eventPeople", "audience",
              "An event's people", Who.HOST, {200: Reply("A page of its people.", audience.PeopleList)},
              EVENT_ERRORS, query=audience.PeopleQuery, example={"eventId": "ev1", "size": 50},
              description="One row per person registered or attending in any session (rule 13)."),
    Operation("GET", "/rest/host/event/{eventId}/attendee/csv", "eventPeopleCsv", "audience",
              "An event's people as CSV", Who.HOST, {200: Reply("Every row the list would give, in its "
              "order, streamed; empty cells are nulls.", media="text/csv", headers=("Content-Disposition",))},
              (*EVENT_ERRORS, e.NotAcceptable), query=audience.PeopleOrder, example={"eventId": "ev1"}),
    Operation("DELETE", "/rest/host/event/{eventId}/attendee/{userId}", "eraseAttendee", "attendees",
              "Erase an attendee's personal fields", Who.HOST, {204: Reply("Erased, or nothing was stored.")},
              EVENT_ERRORS, example={"eventId": "ev1", "userId": "u1"}, description="Removes the user's "
              "email, names and ticketId for the event from everything stored; numbers stay. Idempotent. "
              "(`.../attendee/csv` is the people CSV: a user id `csv` cannot be erased here.)"),
    Operation("PUT", "/rest/host/session/{sessionId}", "putSession", "sessions", "Create or update a session",
              Who.HOST,
              {200: Reply("Updated; the session as the list shows it.", sessions.SessionItem),
               201: Reply("Created; the session as the list shows it.", sessions.SessionItem)},
              EVENT_ERRORS, body=SessionIn, example={"sessionId": "s1"},
              description="A changed video resets the duration and schedules a rollup. A session never moves "
              "to another event (400); one of an event the user does not host is 403 4030201. `analytics` "
              "is not a session id: that path is the session list (405)."),
    Operation("GET", "/rest/host/tasks/{taskId}", "taskStatus", "tasks", "Follow a task", Who.HOST,
              {200: Reply("The task.", tasks.TaskStatus)}, (e.NotFound, e.EventNotFound),
              example={"taskId": "3f2c9a1e7b5d4c6a8e0f1a2b3c4d5e6f"}),
    Operation("POST", "/rest/events/{eventId}/watch-segments", "postWatchSegments", "ingest",
              "Send watch segments", Who.INGEST, {200: Reply("What became of each.", ingest.IngestResult)},
              body=ingest.WatchSegmentBatch, example={"eventId": "ev1"}),
    Operation("POST", "/rest/events/{eventId}/registrations", "postRegistrations", "ingest",
              "Send registrations", Who.INGEST,
              {200: Reply("What became of each registration.", ingest.IngestResult)},
              body=ingest.RegistrationBatch, example={"eventId": "ev1"}),
    Operation("GET", "/rest/host/events", "hostEvents", "dashboard", "The events the user may host", Who.HOST,
              {200: Reply("The events, by name.", events.HostEvents)}),
    Operation("POST", "/rest/host/webhooks", "createWebhook", "webhooks", "Register a webhook endpoint",
              Who.HOST, {201: Reply("The endpoint, with its signing secret (shown this once).",
                                    webhooks.NewWebhook, headers=("Location",))},
              EVENT_ERRORS, body=webhooks.WebhookIn,
              description="For one event (`eventId`) or every event of an organizer (`organizerId`). "
              "Deliveries follow the Standard Webhooks specification (`webhook-id`, `webhook-timestamp`, "
              "`webhook-signature`: HMAC-SHA256 with the secret); bursts are coalesced, retries keep "
              "their `webhook-id`. The URL must be https; a name resolving to a loopback, private, "
              "link-local or metadata address is refused (400) now and at every delivery."),
    Operation("GET", "/rest/host/webhooks", "listWebhooks", "webhooks", "An event's or organizer's endpoints",
              Who.HOST, {200: Reply("The endpoints (no secrets).", webhooks.Webhooks)}, EVENT_ERRORS,
              query=webhooks.WebhookScope, example={"eventId": "ev1"},
              description="Exactly one of `eventId` and `organizerId`."),
    Operation("GET", "/rest/host/webhooks/{webhookId}", "readWebhook", "webhooks", "One endpoint", Who.HOST,
              {200: Reply("The endpoint; `disabled` says whether it gave up, and why.", webhooks.Webhook)},
              (e.NotFound, e.EventNotFound), example={"webhookId": "wh_0123456789abcdef01234567"}),
    Operation("DELETE", "/rest/host/webhooks/{webhookId}", "deleteWebhook", "webhooks", "Delete an endpoint",
              Who.HOST, {204: Reply("Deleted with its delivery log; nothing more is sent.")},
              (e.NotFound, e.EventNotFound), example={"webhookId": "wh_0123456789abcdef01234567"}),
    Operation("GET", "/rest/host/webhooks/{webhookId}/deliveries", "webhookDeliveries", "webhooks",
              "An endpoint's delivery log", Who.HOST, {200: Reply("Newest first.", webhooks.Deliveries)},
              (e.BadRequest, e.NotFound, e.EventNotFound), query=webhooks.DeliveryQuery,
              example={"webhookId": "wh_0123456789abcdef01234567"}),
    Operation("POST", "/rest/host/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", "redeliver",
              "webhooks", "Send a message again", Who.HOST,
              {202: Reply("Queued: the same message, `webhook-id` and numbers.", webhooks.Delivery)},
              (e.BadRequest, e.NotFound, e.EventNotFound),
              example={"webhookId": "wh_0123456789abcdef01234567",
                       "deliveryId": "msg_0123456789abcdef01234567"},
              description="Only the newest message of its subject (400 otherwise: an older one would "
              "bring older numbers after newer ones). Enables a disabled endpoint again."),
    Operation("GET", "/rest/host/event/{eventId}/stream", "eventStream", "dashboard",
              "The event's changes as they land (Server-Sent Events)", Who.HOST,
              {200: Reply("`text/event-stream`: `ready` (id: where the stream starts), `sessions` "
                          "(data: {eventId, items: the changed sessions as the list shows them, with "
                          "duration and watchTime}), `summary` (data: the event summary), `reset` (changes "
                          "were missed: read everything again); comments as heartbeats.",
                          media="text/event-stream", headers=("Cache-Control",))},
              EVENT_ERRORS, example={"eventId": "ev1"},
              description="Send `Last-Event-ID` to resume after the last event seen: nothing is missed "
              "within the replay log. A stream ends after STREAM_MAX_S (an hour by default); reconnect "
              "with Last-Event-ID. Authenticate with the Authorization header (a fetch-based reader)."),
    Operation("GET", "/host/", "dashboard", "dashboard", "The host dashboard page", Who.ANYONE,
              {200: Reply("The page; its data comes from the routes above.", media="text/html",
                          headers=("Content-Security-Policy",))}),
    Operation("GET", "/host/assets/{asset}", "dashboardAsset", "dashboard", "Dashboard assets", Who.ANYONE,
              {200: Reply("The file.", media="*/*")}, (e.NotFound,), path_model=HostAssetPath,
              example={"asset": "app.js"}),
    Operation("GET", "/healthz", "healthz", "operations", "Liveness", Who.ANYONE,
              {200: Reply("Alive.", health.Health)}),
    Operation("GET", "/readyz", "readyz", "operations", "Readiness", Who.ANYONE,
              {200: Reply("MongoDB and Redis reachable.", health.Ready)}, (e.Unavailable,)),
    Operation("GET", "/metrics", "metrics", "operations", "Prometheus metrics", Who.ANYONE,
              {200: Reply("Prometheus text exposition.", media="text/plain")}),
    Operation("GET", "/openapi.json", "openapi", "docs", "This OpenAPI document", Who.ANYONE,
              {200: Reply("OpenAPI 3.1.", OpenAPIDocument)}),
    Operation("GET", "/docs", "docs", "docs", "Docs page", Who.ANYONE,
              {200: Reply("Swagger UI rendering this document; every asset from this server.",
                          media="text/html", headers=("Content-Security-Policy",))}),
    Operation("GET", "/docs/{asset}", "docsAsset", "docs", "Docs page assets (Swagger UI, its licence)",
              Who.ANYONE, {200: Reply("The file: CSS, JavaScript or text.", media="text/*")}, (e.NotFound,),
              path_model=DocsAssetPath, example={"asset": "LICENSE"}),
)  # fmt: skip
