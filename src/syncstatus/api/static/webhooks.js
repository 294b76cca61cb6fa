// Webhooks: the subscriptions, where each stands, and a subscription's delivery log (every
// attempt with its status code and latency, newest first). Every webhook route needs an admin
// token, even where reads are public. Resume and Redeliver are the page's actions; creating a
// subscription stays with the CLI and the API, since its secret is shown once.

import { h, svg, ICONS, timeEl, dash, emptyState, liveIndicator, setLive, swap } from "./dom.js";
import { ApiError, api, askForToken, needsToken, tokenAnswered, flash } from "./api.js";

const LOG_PAGE = 50;
const LOG_COLUMNS = 9;

const webhookPath = (id) => `/webhooks/${encodeURIComponent(id)}`;
const webhookHash = (id) => `#/webhooks/${encodeURIComponent(id)}`;

/** What a subscription's filters let through, in words. */
function filtersText(w) {
  const parts = [];
  if (w.workspace) parts.push(`workspace ${w.workspace}`);
  if (w.apps) parts.push(`apps ${w.apps.join(", ")}`);
  if (w.statuses) parts.push(`statuses ${w.statuses.join(", ")}`);
  if (w.errors_only) parts.push("errors only");
  return parts.length ? parts.join(" · ") : "every change";
}

function stateBadge(w, testid) {
  const active = w.state === "active";
  return h(
    "span",
    { class: `pill tone-${active ? "synced" : "error"}`, "data-testid": testid, "data-state": w.state, title: active ? "Delivering" : "Paused until resumed" },
    h("span", { class: "dot", "aria-hidden": "true" }),
    active ? "Active" : "Failing",
  );
}

/** Latency in milliseconds: loopback receivers answer in well under one. */
function milliseconds(seconds) {
  const ms = seconds * 1000;
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/** An action's refusal, shown as the dead letters page shows one (409: refused). */
function refusal(error) {
  flash(error instanceof ApiError && error.status === 409 ? "refused" : "error", error instanceof ApiError ? error.detail : error.message);
}

// ---------------------------------------------------------------------------------------------
// The list

/** The Webhooks page: every subscription the token sees, oldest first, with where it stands. */
export class WebhooksView {
  constructor() {
    this.key = null;
    document.title = "Webhooks · syncstatus";
  }

  mount(main) {
    this.live = liveIndicator();
    this.count = h("span", { class: "count muted", "data-testid": "webhooks-count" });
    this.body = h("tbody", { "data-testid": "webhooks-body" });
    const columns = ["Subscription", "Filters", "State", "Position", "Attempts in a row", "Failing since", "Retry at", "Last delivered"];
    swap(
      main,
      h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Webhooks"), h("p", { class: "muted" }, "Where each subscription's deliveries stand. Open one for its delivery log; create them with the CLI or the API (their secret is shown once).")), this.live),
      h(
        "div",
        { class: "card" },
        h("div", { class: "toolbar" }, this.count),
        h("div", { class: "table-wrap" }, h("table", { class: "table webhooks", "data-testid": "webhooks-table" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))), this.body)),
      ),
    );
  }

  async refresh(isCurrent) {
    let found;
    try {
      found = await api("/webhooks");
    } catch (error) {
      if (!isCurrent()) return;
      setLive(this.live, false);
      if (needsToken(error)) askForToken(error, "webhooks");
      return;
    }
    if (!isCurrent()) return;
    setLive(this.live, true);
    tokenAnswered();
    const key = JSON.stringify(found);
    if (key === this.key) return;
    this.key = key;
    const list = found.webhooks;
    this.count.textContent = `${list.length} subscription${list.length === 1 ? "" : "s"}`;
    swap(this.body, list.length ? list.map(webhookRow) : h("tr", {}, h("td", { colspan: 8 }, emptyState("No webhook subscriptions.", "Create one with POST /webhooks; it appears here."))));
  }
}

