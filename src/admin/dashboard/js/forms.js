// The dialogs that change keys: create, edit, rotate, revoke (one or many),
// and the one-time display of a new secret.

import { api } from "./api.js";
import * as fmt from "./format.js";
import { h, modal, confirmDialog, field, showFieldError, copyText, toast, problem, icon, badge } from "./ui.js";

function radios(name, options, value) {
  return h(
    "div",
    { class: "choices", role: "radiogroup" },
    options.map((o) =>
      h(
        "label",
        { class: "choice" },
        h("input", { type: "radio", name, value: o.value, checked: o.value === value }),
        h("span", { class: "choice-text" }, h("strong", {}, o.label), o.help ? h("span", { class: "hint" }, o.help) : null),
      ),
    ),
  );
}

function permissionChoices(value) {
  return radios(
    "permission",
    Object.entries(fmt.PERMISSIONS).map(([v, p]) => ({ value: v, label: p.label, help: p.help })),
    value,
  );
}

/** Expiry: never, a preset, or a date. `current` keeps the key's own. */
function expiryControl(current) {
  const select = h(
    "select",
    { name: "expiry" },
    current ? h("option", { value: "keep" }, "Keep " + fmt.date(current)) : null,
    h("option", { value: "never" }, "Never"),
    h("option", { value: "30" }, "In 30 days"),
    h("option", { value: "90" }, "In 90 days"),
    h("option", { value: "date" }, "On a date…"),
  );
  const tomorrow = new Date(Date.now() + 86400000);
  const dateInput = h("input", { type: "date", name: "expiry_date", min: fmt.isoDay(tomorrow), hidden: true, "aria-label": "Expiry date" });
  select.addEventListener("change", () => {
    dateInput.hidden = select.value !== "date";
    if (!dateInput.hidden) dateInput.focus();
  });
  const read = () => {
    switch (select.value) {
      case "keep":
        return undefined;
      case "never":
        return null;
      case "date":
        return dateInput.value ? fmt.endOfDay(dateInput.value) : "";
      default:
        return fmt.inDays(Number(select.value));
    }
  };
  return { control: h("div", { class: "inline" }, select, dateInput), select, read };
}

/** Optional rate limit: two numbers, both blank for none. */
function rateLimitControl(current) {
  const requests = h("input", { type: "number", min: 1, name: "rl_requests", inputmode: "numeric", value: current ? current.requests : "" });
  const per = h("input", { type: "number", min: 1, max: 86400, name: "rl_per", inputmode: "numeric", "aria-label": "Per seconds", value: current ? current.per_seconds : "" });
  const read = () => {
    if (!requests.value && !per.value) return null;
    return { requests: Number(requests.value), per_seconds: Number(per.value || 60) };
  };
  return { control: h("div", { class: "inline" }, requests, h("span", {}, "requests per"), per, h("span", {}, "seconds")), first: requests, read };
}

/** Optional quota: a limit and a period, blank limit for none. */
function quotaControl(current) {
  const limit = h("input", { type: "number", min: 1, name: "quota_limit", inputmode: "numeric", "aria-label": "Quota limit", value: current ? current.limit : "" });
  const period = h(
    "select",
    { name: "quota_period", "aria-label": "Quota period" },
    fmt.QUOTA_PERIODS.map((p) => h("option", { value: p, selected: current ? current.period === p : p === "month" }, p)),
  );
  const read = () => (limit.value ? { limit: Number(limit.value), period: period.value } : null);
  return { control: h("div", { class: "inline" }, limit, h("span", {}, "units per"), period), read };
}

function keyFields(key) {
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 200, autocomplete: "off", value: key ? key.name : "" });
  const description = h("input", { type: "text", name: "description", maxlength: 1000, autocomplete: "off", value: key && key.description ? key.description : "" });
  const expiry = expiryControl(key ? key.expires_at : null);
  const rate = rateLimitControl(key ? key.rate_limit : null);
  const quota = quotaControl(key ? key.quota : null);
  const ips = h("textarea", { name: "allowed_ips", rows: 2, placeholder: "10.0.0.0/8\n2001:db8::/32" });
  ips.value = key ? (key.allowed_ips || []).join("\n") : "";
  const routes = h("textarea", { name: "allowed_routes", rows: 2, placeholder: "/v1/reports\nGET,HEAD /v1/orders" });
  routes.value = key ? fmt.formatRoutes(key.allowed_routes) : "";
  return { name, description, expiry, rate, quota, ips, routes };
}

