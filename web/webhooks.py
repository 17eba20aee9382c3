"""Host webhook routes: register, list, read and delete endpoints; their delivery log; redeliver."""

from __future__ import annotations

from aiohttp import web

from shared.access import HostPrincipal
from shared.documents import WebhookDoc
from shared.errors import BadRequest, NotEventHost, NotFound
from shared.store import now
from shared.tasks import TaskName, webhook_signal_key
from shared.urlguard import checked_addresses, endpoint_url
from shared.webhooks import PENDING, new_secret, new_webhook_id
from web.auth import authenticate_host, hosted_event
from web.contract.common import path_id
from web.contract.webhooks import (
    Deliveries,
    Delivery,
    DeliveryQuery,
    NewWebhook,
    Webhook,
    WebhookIn,
    Webhooks,
    WebhookScope,
)
from web.jsonio import parse_model, read_json
from web.keys import DB, SETTINGS, TASKS

routes = web.RouteTableDef()


def _may_host_organizer(principal: HostPrincipal, organizer_id: str) -> bool:
    return principal.role == "SUPER_ADMIN" or (
        principal.role == "ORGANIZER_ADMIN" and organizer_id in principal.organizer_ids
    )


async def _check_scope(
    request: web.Request, principal: HostPrincipal, event_id: str | None, organizer_id: str | None
) -> None:
    """The caller hosts the endpoint's event, or administers its organizer (super admins all)."""
    if event_id is not None:
        await hosted_event(request, principal, event_id)
    elif organizer_id is not None and not _may_host_organizer(principal, organizer_id):
        raise NotEventHost(f"user {principal.user_id} does not administer organizer {organizer_id}")


async def _hosted_webhook(request: web.Request) -> WebhookDoc:
    principal = await authenticate_host(request)
    webhook_id = path_id(request, "webhookId")
    doc = await request.app[DB].webhooks.find_one({"_id": webhook_id})
    if doc is None:
        raise NotFound(f"no webhook {webhook_id}")
    await _check_scope(request, principal, doc.get("eventId"), doc.get("organizerId"))
    return doc


@routes.post("/rest/host/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    body = parse_model(WebhookIn, await read_json(request))
    await _check_scope(request, principal, body.eventId, body.organizerId)
    settings = request.app[SETTINGS]
    await checked_addresses(endpoint_url(body.url, settings), settings)  # DNS now; again at each delivery
    doc: WebhookDoc = {
        "_id": new_webhook_id(),
        "eventId": body.eventId,
        "organizerId": body.organizerId,
        "url": body.url,
        "topics": list(body.topics),
        "secret": new_secret(),
        "createdBy": principal.user_id,
        "createdAt": now().replace(microsecond=0),
        "disabled": False,
        "disabledAt": None,
        "disabledReason": None,
        "failingSince": None,
        "leaseUntil": None,
    }
    await request.app[DB].webhooks.insert_one(doc)
    return NewWebhook.of(doc).response(status=201, headers={"Location": f"/rest/host/webhooks/{doc['_id']}"})


@routes.get("/rest/host/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    scope = WebhookScope.parse(request)
    if (scope.eventId is None) == (scope.organizerId is None):
        raise BadRequest("give exactly one of eventId and organizerId")
    await _check_scope(request, principal, scope.eventId, scope.organizerId)
    query = {"eventId": scope.eventId} if scope.eventId is not None else {"organizerId": scope.organizerId}
    docs = await request.app[DB].webhooks.find(query).sort("_id", 1).to_list(None)
    return Webhooks(data=[Webhook.of(doc) for doc in docs]).response()


@routes.get("/rest/host/webhooks/{webhookId}")
async def read_webhook(request: web.Request) -> web.Response:
    return Webhook.of(await _hosted_webhook(request)).response()


@routes.delete("/rest/host/webhooks/{webhookId}")
async def delete_webhook(request: web.Request) -> web.Response:
    """The endpoint, its outbox and its delivery log; nothing more is sent to it."""
    doc = await _hosted_webhook(request)
    db = request.app[DB]
    await db.webhooks.delete_one({"_id": doc["_id"]})
    await db.webhook_outbox.delete_many({"webhookId": doc["_id"]})
    await db.webhook_deliveries.delete_many({"webhookId": doc["_id"]})
    return web.Response(status=204)


@routes.get("/rest/host/webhooks/{webhookId}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    doc = await _hosted_webhook(request)
    query = DeliveryQuery.parse(request)
    cursor = (
        request.app[DB]
        .webhook_deliveries.find({"webhookId": doc["_id"]}, {"payload": 0})
        .sort([("createdAt", -1), ("_id", -1)])
        .skip(query.skip)
        .limit(query.size)
    )
    items = [Delivery.of(d) for d in await cursor.to_list(query.size)]
    return Deliveries(page=query.page, size=query.size, data=items).response()


@routes.post("/rest/host/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """The same message (same `webhook-id`, same numbers) sent again now. Only the newest message
    of its subject may be: an older one would bring older numbers after newer ones. A disabled
    endpoint is enabled again by it."""
    doc = await _hosted_webhook(request)
    delivery_id = path_id(request, "deliveryId")
    db = request.app[DB]
    message = await db.webhook_deliveries.find_one(
        {"_id": delivery_id, "webhookId": doc["_id"]}, {"payload": 0}
    )
    if message is None:
        raise NotFound(f"no delivery {delivery_id} of webhook {doc['_id']}")
    newer = await db.webhook_deliveries.find_one(
        {
            "webhookId": doc["_id"],
            "topic": message["topic"],
            "subject": message["subject"],
            "createdAt": {"$gt": message["createdAt"]},
        },
        {"_id": 1},
    )
    if newer is not None:
        raise BadRequest(f"delivery {delivery_id} is superseded by {newer['_id']}: redeliver that one")
    moment = now()
    await db.webhooks.update_one(
        {"_id": doc["_id"]},
        {"$set": {"disabled": False, "disabledAt": None, "disabledReason": None, "failingSince": None}},
    )
    updated = await db.webhook_deliveries.find_one_and_update(
        {"_id": delivery_id},
        {"$set": {"status": PENDING, "nextAttemptAt": moment, "error": None}},
        projection={"payload": 0},
        return_document=True,
    )
    await request.app[TASKS].enqueue_debounced(
        TaskName.DELIVER_WEBHOOKS,
        key=webhook_signal_key(doc["_id"]),
        kwargs={"webhook_id": doc["_id"]},
        delay_s=0,
    )
    return Delivery.of(updated or message).response(status=202)
