// The syncstatus dashboard: Connected sources and a connection's page, polled every 2 s.
// Plain ES module, no dependencies; every string from the API goes through textContent.

import { POLL_MS, h, svg, ICONS, DATE, day, timeEl, duration, humanize, dash, setStatuses, tone, statusPill, emptyState, liveIndicator, setLive, swap } from "./dom.js";
import { ApiError, api, connectionPath, tokenInput, askForToken, tokenAnswered, needsToken, flash } from "./api.js";
import { DeadLettersView, RefusedPanel } from "./dead_letters.js";
import { WebhooksView, WebhookView } from "./webhooks.js";
import { followChanges } from "./live.js";

const STREAMING_POLL_MS = 5000;

const SORTABLE = {
  data_source: "Data source",
  business_account: "Business account",
  account_status: "Account status",
  business_account_id: "Business account ID",
  created: "Created",
  last_authorization: "Last authorization",
  source_sync: "Source data sync",
  data_refresh: "Plan data refresh",
};
const PAGE_SIZES = [10, 20, 50, 100];
const LIST_COLUMNS = 11;
const FREQUENCIES = [
  [15, "Every 15 minutes"],
  [30, "Every 30 minutes"],
  [60, "Every hour"],
  [180, "Every 3 hours"],
  [360, "Every 6 hours"],
  [720, "Every 12 hours"],
  [1440, "Every day"],
  [10080, "Every week"],
];

function frequencyText(minutes) {
  const preset = FREQUENCIES.find(([m]) => m === minutes);
  if (preset) return preset[1];
  if (minutes % 60 === 0) return `Every ${minutes / 60} hours`;
  return `Every ${minutes} minutes`;
}

function credentialsBadge(summary, testid) {
  if (summary.credentials === null) {
    return h("span", { class: "muted", "data-testid": testid, title: "Not authorized yet" }, "—");
  }
  const ok = summary.credentials === "Active";
  const unfinished = ok && summary.reauthorization_failed_at
    ? ` — a re-authorization on ${day(summary.reauthorization_failed_at)} was not completed: ${summary.reauthorization_error || "not completed"}`
    : "";
  return h(
    "span",
    {
      class: `badge ${ok ? "badge-ok" : "badge-error"}`,
      "data-testid": testid,
      title: ok ? `The credentials are valid${unfinished}` : summary.credentials_error || "Invalid credentials",
    },
    summary.credentials,
  );
}

// The two card statuses (seed 004): how the source data sync and the plan data refresh last
// ran, each with the day and time it last started.

const RUN_PARTS = [
  ["source_sync", "Source data sync"],
  ["data_refresh", "Plan data refresh"],
];
const RUN_TEXT = {
  success: ["synced", "Success"],
  in_progress: ["progress", "In progress"],
  error: ["error", "Error"],
};

const partId = (part) => part.replace("_", "-");

function runStatus(run, label, testid) {
  if (!run.state) {
    return h("span", { class: "run muted", "data-testid": testid, "data-state": "", title: `No ${label.toLowerCase()} yet` }, "—");
  }
  const [t, text] = RUN_TEXT[run.state];
  const facts = [`${label}: ${text.toLowerCase()}`];
  if (run.succeeded_at) facts.push(`last succeeded ${DATE.format(new Date(run.succeeded_at))}`);
  if (run.failed_at) facts.push(`last failed ${DATE.format(new Date(run.failed_at))}: ${run.error || "no reason given"}`);
  return h(
    "span",
    { class: "run", "data-testid": testid, "data-state": run.state, title: facts.join(" · ") },
    h("span", { class: `pill tone-${t}`, "data-testid": `${testid}-state`, "data-tone": t }, h("span", { class: "dot", "aria-hidden": "true" }), text),
    h("span", { class: "run-started" }, h("span", { class: "visually-hidden" }, "last started "), timeEl(run.started_at, { stacked: true, testid: `${testid}-started` })),
  );
}

// Every error a connection has now, each with its reason: what the row's "+" and the
// connection page's notes show. A run's error that is the current status's is shown once.
function connectionErrors(s) {
  const runs = RUN_PARTS.filter(([part]) => s[part].state === "error").map(([part, label]) => [
    partId(part),
    `${label} error`,
    s[part].error || "No reason given",
    s[part].error === s.status_error ? s.status_failure_class : null,
  ]);
  const statusShown = runs.some(([, , text]) => text === s.status_error);
  return [
    s.credentials === "Error" ? ["credentials", "Credentials error", s.credentials_error || "Invalid credentials"] : null,
    s.status.is_error && !statusShown ? ["status", s.status.name, s.status_error || "No reason given", s.status_failure_class] : null,
    s.account_status === "Error" ? ["accounts", "Accounts error", s.accounts_error || "Accounts could not be listed"] : null,
    ...runs,
  ].filter(Boolean);
}

function errorBox([key, label, text, failureClass = null], extra = null) {
  const cls = failureClass ? h("span", { class: "failure-class", "data-testid": `${key}-error-class`, title: "The kind of failure its producer reported" }, failureClass.replaceAll("_", " ")) : null;
  return h("div", { class: "error-box", role: "note", "data-testid": `${key}-error` }, svg(ICONS.warn, 16), h("span", {}, h("strong", {}, `${label}: `), text, cls, extra));
}

function extractBlocker(summary) {
  if (summary.can_extract) return null;
  if (summary.credentials !== "Active") {
    return "Credentials are not valid: re-connect the data source first";
  }
  if (summary.active_accounts === 0) return "No account is connected: sync accounts first";
  return "Extraction is not available for this connection now";
}

const COMMAND_TEXT = {
  sync: (s) => `Sync and Refresh requested for ${s.data_source_name}.`,
  "sync-accounts": (s) => `Accounts sync requested for ${s.data_source_name}.`,
  reconnect: (s) => `Re-connect requested for ${s.data_source_name}.`,
  delete: (s) => `${s.data_source_name} (${s.business_account || s.connection_id}) was deleted.`,
  "sync-frequency": (s, p) => `${s.data_source_name} will sync ${frequencyText(p.minutes).toLowerCase()}.`,
};

