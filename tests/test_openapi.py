"""The OpenAPI document and docs page: complete, well-formed, offline, and true to the answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate

from shared.admin import create_ingest_key
from shared.db import Database
from shared.errors import AccountLocked, WrongCredentials
from shared.models import ID_PATTERN
from shared.rules import FORMATS
from shared.settings import Settings
from tests.conftest import RecordingTaskQueue
from tests.contract import validate_every_answer
from tests.seed import PASSWORD, add_session, login, seed_world
from web.app import create_app
from web.contract.common import MAX_PAGE, MAX_PAGE_SIZE
from web.docs import swagger_ui_dist
from web.openapi import SPEC

LIST = "/rest/host/session/analytics"
HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in SPEC["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield template, method, item[method]


# -- the document --------------------------------------------------------------------------------


async def test_openapi_json_serves_the_openapi_3_1_document(client: Any) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    served = await response.json()
    assert served["openapi"] == "3.1.0"
    assert served == SPEC


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(SPEC)  # openapi-spec-validator: the structure, every $ref and every schema


def test_every_app_route_is_documented_and_nothing_else() -> None:
    app = create_app(Settings(mongodb_url="mem:///openapi", redis_url="redis://127.0.0.1:1/0"))
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None
    }
    documented = {(template, method) for template, method, _ in _operations()}
    assert served - documented == set(), "routes the document leaves out"
    assert documented - served == set(), "operations the app does not have"


def test_every_operation_is_unique_and_answers_errors_with_the_envelope() -> None:
    ids = [op["operationId"] for _, _, op in _operations()]
    assert len(ids) == len(set(ids))
    for template, method, op in _operations():
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), f"{method.upper()} {template}"
        for status, response in op["responses"].items():
            assert "X-Request-Id" in response["headers"]
            if status >= "400" and method != "head":
                schema = response["content"]["application/json"]["schema"]
                assert {"$ref": "#/components/schemas/ErrorEnvelope"} in schema["allOf"]
        if op["security"]:
            assert {"401", "403", "503"} <= statuses, f"{method.upper()} {template}"


def test_error_codes_come_from_the_error_classes() -> None:
    login = SPEC["paths"]["/rest/u/login"]["post"]["responses"]["401"]
    codes = login["content"]["application/json"]["schema"]["allOf"][1]["properties"]["errorCode"]["enum"]
    assert codes == [WrongCredentials.error_code, AccountLocked.error_code] == ["4010101", "4010102"]
    detail = SPEC["paths"]["/rest/host/session/{sessionId}/analytics"]["get"]["responses"]["404"]
    assert "Session Not Found (404800)" in detail["description"]
    assert "| 403 | `4030201` | Not Event Host |" in SPEC["info"]["description"]


def test_host_and_ingest_routes_declare_their_credentials() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["userAuthenticationHeader"] == {
        **schemes["userAuthenticationHeader"],
        "type": "apiKey",
        "in": "header",
        "name": "AUTHENTICATION",
    }
    for template, _, op in _operations():
        names = {name for requirement in op["security"] for name in requirement}
        if template.startswith("/rest/host") or template == "/rest/u/logout":
            assert names == {"userBearer", "userAuthenticationHeader"}
        elif template.startswith("/rest/events"):
            assert names == {"ingestKeyBearer", "ingestKeyAuthenticationHeader"}
        else:
            assert names == set()


def test_list_parameters_carry_the_constraints_the_parser_enforces() -> None:
    params = {p["name"]: p for p in SPEC["paths"][LIST]["get"]["parameters"]}
    assert (params["page"]["schema"]["minimum"], params["page"]["schema"]["maximum"]) == (0, MAX_PAGE)
    assert (params["size"]["schema"]["minimum"], params["size"]["schema"]["maximum"]) == (1, MAX_PAGE_SIZE)
    assert MAX_PAGE_SIZE == 500
    assert "-attendeeCount" in params["sort"]["schema"]["enum"]
    assert params["eventId"]["schema"]["pattern"] == ID_PATTERN == "^[A-Za-z0-9_-]{1,64}$"
    assert params["sessionFormat"]["schema"]["enum"] == list(FORMATS)
    assert SPEC["components"]["schemas"]["SessionIn"]["additionalProperties"] is False


def test_every_operation_carries_an_example_of_its_input() -> None:
    for template, method, op in _operations():
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if body:
            assert "example" in body, f"{method.upper()} {template}: no body example"
        for parameter in op["parameters"]:
            if parameter["required"]:
                assert "example" in parameter, f"{method.upper()} {template}: {parameter['name']}"


@pytest.mark.parametrize(
    "query",
    [
        "page=%201",
        "page=1_000",
        "page=%2B1",
        "page=1.0",
        "page=",
        "size=",
        "sort=",
        "sessionFormat=",
        "size=501",
    ],
)
async def test_list_query_numbers_are_plain_digits_and_present_values_not_empty(
    client: Any, database: Database, query: str
) -> None:
    await seed_world(database)
    headers = await login(client, "super")
    response = await client.get(f"{LIST}?eventId=ev1&{query}", headers=headers)
    assert response.status == 400
    assert (await response.json())["errorCode"] == "400"


async def test_unknown_list_parameters_are_ignored(client: Any, database: Database) -> None:
    await seed_world(database)
    headers = await login(client, "super")
    response = await client.get(f"{LIST}?eventId=ev1&_=1700000000&expand=", headers=headers)
    assert response.status == 200
    assert (await response.json())["size"] == 50


# -- the docs page -------------------------------------------------------------------------------


async def test_docs_page_is_swagger_ui_served_offline(client: Any) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "http://" not in html and "https://" not in html
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert sources == ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/docs.js"]
    for source in sources:
        asset = await client.get(source)
        assert asset.status == 200, source
    initializer = await (await client.get("/docs/docs.js")).text()
    assert 'url: "/openapi.json"' in initializer and "validatorUrl: null" in initializer
    bundle = await (await client.get("/docs/swagger-ui-bundle.js")).text()
    assert "SwaggerUIBundle" in bundle
    licence = await client.get("/docs/LICENSE")
    assert licence.status == 200 and "Apache License" in await licence.text()
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert (await client.get("/docs/secrets.txt")).status == 404


def test_swagger_ui_renders_openapi_3_1() -> None:
    # Swagger UI before 5 refuses "openapi: 3.1.0" documents ("does not specify a valid version").
    version = (swagger_ui_dist() / "VERSION").read_text().strip()
    assert int(version.lstrip("v").split(".")[0]) >= 5, version


# -- answers the app gives (each one checked against the document by the client fixture) ---------


async def test_login_and_logout_answers_match_the_document(client: Any, database: Database) -> None:
    await seed_world(database)
    headers = await login(client, "super")
    bad = await client.post("/rest/u/login", json={"username": "super@example.com", "password": "x"})
    assert (bad.status, (await bad.json())["errorCode"]) == (401, "4010101")
    malformed = await client.post("/rest/u/login", json={"username": "a", "password": "b", "x": 1})
    assert malformed.status == 400
    for _ in range(5):
        await client.post("/rest/u/login", json={"username": "org@example.com", "password": "nope"})
    locked = await client.post("/rest/u/login", json={"username": "org@example.com", "password": PASSWORD})
    assert (locked.status, (await locked.json())["errorCode"]) == (401, "4010102")
    assert (await client.post("/rest/u/logout", headers=headers)).status == 204
    assert (await client.post("/rest/u/logout", headers=headers)).status == 401


async def test_login_throttle_answer_matches_the_document(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: RecordingTaskQueue
) -> None:
    strict = settings.model_copy(update={"login_throttle_per_minute": 1})
    client = validate_every_answer(
        await aiohttp_client(create_app(strict, database=database, task_queue=task_queue))
    )
    body = {"username": "nobody@example.com", "password": "x"}
    await client.post("/rest/u/login", json=body)
    throttled = await client.post("/rest/u/login", json=body)
    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) >= 0


async def test_session_answers_match_the_document(client: Any, database: Database) -> None:
    await seed_world(database)
    await add_session(database, "s1", numbers={"attendeeCount": 3})
    await add_session(database, "s2", provider="ZOOM", video_id=None)
    await add_session(database, "s3", session_format="WORKSHOP_SESSION", provider=None, video_id=None)
    auth = await login(client, "super")
    listing = "/rest/host/session/analytics?eventId=ev1&expand=duration,Watch%20Time&sort=-title"
    first = await client.get(listing, headers=auth)
    assert first.status == 200
    assert len((await first.json())["data"]) == 3
    again = await client.get(listing, headers={**auth, "If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    assert (await client.head(listing, headers=auth)).status == 200
    assert (await client.get("/rest/host/session/analytics?eventId=ev1&size=501", headers=auth)).status == 400
    assert (await client.get("/rest/host/session/analytics?eventId=ev1")).status == 401
    assert (await client.get("/rest/host/session/analytics?eventId=nope", headers=auth)).status == 404
    attendee = await login(client, "attendee")
    assert (await client.get("/rest/host/session/analytics?eventId=ev1", headers=attendee)).status == 403
    for session_id in ("s1", "s2", "s3"):
        detail = await client.get(f"/rest/host/session/{session_id}/analytics", headers=auth)
        assert detail.status == 200
    assert (await client.get("/rest/host/session/nope/analytics", headers=auth)).status == 404
    assert (await client.get("/rest/host/session/a%20b/analytics", headers=auth)).status == 400
    attendees = await client.get("/rest/host/session/s1/attendee?page=0&size=10", headers=auth)
    assert attendees.status == 200
    csv = await client.get("/rest/host/session/analytics/csv?eventId=ev1", headers=auth)
    assert csv.status == 200
    assert (await csv.text()).startswith("Session Name,")


async def test_put_session_answers_match_the_document(client: Any, database: Database) -> None:
    await seed_world(database)
    auth = await login(client, "event_admin")
    body = {
        "eventId": "ev1",
        "title": "Keynote",
        "startTime": "2024-05-01T09:00:00Z",
        "endTime": "2024-05-01T10:00:00+00:00",
        "format": "MAINSTAGE_SESSION",
        "streamProvider": "VIMEO",
        "videoId": "123",
    }
    created = await client.put("/rest/host/session/k1", json=body, headers=auth)
    assert created.status == 201
    updated = await client.put("/rest/host/session/k1", json={**body, "title": "Opening"}, headers=auth)
    assert updated.status == 200
    unknown = await client.put("/rest/host/session/k1", json={**body, "room": "A"}, headers=auth)
    assert unknown.status == 400
    other = await client.put("/rest/host/session/k2", json={**body, "eventId": "ev2"}, headers=auth)
    assert (other.status, (await other.json())["errorCode"]) == (403, "4030201")


async def test_recompute_and_task_answers_match_the_document(
    client: Any, database: Database, task_queue: RecordingTaskQueue
) -> None:
    from shared.jobs import FAILURE, SUCCESS, take_task, update_task

    await seed_world(database)
    await add_session(database, "s1")
    auth = await login(client, "super")
    started = await client.post("/rest/host/session/analytics/recompute?eventId=ev1", headers=auth)
    assert started.status == 202
    task_id = (await started.json())["taskId"]
    assert started.headers["Location"] == f"/rest/host/tasks/{task_id}"
    same = await client.post("/rest/host/session/analytics/recompute?eventId=ev1", headers=auth)
    assert (await same.json())["taskId"] == task_id
    assert (await client.get(f"/rest/host/tasks/{task_id}", headers=auth)).status == 200
    assert await take_task(database, task_id, "run-1")
    await update_task(
        database,
        task_id,
        "run-1",
        state=SUCCESS,
        result={"sessions": 1, "durations": {}},
        progress={"done": 2, "total": 2},
    )
    done = await client.get(f"/rest/host/tasks/{task_id}", headers=auth)
    assert (await done.json())["state"] == SUCCESS
    await database.tasks.update_one({"_id": task_id}, {"$set": {"state": FAILURE, "error": "boom"}})
    assert (await client.get(f"/rest/host/tasks/{task_id}", headers=auth)).status == 200
    assert (await client.get("/rest/host/tasks/nope", headers=auth)).status == 404
    task_queue.down = True
    down = await client.post("/rest/host/session/analytics/recompute?eventId=ev2", headers=auth)
    assert down.status == 503


async def test_ingest_answers_match_the_document(client: Any, database: Database) -> None:
    await seed_world(database)
    await add_session(database, "s1")
    key = {"Authorization": f"Bearer {await create_ingest_key(database, ['ev1'])}"}
    start = datetime.now(UTC) - timedelta(hours=1)
    segment = {
        "segmentId": "g1",
        "sessionId": "s1",
        "userId": "u1",
        "mode": "LIVE",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=5)).isoformat(),
    }
    sent = await client.post(
        "/rest/events/ev1/watch-segments",
        json=[segment, segment, {**segment, "segmentId": "g2", "mode": "X"}],
        headers=key,
    )
    assert sent.status == 200
    assert (await sent.json())["rejected"][0]["index"] == 2
    registrations = await client.post(
        "/rest/events/ev1/registrations",
        json={"items": [{"sessionId": "s1", "userId": "u1", "registeredAt": start.isoformat()}]},
        headers={"AUTHENTICATION": key["Authorization"].removeprefix("Bearer ")},
    )
    assert registrations.status == 200
    assert (await client.post("/rest/events/ev2/watch-segments", json=[], headers=key)).status == 403
    assert (await client.post("/rest/events/ev1/watch-segments", json={"a": 1}, headers=key)).status == 400
    assert (await client.post("/rest/events/ev1/watch-segments", json=[])).status == 401
    user = await login(client, "super")
    assert (await client.post("/rest/events/ev1/watch-segments", json=[], headers=user)).status == 403
    assert (await client.get("/rest/host/session/analytics?eventId=ev1", headers=key)).status == 403


async def test_operational_and_unknown_route_answers_match_the_document(
    client: Any, task_queue: RecordingTaskQueue
) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.head("/healthz")).status == 200
    assert (await client.get("/readyz")).status in (200, 503)
    task_queue.down = True
    assert (await client.get("/readyz")).status == 503
    metrics = await client.get("/metrics", headers={"X-Request-Id": "probe-1"})
    assert metrics.status == 200 and metrics.headers["X-Request-Id"] == "probe-1"
    missing = await client.get("/rest/nothing/here")
    assert (missing.status, (await missing.json())["errorCode"]) == (404, "404")
    wrong_method = await client.delete("/rest/u/login")
    assert wrong_method.status == 405
