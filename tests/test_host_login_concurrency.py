"""Login under concurrency and behind proxies: exact throttle and lock-out, never a 5xx, no
account-existence leak, and X-Forwarded-For believed only from TRUSTED_PROXIES."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

import shared.security
import web.auth
import worker.cleanup
from shared.db import Database
from shared.settings import Settings
from tests.conftest import Client, RecordingTaskQueue
from tests.seed import PASSWORD, app_client, cheap_password_hashing, error_of, seed_world
from worker.cleanup import cleanup_expired

LOGIN = "/rest/u/login"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password check the login handler makes, in order."""
    checks: list[str] = []
    verify = shared.security.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        checks.append(password)
        return verify(password_hash, password)

    monkeypatch.setattr(web.auth, "verify_password", counting)
    return checks


@pytest.fixture
def mid_minute(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Every request of the test falls in one throttle window."""
    moment = datetime.now(UTC).replace(second=20, microsecond=0)
    monkeypatch.setattr(web.auth, "_now", lambda: moment)
    return moment


async def _answer(response: Any) -> tuple[int, str]:
    if response.status == 200:
        return 200, "ok"
    return await error_of(response)


async def test_concurrent_logins_from_one_address_check_exactly_the_allowance_and_never_5xx(
    client: Client, database: Database, password_checks: list[str], mid_minute: datetime
) -> None:
    await seed_world(database)
    right = {"username": "super@example.com", "password": PASSWORD}
    responses = await asyncio.gather(*(client.post(LOGIN, json=right) for _ in range(26)))
    answers = [await _answer(response) for response in responses]

    assert sorted(answers) == sorted([(200, "ok")] * 20 + [(429, "429")] * 6)
    assert len(password_checks) == 20  # the default LOGIN_THROTTLE_PER_MINUTE


async def test_concurrent_wrong_passwords_lock_after_exactly_five_and_never_5xx(
    client: Client, database: Database, password_checks: list[str], mid_minute: datetime
) -> None:
    await seed_world(database)
    wrong = {"username": "org@example.com", "password": "wrong password"}
    responses = await asyncio.gather(*(client.post(LOGIN, json=wrong) for _ in range(15)))
    answers = [await _answer(response) for response in responses]

    assert all(status == 401 for status, _ in answers), answers
    # Four failures are told "wrong"; from the fifth on, the account is locked.
    assert answers.count((401, "4010101")) == 4, answers
    assert answers.count((401, "4010102")) == 11, answers
    right = {"username": "org@example.com", "password": PASSWORD}
    assert await error_of(await client.post(LOGIN, json=right)) == (401, "4010102")


async def test_counted_attempts_are_one_document_per_address_and_name_removed_once_expired(
    client: Client, database: Database, mid_minute: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_world(database)
    wrong = {"username": "org@example.com", "password": "wrong password"}
    await asyncio.gather(*(client.post(LOGIN, json=wrong) for _ in range(15)))

    counters = await database.login_attempts.find({}).to_list(None)
    # One counter for the address (15 logins this minute), one for the name: the failures
    # counted up to the lock, and those already past the lock check when it was set.
    counts = {counter["_id"].split("|")[0]: counter["count"] for counter in counters}
    assert len(counters) == 2 and counts["address"] == 15 and 5 <= counts["account"] <= 15, counters
    monkeypatch.setattr(worker.cleanup, "now", lambda: mid_minute + timedelta(minutes=31))
    assert (await cleanup_expired(database))["loginWindows"] == 2
    assert await database.login_attempts.count_documents({}) == 0


async def test_lock_out_answers_the_same_for_unknown_and_known_accounts(
    client: Client, database: Database, mid_minute: datetime
) -> None:
    await seed_world(database)

    async def six_wrong_then_right(username: str) -> list[tuple[int, dict[str, str]]]:
        seen = []
        for password in ["wrong password"] * 6 + [PASSWORD]:
            response = await client.post(LOGIN, json={"username": username, "password": password})
            body = await response.json()
            seen.append(
                (response.status, {k: v for k, v in body.items() if k != "requestId"}),
            )
        return seen

    known = await six_wrong_then_right("org@example.com")
    unknown = await six_wrong_then_right("nobody@example.com")
    assert known == unknown
    assert [body["errorCode"] for _, body in known] == ["4010101"] * 4 + ["4010102"] * 3


async def test_trusted_proxy_forwarded_addresses_get_a_throttle_each(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    mid_minute: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await app_client(
        aiohttp_client, settings, database, task_queue, trusted_proxies="127.0.0.1/32, 10.0.0.0/8"
    )
    await seed_world(database)
    right = {"username": "super@example.com", "password": PASSWORD}

    async def from_client(address: str) -> tuple[int, str]:
        # The client, then a second proxy of ours (trusted, so skipped).
        headers = {"X-Forwarded-For": f"{address}, 10.1.2.3"}
        return await _answer(await client.post(LOGIN, json=right, headers=headers))

    caplog.set_level(logging.INFO, logger="web.access")
    first = [await from_client("203.0.113.7") for _ in range(21)]
    # The access log names the client, not the proxy.
    assert {vars(r)["client"] for r in caplog.records if r.name == "web.access"} == {"203.0.113.7"}
    assert first == [(200, "ok")] * 20 + [(429, "429")]
    assert await from_client("203.0.113.8") == (200, "ok")
    assert await from_client("2001:db8::1") == (200, "ok")
    malformed = await client.post(LOGIN, json=right, headers={"X-Forwarded-For": "not an address"})
    assert await error_of(malformed) == (400, "400")


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    client: Client, database: Database, mid_minute: datetime
) -> None:
    # Default settings: TRUSTED_PROXIES is empty, so the header names nobody.
    await seed_world(database)
    right = {"username": "super@example.com", "password": PASSWORD}
    answers = []
    for i in range(21):
        response = await client.post(LOGIN, json=right, headers={"X-Forwarded-For": f"198.51.100.{i}"})
        answers.append(await _answer(response))
    assert answers == [(200, "ok")] * 20 + [(429, "429")]


async def test_a_trusted_list_that_does_not_name_the_peer_ignores_its_header(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database: Database,
    task_queue: RecordingTaskQueue,
    mid_minute: datetime,
) -> None:
    client = await app_client(aiohttp_client, settings, database, task_queue, trusted_proxies="10.0.0.0/8")
    await seed_world(database)
    right = {"username": "super@example.com", "password": PASSWORD}
    answers = []
    for i in range(21):
        response = await client.post(LOGIN, json=right, headers={"X-Forwarded-For": f"198.51.100.{i}"})
        answers.append(await _answer(response))
    assert answers == [(200, "ok")] * 20 + [(429, "429")]


async def test_the_window_starts_again_the_next_minute(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch, mid_minute: datetime
) -> None:
    await seed_world(database)
    right = {"username": "super@example.com", "password": PASSWORD}
    await asyncio.gather(*(client.post(LOGIN, json=right) for _ in range(21)))
    monkeypatch.setattr(web.auth, "_now", lambda: mid_minute + timedelta(minutes=1))
    assert (await client.post(LOGIN, json=right)).status == 200


def test_trusted_proxies_takes_a_cidr_list_and_refuses_anything_else() -> None:
    from pydantic import ValidationError

    from shared.settings import Settings

    assert Settings().trusted_proxy_networks == ()  # trust none by default
    networks = Settings(trusted_proxies="10.0.0.0/8, 192.168.1.7,::1").trusted_proxy_networks
    assert [str(n) for n in networks] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
    with pytest.raises(ValidationError, match="not-a-network"):
        Settings(trusted_proxies="10.0.0.0/8,not-a-network")