/** Issue one write; shows the outcome. Returns the recorded command, or null if refused. */
async function command(summary, action, button = null, body = undefined, { force = false } = {}) {
  const path =
    action === "delete"
      ? connectionPath(summary.connection_id)
      : `${connectionPath(summary.connection_id)}/${action}${force ? "?force=true" : ""}`;
  const method = action === "delete" ? "DELETE" : action === "sync-frequency" ? "PUT" : "POST";
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    const issued = await api(path, { method, body });
    flash("success", COMMAND_TEXT[action](summary, body || {}), { extra: action === "delete" ? historyLink(summary) : null });
    return issued;
  } catch (error) {
    if (!(error instanceof ApiError)) {
      flash("error", `The API could not be reached (${error.message}).`);
    } else if (error.status === 401) {
      flash("error", `${error.detail} — enter the API token (top right) to act on connections.`);
      tokenInput.focus();
    } else if (error.status === 403) {
      flash("error", `${error.detail} — check the API token (top right).`);
    } else if (error.status === 409) {
      flash("refused", error.detail, { extra: action === "sync" && syncRunning(summary) ? forceButton(summary) : null });
    } else if (error.status === 404) {
      flash("error", `${error.detail}: it was deleted or never existed.`);
    } else {
      flash("error", `${error.detail} (HTTP ${error.status})`);
    }
    return null;
  } finally {
    if (button && button.isConnected) {
      button.removeAttribute("aria-busy");
      button.disabled = button.dataset.blocked === "true";
    }
    router.poke();
  }
}

// A sync refused because one runs may be forced: the person sees what runs and decides.
function syncRunning(summary) {
  return RUN_PARTS.some(([part]) => summary[part].state === "in_progress");
}

function forceButton(summary) {
  return h(
    "button",
    {
      type: "button",
      class: "btn btn-small",
      "data-testid": "sync-force",
      onclick: (e) => command(summary, "sync", e.currentTarget, undefined, { force: true }),
    },
    "Sync anyway",
  );
}

// A deleted connection's history is kept for audit: the page stays reachable, read-only.
function historyLink(summary) {
  return h("a", { href: `#${connectionPath(summary.connection_id)}?tab=history`, "data-testid": "deleted-history-link" }, "Its history stays available.");
}

// ---------------------------------------------------------------------------------------------
// Delete confirmation (an in-page <dialog>)

const dialog = document.getElementById("confirm");

function confirmDelete(summary) {
  const body = document.getElementById("confirm-body");
  body.replaceChildren(
    h(
      "p",
      {},
      "Delete the ",
      h("strong", {}, summary.data_source_name),
      " connection",
      summary.business_account ? [" of ", h("strong", {}, summary.business_account)] : "",
      "?",
    ),
    h(
      "p",
      { "data-testid": "confirm-warning" },
      "Deleting this connection stops data extraction for it immediately. ",
      "Our reference to the connection is removed; the data in your source is not affected.",
    ),
    h("p", { class: "warning" }, svg(ICONS.warn, 16), " This cannot be undone."),
  );
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), {
      once: true,
    });
    dialog.showModal();
  });
}

