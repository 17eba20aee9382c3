"""The host dashboard (/host/) in Debian's headless chromium, driven by Playwright over DevTools,
against the real app on the real test servers. Each view is saved to build/screenshots/
(SCREENSHOTS_DIR overrides it); docs/screenshots/ keeps the copies the README shows."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Page, async_playwright, expect

from shared.admin import create_event
from shared.db import Database
from shared.settings import Settings
from tests import oracle
from tests.seed import (
    T0,
    add_session,
    app_client,
    cheap_password_hashing,
    ingest_headers,
    login,
    registration,
    seed_world,
    watch_segment,
)
from worker.rollup import rollup_pending

SCREENSHOTS = Path(
    os.environ.get("SCREENSHOTS_DIR") or Path(__file__).resolve().parent.parent / "build" / "screenshots"
)
HOUR = 3600.0


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    # A failure, not a skip: `make test` installs Debian's chromium (the `servers` target).
    assert path, "Debian's chromium is needed for the dashboard test: apt-get install -y chromium"
    return path


def watch(total: float, live: float) -> dict[str, float]:
    return {"total": total, "live": live, "recording": total - live}


async def seed_sessions(db: Database) -> None:
    """Three sessions of `ev1` out of start-time order, with numbers a rollup would store."""
    await seed_world(db)
    await create_event(db, "ev3", "org1", "Berlin Summit", "Europe/Berlin")
    await add_session(
        db,
        "keynote",
        title="Opening Keynote",
        start=T0 + timedelta(hours=1),
        session_format="MAINSTAGE_SESSION",
        numbers={
            "duration": 3600.0,
            "durationStatus": "KNOWN",
            "registeredUserCount": 40,
            "attendeeCount": 30,
            "avgAttendedDuration": 1200.0,
            "liveViews": 25,
            "recordingViews": 9,
            "watchTime": watch(36_000.0, 27_000.0),
            "avgLiveWatch": 1080.0,
            "avgRecordingWatch": 1000.0,
            "engagementLive": 30.0,
            "engagementRecording": 27.8,
        },
    )
    await add_session(
        db,
        "town-hall",
        title="Town Hall",
        start=T0,
        provider="ZOOM",
        numbers={"registeredUserCount": 12, "attendeeCount": 10, "watchTime": watch(7200.0, 7200.0)},
    )
    await add_session(
        db,
        "lab",
        title="Hands-on Lab",
        start=T0 + timedelta(hours=2),
        session_format="WORKSHOP_SESSION",
        provider=None,
        video_id=None,
        numbers={"registeredUserCount": 8, "attendeeCount": 50, "watchTime": watch(3600.0, 0.0)},
    )


# The page's own formats (app.js), so expected numbers read as a user reads them.
def watch_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    h, m = s // 3600, s % 3600 // 60
    return f"{m} min {s % 60:02d} s" if h == 0 else f"{h} h {m:02d} min"


def percent_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def short_time(iso: str | None, zone: str) -> str:
    """`1 May, 11:02`: day, month and 24-hour time in the event's zone."""
    if iso is None:
        return "—"
    local = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    return f"{local.day} {local:%b}, {local:%H:%M}"


async def table_rows(page: Page, tbody: str) -> list[dict[str, str]]:
    """Each row of a table as {column name: cell text}, from the labels every cell carries."""
    rows = page.locator(f"{tbody} tr")
    found = []
    for i in range(await rows.count()):
        cells = rows.nth(i).locator("td")
        labels = await cells.evaluate_all("cells => cells.map(c => c.dataset.label || '')")
        texts = await cells.all_inner_texts()
        user = await rows.nth(i).get_attribute("data-user-id")
        found.append({"userId": user or "", **dict(zip(labels, texts, strict=True))})
    return found


def display_name(identity: dict[str, str] | None, user: str) -> str:
    identity = identity or {}
    return " ".join(filter(None, (identity.get("firstName"), identity.get("lastName")))) or user


async def titles(page: Page) -> list[str]:
    return await page.locator("#session-rows tr td:first-child").all_inner_texts()


