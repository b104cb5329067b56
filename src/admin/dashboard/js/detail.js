// The key detail page: every field of the record, usage over time (hourly
// for 7 days, daily for 90), refusals by code, and the key's audit trail.

import { api, query } from "./api.js";
import * as fmt from "./format.js";
import * as forms from "./forms.js";
import { barChart, windows } from "./chart.js";
import { h, add, clear, icon, copyButton, statusBadge, permissionBadge, timeCell, problem, badge, quotaMeter } from "./ui.js";

function row(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

function none(text = "None") {
  return h("span", { class: "muted" }, text);
}

function fields(key, account) {
  const at = (iso, empty) => (iso ? [timeCell(iso, empty), h("span", { class: "muted" }, " · " + fmt.dateTime(iso))] : [none(empty)]);
  return h(
    "dl",
    { class: "fields" },
    row("Key ID", h("span", { class: "id-chip" }, h("code", {}, key.id), copyButton(key.id, "Copy key ID"))),
    row("Preview", h("code", {}, key.preview), " ", badge(key.environment, "env")),
    row("Account", account ? account.name + " " : "", h("code", {}, key.account_id)),
    row("Description", key.description || none()),
    row("Permission", permissionBadge(key.permission), h("span", { class: "hint" }, " " + (fmt.PERMISSIONS[key.permission] || {}).help)),
    row("Status", statusBadge(key.status), key.enabled ? null : h("span", { class: "muted" }, " (switched off)")),
    row("Usage", fmt.number(key.usage_count) + " requests"),
    row("Last used", ...at(key.last_used_at, "Never")),
    row("Expires", ...at(key.expires_at, "Never")),
    row("Created", ...at(key.created_at)),
    row("Updated", ...at(key.updated_at)),
    row("Rotated", ...at(key.rotated_at, "Never")),
    row("Revoked", ...at(key.revoked_at, "No")),
    row("Quota", key.quota ? quotaMeter(key.quota, key.quota_usage, { id: "key-quota" }) : none("No quota")),
    row("Rate limit", key.rate_limit ? `${fmt.number(key.rate_limit.requests)} requests per ${fmt.number(key.rate_limit.per_seconds)} s` : none("Gateway default")),
    row("Allowed IPs", key.allowed_ips && key.allowed_ips.length ? h("ul", { class: "plain" }, key.allowed_ips.map((c) => h("li", {}, h("code", {}, c)))) : none("Anywhere")),
    row(
      "Allowed routes",
      key.allowed_routes && key.allowed_routes.length
        ? h("ul", { class: "plain" }, key.allowed_routes.map((r) => h("li", {}, h("code", {}, (r.methods && r.methods.length ? r.methods.join(",") + " " : "") + (r.host ? "//" + r.host : "") + r.path_prefix))))
        : none("Every route"),
    ),
    row("Metadata", key.metadata && Object.keys(key.metadata).length ? h("pre", { class: "json" }, JSON.stringify(key.metadata, null, 2)) : none()),
  );
}

function usageSection(key) {
  const body = h("div", { class: "usage-body" }, h("p", { class: "muted" }, "Loading usage…"));
  const tabs = [
    ["hourly", "Last 7 days, per hour"],
    ["daily", "Last 90 days, per day"],
  ];
  let usage = null;
  let current = "hourly";
  const tabButtons = tabs.map(([id, label]) =>
    h("button", { type: "button", role: "tab", id: `tab-${id}`, "aria-selected": id === current ? "true" : "false", "aria-controls": "usage-panel", onclick: () => show(id) }, label),
  );
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Usage period" }, tabButtons);
  tablist.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    const next = current === "hourly" ? "daily" : "hourly";
    show(next);
    document.getElementById(`tab-${next}`).focus();
  });
  const panel = h("div", { id: "usage-panel", role: "tabpanel" }, body);
  const outcomes = h("div", { class: "outcomes" });

  function show(id) {
    current = id;
    for (const b of tabButtons) {
      const on = b.id === `tab-${id}`;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.tabIndex = on ? 0 : -1;
    }
    panel.setAttribute("aria-labelledby", `tab-${id}`);
    if (!usage) return;
    const width = Math.max(300, Math.round(body.clientWidth || 720));
    clear(body).append(barChart(windows[id](usage), { hourly: id === "hourly", title: tabs.find((t) => t[0] === id)[1], width }));
  }

  api("GET", `/keys/${encodeURIComponent(key.id)}/usage`)
    .then((u) => {
      usage = u;
      show(current);
      const entries = Object.entries(u.outcomes || {}).sort((a, b) => b[1] - a[1]);
      const refusals = entries.filter(([code]) => code !== "allowed");
      const allowed = (u.outcomes || {}).allowed || 0;
      clear(outcomes).append(
        h("h3", {}, "Refusals by code"),
        h("p", { class: "muted" }, `Over the last 90 days: ${fmt.number(allowed)} allowed.`),
        refusals.length
          ? h(
              "table",
              { class: "compact", id: "refusals" },
              h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Code"), h("th", { scope: "col", class: "num" }, "Requests"))),
              h("tbody", {}, refusals.map(([code, n]) => h("tr", {}, h("td", {}, h("code", {}, code)), h("td", { class: "num" }, fmt.number(n))))),
            )
          : h("p", {}, "No request with this key was refused."),
      );
    })
    .catch((e) => {
      clear(body).append(h("p", { class: "muted" }, e.status === 404 ? "This server does not keep usage history." : problem(e)));
    });
  show(current);
  return h("section", { class: "panel", "aria-labelledby": "usage-title" }, h("h2", { id: "usage-title" }, "Usage"), tablist, panel, outcomes);
}