async function deleteConnection(summary, button) {
  if (!(await confirmDelete(summary))) return false;
  return (await command(summary, "delete", button)) !== null;
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

function actionButton(label, { testid, onclick, blocked = null, icon = null, kind = "", title = null }) {
  const reasonId = blocked ? `why-${Math.random().toString(36).slice(2)}` : null;
  const button = h(
    "button",
    {
      type: "button",
      class: `btn ${kind}`,
      "data-testid": testid,
      "data-blocked": blocked ? "true" : "false",
      disabled: Boolean(blocked),
      title: blocked || title,
      "aria-describedby": reasonId,
      onclick,
    },
    icon ? svg(icon, 16) : null,
    label,
  );
  if (!blocked) return button;
  // A disabled button gets no hover events in some browsers: the wrapper carries the tooltip.
  return h(
    "span",
    { class: "blocked", title: blocked, "data-testid": `${testid}-wrapper` },
    button,
    h("span", { id: reasonId, class: "visually-hidden" }, blocked),
  );
}

/** The data source's initial, drawn by CSS so it is not part of the link's text. */
function sourceIcon(name, size = "") {
  return h("span", { class: `source-icon ${size}`, "aria-hidden": "true", "data-letter": name.slice(0, 1).toUpperCase() });
}

// ---------------------------------------------------------------------------------------------
// Connected sources list

const listState = {
  workspace: "",
  search: "",
  sort: "created",
  order: "desc",
  page: 1,
  size: 20,
  expanded: new Set(),
};

function listHash() {
  const p = new URLSearchParams();
  if (listState.workspace) p.set("ws", listState.workspace);
  if (listState.search) p.set("q", listState.search);
  if (listState.sort !== "created") p.set("sort", listState.sort);
  if (listState.order !== "desc") p.set("order", listState.order);
  if (listState.page !== 1) p.set("page", String(listState.page));
  if (listState.size !== 20) p.set("size", String(listState.size));
  const q = p.toString();
  return q ? `#/?${q}` : "#/";
}

function readListParams(params) {
  listState.workspace = params.get("ws") || "";
  listState.search = params.get("q") || "";
  const sort = params.get("sort");
  listState.sort = sort in SORTABLE ? sort : "created";
  listState.order = params.get("order") === "asc" ? "asc" : "desc";
  listState.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const size = parseInt(params.get("size") || "20", 10);
  listState.size = size > 0 && size <= 500 ? size : 20;
}

class ListView {
  constructor(params) {
    if ([...params.keys()].length || !this.constructor.visited) readListParams(params);
    this.constructor.visited = true;
    this.key = null;
    this.debounce = null;
    document.title = "Connected sources · syncstatus";
  }

  mount(main) {
    this.search = h("input", {
      id: "search",
      type: "search",
      placeholder: "Search by data source",
      value: listState.search,
      "data-testid": "search-input",
      autocomplete: "off",
      oninput: () => {
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => {
          if (router.view !== this) return;
          listState.search = this.search.value.trim();
          listState.page = 1;
          this.stateChanged();
        }, 250);
      },
    });
    this.live = liveIndicator();
    this.workspace = h("select", {
      id: "workspace",
      "data-testid": "workspace-select",
      onchange: () => {
        listState.workspace = this.workspace.value;
        listState.page = 1;
        this.stateChanged();
      },
    });
    this.count = h("span", { class: "count muted", "data-testid": "total-count" });
    this.head = h("thead");
    this.body = h("tbody", { "data-testid": "connections-body" });
    this.pager = h("nav", { class: "pager", "aria-label": "Pages", "data-testid": "pagination" });
    this.table = h(
      "table",
      { class: "table connections", "data-testid": "connections-table", "aria-describedby": "list-caption" },
      h("caption", { class: "visually-hidden" }, "Connected sources"),
      this.head,
      this.body,
    );
    swap(
      main,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "Connected sources"), h("p", { id: "list-caption", class: "muted" }, "Every connection to a data source, its credentials, accounts and where its sync stands.")),
        this.live,
      ),
      h(
        "div",
        { class: "card" },
        h(
          "div",
          { class: "toolbar" },
          h(
            "div",
            { class: "search" },
            h("label", { for: "search", class: "visually-hidden" }, "Search by data source name"),
            svg(ICONS.search, 18),
            this.search,
          ),
          h("label", { class: "workspace-picker" }, h("span", {}, "Workspace"), this.workspace),
          this.count,
        ),
        h("div", { class: "table-wrap" }, this.table),
        this.pager,
      ),
    );
    this.renderHead();
  }

  /** The workspace picker: every workspace the token may see, or its one when it is scoped. */
  renderWorkspaces({ workspaces, scope }) {
    const key = JSON.stringify([workspaces, scope, listState.workspace]);
    if (key === this.workspacesKey) return;
    this.workspacesKey = key;
    const options = workspaces.map((w) => h("option", { value: w.workspace_id, selected: w.workspace_id === listState.workspace }, `${w.workspace_id} (${w.connections})`));
    swap(this.workspace, scope ? [] : h("option", { value: "", selected: !listState.workspace }, "All workspaces"), options);
    this.workspace.disabled = scope !== null;
    this.workspace.title = scope ? "Your token sees this workspace alone" : "";
  }

  stateChanged() {
    history.replaceState(null, "", listHash());
    this.renderHead();
    router.poke();
  }

  renderHead() {
    const th = (label, attrs = {}) => h("th", { scope: "col", ...attrs }, label);
    const sortable = (key) => {
      const active = listState.sort === key;
      const dir = active ? (listState.order === "asc" ? "ascending" : "descending") : "none";
      return h(
        "th",
        { scope: "col", "aria-sort": dir, "data-testid": `col-${key}` },
        h(
          "button",
          {
            type: "button",
            class: `sort ${active ? "active" : ""}`,
            "data-testid": `sort-${key}`,
            "data-focus-key": `sort-${key}`,
            "data-direction": active ? listState.order : "",
            title: `Sort by ${SORTABLE[key].toLowerCase()}`,
            onclick: () => {
              if (listState.sort === key) listState.order = listState.order === "asc" ? "desc" : "asc";
              else [listState.sort, listState.order] = [key, "asc"];
              listState.page = 1;
              this.stateChanged();
            },
          },
          SORTABLE[key],
          h("span", { class: "sort-icon", "aria-hidden": "true" }, active ? (listState.order === "asc" ? "▲" : "▼") : "↕"),
        ),
      );
    };
    swap(
      this.head,
      h(
        "tr",
        {},
        sortable("data_source"),
        sortable("business_account"),
        th("Status", { title: "Validity of the business account credentials", "data-testid": "col-status" }),
        sortable("account_status"),
        sortable("business_account_id"),
        sortable("created"),
        sortable("last_authorization"),
        th("Sync status", { title: "Where the connection's current session stands", "data-testid": "col-sync-status" }),
        sortable("source_sync"),
        sortable("data_refresh"),
        th(h("span", { class: "visually-hidden" }, "Actions"), { class: "actions-col", "data-testid": "col-actions" }),
      ),
    );
  }

  async refresh(isCurrent) {
    const p = new URLSearchParams({
      sort: listState.sort,
      order: listState.order,
      page: String(listState.page),
      page_size: String(listState.size),
    });
    if (listState.search) p.set("search", listState.search);
    if (listState.workspace) p.set("workspace", listState.workspace);
    let data;
    let workspaces;
    try {
      [data, workspaces] = await Promise.all([api(`/connections?${p}`), api("/workspaces")]);
    } catch (error) {
      if (isCurrent()) setLive(this.live, false);
      if (needsToken(error)) askForToken(error);
      else if (error instanceof ApiError && error.status < 500) flash("error", error.detail);
      return;
    }
    if (!isCurrent()) return;
    setLive(this.live, true);
    tokenAnswered();
    this.renderWorkspaces(workspaces);
    const pages = Math.max(1, Math.ceil(data.total / listState.size));
    if (listState.page > pages && data.total > 0) {
      listState.page = pages;
      this.stateChanged();
      return;
    }
    const key = JSON.stringify([data, [...listState.expanded].sort(), listState.search]);
    if (key === this.key) return;
    this.key = key;
    this.render(data, pages);
  }

  render(data, pages) {
    const rows = data.items.flatMap((s) => this.row(s));
    if (!rows.length) {
      rows.push(
        h(
          "tr",
          {},
          h(
            "td",
            { colspan: LIST_COLUMNS },
            listState.search
              ? emptyState(`No connection matches “${listState.search}”.`, "The search looks at the data source name.")
              : emptyState("No connections yet.", "Connections appear here as soon as their authorization starts."),
          ),
        ),
      );
    }
    swap(this.body, rows);
    const first = data.total ? (data.page - 1) * data.page_size + 1 : 0;
    const last = Math.min(data.total, data.page * data.page_size);
    this.count.textContent = `${data.total} connection${data.total === 1 ? "" : "s"}`;
    const go = (page) => () => {
      listState.page = page;
      this.stateChanged();
    };
    swap(
      this.pager,
      h("span", { class: "muted", "data-testid": "page-range" }, data.total ? `${first}–${last} of ${data.total}` : "0 of 0"),
      h(
        "label",
        { class: "page-size" },
        "Rows per page ",
        h(
          "select",
          {
            "data-testid": "page-size",
            "data-focus-key": "page-size",
            onchange: (e) => {
              listState.size = parseInt(e.target.value, 10);
              listState.page = 1;
              this.stateChanged();
            },
          },
          PAGE_SIZES.concat(PAGE_SIZES.includes(listState.size) ? [] : [listState.size])
            .sort((a, b) => a - b)
            .map((n) => h("option", { value: n, selected: n === listState.size }, n)),
        ),
      ),
      h(
        "div",
        { class: "pager-buttons" },
        h("button", { type: "button", class: "btn btn-small", "data-testid": "page-prev", "data-focus-key": "page-prev", disabled: data.page <= 1, onclick: go(data.page - 1), "aria-label": "Previous page" }, "‹ Prev"),
        h("span", { "data-testid": "page-info", "aria-current": "page" }, `Page ${data.page} of ${pages}`),
        h("button", { type: "button", class: "btn btn-small", "data-testid": "page-next", "data-focus-key": "page-next", disabled: data.page >= pages, onclick: go(data.page + 1), "aria-label": "Next page" }, "Next ›"),
      ),
    );
  }

  row(s) {
    const id = s.connection_id;
    const expanded = listState.expanded.has(id);
    const errorId = `errors-${id.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
    const link = `#/connections/${encodeURIComponent(id)}`;
    const blocked = extractBlocker(s);
    const errors = connectionErrors(s);
    const toggle = errors.length
      ? h(
          "button",
          {
            type: "button",
            class: "expander",
            "aria-expanded": String(expanded),
            "aria-controls": errorId,
            "aria-label": expanded ? "Hide the errors" : "Show the errors",
            title: errors.map(([, label]) => label).join(", "),
            "data-testid": "errors-toggle",
            "data-focus-key": `toggle-${id}`,
            onclick: () => {
              if (listState.expanded.has(id)) listState.expanded.delete(id);
              else listState.expanded.add(id);
              this.key = null;
              router.poke();
            },
          },
          expanded ? "−" : "+",
        )
      : null;
    const tr = h(
      "tr",
      { "data-testid": "connection-row", "data-connection-id": id, class: s.status.is_error ? "row-error" : "" },
      h(
        "td",
        { "data-testid": "cell-data-source" },
        h("a", { href: link, class: "source", "data-focus-key": `open-${id}` }, sourceIcon(s.data_source_name), h("span", { class: "source-name" }, h("span", { "data-testid": "source-name" }, s.data_source_name), h("code", { class: "source-id", "data-testid": "source-id" }, s.data_source))),
      ),
      h("td", { "data-testid": "cell-business-account" }, s.business_account || dash()),
      h("td", { "data-testid": "cell-credentials" }, h("div", { class: "cred" }, credentialsBadge(s, "credentials"))),
      h("td", { "data-testid": "cell-account-status" }, h("span", { class: s.account_status === "Error" ? "text-error" : "" }, s.account_status)),
      h("td", { "data-testid": "cell-business-account-id" }, s.business_account_id ? h("code", { class: "clip", title: s.business_account_id }, s.business_account_id) : dash()),
      h("td", { "data-testid": "cell-created" }, timeEl(s.created, { stacked: true })),
      h("td", { "data-testid": "cell-last-authorization" }, timeEl(s.last_authorization, { stacked: true })),
      h("td", { "data-testid": "cell-sync-status" }, h("div", { class: "with-toggle" }, statusPill(s.status, { testid: "sync-status" }), toggle)),
      RUN_PARTS.map(([part, label]) => h("td", { "data-testid": `cell-${partId(part)}` }, runStatus(s[part], label, partId(part)))),
      h(
        "td",
        { "data-testid": "cell-actions" },
        h(
          "div",
          { class: "actions" },
        actionButton("Extract", {
          testid: "action-extract",
          kind: "btn-primary btn-small",
          blocked,
          title: "Sync and Refresh: extract the data now",
          onclick: (e) => command(s, "sync", e.currentTarget),
        }),
        h("button", {
          type: "button",
          class: `btn btn-small ${s.credentials === "Error" ? "btn-danger-outline" : ""}`,
          "data-testid": "action-reconnect",
          "data-focus-key": `reconnect-${id}`,
          title: "Re-connect: authorize the data source again",
          onclick: (e) => command(s, "reconnect", e.currentTarget),
        }, "Re-connect"),
        h(
          "button",
          {
            type: "button",
            class: "icon-btn trash",
            "data-testid": "action-delete",
            "data-focus-key": `delete-${id}`,
            "aria-label": `Delete the ${s.data_source_name} connection`,
            title: "Delete connection",
            onclick: (e) => deleteConnection(s, e.currentTarget),
          },
          svg(ICONS.trash, 18),
        ),
        ),
      ),
    );
    if (!errors.length) return [tr];
    const detail = h(
      "tr",
      { class: "error-detail", id: errorId, hidden: !expanded, "data-testid": "errors-row", "data-connection-id": id },
      h("td", { colspan: LIST_COLUMNS }, errors.map((error) => errorBox(error)), h("a", { href: link, class: "error-link" }, "Open connection")),
    );
    return [tr, detail];
  }
}