async def card_values(page: Page) -> dict[str, str]:
    cards = page.locator("#session-numbers .card")
    labels = await cards.locator(".label").all_inner_texts()
    values = await cards.locator(".value").all_inner_texts()
    return dict(zip(labels, values, strict=True))


@pytest.mark.parametrize("store_kind", ["real"])
async def test_a_host_signs_in_picks_the_event_and_reads_its_sessions_in_a_real_browser(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any
) -> None:
    await seed_sessions(database)
    client = await app_client(aiohttp_client, settings, database, task_queue)
    base = str(client.make_url("/host/"))
    await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path())
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            await page.goto(base)
            await page.fill("#login-email", "super@example.com")
            await page.fill("#login-password", "correct horse battery")
            await page.screenshot(path=SCREENSHOTS / "login.png")
            await page.click("#login-submit")

            # The picker offers the super admin every event, by name; pick the one with sessions.
            picker = page.locator("#event-select option")
            await expect(picker).to_have_count(3)
            assert await picker.all_inner_texts() == ["Berlin Summit", "Other Organizer's Event", "Own Event"]
            await page.select_option("#event-select", "ev1")
            await expect(page.locator("#event-zone")).to_have_text("Times in UTC")
            await expect(page.locator("#session-rows tr")).to_have_count(3)
            assert await titles(page) == ["Town Hall", "Opening Keynote", "Hands-on Lab"]
            # The unique numbers lead; nothing is "summed over sessions" but watch time. Numbers
            # seeded on sessions without attendance: no person has been counted yet.
            totals = page.locator("#event-totals .card")
            await expect(totals).to_have_count(10)
            labels = await totals.locator(".label").all_inner_texts()
            assert labels[:4] == ["People", "Registrants", "No-shows", "Peak concurrent"]
            values = dict(zip(labels, await totals.locator(".value").all_inner_texts(), strict=True))
            assert (values["Sessions"], values["People"], values["Peak concurrent"]) == ("3", "0", "0")
            assert await totals.filter(has_text="summed over sessions").locator(
                ".label"
            ).all_inner_texts() == ["Watch time"]
            await expect(page.locator("#summary-updated")).to_have_text("No attendance has been counted yet.")
            await expect(page.locator("#per-day-panel")).to_be_hidden()
            await page.screenshot(path=SCREENSHOTS / "event.png", full_page=True)

            # Missing numbers say why, in words.
            town_hall = page.locator("tr[data-session-id='town-hall'] td")
            assert (await town_hall.nth(3).inner_text()) == "Not reported"
            assert (await town_hall.nth(6).inner_text()) == "n/a"
            lab = page.locator("tr[data-session-id='lab'] td")
            assert (await lab.nth(3).inner_text()) == "No video"

            async with page.expect_download() as download_info:
                await page.click("#session-csv")
            download = await download_info.value
            assert download.suggested_filename == "session-overview-ev1.csv"
            with open(await download.path(), encoding="utf-8") as saved:
                csv_lines = saved.read().splitlines()
            assert len(csv_lines) == 4 and "Opening Keynote" in csv_lines[2]

            await page.select_option("#session-sort", "-attendeeCount")
            await expect(page.locator("#session-rows tr td:first-child").first).to_have_text("Hands-on Lab")
            assert await titles(page) == ["Hands-on Lab", "Opening Keynote", "Town Hall"]
            await page.fill("#session-search", "key")
            await expect(page.locator("#session-rows tr")).to_have_count(1)
            assert await titles(page) == ["Opening Keynote"]

            await page.click("text=Opening Keynote")
            await expect(page.locator("#session-title")).to_have_text("Opening Keynote")
            await expect(page.locator("#session-numbers .card")).to_have_count(10)
            values = await card_values(page)
            assert values["Video length"] == "1 h 00 min"
            assert (values["Registered"], values["Attendees"]) == ("40", "30")
            assert (values["Live views"], values["Recording views"]) == ("25", "9")
            assert (values["Live engagement"], values["Recording engagement"]) == ("30.0 %", "27.8 %")
            assert values["Watch time"] == "10.0 h" and values["Live vs recording"] == "75 % live"
            # Seeded numbers without any rolled-up attendance: the viewers route answers an empty series.
            await expect(page.locator("#viewers-panel")).to_be_visible()
            await expect(page.locator("#peak-label")).to_have_text("Nobody watched live.")
            await expect(page.locator("#recording-empty")).to_be_visible()
            await expect(page.locator("#attendee-panel")).to_be_visible()
            await expect(page.locator("#attendee-search")).to_be_visible()
            await expect(page.locator("#attendee-csv")).to_be_visible()
            # Numbers stored without attendee rows (as this test seeds them): not "nobody registered".
            await expect(page.locator("#attendee-rows")).to_contain_text(
                "The attendee list is being prepared"
            )
            await page.screenshot(path=SCREENSHOTS / "session.png", full_page=True)

            await page.click("#back-link")
            await page.fill("#session-search", "")
            await page.click("text=Town Hall")
            note = page.locator("#session-note")
            await expect(note).to_contain_text("ZOOM, FACEBOOK and WISTIA do not send per-viewer watch data")
            await expect(note).to_contain_text("ZOOM and FACEBOOK do not report video lengths")

            phone = await browser.new_page(viewport={"width": 390, "height": 844})
            await phone.goto(base)
            await phone.fill("#login-email", "org@example.com")
            await phone.fill("#login-password", "correct horse battery")
            await phone.click("#login-submit")
            # The organizer's first event by name has no session yet, and says so.
            await expect(phone.locator("#session-rows")).to_have_text("This event has no sessions yet.")
            await phone.select_option("#event-select", "ev1")
            await expect(phone.locator("#session-rows tr")).to_have_count(3)
            await phone.screenshot(path=SCREENSHOTS / "event-phone.png", full_page=True)
            await phone.click("text=Opening Keynote")
            await expect(phone.locator("#session-numbers .card")).to_have_count(10)
            await phone.screenshot(path=SCREENSHOTS / "session-phone.png", full_page=True)
            assert errors == []
        finally:
            await browser.close()


