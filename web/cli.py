"""The `session-analytics` command: serve, administer, and the embedded demo.

This is the composition root: the one module that may put web and worker together (for `demo`).
Every failure a user can meet ends as one line on standard error and exit code 1; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import io
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from shared.db import Database, connect
from shared.documents import TaskDoc
from shared.models import SessionIn, describe_validation_error, is_id
from shared.settings import Settings, get_settings
from web.cli_errors import configured_urls, describe, one_line, without_credentials

T = TypeVar("T")

PASSWORD_ENV = "SESSION_ANALYTICS_PASSWORD"
# How long `recompute --wait` lets a task sit in PENDING before saying no worker has taken it.
NO_WORKER_NOTICE_S = 15.0
NO_WORKER_NOTICE = (
    f"\nrecompute: no worker has picked the task up after {NO_WORKER_NOTICE_S:.0f} s "
    "(still PENDING): is `celery -A worker worker` running on this REDIS_URL? "
    "Still waiting (Ctrl-C stops waiting; the task stays queued)."
)
# Row problems named in the one-line error of an import; the rest are counted.
PROBLEMS_SHOWN = 10


def _version() -> str:
    try:
        return version("session-analytics")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


class _Commands(click.Group):
    """Turns any error of a command into one line (credentials removed), or a traceback with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        urls = configured_urls()
        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            if debug and err.__cause__ is not None:
                traceback.print_exception(err.__cause__, file=sys.stderr)
            if type(err) is not click.ClickException:
                raise  # usage errors keep their usage lines
            raise click.ClickException(one_line(err.message, urls.values())) from err.__cause__
        except (click.exceptions.Exit, click.Abort):
            raise
        except Exception as err:
            if debug:
                raise
            raise click.ClickException(one_line(describe(err, urls), urls.values())) from err


@click.group(cls=_Commands)
@click.version_option(_version(), "--version", prog_name="session-analytics")
@click.option("--debug", is_flag=True, help="show the traceback of an error")
def main(debug: bool) -> None:
    """Session analytics: the host API, its administration, and a self-contained demo."""


def _one_shot_settings() -> Settings:
    settings = get_settings()
    if settings.embedded:
        raise click.ClickException(
            "MONGODB_URL mem:// is the demo's in-process store: what this command writes would "
            "vanish when it exits; set MONGODB_URL to a MongoDB server"
        )
    return settings