// ---------------------------------------------------------------------------------------------
// A connection's page

const TABS = [
  ["accounts", "Accounts"],
  ["why", "Why this status"],
  ["history", "History"],
  ["refused", "Refused"],
  ["credentials", "Credentials"],
  ["settings", "Settings"],
];

class ConnectionView {
  constructor(id, params) {
    this.id = id;
    const tab = params.get("tab");
    this.tab = TABS.some(([t]) => t === tab) ? tab : "accounts";
    this.detail = null;
    this.history = null;
    this.sessions = null;
    this.explanation = null;
    this.refused = new RefusedPanel(id, () => this.renderPanel());
    this.keys = {};
  }

  mount(main) {
    this.live = liveIndicator();
    this.header = h("section", { class: "card conn-head", "data-testid": "connection-header", "aria-labelledby": "conn-title" }, h("p", { class: "muted" }, "Loading…"));
    this.tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Connection details" });
    this.panel = h("section", { class: "card panel", role: "tabpanel", id: "panel", tabindex: "0", "data-testid": "tab-panel" });
    this.root = h(
      "div",
      { "data-testid": "connection-page", "data-connection-id": this.id },
      h(
        "div",
        { class: "page-head" },
        h("nav", { "aria-label": "Breadcrumb", class: "crumbs" }, h("a", { href: listHash(), "data-testid": "back-link" }, svg(ICONS.back, 16), "Connected sources")),
        this.live,
      ),
      this.header,
      this.tabs,
      this.panel,
    );
    swap(main, this.root);
    this.renderTabs();
  }