def live_audience(start: datetime) -> list[dict[str, Any]]:
    """Six people join five minutes apart and leave three minutes apart: the audience rises to
    six at 25 minutes, then falls; one of them has a second tab open (counted once). Two more
    watch the recording, on the session's day and the next."""
    segments = [
        watch_segment(
            f"live-{n}", "keynote", f"u{n}", start=start + timedelta(minutes=5 * n), seconds=60 * (45 - 8 * n)
        )
        for n in range(6)
    ]
    segments.append(watch_segment("tab", "keynote", "u0", start=start + timedelta(minutes=1), seconds=600))
    segments.append(
        watch_segment(
            "rec-1", "keynote", "u1", mode="RECORDING", start=start + timedelta(hours=26), seconds=3600
        )
    )
    segments.append(watch_segment("rec-7", "keynote", "u7", mode="RECORDING", start=start, seconds=60))
    return segments


@pytest.mark.parametrize("store_kind", ["real"])
async def test_the_viewers_chart_shows_the_rolled_up_buckets_and_the_peak(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any
) -> None:
    """Attendance posted through ingestion and rolled up; the browser reads the real route."""
    await seed_sessions(database)
    await add_session(
        database,
        "fireside",
        title="Fireside Chat",
        start=T0 + timedelta(hours=3),
        provider="VIMEO",
        numbers={"durationStatus": "NO_CREDENTIALS"},
    )
    client = await app_client(aiohttp_client, settings, database, task_queue)
    response = await client.post(
        "/rest/events/ev1/watch-segments",
        json=live_audience(T0 + timedelta(hours=1)),
        headers=await ingest_headers(database, ["ev1"]),
    )
    assert (await response.json())["accepted"] == 9
    await rollup_pending(database, settings)
    answer = await (
        await client.get("/rest/host/session/keynote/viewers", headers=await login(client, "event_admin"))
    ).json()
    assert len(answer["live"]["points"]) == 45
    assert (answer["live"]["peakConcurrent"], answer["live"]["peakAt"]) == (6, "2024-05-01T10:25:00Z")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path())
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            await page.goto(str(client.make_url("/host/")))
            await page.fill("#login-email", "eventadmin@example.com")
            await page.fill("#login-password", "correct horse battery")
            await page.click("#login-submit")
            # The sync's last word, in words: the provider is not set up on this server.
            fireside = page.locator("tr[data-session-id='fireside'] td")
            await expect(fireside.nth(3)).to_have_text("Provider not set up")
            await page.click("text=Opening Keynote")
            await expect(page.locator("#viewers-panel")).to_be_visible()
            chart = page.locator("#live-chart")
            await expect(chart).to_have_attribute("data-points", "45")
            await expect(chart.locator("canvas")).to_have_count(1)
            await expect(page.locator("#peak-label")).to_have_text(
                "Peak: 6 concurrent viewers at 1 May, 10:25 (UTC)"
            )
            await expect(page.locator("#recording-chart")).to_have_attribute("data-days", "2")
            # The rolled-up numbers replaced the seeded ones: seven people, six of them live.
            values = await card_values(page)
            assert (values["Attendees"], values["Live views"], values["Recording views"]) == ("7", "6", "2")
            await expect(page.locator("#attendee-rows tr")).to_have_count(7)
            await page.screenshot(path=SCREENSHOTS / "session-viewers.png", full_page=True)
            await page.set_viewport_size({"width": 390, "height": 844})
            # The charts follow the width after a short pause (a debounced resize).
            for _ in range(50):
                box = await chart.locator("canvas").bounding_box()
                if box is not None and box["width"] <= 390:
                    break
                await page.wait_for_timeout(100)
            box = await chart.locator("canvas").bounding_box()
            assert box is not None and box["width"] <= 390
            await page.screenshot(path=SCREENSHOTS / "session-viewers-phone.png", full_page=True)
            assert errors == []
        finally:
            await browser.close()


