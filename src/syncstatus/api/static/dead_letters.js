// Dead letters: what syncstatus refused, why, and what a redrive would do now. The page lists
// them all with the API's filters and a scorecard per producer; a connection's Refused tab
// shows the same table for that connection alone.

import { h, humanize, timeEl, dash, emptyState, liveIndicator, setLive, swap } from "./dom.js";
import { ApiError, api, askForToken, needsToken, tokenAnswered, flash } from "./api.js";

const FILTERS = [
  ["connection_id", "Connection"],
  ["producer", "Producer"],
  ["reason", "Reason"],
  ["app", "Data source"],
  ["topic", "Topic"],
];
const PAGE_SIZE = 20;

const deadLetterPath = (id) => `/dead-letters/${encodeURIComponent(id)}`;

function verdictText(v) {
  if (v.outcome === "applied") {
    return v.to_status ? `Would apply: ${v.from_status ? v.from_status.name : "new"} → ${v.to_status.name}` : "Would apply, without a change of status";
  }
  if (v.outcome === "parked") return `Would be parked: ${v.detail}`;
  if (v.outcome === "duplicate") return "Already redriven: a redrive would change nothing";
  return `Would be refused again: ${v.reason}${v.detail ? ` — ${v.detail}` : ""}`;
}

/** A table of dead letters with a detail row each, kept open across refreshes. */
class DeadLetterTable {
  constructor({ withConnection = true } = {}) {
    this.withConnection = withConnection;
    this.open = new Set();
    this.details = new Map();
    this.verdicts = new Map();
    this.key = null;
    this.body = h("tbody", { "data-testid": "dead-letters-body" });
  }

