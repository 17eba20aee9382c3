"""`session-analytics import-sessions FILE` against the test server: JSON and CSV, all or nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from shared.admin import import_sessions
from shared.db import Database
from shared.models import SessionIn
from shared.settings import Settings, get_settings
from tests.conftest import Client
from tests.seed import add_session, cheap_password_hashing, login, seed_world
from web.cli import main

# The command reads MONGODB_URL itself, so it needs the real server: mongomock lives in-process.
pytestmark = pytest.mark.parametrize("store_kind", ["real"], indirect=True)

ROWS: list[dict[str, Any]] = [
    {
        "sessionId": "keynote",
        "eventId": "ev1",
        "title": "Keynote",
        "startTime": "2024-05-01T09:00:00Z",
        "endTime": "2024-05-01T10:00:00Z",
        "format": "MAINSTAGE_SESSION",
        "streamProvider": "YOUTUBE",
        "videoId": "dQw4w9WgXcQ",
    },
    {
        "sessionId": "lounge",
        "eventId": "ev1",
        "title": "Lounge",
        "startTime": "2024-05-01T10:00:00Z",
        "endTime": "2024-05-01T11:00:00Z",
        "format": "NETWORKING_SESSION",
        "streamProvider": None,
        "videoId": None,
    },
]
CSV_HEADER = "sessionId,eventId,title,startTime,endTime,format,streamProvider,videoId\n"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


async def _import(monkeypatch: pytest.MonkeyPatch, settings: Settings, path: Path) -> Result:
    """Run the command as a user would, in a thread: it runs its own event loop."""
    monkeypatch.setenv("MONGODB_URL", settings.mongodb_url)
    get_settings.cache_clear()
    try:
        return await asyncio.to_thread(
            CliRunner().invoke, main, ["import-sessions", str(path)], catch_exceptions=False
        )
    finally:
        get_settings.cache_clear()


async def _listed(client: Any, headers: dict[str, str]) -> list[tuple[str, str, str | None]]:
    response = await client.get("/rest/host/session/analytics?eventId=ev1", headers=headers)
    return [
        (item["sessionId"], item["title"], item["streamProvider"]) for item in (await response.json())["data"]
    ]


async def test_import_of_a_json_list_creates_sessions_the_list_shows(
    client: Client, database: Database, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_world(database)
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(ROWS))

    result = await _import(monkeypatch, settings, path)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported 2 sessions"
    headers = await login(client, "super")
    assert await _listed(client, headers) == [("keynote", "Keynote", "YOUTUBE"), ("lounge", "Lounge", None)]


async def test_import_of_a_csv_creates_and_then_updates_sessions(
    client: Client, database: Database, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_world(database)
    path = tmp_path / "sessions.csv"
    path.write_text(
        "\ufeff"
        + CSV_HEADER
        + "keynote,ev1,Keynote,2024-05-01T09:00:00Z,2024-05-01T10:00:00Z,MAINSTAGE_SESSION,"
        "YOUTUBE,dQw4w9WgXcQ\n"
        + 'lounge,ev1,"Lounge, with coffee",2024-05-01T10:00:00Z,2024-05-01T11:00:00Z,'
        "NETWORKING_SESSION,,\n",
        encoding="utf-8",
    )
    first = await _import(monkeypatch, settings, path)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "imported 2 sessions"
    headers = await login(client, "super")
    assert await _listed(client, headers) == [
        ("keynote", "Keynote", "YOUTUBE"),
        ("lounge", "Lounge, with coffee", None),
    ]

    path.write_text(
        CSV_HEADER + "keynote,ev1,Keynote (moved),2024-05-01T09:00:00Z,"
        "2024-05-01T10:00:00Z,MAINSTAGE_SESSION,YOUTUBE,dQw4w9WgXcQ\n"
    )
    second = await _import(monkeypatch, settings, path)
    assert second.exit_code == 0, second.output
    assert await _listed(client, headers) == [
        ("keynote", "Keynote (moved)", "YOUTUBE"),
        ("lounge", "Lounge, with coffee", None),
    ]


BAD_FILES = {
    "bad format in row 2": ("json", json.dumps([ROWS[0], {**ROWS[1], "format": "PANEL"}]), "row 2"),
    "no sessionId": (
        "json",
        json.dumps([ROWS[0], {k: v for k, v in ROWS[1].items() if k != "sessionId"}]),
        "row 2",
    ),
    "unknown field": ("json", json.dumps([{**ROWS[0], "attendeeCount": 5}, ROWS[1]]), "row 1"),
    "operator object": ("json", json.dumps([ROWS[0], {**ROWS[1], "title": {"$ne": ""}}]), "row 2"),
    "unknown event": ("json", json.dumps([ROWS[0], {**ROWS[1], "eventId": "nope"}]), "nope"),
    "not JSON": ("json", "[{", "cannot read"),
    "JSON object, not a list": ("json", json.dumps(ROWS[0]), "must hold a list"),
    "repeated sessionId": (
        "json",
        json.dumps([ROWS[0], {**ROWS[1], "sessionId": ROWS[0]["sessionId"]}]),
        "repeats row 1",
    ),
    "session of another event": (
        "json",
        json.dumps([ROWS[0], {**ROWS[1], "sessionId": "existing", "eventId": "ev2"}]),
        "existing",
    ),
    "csv time without zone": (
        "csv",
        CSV_HEADER + "keynote,ev1,Keynote,2024-05-01T09:00:00Z,"
        "2024-05-01T10:00:00Z,MAINSTAGE_SESSION,YOUTUBE,v1\n"
        "late,ev1,Late,2024-05-01 09:00,2024-05-01T10:00:00Z,"
        "MAINSTAGE_SESSION,YOUTUBE,v2\n",
        "row 2",
    ),
    "csv unknown column": (
        "csv",
        "sessionId,eventId,title,startTime,endTime,format,views\n"
        "keynote,ev1,Keynote,2024-05-01T09:00:00Z,2024-05-01T10:00:00Z,"
        "MAINSTAGE_SESSION,12\n",
        "unknown CSV columns in",
    ),
    "csv missing columns": (
        "csv",
        "sessionId,eventId,title,startTime\nkeynote,ev1,Keynote,2024-05-01T09:00:00Z\n",
        "lacks endTime, format",
    ),
    "csv row longer than the header": (
        "csv",
        CSV_HEADER + "keynote,ev1,Keynote,2024-05-01T09:00:00Z,"
        "2024-05-01T10:00:00Z,MAINSTAGE_SESSION,YOUTUBE,v1,extra\n",
        "row 1: more values than the header has columns",
    ),
    "sessionId ending in a newline": (
        "json",
        json.dumps([{**ROWS[0], "sessionId": "keynote\n"}]),
        "row 1: sessionId must be 1-64 letters",
    ),
    "empty file": ("csv", "", "is empty"),
    "csv header only": ("csv", CSV_HEADER, "holds no sessions"),
    "empty JSON list": ("json", "[]", "holds no sessions"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_a_file_with_a_bad_row_imports_nothing(
    client: Client,
    database: Database,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    await seed_world(database)
    await add_session(database, "existing", title="Existing")
    suffix, text, named = BAD_FILES[case]
    path = tmp_path / f"sessions.{suffix}"
    path.write_text(text)
    before = await database.sessions.find({}).to_list(length=None)

    result = await _import(monkeypatch, settings, path)

    assert result.exit_code == 1
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "imported" not in result.stdout
    assert await database.sessions.find({}).to_list(length=None) == before
    assert await _listed(client, await login(client, "super")) == [("existing", "Existing", "YOUTUBE")]


async def test_the_installed_command_imports_with_mongodb_url(
    client: Client, database: Database, settings: Settings, tmp_path: Path
) -> None:
    await seed_world(database)
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(ROWS[:1]))
    command = Path(sys.executable).with_name("session-analytics")
    env = {**os.environ, "MONGODB_URL": settings.mongodb_url}

    done = await asyncio.to_thread(
        subprocess.run,
        [str(command), "import-sessions", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported 1 sessions"
    assert await _listed(client, await login(client, "super")) == [("keynote", "Keynote", "YOUTUBE")]


class _Commands(monitoring.CommandListener):
    """Every command the import sends, by name, as the server receives them."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.update_statements: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)
        if event.command_name == "update":
            self.update_statements.append(len(event.command["updates"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _thousand_rows(title: str, renamed: int = 0) -> list[tuple[str, SessionIn]]:
    """Sessions s0000..s0999 titled `title N`; the first `renamed` get `Renamed N`."""
    fields = {k: v for k, v in ROWS[0].items() if k != "sessionId"}
    return [
        (
            f"s{n:04d}",
            SessionIn.model_validate(
                {**fields, "title": f"{'Renamed' if n < renamed else title} {n}", "videoId": f"video{n}"}
            ),
        )
        for n in range(1000)
    ]


async def test_a_thousand_rows_take_a_few_round_trips_not_three_per_row(
    database: Database, settings: Settings
) -> None:
    await seed_world(database)
    commands = _Commands()
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        settings.mongodb_url, tz_aware=True, event_listeners=[commands]
    )
    db = Database(client, client[settings.mongodb_database_name])
    done: list[int] = []
    batch = settings.write_batch
    try:
        created = await import_sessions(db, _thousand_rows("Talk"), done.append, write_batch=batch)
        after_create = list(commands.names)
        commands.names.clear()
        again = await import_sessions(db, _thousand_rows("Talk"), done.append, write_batch=batch)
        after_same = list(commands.names)
        commands.names.clear()
        renamed = await import_sessions(
            db, _thousand_rows("Talk", renamed=1000), done.append, write_batch=batch
        )
        after_rename = list(commands.names)
        commands.names.clear()
        commands.update_statements.clear()
        # A smaller WRITE_BATCH: as many update commands as batches of changed sessions.
        back = await import_sessions(db, _thousand_rows("Talk", renamed=250), done.append, write_batch=100)
        after_smaller = list(commands.names)
    finally:
        client.close()

    assert batch >= 1000  # the default: a thousand rows fit in one command
    assert (created.created, again.unchanged, renamed.changed) == (1000, 1000, 1000)
    # events read, sessions read, one insert, analytics version bumped (a getMore may follow a read)
    assert after_create.count("insert") == 1
    assert len(after_create) <= 5, after_create
    assert after_same.count("update") == 0 and after_same.count("insert") == 0, after_same
    # every changed session in one update command, then the analytics version bumped
    assert after_rename.count("update") == 2, after_rename
    assert len(after_rename) <= 5, after_rename
    assert (back.changed, back.unchanged) == (750, 250)
    # 750 changed at 100 a command: 8 update commands, then the analytics version bumped
    assert commands.update_statements == [100] * 7 + [50, 1], commands.update_statements
    assert len(after_smaller) <= 9 + 4 + 10, after_smaller  # plus the reads of 100 ids each
    assert done[-1] == 1000
    renamed_one = await database.sessions.find_one({"_id": "s0249"})
    kept_one = await database.sessions.find_one({"_id": "s0250"})
    assert renamed_one is not None and renamed_one["title"] == "Renamed 249"
    assert kept_one is not None and kept_one["title"] == "Talk 250"
    assert await database.sessions.count_documents({"eventId": "ev1"}) == 1000


async def test_sessions_come_from_standard_input_with_progress_on_stderr(
    client: Client, database: Database, settings: Settings
) -> None:
    await seed_world(database)
    command = Path(sys.executable).with_name("session-analytics")
    lines = [CSV_HEADER.strip()] + [
        f"s{n:04d},ev1,Talk {n},2024-05-01T09:00:00Z,2024-05-01T10:00:00Z,BREAKOUT_SESSION,,"
        for n in range(1500)
    ]

    done = await asyncio.to_thread(
        subprocess.run,
        [str(command), "import-sessions", "-"],
        input="\n".join(lines) + "\n",
        env={**os.environ, "MONGODB_URL": settings.mongodb_url},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported 1500 sessions\n"
    assert done.stderr.splitlines() == [
        "import-sessions: 1000/1500 rows done",
        "import-sessions: 1500/1500 rows done",
        "import-sessions: 1500 new, 0 changed, 0 unchanged",
    ]
    listed = await client.get(
        "/rest/host/session/analytics?eventId=ev1&size=1&sort=-title", headers=await login(client, "super")
    )
    body = await listed.json()
    assert body["recordsTotal"] == 1500
    assert body["data"][0]["title"] == "Talk 999"


@pytest.mark.parametrize(("meanwhile_event", "outcome"), [("ev1", "written over"), ("ev2", "refused")])
async def test_a_session_created_meanwhile_is_written_over_or_refused_by_its_event(
    database: Database, settings: Settings, meanwhile_event: str, outcome: str
) -> None:
    """Someone creates a session between the import's read and its insert (here: from the
    progress report the import makes in between, on another connection)."""
    from pymongo import MongoClient

    from shared.errors import BadRequest

    await seed_world(database)
    other: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_url)
    sessions = other[settings.mongodb_database_name].sessions

    def someone_else_creates_keynote(done: int) -> None:
        if done == 0:
            sessions.insert_one({"_id": "keynote", "eventId": meanwhile_event, "title": "Created meanwhile"})

    parsed = [
        (str(r["sessionId"]), SessionIn.model_validate({k: v for k, v in r.items() if k != "sessionId"}))
        for r in ROWS
    ]
    try:
        if outcome == "refused":
            with pytest.raises(
                BadRequest, match="import stopped: sessions created meanwhile under another event: keynote"
            ):
                await import_sessions(database, parsed, someone_else_creates_keynote)
        else:
            result = await import_sessions(database, parsed, someone_else_creates_keynote)
            assert result.created == 2
    finally:
        other.close()

    keynote = await database.sessions.find_one({"_id": "keynote"})
    assert keynote is not None
    if outcome == "refused":
        assert (keynote["eventId"], keynote["title"]) == ("ev2", "Created meanwhile")
    else:
        assert (keynote["eventId"], keynote["title"], keynote["durationStatus"]) == (
            "ev1",
            "Keynote",
            "PENDING",
        )
    assert await database.sessions.find_one({"_id": "lounge"}) is not None


async def test_an_event_id_ending_in_a_newline_is_refused_for_ingest_keys_and_users(
    database: Database,
) -> None:
    from shared.admin import create_ingest_key, create_user
    from shared.errors import BadRequest

    await seed_world(database)
    with pytest.raises(BadRequest, match="event id 'ev1\\\\n' must be"):
        await create_ingest_key(database, ["ev1\n"])
    with pytest.raises(BadRequest, match="must be 1-64 letters"):
        await create_user(database, "nl@example.com", "pw-long-enough", "EVENT_ADMIN", ["ev1\n"])
    assert await database.ingest_keys.count_documents({}) == 0
    assert await database.users.count_documents({"email": "nl@example.com"}) == 0
