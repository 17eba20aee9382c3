"""The OpenAPI document and docs page: complete, well-formed, offline, and true to the answers."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.admin import create_ingest_key
from shared.db import Database
from shared.settings import Settings
from tests.conftest import RecordingTaskQueue
from tests.openapi_validation import OpenAPIMismatch, OpenAPIValidator, validate_every_answer
from tests.seed import PASSWORD, add_session, login, seed_world
from web.app import create_app
from web.openapi import SPEC

HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")


def _walk(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{pointer}/{index}")


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in SPEC["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield template, method, item[method]


def _schemas_in_document() -> Iterator[tuple[str, Any]]:
    for name, schema in SPEC["components"]["schemas"].items():
        yield f"/components/schemas/{name}", schema
    for pointer, node in _walk(SPEC):
        if pointer.startswith("/components/schemas"):
            continue
        if isinstance(node, dict) and isinstance(node.get("schema"), dict):
            yield pointer + "/schema", node["schema"]


# -- the document --------------------------------------------------------------------------------


async def test_openapi_json_serves_the_openapi_3_1_document(client: Any) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    served = await response.json()
    assert served["openapi"] == "3.1.0"
    assert served == SPEC


def test_every_ref_in_the_document_resolves() -> None:
    validator = OpenAPIValidator(SPEC)
    refs = [(p, n["$ref"]) for p, n in _walk(SPEC) if isinstance(n, dict) and "$ref" in n]
    assert refs
    for where, ref in refs:
        assert ref.startswith("#/"), f"{where}: non-local $ref {ref}"
        validator.resolve(ref[1:])  # raises KeyError when it points nowhere


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    for where, schema in _schemas_in_document():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as err:  # the pointer makes the failure findable
            raise AssertionError(f"{where}: {err}") from err


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


def test_every_path_parameter_is_declared_and_required() -> None:
    validator = OpenAPIValidator(SPEC)
    for template, method, op in _operations():
        declared = {}
        for raw in op.get("parameters", []):
            parameter = validator.resolve(raw["$ref"][1:])[1] if "$ref" in raw else raw
            declared[(parameter["name"], parameter["in"])] = parameter
        in_template = set(re.findall(r"\{([^{}]+)\}", template))
        in_path = {name for name, where in declared if where == "path"}
        assert in_path == in_template, f"{method.upper()} {template}"
        for name in in_path:
            assert declared[(name, "path")]["required"] is True
        for parameter in declared.values():
            assert "schema" in parameter, f"{method.upper()} {template} {parameter['name']}"


def test_every_operation_is_unique_and_answers_errors_with_the_envelope() -> None:
    validator = OpenAPIValidator(SPEC)
    ids = [op["operationId"] for _, _, op in _operations()]
    assert len(ids) == len(set(ids))
    for template, method, op in _operations():
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), f"{method.upper()} {template}"
        for status in statuses:
            where = f"/paths/{template.replace('/', '~1')}/{method}/responses/{status}"
            _, response = validator.resolve(where)
            assert "X-Request-Id" in response["headers"]
            if status >= "400" and method != "head":
                schema = response["content"]["application/json"]["schema"]
                assert {"$ref": "#/components/schemas/Error"} in schema["allOf"]
        if op["security"]:
            assert {"401", "403"} <= statuses, f"{method.upper()} {template}"


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


def test_list_parameters_carry_the_constraints_the_server_enforces() -> None:
    params = SPEC["components"]["parameters"]
    assert params["Page"]["schema"]["minimum"] == 0
    assert (params["Size"]["schema"]["minimum"], params["Size"]["schema"]["maximum"]) == (1, 500)
    assert "-attendeeCount" in params["Sort"]["schema"]["enum"]
    assert SPEC["components"]["schemas"]["Id"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    assert SPEC["components"]["schemas"]["SessionIn"]["additionalProperties"] is False


# -- the docs page -------------------------------------------------------------------------------


async def test_docs_page_works_offline(client: Any) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "http://" not in html and "https://" not in html
    for attribute, value in re.findall(r"""\b(src|href|action)\s*=\s*["']([^"']*)["']""", html):
        assert value.startswith("#"), f"{attribute}={value} would leave the page"
    assert "openapi.json" in html
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    script = re.search(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy, "the policy would block the page's own script"


# -- the validator can fail ----------------------------------------------------------------------


def _envelope(code: str) -> bytes:
    return (
        b'{"errorCode":"' + code.encode() + b'","errorMessage":"m","developerMessage":"d","requestId":"r1"}'
    )


def test_validator_rejects_a_wrong_body() -> None:
    validator = OpenAPIValidator(SPEC)
    body = b'{"recordsTotal":1,"recordsFiltered":1,"page":0,"size":50,"data":[{"sessionId":"s1"}]}'
    with pytest.raises(OpenAPIMismatch, match="'title' is a required property"):
        validator.validate("GET", "/rest/host/session/analytics", 200, "application/json", body)
    with pytest.raises(OpenAPIMismatch, match="is not of type 'integer'"):
        validator.validate(
            "GET",
            "/rest/host/session/analytics",
            200,
            "application/json",
            b'{"recordsTotal":"1","recordsFiltered":1,"page":0,"size":50,"data":[]}',
        )
    with pytest.raises(OpenAPIMismatch, match="Additional properties"):
        validator.validate("GET", "/healthz", 200, "application/json", b'{"status":"ok","x":1}')


def test_validator_rejects_undocumented_statuses_codes_types_and_headers() -> None:
    validator = OpenAPIValidator(SPEC)
    with pytest.raises(OpenAPIMismatch, match="status 418 is not documented"):
        validator.validate("GET", "/healthz", 418, "application/json", b"{}")
    with pytest.raises(OpenAPIMismatch, match="is not one of"):
        validator.validate("POST", "/rest/u/login", 401, "application/json", _envelope("401"))
    with pytest.raises(OpenAPIMismatch, match="Content-Type 'text/html'"):
        validator.validate("GET", "/healthz", 200, "text/html", b"<p>ok</p>")
    with pytest.raises(OpenAPIMismatch, match="no body is documented"):
        validator.validate("POST", "/rest/u/logout", 204, None, b"{}")
    with pytest.raises(OpenAPIMismatch, match="header X-Request-Id is missing"):
        validator.validate("GET", "/healthz", 200, "application/json", b'{"status":"ok"}', {})
    with pytest.raises(OpenAPIMismatch, match="only a 404 or 405"):
        validator.validate("GET", "/no/such/route", 200, "application/json", b"{}")
    validator.validate("GET", "/no/such/route", 404, "application/json", _envelope("404"))
    validator.validate("DELETE", "/rest/u/login", 405, "application/json", _envelope("405"))
    with pytest.raises(OpenAPIMismatch):
        validator.validate("GET", "/no/such/route", 404, "text/html", b"<h1>404</h1>")


def test_validator_prefers_literal_segments_and_the_method_aiohttp_would_route() -> None:
    validator = OpenAPIValidator(SPEC)
    csv = validator.find_operation("GET", "/rest/host/session/analytics/csv")
    assert csv is not None and csv.template == "/rest/host/session/analytics/csv"
    detail = validator.find_operation("GET", "/rest/host/session/s1/analytics")
    assert detail is not None and detail.template == "/rest/host/session/{sessionId}/analytics"
    put = validator.find_operation("PUT", "/rest/host/session/analytics")
    assert put is not None and put.template == "/rest/host/session/{sessionId}"
    assert validator.find_operation("POST", "/rest/host/session/analytics/csv") is None


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
    from shared.jobs import FAILURE, SUCCESS, update_task

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
    await update_task(
        database,
        task_id,
        state=SUCCESS,
        result={"sessions": 1, "durations": {}},
        progress={"done": 2, "total": 2},
    )
    done = await client.get(f"/rest/host/tasks/{task_id}", headers=auth)
    assert (await done.json())["state"] == SUCCESS
    await update_task(database, task_id, state=FAILURE, error="boom")
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
