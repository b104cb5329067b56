// Webhooks: the owners' page (list, create showing the signing secret once,
// delete) and each webhook's deliveries log. Owner and admin tokens not
// confined to an account only: a webhook may receive every account's events
// (the API answers 403 to anyone else anyway; the link is hidden).

import { api, all } from "./api.js";
import { h, clear, modal, field, showFieldError, toast, problem, confirmDialog, copyText, timeCell, badge } from "./ui.js";

const EVENTS = [
  ["key.created", "A key is created"],
  ["key.rotated", "A key gets a new secret"],
  ["key.revoked", "A key is revoked"],
  ["key.leaked", "A leaked secret is reported"],
  ["key.expiring", "A key expires within 7 days"],
  ["quota.threshold", "A quota reaches 80 % or 100 %"],
];

/** Whether this token may manage webhooks: owners and admins, unconfined. */
export function canManageWebhooks(app) {
  return app.canWrite && !app.me.account_id;
}

/** The signing secret, shown once. */
function showWebhookSecret(hook, secret) {
  return modal("Your webhook signing secret", (close) => {
    const value = h("input", { type: "text", class: "secret", readonly: true, value: secret, "aria-label": "Signing secret", spellcheck: "false", "data-secret": "" });
    value.addEventListener("focus", () => value.select());
    const copy = h("button", { type: "button", class: "btn primary" }, h("span", {}, "Copy"));
    copy.addEventListener("click", async () => {
      const ok = await copyText(secret);
      toast(ok ? "Secret copied" : "Copy failed: select the secret and copy it by hand", ok ? "ok" : "error");
    });
    setTimeout(() => value.focus(), 0);
    return h(
      "div",
      { class: "modal-body" },
      h("div", { class: "callout warn", role: "note" }, h("p", {}, "Copy this secret now: it cannot be shown again. Your receiver checks each delivery's Keygate-Signature header with it.")),
      h("p", {}, "Webhook to ", h("code", {}, hook.url)),
      h("div", { class: "secret-row" }, value),
      h("div", { class: "secret-actions" }, copy),
      h("div", { class: "modal-actions" }, h("button", { type: "button", class: "btn", onclick: () => close(true) }, "I've saved it")),
    );
  }, { wide: true, label: "secret-title" });
}

/** The create dialog; resolves to `{ webhook, secret }` or undefined. */
function webhookForm(app) {
  return modal("New webhook", (close) => {
    const url = h("input", { type: "url", name: "url", required: true, autocomplete: "off", spellcheck: "false", placeholder: "https://hooks.example.com/keygate" });
    const boxes = EVENTS.map(([name, text]) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "event", value: name, checked: name !== "quota.threshold" }), " ", h("code", {}, name), " ", h("span", { class: "muted" }, text)),
    );
    const account = h(
      "select",
      { name: "account_id" },
      h("option", { value: "" }, "Every account"),
      ...app.accounts.map((a) => h("option", { value: a.id }, a.name)),
    );
    const error = h("p", { class: "form-error", role: "alert" });
    const events = h("fieldset", { class: "checks" }, h("legend", {}, "Events"), ...boxes);
    const form = h(
      "form",
      { class: "modal-body", novalidate: true },
      field("Receiver URL", url, { name: "url", hint: "http:// or https://, with no user or password in it. Deliveries are POSTed as JSON." }),
      h("div", { class: "field", "data-field": "events" }, events, h("p", { class: "field-error", "data-error-for": "events" })),
      field("Account", account, { name: "account_id", hint: "Only this account's events, or every account's." }),
      error,
      h(
        "div",
        { class: "modal-actions" },
        h("button", { type: "button", class: "btn", onclick: () => close() }, "Cancel"),
        h("button", { type: "submit", class: "btn primary" }, "Create webhook"),
      ),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {
        url: url.value.trim(),
        events: [...form.querySelectorAll("input[name=event]:checked")].map((b) => b.value),
        account_id: account.value || null,
      };
      try {
        close(await api("POST", "/webhooks", body));
      } catch (e) {
        showFieldError(form, e, error);
      }
    });
    setTimeout(() => url.focus(), 0);
    return form;
  }, { wide: true });
}

