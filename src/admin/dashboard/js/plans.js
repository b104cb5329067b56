// Plans: the owners' page (list, create, edit, delete) and the plan picker
// of the account bar. A plan's limits are pooled over all of an account's
// keys. Tokens confined to an account see their plan but cannot change it
// (the API answers 403 anyway; the picker is disabled so nobody tries).

import { api, all } from "./api.js";
import { h, clear, modal, field, showFieldError, toast, problem, confirmDialog } from "./ui.js";

const PERIODS = ["day", "week", "month", "total"];

/** `10 / 60 s`, `10000 / month`, or `none`. */
export function rateText(r) {
  return r ? `${r.requests} / ${r.per_seconds} s` : "none";
}

export function quotaText(q) {
  return q ? `${q.limit} / ${q.period}` : "none";
}

/** Whether this token may write plans: owners and unconfined admins. */
export function canWritePlans(app) {
  return app.canWrite && !app.me.account_id;
}

/** The create / edit dialog; resolves to the saved plan or undefined. */
function planForm(plan) {
  return modal(plan ? `Edit plan “${plan.name}”` : "New plan", (close) => {
    const name = h("input", { type: "text", name: "name", required: true, maxlength: 200, autocomplete: "off", value: plan ? plan.name : "" });
    const rl = plan && plan.rate_limit;
    const requests = h("input", { type: "number", min: 1, name: "plan_rl_requests", inputmode: "numeric", value: rl ? rl.requests : "" });
    const per = h("input", { type: "number", min: 1, max: 86400, name: "plan_rl_per", inputmode: "numeric", "aria-label": "Per seconds", value: rl ? rl.per_seconds : "" });
    const q = plan && plan.quota;
    const limit = h("input", { type: "number", min: 1, name: "plan_quota_limit", inputmode: "numeric", value: q ? q.limit : "" });
    const period = h(
      "select",
      { name: "plan_quota_period", "aria-label": "Quota period" },
      PERIODS.map((p) => h("option", { value: p, selected: q ? q.period === p : p === "month" }, p)),
    );
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      { class: "modal-body", novalidate: true },
      field("Name", name, { name: "name", hint: "What the plan is sold as, e.g. Free or Pro." }),
      field("Rate limit", h("div", { class: "inline" }, requests, h("span", {}, "requests per"), per, h("span", {}, "seconds")), {
        name: "rate_limit",
        optional: true,
        hint: "Pooled over all of an account's keys, on top of each key's own. Blank: none.",
      }),
      field("Quota", h("div", { class: "inline" }, limit, h("span", {}, "units per"), period), {
        name: "quota",
        optional: true,
        hint: "Pooled over all of an account's keys; UTC calendar periods, total never resets. Blank: none.",
      }),
      error,
      h(
        "div",
        { class: "modal-actions" },
        h("button", { type: "button", class: "btn", onclick: () => close() }, "Cancel"),
        h("button", { type: "submit", class: "btn primary" }, plan ? "Save plan" : "Create plan"),
      ),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!name.value.trim()) return showFieldError(form, { field: "name", detail: "A name is required." }, error);
      const body = {
        name: name.value.trim(),
        rate_limit: requests.value || per.value ? { requests: Number(requests.value), per_seconds: Number(per.value || 60) } : null,
        quota: limit.value ? { limit: Number(limit.value), period: period.value } : null,
      };
      try {
        close(plan ? await api("PATCH", `/plans/${encodeURIComponent(plan.id)}`, body) : await api("POST", "/plans", body));
      } catch (e) {
        showFieldError(form, e, error);
      }
    });
    setTimeout(() => name.focus(), 0);
    return form;
  });
}