function describeChanges(changes) {
  if (!changes || typeof changes !== "object") return [];
  return Object.entries(changes).map(([field, v]) => {
    const show = (x) => (x === null || x === undefined ? "none" : typeof x === "object" ? JSON.stringify(x) : String(x));
    if (v && typeof v === "object" && !Array.isArray(v) && ("from" in v || "to" in v)) {
      return h("li", {}, h("code", {}, field), `: ${show(v.from)} → ${show(v.to)}`);
    }
    return h("li", {}, h("code", {}, field), `: ${show(v)}`);
  });
}

function auditSection(key) {
  const list = h("ol", { class: "audit", id: "audit" }, h("li", { class: "muted" }, "Loading…"));
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Older entries");
  let cursor = null;
  async function load(first) {
    try {
      const page = await api("GET", "/audit" + query({ key_id: key.id, limit: 50, cursor: first ? null : cursor }));
      if (first) clear(list);
      for (const e of page.items) {
        list.append(
          h(
            "li",
            {},
            h("div", { class: "audit-head" }, h("strong", {}, e.action), " by ", h("span", {}, e.actor_name), " ", timeCell(e.at, "")),
            h("ul", { class: "changes" }, describeChanges(e.changes)),
            h("div", { class: "muted small" }, [e.source_ip ? "from " + e.source_ip : null, e.request_id ? "request " + e.request_id : null].filter(Boolean).join(" · ")),
          ),
        );
      }
      if (first && !page.items.length) list.append(h("li", { class: "muted" }, "No changes recorded."));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (e) {
      clear(list).append(h("li", { class: "muted" }, problem(e)));
    }
  }
  more.addEventListener("click", () => load(false));
  load(true);
  return h("section", { class: "panel", "aria-labelledby": "audit-title" }, h("h2", { id: "audit-title" }, "Audit trail"), list, more);
}

/** Renders the detail page of key `id` into `root`. */
export async function detailPage(root, app, id) {
  let key;
  try {
    key = await api("GET", `/keys/${encodeURIComponent(id)}`);
  } catch (e) {
    root.append(h("p", {}, e.status === 404 ? "No such key." : problem(e)), h("a", { href: "#/" }, "Back to keys"));
    return;
  }
  const account = app.accounts.find((a) => a.id === key.account_id);
  app.rememberAccount(key.account_id);
  const refresh = () => app.go(`#/keys/${key.id}`, true);
  const actions = h("div", { class: "detail-actions" });
  if (app.canWrite && key.status !== "revoked") {
    actions.append(
      h("button", { type: "button", class: "btn", id: "detail-edit", onclick: async () => (await forms.editKey(key)) && refresh() }, "Edit"),
      key.quota
        ? h("button", { type: "button", class: "btn", id: "detail-quota", onclick: async () => (await forms.adjustQuota(key)) && refresh() }, "Adjust quota")
        : null,
      h("button", { type: "button", class: "btn", id: "detail-rotate", onclick: async () => (await forms.rotateKey(key)) && refresh() }, "Rotate"),
      h("button", { type: "button", class: "btn", id: "detail-toggle", onclick: async () => (await forms.setEnabled(key, !key.enabled)) && refresh() }, key.enabled ? "Disable" : "Enable"),
      h("button", { type: "button", class: "btn danger", id: "detail-revoke", onclick: async () => (await forms.revokeKey(key)) && refresh() }, "Revoke"),
    );
  }
  add(
    root,
    h("a", { href: `#/accounts/${key.account_id}`, class: "back" }, icon("back"), h("span", {}, account ? `Keys of ${account.name}` : "Keys")),
    h(
      "div",
      { class: "detail-head" },
      h("div", {}, h("h1", { class: "page-title", id: "key-title" }, key.name), key.description ? h("p", { class: "secondary" }, key.description) : null),
      h("div", { class: "badges" }, statusBadge(key.status), permissionBadge(key.permission)),
      actions,
    ),
    key.status === "revoked"
      ? h("div", { class: "callout", role: "note" }, icon("warn"), h("p", {}, "This key is revoked: every request made with it is refused. The record stays for the audit trail."))
      : null,
    h("div", { class: "detail-grid" }, h("section", { class: "panel", "aria-labelledby": "fields-title" }, h("h2", { id: "fields-title" }, "Details"), fields(key, account)), usageSection(key)),
    auditSection(key),
  );
}
