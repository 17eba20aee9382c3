"""Webhooks: signed to the Standard Webhooks specification, delivered at least once in order,
retried and given up on as documented, coalesced, refused for addresses inside the network, and
managed through the host routes with their roles and errors.

Receivers are aiohttp apps on 127.0.0.1; the loopback address is allowed for them through
WEBHOOK_ALLOWED_HOSTS (plain http through WEBHOOK_ALLOW_HTTP), as a deployment would allow an
internal receiver. Time is moved on by a clock the delivery code reads, so the 24-hour retry
window runs at its default settings in a moment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer
from standardwebhooks.webhooks import Webhook

import shared.hooks
import shared.urlguard
import shared.webhooks
import worker.webhooks
from shared.db import Database
from shared.hooks import analytics_written
from shared.settings import Settings
from shared.store import now
from tests.conftest import Client, RecordingTaskQueue
from tests.seed import (
    add_session,
    app_client,
    database_state,
    error_of,
    found,
    ingest_headers,
    login,
    seed_world,
    watch_segment,
)
from worker.rollup import rollup_event
from worker.webhooks import deliver_webhook

HOOKS = "/rest/host/webhooks"


class Clock:
    """The time the delivery code reads; tests move it on."""

    def __init__(self) -> None:
        self.moment = now()

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moving = Clock()
    for module in (worker.webhooks, shared.webhooks):
        monkeypatch.setattr(module, "now", moving)
    return moving


@pytest.fixture(autouse=True)
def signals(task_queue: RecordingTaskQueue) -> Iterator[RecordingTaskQueue]:
    """The hook's delivery signals go to the recording queue (the tests run the deliveries)."""
    shared.hooks.use_task_queue(task_queue)
    yield task_queue
    shared.hooks.use_task_queue(None)


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_http": True, "webhook_allowed_hosts": "127.0.0.1"})


@pytest.fixture
async def hosts(
    aiohttp_client: AiohttpClient,
    hook_settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
) -> Client:
    await seed_world(database)
    await add_session(database, "s1")
    client: Client = await app_client(aiohttp_client, hook_settings, database, task_queue)
    return client


class Receiver:
    """A webhook receiver on 127.0.0.1 answering each request with the next status of `plan`
    (then 200), keeping what it got."""

    def __init__(self, plan: list[int] | None = None) -> None:
        self.plan = list(plan or [])
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        status = self.plan.pop(0) if self.plan else 200
        return web.Response(status=status, headers={"Retry-After": "1"} if status == 503 else None)

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.got]

    def payloads(self) -> list[dict[str, Any]]:
        import orjson

        return [orjson.loads(body) for _, body in self.got]


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> AsyncIterator[Receiver]:
    made = Receiver()
    app = web.Application()
    app.router.add_post("/hook", made.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    made.url = str(server.make_url("/hook"))
    yield made


async def register(client: Client, headers: dict[str, str], url: str, **fields: Any) -> dict[str, Any]:
    body = {"url": url, "topics": ["session.analytics.updated"], "eventId": "ev1"} | fields
    response = await client.post(HOOKS, json=body, headers=headers)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def change(db: Database, settings: Settings, attendees: int, session_id: str = "s1") -> None:
    """A rollup wrote new numbers for the session and called the hook."""
    await db.sessions.update_one({"_id": session_id}, {"$set": {"attendeeCount": attendees}})
    await analytics_written(db, settings, "ev1", [session_id], kind="rollup")


async def deliveries(client: Client, headers: dict[str, str], webhook_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{HOOKS}/{webhook_id}/deliveries", headers=headers)
    assert response.status == 200
    data: list[dict[str, Any]] = (await response.json())["data"]
    return data


def hand_verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The specification's check, written from its text without the library: the signature is
    base64(HMAC-SHA256(base64-decoded secret, "{id}.{timestamp}.{body}")), prefixed "v1,"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, signature) for signature in given)


async def test_a_delivery_is_signed_to_the_standard_webhooks_specification(
    hosts: Client, database: Database, hook_settings: Settings, receiver: Receiver
) -> None:
    host = await login(hosts, "organizer")
    created = await register(hosts, host, receiver.url)
    await change(database, hook_settings, 7)
    result = await deliver_webhook(database, hook_settings, created["webhookId"])

    assert result.delivered == 1
    ((headers, body),) = receiver.got
    assert hand_verified(created["secret"], headers, body)
    assert not hand_verified(
        "whsec_" + base64.b64encode(b"another secret of 32 bytes here!").decode(), headers, body
    )
    payload = Webhook(created["secret"]).verify(body, headers)  # the library's own check agrees
    assert payload["type"] == "session.analytics.updated"
    assert payload["eventId"] == "ev1"
    assert payload["data"]["sessionId"] == "s1" and payload["data"]["attendeeCount"] == 7
    list_item = (
        await (
            await hosts.get(
                "/rest/host/session/analytics?eventId=ev1&expand=duration,watchTime", headers=host
            )
        ).json()
    )["data"][0]
    assert payload["data"] == list_item  # no field beyond what the list shows
    assert abs(int(headers["webhook-timestamp"]) - now().timestamp()) < 60


