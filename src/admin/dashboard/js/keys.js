// The keys page: the account bar, search and filters, the keys table with
// its row actions, bulk selection, and paging over the cursor API.

import { api, query } from "./api.js";
import * as fmt from "./format.js";
import * as forms from "./forms.js";
import { planPicker, canWritePlans } from "./plans.js";
import { canManageWebhooks } from "./webhooks.js";
import { h, add, clear, icon, copyButton, statusBadge, permissionBadge, timeCell, menu, toast, problem, badge, confirmDialog, quotaMeter } from "./ui.js";

const PAGE = 25;

/** Renders the keys page of `account` into `root`. `app` is the shared
 * state: `{me, accounts, canWrite, go(hash), refreshAccounts()}`. */
export function keysPage(root, app, account) {
  const state = { q: "", permission: "", status: "", items: [], cursor: null, selected: new Set(), loading: false, seq: 0 };

  // ---- account bar ----
  const accountBar = h("section", { class: "account-bar", "aria-label": "Current account" });
  const switcher = app.accounts.length > 1
    ? h(
        "select",
        { id: "account-switch", "aria-label": "Account", onchange: (ev) => app.go(`#/accounts/${ev.target.value}`) },
        app.accounts.map((a) => h("option", { value: a.id, selected: a.id === account.id }, a.name)),
      )
    : null;
  accountBar.append(
    h(
      "div",
      { class: "account-id" },
      switcher ? h("label", { for: "account-switch", class: "eyebrow" }, "Account") : h("span", { class: "eyebrow" }, "Account"),
      switcher || h("strong", { class: "account-name" }, account.name),
      h("span", { class: "id-chip" }, h("code", { "data-account-id": "" }, account.id), copyButton(account.id, "Copy account ID")),
    ),
  );
  accountBar.append(
    planPicker(app, account, async () => {
      await app.refreshAccounts();
      app.go(`#/accounts/${account.id}`, true);
    }),
  );
  if (account.quota_usage) {
    // The plan's quota, pooled over all of the account's keys.
    accountBar.append(
      h("div", { class: "account-id" }, h("span", { class: "eyebrow" }, "Account quota"), quotaMeter(null, account.quota_usage, { id: "account-quota" })),
    );
  }
  const actions = h("div", { class: "account-actions" });
  if (canWritePlans(app)) {
    actions.append(h("a", { class: "btn", href: "#/plans", id: "plans-link" }, "Plans"));
  }
  if (canManageWebhooks(app)) {
    actions.append(h("a", { class: "btn", href: "#/webhooks", id: "webhooks-link" }, "Webhooks"));
  }
  if (app.canWrite && !app.me.account_id) {
    actions.append(
      h("button", { type: "button", class: "btn", onclick: async () => {
        const created = await forms.createAccount();
        if (created) {
          toast(`Account “${created.name}” created`);
          await app.refreshAccounts();
          app.go(`#/accounts/${created.id}`);
        }
      } }, "New account"),
    );
  }
  if (account.api_access && app.canWrite) {
    actions.append(
      h("button", { type: "button", class: "btn primary", id: "create-key", onclick: async () => {
        const key = await forms.createKey(account);
        if (key) reload();
      } }, icon("plus"), h("span", {}, "Create API key")),
    );
  }
  accountBar.append(actions);

  const banner = account.api_access
    ? null
    : h(
        "div",
        { class: "callout warn", role: "status", id: "api-access-banner" },
        icon("warn"),
        h("div", {}, h("strong", {}, "API access is disabled for this account"), h("p", {}, "Its keys are refused by the gateway and no new key can be created until API access is turned on.")),
        app.canWrite && !app.me.account_id
          ? h("button", { type: "button", class: "btn", onclick: async () => {
              const ok = await confirmDialog({
                title: `Turn on API access for “${account.name}”?`,
                message: "The account's active keys will be accepted by the gateway again.",
                confirm: "Turn on API access",
                onConfirm: () => api("PATCH", `/accounts/${encodeURIComponent(account.id)}`, { api_access: true }),
              });
              if (ok) {
                toast("API access turned on");
                await app.refreshAccounts();
                app.go(`#/accounts/${account.id}`, true);
              }
            } }, "Turn on API access")
          : null,
      );

  // ---- toolbar ----
  const search = h("input", { type: "search", id: "key-search", placeholder: "Search name, description or prefix…", autocomplete: "off", "aria-label": "Search keys" });
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = search.value.trim();
      reload();
    }, 200);
  });
  const permFilter = h(
    "select",
    { id: "filter-permission", "aria-label": "Permission", onchange: (ev) => { state.permission = ev.target.value; reload(); } },
    h("option", { value: "" }, "All permissions"),
    h("option", { value: "read" }, "Read only"),
    h("option", { value: "write" }, "Write"),
  );
  const statusFilter = h(
    "select",
    { id: "filter-status", "aria-label": "Status", onchange: (ev) => { state.status = ev.target.value; reload(); } },
    h("option", { value: "" }, "All statuses"),
    Object.entries(fmt.STATUSES).map(([v, l]) => h("option", { value: v }, l)),
  );
  const toolbar = h(
    "div",
    { class: "toolbar", role: "search" },
    h("div", { class: "search" }, icon("search"), search),
    permFilter,
    statusFilter,
  );

  // ---- bulk bar ----
  const bulkCount = h("span", { "aria-live": "polite" });
  const bulkBar = h(
    "div",
    { class: "bulk-bar", hidden: true, id: "bulk-bar" },
    bulkCount,
    h("button", { type: "button", class: "btn danger", id: "bulk-revoke", onclick: async () => {
      const keys = state.items.filter((k) => state.selected.has(k.id));
      if (!keys.length) return;
      if (await forms.bulkRevoke(keys)) reload();
    } }, "Revoke selected"),
    h("button", { type: "button", class: "btn ghost", onclick: () => { state.selected.clear(); renderRows(); } }, "Clear selection"),
  );

  // ---- table ----
  const selectAll = app.canWrite ? h("input", { type: "checkbox", "aria-label": "Select all keys shown" }) : null;
  if (selectAll) {
    selectAll.addEventListener("change", () => {
      for (const k of state.items) if (k.status !== "revoked") selectAll.checked ? state.selected.add(k.id) : state.selected.delete(k.id);
      renderRows();
    });
  }
  const heads = ["Name", "Key", "Permission", "Status", "Usage", "Quota", "Last used", "Expires", "Created"];
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "keys", id: "keys-table" },
    h("caption", { class: "sr-only" }, `API keys of ${account.name}`),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        app.canWrite ? h("th", { scope: "col", class: "col-check" }, selectAll) : null,
        heads.map((t) => h("th", { scope: "col", class: t === "Usage" ? "num" : "" }, t)),
        h("th", { scope: "col", class: "col-actions" }, h("span", { class: "sr-only" }, "Actions")),
      ),
    ),
    tbody,
  );
  const empty = h("div", { class: "empty", hidden: true, id: "keys-empty" });
  const more = h("button", { type: "button", class: "btn", id: "load-more", hidden: true, onclick: () => load(false) }, "Load more");
  const count = h("p", { class: "muted count", "aria-live": "polite" });

  add(
    root,
    h("h1", { class: "page-title" }, "API keys"),
    accountBar,
    banner,
    h("section", { class: "panel", "aria-label": "Keys" }, toolbar, bulkBar, h("div", { class: "table-wrap" }, table), empty, h("div", { class: "pager" }, count, more)),
  );

  function updateBulk() {
    const n = state.selected.size;
    bulkBar.hidden = n === 0;
    bulkCount.textContent = `${n} selected`;
    if (selectAll) {
      const selectable = state.items.filter((k) => k.status !== "revoked");
      selectAll.checked = selectable.length > 0 && selectable.every((k) => state.selected.has(k.id));
      selectAll.indeterminate = n > 0 && !selectAll.checked;
    }
  }

  function replaceKey(updated) {
    if (!updated) return;
    const i = state.items.findIndex((k) => k.id === updated.id);
    if (i >= 0) state.items[i] = updated;
    renderRows();
  }

  function rowActions(key) {
    const items = [{ label: "View details", action: () => app.go(`#/keys/${key.id}`) }];
    if (app.canWrite && key.status !== "revoked") {
      items.push(
        { label: "Edit", action: async () => replaceKey(await forms.editKey(key)) },
        { label: "Rotate", action: async () => replaceKey(await forms.rotateKey(key)) },
        key.enabled
          ? { label: "Disable", action: async () => replaceKey(await forms.setEnabled(key, false)) }
          : { label: "Enable", action: async () => replaceKey(await forms.setEnabled(key, true)) },
        { label: "Revoke", danger: true, action: async () => replaceKey(await forms.revokeKey(key)) },
      );
    }
    return menu(`Actions for ${key.name}`, items);
  }

  function row(key) {
    const check = app.canWrite
      ? h("td", { class: "col-check" }, key.status === "revoked" ? null : h("input", {
          type: "checkbox",
          "aria-label": `Select ${key.name}`,
          checked: state.selected.has(key.id),
          onchange: (ev) => { ev.target.checked ? state.selected.add(key.id) : state.selected.delete(key.id); updateBulk(); },
        }))
      : null;
    const expires = key.expires_at
      ? h("time", { datetime: key.expires_at, title: fmt.dateTime(key.expires_at), class: key.status === "expired" ? "danger-text" : "" }, fmt.date(key.expires_at))
      : h("span", { class: "muted" }, "Never");
    return h(
      "tr",
      { "data-key-id": key.id, class: key.status === "revoked" ? "is-revoked" : "" },
      check,
      h(
        "td",
        { class: "col-name", "data-label": "Name" },
        h("a", { href: `#/keys/${key.id}`, class: "key-name" }, key.name),
        key.description ? h("div", { class: "secondary" }, key.description) : null,
      ),
      h(
        "td",
        { class: "col-key", "data-label": "Key" },
        h("span", { class: "id-chip" }, h("code", { class: "preview" }, key.preview), copyButton(key.id, `Copy key ID of ${key.name}`)),
        key.environment === "test" ? badge("test", "env") : null,
      ),
      h("td", { "data-label": "Permission" }, permissionBadge(key.permission)),
      h("td", { "data-label": "Status", class: "col-status" }, statusBadge(key.status)),
      h("td", { "data-label": "Usage", class: "num col-usage" }, fmt.number(key.usage_count)),
      h("td", { "data-label": "Quota", class: "col-quota" }, key.quota ? quotaMeter(key.quota, key.quota_usage, { compact: true }) : h("span", { class: "muted" }, "—")),
      h("td", { "data-label": "Last used", class: "col-last-used" }, timeCell(key.last_used_at, "Never")),
      h("td", { "data-label": "Expires" }, expires),
      h("td", { "data-label": "Created" }, h("time", { datetime: key.created_at, title: fmt.dateTime(key.created_at) }, fmt.date(key.created_at))),
      h("td", { class: "col-actions" }, rowActions(key)),
    );
  }

  function renderRows() {
    clear(tbody).append(...state.items.map(row));
    const filtered = state.q || state.permission || state.status;
    table.hidden = state.items.length === 0;
    empty.hidden = state.items.length > 0 || state.loading;
    clear(empty);
    if (!state.items.length) {
      if (filtered) {
        empty.append(h("h2", {}, "No keys match"), h("p", {}, "Try another search, or clear the filters."),
          h("button", { type: "button", class: "btn", onclick: () => {
            search.value = ""; permFilter.value = ""; statusFilter.value = "";
            Object.assign(state, { q: "", permission: "", status: "" });
            reload();
          } }, "Clear filters"));
      } else {
        empty.append(icon("key"), h("h2", {}, "No API keys yet"));
        if (!account.api_access) empty.append(h("p", {}, "Turn on API access for this account before creating keys."));
        else if (app.canWrite) empty.append(h("p", {}, "Create a key for each service or integration that calls your API. Its secret is shown once, when you create it."));
        else empty.append(h("p", {}, "Keys created by an owner or admin will show up here."));
      }
    }
    more.hidden = !state.cursor;
    count.textContent = state.items.length ? `${state.items.length} ${state.items.length === 1 ? "key" : "keys"} shown${state.cursor ? ", more available" : ""}` : "";
    updateBulk();
  }

  async function load(first) {
    const seq = ++state.seq;
    state.loading = true;
    more.disabled = true;
    root.setAttribute("aria-busy", "true");
    try {
      const page = await api("GET", "/keys" + query({
        account_id: account.id,
        q: state.q,
        permission: state.permission,
        status: state.status,
        limit: PAGE,
        cursor: first ? null : state.cursor,
      }));
      if (seq !== state.seq) return; // a newer search has started
      state.items = first ? page.items : state.items.concat(page.items);
      state.cursor = page.next_cursor;
      if (first) {
        const ids = new Set(state.items.map((k) => k.id));
        for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
      }
    } catch (e) {
      if (seq === state.seq) toast(problem(e), "error");
    } finally {
      if (seq === state.seq) {
        state.loading = false;
        more.disabled = false;
        root.removeAttribute("aria-busy");
        renderRows();
      }
    }
  }

  function reload() {
    state.selected.clear();
    return load(true);
  }

  renderRows();
  return reload();
}
