"""Webhook endpoints and their delivery log; the event stream's query."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from shared.documents import WebhookDeliveryDoc, WebhookDoc
from shared.models import Strict
from shared.webhooks import DELIVERY_STATUSES, TOPICS, Topic
from web.contract.common import Answer, Count, Id, NotEmpty, Query, UtcTime
from web.contract.sessions import PageQuery

DeliveryStatus = Literal[DELIVERY_STATUSES]  # type: ignore[valid-type]
TOPIC_WORDS = (
    "`session.analytics.updated` (a session's numbers changed; data: its list item with duration and "
    "watchTime), `event.analytics.updated` (data: the event summary), `recompute.finished` (data: "
    "eventId, sessions, finishedAt), `session.duration.updated` (data: the session's list item)"
)
WEBHOOK_EXAMPLE: dict[str, Any] = {
    "url": "https://crm.example.com/hooks/analytics",
    "topics": ["session.analytics.updated", "recompute.finished"],
    "eventId": "ev1",
}


class WebhookIn(Strict):
    """Body of POST /rest/host/webhooks: an endpoint for one event (`eventId`) or for every event
    of one organizer (`organizerId`), exactly one of the two."""

    model_config = ConfigDict(json_schema_extra={"examples": [WEBHOOK_EXAMPLE]})

    url: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=2000)] = Field(
        description="https only (plain http only where the server allows it); a name resolving to a "
        "loopback, private, link-local or metadata address is refused."
    )
    topics: list[Topic] = Field(min_length=1, max_length=len(TOPICS), description=f"Any of {TOPIC_WORDS}.")
    eventId: Id | None = None
    organizerId: Id | None = None

    @field_validator("topics")
    @classmethod
    def _distinct(cls, topics: list[str]) -> list[str]:
        if len(set(topics)) != len(topics):
            raise ValueError("a topic is named twice")
        return topics

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if (self.eventId is None) == (self.organizerId is None):
            raise ValueError("give exactly one of eventId and organizerId")
        return self


class Webhook(Answer):
    """A registered endpoint; its secret is shown only in the answer that created it."""

    webhookId: str = Field(pattern=r"^wh_[0-9a-f]{24}$")
    eventId: Id | None
    organizerId: Id | None
    url: str
    topics: list[Topic]
    createdAt: UtcTime
    disabled: bool = Field(description="True once every delivery failed for about a day; none are sent.")
    disabledAt: UtcTime | None
    disabledReason: str | None = Field(description="Why it was disabled: since when, and the last failure.")

    @classmethod
    def of(cls, doc: WebhookDoc) -> Self:
        return cls.model_validate(_webhook_fields(doc))


def _webhook_fields(doc: WebhookDoc) -> dict[str, Any]:
    return {
        "webhookId": doc["_id"],
        **{key: doc.get(key) for key in ("eventId", "organizerId", "url", "topics", "createdAt")},
        "disabled": bool(doc.get("disabled")),
        "disabledAt": doc.get("disabledAt"),
        "disabledReason": doc.get("disabledReason"),
    }


class NewWebhook(Webhook):
    """The endpoint just registered, with the secret that signs its deliveries: keep it now, it is
    never shown again."""

    secret: str = Field(pattern=r"^whsec_[A-Za-z0-9+/=]{40,100}$")

    @classmethod
    def of(cls, doc: WebhookDoc) -> Self:
        return cls.model_validate(_webhook_fields(doc) | {"secret": doc["secret"]})


class Webhooks(Answer):
    """The endpoints of an event or of an organizer."""

    data: list[Webhook]


class WebhookScope(Query):
    """`?eventId=E` or `?organizerId=O`: whose endpoints (exactly one)."""

    eventId: Annotated[Id | None, NotEmpty] = Field(None, description="The event's own endpoints.")
    organizerId: Annotated[Id | None, NotEmpty] = Field(None, description="The organizer's endpoints.")


class Delivery(Answer):
    """One message to an endpoint: `deliveryId` is its `webhook-id`, the same on every attempt."""

    deliveryId: str = Field(pattern=r"^msg_[0-9a-f]{24}$")
    topic: Topic
    subject: Id = Field(description="The session (session topics) or the event it is about.")
    status: DeliveryStatus = Field(
        description="PENDING (to be sent or retried), DELIVERED, FAILED (the endpoint was disabled), "
        "SUPERSEDED (a newer message about the same subject replaced it before it got through)."
    )
    attempts: Count
    responseStatus: int | None = Field(description="The HTTP status of the last attempt's answer.")
    error: str | None = Field(description="What went wrong in the last attempt.")
    createdAt: UtcTime
    lastAttemptAt: UtcTime | None
    nextAttemptAt: UtcTime | None
    deliveredAt: UtcTime | None

    @classmethod
    def of(cls, doc: WebhookDeliveryDoc) -> Self:
        fields = ("topic", "subject", "status", "attempts", "responseStatus", "error", "createdAt")
        times = ("lastAttemptAt", "nextAttemptAt", "deliveredAt")
        return cls.model_validate(
            {"deliveryId": doc["_id"], **{k: doc.get(k) for k in fields}, **{k: doc.get(k) for k in times}}
        )


class Deliveries(Answer):
    """A page of an endpoint's delivery log, newest first."""

    page: Count
    size: Annotated[int, Field(ge=1)]
    data: list[Delivery]


class DeliveryQuery(PageQuery):
    """Paging of the delivery log."""
