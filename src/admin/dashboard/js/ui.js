// DOM building blocks. Every string from the API reaches the page through
// `textContent` or an attribute set with `setAttribute`: nothing here ever
// parses a string as HTML, so a key named `<img onerror=…>` stays text.

import * as fmt from "./format.js";

/** `h("button", {class: "btn", onclick}, "Save")`: an element with
 * attributes, properties (`on…` handlers, `value`, `checked`, …) and
 * children (nodes, or strings added as text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (["value", "checked", "disabled", "hidden", "selected", "required"].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, or strings as text), skipping null and false:
 * unlike `Element.append`, which would print "null". */
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

/** A small inline icon from a fixed set (paths are ours, never data). */
const ICONS = {
  copy: "M8 8h11v11H8zM5 16H4V4h12v1",
  more: "M5 12h.5M12 12h.5M19 12h.5",
  plus: "M12 5v14M5 12h14",
  search: "M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14zM21 21l-5-5",
  download: "M12 4v11M7 10l5 5 5-5M5 20h14",
  warn: "M12 3 2 21h20zM12 10v5M12 18h.01",
  back: "M15 5l-7 7 7 7",
  key: "M14 10a4 4 0 1 0-4 4l1 1h2v2h2v2h3v-3l-4-4z",
  check: "M5 13l4 4L19 7",
};

export function icon(name) {
  return svg(
    "svg",
    { class: "icon", viewBox: "0 0 24 24", width: 16, height: 16, "aria-hidden": "true", focusable: "false" },
    svg("path", { d: ICONS[name] || "" }),
  );
}

// ---- notifications -------------------------------------------------------

export function toast(message, kind = "ok") {
  const region = document.getElementById("toasts");
  const item = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message),
    h("button", { class: "toast-close", type: "button", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
  );
  region.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 10000 : 5000);
}

/** A message for an ApiError, or anything thrown. */
export function problem(e) {
  if (e && e.code === "forbidden") return "Your admin token may not do this.";
  if (e && e.code === "api_access_disabled") return "API access is disabled for this account.";
  if (e && e.detail) return e.detail;
  return (e && e.message) || "Something went wrong.";
}

// ---- clipboard -----------------------------------------------------------

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    // Not a secure context (plain http on a LAN address): the old way.
    const area = h("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e2) {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

/** A button that copies `text`; `label` names what for screen readers. */
export function copyButton(text, label, { withText = false } = {}) {
  const btn = h(
    "button",
    { type: "button", class: withText ? "btn" : "icon-btn", "aria-label": label, title: label, "data-copy": "" },
    icon("copy"),
    withText ? h("span", {}, "Copy") : null,
  );
  btn.addEventListener("click", async () => {
    const ok = await copyText(text);
    toast(ok ? "Copied to the clipboard" : "Copy failed: select the text and copy it by hand", ok ? "ok" : "error");
  });
  return btn;
}

// ---- badges and times ----------------------------------------------------

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

export function statusBadge(status) {
  return badge(fmt.statusLabel(status), "status-" + status);
}

export function permissionBadge(permission) {
  return badge(fmt.permissionLabel(permission), "perm-" + permission);
}

/** Relative time with the exact time on hover, or `empty` when unset. */
export function timeCell(iso, empty = "Never", relative = true) {
  if (!iso) return h("span", { class: "muted" }, empty);
  return h(
    "time",
    { datetime: iso, title: fmt.dateTime(iso) },
    relative ? fmt.relative(iso) : fmt.date(iso),
  );
}

// ---- dialogs -------------------------------------------------------------

/** A modal `<dialog>` (native focus trap and Escape). `build(close)`
 * returns its content; resolves with what `close(value)` is given. */
export function modal(title, build, { wide = false, label = "dialog-title" } = {}) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const id = label + "-" + Math.random().toString(36).slice(2, 8);
    const dlg = h("dialog", { class: wide ? "modal wide" : "modal", "aria-labelledby": id });
    let result;
    const close = (value) => {
      result = value;
      dlg.close();
    };
    dlg.addEventListener("close", () => {
      dlg.remove();
      if (opener && opener.isConnected && opener.focus) opener.focus();
      resolve(result);
    });
    const heading = h("h2", { id, class: "modal-title" }, title);
    dlg.append(heading, build(close, heading));
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** A yes/no question. `danger` styles the confirm button red. Resolves
 * true when confirmed. `extra` is more content (e.g. a grace period). */
export function confirmDialog({ title, message, confirm, danger = false, extra = null, onConfirm = null }) {
  return modal(title, (close) => {
    const error = h("p", { class: "form-error", role: "alert" });
    const ok = h("button", { type: "submit", class: danger ? "btn danger" : "btn primary" }, confirm);
    const form = h(
      "form",
      { class: "modal-body", method: "dialog" },
      (Array.isArray(message) ? message : [message]).map((m) => (m instanceof Node ? m : h("p", {}, m))),
      extra,
      error,
      h(
        "div",
        { class: "modal-actions" },
        h("button", { type: "button", class: "btn", onclick: () => close(false) }, "Cancel"),
        ok,
      ),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!onConfirm) return close(true);
      ok.disabled = true;
      error.textContent = "";
      try {
        close(await onConfirm());
      } catch (e) {
        error.textContent = problem(e);
        ok.disabled = false;
      }
    });
    setTimeout(() => form.querySelector("button.btn:not(.danger):not(.primary)").focus(), 0);
    return form;
  });
}

// ---- menus ---------------------------------------------------------------