function webhookRow(w) {
  return h(
    "tr",
    { "data-testid": "webhook-row", "data-webhook-id": w.id, class: w.state === "failing" ? "row-error" : "" },
    h("td", { class: "wh-url" }, h("a", { href: webhookHash(w.id), "data-testid": "webhook-link", "data-focus-key": `open-${w.id}` }, w.url), w.description ? h("div", { class: "muted", "data-testid": "webhook-description" }, w.description) : null),
    h("td", { "data-testid": "webhook-filters" }, filtersText(w)),
    h("td", { class: "wh-state" }, stateBadge(w, "webhook-state"), w.pause_reason ? h("div", { class: "muted", "data-testid": "webhook-pause-reason" }, w.pause_reason) : null),
    h("td", {}, h("code", { "data-testid": "webhook-position" }, w.position)),
    h("td", { class: "num", "data-testid": "webhook-attempts" }, String(w.attempts)),
    h("td", {}, timeEl(w.failing_since, { seconds: true })),
    h("td", {}, timeEl(w.retry_at, { seconds: true })),
    h("td", { "data-testid": "webhook-delivered-at" }, timeEl(w.delivered_at, { seconds: true })),
  );
}

// ---------------------------------------------------------------------------------------------
// A subscription: where it stands, its delivery log and its redeliveries

/** A subscription's page. `poke` asks the router for a refresh, after an action or a page. */
export class WebhookView {
  constructor(id, params, poke) {
    this.id = id;
    this.poke = poke;
    const before = parseInt(params.get("before") || "", 10);
    this.before = before > 0 ? before : null;
    this.newer = []; // the `before` of each newer page, to go back to
    this.keys = {};
    document.title = "Webhook · syncstatus";
  }

