"""The `session-analytics` command: serve, administer, and the embedded demo.

This is the composition root: the one module that may put web and worker together (for `demo`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from shared.db import Database, connect
from shared.errors import ServiceError
from shared.logs import configure_logging
from shared.models import ID_PATTERN, SessionIn, describe_validation_error
from shared.settings import Settings, get_settings

T = TypeVar("T")


def _run_with_db(body: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = get_settings()

    async def main() -> T:
        db = connect(settings)
        try:
            await db.ensure_indexes()
            return await body(db, settings)
        finally:
            db.close()

    try:
        return asyncio.run(main())
    except ServiceError as err:
        raise click.ClickException(err.developer_message) from err


@click.group()
def main() -> None:
    """Session analytics: the host API, its administration, and a self-contained demo."""


@main.command()
@click.option("--host", default=None, help="address to listen on (default: HOST setting)")
@click.option("--port", type=int, default=None, help="port (default: PORT setting)")
def serve(host: str | None, port: int | None) -> None:
    """Serve the HTTP API on MONGODB_URL and REDIS_URL."""
    from aiohttp import web

    from web.app import create_app, log_start

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    log_start(settings, host or settings.host, port or settings.port)
    web.run_app(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        access_log=None,
        print=None,
    )


@main.command("create-user")
@click.option("--email", required=True)
@click.option("--password", required=True, help="at least 8 characters")
@click.option(
    "--role", required=True, type=click.Choice(["SUPER_ADMIN", "ORGANIZER_ADMIN", "EVENT_ADMIN", "ATTENDEE"])
)
@click.option("--event", "events", multiple=True, help="event id (EVENT_ADMIN); repeatable")
@click.option("--organizer", "organizers", multiple=True, help="organizer id (ORGANIZER_ADMIN); repeatable")
def create_user_cmd(
    email: str, password: str, role: str, events: tuple[str, ...], organizers: tuple[str, ...]
) -> None:
    """Create a user, or reset the password and grants of an existing one."""
    from shared.admin import create_user

    user = _run_with_db(lambda db, _: create_user(db, email, password, role, events, organizers))
    click.echo(f"user {user['_id']} {user['email']} {user['role']}")


@main.command("create-event")
@click.option("--id", "event_id", required=True)
@click.option("--organizer", required=True)
@click.option("--name", required=True)
@click.option("--timezone", default="UTC", show_default=True)
def create_event_cmd(event_id: str, organizer: str, name: str, timezone: str) -> None:
    """Create or rename an event."""
    from shared.admin import create_event

    event = _run_with_db(lambda db, _: create_event(db, event_id, organizer, name, timezone))
    click.echo(f"event {event['_id']} organizer {event['organizerId']}")


@main.command("create-ingest-key")
@click.option("--event", "events", multiple=True, help="event id; repeatable; none: every event")
def create_ingest_key_cmd(events: tuple[str, ...]) -> None:
    """Print a new ingest key (alone on stdout). It is stored only as a digest: keep it."""
    from shared.admin import create_ingest_key

    click.echo(_run_with_db(lambda db, _: create_ingest_key(db, list(events) or None)))


def read_session_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv" or (suffix != ".json" and not text.lstrip().startswith(("[", "{"))):
        rows: list[dict[str, Any]] = []
        for row in csv.DictReader(io.StringIO(text)):
            rows.append(
                {
                    k.strip(): (v.strip() or None if isinstance(v, str) else v)
                    for k, v in row.items()
                    if k is not None
                }
            )
        return rows
    data = json.loads(text)
    if not isinstance(data, list):
        raise click.ClickException("a JSON file must hold a list of sessions")
    return data


@main.command("import-sessions")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_sessions_cmd(file: Path) -> None:
    """Create or update sessions from a JSON list or a CSV with a header; all rows or none."""
    import re

    from shared.errors import BadRequest, EventNotFound
    from shared.store import upsert_session

    try:
        rows = read_session_rows(file)
    except (ValueError, UnicodeDecodeError) as err:
        raise click.ClickException(f"cannot read {file}: {err}") from err
    parsed: list[tuple[str, SessionIn]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            problems.append(f"row {number}: not an object")
            continue
        fields = dict(row)
        session_id = fields.pop("sessionId", None)
        if not isinstance(session_id, str) or not re.match(ID_PATTERN, session_id):
            problems.append(f"row {number}: sessionId must be 1-64 letters, digits, '-' or '_'")
            continue
        if session_id in seen:
            problems.append(f"row {number}: sessionId {session_id} repeats row {seen[session_id]}")
            continue
        seen[session_id] = number
        try:
            parsed.append((session_id, SessionIn.model_validate(fields)))
        except ValidationError as err:
            problems.append(f"row {number}: {describe_validation_error(err)}")
    if problems:
        raise click.ClickException("nothing imported:\n" + "\n".join(problems))

    async def body(db: Database, _: Settings) -> int:
        events = {s.eventId for _, s in parsed}
        found = {e["_id"] for e in await db.events.find({"_id": {"$in": sorted(events)}}).to_list(None)}
        if missing := events - found:
            raise EventNotFound(f"nothing imported: unknown events {', '.join(sorted(missing))}")
        # Every check before the first write: a file is imported whole or not at all.
        existing = await db.sessions.find(
            {"_id": {"$in": [sid for sid, _ in parsed]}}, {"eventId": 1}
        ).to_list(None)
        owners = {doc["_id"]: doc["eventId"] for doc in existing}
        moved = [sid for sid, s in parsed if owners.get(sid, s.eventId) != s.eventId]
        if moved:
            raise BadRequest(f"nothing imported: sessions of another event: {', '.join(sorted(moved))}")
        for session_id, session in parsed:
            await upsert_session(db, session_id, session)
        return len(parsed)

    click.echo(f"imported {_run_with_db(body)} sessions")


async def _follow(db: Database, task_id: str) -> dict[str, Any]:
    """Show a task's progress until it ends: a bar on a terminal, else a line per change."""
    from shared.jobs import TERMINAL

    interactive = sys.stderr.isatty()
    bar = click.progressbar(length=1, label="recompute", file=sys.stderr) if interactive else None
    shown = (-1, -1)
    try:
        while True:
            current = await db.tasks.find_one({"_id": task_id})
            assert current is not None
            done, total = current["progress"]["done"], current["progress"]["total"]
            if (done, total) != shown:
                if bar is not None and total:
                    bar.length = total
                    bar.update(done - max(shown[0], 0))
                elif bar is None:
                    click.echo(f"recompute: {done}/{total} {current['state']}", err=True)
                shown = (done, total)
            if current["state"] in TERMINAL:
                return current
            await asyncio.sleep(0.5)
    finally:
        if bar is not None:
            bar.render_finish()


