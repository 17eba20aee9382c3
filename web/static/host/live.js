// Live updates of the dashboard (DESIGN §7): reads GET /rest/host/event/{eventId}/stream with
// fetch, so the token goes in the Authorization header (EventSource cannot send one, and a token
// in a URL ends up in logs). Reconnects with Last-Event-ID, so no change is missed; on `reset`
// (the page fell behind the server's replay log) everything is read again.
"use strict";

(() => {
  const TOKEN_KEY = "sessionAnalytics.token";
  const RETRY_MS = [1000, 2000, 5000, 10000];
  let current = null; // { eventId, controller }

  function parseEvents(buffer, onEvent) {
    // Server-Sent Events framing: events end with a blank line; `:` lines are heartbeats.
    const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    const rest = blocks.pop();
    for (const block of blocks) {
      const event = { name: "message", id: null, data: [] };
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (!line || line.startsWith(":")) continue;
        const at = line.indexOf(":");
        const key = at < 0 ? line : line.slice(0, at);
        const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
        if (key === "event") event.name = value;
        else if (key === "id") event.id = value;
        else if (key === "data") event.data.push(value);
      }
      if (event.data.length) onEvent(event);
    }
    return rest;
  }

  async function follow(eventId, handlers, controller) {
    let lastId = null;
    let failures = 0;
    while (!controller.signal.aborted) {
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (!token) return;
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
      if (lastId) headers["Last-Event-ID"] = lastId;
      try {
        const response = await fetch(`/rest/host/event/${encodeURIComponent(eventId)}/stream`, {
          headers,
          signal: controller.signal,
          cache: "no-store",
        });
        if (response.status === 401 || response.status === 403 || response.status === 404) return;
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        failures = 0;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (event) => {
            if (event.id) lastId = event.id;
            const data = JSON.parse(event.data.join("\n"));
            const handler = handlers[event.name];
            if (handler) handler(data);
          });
        }
      } catch (err) {
        if (controller.signal.aborted) return;
        failures += 1;
      }
      // The stream ended (STREAM_MAX_S) or broke: come back, from the last id seen.
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]));
    }
  }

  window.liveUpdates = {
    // Follow one event's stream while its view is open; following another stops the first.
    follow(eventId, handlers) {
      if (current && current.eventId === eventId) {
        current.handlers = handlers;
        return;
      }
      this.stop();
      const controller = new AbortController();
      current = { eventId, controller, handlers };
      const live = current;
      const dispatch = {
        sessions: (data) => live.handlers.sessions && live.handlers.sessions(data.items || []),
        summary: (data) => live.handlers.summary && live.handlers.summary(data),
        reset: () => live.handlers.reset && live.handlers.reset(),
      };
      follow(eventId, dispatch, controller);
    },
    stop() {
      if (current) current.controller.abort();
      current = null;
    },
  };
})();