  mount(main) {
    this.live = liveIndicator();
    this.head = h("section", { class: "card conn-head", "data-testid": "webhook-header" }, h("p", { class: "muted" }, "Loading…"));
    this.log = h("tbody", { "data-testid": "deliveries-body" });
    this.pager = h("nav", { class: "pager", "aria-label": "Delivery log pages", "data-testid": "deliveries-pager" });
    this.redeliveries = h("div", { "data-testid": "redeliveries" });
    const columns = ["Attempted", "Connection", "Sequence", "Attempt", "Outcome", "Status code", "Latency", "Error", "Redelivery"];
    this.sections = [
      h(
        "section",
        { class: "card panel" },
        h("div", { class: "panel-head" }, h("div", {}, h("h2", {}, "Delivery log"), h("p", { class: "muted" }, "Every attempt, newest first, with the receiver's status code and how long it took to answer."))),
        h("div", { class: "table-wrap" }, h("table", { class: "table deliveries", "data-testid": "deliveries-table" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))), this.log)),
        this.pager,
      ),
      h("section", { class: "card panel" }, h("div", { class: "panel-head" }, h("div", {}, h("h2", {}, "Redeliveries"), h("p", { class: "muted" }, "Deliver a connection's records again, from a sequence up to the last one this subscription has passed, before anything newer. They keep their webhook-id."))), this.redeliverForm(), this.redeliveries),
    ];
    const crumbs = h("nav", { "aria-label": "Breadcrumb", class: "crumbs" }, h("a", { href: "#/webhooks", "data-testid": "back-link" }, svg(ICONS.back, 16), "Webhooks"));
    swap(main, h("div", { "data-testid": "webhook-page", "data-webhook-id": this.id }, h("div", { class: "page-head" }, crumbs, this.live), this.head, this.sections));
  }

  /** Drawn once: a refresh must not wipe what the person is typing. */
  redeliverForm() {
    const connection = h("input", { id: "redeliver-connection", name: "connection_id", required: true, spellcheck: "false", autocomplete: "off", "data-testid": "redeliver-connection" });
    const from = h("input", { id: "redeliver-from", name: "from_sequence", type: "number", min: 1, value: 1, required: true, "data-testid": "redeliver-from" });
    const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "redeliver" }, "Redeliver");
    return h(
      "form",
      {
        class: "inline-form",
        "data-testid": "redeliver-form",
        onsubmit: (e) => {
          e.preventDefault();
          this.redeliver(connection.value.trim(), from.value, submit);
        },
      },
      h("label", { for: "redeliver-connection" }, "Connection"),
      connection,
      h("label", { for: "redeliver-from" }, "from sequence"),
      from,
      submit,
    );
  }

  async refresh(isCurrent) {
    const before = this.before;
    const path = webhookPath(this.id);
    const page = new URLSearchParams({ limit: String(LOG_PAGE) });
    if (before) page.set("before", String(before));
    let found;
    try {
      found = await Promise.all([api(path), api(`${path}/deliveries?${page}`), api(`${path}/redeliveries`)]);
    } catch (error) {
      if (!isCurrent()) return;
      setLive(this.live, false);
      if (needsToken(error)) askForToken(error, "webhooks");
      else if (error instanceof ApiError && error.status === 404) this.gone();
      return;
    }
    // A page asked for meanwhile: this answer is for the one left.
    if (!isCurrent() || before !== this.before) return;
    setLive(this.live, true);
    tokenAnswered();
    const [subscription, log, redeliveries] = found;
    this.draw("head", subscription, () => this.renderHead(subscription));
    this.draw("log", [log, before, this.newer.length], () => this.renderLog(log));
    this.draw("redeliveries", redeliveries, () => this.renderRedeliveries(redeliveries.redeliveries));
  }

  /** Redraw a part only when what it shows changed: a redraw under the pointer loses a click. */
  draw(part, data, render) {
    const key = JSON.stringify(data);
    if (this.keys[part] === key) return;
    this.keys[part] = key;
    render();
  }

  gone() {
    this.keys = {};
    for (const section of this.sections) section.hidden = true;
    swap(this.head, h("div", { "data-testid": "webhook-gone" }, h("h1", {}, "Subscription not found"), h("p", { class: "muted" }, "It was deleted, or your token does not see it.")));
  }

  renderHead(w) {
    document.title = `${w.description || w.url} · Webhooks · syncstatus`;
    for (const section of this.sections) section.hidden = false;
    const fact = (label, testid, ...value) => h("div", { class: "fact" }, h("dt", {}, label), h("dd", { "data-testid": testid }, ...value));
    const resume = w.state === "failing" ? h("button", { type: "button", class: "btn btn-primary", "data-testid": "webhook-resume", "data-focus-key": "resume", onclick: (e) => this.resume(e.currentTarget) }, "Resume") : null;
    swap(
      this.head,
      h(
        "div",
        { class: "conn-top" },
        h("div", {}, h("div", { class: "title-line" }, h("h1", { class: "wh-url", "data-testid": "webhook-url" }, w.url), stateBadge(w, "webhook-state")), h("p", { class: "muted", "data-testid": "webhook-description" }, w.description || "No description")),
        resume,
      ),
      w.pause_reason ? h("div", { class: "error-box", role: "note", "data-testid": "webhook-pause-reason" }, svg(ICONS.warn, 16), h("span", {}, h("strong", {}, "Paused: "), w.pause_reason, w.paused_at ? [" · ", timeEl(w.paused_at, { seconds: true })] : null)) : null,
      h(
        "dl",
        { class: "facts" },
        fact("Filters", "webhook-filters", filtersText(w)),
        fact("Position", "webhook-position", h("code", {}, w.position)),
        fact("Attempts in a row", "webhook-attempts", String(w.attempts)),
        fact("Failing since", "webhook-failing-since", timeEl(w.failing_since, { seconds: true })),
        fact("Retry at", "webhook-retry-at", timeEl(w.retry_at, { seconds: true })),
        fact("Last delivered", "webhook-delivered-at", timeEl(w.delivered_at, { seconds: true })),
        fact("Created", "webhook-created", `by ${w.created_by}, `, timeEl(w.created_at)),
      ),
    );
  }

  renderLog(log) {
    const empty = this.before ? "No older attempt." : "No attempt yet.";
    swap(this.log, log.deliveries.length ? log.deliveries.map(deliveryRow) : h("tr", {}, h("td", { colspan: LOG_COLUMNS }, emptyState(empty, "Attempts are kept SYNCSTATUS_WEBHOOK_LOG_RETENTION_S."))));
    const newer = () => this.page(this.newer.pop() ?? null);
    const older = () => {
      this.newer.push(this.before);
      this.page(log.before);
    };
    swap(
      this.pager,
      h("span", { class: "muted", "data-testid": "deliveries-page" }, this.before ? `Attempts before #${this.before}` : "The newest attempts"),
      h(
        "div",
        { class: "pager-buttons" },
        h("button", { type: "button", class: "btn btn-small", "data-testid": "deliveries-newer", "data-focus-key": "newer", disabled: this.before === null, onclick: newer }, "Newer"),
        h("button", { type: "button", class: "btn btn-small", "data-testid": "deliveries-older", "data-focus-key": "older", disabled: log.before === null, onclick: older }, "Older"),
      ),
    );
  }

  page(before) {
    this.before = before;
    history.replaceState(null, "", `${webhookHash(this.id)}${before ? `?before=${before}` : ""}`);
    this.poke();
  }

  renderRedeliveries(list) {
    if (!list.length) {
      swap(this.redeliveries, h("p", { class: "muted", "data-testid": "redeliveries-none" }, "No redelivery was asked for."));
      return;
    }
    const columns = ["Requested", "By", "What", "Done"];
    swap(this.redeliveries, h("div", { class: "table-wrap" }, h("table", { class: "table", "data-testid": "redeliveries-table" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, list.map(redeliveryRow)))));
  }

  async resume(button) {
    button.disabled = true;
    try {
      await api(`${webhookPath(this.id)}/resume`, { method: "POST" });
      flash("success", "Delivering again, starting with the record it failed on.");
    } catch (error) {
      refusal(error);
    } finally {
      button.disabled = false;
    }
    this.poke();
  }

  async redeliver(connectionId, fromSequence, button) {
    button.disabled = true;
    const p = new URLSearchParams({ connection_id: connectionId, from_sequence: fromSequence });
    try {
      const queued = await api(`${webhookPath(this.id)}/redeliver?${p}`, { method: "POST" });
      flash("success", `Redelivery of ${queued.connection_id}, sequences ${queued.next_sequence} to ${queued.last_sequence}, is queued.`);
    } catch (error) {
      refusal(error);
    } finally {
      button.disabled = false;
    }
    this.poke();
  }
}