  setTab(tab, focus = false) {
    this.tab = tab;
    const p = new URLSearchParams();
    if (tab !== "accounts") p.set("tab", tab);
    const q = p.toString();
    history.replaceState(null, "", `#/connections/${encodeURIComponent(this.id)}${q ? `?${q}` : ""}`);
    this.renderTabs();
    this.keys.panel = null;
    this.renderPanel();
    if (tab === "why" || tab === "refused") router.poke();
    if (focus) this.tabs.querySelector(`[data-tab="${tab}"]`).focus();
  }

  renderTabs() {
    const count = this.detail ? { accounts: this.detail.accounts.length, credentials: this.detail.credentials.length } : {};
    const buttons = TABS.map(([tab, label], i) =>
      h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${tab}`,
          class: "tab",
          "data-tab": tab,
          "data-testid": `tab-${tab}`,
          "data-focus-key": `tab-${tab}`,
          "aria-selected": String(tab === this.tab),
          "aria-controls": "panel",
          tabindex: tab === this.tab ? "0" : "-1",
          onclick: () => this.setTab(tab),
          onkeydown: (e) => {
            const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
            if (step) this.setTab(TABS[(i + step + TABS.length) % TABS.length][0], true);
            if (e.key === "Home") this.setTab(TABS[0][0], true);
            if (e.key === "End") this.setTab(TABS[TABS.length - 1][0], true);
          },
        },
        label,
        count[tab] !== undefined ? h("span", { class: "tab-count" }, count[tab]) : null,
      ),
    );
    swap(this.tabs, buttons);
    this.panel.setAttribute("aria-labelledby", `tab-${this.tab}`);
  }

  async refresh(isCurrent) {
    const base = connectionPath(this.id);
    let detail;
    let history;
    let sessions;
    try {
      [detail, history, sessions, this.explanation] = await Promise.all([
        api(base),
        api(`${base}/history`),
        api(`${base}/sessions`),
        this.tab === "why" ? api(`${base}/explain`) : null,
        this.tab === "refused" ? this.refused.load() : null,
      ]);
    } catch (error) {
      if (!isCurrent()) return;
      if (error instanceof ApiError && error.status === 404) {
        setLive(this.live, true);
        await this.gone(error.detail, isCurrent);
      } else {
        setLive(this.live, false);
        if (needsToken(error)) askForToken(error);
      }
      return;
    }
    if (!isCurrent()) return;
    setLive(this.live, true);
    tokenAnswered();
    this.detail = detail;
    this.history = history.entries;
    this.sessions = sessions.sessions;
    const headKey = JSON.stringify(detail.summary);
    if (headKey !== this.keys.head) {
      this.keys.head = headKey;
      this.renderHeader();
    }
    const tabKey = JSON.stringify([detail.accounts.length, detail.credentials.length, this.tab]);
    if (tabKey !== this.keys.tabs) {
      this.keys.tabs = tabKey;
      this.renderTabs();
    }
    this.renderPanel();
  }

  /** Not in the list (deleted, or never seen): its history, kept for audit, is shown read-only. */
  async gone(detail, isCurrent) {
    let kept = null;
    try {
      const base = connectionPath(this.id);
      const [history, sessions] = await Promise.all([api(`${base}/history`), api(`${base}/sessions`)]);
      kept = [history.entries, sessions.sessions];
    } catch {
      /* no history either: never seen, or pruned */
    }
    if (!isCurrent()) return;
    const key = JSON.stringify(kept);
    if (this.keys.gone === key) return;
    this.keys = { gone: key };
    document.title = `${kept ? "Deleted connection" : "Connection not found"} · syncstatus`;
    swap(
      this.header,
      h(
        "div",
        { class: "empty", "data-testid": "connection-gone", "data-history-kept": String(kept !== null) },
        h("h1", { "data-testid": "connection-title" }, kept ? "Deleted connection" : "Connection not found"),
        h("p", { class: "muted" }, kept ? ["The connection ", h("code", {}, this.id), " is no longer connected. Its history is kept for audit and shown read-only below."] : `${detail}. It may have been deleted, and its history pruned.`),
        h("p", {}, h("a", { href: listHash() }, "Back to connected sources")),
      ),
    );
    this.tabs.hidden = true;
    this.panel.hidden = kept === null;
    if (kept) {
      [this.history, this.sessions] = kept;
      swap(this.panel, this.historyTab());
    }
  }

  renderHeader() {
    const s = this.detail.summary;
    document.title = `${s.data_source_name} · syncstatus`;
    this.tabs.hidden = false;
    this.panel.hidden = false;
    const blocked = extractBlocker(s);
    const fact = (label, value, testid) => h("div", { class: "fact" }, h("dt", {}, label), h("dd", { "data-testid": testid }, value));
    swap(
      this.header,
      h(
        "div",
        { class: "conn-top" },
        h(
          "div",
          { class: "conn-title" },
          sourceIcon(s.data_source_name, "big"),
          h(
            "div",
            {},
            h("div", { class: "title-line" }, h("h1", { id: "conn-title", "data-testid": "connection-title" }, s.data_source_name), statusPill(s.status, { testid: "connection-status" })),
            h("p", { class: "muted", "data-testid": "connection-business-account" }, s.business_account || "No business account yet", " · ", h("code", { "data-testid": "connection-source-id" }, s.data_source), " · ", h("code", { "data-testid": "connection-id" }, s.connection_id)),
          ),
        ),
        h(
          "div",
          { class: "conn-actions" },
          actionButton("Sync and Refresh", {
            testid: "sync-refresh",
            kind: "btn-primary",
            icon: ICONS.sync,
            blocked,
            title: "Start a data sync and refresh now",
            onclick: (e) => command(s, "sync", e.currentTarget),
          }),
          h("button", { type: "button", class: `btn ${s.credentials === "Error" ? "btn-danger" : ""}`, "data-testid": "reconnect", "data-focus-key": "reconnect", title: "Authorize the data source again (always available)", onclick: (e) => command(s, "reconnect", e.currentTarget) }, svg(ICONS.plug, 16), "Re-connect"),
          h(
            "button",
            {
              type: "button",
              class: "btn btn-danger-outline",
              "data-testid": "delete",
              "data-focus-key": "delete",
              onclick: async (e) => {
                if (await deleteConnection(s, e.currentTarget)) location.hash = listHash();
              },
            },
            svg(ICONS.trash, 16),
            "Delete",
          ),
        ),
      ),
      connectionErrors(s).map((error) => errorBox(error, error[0] === "credentials" ? " — use Re-connect to authorize again." : null)),
      h(
        "dl",
        { class: "facts" },
        fact("Workspace", h("code", {}, s.workspace_id), "connection-workspace"),
        fact("Credentials", credentialsBadge(s, "connection-credentials"), "connection-credentials-cell"),
        fact("Active accounts", String(s.active_accounts), "connection-accounts-count"),
        fact("Account status", s.account_status, "connection-account-status"),
        fact("Business account ID", s.business_account_id ? h("code", {}, s.business_account_id) : dash(), "connection-business-account-id"),
        fact("Created", timeEl(s.created, { stacked: true }), "connection-created"),
        fact("Last authorization", timeEl(s.last_authorization, { stacked: true }), "connection-last-authorization"),
        fact("Last sync", timeEl(s.last_sync, { stacked: true }), "connection-last-sync"),
        RUN_PARTS.map(([part, label]) => fact(label, runStatus(s[part], label, `connection-${partId(part)}`), `connection-${partId(part)}-cell`)),
        fact("Sync frequency", frequencyText(s.sync_frequency_minutes), "connection-sync-frequency"),
      ),
      h(
        "p",
        { class: `extract ${s.can_extract ? "ok" : "blocked"}`, "data-testid": "connection-can-extract", "data-can-extract": String(s.can_extract) },
        svg(s.can_extract ? ICONS.check : ICONS.warn, 16),
        s.can_extract ? "Ready for data extraction" : `Extraction unavailable: ${blocked.charAt(0).toLowerCase()}${blocked.slice(1)}`,
      ),
    );
  }

  renderPanel() {
    if (!this.detail) return;
    const data = {
      accounts: () => [this.detail.accounts, this.detail.summary.credentials],
      history: () => [this.history, this.sessions],
      credentials: () => [this.detail.credentials, this.detail.summary.business_account, this.detail.summary.business_account_id],
      settings: () => [this.detail.summary.sync_frequency_minutes, this.detail.summary.last_sync],
      why: () => [this.explanation],
      refused: () => [this.refused.items, this.refused.table.state()],
    }[this.tab]();
    const key = JSON.stringify([this.tab, data]);
    if (key === this.keys.panel) return;
    // Do not redraw a form under the person's hands.
    if (this.tab === "settings" && this.panel.contains(document.activeElement) && this.keys.panel) return;
    this.keys.panel = key;
    const render = { accounts: this.accountsTab, why: this.whyTab, history: this.historyTab, refused: () => this.refused.element(), credentials: this.credentialsTab, settings: this.settingsTab }[this.tab];
    swap(this.panel, render.call(this));
  }

  accountsTab() {
    const s = this.detail.summary;
    const blocked = s.credentials === "Active" ? null : "Credentials are not valid: re-connect the data source first";
    const rows = this.detail.accounts.map((a) =>
      h(
        "tr",
        { "data-testid": "account-row", "data-account-id": a.account_id },
        h("td", {}, h("span", { class: `badge ${/^(active|ok|enabled)$/i.test(a.status) ? "badge-ok" : "badge-error"}` }, a.status.charAt(0).toUpperCase() + a.status.slice(1))),
        h("td", { "data-testid": "account-name" }, a.name),
        h("td", {}, h("code", {}, a.account_id)),
        h("td", {}, timeEl(a.created)),
        h("td", {}, timeEl(a.updated)),
      ),
    );
    return [
      h(
        "div",
        { class: "panel-head" },
        h("div", {}, h("h2", {}, "Accounts"), h("p", { class: "muted" }, "The list of accounts is updated daily; sync it now to pick up new or removed accounts.")),
        actionButton("Sync accounts", { testid: "sync-accounts", icon: ICONS.sync, blocked, onclick: (e) => command(s, "sync-accounts", e.currentTarget) }),
      ),
      rows.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "table", "data-testid": "accounts-table" },
              h("thead", {}, h("tr", {}, ["Status", "Account", "ID", "Created", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
              h("tbody", {}, rows),
            ),
          )
        : emptyState(s.account_status === "Loading accounts" ? "Accounts are loading: authorization is not complete yet." : "No account is connected.", "Sync accounts to list the accounts of this business account."),
    ];
  }

  whyTab() {
    const e = this.explanation;
    if (!e) return h("p", { class: "muted" }, "Loading…");
    const part = (testid, title, items, none) =>
      h("section", { "data-testid": testid }, h("h3", {}, title), items.length ? h("ul", {}, items) : h("p", { class: "muted", "data-testid": `${testid}-none` }, none));
    const item = (testid, ...children) => h("li", { "data-testid": testid }, ...children);
    const inTime = (seconds) => (seconds <= 0 ? "due now: the next sweep applies it" : `in ${duration(seconds)}`);
    return [
      h(
        "div",
        { class: "panel-head" },
        h("div", {}, h("h2", {}, "Why this status"), h("p", { class: "muted" }, "What can move this connection now, read from the state machine, its timeouts and what was stored for it.")),
      ),
      h(
        "div",
        { class: "explain", "data-testid": "explain" },
        h("p", { "data-testid": "explain-status" }, statusPill(e.status), " since ", timeEl(e.since, { seconds: true })),
        part(
          "explain-waiting",
          "Waiting for",
          e.waiting_for.map((w) =>
            item("explain-waiting-item", h("strong", {}, humanize(w.event_type)), " → ", statusPill(w.target, { withStage: false }), " on ", h("code", {}, w.topic), w.last_producer ? [" · last sent by ", h("code", {}, w.last_producer)] : " · no producer has sent these yet"),
          ),
          "No event can move it: the status is final.",
        ),
        e.blocked.length ? part("explain-blocked", "Not possible now", e.blocked.map((b) => item("explain-blocked-item", humanize(b.event_type), " → ", b.target.name, `: ${b.guard}`, b.for_good ? " (never for this data source)" : "")), "") : null,
        e.substages_left.length ? part("explain-substages", "Processing substages left", e.substages_left.map((name) => item("explain-substage", humanize(name))), "") : null,
        part("explain-deadline", "When the clock moves it", e.deadline ? [item("explain-deadline-item", humanize(e.deadline.event_type), " at ", timeEl(e.deadline.at, { seconds: true }), `, ${inTime(e.deadline.remaining_s)}`)] : [], "No timeout applies: only an event moves it."),
        part("explain-parked", "Parked events", e.parked.map((x) => item("explain-parked-item", humanize(x.event_type), " of session ", h("code", {}, x.session_id), `, parked ${duration(x.age_s)} ago, refused in ${duration(Math.max(0, x.window_left_s))} unless its turn comes`)), "Nothing is parked."),
        part("explain-refusals", "Last refusals", e.refusals.map((r) => item("explain-refusal", h("strong", {}, r.reason), r.event_type ? ` (${humanize(r.event_type)})` : "", `: ${r.detail} · `, timeEl(r.refused_at, { seconds: true }))), "No event of this connection was refused."),
        part("explain-extraction", "Data extraction", [item("explain-extraction-item", e.can_extract ? "Possible now." : "Not possible: ", e.why_not.join("; "))], ""),
      ),
    ];
  }

  historyTab() {
    const groups = new Map();
    for (const entry of this.history) {
      if (!groups.has(entry.session_id)) groups.set(entry.session_id, []);
      groups.get(entry.session_id).push(entry);
    }
    const sessions = new Map(this.sessions.map((s) => [s.session_id, s]));
    const order = [...groups.keys()].sort((a, b) => {
      const last = (id) => groups.get(id).at(-1).recorded_at;
      return last(b).localeCompare(last(a));
    });
    if (!order.length) return emptyState("No history yet.");
    return [
      h("div", { class: "panel-head" }, h("div", {}, h("h2", {}, "History"), h("p", { class: "muted" }, "Each sync session, newest first, with every status change and activity in the order it was recorded. Times are UTC."))),
      h("div", { class: "sessions", "data-testid": "history" }, order.map((id) => this.sessionGroup(id, sessions.get(id), groups.get(id)))),
    ];
  }

  sessionGroup(id, session, entries) {
    const head = session
      ? h(
          "header",
          { class: "session-head" },
          h("h3", {}, "Session ", h("code", {}, id)),
          statusPill(session.final_status, { testid: "session-status" }),
          h(
            "dl",
            { class: "session-facts" },
            h("div", {}, h("dt", {}, "Started"), h("dd", {}, timeEl(session.started_at, { seconds: true }))),
            h("div", {}, h("dt", {}, "Ended"), h("dd", {}, session.ended_at ? timeEl(session.ended_at, { seconds: true }) : h("span", { class: "muted" }, "still running"))),
            h("div", {}, h("dt", {}, "Duration"), h("dd", { "data-testid": "session-duration" }, duration(session.duration_s))),
            h("div", {}, h("dt", {}, "Errors"), h("dd", { class: session.errors ? "text-error" : "" }, String(session.errors))),
          ),
        )
      : h("header", { class: "session-head" }, h("h3", {}, "Session ", h("code", {}, id)), h("span", { class: "muted" }, "activity only"));
    return h(
      "section",
      { class: "session", "data-testid": "session-group", "data-session-id": id },
      head,
      h("ol", { class: "timeline" }, entries.map((e, i) => this.entry(e, i === 0 || day(e.occurred_at) !== day(entries[i - 1].occurred_at)))),
    );
  }

  entry(e, withDay) {
    const when = h("div", { class: "tl-time" }, timeEl(e.occurred_at, { seconds: true, withDay }));
    if (e.kind === "activity") {
      return h(
        "li",
        { class: `tl-item tl-activity ${e.error ? "tone-error" : ""}`, "data-testid": "history-entry", "data-kind": "activity", "data-event-type": e.event_type },
        h("span", { class: "tl-marker", "aria-hidden": "true" }),
        when,
        h(
          "div",
          { class: "tl-body" },
          h("div", { class: "tl-line" }, h("span", { class: "activity-label" }, "Activity"), h("strong", {}, humanize(e.event_type))),
          e.detail ? h("div", { class: "muted" }, e.detail) : null,
          e.error ? h("div", { class: "text-error", "data-testid": "history-error" }, e.error) : null,
        ),
      );
    }
    const t = tone(e.to_status);
    return h(
      "li",
      { class: `tl-item tone-${t}`, "data-testid": "history-entry", "data-kind": "status_change", "data-to": e.to_status.name, "data-sequence": e.sequence },
      h("span", { class: "tl-marker", "aria-hidden": "true" }),
      when,
      h(
        "div",
        { class: "tl-body" },
        h(
          "div",
          { class: "tl-line" },
          e.from_status ? statusPill(e.from_status, { withStage: false }) : h("span", { class: "muted" }, "new connection"),
          h("span", { class: "arrow", "aria-label": "to" }, "→"),
          statusPill(e.to_status, { testid: "history-to" }),
        ),
        h(
          "div",
          { class: "tl-meta muted" },
          humanize(e.event_type),
          e.detail ? ` · ${e.detail.toLowerCase().replaceAll("_", " ")}` : "",
          ` · #${e.sequence}`,
          h("span", { title: `recorded ${e.recorded_at}` }, ""),
        ),
        e.error ? h("div", { class: "text-error", "data-testid": "history-error" }, e.error) : null,
      ),
    );
  }

  credentialsTab() {
    const s = this.detail.summary;
    const rows = this.detail.credentials.map((c) =>
      h(
        "tr",
        { "data-testid": "credential-row", "data-role": c.role },
        h("td", {}, h("code", {}, c.credential_id)),
        h("td", {}, h("span", { class: `badge ${c.role === "main" ? "badge-main" : "badge-none"}` }, c.role === "main" ? "Main" : "Secondary")),
        h("td", {}, timeEl(c.added)),
      ),
    );
    return [
      h(
        "div",
        { class: "panel-head" },
        h("div", {}, h("h2", {}, "Credentials"), h("p", { class: "muted" }, "What is used to pull data from this business account. New credentials become main; earlier ones stay as secondary.")),
        h("button", { type: "button", class: "btn", "data-testid": "credentials-reconnect", onclick: (e) => command(s, "reconnect", e.currentTarget) }, svg(ICONS.plug, 16), "Re-connect"),
      ),
      h(
        "dl",
        { class: "facts facts-inline" },
        h("div", { class: "fact" }, h("dt", {}, "Business account"), h("dd", {}, s.business_account || dash())),
        h("div", { class: "fact" }, h("dt", {}, "Business account ID"), h("dd", {}, s.business_account_id ? h("code", {}, s.business_account_id) : dash())),
        h("div", { class: "fact" }, h("dt", {}, "Validity"), h("dd", {}, credentialsBadge(s, null))),
      ),
      rows.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "table", "data-testid": "credentials-table" },
              h("thead", {}, h("tr", {}, ["Credential", "Role", "Added"].map((c) => h("th", { scope: "col" }, c)))),
              h("tbody", {}, rows),
            ),
          )
        : emptyState("No credentials yet.", "They appear once an authorization succeeds."),
    ];
  }

  settingsTab() {
    const s = this.detail.summary;
    const options = FREQUENCIES.concat(FREQUENCIES.some(([m]) => m === s.sync_frequency_minutes) ? [] : [[s.sync_frequency_minutes, frequencyText(s.sync_frequency_minutes)]]).sort((a, b) => a[0] - b[0]);
    const select = h(
      "select",
      { id: "frequency", "data-testid": "frequency-select" },
      options.map(([m, label]) => h("option", { value: m, selected: m === s.sync_frequency_minutes }, label)),
    );
    return [
      h("div", { class: "panel-head" }, h("div", {}, h("h2", {}, "Sync frequency"), h("p", { class: "muted" }, "How often this connection's data is extracted automatically."))),
      h(
        "form",
        {
          class: "inline-form",
          "data-testid": "frequency-form",
          onsubmit: async (e) => {
            e.preventDefault();
            const button = e.currentTarget.querySelector("button");
            if (await command(s, "sync-frequency", button, { minutes: parseInt(select.value, 10) })) {
              button.blur();
            }
          },
        },
        h("label", { for: "frequency" }, "Sync"),
        select,
        h("button", { type: "submit", class: "btn btn-primary", "data-testid": "frequency-save" }, "Save"),
      ),
      h("p", { class: "muted", "data-testid": "frequency-current" }, `Currently: ${frequencyText(s.sync_frequency_minutes).toLowerCase()}. Last sync: `, timeEl(s.last_sync), "."),
    ];
  }
}