  element() {
    const columns = ["Refused", "Reason", ...(this.withConnection ? ["Connection"] : []), "Event", "Producer", "Topic", "Redriven", ""];
    return h("div", { class: "table-wrap" }, h("table", { class: "table dead-letters", "data-testid": "dead-letters-table" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))), this.body));
  }

  /** What the person opened and asked: part of what decides whether to redraw. */
  state() {
    return [[...this.open], [...this.details], [...this.verdicts]];
  }

  render(items) {
    const key = JSON.stringify([items, this.state()]);
    if (key === this.key) return;
    this.key = key;
    if (!items.length) {
      swap(this.body, h("tr", {}, h("td", { colspan: 8 }, emptyState("Nothing was refused.", "Refused events and messages appear here with their reason."))));
      return;
    }
    swap(this.body, items.map((d) => this.rows(d)));
  }

  rows(d) {
    const open = this.open.has(d.id);
    const row = h(
      "tr",
      { "data-testid": "dead-letter-row", "data-dead-letter-id": d.id },
      h("td", {}, timeEl(d.refused_at, { seconds: true })),
      h("td", { "data-testid": "dead-letter-reason" }, h("strong", {}, d.reason), h("div", { class: "muted dl-detail" }, d.detail)),
      this.withConnection ? h("td", {}, d.connection_id ? h("a", { href: `#/connections/${encodeURIComponent(d.connection_id)}?tab=refused` }, d.connection_id) : dash()) : null,
      h("td", {}, d.event_type ? humanize(d.event_type) : h("span", { class: "muted" }, "not decoded")),
      h("td", { "data-testid": "dead-letter-producer" }, d.producer ? h("code", {}, d.producer) : dash()),
      h("td", {}, d.topic ? h("code", {}, d.topic) : dash()),
      h("td", { "data-testid": "dead-letter-redriven" }, d.redriven_at ? [timeEl(d.redriven_at), h("div", { class: "muted" }, `by ${d.redriven_by}`)] : dash()),
      h("td", {}, h("button", { type: "button", class: "btn btn-small", "aria-expanded": String(open), "data-testid": "dead-letter-toggle", "data-focus-key": `dl-${d.id}`, onclick: () => this.toggle(d.id) }, open ? "Hide" : "Open")),
    );
    return open ? [row, this.detailRow(d)] : [row];
  }

  async toggle(id) {
    if (this.open.has(id)) this.open.delete(id);
    else {
      this.open.add(id);
      try {
        this.details.set(id, await api(deadLetterPath(id)));
      } catch (error) {
        this.details.set(id, { error: error instanceof ApiError ? error.detail : error.message });
      }
    }
    this.key = null;
    this.onchange();
  }

  detailRow(d) {
    const detail = this.details.get(d.id);
    const verdict = this.verdicts.get(d.id);
    const body = !detail
      ? h("p", { class: "muted" }, "Loading…")
      : detail.error
        ? h("p", { class: "text-error" }, detail.error)
        : [
            h(
              "dl",
              { class: "facts facts-inline" },
              h("div", { class: "fact" }, h("dt", {}, "Origin"), h("dd", { "data-testid": "dead-letter-origin" }, detail.topic ? `${detail.topic} · partition ${detail.partition} · offset ${detail.offset}` : "raised by syncstatus")),
              h("div", { class: "fact" }, h("dt", {}, "Headers"), h("dd", {}, detail.headers.length ? detail.headers.map((x) => h("div", {}, h("code", {}, x.name), ": ", x.value ?? `base64 ${x.value_base64}`)) : dash())),
              h("div", { class: "fact" }, h("dt", {}, "Redrives"), h("dd", {}, detail.redrives.length ? detail.redrives.map((r) => h("div", {}, `${r.requested_by}, `, timeEl(r.requested_at, { seconds: true }), r.published_at ? " (published)" : " (queued)")) : "none")),
            ),
            detail.event ? h("pre", { class: "dl-event", "data-testid": "dead-letter-event" }, JSON.stringify(detail.event, null, 2)) : h("p", { class: "muted" }, "The message did not decode; its bytes are kept."),
            detail.value_base64 ? h("details", {}, h("summary", {}, "Bytes (base64)"), h("pre", { class: "dl-bytes" }, detail.value_base64)) : null,
          ];
    return h(
      "tr",
      { class: "dl-open", "data-testid": "dead-letter-detail", "data-dead-letter-id": d.id },
      h(
        "td",
        { colspan: 8 },
        body,
        h(
          "div",
          { class: "dl-actions" },
          h("button", { type: "button", class: "btn btn-small", "data-testid": "dry-run", onclick: (e) => this.dryRun(d, e.currentTarget) }, "What would a redrive do now?"),
          h("button", { type: "button", class: "btn btn-small btn-primary", "data-testid": "redrive", onclick: (e) => this.redrive(d, e.currentTarget) }, "Redrive"),
          verdict ? h("span", { class: `verdict verdict-${verdict.outcome}`, "data-testid": "verdict", "data-outcome": verdict.outcome }, verdictText(verdict)) : null,
        ),
      ),
    );
  }

  async dryRun(d, button) {
    button.disabled = true;
    try {
      const result = await api(`${deadLetterPath(d.id)}/redrive?dry_run=true`, { method: "POST" });
      this.verdicts.set(d.id, result.verdicts[0]);
    } catch (error) {
      flash("error", error instanceof ApiError ? error.detail : error.message);
    }
    this.key = null;
    this.onchange();
  }

  async redrive(d, button) {
    button.disabled = true;
    try {
      await api(`${deadLetterPath(d.id)}/redrive`, { method: "POST" });
      flash("success", `Dead letter ${d.id} is queued to go through its input topic again.`);
      this.details.set(d.id, await api(deadLetterPath(d.id)));
    } catch (error) {
      flash(error instanceof ApiError && error.status === 409 ? "refused" : "error", error instanceof ApiError ? error.detail : error.message);
    }
    this.key = null;
    this.onchange();
  }

  onchange() {}
}

/** The Dead letters page: filters, a scorecard per producer and reason, the table, pages. */
export class DeadLettersView {
  constructor(params) {
    this.filters = Object.fromEntries(FILTERS.map(([name]) => [name, params.get(name) || ""]));
    this.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
    this.table = new DeadLetterTable();
    document.title = "Dead letters · syncstatus";
  }

