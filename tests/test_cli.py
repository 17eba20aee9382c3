"""The `session-analytics` command as a user runs it, in a subprocess: what it prints and exits with.

Errors are one line on standard error without a traceback or a credential, exit code 1;
`--debug` shows the traceback. Administrative commands refuse what would store a mistake.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from shared.db import Database
from shared.jobs import STARTED, SUCCESS, take_task, update_task
from shared.settings import Settings
from tests.conftest import Client
from tests.seed import cheap_password_hashing, seed_world
from tests.servers import Redis, free_port

COMMAND = str(Path(sys.executable).with_name("session-analytics"))
SECRET = "Sup3r-secret-pw"
real_store = pytest.mark.parametrize("store_kind", ["real"], indirect=True)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)  # the seeded users; the command itself hashes as deployed


def _environment(**settings: str) -> dict[str, str]:
    unset = ("MONGODB_URL", "REDIS_URL", "HOST", "PORT", "SESSION_ANALYTICS_PASSWORD")
    return {**{k: v for k, v in os.environ.items() if k.upper() not in unset}, **settings}


def run_cli(
    *args: str, stdin: str | None = "", timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        env=_environment(**settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def run_cli_async(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """The command in a thread, so the test's own event loop (and the app under test) keeps running."""
    # mypy cannot tell that no environment name is `stdin` or `timeout`.
    return await asyncio.to_thread(run_cli, *args, **settings)  # type: ignore[arg-type]


