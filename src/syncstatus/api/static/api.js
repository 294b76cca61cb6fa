// Talking to the API: requests with the token, the token field, and the message strip.
// A change of token is announced as a `tokenchange` event on the document.

import { h, svg, ICONS } from "./dom.js";

const TOKEN_KEY = "syncstatus.apiToken";

// ---------------------------------------------------------------------------------------------
// API

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

function describeError(payload, fallback) {
  if (!payload || payload.detail === undefined) return fallback;
  if (typeof payload.detail === "string") return payload.detail;
  if (Array.isArray(payload.detail)) {
    return payload.detail
      .map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`)
      .join("; ");
  }
  return JSON.stringify(payload.detail);
}

export async function api(path, { method = "GET", body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, describeError(payload, response.statusText || "failed"));
  }
  return payload;
}

export const connectionPath = (id) => `/connections/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------------------------------------
// Token: asked once, kept for the browser session (sessionStorage), sent with every request.

export const tokenInput = document.getElementById("token");
const tokenState = document.getElementById("token-state");

export function getToken() {
  return (tokenInput.value || "").trim();
}

function showTokenState() {
  const set = getToken() !== "";
  tokenState.textContent = set ? "saved" : "not set";
  tokenState.dataset.state = set ? "set" : "unset";
}

try {
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
} catch {
  /* storage disabled */
}
showTokenState();
tokenInput.addEventListener("input", () => {
  try {
    const value = getToken();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled */
  }
  showTokenState();
  document.dispatchEvent(new CustomEvent("tokenchange"));
});

/** A read refused for want of a token: say so once and point at the field. `what` names what
 * the page reads, since some pages (webhooks) need an admin token even where reads are public. */
export function askForToken(error, what = "connections") {
  const text = error.status === 401 ? `This dashboard needs an API token to read ${what}: enter it at the top right.` : `${error.detail}: check the API token at the top right.`;
  const shown = messages.querySelector('[data-testid="message-text"]');
  if (shown && shown.textContent === text) return;
  flash("error", text);
  messages.querySelector(".message").dataset.tokenAsk = "true";
  if (error.status === 401) tokenInput.focus();
}

/** A read went through: a request for the token is answered. */
export function tokenAnswered() {
  for (const asked of messages.querySelectorAll("[data-token-ask]")) asked.remove();
}

export const needsToken = (error) => error instanceof ApiError && (error.status === 401 || error.status === 403);
document.querySelector(".token").addEventListener("submit", (e) => e.preventDefault());

// ---------------------------------------------------------------------------------------------
// Messages

export const messages = document.querySelector(".messages");

export function flash(kind, text, { sticky = kind !== "success", extra = null } = {}) {
  const title = { success: "Done", refused: "Refused", error: "Error" }[kind] || "";
  const msg = h(
    "div",
    {
      class: `message message-${kind}`,
      role: kind === "success" ? "status" : "alert",
      "data-testid": "message",
      "data-kind": kind,
    },
    svg(kind === "success" ? ICONS.check : ICONS.warn, 18),
    h(
      "p",
      {},
      title ? h("strong", {}, `${title}: `) : null,
      h("span", { "data-testid": "message-text" }, text),
      extra ? [" ", extra] : null,
    ),
    h(
      "button",
      {
        class: "icon-btn",
        type: "button",
        "aria-label": "Dismiss",
        "data-testid": "message-dismiss",
        onclick: () => msg.remove(),
      },
      svg(ICONS.close, 16),
    ),
  );
  // The newest outcome replaces the previous one.
  for (const old of messages.querySelectorAll(".message")) old.remove();
  messages.append(msg);
  if (!sticky) setTimeout(() => msg.remove(), 8000);
}