  mount(main) {
    this.live = liveIndicator();
    this.count = h("span", { class: "count muted", "data-testid": "dead-letters-count" });
    this.score = h("div", { class: "scorecard", "data-testid": "scorecard" });
    this.pager = h("nav", { class: "pager", "aria-label": "Pages" });
    const inputs = FILTERS.map(([name, label]) =>
      h("label", { class: "filter" }, h("span", {}, label), h("input", { type: "search", value: this.filters[name], "data-testid": `filter-${name}`, oninput: (e) => this.filter(name, e.currentTarget.value.trim()) })),
    );
    this.table.onchange = () => this.refresh(() => true);
    swap(
      main,
      h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Dead letters"), h("p", { class: "muted" }, "Every input syncstatus refused, with its reason. Fix the cause, see what a redrive would do, then redrive it.")), this.live),
      h("section", { class: "card panel" }, h("h2", {}, "Refusals per producer, last 24 hours"), this.score),
      h("div", { class: "card" }, h("div", { class: "toolbar filters" }, inputs, this.count), this.table.element(), this.pager),
    );
  }

  filter(name, value) {
    this.filters[name] = value;
    this.page = 1;
    const p = new URLSearchParams(Object.entries(this.filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/dead-letters${p.toString() ? `?${p}` : ""}`);
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.refresh(() => true), 250);
  }

  async refresh(isCurrent) {
    const p = new URLSearchParams(Object.entries(this.filters).filter(([, v]) => v));
    p.set("page", String(this.page));
    p.set("page_size", String(PAGE_SIZE));
    let found;
    let score;
    try {
      [found, score] = await Promise.all([api(`/dead-letters?${p}`), api("/dead-letters/scorecard")]);
    } catch (error) {
      if (!isCurrent()) return;
      setLive(this.live, false);
      if (needsToken(error)) askForToken(error);
      return;
    }
    if (!isCurrent()) return;
    setLive(this.live, true);
    tokenAnswered();
    this.count.textContent = `${found.total} dead letter${found.total === 1 ? "" : "s"}`;
    this.table.render(found.items);
    this.renderScore(score);
    this.renderPager(found);
  }

  renderScore(score) {
    const key = JSON.stringify(score.totals);
    if (key === this.scoreKey) return;
    this.scoreKey = key;
    swap(
      this.score,
      score.totals.length
        ? h(
            "table",
            { class: "table", "data-testid": "scorecard-table" },
            h("thead", {}, h("tr", {}, ["Producer", "Reason", "Refused"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, score.totals.map((line) => h("tr", { "data-testid": "score-row" }, h("td", {}, line.producer ? h("code", {}, line.producer) : h("span", { class: "muted" }, "not decoded")), h("td", {}, line.reason), h("td", { "data-testid": "score-count" }, String(line.count))))),
          )
        : h("p", { class: "muted" }, "No refusals in the last 24 hours."),
    );
  }

  renderPager(found) {
    const pages = Math.max(1, Math.ceil(found.total / PAGE_SIZE));
    const go = (page) => {
      this.page = page;
      this.refresh(() => true);
    };
    swap(
      this.pager,
      h("span", { class: "muted" }, `Page ${found.page} of ${pages}`),
      h("div", { class: "pager-buttons" }, h("button", { type: "button", class: "btn btn-small", disabled: found.page <= 1, onclick: () => go(found.page - 1) }, "Previous"), h("button", { type: "button", class: "btn btn-small", disabled: found.page >= pages, onclick: () => go(found.page + 1) }, "Next")),
    );
  }
}

/** A connection's Refused tab: its dead letters, newest first. */
export class RefusedPanel {
  constructor(connectionId, onchange) {
    this.connectionId = connectionId;
    this.table = new DeadLetterTable({ withConnection: false });
    this.table.onchange = onchange;
    this.items = null;
  }

  async load() {
    const found = await api(`/dead-letters?connection_id=${encodeURIComponent(this.connectionId)}&page_size=50`);
    this.items = found.items;
  }

  element() {
    const head = h("div", { class: "panel-head" }, h("div", {}, h("h2", {}, "Refused"), h("p", { class: "muted" }, "Events of this connection syncstatus refused, newest first. ", h("a", { href: `#/dead-letters?connection_id=${encodeURIComponent(this.connectionId)}` }, "Open in Dead letters"))));
    if (this.items === null) return [head, h("p", { class: "muted" }, "Loading…")];
    this.table.key = null;
    this.table.render(this.items);
    return [head, this.table.element()];
  }
}
