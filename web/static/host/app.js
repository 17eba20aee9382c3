// Host dashboard (DESIGN §7): every number comes from the HTTP API with the user's token, which
// lives in sessionStorage (this browser tab only). Charts are drawn by uPlot (assets/vendor).
"use strict";

(() => {
  const TOKEN_KEY = "sessionAnalytics.token";
  const USER_KEY = "sessionAnalytics.user";
  const SESSION_PAGE_SIZE = 25;
  const ATTENDEE_PAGE_SIZE = 25;
  const PEOPLE_PAGE_SIZE = 25;
  const FORMAT_NAMES = {
    MAINSTAGE_SESSION: "Main stage",
    BREAKOUT_SESSION: "Breakout",
    WORKSHOP_SESSION: "Workshop",
    NETWORKING_SESSION: "Networking",
  };
  // DESIGN §4 rule 10, in words: [short, for the table; long, for the session page].
  const DURATION_WORDS = {
    NO_VIDEO: ["No video", "This session has no video to measure: workshops, networking sessions and sessions without a stream have none."],
    NOT_SUPPORTED: ["Not reported", "ZOOM and FACEBOOK do not report video lengths, so this session has none."],
    PENDING: ["Not known yet", "The video's length is not known yet: the provider has not been asked, or is still processing the video."],
    LIVE: ["Still live", "The stream is still live; its length is read once it ends."],
    NOT_FOUND: ["Video not found", "The provider says there is no such video: check the session's video id."],
    NO_CREDENTIALS: ["Provider not set up", "The server has no credentials for this provider, so the length cannot be read."],
    PROVIDER_ERROR: ["Provider error", "The provider did not answer the last time it was asked; it is asked again later."],
  };
  const NO_ANALYTICS_WORDS =
    "ZOOM, FACEBOOK and WISTIA do not send per-viewer watch data here, so watch time, views and " +
    "average watch are not available for this session. Registrations and attendee counts are.";

  const state = {
    user: null,
    events: [],
    event: null,
    sessionQuery: { page: 0, sort: "startTime", search: "", format: "" },
    sessionPage: null,
    session: null,
    attendeeQuery: { page: 0, search: "", sort: "-attendedSeconds", attended: "", minCompletion: null },
    summary: null,
    tab: "sessions",
    peopleQuery: { page: 0, search: "", sort: "-attendedSeconds", attended: "", minCompletion: null },
    peoplePage: null,
    requests: { people: 0, attendees: 0 }, // only the latest answer of a table is shown
    charts: [],
    eventChart: null,
  };

  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.errorMessage) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  // ---- HTTP ------------------------------------------------------------------------------

  async function send(path, options = {}) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401 && token) {
      signOut("Your sign-in has expired. Please sign in again.");
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch (err) {
        body = null;
      }
      throw new ApiError(response.status, body);
    }
    return response;
  }

  async function getJson(path) {
    return (await send(path)).json();
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== "" && value !== null && value !== undefined) search.set(key, String(value));
    }
    return search.toString();
  }

  async function download(path, fallbackName) {
    const response = await send(path, { headers: { Accept: "text/csv" } });
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = match ? match[1] : fallbackName;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  // ---- formatting ------------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US");

  function count(value) {
    return value === null || value === undefined ? "—" : integer.format(value);
  }

  function watch(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h === 0) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${h} h ${String(m).padStart(2, "0")} min`;
  }

  function hours(seconds) {
    return `${(seconds / 3600).toLocaleString("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 })} h`;
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : `${value.toFixed(1)} %`;
  }

  const SHORT_TIME = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };

  function zone() {
    return (state.event && state.event.timeZone) || "UTC";
  }

  function localTime(iso, options = { dateStyle: "medium", timeStyle: "short" }) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat("en-GB", { ...options, timeZone: zone() }).format(new Date(iso));
  }

  // Every list and detail item says why its duration is what it is (DESIGN §4 rule 10).
  function durationStatus(item) {
    return item.durationStatus;
  }

  function durationWords(status) {
    return DURATION_WORDS[status] || [status, `Video length: ${status}.`];
  }

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function card(label, value, detail, className = "") {
    const node = el("div", { className: `card ${className}` }, el("div", { className: "label", text: label }));
    node.append(el("div", { className: "value", text: value }));
    if (detail) node.append(typeof detail === "string" ? el("div", { className: "detail", text: detail }) : detail);
    return node;
  }

  function splitBar(live, recording) {
    const total = live + recording;
    const bar = el("div", { className: "split", role: "img" });
    const livePart = total ? (100 * live) / total : 0;
    bar.setAttribute("aria-label", `Live ${livePart.toFixed(0)} %, recording ${(100 - livePart).toFixed(0)} %`);
    // Widths through the CSSOM: the page's policy allows no inline style attributes.
    const liveNode = el("div", { className: "live" });
    liveNode.style.width = `${livePart}%`;
    const recordingNode = el("div", { className: "recording" });
    recordingNode.style.width = `${total ? 100 - livePart : 0}%`;
    bar.append(liveNode, recordingNode);
    return bar;
  }

  // On a phone each row is shown as a card: every cell carries its column's name.
  function labelCells(tableId, rows) {
    const names = [...document.querySelectorAll(`#${tableId} thead th`)].map((th) => th.textContent.trim());
    for (const row of rows) {
      [...row.children].forEach((cell, i) => {
        if (!cell.hasAttribute("colspan")) cell.dataset.label = names[i];
      });
    }
  }

  function say(text) {
    $("status").textContent = text || "";
  }

  function show(view) {
    for (const id of ["login-view", "event-view", "session-view"]) $(id).hidden = id !== view;
  }

  // ---- sign-in ---------------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    $("login-error").hidden = true;
    $("login-submit").disabled = true;
    try {
      const response = await fetch("/rest/u/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ username: $("login-email").value.trim(), password: $("login-password").value }),
      });
      const body = await response.json();
      if (!response.ok) throw new ApiError(response.status, body);
      sessionStorage.setItem(TOKEN_KEY, body.access_token);
      sessionStorage.setItem(USER_KEY, JSON.stringify({ email: $("login-email").value.trim(), role: body.userRole }));
      $("login-password").value = "";
      await start();
    } catch (err) {
      $("login-error").textContent = err instanceof ApiError ? err.message : "The service could not be reached.";
      $("login-error").hidden = false;
    } finally {
      $("login-submit").disabled = false;
    }
  }

  function signOut(message) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    if (token && !message) {
      fetch("/rest/u/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
    }
    if (window.liveUpdates) window.liveUpdates.stop();
    state.events = [];
    state.event = null;
    $("who").textContent = "";
    $("sign-out").hidden = true;
    show("login-view");
    say(message || "");
  }

  // ---- events and their sessions ---------------------------------------------------------

  async function start() {
    const user = JSON.parse(sessionStorage.getItem(USER_KEY) || "null");
    $("who").textContent = user ? `${user.email} (${user.role.replace("_", " ").toLowerCase()})` : "";
    $("sign-out").hidden = false;
    say("Loading events…");
    try {
      state.events = await getJson("/rest/host/events");
    } catch (err) {
      say(`Events could not be loaded: ${err.message}`);
      return;
    }
    const select = $("event-select");
    select.replaceChildren(...state.events.map((e) => el("option", { value: e.eventId, text: e.name })));
    $("no-events").hidden = state.events.length > 0;
    say("");
    await route();
  }

  function hashParams() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
  }

  async function route() {
    if (!sessionStorage.getItem(TOKEN_KEY)) {
      show("login-view");
      return;
    }
    const params = hashParams();
    const eventId = params.get("event") || (state.events[0] && state.events[0].eventId);
    state.event = state.events.find((e) => e.eventId === eventId) || state.events[0] || null;
    if (state.event) {
      $("event-select").value = state.event.eventId;
      $("event-zone").textContent = `Times in ${state.event.timeZone}`;
    }
    const sessionId = params.get("session");
    if (state.event) followLive();
    if (state.event && sessionId) {
      show("session-view");
      await openSession(sessionId);
    } else {
      show("event-view");
      selectTab(state.tab);
      if (state.event) await Promise.all([loadEventSummary(), loadSessions(), state.tab === "people" ? loadPeople() : null]);
    }
  }

  // ---- the event's audience (DESIGN §4 rule 12) -----------------------------------------

  async function loadEventSummary() {
    const eventId = state.event.eventId;
    let summary;
    try {
      summary = await getJson(`/rest/host/event/${encodeURIComponent(eventId)}/analytics`);
    } catch (err) {
      $("event-totals").replaceChildren(el("p", { className: "error", text: `The event's numbers could not be loaded: ${err.message}` }));
      $("per-day-panel").hidden = true;
      $("summary-updated").textContent = "";
      return;
    }
    if (state.event.eventId !== eventId) return;
    renderEventSummary(summary);
  }

  function share(part, whole) {
    return whole ? `${((100 * part) / whole).toFixed(0)} %` : "—";
  }

  // The unique numbers first (each person once, however many sessions they joined); watch time
  // is the one sum over sessions, as it means one.
  function renderEventSummary(summary) {
    if (state.event && summary.eventId && summary.eventId !== state.event.eventId) return;
    state.summary = summary;
    const s = summary;
    const when = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
    const wt = s.watchTime || { total: 0, live: 0, recording: 0 };
    const watchDetail = el("div", { className: "detail" }, `summed over sessions · live ${hours(wt.live)} · recording ${hours(wt.recording)}`, splitBar(wt.live, wt.recording));
    const eventZone = s.timeZone || zone();
    const peakWhen = s.peakAt
      ? `at ${new Intl.DateTimeFormat("en-GB", { ...when, timeZone: eventZone }).format(new Date(s.peakAt))} (${eventZone})`
      : "nobody watched live";
    $("event-totals").replaceChildren(
      card("People", count(s.uniqueAttendees), "attended at least one session", "lead"),
      card("Registrants", count(s.uniqueRegistrants), "registered for at least one session"),
      card("No-shows", count(s.noShows), s.uniqueRegistrants ? `${share(s.noShows, s.uniqueRegistrants)} of registrants never came` : "registered, never attended"),
      card("Peak concurrent", count(s.peakConcurrent), peakWhen, "peak-card"),
      card("Average watch", watch(s.avgWatchPerAttendee), "per person who attended"),
      card("Live only", count(s.liveOnly), `${share(s.liveOnly, s.uniqueAttendees)} of people`, "live"),
      card("Recording only", count(s.recordingOnly), `${share(s.recordingOnly, s.uniqueAttendees)} of people`, "recording"),
      card("Live and recording", count(s.both), `${share(s.both, s.uniqueAttendees)} of people`),
      card("Watch time", hours(wt.total), watchDetail),
      card("Sessions", count(s.sessions), "people are counted once across them"),
    );
    $("event-totals").dataset.loaded = "true";
    $("summary-updated").textContent = s.analyticsUpdatedAt
      ? `Numbers updated ${localTime(s.analyticsUpdatedAt, { ...when, second: "2-digit" })} (${zone()}).`
      : "No attendance has been counted yet.";
    renderPerDay(s.attendeesPerDay || [], eventZone);
  }

  function renderPerDay(days, eventZone) {
    if (state.eventChart) {
      state.eventChart.destroy();
      state.eventChart = null;
    }
    const node = $("per-day-chart");
    node.replaceChildren();
    node.dataset.days = String(days.length);
    $("per-day-panel").hidden = days.length === 0;
    // A calendar date of the event's zone, as it is (no zone arithmetic on a date).
    const dayName = (date, weekday = true) =>
      new Intl.DateTimeFormat("en-GB", { ...(weekday ? { weekday: "short" } : {}), day: "numeric", month: "short", timeZone: "UTC" }).format(new Date(`${date}T00:00:00Z`));
    $("per-day-rows").replaceChildren(
      ...days.map((d) => el("tr", {}, el("td", { text: dayName(d.date) }), el("td", { className: "num", text: count(d.attendees) }))),
    );
    if (!days.length) return;
    const busiest = days.reduce((a, b) => (b.attendees > a.attendees ? b : a));
    $("per-day-hint").textContent =
      `Each bar is the number of different people who watched on that day (${eventZone}), live or recording; ` +
      `the busiest was ${dayName(busiest.date)} with ${count(busiest.attendees)}.`;
    state.eventChart = new uPlot(
      {
        width: chartWidth(node),
        height: 220,
        scales: { x: { time: false, range: [-0.6, days.length - 0.4] }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
        axes: [
          // Weekdays only where there is room for them (not at phone width).
          { label: `Date (${eventZone})`, stroke: "#1a1a1a", space: 45, incrs: [1, 2, 7, 14, 30], values: (u, ticks) => ticks.map((t) => (days[t] ? dayName(days[t].date, u.width >= 560) : "")) },
          { label: "People", stroke: "#1a1a1a", size: 60, incrs: WHOLE_STEPS },
        ],
        legend: { show: false },
        series: [
          { label: "Day", value: (u, i) => (i === null || !days[i] ? "—" : days[i].date) },
          { label: "People who attended", stroke: "#0b5cad", fill: "rgba(11,92,173,0.55)", paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } },
        ],
      },
      [days.map((_, i) => i), days.map((d) => d.attendees)],
      node,
    );
  }

  // ---- tabs: the event's sessions and its people -----------------------------------------

  const TABS = ["sessions", "people"];

  function selectTab(name, focus = false) {
    state.tab = TABS.includes(name) ? name : "sessions";
    for (const tab of TABS) {
      const button = $(`tab-${tab}`);
      const selected = tab === state.tab;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
      $(`${tab}-panel`).hidden = !selected;
      if (selected && focus) button.focus();
    }
  }

  function tabKeys(e) {
    const i = TABS.indexOf(state.tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    openTab(TABS[(next + TABS.length) % TABS.length], true);
  }

  function openTab(name, focus = false) {
    const before = state.tab;
    selectTab(name, focus);
    if (state.tab === "people" && state.event && (before !== "people" || !state.peoplePage)) loadPeople();
  }

  // ---- the event's people (DESIGN §4 rule 13) --------------------------------------------

  // A min-completion box: null when empty, undefined (and the error shown) when not 0–100.
  function minCompletionOf(input, errorId) {
    const text = input.value.trim();
    const value = text === "" ? null : Number(text);
    const valid = value === null || (Number.isFinite(value) && value >= 0 && value <= 100);
    input.setAttribute("aria-invalid", String(!valid));
    $(errorId).textContent = valid ? "" : "Minimum completion is a percentage from 0 to 100.";
    $(errorId).hidden = valid;
    return valid ? value : undefined;
  }

  function rowFilters(q) {
    return { searchString: q.search, sort: q.sort, attended: q.attended, minCompletion: q.minCompletion };
  }

  function filtered(q) {
    return Boolean(q.attended || q.minCompletion !== null);
  }

  async function loadPeople() {
    const eventId = state.event.eventId;
    const q = state.peopleQuery;
    const params = { page: q.page, size: PEOPLE_PAGE_SIZE, ...rowFilters(q) };
    const request = ++state.requests.people;
    let answer;
    try {
      answer = await getJson(`/rest/host/event/${encodeURIComponent(eventId)}/attendee?${query(params)}`);
    } catch (err) {
      if (state.event.eventId !== eventId || request !== state.requests.people) return;
      state.peoplePage = null;
      $("people-rows").replaceChildren(el("tr", {}, el("td", { colspan: "8", className: "error", text: `People could not be loaded: ${err.message}` })));
      $("people-page-info").textContent = "";
      return;
    }
    if (state.event.eventId !== eventId || request !== state.requests.people) return;
    state.peoplePage = answer;
    renderPeople(answer);
  }

  function renderPeople(answer) {
    const rows = answer.data.map((p) => {
      const name = [p.firstName, p.lastName].filter(Boolean).join(" ");
      const watched = p.attended ? watch(p.attendedSeconds) : p.noShow ? "no-show" : "did not attend";
      return el(
        "tr",
        { "data-user-id": p.userId },
        el("td", { text: name || p.userId }),
        identityCell(p),
        el("td", { className: "num", text: count(p.sessionsRegistered) }),
        el("td", { className: "num", text: count(p.sessionsAttended) }),
        p.attended ? watchedCell(p) : el("td", { className: "num why", text: watched }),
        el("td", { className: "num", text: percent(p.completion) }),
        el("td", { className: "when", text: localTime(p.firstJoinedAt, SHORT_TIME) }),
        el("td", { className: "when", text: localTime(p.lastLeftAt, SHORT_TIME) }),
      );
    });
    if (!rows.length) {
      const q = state.peopleQuery;
      const empty =
        answer.recordsTotal === 0
          ? "Nobody has registered or attended yet."
          : filtered(q)
            ? "Nobody matches the search and filters."
            : `No one's name or email contains "${q.search}".`;
      rows.push(el("tr", {}, el("td", { colspan: "8", text: empty })));
    }
    labelCells("people-table", rows);
    $("people-rows").replaceChildren(...rows);
    const pages = Math.max(1, Math.ceil(answer.recordsFiltered / PEOPLE_PAGE_SIZE));
    const of = answer.recordsFiltered === answer.recordsTotal ? "" : ` of ${count(answer.recordsTotal)}`;
    $("people-page-info").textContent = `Page ${answer.page + 1} of ${pages} · ${count(answer.recordsFiltered)}${of} people`;
    $("people-prev").disabled = answer.page === 0;
    $("people-next").disabled = answer.page + 1 >= pages;
    const sort = state.peopleQuery.sort;
    for (const th of document.querySelectorAll("#people-table th[data-sort]")) {
      const key = th.dataset.sort;
      th.setAttribute("aria-sort", sort === key ? "ascending" : sort === `-${key}` ? "descending" : "none");
    }
    $("people-table").dataset.loaded = "true";
  }

  // An email may break before its "@" (and only there) when its column is narrow.
  function emailText(email) {
    if (!email) return el("span", { text: "—" });
    const at = email.lastIndexOf("@");
    if (at <= 0) return el("span", { text: email });
    return el("span", { className: "email" }, email.slice(0, at), el("wbr"), email.slice(at));
  }

  // Email with the ticket under it: one column fewer, so the journey fits at 1,280 px.
  function identityCell(row) {
    // One box inside the cell: on a phone the cell is a flex row of its label and its content.
    const box = el("div", {}, emailText(row.email));
    if (row.ticketId) box.append(el("br"), el("span", { className: "hint", text: `Ticket ${row.ticketId}` }));
    return el("td", { className: "identity" }, box);
  }

  // Attended time with its live and recording parts under it.
  function watchedCell(row) {
    const box = el(
      "div",
      {},
      el("span", { className: "total", text: watch(row.attendedSeconds) }),
      el("br"),
      el("span", { className: "hint", text: `live ${watch(row.liveSeconds)}` }),
      el("br"),
      el("span", { className: "hint", text: `recording ${watch(row.recordingSeconds)}` }),
    );
    return el("td", { className: "num" }, box);
  }

  function peopleQueryChanged(change) {
    state.peopleQuery = { ...state.peopleQuery, page: 0, ...change };
    if ("sort" in change) {
      const option = [...$("people-sort").options].find((o) => o.value === change.sort);
      if (option) $("people-sort").value = change.sort;
    }
    loadPeople();
  }

  function resetPeopleQuery() {
    state.peopleQuery = { page: 0, search: "", sort: "-attendedSeconds", attended: "", minCompletion: null };
    state.peoplePage = null;
    $("people-search").value = "";
    $("people-attended").value = "";
    $("people-min-completion").value = "";
    minCompletionOf($("people-min-completion"), "people-min-completion-error");
    $("people-sort").value = state.peopleQuery.sort;
    $("people-rows").replaceChildren();
    $("people-page-info").textContent = "";
  }

  function downloadPeopleCsv() {
    const id = state.event.eventId;
    download(`/rest/host/event/${encodeURIComponent(id)}/attendee/csv?${query(rowFilters(state.peopleQuery))}`, `people-${id}.csv`).catch((err) =>
      say(`The CSV could not be downloaded: ${err.message}`),
    );
  }

  async function loadSessions() {
    const q = state.sessionQuery;
    const eventId = state.event.eventId;
    const params = {
      eventId,
      page: q.page,
      size: SESSION_PAGE_SIZE,
      sort: q.sort,
      searchString: q.search,
      sessionFormat: q.format,
      expand: "duration,watchTime",
    };
    let answer;
    try {
      answer = await getJson(`/rest/host/session/analytics?${query(params)}`);
    } catch (err) {
      say(`Sessions could not be loaded: ${err.message}`);
      return;
    }
    if (state.event.eventId !== eventId) return;
    state.sessionPage = answer;
    renderSessions(answer);
  }

  function renderSessions(answer) {
    const rows = answer.data.map((item) => {
      const status = durationStatus(item);
      const noAnalytics = !item.analyticsAvailable;
      const why = noAnalytics ? "Not available for this provider" : "";
      const link = el("a", { href: `#${query({ event: state.event.eventId, session: item.sessionId })}`, text: item.title });
      const lengthCell =
        status === "KNOWN"
          ? el("td", { className: "num", text: watch(item.duration) })
          : el("td", { className: "why", title: durationWords(status)[1], text: durationWords(status)[0] });
      const numberCell = (value, format) =>
        noAnalytics ? el("td", { className: "num why", title: NO_ANALYTICS_WORDS, text: "n/a" }) : el("td", { className: "num", text: format(value) });
      const row = el(
        "tr",
        { "data-session-id": item.sessionId },
        el("td", {}, link),
        el("td", { className: "when", text: localTime(item.startTime, SHORT_TIME) }),
        el("td", {}, el("span", {}, FORMAT_NAMES[item.format] || item.format, el("br"), el("span", { className: "hint", text: item.streamProvider || "no stream" }))),
        lengthCell,
        el("td", { className: "num", text: count(item.registeredUserCount) }),
        el("td", { className: "num", text: count(item.attendeeCount) }),
        numberCell(item.avgAttendedDuration, watch),
        numberCell(item.liveViews, count),
        numberCell(item.recordingViews, count),
        numberCell(item.watchTime ? item.watchTime.total : null, watch),
      );
      if (why) row.title = why;
      return row;
    });
    if (!rows.length) {
      const empty = answer.recordsTotal === 0 ? "This event has no sessions yet." : "No session matches.";
      rows.push(el("tr", {}, el("td", { colspan: "10", text: empty })));
    }
    labelCells("session-table", rows);
    $("session-rows").replaceChildren(...rows);
    const pages = Math.max(1, Math.ceil(answer.recordsFiltered / SESSION_PAGE_SIZE));
    $("session-page-info").textContent = `Page ${answer.page + 1} of ${pages} · ${count(answer.recordsFiltered)} sessions`;
    $("session-prev").disabled = answer.page === 0;
    $("session-next").disabled = answer.page + 1 >= pages;
    const sort = state.sessionQuery.sort;
    for (const th of document.querySelectorAll("#session-table th[data-sort]")) {
      const key = th.dataset.sort;
      th.setAttribute("aria-sort", sort === key ? "ascending" : sort === `-${key}` ? "descending" : "none");
    }
    $("session-table").dataset.loaded = "true";
  }

  function sessionQueryChanged(changes) {
    Object.assign(state.sessionQuery, changes, { page: changes.page ?? 0 });
    loadSessions();
  }

  // ---- live updates (live.js): changed sessions replace their rows, cards and chart ------

  function followLive() {
    if (!window.liveUpdates) return;
    window.liveUpdates.follow(state.event.eventId, {
      sessions(items) {
        const changed = new Map(items.map((item) => [item.sessionId, item]));
        const page = state.sessionPage;
        if (page && page.data.some((item) => changed.has(item.sessionId))) {
          state.sessionPage = { ...page, data: page.data.map((item) => changed.get(item.sessionId) || item) };
          renderSessions(state.sessionPage);
        }
        loadTotals();
        if (state.session && changed.has(state.session.sessionId)) refreshSession(state.session.sessionId);
      },
      reset: () => route(),
    });
  }

  async function refreshSession(sessionId) {
    const detail = await getJson(`/rest/host/session/${encodeURIComponent(sessionId)}/analytics`);
    if (!state.session || state.session.sessionId !== sessionId) return;
    state.session = detail;
    renderDetail(detail);
    destroyCharts();
    await loadViewers(detail);
  }

  // ---- one session -----------------------------------------------------------------------

  async function openSession(sessionId) {
    destroyCharts();
    for (const id of ["session-numbers"]) $(id).replaceChildren();
    $("session-title").textContent = "Loading…";
    $("session-meta").textContent = "";
    $("session-note").hidden = true;
    $("viewers-panel").hidden = true;
    $("attendee-panel").hidden = true;
    let detail;
    try {
      detail = await getJson(`/rest/host/session/${encodeURIComponent(sessionId)}/analytics`);
    } catch (err) {
      $("session-title").textContent = "Session not available";
      say(err.message);
      return;
    }
    state.session = detail;
    resetAttendeeQuery();
    renderDetail(detail);
    await Promise.all([loadViewers(detail), loadAttendees(), probeAttendeeCsv(detail)]);
  }

  function renderDetail(d) {
    $("session-title").textContent = d.title;
    $("session-meta").textContent =
      `${localTime(d.startTime)} – ${localTime(d.endTime, { timeStyle: "short" })} (${zone()}) · ` +
      `${FORMAT_NAMES[d.format] || d.format} · ${d.streamProvider || "no stream"}`;
    const status = durationStatus(d);
    const notes = [];
    if (!d.analyticsAvailable) notes.push(NO_ANALYTICS_WORDS);
    if (status !== "KNOWN") notes.push(`Video length: ${durationWords(status)[1]} Engagement needs a video length.`);
    $("session-note").textContent = notes.join(" ");
    $("session-note").hidden = notes.length === 0;
    const wt = d.watchTime || { total: 0, live: 0, recording: 0 };
    const na = !d.analyticsAvailable;
    const cards = [
      card("Video length", status === "KNOWN" ? watch(d.duration) : durationWords(status)[0]),
      card("Registered", count(d.registeredUserCount)),
      card("Attendees", count(d.attendeeCount)),
      card("Average watch", na ? "n/a" : watch(d.avgAttendedDuration), "per attendee"),
      card("Live views", na ? "n/a" : count(d.liveViews), na ? "" : `avg ${watch(d.avgLiveWatchDuration)} each`, "live"),
      card("Recording views", na ? "n/a" : count(d.recordingViews), na ? "" : `avg ${watch(d.avgRecordingWatchDuration)} each`, "recording"),
      card("Live engagement", na ? "n/a" : percent(d.liveEngagement), "share of the video watched live", "live"),
      card("Recording engagement", na ? "n/a" : percent(d.recordingEngagement), "share of the video watched later", "recording"),
    ];
    if (!na) {
      cards.push(card("Watch time", hours(wt.total), `live ${hours(wt.live)} · recording ${hours(wt.recording)}`));
      cards.push(card("Live vs recording", wt.total ? `${((100 * wt.live) / (wt.live + wt.recording || 1)).toFixed(0)} % live` : "—", splitBar(wt.live, wt.recording)));
    }
    $("session-numbers").replaceChildren(...cards);
    $("session-numbers").dataset.loaded = "true";
  }

  function destroyCharts() {
    for (const chart of state.charts) chart.destroy();
    state.charts = [];
  }

  // Viewers are whole people: no 0.5 ticks.
  const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

  function chartWidth(node) {
    return Math.max(280, node.clientWidth || node.parentElement.clientWidth - 32);
  }

  async function loadViewers(detail) {
    let answer;
    try {
      answer = await getJson(`/rest/host/session/${encodeURIComponent(detail.sessionId)}/viewers`);
    } catch (err) {
      // Not offered by this server (404) or not readable: the section stays hidden.
      $("viewers-panel").hidden = true;
      return;
    }
    $("viewers-panel").hidden = false;
    const live = answer.live;
    const liveNode = $("live-chart");
    liveNode.replaceChildren();
    liveNode.dataset.points = String(live.points.length);
    // Without watching there is no chart, only the sentence that says so (no empty frame).
    liveNode.hidden = live.points.length === 0;
    $("peak-label").className = live.points.length ? "peak" : "hint";
    if (live.points.length) {
      const bucket = answer.bucketSeconds;
      const starts = live.points.map((p) => Date.parse(p.t) / 1000);
      // One more x where the last bucket ends: each step then spans its whole bucket.
      const xs = [...starts, starts[starts.length - 1] + bucket];
      const ys = [...live.points.map((p) => p.viewers), live.points[live.points.length - 1].viewers];
      const peakTime = Date.parse(live.peakAt) / 1000;
      let peakIndex = starts.findIndex((x) => x <= peakTime && peakTime < x + bucket);
      if (peakIndex < 0) peakIndex = 0;
      const peaks = xs.map((_, i) => (i === peakIndex ? ys[i] : null));
      // 24-hour times in the event's zone; the date too when the series spans more than a day.
      const longSpan = xs[xs.length - 1] - xs[0] > 86_400;
      const tickFormat = new Intl.DateTimeFormat("en-GB", {
        timeZone: zone(),
        hour: "2-digit",
        minute: "2-digit",
        ...(longSpan ? { day: "numeric", month: "short" } : {}),
      });
      const peakWhen = localTime(live.peakAt, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
      $("peak-label").textContent = `Peak: ${count(live.peakConcurrent)} concurrent viewers at ${peakWhen} (${zone()})`;
      $("live-hint").textContent =
        `Each step is the number of people who watched live during that ${bucket / 60 === 1 ? "minute" : `${bucket / 60}-minute span`}; the red dot marks the peak.`;
      state.charts.push(
        new uPlot(
          {
            width: chartWidth(liveNode),
            height: 260,
            tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), zone()),
            scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
            axes: [
              { label: `Time (${zone()})`, stroke: "#1a1a1a", space: 70, values: (u, ticks) => ticks.map((t) => tickFormat.format(new Date(t * 1e3))) },
              { label: "Viewers", stroke: "#1a1a1a", size: 60, incrs: WHOLE_STEPS },
            ],
            // Labels only: values under the cursor would read "--" until the pointer is on the chart.
            legend: { live: false },
            series: [
              { label: "Time" },
              { label: "Live viewers", stroke: "#0b5cad", fill: "rgba(11,92,173,0.15)", width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
              { label: "Peak", stroke: "#b00020", width: 0, points: { show: true, size: 11, fill: "#b00020", stroke: "#b00020" } },
            ],
          },
          [xs, ys, peaks],
          liveNode,
        ),
      );
    } else {
      $("peak-label").textContent = "Nobody watched live.";
      $("live-hint").textContent = "";
    }
    const days = answer.recording.days;
    const recordingNode = $("recording-chart");
    recordingNode.replaceChildren();
    recordingNode.dataset.days = String(days.length);
    recordingNode.hidden = days.length === 0;
    $("recording-empty").hidden = days.length > 0;
    if (days.length) {
      const xs = days.map((_, i) => i);
      state.charts.push(
        new uPlot(
          {
            width: chartWidth(recordingNode),
            height: 220,
            scales: { x: { time: false, range: [-0.6, days.length - 0.4] }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
            axes: [
              { label: `Date (${zone()})`, stroke: "#1a1a1a", incrs: [1, 2, 7, 14, 30], values: (u, ticks) => ticks.map((t) => (days[t] ? days[t].date : "")) },
              { label: "Viewers", stroke: "#1a1a1a", size: 60, incrs: WHOLE_STEPS },
            ],
            legend: { live: false },
            series: [
              { label: "Day", value: (u, i) => (i === null || !days[i] ? "—" : days[i].date) },
              { label: "Recording viewers", stroke: "#8a3b00", fill: "rgba(138,59,0,0.55)", paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } },
            ],
          },
          [xs, days.map((d) => d.viewers)],
          recordingNode,
        ),
      );
    }
  }

  async function loadAttendees() {
    const session = state.session;
    const q = state.attendeeQuery;
    const params = { page: q.page, size: ATTENDEE_PAGE_SIZE, ...rowFilters(q) };
    const request = ++state.requests.attendees;
    let answer;
    try {
      answer = await getJson(`/rest/host/session/${encodeURIComponent(session.sessionId)}/attendee?${query(params)}`);
    } catch (err) {
      if (state.session !== session || request !== state.requests.attendees) return;
      if (err.status === 404) {
        $("attendee-panel").hidden = true;
        return;
      }
      $("attendee-panel").hidden = false;
      $("attendee-rows").replaceChildren(el("tr", {}, el("td", { colspan: "9", className: "error", text: `Attendees could not be loaded: ${err.message}` })));
      return;
    }
    if (state.session !== session || request !== state.requests.attendees) return;
    $("attendee-panel").hidden = false;
    // Search is offered once the route filters (its answer then counts `recordsFiltered`, like
    // the session list); before that a search box would silently show everyone.
    $("attendee-search").closest("label").hidden = !("recordsFiltered" in answer);
    $("attendee-sort").closest("label").hidden = !("recordsFiltered" in answer);
    $("attendee-attended-label").hidden = !("recordsFiltered" in answer);
    $("attendee-min-completion-label").hidden = !("recordsFiltered" in answer);
    const rows = answer.data.map((a) => {
      const name = [a.firstName, a.lastName].filter(Boolean).join(" ");
      return el(
        "tr",
        { "data-user-id": a.userId },
        el("td", { text: name || a.userId }),
        identityCell(a),
        a.attended ? watchedCell(a) : el("td", { className: "num why", text: "did not attend" }),
        el("td", { className: "num", text: percent(a.engagement) }),
        el("td", { className: "num", text: percent(a.completion) }),
        el("td", { className: "num", text: count(a.joins) }),
        el("td", { className: "when", text: localTime(a.firstJoinedAt, SHORT_TIME) }),
        el("td", { className: "when", text: localTime(a.lastLeftAt, SHORT_TIME) }),
        el("td", { text: localTime(a.registeredAt) }),
      );
    });
    if (!rows.length) {
      const empty = emptyAttendeesText(answer, session);
      rows.push(el("tr", {}, el("td", { colspan: "9", text: empty })));
    }
    labelCells("attendee-table", rows);
    $("attendee-rows").replaceChildren(...rows);
    const total = answer.recordsFiltered ?? answer.recordsTotal;
    const pages = Math.max(1, Math.ceil(total / ATTENDEE_PAGE_SIZE));
    const preparing = answer.recordsTotal === 0 && (session.registeredUserCount > 0 || session.attendeeCount > 0);
    $("attendee-page-info").textContent = preparing ? "" : `Page ${answer.page + 1} of ${pages} · ${count(total)} attendees`;
    $("attendee-prev").disabled = answer.page === 0;
    $("attendee-next").disabled = answer.page + 1 >= pages;
  }

  function resetAttendeeQuery() {
    state.attendeeQuery = { page: 0, search: "", sort: "-attendedSeconds", attended: "", minCompletion: null };
    $("attendee-search").value = "";
    $("attendee-attended").value = "";
    $("attendee-min-completion").value = "";
    minCompletionOf($("attendee-min-completion"), "attendee-min-completion-error");
    $("attendee-sort").value = state.attendeeQuery.sort;
  }

  // Why the table is empty, in words that agree with the numbers above it: the list and the counts
  // come from the same rollup, so counts without rows mean the rows are not written yet.
  function emptyAttendeesText(answer, session) {
    if (answer.recordsTotal > 0) {
      if (filtered(state.attendeeQuery)) return "No attendee matches the search and filters.";
      return `No attendee's name or email contains "${state.attendeeQuery.search}".`;
    }
    if (session.registeredUserCount > 0 || session.attendeeCount > 0) {
      return "The attendee list is being prepared; it appears after the next update of the numbers.";
    }
    return "Nobody has registered or attended yet.";
  }

  function attendeeQueryChanged(change) {
    state.attendeeQuery = { ...state.attendeeQuery, page: 0, ...change };
    loadAttendees();
  }

  function downloadAttendeeCsv() {
    const id = state.session.sessionId;
    const q = state.attendeeQuery;
    const params = rowFilters(q);
    download(`/rest/host/session/${encodeURIComponent(id)}/attendee/csv?${query(params)}`, `attendees-${id}.csv`).catch((err) =>
      say(`The CSV could not be downloaded: ${err.message}`),
    );
  }

  async function probeAttendeeCsv(detail) {
    const button = $("attendee-csv");
    button.hidden = true;
    try {
      await send(`/rest/host/session/${encodeURIComponent(detail.sessionId)}/attendee/csv`, {
        method: "HEAD",
        headers: { Accept: "text/csv" },
      });
      button.hidden = false;
    } catch (err) {
      button.hidden = true; // not offered by this server yet
    }
  }

  // ---- wiring ----------------------------------------------------------------------------

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function wire() {
    $("login-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut());
    $("event-select").addEventListener("change", (e) => {
      state.sessionQuery = { page: 0, sort: $("session-sort").value, search: "", format: "" };
      resetPeopleQuery();
      $("session-search").value = "";
      $("session-format").value = "";
      location.hash = query({ event: e.target.value });
    });
    $("session-search").addEventListener("input", debounce((e) => sessionQueryChanged({ search: e.target.value.trim() }), 250));
    $("session-format").addEventListener("change", (e) => sessionQueryChanged({ format: e.target.value }));
    $("session-sort").addEventListener("change", (e) => sessionQueryChanged({ sort: e.target.value }));
    for (const th of document.querySelectorAll("#session-table th[data-sort]")) {
      th.tabIndex = 0;
      const toggle = () => {
        const key = th.dataset.sort;
        const sort = state.sessionQuery.sort === key ? `-${key}` : key;
        const option = [...$("session-sort").options].find((o) => o.value === sort);
        $("session-sort").value = option ? sort : $("session-sort").value;
        sessionQueryChanged({ sort });
      };
      th.addEventListener("click", toggle);
      th.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), toggle()));
    }
    $("session-prev").addEventListener("click", () => sessionQueryChanged({ page: state.sessionQuery.page - 1 }));
    $("session-next").addEventListener("click", () => sessionQueryChanged({ page: state.sessionQuery.page + 1 }));
    $("session-csv").addEventListener("click", () => {
      const q = state.sessionQuery;
      const params = { eventId: state.event.eventId, searchString: q.search, sessionFormat: q.format, sort: q.sort };
      download(`/rest/host/session/analytics/csv?${query(params)}`, `sessions-${state.event.eventId}.csv`).catch((err) =>
        say(`The CSV could not be downloaded: ${err.message}`),
      );
    });
    $("back-link").addEventListener("click", (e) => {
      e.preventDefault();
      location.hash = query({ event: state.event ? state.event.eventId : "" });
    });
    $("attendee-search").addEventListener("input", debounce((e) => attendeeQueryChanged({ search: e.target.value.trim() }), 250));
    $("attendee-sort").addEventListener("change", (e) => attendeeQueryChanged({ sort: e.target.value }));
    $("attendee-prev").addEventListener("click", () => {
      state.attendeeQuery.page -= 1;
      loadAttendees();
    });
    $("attendee-next").addEventListener("click", () => {
      state.attendeeQuery.page += 1;
      loadAttendees();
    });
    $("attendee-csv").addEventListener("click", downloadAttendeeCsv);
    $("attendee-attended").addEventListener("change", (e) => attendeeQueryChanged({ attended: e.target.value }));
    $("attendee-min-completion").addEventListener(
      "input",
      debounce((e) => {
        const value = minCompletionOf(e.target, "attendee-min-completion-error");
        if (value !== undefined) attendeeQueryChanged({ minCompletion: value });
      }, 300),
    );
    for (const tab of TABS) {
      $(`tab-${tab}`).addEventListener("click", () => openTab(tab));
      $(`tab-${tab}`).addEventListener("keydown", tabKeys);
    }
    $("people-search").addEventListener("input", debounce((e) => peopleQueryChanged({ search: e.target.value.trim() }), 250));
    $("people-attended").addEventListener("change", (e) => peopleQueryChanged({ attended: e.target.value }));
    $("people-min-completion").addEventListener(
      "input",
      debounce((e) => {
        const value = minCompletionOf(e.target, "people-min-completion-error");
        if (value !== undefined) peopleQueryChanged({ minCompletion: value });
      }, 300),
    );
    $("people-sort").addEventListener("change", (e) => peopleQueryChanged({ sort: e.target.value }));
    for (const th of document.querySelectorAll("#people-table th[data-sort]")) {
      th.tabIndex = 0;
      const toggle = () => {
        const key = th.dataset.sort;
        peopleQueryChanged({ sort: state.peopleQuery.sort === key ? `-${key}` : key });
      };
      th.addEventListener("click", toggle);
      th.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), toggle()));
    }
    $("people-prev").addEventListener("click", () => peopleQueryChanged({ page: state.peopleQuery.page - 1 }));
    $("people-next").addEventListener("click", () => peopleQueryChanged({ page: state.peopleQuery.page + 1 }));
    $("people-csv").addEventListener("click", downloadPeopleCsv);
    window.addEventListener("hashchange", route);
    window.addEventListener(
      "resize",
      debounce(() => {
        const charts = state.eventChart ? [...state.charts, state.eventChart] : state.charts;
        for (const chart of charts) chart.setSize({ width: chartWidth(chart.root.parentElement), height: chart.height });
      }, 150),
    );
  }

  // What other scripts of the page may call (live updates re-render in place with these).
  window.hostDashboard = { state, renderEventSummary, loadEventSummary, loadSessions, renderSessions, loadPeople, renderPeople, loadAttendees, openTab };

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    if (sessionStorage.getItem(TOKEN_KEY)) start();
    else show("login-view");
  });
})();
