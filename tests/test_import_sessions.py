"""`session-analytics import-sessions FILE` against the test FerretDB: JSON and CSV, all or nothing."""

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

from shared.settings import Settings, get_settings
from tests.seed import add_session, cheap_password_hashing, login, seed_world
from web.cli import main

# The command reads MONGODB_URL itself, so it needs the real server: mongomock lives in-process.
pytestmark = pytest.mark.parametrize("store_kind", ["real"], indirect=True)

ROWS = [
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
    client, database, settings, tmp_path, monkeypatch
):
    await seed_world(database)
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(ROWS))

    result = await _import(monkeypatch, settings, path)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported 2 sessions"
    headers = await login(client, "super")
    assert await _listed(client, headers) == [("keynote", "Keynote", "YOUTUBE"), ("lounge", "Lounge", None)]


async def test_import_of_a_csv_creates_and_then_updates_sessions(
    client, database, settings, tmp_path, monkeypatch
):
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
        "row 1",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_a_file_with_a_bad_row_imports_nothing(client, database, settings, tmp_path, monkeypatch, case):
    await seed_world(database)
    await add_session(database, "existing", title="Existing")
    suffix, text, named = BAD_FILES[case]
    path = tmp_path / f"sessions.{suffix}"
    path.write_text(text)
    before = await database.sessions.find({}).to_list(length=None)

    result = await _import(monkeypatch, settings, path)

    assert result.exit_code == 1
    assert named in result.stderr
    assert "imported" not in result.stdout
    assert await database.sessions.find({}).to_list(length=None) == before
    assert await _listed(client, await login(client, "super")) == [("existing", "Existing", "YOUTUBE")]


async def test_the_installed_command_imports_with_mongodb_url(client, database, settings, tmp_path):
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