@main.command()
@click.option("--event", "event_id", required=True)
@click.option("--wait", is_flag=True, help="follow progress until the recompute ends")
def recompute(event_id: str, wait: bool) -> None:
    """Recompute durations and every number of one event (one at a time per event)."""
    from shared.errors import EventNotFound
    from shared.jobs import FAILURE, start_recompute
    from shared.tasks import CeleryTaskQueue

    async def body(db: Database, settings: Settings) -> str:
        if await db.events.find_one({"_id": event_id}) is None:
            raise EventNotFound(f"no event {event_id}")
        queue = CeleryTaskQueue(settings.redis_url)
        try:
            task, created = await start_recompute(db, queue, event_id, settings.recompute_stale_s)
        finally:
            await queue.close()
        click.echo(f"task {task['_id']} ({'started' if created else 'already running'})", err=True)
        if not wait:
            return task["_id"]
        current = await _follow(db, task["_id"])
        if current["state"] == FAILURE:
            raise click.ClickException(f"recompute failed: {current.get('error')}")
        click.echo(json.dumps(current.get("result"), default=str), err=True)
        return task["_id"]

    click.echo(_run_with_db(body))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--check", is_flag=True, help="seed, run the jobs, query the API once, and exit")
def demo(host: str, port: int, check: bool) -> None:
    """Run everything in one process on embedded defaults: no MongoDB, no Redis needed."""
    from web.demo import run_demo

    started = time.monotonic()
    asyncio.run(run_demo(host, port, check=check))
    if check:
        click.echo(f"demo check passed in {time.monotonic() - started:.1f}s", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