function restrictions(f) {
  return h(
    "details",
    { class: "more", open: f.rate.read() || f.quota.read() || f.ips.value || f.routes.value ? true : null },
    h("summary", {}, "Limits and restrictions"),
    field("Rate limit", f.rate.control, { name: "rate_limit", optional: true, hint: "Leave blank for the gateway's default." }),
    field("Quota", f.quota.control, {
      name: "quota",
      optional: true,
      hint: "Units a request spends (a route's cost, 1 by default) per UTC day, week or month; total never resets (prepaid credits). Blank: none.",
    }),
    field("Allowed IP ranges", f.ips, { name: "allowed_ips", optional: true, hint: "CIDR ranges, one per line. Blank: from anywhere." }),
    field("Allowed routes", f.routes, { name: "allowed_routes", optional: true, hint: "A path prefix per line, optionally after methods (GET,HEAD /v1/orders); //host/prefix for one host only. Blank: every route." }),
  );
}

/** The new secret, shown once, with Copy and Download. */
export function showSecret(title, key, secret) {
  return modal(title, (close) => {
    const value = h("input", { type: "text", class: "secret", readonly: true, value: secret, "aria-label": "Secret API key", spellcheck: "false", "data-secret": "" });
    value.addEventListener("focus", () => value.select());
    const download = h("button", { type: "button", class: "btn" }, icon("download"), h("span", {}, "Download"));
    download.addEventListener("click", () => {
      const blob = new Blob([secret + "\n"], { type: "text/plain" });
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: `${key.name.replace(/[^\w.-]+/g, "-").slice(0, 60) || "key"}.txt`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    });
    const copy = h("button", { type: "button", class: "btn primary" }, icon("copy"), h("span", {}, "Copy"));
    copy.addEventListener("click", async () => {
      const ok = await copyText(secret);
      toast(ok ? "Secret copied" : "Copy failed: select the key and copy it by hand", ok ? "ok" : "error");
    });
    setTimeout(() => value.focus(), 0);
    return h(
      "div",
      { class: "modal-body" },
      h("div", { class: "callout warn", role: "note" }, icon("warn"), h("p", {}, "Copy this key now and store it somewhere safe. For your security it cannot be shown again.")),
      h("p", {}, "Key ", h("strong", {}, key.name), " ", badge(fmt.permissionLabel(key.permission), "perm-" + key.permission), " ", badge(key.environment, "env")),
      h("div", { class: "secret-row" }, value),
      h("div", { class: "secret-actions" }, copy, download),
      h("div", { class: "modal-actions" }, h("button", { type: "button", class: "btn", onclick: () => close(true) }, "I've saved it")),
    );
  }, { wide: true, label: "secret-title" });
}

/** Create a key in `account`; resolves with the new record or undefined. */
export function createKey(account) {
  return modal("Create API key", (close) => {
    const f = keyFields(null);
    const env = radios("environment", [
      { value: "live", label: "Live", help: "For production traffic." },
      { value: "test", label: "Test", help: "For development; the key starts with the test prefix." },
    ], "live");
    const error = h("p", { class: "form-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Create key");
    const form = h(
      "form",
      { class: "modal-body", novalidate: true },
      h("p", { class: "muted" }, "In account ", h("strong", {}, account.name)),
      field("Name", f.name, { name: "name", hint: "What uses it, e.g. billing-export or staging-app." }),
      field("Description", f.description, { name: "description", optional: true }),
      h("fieldset", { class: "field", "data-field": "permission" }, h("legend", {}, "Permission"), permissionChoices("read"), h("p", { class: "field-error" })),
      h("fieldset", { class: "field", "data-field": "environment" }, h("legend", {}, "Environment"), env, h("p", { class: "field-error" })),
      field("Expires", f.expiry.control, { name: "expires_at", hint: "An expired key is refused; set a date to force rotation." }),
      restrictions(f),
      error,
      h("div", { class: "modal-actions" }, h("button", { type: "button", class: "btn", onclick: () => close() }, "Cancel"), submit),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!f.name.value.trim()) return showFieldError(form, { field: "name", detail: "A name is required." }, error);
      const body = {
        account_id: account.id,
        name: f.name.value.trim(),
        permission: form.elements.permission.value,
        environment: form.elements.environment.value,
      };
      if (f.description.value.trim()) body.description = f.description.value.trim();
      const exp = f.expiry.read();
      if (exp === "") return showFieldError(form, { field: "expires_at", detail: "Pick a date." }, error);
      if (exp) body.expires_at = exp;
      const rl = f.rate.read();
      if (rl) body.rate_limit = rl;
      const quota = f.quota.read();
      if (quota) body.quota = quota;
      const ips = fmt.lines(f.ips.value);
      if (ips.length) body.allowed_ips = ips;
      const routes = fmt.parseRoutes(f.routes.value);
      if (routes.length) body.allowed_routes = routes;
      submit.disabled = true;
      try {
        const created = await api("POST", "/keys", body);
        close(created);
      } catch (e) {
        showFieldError(form, e, error);
        submit.disabled = false;
      }
    });
    setTimeout(() => f.name.focus(), 0);
    return form;
  }, { wide: true }).then(async (created) => {
    if (!created) return undefined;
    toast(`Key “${created.key.name}” created`);
    await showSecret("Your new API key", created.key, created.secret);
    return created.key;
  });
}

