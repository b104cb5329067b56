// Test support for the browser tests: a real keygate binary on a temp
// SQLite file, a real upstream HTTP server, Debian's Chromium through
// playwright-core, and a small admin API client. Nothing is built here:
// the binary comes from `KEYGATE_BIN` (default target/debug/keygate).

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "..");
// The README's screenshots are refreshed with SCREENSHOTS_DIR=docs/screenshots;
// ordinary runs write under target/ so the tree stays clean.
export const screenshots = path.resolve(repo, process.env.SCREENSHOTS_DIR ?? path.join("target", "screenshots"));
export const OWNER_TOKEN = "e2e-owner-token-" + Math.random().toString(36).slice(2);

const BIN = path.resolve(repo, process.env.KEYGATE_BIN || "target/debug/keygate");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

/** An upstream answering 200 with what it received, counting requests. */
export async function startUpstream() {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, keyId: req.headers["x-keygate-key-id"] });
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true, path: req.url }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise((r) => server.close(r)) };
}

/** keygate serving proxy and admin on port 0, in front of `upstreamUrl`,
 * with `KEYGATE_ADMIN_TOKEN` set to `OWNER_TOKEN`; `extraYaml`: more config lines. */
export async function startKeygate(upstreamUrl, extraYaml = []) {
  if (!existsSync(BIN)) throw new Error(`keygate binary not found at ${BIN}: run \`cargo build\` first or set KEYGATE_BIN`);
  const dir = mkdtempSync(path.join(tmpdir(), "keygate-e2e-"));
  const config = path.join(dir, "keygate.yaml");
  writeFileSync(
    config,
    [
      "proxy:",
      "  listen: 127.0.0.1:0",
      "admin:",
      "  listen: 127.0.0.1:0",
      "store:",
      `  url: sqlite://${path.join(dir, "keygate.db")}`,
      "upstream:",
      `  url: ${upstreamUrl}`,
      "usage:",
      "  flush_interval_ms: 200",
      ...extraYaml,
      "",
    ].join("\n"),
  );
  const child = spawn(BIN, ["serve", "--config", config], {
    env: { ...process.env, KEYGATE_ADMIN_TOKEN: OWNER_TOKEN, NO_COLOR: "1", RUST_LOG: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const addrs = await new Promise((resolve, reject) => {
    const found = {};
    const timer = setTimeout(() => reject(new Error("keygate did not report its listeners in 20 s:\n" + log)), 20000);
    const onData = (chunk) => {
      log += chunk.toString();
      const clean = log.replace(/\x1b\[[0-9;]*m/g, "");
      const proxy = clean.match(/proxy listening addr=(\S+)/);
      const admin = clean.match(/admin listening addr=(\S+)/);
      if (proxy) found.proxy = proxy[1];
      if (admin) found.admin = admin[1];
      if (found.proxy && found.admin) {
        clearTimeout(timer);
        resolve(found);
      }
    };
    child.stderr.on("data", onData);
    child.stdout.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`keygate exited with ${code} before listening:\n${log}`));
    });
  });
  const kg = {
    adminUrl: `http://${addrs.admin}`,
    proxyUrl: `http://${addrs.proxy}`,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return kg;
}

/** Calls the admin API; throws on a non-2xx answer. */
export async function admin(kg, method, path, body, token = OWNER_TOKEN) {
  const res = await fetch(kg.adminUrl + "/v1" + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** One request through the proxy with `secret`; `{status, code}`. */
export async function proxyCall(kg, secret, method = "GET", route = "/orders") {
  const res = await fetch(kg.proxyUrl + route, {
    method,
    headers: { authorization: `Bearer ${secret}` },
    body: method === "GET" || method === "HEAD" ? undefined : "{}",
  });
  const text = await res.text();
  let code = null;
  try {
    code = JSON.parse(text).code || null;
  } catch (e) {
    code = null;
  }
  return { status: res.status, code };
}

/** Debian's headless Chromium with the flags this machine needs (no
 * background networking: the machine has no internet). */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's package (apt-get install chromium) or set CHROMIUM_BIN`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A page that fails the test on any console error, page error or
 * `alert()` (an XSS payload that ran). */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, ...options });
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  page.problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") page.problems.push("console: " + m.text());
  });
  page.on("pageerror", (e) => page.problems.push("pageerror: " + e.message));
  page.on("dialog", async (d) => {
    page.problems.push(`${d.type()}() was called: ${d.message()}`);
    await d.dismiss();
  });
  return page;
}

/** Saves a screenshot under docs/screenshots/. Notifications are cleared
 * first unless `toasts: true`, so each picture shows its one state. */
export async function shot(page, name, { toasts = false, ...options } = {}) {
  mkdirSync(screenshots, { recursive: true });
  if (!toasts) await page.evaluate(() => document.querySelectorAll(".toast").forEach((t) => t.remove()));
  await page.screenshot({ path: path.join(screenshots, name), ...options });
}

/** Signs in at the dashboard with `token`. */
export async function signIn(page, kg, token = OWNER_TOKEN) {
  await page.goto(kg.adminUrl + "/");
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#app").waitFor({ state: "visible" });
}

/** Polls `fn` until it returns truthy (or throws the last failure). */
export async function eventually(fn, timeoutMs = 10000, stepMs = 150) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = new Error("condition not met");
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw last;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