def _run_with_db(body: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = _one_shot_settings()
    _check_mongodb_url(settings.mongodb_url)

    async def main() -> T:
        db = connect(settings)
        try:
            await db.ensure_indexes()
            return await body(db, settings)
        finally:
            db.close()

    return asyncio.run(main())


def _check_mongodb_url(mongodb_url: str) -> None:
    """Refuse a URL PyMongo cannot parse, or whose options it would ignore with a warning."""
    import warnings

    from pymongo.errors import ConfigurationError
    from pymongo.uri_parser import parse_uri

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parse_uri(mongodb_url)
    except (ConfigurationError, ValueError, TypeError, UserWarning) as err:
        url = without_credentials(mongodb_url)
        raise click.ClickException(f"MONGODB_URL {url} is not usable: {err}") from err


def _check_urls(settings: Settings) -> None:
    if not settings.embedded:
        _check_mongodb_url(settings.mongodb_url)
    _check_redis_url(settings.redis_url)


def _check_redis_url(redis_url: str) -> None:
    from redis.connection import parse_url

    try:
        parse_url(redis_url)  # type: ignore[no-untyped-call]  # redis leaves this one unannotated
    except ValueError as err:
        raise click.ClickException(f"REDIS_URL {without_credentials(redis_url)} is malformed: {err}") from err


@main.command()
@click.option("--host", default=None, help="address to listen on (default: HOST setting)")
@click.option("--port", type=int, default=None, help="port (default: PORT setting)")
def serve(host: str | None, port: int | None) -> None:
    """Serve the HTTP API on MONGODB_URL and REDIS_URL."""
    from aiohttp import web

    from shared.logs import configure_logging
    from web.app import create_app, log_start

    settings = get_settings()
    _check_urls(settings)
    configure_logging(settings.log_level, settings.log_json)
    host = host or settings.host
    port = settings.port if port is None else port
    with _listening(host, port):
        # run_app calls `print` once it listens: the start-up line never announces a server
        # that failed to start.
        web.run_app(
            create_app(settings),
            host=host,
            port=port,
            access_log=None,
            print=lambda _banner: log_start(settings, host, port),
        )


@contextlib.contextmanager
def _listening(host: str, port: int) -> Iterator[None]:
    """A port that cannot be bound (busy, privileged, foreign address) said in one sentence."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            reason = os.strerror(err.errno).lower()
            raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from err
        raise


def _password(given: str | None) -> str:
    """--password, else SESSION_ANALYTICS_PASSWORD, else a hidden prompt on a terminal (typed
    twice), else the first line of standard input (`printf '%s\\n' "$PW" | session-analytics ...`)."""
    if given:
        return given
    if from_env := os.environ.get(PASSWORD_ENV):
        return from_env
    if sys.stdin.isatty():
        try:
            typed: str = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
        except click.Abort as err:
            raise click.ClickException("no password given") from err
        return typed
    piped = sys.stdin.readline().rstrip("\r\n")
    if not piped:
        raise click.ClickException(
            f"no password: type it at the prompt on a terminal, set {PASSWORD_ENV}, or pipe it on "
            "standard input (--password works too, but others can see a command line)"
        )
    return piped


@main.command("create-user")
@click.option("--email", required=True)
@click.option(
    "--password",
    default=None,
    help=f"at least 8 characters; better from the hidden prompt or {PASSWORD_ENV} "
    "(a command line is visible to other users)",
)
@click.option(
    "--role", required=True, type=click.Choice(["SUPER_ADMIN", "ORGANIZER_ADMIN", "EVENT_ADMIN", "ATTENDEE"])
)
@click.option("--event", "events", multiple=True, help="event id (EVENT_ADMIN: one or more); repeatable")
@click.option(
    "--organizer", "organizers", multiple=True, help="organizer id (ORGANIZER_ADMIN: one or more); repeatable"
)
def create_user_cmd(
    email: str, password: str | None, role: str, events: tuple[str, ...], organizers: tuple[str, ...]
) -> None:
    """Create a user, or reset the password and grants of an existing one."""
    from shared.admin import check_role_scope, create_user

    _one_shot_settings()
    check_role_scope(role, events, organizers)  # before asking for a password
    secret = _password(password)
    user = _run_with_db(lambda db, _: create_user(db, email, secret, role, events, organizers))
    click.echo(f"user {user['_id']} {user['email']} {user['role']}")


@main.command("create-event")
@click.option("--id", "event_id", required=True)
@click.option("--organizer", required=True)
@click.option("--name", required=True)
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Paris")
def create_event_cmd(event_id: str, organizer: str, name: str, timezone: str) -> None:
    """Create or rename an event."""
    from shared.admin import create_event

    event = _run_with_db(lambda db, _: create_event(db, event_id, organizer, name, timezone))
    click.echo(f"event {event['_id']} organizer {event['organizerId']}")


@main.command("create-ingest-key")
@click.option("--event", "events", multiple=True, help="event id (must exist); repeatable; none: every event")
def create_ingest_key_cmd(events: tuple[str, ...]) -> None:
    """Print a new ingest key (alone on stdout). It is stored only as a digest: keep it."""
    from shared.admin import create_ingest_key

    click.echo(_run_with_db(lambda db, _: create_ingest_key(db, list(events) or None)))


SESSION_COLUMNS = ["sessionId", *SessionIn.model_fields]
REQUIRED_COLUMNS = ["sessionId", *(name for name, f in SessionIn.model_fields.items() if f.is_required())]


def _read_text(source: str) -> str:
    """The text of FILE, or of standard input for `-`."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except IsADirectoryError as err:
        raise click.ClickException(f"cannot read {source}: it is a folder") from err
    except OSError as err:
        raise click.ClickException(f"cannot read {source}: {(err.strerror or str(err)).lower()}") from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise click.ClickException(f"cannot read {source}: not UTF-8 text ({err.reason})") from err


def read_session_rows(text: str, source: str) -> list[Any]:
    """Rows of a JSON list or of a CSV with a header; the format follows the suffix, else the text."""
    name = "standard input" if source == "-" else source
    if not text.strip():
        raise click.ClickException(f"nothing imported: {name} is empty")
    suffix = Path(source).suffix.lower() if source != "-" else ""
    if suffix == ".csv" or (suffix != ".json" and not text.lstrip().startswith(("[", "{"))):
        return _csv_rows(text, name)
    try:
        data = json.loads(text)
    except ValueError as err:
        raise click.ClickException(f"cannot read {name}: not JSON ({err})") from err
    if not isinstance(data, list):
        raise click.ClickException(f"cannot read {name}: a JSON file must hold a list of sessions")
    return data


def _check_csv_header(header: list[str], name: str) -> None:
    if missing := [column for column in REQUIRED_COLUMNS if column not in header]:
        raise click.ClickException(
            f"nothing imported: the CSV header of {name} lacks {', '.join(missing)}"
            f" (columns: {','.join(SESSION_COLUMNS)})"
        )
    if unknown := [column for column in header if column not in SESSION_COLUMNS]:
        raise click.ClickException(
            f"nothing imported: unknown CSV columns in {name}: {', '.join(unknown)}"
            f" (columns: {','.join(SESSION_COLUMNS)})"
        )


def _csv_rows(text: str, name: str) -> list[Any]:
    reader = csv.DictReader(io.StringIO(text))
    header = [column.strip() for column in reader.fieldnames or []]
    reader.fieldnames = header
    _check_csv_header(header, name)
    rows: list[Any] = []
    for row in reader:
        if None in row:
            rows.append(f"more values than the header has columns (line {reader.line_num})")
            continue
        rows.append({k: (v.strip() or None) if isinstance(v, str) else v for k, v in row.items()})
    return rows


def parse_sessions(rows: list[Any]) -> list[tuple[str, SessionIn]]:
    """Every row checked: the parsed sessions, or one error naming the bad rows."""
    parsed: list[tuple[str, SessionIn]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        if isinstance(row, str):
            problems.append(f"row {number}: {row}")
            continue
        if not isinstance(row, dict):
            problems.append(f"row {number}: not an object")
            continue
        fields = dict(row)
        session_id = fields.pop("sessionId", None)
        if not is_id(session_id):
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
        more = len(problems) - PROBLEMS_SHOWN
        shown = "; ".join(problems[:PROBLEMS_SHOWN]) + (f"; and {more} more rows" if more > 0 else "")
        raise click.ClickException(f"nothing imported: {shown}")
    if not parsed:
        raise click.ClickException("nothing imported: the file holds no sessions")
    return parsed


class _ImportProgress:
    """Rows done so far, on standard error: a bar on a terminal, else a line per thousand rows."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = 0
        self.bar = (
            click.progressbar(length=total, label="importing", file=sys.stderr)
            if sys.stderr.isatty()
            else None
        )

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.shown)
        elif done // 1000 > self.shown // 1000 or (done == self.total and self.shown < done):
            click.echo(f"import-sessions: {done}/{self.total} rows done", err=True)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()


@main.command("import-sessions")
@click.argument("file")
def import_sessions_cmd(file: str) -> None:
    """Create or update sessions from FILE (`-`: standard input), a JSON list or a CSV with a header.

    Columns / fields: sessionId plus those of PUT /rest/host/session/{sessionId}. Every row is
    checked before the first write: a file is imported whole or not at all.
    """
    from shared.admin import import_sessions

    _one_shot_settings()  # before reading a whole file for nothing
    parsed = parse_sessions(read_session_rows(_read_text(file), file))
    progress = _ImportProgress(len(parsed))
    try:
        result = _run_with_db(
            lambda db, settings: import_sessions(db, parsed, progress, write_batch=settings.write_batch)
        )
    finally:
        progress.close()
    click.echo(
        f"import-sessions: {result.created} new, {result.changed} changed, {result.unchanged} unchanged",
        err=True,
    )
    click.echo(f"imported {result.rows} sessions")


class _TaskProgress:
    """A recompute's steps, on standard error: a bar on a terminal, else a line per change."""

    def __init__(self) -> None:
        interactive = sys.stderr.isatty()
        self.bar = click.progressbar(length=1, label="recompute", file=sys.stderr) if interactive else None
        self.shown = (-1, -1)

    def show(self, task: TaskDoc) -> None:
        done, total = task["progress"]["done"], task["progress"]["total"]
        if (done, total) != self.shown:
            if self.bar is not None and total:
                self.bar.length = total
                self.bar.update(done - max(self.shown[0], 0))
            elif self.bar is None:
                click.echo(f"recompute: {done}/{total} {task['state']}", err=True)
            self.shown = (done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()


async def _follow(db: Database, task_id: str) -> TaskDoc:
    """Show a task's progress until it ends: a bar on a terminal, else a line per change."""
    from shared.jobs import PENDING, TERMINAL

    progress = _TaskProgress()
    loop = asyncio.get_running_loop()
    notice_at = loop.time() + NO_WORKER_NOTICE_S
    try:
        while True:
            current = await db.tasks.find_one({"_id": task_id})
            assert current is not None
            progress.show(current)
            if current["state"] in TERMINAL:
                return current
            if current["state"] == PENDING and loop.time() >= notice_at:
                click.echo(NO_WORKER_NOTICE, err=True)
                notice_at = math.inf  # said once
            await asyncio.sleep(0.5)
    finally:
        progress.close()


def _summary(task: TaskDoc, seconds: float) -> str:
    result = task.get("result") or {}
    parts = [f"recompute {task['_id']} {task['state']}"]
    details = []
    if isinstance(result.get("sessions"), int):
        details.append(f"{result['sessions']} sessions")
    durations = result.get("durations")
    if isinstance(durations, dict) and isinstance(durations.get("updated"), int):
        details.append(f"{durations['updated']} durations updated")
    details.append(f"in {seconds:.1f} s")
    return f"{parts[0]}: {', '.join(details)}"


@main.command()
@click.option("--event", "event_id", required=True)
@click.option("--wait", is_flag=True, help="follow progress until the recompute ends")
def recompute(event_id: str, wait: bool) -> None:
    """Recompute durations and every number of one event (one at a time per event)."""
    from redis.asyncio import from_url

    from shared.errors import EventNotFound
    from shared.jobs import FAILURE, start_recompute
    from shared.tasks import CeleryTaskQueue

    async def body(db: Database, settings: Settings) -> str:
        if await db.events.find_one({"_id": event_id}) is None:
            raise EventNotFound(f"no event {event_id}")
        _check_redis_url(settings.redis_url)
        redis = from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            await redis.ping()  # a clear error before a task is claimed, not after
        finally:
            await redis.aclose()
        queue = CeleryTaskQueue(settings.redis_url)
        started = time.monotonic()
        try:
            task, created = await start_recompute(db, queue, event_id, settings.recompute_stale_s)
        finally:
            await queue.close()
        click.echo(f"task {task['_id']} ({'started' if created else 'already running'})", err=True)
        if not wait:
            return str(task["_id"])
        current = await _follow(db, task["_id"])
        summary = _summary(current, time.monotonic() - started)
        if current["state"] == FAILURE:
            raise click.ClickException(f"{summary}: {current.get('error')}")
        click.echo(summary, err=True)
        return str(task["_id"])

    click.echo(_run_with_db(body))


@main.command()
@click.option("--host", default=None, help="address to listen on (default: HOST setting, 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default: PORT setting, 8080)")
@click.option("--check", is_flag=True, help="seed, run the jobs, query the API once, and exit")
def demo(host: str | None, port: int | None, check: bool) -> None:
    """Run everything in one process on embedded defaults: no MongoDB, no Redis needed."""
    try:
        import mongomock_motor  # noqa: F401
    except ImportError as err:
        raise click.ClickException(
            "the demo's in-process store is not installed: pip install 'session-analytics[demo]' "
            "(make demo does this)"
        ) from err
    from web.demo import run_demo

    settings = get_settings()
    host = host or settings.host
    port = settings.port if port is None else port
    started = time.monotonic()
    with _listening(host, port):
        asyncio.run(run_demo(host, port, check=check))
    if check:
        click.echo(f"demo check passed in {time.monotonic() - started:.1f}s", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