/** Edit a key's name, description, permission, expiry and restrictions;
 * sends only what changed. Resolves with the updated record. */
export function editKey(key) {
  return modal("Edit key", (close) => {
    const f = keyFields(key);
    const error = h("p", { class: "form-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Save changes");
    const form = h(
      "form",
      { class: "modal-body", novalidate: true },
      field("Name", f.name, { name: "name" }),
      field("Description", f.description, { name: "description", optional: true }),
      h("fieldset", { class: "field", "data-field": "permission" }, h("legend", {}, "Permission"), permissionChoices(key.permission), h("p", { class: "field-error" })),
      field("Expires", f.expiry.control, { name: "expires_at" }),
      restrictions(f),
      error,
      h("div", { class: "modal-actions" }, h("button", { type: "button", class: "btn", onclick: () => close() }, "Cancel"), submit),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const patch = {};
      const name = f.name.value.trim();
      if (!name) return showFieldError(form, { field: "name", detail: "A name is required." }, error);
      if (name !== key.name) patch.name = name;
      const desc = f.description.value.trim() || null;
      if (desc !== (key.description || null)) patch.description = desc;
      const perm = form.elements.permission.value;
      if (perm !== key.permission) patch.permission = perm;
      const exp = f.expiry.read();
      if (exp === "") return showFieldError(form, { field: "expires_at", detail: "Pick a date." }, error);
      if (exp !== undefined && exp !== key.expires_at) patch.expires_at = exp;
      const rl = f.rate.read();
      if (JSON.stringify(rl) !== JSON.stringify(key.rate_limit || null)) patch.rate_limit = rl;
      const quota = f.quota.read();
      if (JSON.stringify(quota) !== JSON.stringify(key.quota || null)) patch.quota = quota;
      const ips = fmt.lines(f.ips.value);
      if (JSON.stringify(ips) !== JSON.stringify(key.allowed_ips || [])) patch.allowed_ips = ips;
      const routes = fmt.parseRoutes(f.routes.value);
      if (fmt.formatRoutes(routes) !== fmt.formatRoutes(key.allowed_routes)) patch.allowed_routes = routes;
      if (!Object.keys(patch).length) return close();
      submit.disabled = true;
      try {
        close(await api("PATCH", `/keys/${encodeURIComponent(key.id)}`, patch));
      } catch (e) {
        showFieldError(form, e, error);
        submit.disabled = false;
      }
    });
    setTimeout(() => f.name.focus(), 0);
    return form;
  }, { wide: true }).then((updated) => {
    if (updated) toast(`Key “${updated.name}” saved`);
    return updated;
  });
}

const QUOTA_OPERATIONS = [
  ["increment", "Add", "Adds to what remains this period, e.g. credits bought."],
  ["decrement", "Take away", "Takes from what remains this period (never below 0)."],
  ["set", "Set remaining to", "What remains this period becomes exactly this."],
  ["reset", "Reset the period", "Starts the period afresh: nothing used, the whole limit remains."],
];

/** Adjust what remains of a key's quota this period; resolves with the
 * updated record. */
export function adjustQuota(key) {
  return modal(`Adjust the quota of “${key.name}”`, (close) => {
    const amount = h("input", { type: "number", min: 0, name: "amount", inputmode: "numeric", "aria-label": "Amount", value: "" });
    const ops = radios("operation", QUOTA_OPERATIONS.map(([value, label, help]) => ({ value, label, help })), "increment");
    const sync = () => {
      const reset = ops.querySelector("input:checked")?.value === "reset";
      amount.disabled = reset;
    };
    ops.addEventListener("change", sync);
    const error = h("p", { class: "form-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn primary" }, "Apply");
    const u = key.quota_usage;
    const form = h(
      "form",
      { class: "modal-body", novalidate: true },
      h("p", { class: "muted" }, u ? `Now: ${fmt.number(u.used)} used, ${fmt.number(u.remaining)} left (${fmt.quotaLimit(key.quota)}).` : fmt.quotaLimit(key.quota)),
      h("fieldset", { class: "field", "data-field": "operation" }, h("legend", {}, "Operation"), ops, h("p", { class: "field-error" })),
      field("Amount", amount, { name: "amount" }),
      error,
      h("div", { class: "modal-actions" }, h("button", { type: "button", class: "btn", onclick: () => close() }, "Cancel"), submit),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const operation = form.elements.operation.value;
      const body = { operation };
      if (operation !== "reset") {
        if (amount.value === "") return showFieldError(form, { field: "amount", detail: "An amount is required." }, error);
        body.amount = Number(amount.value);
      }
      submit.disabled = true;
      try {
        close(await api("POST", `/keys/${encodeURIComponent(key.id)}/quota`, body));
      } catch (e) {
        showFieldError(form, e, error);
        submit.disabled = false;
      }
    });
    setTimeout(() => amount.focus(), 0);
    return form;
  }).then((updated) => {
    if (updated) toast(`Quota of “${updated.name}” adjusted`);
    return updated;
  });
}