/** The plans page (`#/plans`). */
export async function plansPage(root, app) {
  const writer = canWritePlans(app);
  const body = h("tbody", {});
  const heading = h(
    "div",
    { class: "account-bar" },
    h("div", { class: "account-id" }, h("span", { class: "eyebrow" }, "Plans"), h("strong", { class: "account-name" }, "Plans")),
    h(
      "div",
      { class: "account-actions" },
      h("a", { class: "btn", href: "#/" }, "Back to keys"),
      writer
        ? h("button", { type: "button", class: "btn primary", id: "create-plan", onclick: async () => {
            const created = await planForm(null);
            if (created) {
              toast(`Plan “${created.name}” created`);
              await load();
            }
          } }, "New plan")
        : null,
    ),
  );
  root.append(
    heading,
    h("p", { class: "muted" }, "A plan's limits hold for an account as a whole: all of its keys together, on top of each key's own limits."),
    h(
      "table",
      { class: "keys", id: "plans-table" },
      h("thead", {}, h("tr", {}, ["Name", "Rate limit", "Quota", "ID", ""].map((t) => h("th", { scope: "col" }, t)))),
      body,
    ),
  );

  async function load() {
    let plans;
    try {
      plans = await all("/plans");
    } catch (e) {
      toast(problem(e), "error");
      return;
    }
    clear(body);
    if (!plans.length) {
      body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No plans yet.")));
    }
    for (const plan of plans) {
      const actions = writer
        ? h(
            "div",
            { class: "inline" },
            h("button", { type: "button", class: "btn", "aria-label": `Edit plan ${plan.name}`, onclick: async () => {
              const saved = await planForm(plan);
              if (saved) {
                toast(`Plan “${saved.name}” saved`);
                await load();
              }
            } }, "Edit"),
            h("button", { type: "button", class: "btn danger", "aria-label": `Delete plan ${plan.name}`, onclick: async () => {
              const ok = await confirmDialog({
                title: `Delete plan “${plan.name}”?`,
                message: "A plan some account is on cannot be deleted: move those accounts to another plan first.",
                confirm: "Delete plan",
                danger: true,
                // 204 has no body: confirm with true, not the empty answer.
                onConfirm: async () => {
                  await api("DELETE", `/plans/${encodeURIComponent(plan.id)}`);
                  return true;
                },
              });
              if (ok) {
                toast(`Plan “${plan.name}” deleted`);
                await load();
              }
            } }, "Delete"),
          )
        : null;
      body.append(
        h(
          "tr",
          { "data-plan-id": plan.id },
          h("td", {}, h("strong", {}, plan.name)),
          h("td", {}, rateText(plan.rate_limit)),
          h("td", {}, quotaText(plan.quota)),
          h("td", {}, h("code", {}, plan.id)),
          h("td", {}, actions),
        ),
      );
    }
  }
  await load();
}

/** The account bar's plan picker: a select of every plan and "No plan",
 * disabled for tokens that may not change the account's plan. */
export function planPicker(app, account, onChange) {
  const select = h("select", { id: "plan-picker", name: "plan", disabled: !canWritePlans(app) });
  const wrap = h("div", { class: "account-id" }, h("label", { for: "plan-picker", class: "eyebrow" }, "Plan"), select);
  select.append(h("option", { value: "" }, account.plan_id ? "…" : "No plan"));
  all("/plans")
    .then((plans) => {
      clear(select).append(
        h("option", { value: "", selected: !account.plan_id }, "No plan"),
        ...plans.map((p) =>
          h("option", { value: p.id, selected: p.id === account.plan_id }, `${p.name} (${rateText(p.rate_limit)}, quota ${quotaText(p.quota)})`),
        ),
      );
    })
    .catch((e) => toast(problem(e), "error"));
  select.addEventListener("change", async () => {
    const plan_id = select.value || null;
    try {
      await api("PATCH", `/accounts/${encodeURIComponent(account.id)}`, { plan_id });
      toast(plan_id ? "Plan changed" : "Account taken off its plan");
      await onChange();
    } catch (e) {
      toast(problem(e), "error");
    }
  });
  return wrap;
}