async def test_the_page_and_its_assets_come_from_the_app_with_a_strict_policy(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any
) -> None:
    client = await app_client(aiohttp_client, settings, database, task_queue)
    page = await client.get("/host/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert "http://" not in html and "https://" not in html  # nothing from another origin
    for asset in (
        "assets/app.js",
        "assets/app.css",
        "assets/uPlot.iife.min.js",
        "assets/uPlot.min.css",
    ):
        response = await client.get(f"/host/{asset}")
        assert response.status == 200, asset
    assert "MIT License" in await (await client.get("/host/assets/uPlot.LICENSE")).text()
    assert (await client.get("/host/assets/index.html")).status == 404
    assert (await client.get("/host/assets/vendor")).status == 404


@pytest.mark.parametrize("store_kind", ["real"])
async def test_a_host_finds_attendees_by_name_sorts_them_and_downloads_what_is_shown(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any
) -> None:
    """Registrations with identities and watch segments posted through ingestion and rolled up;
    the attendee table shows names, searches and sorts through the API, and its CSV follows."""
    from tests.test_attendees import PEOPLE, expected_row, ingest_world

    client = await app_client(aiohttp_client, settings, database, task_queue)
    await ingest_world(client, database, settings, title="Opening Keynote")
    await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path())
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            await page.goto(str(client.make_url("/host/")))
            await page.fill("#login-email", "eventadmin@example.com")
            await page.fill("#login-password", "correct horse battery")
            await page.click("#login-submit")
            await page.click("text=Opening Keynote")
            rows = page.locator("#attendee-rows tr")
            await expect(rows).to_have_count(len(PEOPLE))
            names = page.locator("#attendee-rows tr td:first-child")
            # Longest watch first: u06 gave only an email, so its id stands in for a name.
            assert await names.all_inner_texts() == [
                "u06", "Ada Lovelace", "Grace Hopper", "u04", "=HYPERLINK(1) de Vries", "Alan Turing"
            ]  # fmt: skip
            # Every row carries its journey (rule 11) as the list API gives it, in the event's zone.
            shown = {row["userId"]: row for row in await table_rows(page, "#attendee-rows")}
            for user, (identity, _, _) in PEOPLE.items():
                want = expected_row(user)
                row = shown[user]
                assert row["Email, ticket"].split("\n")[0] == ((identity or {}).get("email") or "—")
                watched = row["Watched"].split("\n")[0]
                assert watched == (
                    watch_text(want["attendedSeconds"]) if want["attended"] else "did not attend"
                )
                assert row["Completion"] == percent_text(want["completion"])
                assert row["Joins"] == str(want["joins"])
                assert row["First joined"] == short_time(want["firstJoinedAt"], "UTC")
                assert row["Last left"] == short_time(want["lastLeftAt"], "UTC")
            assert shown["u01"]["Email, ticket"] == "ada@example.com\nTicket T-1"
            await expect(page.locator("#attendee-page-info")).to_have_text("Page 1 of 1 · 6 attendees")
            await page.screenshot(path=SCREENSHOTS / "attendees.png", full_page=True)

            # The no-show filter: registered, never attended; then a minimum completion.
            await page.select_option("#attendee-attended", "false")
            no_shows = [u for u, (_, registered, seconds) in PEOPLE.items() if registered and not seconds]
            await expect(rows).to_have_count(len(no_shows))
            assert [row["userId"] for row in await table_rows(page, "#attendee-rows")] == no_shows
            await page.select_option("#attendee-attended", "")
            await page.fill("#attendee-min-completion", "50")
            completing = sorted(
                (u for u in PEOPLE if expected_row(u)["completion"] >= 50),
                key=lambda u: (-expected_row(u)["attendedSeconds"], u),
            )
            await expect(page.locator("#attendee-page-info")).to_have_text(
                f"Page 1 of 1 · {len(completing)} attendees"
            )
            assert [row["userId"] for row in await table_rows(page, "#attendee-rows")] == completing
            await page.fill("#attendee-min-completion", "101")
            await expect(page.locator("#attendee-min-completion-error")).to_have_text(
                "Minimum completion is a percentage from 0 to 100."
            )
            await page.fill("#attendee-min-completion", "")
            await expect(page.locator("#attendee-min-completion-error")).to_be_hidden()
            await expect(rows).to_have_count(len(PEOPLE))

            await page.select_option("#attendee-sort", "lastName")
            await expect(names.first).to_have_text("=HYPERLINK(1) de Vries")
            assert await names.all_inner_texts() == [
                "=HYPERLINK(1) de Vries", "Grace Hopper", "Ada Lovelace", "Alan Turing", "u04", "u06"
            ]  # fmt: skip
            await page.fill("#attendee-search", "EXAMPLE.COM")
            await expect(rows).to_have_count(4)
            assert await names.all_inner_texts() == [
                "=HYPERLINK(1) de Vries",
                "Ada Lovelace",
                "Alan Turing",
                "u06",
            ]
            await expect(page.locator("#attendee-page-info")).to_have_text("Page 1 of 1 · 4 attendees")

            async with page.expect_download() as download_info:
                await page.click("#attendee-csv")
            download = await download_info.value
            assert download.suggested_filename == "attendees-s1.csv"
            with open(await download.path(), encoding="utf-8") as saved:
                lines = saved.read().splitlines()
            # The rows on the screen, in their order; the formula-looking name made harmless.
            assert [line.split(",")[0] for line in lines[1:]] == ["u05", "u01", "u03", "u06"]
            assert lines[1].startswith("u05,'=HYPERLINK(1),de Vries,eve@example.com,'-1,")

            await page.fill("#attendee-search", "nobody-like-this")
            await expect(page.locator("#attendee-rows")).to_have_text(
                'No attendee\'s name or email contains "nobody-like-this".'
            )
            await page.fill("#attendee-search", "")
            await expect(rows).to_have_count(len(PEOPLE))
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.wait_for_timeout(400)
            await page.locator("#attendee-panel").scroll_into_view_if_needed()
            await page.screenshot(path=SCREENSHOTS / "attendees-phone.png", full_page=True)
            assert errors == []
        finally:
            await browser.close()