let openMenu = null;

function closeMenu(focusButton) {
  if (!openMenu) return;
  const { list, button } = openMenu;
  list.hidden = true;
  button.setAttribute("aria-expanded", "false");
  openMenu = null;
  if (focusButton) button.focus();
}

document.addEventListener("click", (ev) => {
  if (openMenu && !openMenu.wrap.contains(ev.target)) closeMenu(false);
});

/** An actions menu: a button that opens a list of `items` ({label,
 * action, danger}); arrow keys move, Escape closes. */
export function menu(label, items) {
  const list = h("div", { class: "menu-list", role: "menu", hidden: true });
  const button = h(
    "button",
    { type: "button", class: "icon-btn", "aria-haspopup": "menu", "aria-expanded": "false", "aria-label": label, title: label },
    icon("more"),
  );
  const wrap = h("div", { class: "menu" }, button, list);
  for (const item of items) {
    const mi = h("button", { type: "button", role: "menuitem", class: item.danger ? "danger" : "", tabindex: "-1" }, item.label);
    mi.addEventListener("click", () => {
      closeMenu(true);
      item.action();
    });
    list.append(mi);
  }
  const entries = () => [...list.querySelectorAll("[role=menuitem]")];
  const open = (focusIndex) => {
    if (openMenu && openMenu.list !== list) closeMenu(false);
    list.hidden = false;
    button.setAttribute("aria-expanded", "true");
    openMenu = { list, button, wrap };
    const e = entries();
    if (e.length) e[(focusIndex + e.length) % e.length].focus();
  };
  button.addEventListener("click", () => (list.hidden ? open(0) : closeMenu(true)));
  button.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown") {
      ev.preventDefault();
      open(0);
    } else if (ev.key === "ArrowUp") {
      ev.preventDefault();
      open(-1);
    }
  });
  list.addEventListener("keydown", (ev) => {
    const e = entries();
    const i = e.indexOf(document.activeElement);
    if (ev.key === "ArrowDown") e[(i + 1) % e.length].focus();
    else if (ev.key === "ArrowUp") e[(i - 1 + e.length) % e.length].focus();
    else if (ev.key === "Home") e[0].focus();
    else if (ev.key === "End") e[e.length - 1].focus();
    else if (ev.key === "Escape" || ev.key === "Tab") {
      closeMenu(ev.key === "Escape");
      return;
    } else return;
    ev.preventDefault();
  });
  return wrap;
}

// ---- forms ---------------------------------------------------------------

/** A labelled field: `control` gets an id; `hint` becomes its description;
 * an error line is kept under it for validation messages. */
export function field(label, control, { hint = null, name = null, optional = false } = {}) {
  const id = "f-" + (name || Math.random().toString(36).slice(2, 8));
  // A compound control (select + date) is labelled by its first part.
  const target = control.matches("input, select, textarea") ? control : control.querySelector("input, select, textarea");
  target.id = id;
  const hintEl = hint ? h("p", { class: "hint", id: id + "-hint" }, hint) : null;
  const err = h("p", { class: "field-error", id: id + "-error", "data-error-for": name || "" });
  target.setAttribute("aria-describedby", [hintEl ? id + "-hint" : "", id + "-error"].join(" ").trim());
  return h(
    "div",
    { class: "field", "data-field": name || "" },
    h("label", { for: id }, label, optional ? h("span", { class: "optional" }, " (optional)") : null),
    control,
    hintEl,
    err,
  );
}

/** Shows an API validation error next to its field, or in `fallback`. */
export function showFieldError(form, e, fallback) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  fallback.textContent = "";
  const name = e && e.field ? String(e.field).replace(/^\./, "").split(/[.[]/)[0] : null;
  const target = name ? form.querySelector(`.field[data-field="${CSS.escape(name)}"]`) : null;
  if (target) {
    target.querySelector(".field-error").textContent = problem(e);
    const control = target.querySelector("input, select, textarea");
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
  } else {
    fallback.textContent = problem(e);
  }
}

/** A quota's fill as a labelled meter: "1,234 used · 8,766 left · resets
 * in 3 days". `id` names it for tests. `quota` (the limit and period) may be
 * null where only the usage is known, as for an account's pooled quota. */
export function quotaMeter(quota, usage, { id = null, compact = false } = {}) {
  if (!usage) return h("span", { class: "muted" }, "No quota");
  const fill = fmt.quotaFill(usage);
  const total = Math.max(1, usage.used + usage.remaining);
  const level = fill >= 1 ? "full" : fill >= 0.8 ? "high" : "ok";
  const resets = usage.resets_at ? `resets ${fmt.relative(usage.resets_at)}` : "never resets";
  const text = `${fmt.number(usage.used)} used · ${fmt.number(usage.remaining)} left`;
  return h(
    "div",
    { class: `quota ${compact ? "compact" : ""}`, id, "data-level": level },
    // A <meter>, not a styled <div>: the dashboard's CSP allows no inline
    // style attributes.
    h("meter", {
      class: "quota-bar",
      "aria-label": `Quota: ${text}`,
      min: 0,
      max: total,
      low: 0.8 * total,
      high: 0.999 * total,
      optimum: 0,
      value: usage.used,
    }),
    h("span", { class: "quota-text" }, compact ? `${fmt.number(usage.used)} / ${fmt.number(usage.used + usage.remaining)}` : `${text} · ${resets}`),
    compact || !quota ? null : h("span", { class: "muted small" }, ` (${fmt.quotaLimit(quota)})`),
  );
}
