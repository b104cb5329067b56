// keygate dashboard: sign-in, who the token is, and the hash routes
//   #/                  keys of the last-used (or first) account
//   #/accounts/{acc}    keys of an account
//   #/keys/{key}        one key's detail
//   #/plans             plans (owners and unconfined admins edit them)
//   #/webhooks          webhooks (owners and unconfined admins)
//   #/webhooks/{wh}     one webhook's deliveries log
// Plain modules, no framework, no build step; served by the admin port.

import { all, me, token, setToken, whenUnauthorized } from "./js/api.js";
import { createAccount } from "./js/forms.js";
import { keysPage } from "./js/keys.js";
import { detailPage } from "./js/detail.js";
import { plansPage } from "./js/plans.js";
import { webhooksPage, deliveriesPage } from "./js/webhooks.js";
import { h, clear, toast, problem, badge } from "./js/ui.js";

const ACCOUNT_KEY = "keygate.account";

const app = {
  me: null,
  accounts: [],
  canWrite: false,
  go(hash, force = false) {
    if (location.hash === hash && force) route();
    else location.hash = hash;
  },
  async refreshAccounts() {
    const list = await all("/accounts");
    app.accounts = list.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  },
  rememberAccount(id) {
    sessionStorage.setItem(ACCOUNT_KEY, id);
  },
};

const $ = (id) => document.getElementById(id);

function showSignIn(message) {
  $("app").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function signOut(message) {
  setToken(null);
  sessionStorage.removeItem(ACCOUNT_KEY);
  app.me = null;
  showSignIn(message);
}

/** Asks the server who the token is; false when it refuses it. */
async function start() {
  try {
    app.me = await me();
  } catch (e) {
    signOut(e.status === 401 ? "That admin token was refused." : problem(e));
    return false;
  }
  app.canWrite = app.me.role === "owner" || app.me.role === "admin";
  try {
    await app.refreshAccounts();
  } catch (e) {
    toast(problem(e), "error");
  }
  $("who-name").textContent = app.me.name;
  clear($("who-role")).append(badge(app.me.role, "role-" + app.me.role));
  $("who-scope").textContent = app.me.account_id ? "one account" : "";
  $("who").hidden = false;
  $("signin").hidden = true;
  $("app").hidden = false;
  document.body.classList.toggle("read-only", !app.canWrite);
  return true;
}

let routing = 0;

async function route() {
  if (!app.me) return;
  const seq = ++routing;
  const root = $("app");
  const view = h("div", { class: "view" });
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  clear(root).append(view);
  window.scrollTo(0, 0);
  if (parts[0] === "plans") {
    document.title = "Plans · keygate";
    await plansPage(view, app);
  } else if (parts[0] === "webhooks" && parts[1]) {
    document.title = "Deliveries · keygate";
    await deliveriesPage(view, app, parts[1]);
  } else if (parts[0] === "webhooks") {
    document.title = "Webhooks · keygate";
    await webhooksPage(view, app);
  } else if (parts[0] === "keys" && parts[1]) {
    document.title = "Key · keygate";
    await detailPage(view, app, parts[1]);
  } else {
    let account = parts[0] === "accounts" ? app.accounts.find((a) => a.id === parts[1]) : null;
    if (!account) {
      const remembered = sessionStorage.getItem(ACCOUNT_KEY);
      account = app.accounts.find((a) => a.id === remembered) || app.accounts[0];
    }
    if (!account) {
      view.append(noAccounts());
      return;
    }
    app.rememberAccount(account.id);
    document.title = `${account.name} · API keys · keygate`;
    await keysPage(view, app, account);
  }
  if (seq === routing) $("main").focus({ preventScroll: true });
}

function noAccounts() {
  const box = h("div", { class: "empty" }, h("h1", {}, "No accounts yet"));
  if (app.canWrite && !app.me.account_id) {
    box.append(
      h("p", {}, "Keys belong to an account (a tenant or team). Create the first one to start issuing keys."),
      h("button", { type: "button", class: "btn primary", onclick: async () => {
        const created = await createAccount();
        if (created) {
          await app.refreshAccounts();
          app.go(`#/accounts/${created.id}`, true);
        }
      } }, "Create account"),
    );
  } else {
    box.append(h("p", {}, "This admin token sees no account. Ask an owner to create one."));
  }
  return box;
}

whenUnauthorized(() => signOut("Your session ended: the admin token is no longer accepted."));

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const value = $("token").value.trim();
  if (!value) {
    $("signin-error").textContent = "Paste an admin token.";
    return;
  }
  setToken(value);
  const button = ev.target.querySelector("button[type=submit]");
  button.disabled = true;
  const ok = await start();
  button.disabled = false;
  if (ok) route();
});

$("sign-out").addEventListener("click", () => signOut(""));
window.addEventListener("hashchange", route);

if (token()) {
  start().then((ok) => ok && route());
} else {
  showSignIn("");
}
