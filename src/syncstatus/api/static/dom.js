// DOM, formatting and status helpers the dashboard's views share. Plain ES module; every
// string from the API goes through textContent.

export const POLL_MS = 2000;

// ---------------------------------------------------------------------------------------------
// DOM helpers

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "html") throw new Error("no innerHTML");
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function svg(path, size = 16) {
  const ns = "http://www.w3.org/2000/svg";
  const el = document.createElementNS(ns, "svg");
  el.setAttribute("viewBox", "0 0 24 24");
  el.setAttribute("width", size);
  el.setAttribute("height", size);
  el.setAttribute("aria-hidden", "true");
  el.setAttribute("focusable", "false");
  const p = document.createElementNS(ns, "path");
  p.setAttribute("d", path);
  p.setAttribute("fill", "currentColor");
  el.append(p);
  return el;
}

export const ICONS = {
  trash:
    "M9 3h6l1 2h4v2H4V5h4l1-2Zm-3 6h12l-1 12H7L6 9Zm4 2v8h1.5v-8H10Zm3.5 0v8H15v-8h-1.5Z",
  sync: "M12 4a8 8 0 0 1 7.4 5h-2.2A6 6 0 0 0 6.3 9.9L8.5 12H3V6.5l1.9 1.9A8 8 0 0 1 12 4Zm-7.4 11h2.2a6 6 0 0 0 10.9.9L15.5 13H21v5.5l-1.9-1.9A8 8 0 0 1 4.6 15Z",
  plug: "M8 2h2v5h4V2h2v5h2v5a6 6 0 0 1-5 5.9V22h-2v-4.1A6 6 0 0 1 6 12V7h2V2Z",
  search:
    "M10 3a7 7 0 0 1 5.6 11.2l5.1 5.1-1.4 1.4-5.1-5.1A7 7 0 1 1 10 3Zm0 2a5 5 0 1 0 0 10 5 5 0 0 0 0-10Z",
  check: "M9.5 16.2 5.3 12l-1.4 1.4 5.6 5.6L20.1 8.4 18.7 7z",
  warn: "M12 3 1.5 21h21L12 3Zm-1 6h2v6h-2V9Zm0 8h2v2h-2v-2Z",
  back: "M15.4 5.4 14 4l-8 8 8 8 1.4-1.4L8.8 12z",
  close: "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19 12 13.4 17.6 19l1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z",
};

// ---------------------------------------------------------------------------------------------
// Formatting

export const DATE = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  day: "2-digit",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});
export const SECONDS = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});

export function day(iso) {
  return iso ? DATE.format(new Date(iso)).split(", ")[0] : "";
}

export function timeEl(iso, { seconds = false, stacked = false, withDay = true, testid = null } = {}) {
  if (!iso) return h("span", { class: "muted", "data-testid": testid, title: "Never" }, "—");
  const d = new Date(iso);
  const title = `${d.toISOString()} (UTC)`;
  const [date, minute] = DATE.format(d).split(", ");
  if (stacked) {
    return h("time", { datetime: iso, title, class: "stacked", "data-testid": testid }, h("span", {}, date), " ", h("span", { class: "muted" }, minute));
  }
  const clock = seconds ? SECONDS.format(d) : minute;
  return h("time", { datetime: iso, title, "data-testid": testid }, withDay ? `${date}, ${clock}` : clock);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "in progress";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

export function humanize(eventType) {
  const text = eventType.toLowerCase().replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function dash() {
  return h("span", { class: "muted", "aria-label": "none" }, "—");
}

// ---------------------------------------------------------------------------------------------
// Statuses: the colour says where a connection is (green synced, blue in progress, red error,
// grey ended).

let STATUSES = new Map(); // code -> {code, name, stage, is_error, description}

/** The machine's statuses, from GET /statuses: colours and descriptions by code. */
export function setStatuses(list) {
  STATUSES = new Map(list.map((s) => [s.code, s]));
}

export function tone(status) {
  const full = { ...(STATUSES.get(status.code) || {}), ...status };
  if (full.is_error) return "error";
  if (full.code === 19) return "synced";
  // Ended without an error: Disconnected (end stage) and Deauthorized (needs a re-connect).
  if (full.stage === "end" || full.code === 8) return "ended";
  if (full.stage === undefined) return "neutral";
  return "progress";
}

export const TONE_TEXT = {
  synced: "synced",
  progress: "in progress",
  error: "error",
  ended: "ended",
  neutral: "",
};

export function statusPill(status, { testid = null, withStage = true } = {}) {
  const full = { ...(STATUSES.get(status.code) || {}), ...status };
  const t = tone(full);
  const pill = h(
    "span",
    {
      class: `pill tone-${t}`,
      "data-testid": testid,
      "data-tone": t,
      "data-code": status.code,
      title: full.description ? `${full.code} · ${full.description}` : `status ${full.code}`,
    },
    h("span", { class: "dot", "aria-hidden": "true" }),
    full.name,
  );
  if (!withStage || !full.stage) return pill;
  return h(
    "span",
    { class: "status-with-stage" },
    pill,
    h(
      "span",
      { class: "stage", "data-testid": testid ? `${testid}-stage` : null },
      h("span", { class: "visually-hidden" }, "stage: "),
      full.stage,
    ),
    h("span", { class: "visually-hidden" }, ` (${TONE_TEXT[t]})`),
  );
}

export function emptyState(text, hint = null) {
  return h("div", { class: "empty", "data-testid": "empty" }, h("p", {}, text), hint ? h("p", { class: "muted" }, hint) : null);
}

export function liveIndicator() {
  const el = h("span", { class: "live", "data-testid": "live", "data-state": "connecting" });
  el.append(h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "live-text" }, "Connecting…"));
  return el;
}

export function setLive(el, ok) {
  if (!el) return;
  el.dataset.state = ok ? "ok" : "down";
  el.querySelector(".live-text").textContent = ok
    ? `Live · ${SECONDS.format(new Date())} UTC`
    : "API unreachable · retrying";
  el.title = ok ? `Refreshed every ${POLL_MS / 1000} s` : "The last refresh failed";
}

/** Replace `container`'s children, keeping the keyboard focus on the same control. */
export function swap(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : null;
  container.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (key) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