BERLIN = "Europe/Berlin"
# userId: identity as registered (None: never registered)
AUDIENCE: dict[str, dict[str, str] | None] = {
    "u01": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "ticketId": "T-1"},
    "u02": {"firstName": "Grace", "lastName": "Hopper", "email": "grace@example.com"},
    "u03": {"firstName": "Alan", "lastName": "Turing", "email": "alan@example.com"},
    "u04": None,
    "u05": {"firstName": "Edsger", "lastName": "Dijkstra", "email": "edsger@example.com"},
    "u06": {"firstName": "Barbara", "lastName": "liskov", "email": "barbara@example.com"},
}
# sessionId: (title, provider, duration); a ZOOM session has no analytics and no duration.
AUDIENCE_SESSIONS = {
    "keynote": ("Keynote", "YOUTUBE", 600.0),
    "panel": ("Panel", "VIMEO", 1200.0),
    "zoom-hall": ("Zoom Hall", "ZOOM", None),
}


def audience_input() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Registrations and segments of ev3 (Berlin): Ada in two sessions at once (one person at the
    peak), Grace and Barbara registered and never came, Alan watched a recording the next day,
    u04 came unregistered and left once in between, Edsger watched live and a recording."""
    registered = {"u01": ["keynote", "panel"], "u02": ["keynote"], "u03": ["panel"]}
    registered |= {"u05": ["keynote", "zoom-hall"], "u06": ["panel"]}
    registrations = [
        {**registration(sid, user, T0 - timedelta(days=3, hours=n)), **(AUDIENCE[user] or {})}
        for n, (user, sessions) in enumerate(registered.items())
        for sid in sessions
    ]
    minute = timedelta(minutes=1)
    day = timedelta(days=1)
    segments = [
        watch_segment("a-k", "keynote", "u01", start=T0, seconds=300),
        watch_segment("a-p", "panel", "u01", start=T0 + minute, seconds=300),
        watch_segment("t-p", "panel", "u03", mode="RECORDING", start=T0 + day, seconds=610),
        watch_segment("x-1", "keynote", "u04", start=T0 + 2 * minute, seconds=150),
        watch_segment("x-2", "keynote", "u04", start=T0 + 5.5 * minute, seconds=150),
        watch_segment("e-z", "zoom-hall", "u05", start=T0 + 0.5 * minute, seconds=640),
        watch_segment("e-k", "keynote", "u05", mode="RECORDING", start=T0 + 2 * day, seconds=600),
    ]
    return registrations, segments


@pytest.mark.parametrize("store_kind", ["real"])
async def test_the_event_view_leads_with_its_unique_audience_and_lists_its_people(
    aiohttp_client: Any, settings: Settings, database: Database, task_queue: Any
) -> None:
    """Attendance over three sessions posted and rolled up: the cards, the per-day chart and the
    People tab show what rules 12 and 13 make of it (tests/oracle.py), in the event's zone."""
    await seed_world(database)
    await create_event(database, "ev3", "org1", "Berlin Summit", BERLIN)
    for sid, (title, provider, duration) in AUDIENCE_SESSIONS.items():
        await add_session(
            database,
            sid,
            "ev3",
            title=title,
            provider=provider,
            numbers={"duration": duration} if duration else None,
        )
    client = await app_client(aiohttp_client, settings, database, task_queue)
    registrations, segments = audience_input()
    key = await ingest_headers(database, ["ev3"])
    for path, body in (("registrations", registrations), ("watch-segments", segments)):
        answer = await (await client.post(f"/rest/events/ev3/{path}", json=body, headers=key)).json()
        assert (answer["accepted"], answer["rejected"]) == (len(body), [])
    await rollup_pending(database, settings)
    specs = {
        sid: {"duration": duration, "streamProvider": provider, "format": "BREAKOUT_SESSION"}
        for sid, (_, provider, duration) in AUDIENCE_SESSIONS.items()
    }
    summary, people = oracle.expected_audience(segments, registrations, specs, BERLIN)
    # The data mean what the test says of them.
    assert (summary["uniqueAttendees"], summary["uniqueRegistrants"], summary["noShows"]) == (4, 5, 2)
    assert summary["peakConcurrent"] == 3 and len(summary["attendeesPerDay"]) == 3
    await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path())
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            await page.goto(str(client.make_url("/host/")))
            await page.fill("#login-email", "org@example.com")
            await page.fill("#login-password", "correct horse battery")
            await page.click("#login-submit")
            # The organizer's first event by name is the Berlin one.
            await expect(page.locator("#event-zone")).to_have_text(f"Times in {BERLIN}")
            cards = page.locator("#event-totals .card")
            await expect(cards).to_have_count(10)
            labels = await cards.locator(".label").all_inner_texts()
            values = dict(zip(labels, await cards.locator(".value").all_inner_texts(), strict=True))
            details = dict(zip(labels, await cards.locator(".detail").all_inner_texts(), strict=True))
            assert values == {
                "People": str(summary["uniqueAttendees"]),
                "Registrants": str(summary["uniqueRegistrants"]),
                "No-shows": str(summary["noShows"]),
                "Peak concurrent": str(summary["peakConcurrent"]),
                "Average watch": watch_text(summary["avgWatchPerAttendee"]),
                "Live only": str(summary["liveOnly"]),
                "Recording only": str(summary["recordingOnly"]),
                "Live and recording": str(summary["both"]),
                "Watch time": f"{summary['watchTime']['total'] / HOUR:.1f} h",
                "Sessions": "3",
            }
            # The peak's instant in the event's zone (09:02 UTC is 11:02 in Berlin in May).
            assert details["Peak concurrent"] == f"at {short_time(summary['peakAt'], BERLIN)} ({BERLIN})"
            assert details["No-shows"].startswith("40 %")
            # One bar per day in Berlin, and the same numbers in the chart's table.
            await expect(page.locator("#per-day-chart")).to_have_attribute("data-days", "3")
            await expect(page.locator("#per-day-chart canvas")).to_have_count(1)
            day_rows = page.locator("#per-day-rows tr")
            shown_days = [
                await day_rows.nth(i).locator("td").all_text_contents() for i in range(await day_rows.count())
            ]
            expected_days = [
                [f"{d:%a} {d.day} {d:%b}", str(row["attendees"])]
                for row in summary["attendeesPerDay"]
                for d in [datetime.fromisoformat(row["date"])]
            ]
            assert shown_days == expected_days
            await page.screenshot(path=SCREENSHOTS / "event-audience.png", full_page=True)

            # The People tab, reached by keyboard: arrow keys move between the tabs.
            await page.focus("#tab-sessions")
            await page.keyboard.press("ArrowRight")
            await expect(page.locator("#tab-people")).to_be_focused()
            await expect(page.locator("#tab-people")).to_have_attribute("aria-selected", "true")
            await expect(page.locator("#people-panel")).to_be_visible()
            await expect(page.locator("#sessions-panel")).to_be_hidden()
            rows = page.locator("#people-rows tr")
            await expect(rows).to_have_count(len(people))
            by_watch = sorted(people, key=lambda p: (-p["attendedSeconds"], p["userId"]))
            shown = await table_rows(page, "#people-rows")
            assert [row["userId"] for row in shown] == [p["userId"] for p in by_watch]
            for person, row in zip(by_watch, shown, strict=True):
                user = person["userId"]
                assert row["Name"] == display_name(AUDIENCE[user], user)
                assert row["Sessions registered"] == str(person["sessionsRegistered"])
                assert row["Sessions attended"] == str(person["sessionsAttended"])
                watched = row["Watched"].split("\n")
                if person["attended"]:
                    assert watched == [
                        watch_text(person["attendedSeconds"]),
                        f"live {watch_text(person['liveSeconds'])}",
                        f"recording {watch_text(person['recordingSeconds'])}",
                    ]
                else:
                    assert watched == ["no-show"] and person["noShow"]
                assert row["Completion"] == percent_text(person["completion"])
                assert row["First joined"] == short_time(person["firstJoinedAt"], BERLIN)
                assert row["Last left"] == short_time(person["lastLeftAt"], BERLIN)
            await expect(page.locator("#people-page-info")).to_have_text(
                f"Page 1 of 1 · {len(people)} people"
            )
            await page.screenshot(path=SCREENSHOTS / "people.png", full_page=True)

            async def listed() -> list[str]:
                return [row["userId"] for row in await table_rows(page, "#people-rows")]

            # No-shows: the filter and the card agree.
            await page.select_option("#people-attended", "false")
            await expect(rows).to_have_count(summary["noShows"])
            assert await listed() == [p["userId"] for p in by_watch if p["noShow"]]
            await expect(page.locator("#people-page-info")).to_have_text(
                f"Page 1 of 1 · {summary['noShows']} of {len(people)} people"
            )
            await page.select_option("#people-attended", "true")
            await expect(rows).to_have_count(summary["uniqueAttendees"])
            await page.select_option("#people-attended", "")
            await page.fill("#people-min-completion", "50")
            completing = [p["userId"] for p in by_watch if (p["completion"] or 0) >= 50]
            await expect(rows).to_have_count(len(completing))
            assert await listed() == completing
            # Sorting by clicking a header: last name, A–Z (case-insensitive), then Z–A.
            name_header = page.locator("#people-table th[data-sort='lastName']")
            await name_header.click()
            await expect(name_header).to_have_attribute("aria-sort", "ascending")
            by_name = sorted(
                (p for p in people if p["userId"] in completing),
                key=lambda p: (
                    AUDIENCE[p["userId"]] is None,
                    (AUDIENCE[p["userId"]] or {}).get("lastName", "").lower(),
                ),
            )
            assert await listed() == [p["userId"] for p in by_name]
            async with page.expect_download() as download_info:
                await page.click("#people-csv")
            download = await download_info.value
            assert download.suggested_filename == "people-ev3.csv"
            with open(await download.path(), encoding="utf-8") as saved:
                lines = saved.read().splitlines()
            # The CSV holds the rows on the screen, in their order.
            assert [line.split(",")[0] for line in lines[1:]] == await listed()
            await name_header.press("Enter")
            await expect(name_header).to_have_attribute("aria-sort", "descending")
            await page.fill("#people-min-completion", "")
            await expect(rows).to_have_count(len(people))
            await page.fill("#people-search", "LOVELACE")
            await expect(rows).to_have_count(1)
            assert await listed() == ["u01"]
            await page.fill("#people-search", "")
            await expect(rows).to_have_count(len(people))

            # A session's attendee table: the journey of each person in it (rule 11).
            await page.click("#tab-sessions")
            await page.click("text=Keynote")
            await expect(page.locator("#session-title")).to_have_text("Keynote")
            keynote = oracle.expected_attendees(
                [s for s in segments if s["sessionId"] == "keynote"],
                [r for r in registrations if r["sessionId"] == "keynote"],
                600.0,
                "YOUTUBE",
            )
            await expect(page.locator("#attendee-rows tr")).to_have_count(len(keynote))
            journeys = {row["userId"]: row for row in await table_rows(page, "#attendee-rows")}
            assert set(journeys) == {row["userId"] for row in keynote}
            for want in keynote:
                row = journeys[want["userId"]]
                assert row["Joins"] == str(want["joins"])
                assert row["Completion"] == percent_text(want["completion"])
                assert row["First joined"] == short_time(want["firstJoinedAt"], BERLIN)
                assert row["Last left"] == short_time(want["lastLeftAt"], BERLIN)
            assert journeys["u04"]["Joins"] == "2"  # left once in between
            await page.select_option("#attendee-attended", "false")
            await expect(page.locator("#attendee-rows tr")).to_have_count(1)
            assert [row["userId"] for row in await table_rows(page, "#attendee-rows")] == [
                row["userId"] for row in keynote if not row["attended"] and row["registeredAt"]
            ]
            await page.screenshot(path=SCREENSHOTS / "attendees-no-shows.png", full_page=True)

            # Back to the event: the tab last open is open again; at phone width the People tab reads.
            await page.click("#back-link")
            await expect(page.locator("#sessions-panel")).to_be_visible()
            await page.click("#tab-people")
            await expect(page.locator("#people-panel")).to_be_visible()
            await page.set_viewport_size({"width": 390, "height": 844})
            await expect(rows).to_have_count(len(people))
            await page.wait_for_timeout(400)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await page.screenshot(path=SCREENSHOTS / "people-phone.png", full_page=True)
            assert errors == []
        finally:
            await browser.close()
