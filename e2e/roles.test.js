// What each admin token sees, that API values are rendered as text, the
// security headers, and the phone-width and dark-mode layouts.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { admin, eventually, launchBrowser, newPage, proxyCall, shot, signIn, startKeygate, startUpstream } from "./support.js";

const XSS = "<img src=x onerror=alert(1)>";

describe("roles, safety and layouts", () => {
  let upstream;
  let kg;
  let browser;
  let acme;
  let other;
  let viewer;
  let confined;
  let xssKey;
  let acmeKeyId;
  const pages = [];

  before(async () => {
    upstream = await startUpstream();
    kg = await startKeygate(upstream.url);
    browser = await launchBrowser();
    acme = await admin(kg, "POST", "/accounts", { name: "Acme Corp" });
    other = await admin(kg, "POST", "/accounts", { name: "Globex" });
    const keys = [
      { name: "reporting-service", permission: "read", description: "Nightly export to the warehouse", calls: 40 },
      { name: "checkout-api", permission: "write", description: "Production access", calls: 7 },
      { name: "mobile-app", permission: "write", environment: "test", description: "Staging builds", calls: 0 },
    ];
    for (const { calls, ...body } of keys) {
      const { key, secret } = await admin(kg, "POST", "/keys", { account_id: acme.id, ...body });
      acmeKeyId = key.id;
      for (let i = 0; i < calls; i++) await proxyCall(kg, secret);
      if (body.name === "checkout-api") await proxyCall(kg, "kg_live_" + "x".repeat(38)); // an unknown key
    }
    await admin(kg, "POST", "/keys", { account_id: other.id, name: "globex-sync", permission: "read" });
    viewer = (await admin(kg, "POST", "/admin-tokens", { name: "support desk", role: "viewer" })).secret;
    confined = (await admin(kg, "POST", "/admin-tokens", { name: "globex admin", role: "admin", account_id: other.id })).secret;
    // Let usage reach the store so the screenshots show it.
    await new Promise((r) => setTimeout(r, 500));
  });

  after(async () => {
    for (const p of pages) assert.deepEqual(p.problems, [], "no console error, page error or alert()");
    await browser?.close();
    await kg?.stop();
    await upstream?.close();
  });

  async function open(options) {
    const p = await newPage(browser, options);
    pages.push(p);
    return p;
  }

  test("every admin response carries the security headers, and the dashboard runs under them", async () => {
    const page = await open();
    const res = await page.goto(kg.adminUrl + "/");
    const h = res.headers();
    assert.match(h["content-security-policy"], /default-src 'none'/);
    assert.match(h["content-security-policy"], /script-src 'self'/);
    assert.match(h["content-security-policy"], /frame-ancestors 'none'/);
    assert.equal(h["x-content-type-options"], "nosniff");
    assert.equal(h["referrer-policy"], "no-referrer");
    assert.equal(h["x-frame-options"], "DENY");
    assert.match(h["content-type"], /^text\/html/);
    for (const path of ["/app.js", "/v1/keys", "/metrics", "/healthz", "/nope"]) {
      const r = await fetch(kg.adminUrl + path);
      assert.match(r.headers.get("content-security-policy") || "", /frame-ancestors 'none'/, path);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff", path);
    }
    await signIn(page, kg);
    await page.locator("#keys-table").waitFor();
  });

  test("a viewer sees everything read-only: no write buttons anywhere", async () => {
    const page = await open();
    await signIn(page, kg, viewer);
    await page.locator("#keys-table tbody tr").first().waitFor();
    assert.match(await page.locator("#who").textContent(), /viewer/);
    assert.equal(await page.getByRole("button", { name: "Create API key" }).count(), 0);
    assert.equal(await page.getByRole("button", { name: "New account" }).count(), 0);
    assert.equal(await page.locator("#keys-table input[type=checkbox]").count(), 0, "no bulk selection");
    await page.getByRole("button", { name: "Actions for reporting-service" }).click();
    const items = await page.getByRole("menuitem").allTextContents();
    assert.deepEqual(items, ["View details"]);
    await page.keyboard.press("Escape");
    await shot(page, "08-viewer.png");
    await page.getByRole("link", { name: "reporting-service" }).click();
    await page.locator("#key-title").waitFor();
    await page.locator("#audit li").first().waitFor();
    for (const id of ["#detail-edit", "#detail-rotate", "#detail-toggle", "#detail-revoke"]) {
      assert.equal(await page.locator(id).count(), 0, id);
    }
    // The account switcher still lists every account: viewers see everything.
    await page.goto(kg.adminUrl + "/#/");
    const options = await page.locator("#account-switch option").allTextContents();
    assert.deepEqual(options.sort(), ["Acme Corp", "Globex"]);
  });

  test("a token confined to an account sees only that account", async () => {
    const page = await open();
    await signIn(page, kg, confined);
    await page.locator("#keys-table tbody tr").first().waitFor();
    assert.equal(await page.locator("#account-switch").count(), 0, "no switcher with a single account");
    assert.equal(await page.locator(".account-name").textContent(), "Globex");
    const names = await page.locator("#keys-table .key-name").allTextContents();
    assert.deepEqual(names, ["globex-sync"]);
    assert.equal(await page.getByRole("button", { name: "Create API key" }).count(), 1, "an admin may write in its account");
    await page.goto(kg.adminUrl + `/#/keys/${acmeKeyId}`);
    await page.getByText("No such key.").waitFor();
    page.problems = page.problems.filter((p) => !p.includes("404"));
  });

  test("phone width: the keys table becomes cards and the dialogs fit", async () => {
    const page = await open({ viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    await signIn(page, kg);
    await page.locator("#keys-table tbody tr").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (overflow ${overflow}px)`);
    await shot(page, "09-phone-keys.png");
    await page.getByRole("button", { name: "Create API key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create API key" });
    await dialog.getByLabel("Name").fill("phone-made");
    const box = await dialog.boundingBox();
    assert.ok(box.width <= 375, "dialog fits the screen");
    await shot(page, "10-phone-create.png");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("link", { name: "checkout-api" }).click();
    await page.locator("svg.chart").waitFor();
    await shot(page, "11-phone-detail.png", { fullPage: true });
  });

  test("dark mode: the keys page and the key detail", async () => {
    const page = await open({ colorScheme: "dark" });
    await signIn(page, kg);
    await page.locator("#keys-table tbody tr").first().waitFor();
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, "rgb(15, 18, 23)", "dark background");
    await shot(page, "14-dark-keys.png");
    await page.getByRole("link", { name: "reporting-service" }).click();
    await page.locator("svg.chart").waitFor();
    await page.locator("#audit li").first().waitFor();
    await shot(page, "15-dark-detail.png", { fullPage: true });
  });

  test("a key named with HTML shows as text and runs nothing", async () => {
    xssKey = (
      await admin(kg, "POST", "/keys", {
        account_id: acme.id,
        name: XSS,
        description: "<script>alert(2)</script>",
        permission: "read",
        metadata: { note: "<b>bold?</b>" },
      })
    ).key;
    const page = await open();
    await signIn(page, kg);
    const row = page.locator(`tr[data-key-id="${xssKey.id}"]`);
    await row.waitFor();
    assert.equal(await row.locator(".key-name").textContent(), XSS);
    assert.equal(await row.locator(".secondary").textContent(), "<script>alert(2)</script>");
    assert.equal(await page.locator("#keys-table img").count(), 0, "no <img> element was made from the name");
    assert.equal(await page.locator("#keys-table script").count(), 0);
    await shot(page, "13-xss-as-text.png", { clip: { x: 0, y: 0, width: 1366, height: 520 } });
    // The detail page, its audit trail and the confirmation dialogs too.
    await row.getByRole("link").click();
    await page.locator("#key-title").waitFor();
    assert.equal(await page.locator("#key-title").textContent(), XSS);
    await eventually(async () => (await page.locator("#audit").textContent()).includes(XSS));
    assert.match(await page.locator("dl.fields").textContent(), /<b>bold\?<\/b>/);
    await page.locator("#detail-revoke").click();
    const confirm = page.getByRole("dialog", { name: `Revoke “${XSS}”?` });
    await confirm.waitFor();
    assert.equal(await page.locator("dialog img, main img").count(), 0);
    await confirm.getByRole("button", { name: "Cancel" }).click();
    // And as typed into the create dialog.
    await page.goto(kg.adminUrl + `/#/accounts/${acme.id}`);
    await page.getByRole("button", { name: "Create API key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create API key" });
    await dialog.getByLabel("Name").fill('"><svg onload=alert(3)>');
    await dialog.getByRole("button", { name: "Create key" }).click();
    const shown = page.getByRole("dialog", { name: "Your new API key" });
    assert.match(await shown.textContent(), /"><svg onload=alert\(3\)>/);
    await shown.getByRole("button", { name: "I've saved it" }).click();
    await page.locator("tr", { hasText: '"><svg onload=alert(3)>' }).waitFor();
    assert.equal(await page.locator("#keys-table svg:not(.icon)").count(), 0);
    await new Promise((r) => setTimeout(r, 300)); // time for an injected handler to fire
    assert.equal(await page.evaluate(() => document.querySelectorAll("img[src=x], svg[onload]").length), 0);
  });
});