async def test_a_receiver_failing_twice_gets_the_same_webhook_id_three_times_and_nothing_after(
    hosts: Client, database: Database, hook_settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    host = await login(hosts, "organizer")
    created = await register(hosts, host, receiver.url)
    receiver.plan = [500, 500]
    await change(database, hook_settings, 3)
    for _ in range(6):
        result = await deliver_webhook(database, hook_settings, created["webhookId"])
        if result.next_in_s is None:
            break
        clock.advance(result.next_in_s)

    assert len(receiver.got) == 3
    assert len(set(receiver.ids())) == 1
    assert len({body for _, body in receiver.got}) == 1  # the same message each time
    (log,) = await deliveries(hosts, host, created["webhookId"])
    assert (log["status"], log["attempts"], log["responseStatus"]) == ("DELIVERED", 3, 200)
    assert log["deliveryId"] == receiver.ids()[0]
    clock.advance(86400)
    await deliver_webhook(database, hook_settings, created["webhookId"])
    assert len(receiver.got) == 3


async def test_retries_back_off_capped_and_jittered_and_honour_retry_after(hook_settings: Settings) -> None:
    delays = [worker.webhooks.backoff_s(hook_settings, n, None) for n in range(1, 20)]
    assert 2.5 <= delays[0] <= 5 and 5 <= delays[1] <= 10
    assert all(d <= hook_settings.webhook_backoff_cap_s for d in delays)
    assert max(delays) >= hook_settings.webhook_backoff_cap_s / 2
    assert worker.webhooks.backoff_s(hook_settings, 1, 120.0) == 120.0


async def test_a_receiver_down_for_the_whole_window_ends_disabled_and_says_so(
    hosts: Client, database: Database, hook_settings: Settings, clock: Clock
) -> None:
    from tests.servers import free_port

    host = await login(hosts, "organizer")
    created = await register(hosts, host, f"http://127.0.0.1:{free_port()}/hook")  # nothing listens
    await change(database, hook_settings, 1)
    started, attempts = clock(), 0
    while attempts < 200:
        result = await deliver_webhook(database, hook_settings, created["webhookId"])
        attempts += result.failed
        if result.next_in_s is None:
            break
        clock.advance(result.next_in_s)

    hours = (clock() - started).total_seconds() / 3600
    assert 24 <= hours < 26, hours  # retried for about a day, no longer
    assert 10 < attempts < 60, attempts
    endpoint = await (await hosts.get(f"{HOOKS}/{created['webhookId']}", headers=host)).json()
    assert endpoint["disabled"] is True
    assert "failed since" in endpoint["disabledReason"]
    (log,) = await deliveries(hosts, host, created["webhookId"])
    assert log["status"] == "FAILED" and log["attempts"] == attempts
    await change(database, hook_settings, 2)  # a disabled endpoint hears of nothing more
    assert (
        await database.webhook_outbox.count_documents({"webhookId": created["webhookId"], "dirty": True}) == 0
    )


async def test_a_burst_of_fifty_changes_in_ten_seconds_sends_two_messages_with_the_latest_numbers(
    hosts: Client, database: Database, hook_settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    host = await login(hosts, "organizer")
    created = await register(hosts, host, receiver.url)
    for n in range(1, 51):
        await change(database, hook_settings, n)
        await deliver_webhook(database, hook_settings, created["webhookId"])  # a run after every one
        clock.advance(0.2)
    clock.advance(hook_settings.webhook_min_interval_s)
    await deliver_webhook(database, hook_settings, created["webhookId"])

    counts = [payload["data"]["attendeeCount"] for payload in receiver.payloads()]
    assert 1 <= len(counts) <= 2, counts
    assert counts[-1] == 50
    assert counts == sorted(counts)


async def test_a_message_never_brings_older_numbers_after_newer_ones(
    hosts: Client, database: Database, hook_settings: Settings, receiver: Receiver, clock: Clock
) -> None:
    """The first message fails; newer numbers come before its retry: the retry is superseded, and
    the receiver gets only ever-newer numbers."""
    host = await login(hosts, "organizer")
    created = await register(hosts, host, receiver.url)
    receiver.plan = [503, 500, 500]
    for n in range(1, 13):
        await change(database, hook_settings, n)
        result = await deliver_webhook(database, hook_settings, created["webhookId"])
        clock.advance(min(result.next_in_s or 3.0, 3.0))
    for _ in range(10):
        clock.advance(hook_settings.webhook_backoff_cap_s)
        await deliver_webhook(database, hook_settings, created["webhookId"])
    seen = [p["data"]["attendeeCount"] for p in receiver.payloads()]
    assert seen[-1] == 12
    assert all(a <= b for a, b in itertools.pairwise(seen)), seen
    statuses = {d["status"] for d in await deliveries(hosts, host, created["webhookId"])}
    assert "SUPERSEDED" in statuses and "PENDING" not in statuses


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/latest/meta-data"]
)
async def test_registration_is_refused_for_addresses_inside_the_network(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    url: str,
) -> None:
    await seed_world(database)
    client = await app_client(aiohttp_client, settings, database, task_queue, webhook_allow_http=True)
    host = await login(client, "organizer")
    before = await database_state(database)
    body = {"url": url, "topics": ["session.analytics.updated"], "eventId": "ev1"}
    response = await client.post(HOOKS, json=body, headers=host)
    assert await error_of(response) == (400, "400")
    assert "refused" in (await response.json())["developerMessage"]
    assert await database_state(database) == before


async def test_registration_is_refused_for_a_name_resolving_to_a_private_address_and_for_plain_http(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return {"crm.example.com": ["10.0.0.1"], "ok.example.com": ["93.184.216.34"]}[host]

    monkeypatch.setattr(shared.urlguard, "resolve", resolve)
    await seed_world(database)
    client = await app_client(aiohttp_client, settings, database, task_queue)
    host = await login(client, "organizer")
    body = {"topics": ["session.analytics.updated"], "eventId": "ev1"}
    refused = await client.post(HOOKS, json=body | {"url": "https://crm.example.com/hook"}, headers=host)
    assert await error_of(refused) == (400, "400")
    assert "10.0.0.1 is a private address" in (await refused.json())["developerMessage"]
    plain = await client.post(HOOKS, json=body | {"url": "http://ok.example.com/hook"}, headers=host)
    assert await error_of(plain) == (400, "400")
    assert await database.webhooks.count_documents({}) == 0
    assert (
        await client.post(HOOKS, json=body | {"url": "https://ok.example.com/h"}, headers=host)
    ).status == 201


async def test_a_name_that_changes_to_a_private_address_after_registration_is_refused_at_delivery(
    hosts: Client,
    database: Database,
    hook_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns = {"crm.example.com": ["93.184.216.34"]}

    async def resolve(host: str, port: int) -> list[str]:
        return dns[host]

    monkeypatch.setattr(shared.urlguard, "resolve", resolve)
    host = await login(hosts, "organizer")
    created = await register(hosts, host, "https://crm.example.com/hook")
    dns["crm.example.com"] = ["10.0.0.1"]  # DNS rebinding: the name now points inside
    await change(database, hook_settings, 4)
    with caplog.at_level(logging.WARNING, logger="worker.webhooks"):
        result = await deliver_webhook(database, hook_settings, created["webhookId"])

    assert (result.delivered, result.failed) == (0, 1)
    (log,) = await deliveries(hosts, host, created["webhookId"])
    assert log["status"] == "PENDING" and log["responseStatus"] is None
    assert log["error"].startswith("refused: crm.example.com is refused: 10.0.0.1 is a private address")
    assert any("refused" in record.getMessage() for record in caplog.records)


async def test_the_routes_keep_the_roles_and_errors_of_the_rest_and_show_the_secret_once(
    hosts: Client, database: Database, receiver: Receiver
) -> None:
    event_admin, organizer = await login(hosts, "event_admin"), await login(hosts, "organizer")
    created = await register(hosts, event_admin, receiver.url)
    assert created["secret"].startswith("whsec_")
    listed = await (await hosts.get(f"{HOOKS}?eventId=ev1", headers=organizer)).json()
    assert [w["webhookId"] for w in listed["data"]] == [created["webhookId"]]
    assert "secret" not in listed["data"][0]
    read = await (await hosts.get(f"{HOOKS}/{created['webhookId']}", headers=organizer)).json()
    assert "secret" not in read and read["disabled"] is False

    attendee, super_admin = await login(hosts, "attendee"), await login(hosts, "super")
    before = await database_state(database)
    body = {"url": receiver.url, "topics": ["session.analytics.updated"]}
    refusals = [
        (await hosts.post(HOOKS, json=body | {"eventId": "ev2"}, headers=event_admin), (403, "4030201")),
        (await hosts.post(HOOKS, json=body | {"organizerId": "org1"}, headers=event_admin), (403, "4030201")),
        (await hosts.post(HOOKS, json=body | {"eventId": "nope"}, headers=organizer), (404, "4040200")),
        (
            await hosts.post(HOOKS, json=body | {"eventId": "ev1", "organizerId": "org1"}, headers=organizer),
            (400, "400"),
        ),
        (
            await hosts.post(HOOKS, json=body | {"eventId": "ev1", "topics": ["nope"]}, headers=organizer),
            (400, "400"),
        ),
        (
            await hosts.post(HOOKS, json=body | {"eventId": "ev1", "extra": 1}, headers=organizer),
            (400, "400"),
        ),
        (await hosts.post(HOOKS, json=body | {"eventId": "ev1"}, headers=attendee), (403, "4030201")),
        (await hosts.post(HOOKS, json=body | {"eventId": "ev1"}), (401, "401")),
        (await hosts.get(f"{HOOKS}?eventId=ev1&organizerId=org1", headers=organizer), (400, "400")),
        (await hosts.get(f"{HOOKS}/wh_000000000000000000000000", headers=organizer), (404, "404")),
        (await hosts.delete(f"{HOOKS}/{created['webhookId']}", headers=super_admin), None),
    ]
    for response, expected in refusals[:-1]:
        assert await error_of(response) == expected
    assert refusals[-1][0].status == 204  # a super admin may delete any
    assert await database.webhooks.count_documents({}) == 0
    before.pop("webhooks", None)
    after = await database_state(database)
    after.pop("webhooks", None)
    assert after == before  # nothing else was written by the refused requests
    gone = await hosts.get(f"{HOOKS}/{created['webhookId']}", headers=organizer)
    assert await error_of(gone) == (404, "404")


async def test_the_delivery_log_and_a_redelivery_of_the_same_message(
    hosts: Client,
    database: Database,
    hook_settings: Settings,
    receiver: Receiver,
    signals: RecordingTaskQueue,
    clock: Clock,
) -> None:
    host = await login(hosts, "organizer")
    created = await register(hosts, host, receiver.url)
    await change(database, hook_settings, 5)
    await deliver_webhook(database, hook_settings, created["webhookId"])
    (first,) = await deliveries(hosts, host, created["webhookId"])
    assert (first["status"], first["attempts"], first["responseStatus"]) == ("DELIVERED", 1, 200)
    assert first["deliveredAt"] is not None and first["topic"] == "session.analytics.updated"

    path = f"{HOOKS}/{created['webhookId']}/deliveries/{first['deliveryId']}/redeliver"
    again = await hosts.post(path, headers=host)
    assert again.status == 202 and (await again.json())["status"] == "PENDING"
    assert signals.signals[-1][0] == "webhooks.deliver"
    clock.advance(1)  # the route stamped the attempt with the real time
    await deliver_webhook(database, hook_settings, created["webhookId"])
    assert receiver.ids() == [first["deliveryId"]] * 2
    assert receiver.got[0][1] == receiver.got[1][1]

    clock.advance(hook_settings.webhook_min_interval_s)
    await change(database, hook_settings, 6)
    await deliver_webhook(database, hook_settings, created["webhookId"])
    stale = await hosts.post(path, headers=host)  # a newer message of the session exists now
    assert await error_of(stale) == (400, "400")
    assert len(receiver.got) == 3
    found(await database.webhooks.find_one({"_id": created["webhookId"]}))


async def test_event_topic_sends_the_summary_the_route_answers_after_a_rollup(
    hosts: Client, database: Database, hook_settings: Settings, receiver: Receiver
) -> None:
    """A real rollup of posted attendance calls the hook; the `event.analytics.updated` message
    is the event summary as GET /rest/host/event/{eventId}/analytics answers it then."""
    host = await login(hosts, "organizer")
    created = await register(hosts, host, receiver.url, topics=["event.analytics.updated"])
    key = await ingest_headers(database, ["ev1"])
    segments = [watch_segment(f"e{n}", "s1", f"u{n}", seconds=60 * (n + 1)) for n in range(3)]
    assert (await hosts.post("/rest/events/ev1/watch-segments", json=segments, headers=key)).status == 200
    await rollup_event(database, hook_settings, "ev1")
    result = await deliver_webhook(database, hook_settings, created["webhookId"])

    assert result.delivered == 1
    (payload,) = receiver.payloads()
    assert payload["type"] == "event.analytics.updated"
    summary = await (await hosts.get("/rest/host/event/ev1/analytics", headers=host)).json()
    assert payload["data"] == summary
    assert (summary["uniqueAttendees"], summary["peakConcurrent"], summary["watchTime"]["total"]) == (
        3,
        3,
        360,
    )