function deliveryRow(d) {
  const ok = d.outcome === "delivered";
  return h(
    "tr",
    { "data-testid": "delivery-row", "data-delivery-id": d.id, "data-outcome": d.outcome, class: ok ? "" : "row-error", title: `webhook-id ${d.message_id}` },
    h("td", { "data-testid": "delivery-attempted-at" }, timeEl(d.attempted_at, { seconds: true })),
    h("td", { "data-testid": "delivery-connection" }, h("a", { href: `#/connections/${encodeURIComponent(d.connection_id)}` }, d.connection_id)),
    h("td", { class: "num", "data-testid": "delivery-sequence" }, String(d.sequence)),
    h("td", { class: "num", "data-testid": "delivery-attempt" }, String(d.attempt)),
    h("td", { "data-testid": "delivery-outcome" }, h("span", { class: `badge ${ok ? "badge-ok" : "badge-error"}` }, d.outcome)),
    h("td", { class: "num", "data-testid": "delivery-status-code" }, d.status_code === null ? dash() : String(d.status_code)),
    h("td", { class: "num", "data-testid": "delivery-ms" }, milliseconds(d.seconds)),
    h("td", { class: "wh-error", "data-testid": "delivery-error" }, d.error || dash()),
    h("td", { "data-testid": "delivery-redelivery" }, d.redelivery ? h("span", { class: "badge badge-main" }, "redelivery") : dash()),
  );
}

function redeliveryRow(r) {
  const what = r.after !== null ? ["every record after ", h("code", {}, r.after)] : [h("code", {}, r.connection_id), r.done_at ? ` up to sequence ${r.last_sequence}` : `, sequence ${r.next_sequence} next, up to ${r.last_sequence}`];
  return h(
    "tr",
    { "data-testid": "redelivery-row", "data-redelivery-id": r.id },
    h("td", {}, timeEl(r.requested_at, { seconds: true })),
    h("td", {}, r.requested_by),
    h("td", { "data-testid": "redelivery-what" }, what),
    h("td", { "data-testid": "redelivery-done" }, r.done_at ? timeEl(r.done_at, { seconds: true }) : h("span", { class: "muted" }, "queued")),
  );
}