/** The webhooks page (`#/webhooks`). */
export async function webhooksPage(root, app) {
  const body = h("tbody", {});
  root.append(
    h(
      "div",
      { class: "account-bar" },
      h("div", { class: "account-id" }, h("span", { class: "eyebrow" }, "Events"), h("strong", { class: "account-name" }, "Webhooks")),
      h(
        "div",
        { class: "account-actions" },
        h("a", { class: "btn", href: "#/" }, "Back to keys"),
        h("button", { type: "button", class: "btn primary", id: "create-webhook", onclick: async () => {
          const created = await webhookForm(app);
          if (created) {
            await showWebhookSecret(created.webhook, created.secret);
            toast("Webhook created");
            await load();
          }
        } }, "New webhook"),
      ),
    ),
    h("p", { class: "muted" }, "Signed events (Keygate-Signature) are POSTed to each receiver and retried with backoff until it answers 2xx."),
    h(
      "table",
      { class: "keys", id: "webhooks-table" },
      h("thead", {}, h("tr", {}, ["URL", "Events", "Account", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
      body,
    ),
  );

  async function load() {
    let hooks;
    try {
      hooks = await all("/webhooks");
    } catch (e) {
      toast(problem(e), "error");
      return;
    }
    clear(body);
    if (!hooks.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No webhooks yet.")));
    for (const hook of hooks) {
      const account = hook.account_id ? (app.accounts.find((a) => a.id === hook.account_id) || { name: hook.account_id }).name : "Every account";
      body.append(
        h(
          "tr",
          { "data-webhook-id": hook.id },
          h("td", {}, h("a", { href: `#/webhooks/${encodeURIComponent(hook.id)}` }, hook.url)),
          h("td", {}, hook.events.map((e) => badge(e, "env"))),
          h("td", {}, account),
          h("td", {}, timeCell(hook.created_at)),
          h(
            "td",
            {},
            h("div", { class: "inline" },
              h("a", { class: "btn", href: `#/webhooks/${encodeURIComponent(hook.id)}`, "aria-label": `Deliveries of ${hook.url}` }, "Deliveries"),
              h("button", { type: "button", class: "btn danger", "aria-label": `Delete webhook ${hook.url}`, onclick: async () => {
                const ok = await confirmDialog({
                  title: "Delete this webhook?",
                  message: [h("p", {}, "Events stop going to ", h("code", {}, hook.url), "; deliveries not made yet are dropped.")],
                  confirm: "Delete webhook",
                  danger: true,
                  onConfirm: async () => {
                    await api("DELETE", `/webhooks/${encodeURIComponent(hook.id)}`);
                    return true;
                  },
                });
                if (ok) {
                  toast("Webhook deleted");
                  await load();
                }
              } }, "Delete"),
            ),
          ),
        ),
      );
    }
  }
  await load();
}

/** One webhook's deliveries log (`#/webhooks/{id}`): one row per attempt. */
export async function deliveriesPage(root, app, id) {
  let hook;
  try {
    hook = await api("GET", `/webhooks/${encodeURIComponent(id)}`);
  } catch (e) {
    root.append(h("div", { class: "empty" }, h("h1", {}, "Webhook not found"), h("p", {}, problem(e)), h("a", { class: "btn", href: "#/webhooks" }, "Back to webhooks")));
    return;
  }
  const body = h("tbody", {});
  root.append(
    h(
      "div",
      { class: "account-bar" },
      h("div", { class: "account-id" }, h("span", { class: "eyebrow" }, "Deliveries"), h("strong", { class: "account-name" }, hook.url)),
      h(
        "div",
        { class: "account-actions" },
        h("a", { class: "btn", href: "#/webhooks" }, "Back to webhooks"),
        h("button", { type: "button", class: "btn", id: "refresh-deliveries", onclick: () => load() }, "Refresh"),
      ),
    ),
    h("p", { class: "muted" }, "Every attempt, newest first. Failed attempts are retried with backoff; the same event id is sent each time."),
    h(
      "table",
      { class: "keys", id: "deliveries-table" },
      h("thead", {}, h("tr", {}, ["When", "Event", "Type", "Attempt", "Status", "Result", "Next attempt"].map((t) => h("th", { scope: "col" }, t)))),
      body,
    ),
  );

  async function load() {
    let page;
    try {
      page = await api("GET", `/webhooks/${encodeURIComponent(id)}/deliveries?limit=200`);
    } catch (e) {
      toast(problem(e), "error");
      return;
    }
    clear(body);
    if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No deliveries yet.")));
    for (const d of page.items) {
      body.append(
        h(
          "tr",
          { "data-attempt-id": d.id },
          h("td", {}, timeCell(d.at)),
          h("td", {}, h("code", {}, d.event_id)),
          h("td", {}, d.type),
          h("td", {}, String(d.attempt)),
          h("td", {}, d.status_code === null ? "—" : String(d.status_code)),
          h("td", {}, d.delivered ? badge("delivered", "status-active") : badge("failed", "status-revoked"), d.error ? h("span", { class: "muted" }, " " + d.error) : null),
          h("td", {}, d.next_attempt_at ? timeCell(d.next_attempt_at) : "—"),
        ),
      );
    }
  }
  await load();
}