const GRACE = [
  [0, "None: the old secret stops now"],
  [3600, "1 hour"],
  [86400, "24 hours"],
  [7 * 86400, "7 days"],
];

/** Rotate with a grace period; shows the new secret once. */
export async function rotateKey(key) {
  const grace = h("select", { name: "grace" }, GRACE.map(([s, label]) => h("option", { value: s }, label)));
  const result = await confirmDialog({
    title: `Rotate “${key.name}”?`,
    message: [
      h("p", {}, "A new secret replaces the current one on the same key: its name, permission and usage history stay."),
      h("p", {}, "Every integration that uses ", h("strong", {}, key.name), " (", h("code", {}, key.preview), ") must be updated with the new secret."),
    ],
    extra: field("Keep the old secret working for", grace, { name: "grace_period_seconds" }),
    confirm: "Rotate key",
    onConfirm: () => {
      const seconds = Number(grace.value);
      return api("POST", `/keys/${encodeURIComponent(key.id)}/rotate`, seconds ? { grace_period_seconds: seconds } : {});
    },
  });
  if (!result || result === true) return undefined;
  toast(`Key “${key.name}” rotated${Number(grace.value) ? "; the old secret works for " + fmt.duration(Number(grace.value)) : ""}`);
  await showSecret("Your new API key", result.key, result.secret);
  return result.key;
}

/** Revoke, after a confirmation that says it is final. */
export async function revokeKey(key) {
  const result = await confirmDialog({
    title: `Revoke “${key.name}”?`,
    message: [
      h("p", {}, "Revoking ", h("strong", {}, key.name), " (", h("code", {}, key.preview), ") stops it at once: every request made with it is refused."),
      h("p", { class: "danger-text" }, "This cannot be undone. The record stays for the audit trail."),
    ],
    confirm: "Revoke key",
    danger: true,
    onConfirm: () => api("POST", `/keys/${encodeURIComponent(key.id)}/revoke`),
  });
  if (!result) return undefined;
  toast(`Key “${key.name}” revoked`);
  return result;
}

/** Revoke several keys with one confirmation. */
export async function bulkRevoke(keys) {
  const names = keys.slice(0, 8).map((k) => h("li", {}, h("strong", {}, k.name), " ", h("code", {}, k.preview)));
  if (keys.length > 8) names.push(h("li", {}, `and ${keys.length - 8} more`));
  const result = await confirmDialog({
    title: `Revoke ${keys.length} ${keys.length === 1 ? "key" : "keys"}?`,
    message: [h("p", {}, "These keys stop working at once:"), h("ul", { class: "name-list" }, names), h("p", { class: "danger-text" }, "This cannot be undone.")],
    confirm: `Revoke ${keys.length} ${keys.length === 1 ? "key" : "keys"}`,
    danger: true,
    onConfirm: () => api("POST", "/keys/bulk-revoke", { ids: keys.map((k) => k.id) }),
  });
  if (!result) return undefined;
  const n = (result.revoked || []).length;
  toast(`${n} ${n === 1 ? "key" : "keys"} revoked`);
  if (result.not_found && result.not_found.length) toast(`${result.not_found.length} could not be found`, "error");
  return result;
}

/** Switch a key off or on again (reversible: no confirmation). */
export async function setEnabled(key, enabled) {
  try {
    const updated = await api("PATCH", `/keys/${encodeURIComponent(key.id)}`, { enabled });
    toast(`Key “${key.name}” ${enabled ? "enabled" : "disabled"}`);
    return updated;
  } catch (e) {
    toast(problem(e), "error");
    return undefined;
  }
}

/** Create an account (owners and admins not confined to one). */
export function createAccount() {
  return modal("New account", (close) => {
    const name = h("input", { type: "text", name: "name", required: true, autocomplete: "off" });
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      { class: "modal-body", novalidate: true },
      field("Name", name, { name: "name", hint: "The tenant or team the keys belong to." }),
      error,
      h("div", { class: "modal-actions" }, h("button", { type: "button", class: "btn", onclick: () => close() }, "Cancel"), h("button", { type: "submit", class: "btn primary" }, "Create account")),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!name.value.trim()) return showFieldError(form, { field: "name", detail: "A name is required." }, error);
      try {
        close(await api("POST", "/accounts", { name: name.value.trim() }));
      } catch (e) {
        showFieldError(form, e, error);
      }
    });
    setTimeout(() => name.focus(), 0);
    return form;
  });
}