// ---------------------------------------------------------------------------------------------
// Router and polling: one view at a time, refreshed every 2 s (never two refreshes at once).

const main = document.getElementById("main");

const router = {
  view: null,
  generation: 0,
  timer: null,
  running: false,
  again: false,

  route() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const [path, query = ""] = raw.split("?");
    const params = new URLSearchParams(query);
    const match = path.match(/^\/connections\/(.+)$/);
    const deadLetters = path === "/dead-letters";
    const webhook = path.match(/^\/webhooks\/(.+)$/);
    const webhooks = path === "/webhooks" || webhook !== null;
    this.generation += 1;
    if (match) this.view = new ConnectionView(decodeURIComponent(match[1]), params);
    else if (deadLetters) this.view = new DeadLettersView(params);
    else if (webhook) this.view = new WebhookView(decodeURIComponent(webhook[1]), params, () => this.poke());
    else if (webhooks) this.view = new WebhooksView();
    else this.view = new ListView(params);
    this.view.mount(main);
    const current = deadLetters ? "nav-dead-letters" : webhooks ? "nav-webhooks" : match ? null : "nav-connections";
    for (const nav of document.querySelectorAll("[data-nav]")) {
      if (nav.dataset.testid === current) nav.setAttribute("aria-current", "page");
      else nav.removeAttribute("aria-current");
    }
    this.poke();
  },

  streaming: false,

  /** Status changes arrive on the stream; polling then only catches what it does not carry
   * (accounts, commands), less often. */
  interval() {
    return this.streaming ? STREAMING_POLL_MS : POLL_MS;
  },

  /** Refresh now (after a change of state, a command or a status change), then again. */
  async poke() {
    clearTimeout(this.timer);
    if (document.hidden) {
      // Nobody is looking: check again later, and at once when the tab comes back.
      this.timer = setTimeout(() => this.poke(), this.interval());
      return;
    }
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    const generation = this.generation;
    try {
      await this.view.refresh(() => generation === this.generation);
    } catch (error) {
      console.error(error);
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.poke();
      } else {
        this.timer = setTimeout(() => this.poke(), this.interval());
      }
    }
  },
};

// A token typed before the first route is drawn waits for it: start() pokes then.
document.addEventListener("tokenchange", () => router.view && router.poke());

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) router.poke();
});

window.addEventListener("hashchange", () => {
  router.route();
  main.focus({ preventScroll: true });
});

async function start() {
  try {
    const statuses = await api("/statuses");
    setStatuses(statuses.statuses);
  } catch {
    /* colours fall back to what each response carries */
  }
  router.route();
  followChanges(
    () => router.poke(),
    (up) => {
      router.streaming = up;
      document.body.dataset.stream = up ? "up" : "down";
    },
  );
}

start();