def one_line_error(done: Any) -> str:
    """The error line, after checking it is the whole of standard error and the exit code is 1."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: "), lines
    assert SECRET not in done.stderr
    return str(lines[0])


def unused_url(scheme: str, path: str) -> str:
    return f"{scheme}://admin:{SECRET}@127.0.0.1:{free_port()}/{path}"


def test_version_prints_the_installed_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout == f"session-analytics, version {version('session-analytics')}\n"


def test_an_unreachable_mongodb_is_one_line_without_credentials() -> None:
    url = unused_url("mongodb", "analytics")
    line = one_line_error(run_cli("create-ingest-key", MONGODB_URL=url))
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert line.startswith(f"Error: MongoDB at mongodb://***@127.0.0.1:{port}/analytics unreachable: ")
    assert "Connection refused" in line


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (f"mongodb://admin:{SECRET}@127.0.0.1:port/analytics", "Port contains non-digit characters"),
        (f"http://admin:{SECRET}@127.0.0.1/analytics", "Invalid URI scheme"),
        (f"mongodb://admin:{SECRET}@127.0.0.1/analytics?w=bogus&wtimeoutMS=nope", "wtimeoutms"),
    ],
)
def test_a_malformed_mongodb_url_is_one_line_without_credentials(url: str, named: str) -> None:
    line = one_line_error(
        run_cli("create-event", "--id", "e", "--organizer", "o", "--name", "n", MONGODB_URL=url)
    )
    assert line.startswith("Error: MONGODB_URL ")
    assert "***@127.0.0.1" in line
    assert named.lower() in line.lower()


def test_debug_shows_the_traceback() -> None:
    done = run_cli("--debug", "create-ingest-key", MONGODB_URL=unused_url("mongodb", "analytics"))
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ServerSelectionTimeoutError" in done.stderr


def test_a_bad_setting_is_named_in_one_line() -> None:
    line = one_line_error(run_cli("create-ingest-key", PORT="eighty"))
    assert line == (
        "Error: invalid setting: PORT: Input should be a valid integer, unable to parse string as an integer"
    )


def test_a_missing_file_is_one_line() -> None:
    line = one_line_error(run_cli("import-sessions", "/nonexistent/sessions.csv"))
    assert line == "Error: cannot read /nonexistent/sessions.csv: no such file or directory"


@pytest.mark.parametrize(
    "args",
    [
        ["create-event", "--id", "e", "--organizer", "o", "--name", "n"],
        ["create-user", "--email", "a@example.com", "--role", "SUPER_ADMIN"],
        ["create-ingest-key"],
        ["import-sessions", "-"],
        ["recompute", "--event", "e"],
    ],
)
def test_one_shot_commands_refuse_the_in_process_store(args: list[str]) -> None:
    line = one_line_error(run_cli(*args, MONGODB_URL="mem:///analytics"))
    assert line.startswith("Error: MONGODB_URL mem:// is the demo's in-process store")


def test_serve_with_an_unreachable_mongodb_is_one_line() -> None:
    line = one_line_error(
        run_cli("serve", "--port", str(free_port()), MONGODB_URL=unused_url("mongodb", "analytics"))
    )
    assert "MongoDB at mongodb://***@127.0.0.1:" in line and "unreachable" in line


def test_serve_with_a_malformed_redis_url_is_one_line() -> None:
    url = f"redis://:{SECRET}@127.0.0.1:port/0"
    line = one_line_error(run_cli("serve", "--port", str(free_port()), REDIS_URL=url))
    assert line == "Error: REDIS_URL redis://***@127.0.0.1:port/0 is malformed: " + (
        "Port could not be cast to integer value as 'port'"
    )


@real_store
def test_serve_on_a_busy_port_is_one_line(settings: Settings) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("serve", MONGODB_URL=settings.mongodb_url, PORT=str(port))
    assert one_line_error(done) == f"Error: cannot listen on 127.0.0.1:{port}: address already in use"


@real_store
async def test_recompute_with_an_unreachable_redis_is_one_line_and_starts_nothing(
    database: Database, settings: Settings
) -> None:
    await seed_world(database)
    url = unused_url("redis", "0")
    done = await run_cli_async("recompute", "--event", "ev1", MONGODB_URL=settings.mongodb_url, REDIS_URL=url)
    line = one_line_error(done)
    assert line.startswith("Error: Redis at redis://***@127.0.0.1:") and "unreachable" in line
    assert await database.tasks.count_documents({}) == 0


@real_store
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--role", "EVENT_ADMIN"], "Error: an EVENT_ADMIN needs at least one --event"),
        (["--role", "EVENT_ADMIN", "--event", "ev1", "--event", "ghost"], "Error: unknown events: ghost"),
        (
            ["--role", "EVENT_ADMIN", "--event", "ev1", "--organizer", "org1"],
            "Error: an EVENT_ADMIN takes --event, not --organizer",
        ),
        (["--role", "ORGANIZER_ADMIN"], "Error: an ORGANIZER_ADMIN needs at least one --organizer"),
        (
            ["--role", "ORGANIZER_ADMIN", "--organizer", "org1", "--event", "ev1"],
            "Error: an ORGANIZER_ADMIN takes --organizer, not --event",
        ),
        (
            ["--role", "SUPER_ADMIN", "--organizer", "org1"],
            "Error: a SUPER_ADMIN takes neither --event nor --organizer",
        ),
        (["--role", "ATTENDEE", "--event", "ev1"], "Error: a ATTENDEE takes neither --event nor --organizer"),
    ],
)
async def test_create_user_refuses_unknown_events_and_grants_the_role_does_not_take(
    database: Database, settings: Settings, args: list[str], said: str
) -> None:
    await seed_world(database)
    users_before = await database.users.count_documents({})
    done = await run_cli_async(
        "create-user",
        "--email",
        "new@example.com",
        *args,
        MONGODB_URL=settings.mongodb_url,
        SESSION_ANALYTICS_PASSWORD="long enough password",
    )
    assert one_line_error(done) == said
    assert await database.users.count_documents({}) == users_before


@real_store
async def test_an_ingest_key_for_an_unknown_event_is_refused(database: Database, settings: Settings) -> None:
    await seed_world(database)
    done = await run_cli_async(
        "create-ingest-key", "--event", "ev1", "--event", "ghost", MONGODB_URL=settings.mongodb_url
    )
    assert one_line_error(done) == "Error: unknown events: ghost"
    assert done.stdout == ""
    assert await database.ingest_keys.count_documents({}) == 0


@real_store
async def test_create_event_refuses_an_unknown_time_zone_and_takes_an_iana_one(
    database: Database, settings: Settings
) -> None:
    done = await run_cli_async(
        "create-event",
        "--id",
        "mars",
        "--organizer",
        "org1",
        "--name",
        "Mars",
        "--timezone",
        "Mars/Olympus",
        MONGODB_URL=settings.mongodb_url,
    )
    assert one_line_error(done) == (
        "Error: unknown time zone 'Mars/Olympus': give an IANA name such as Europe/Paris"
    )
    assert await database.events.count_documents({}) == 0

    done = await run_cli_async(
        "create-event",
        "--id",
        "paris",
        "--organizer",
        "org1",
        "--name",
        "Paris",
        "--timezone",
        "Europe/Paris",
        MONGODB_URL=settings.mongodb_url,
    )
    assert done.returncode == 0, done.stderr
    stored = await database.events.find_one({"_id": "paris"})
    assert stored is not None and stored["timezone"] == "Europe/Paris"


async def _logs_in(client: Any, email: str, password: str) -> bool:
    response = await client.post("/rest/u/login", json={"username": email, "password": password})
    return bool(response.status == 200)


@real_store
async def test_the_password_comes_from_the_environment_or_standard_input_never_required(
    client: Client, database: Database, settings: Settings
) -> None:
    await seed_world(database)
    from_env = await run_cli_async(
        "create-user",
        "--email",
        "env@example.com",
        "--role",
        "EVENT_ADMIN",
        "--event",
        "ev1",
        MONGODB_URL=settings.mongodb_url,
        SESSION_ANALYTICS_PASSWORD="from the environment",
    )
    piped = await asyncio.to_thread(
        run_cli,
        "create-user",
        "--email",
        "pipe@example.com",
        "--role",
        "SUPER_ADMIN",
        stdin="from standard input\n",
        MONGODB_URL=settings.mongodb_url,
    )
    nothing = await run_cli_async(
        "create-user",
        "--email",
        "none@example.com",
        "--role",
        "SUPER_ADMIN",
        MONGODB_URL=settings.mongodb_url,
    )

    assert from_env.returncode == 0, from_env.stderr
    assert piped.returncode == 0, piped.stderr
    assert "from the environment" not in from_env.stdout + from_env.stderr
    assert await _logs_in(client, "env@example.com", "from the environment")
    assert await _logs_in(client, "pipe@example.com", "from standard input")
    assert one_line_error(nothing).startswith("Error: no password: type it at the prompt on a terminal")
    assert await database.users.find_one({"email": "none@example.com"}) is None


def _read_until(fd: int, wanted: str, deadline: float) -> str:
    seen = b""
    while wanted.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {wanted!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1024)
            assert chunk, f"closed before {wanted!r}: {seen!r}"
            seen += chunk
    return seen.decode()


@real_store
async def test_on_a_terminal_the_password_is_asked_twice_and_not_echoed(
    client: Client, database: Database, settings: Settings
) -> None:
    await seed_world(database)
    terminal, terminal_end = pty.openpty()
    errors_read, errors_write = os.pipe()

    def create() -> tuple[int, str]:
        # A new session has no controlling terminal: getpass uses standard input, the terminal.
        process = subprocess.Popen(
            [COMMAND, "create-user", "--email", "typed@example.com", "--role", "SUPER_ADMIN"],
            env=_environment(MONGODB_URL=settings.mongodb_url),
            stdin=terminal_end,
            stdout=subprocess.PIPE,
            stderr=errors_write,
            start_new_session=True,
        )
        os.close(terminal_end)
        os.close(errors_write)
        deadline = time.monotonic() + 30
        shown = _read_until(errors_read, "password: ", deadline)
        os.write(terminal, b"typed at the prompt\n")
        shown += _read_until(errors_read, "confirmation: ", deadline)
        os.write(terminal, b"typed at the prompt\n")
        out, _ = process.communicate(timeout=30)
        return process.returncode, shown + out.decode()

    try:
        returncode, shown = await asyncio.to_thread(create)
    finally:
        os.close(terminal)
        os.close(errors_read)

    assert returncode == 0, shown
    assert "typed at the prompt" not in shown
    assert await _logs_in(client, "typed@example.com", "typed at the prompt")


@real_store
async def test_recompute_wait_says_when_no_worker_takes_the_task_and_ends_with_a_summary(
    database: Database, settings: Settings, redis_server: Redis
) -> None:
    await seed_world(database)
    process = await asyncio.create_subprocess_exec(
        COMMAND,
        "recompute",
        "--event",
        "ev1",
        "--wait",
        env=_environment(MONGODB_URL=settings.mongodb_url, REDIS_URL=redis_server.url()),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None and process.stdout is not None
    try:
        started = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert started.startswith("task ") and started.endswith(" (started)\n"), started
        task_id = started.split()[1]
        lines: list[str] = []
        while not any("no worker has picked the task up" in line for line in lines):
            lines.append((await asyncio.wait_for(process.stderr.readline(), 30)).decode())
        assert lines[-1] == (
            "recompute: no worker has picked the task up after 15 s (still PENDING): is "
            "`celery -A worker worker` running on this REDIS_URL? Still waiting (Ctrl-C stops "
            "waiting; the task stays queued).\n"
        )
        # What a worker would write as it takes the task up and finishes it.
        await take_task(database, task_id, "run-1")
        await update_task(database, task_id, "run-1", state=STARTED, progress={"done": 1, "total": 4})
        await asyncio.sleep(1)
        result = {"sessions": 2, "durations": {"updated": 1}}
        await update_task(
            database, task_id, "run-1", state=SUCCESS, progress={"done": 4, "total": 4}, result=result
        )
        out, rest = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0, rest
    assert out.decode() == f"{task_id}\n"
    tail = rest.decode().splitlines()
    assert tail[-3:-1] == ["recompute: 1/4 STARTED", "recompute: 4/4 SUCCESS"]
    summary = tail[-1]
    assert summary.startswith(f"recompute {task_id} SUCCESS: 2 sessions, 1 durations updated, in ")
    assert 15 < float(summary.rsplit(" in ", 1)[1].removesuffix(" s")) < 60


@real_store
def test_serve_says_once_it_listens_where_and_which_version(settings: Settings) -> None:
    port = free_port()
    server = subprocess.Popen(
        [COMMAND, "serve"],
        env=_environment(MONGODB_URL=settings.mongodb_url, PORT=str(port), LOG_JSON="false"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # the first line is the start-up line, once bound
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it really listens when it says so
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert f"session-analytics {version('session-analytics')} serving on http://127.0.0.1:{port}" in line
