// The dashboard as an owner uses it, in a real browser against a real
// keygate and a real upstream: sign in, create a key and use it through the
// proxy, watch usage arrive, edit, rotate, revoke, bulk revoke, search and
// filter, and keyboard use. Screenshots of each main state go to
// docs/screenshots/.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { admin, eventually, launchBrowser, newPage, proxyCall, shot, signIn, startKeygate, startUpstream } from "./support.js";

describe("dashboard, signed in as an owner", () => {
  let upstream;
  let kg;
  let browser;
  let page;
  let acme;
  let closed;
  let secret; // the created key's current secret
  let oldSecret;

  before(async () => {
    upstream = await startUpstream();
    kg = await startKeygate(upstream.url);
    browser = await launchBrowser();
    acme = await admin(kg, "POST", "/accounts", { name: "Acme Corp" });
    closed = await admin(kg, "POST", "/accounts", { name: "Legacy Co", api_access: false });
    // A few keys so the page looks like one in use.
    const seed = [
      { name: "reporting-service", permission: "read", description: "Nightly export to the warehouse" },
      { name: "mobile-app", permission: "write", environment: "test", description: "Staging builds" },
      { name: "partner-webhooks", permission: "write", expires_at: new Date(Date.now() + 30 * 86400e3).toISOString() },
    ];
    for (const body of seed) {
      const { secret: s } = await admin(kg, "POST", "/keys", { account_id: acme.id, ...body });
      if (body.name === "reporting-service") for (let i = 0; i < 12; i++) await proxyCall(kg, s);
    }
    const { key: paused } = await admin(kg, "POST", "/keys", { account_id: acme.id, name: "old-cron-job", permission: "read" });
    await admin(kg, "PATCH", `/keys/${paused.id}`, { enabled: false });
    page = await newPage(browser);
  });

  after(async () => {
    if (page) assert.deepEqual(page.problems, [], "no console error, page error or alert() during the run");
    await browser?.close();
    await kg?.stop();
    await upstream?.close();
  });

  test("the sign-in page asks for an admin token and refuses a wrong one", async () => {
    await page.goto(kg.adminUrl + "/");
    await page.getByLabel("Admin token").waitFor();
    await shot(page, "01-sign-in.png");
    await page.getByLabel("Admin token").fill("not-a-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("That admin token was refused.").waitFor();
    // The refused 401 is logged by Chromium as a failed resource load.
    page.problems = page.problems.filter((p) => !p.includes("401"));
  });

  test("signing in shows the account bar and its keys", async () => {
    await signIn(page, kg);
    await page.locator("#keys-table tbody tr").first().waitFor();
    assert.equal(await page.locator("[data-account-id]").textContent(), acme.id);
    assert.equal(await page.locator("#keys-table tbody tr").count(), 4);
    assert.equal(await page.evaluate(() => document.cookie), "", "no cookie: the token is a Bearer header");
    assert.ok(await page.evaluate(() => sessionStorage.getItem("keygate.admin_token")), "token kept in session storage");
    const row = page.locator("tr", { hasText: "reporting-service" });
    assert.match(await row.locator(".col-usage").textContent(), /12/);
    assert.match(await row.textContent(), /Nightly export to the warehouse/);
    assert.match(await page.locator("tr", { hasText: "old-cron-job" }).textContent(), /Disabled/);
    assert.match(await page.locator("tr", { hasText: "partner-webhooks" }).locator(".col-last-used").textContent(), /Never/);
  });

  test("create a key: the secret is shown once, with Copy and Download", async () => {
    await page.getByRole("button", { name: "Create API key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create API key" });
    await dialog.getByLabel("Name").fill("billing-export");
    await dialog.getByLabel("Description").fill("Invoices to the ERP");
    await dialog.getByText("Every method, including POST").click();
    await dialog.getByLabel("Expires").selectOption("90");
    await dialog.getByRole("button", { name: "Create key" }).click();
    const shown = page.getByRole("dialog", { name: "Your new API key" });
    await shown.waitFor();
    secret = await shown.locator("[data-secret]").inputValue();
    assert.match(secret, /^kg_live_[0-9A-Za-z]{38}$/);
    assert.match(await shown.textContent(), /cannot be shown again/);
    await shown.getByRole("button", { name: "Copy" }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
    const [download] = await Promise.all([page.waitForEvent("download"), shown.getByRole("button", { name: "Download" }).click()]);
    assert.equal(download.suggestedFilename(), "billing-export.txt");
    await shot(page, "03-create-secret.png", { toasts: true });
    await shown.getByRole("button", { name: "I've saved it" }).click();
    await page.locator("tr", { hasText: "billing-export" }).waitFor();
    assert.match(await page.locator("tr", { hasText: "billing-export" }).textContent(), /Write/);
    assert.ok(!(await page.content()).includes(secret), "the secret is gone from the page once the dialog is closed");
  });

  test("the new key works through the proxy, and usage and last used update", async () => {
    for (let i = 0; i < 5; i++) assert.equal((await proxyCall(kg, secret)).status, 200);
    const row = page.locator("tr", { hasText: "billing-export" });
    assert.match(await row.locator(".col-last-used").textContent(), /Never/);
    await eventually(async () => {
      await page.reload();
      await row.waitFor();
      return /^5$/.test((await row.locator(".col-usage").textContent()).trim());
    });
    assert.match(await row.locator(".col-last-used").textContent(), /just now|second/);
    assert.ok(await row.locator(".col-last-used time").getAttribute("title"), "exact time on hover");
    await shot(page, "02-keys.png");
  });

  test("edit the key's permission to read only: writes are then refused", async () => {
    const row = page.locator("tr", { hasText: "billing-export" });
    await row.getByRole("button", { name: "Actions for billing-export" }).click();
    await page.getByRole("menuitem", { name: "Edit" }).click();
    const dialog = page.getByRole("dialog", { name: "Edit key" });
    await dialog.getByText("GET, HEAD and OPTIONS requests").click();
    await dialog.getByRole("button", { name: "Save changes" }).click();
    await page.getByText("Key “billing-export” saved").waitFor();
    assert.match(await row.textContent(), /Read only/);
    assert.deepEqual(await proxyCall(kg, secret, "POST"), { status: 403, code: "insufficient_permission" });
    assert.equal((await proxyCall(kg, secret, "GET")).status, 200);
  });

  test("key detail: fields, usage charts, refusals by code and the audit trail", async () => {
    await page.locator("tr", { hasText: "billing-export" }).getByRole("link", { name: "billing-export" }).click();
    await page.locator("#key-title").waitFor();
    assert.equal(await page.locator("#key-title").textContent(), "billing-export");
    const fields = await page.locator("dl.fields").textContent();
    assert.match(fields, /Read only/);
    assert.match(fields, /Invoices to the ERP/);
    await eventually(async () => {
      await page.reload();
      await page.locator("#audit li").first().waitFor();
      await page.locator("svg.chart").waitFor({ timeout: 3000 });
      return (await page.locator("#refusals").count()) > 0;
    });
    assert.ok((await page.locator("svg.chart rect.ok").count()) >= 1, "hourly bars drawn");
    assert.match(await page.locator("#refusals").textContent(), /insufficient_permission/);
    const audit = await page.locator("#audit").textContent();
    assert.match(audit, /key\.create/);
    assert.match(audit, /key\.update/);
    assert.match(audit, /permission: write → read/);
    await page.getByRole("tab", { name: "Last 90 days, per day" }).click();
    assert.ok((await page.locator("svg.chart rect.ok").count()) >= 1, "daily bars drawn");
    await page.getByRole("tab", { name: "Last 7 days, per hour" }).click();
    await shot(page, "04-key-detail.png", { fullPage: true });
  });

  test("rotate: the confirmation names the key; the old secret is then refused and the new one works", async () => {
    await page.getByRole("button", { name: "Rotate" }).click();
    const confirm = page.getByRole("dialog", { name: "Rotate “billing-export”?" });
    await confirm.waitFor();
    assert.match(await confirm.textContent(), /billing-export/);
    await shot(page, "05-rotate-confirm.png");
    await confirm.getByLabel("Keep the old secret working for").selectOption("0");
    await confirm.getByRole("button", { name: "Rotate key" }).click();
    const shown = page.getByRole("dialog", { name: "Your new API key" });
    oldSecret = secret;
    secret = await shown.locator("[data-secret]").inputValue();
    assert.notEqual(secret, oldSecret);
    await shown.getByRole("button", { name: "I've saved it" }).click();
    assert.deepEqual(await proxyCall(kg, oldSecret), { status: 401, code: "key_revoked" });
    assert.equal((await proxyCall(kg, secret)).status, 200);
    await eventually(async () => /key\.rotate/.test(await page.locator("#audit").textContent()));
  });

  test("revoke: the confirmation says it is irreversible; the key is then refused", async () => {
    await page.locator("#detail-revoke").click();
    const confirm = page.getByRole("dialog", { name: "Revoke “billing-export”?" });
    assert.match(await confirm.textContent(), /cannot be undone/);
    await shot(page, "06-revoke-confirm.png");
    await confirm.getByRole("button", { name: "Revoke key" }).click();
    await page.getByText("Key “billing-export” revoked").waitFor();
    await eventually(async () => (await page.locator(".detail-head .badge").first().textContent()) === "Revoked");
    assert.equal(await page.locator("#detail-rotate").count(), 0, "no actions on a revoked key");
    assert.deepEqual(await proxyCall(kg, secret), { status: 401, code: "key_revoked" });
  });

  test("bulk revoke: select several rows and revoke them with one confirmation", async () => {
    const made = [];
    for (const name of ["ci-runner-1", "ci-runner-2", "ci-runner-3"]) {
      made.push(await admin(kg, "POST", "/keys", { account_id: acme.id, name, permission: "read" }));
    }
    await page.goto(kg.adminUrl + `/#/accounts/${acme.id}`);
    await page.locator("tr", { hasText: "ci-runner-3" }).waitFor();
    await page.getByLabel("Select ci-runner-1").check();
    await page.getByLabel("Select ci-runner-2").check();
    assert.equal(await page.locator("#bulk-bar span").first().textContent(), "2 selected");
    await page.locator("#bulk-revoke").click();
    const confirm = page.getByRole("dialog", { name: "Revoke 2 keys?" });
    const text = await confirm.textContent();
    assert.match(text, /ci-runner-1/);
    assert.match(text, /ci-runner-2/);
    assert.doesNotMatch(text, /ci-runner-3/);
    await shot(page, "07-bulk-revoke-confirm.png");
    await confirm.getByRole("button", { name: "Revoke 2 keys" }).click();
    await page.getByText("2 keys revoked").waitFor();
    await eventually(async () => /Revoked/.test(await page.locator("tr", { hasText: "ci-runner-1" }).textContent()));
    assert.match(await page.locator("tr", { hasText: "ci-runner-2" }).textContent(), /Revoked/);
    assert.match(await page.locator("tr", { hasText: "ci-runner-3" }).textContent(), /Active/);
    assert.equal((await proxyCall(kg, made[0].secret)).status, 401);
    assert.equal((await proxyCall(kg, made[2].secret)).status, 200);
  });

  test("search as you type and the permission and status filters", async () => {
    await page.getByLabel("Search keys").fill("runner");
    await eventually(async () => (await page.locator("#keys-table tbody tr").count()) === 3);
    await page.getByLabel("Status").selectOption("revoked");
    await eventually(async () => (await page.locator("#keys-table tbody tr").count()) === 2);
    await page.getByLabel("Search keys").fill("");
    await page.getByLabel("Status").selectOption("");
    await page.getByLabel("Permission").selectOption("write");
    await eventually(async () => {
      const rows = await page.locator("#keys-table tbody tr").allTextContents();
      return rows.length === 2 && rows.every((r) => /Write/.test(r));
    });
    await page.getByLabel("Search keys").fill("warehouse"); // a description
    await eventually(async () => (await page.locator("#keys-empty").isVisible()) && /No keys match/.test(await page.locator("#keys-empty").textContent()));
    await page.getByRole("button", { name: "Clear filters" }).click();
    await eventually(async () => (await page.locator("#keys-table tbody tr").count()) === 8);
  });

  test("disable and enable from the actions menu, by keyboard alone", async () => {
    const button = page.getByRole("button", { name: "Actions for reporting-service" });
    await button.focus();
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "View details");
    await page.keyboard.press("Escape");
    assert.equal(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), "Actions for reporting-service");
    await page.keyboard.press("Enter");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Disable");
    await page.keyboard.press("Enter");
    await page.getByText("Key “reporting-service” disabled").waitFor();
    const row = page.locator("tr", { hasText: "reporting-service" });
    assert.match(await row.textContent(), /Disabled/);
    await row.getByRole("button", { name: "Actions for reporting-service" }).click();
    await page.getByRole("menuitem", { name: "Enable" }).click();
    await eventually(async () => /Active/.test(await row.textContent()));
  });

  test("an account without API access shows the banner instead of the create button", async () => {
    await page.getByLabel("Account", { exact: true }).selectOption(closed.id);
    await page.locator("#api-access-banner").waitFor();
    assert.match(await page.locator("#api-access-banner").textContent(), /API access is disabled for this account/);
    assert.equal(await page.getByRole("button", { name: "Create API key" }).count(), 0);
    await shot(page, "12-api-access-disabled.png");
    await page.getByLabel("Account", { exact: true }).selectOption(acme.id);
    await page.getByRole("button", { name: "Create API key" }).waitFor();
  });

  test("a validation error from the API is shown next to its field", async () => {
    await page.getByRole("button", { name: "Create API key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create API key" });
    await dialog.getByLabel("Name").fill("bad-ranges");
    await dialog.getByText("Limits and restrictions").click();
    await dialog.getByLabel("Allowed IP ranges").fill("not-a-cidr");
    await dialog.getByRole("button", { name: "Create key" }).click();
    await eventually(async () => (await dialog.locator('[data-field="allowed_ips"] .field-error').textContent()).length > 0);
    page.problems = page.problems.filter((p) => !p.includes("422"));
    await dialog.getByRole("button", { name: "Cancel" }).click();
    assert.equal(await page.locator("tr", { hasText: "bad-ranges" }).count(), 0);
  });

  test("paging: Load more follows the cursor", async () => {
    const paging = await admin(kg, "POST", "/accounts", { name: "Paging Co" });
    for (let i = 1; i <= 27; i++) {
      await admin(kg, "POST", "/keys", { account_id: paging.id, name: `batch-${String(i).padStart(2, "0")}`, permission: "read" });
    }
    await page.goto(kg.adminUrl + `/#/accounts/${paging.id}`);
    await page.reload(); // the account list is read at sign-in
    await page.locator("tr", { hasText: "batch-27" }).waitFor();
    assert.equal(await page.locator("#keys-table tbody tr").count(), 25);
    await page.getByRole("button", { name: "Load more" }).click();
    await eventually(async () => (await page.locator("#keys-table tbody tr").count()) === 27);
    assert.ok(await page.locator("tr", { hasText: "batch-01" }).isVisible());
    assert.equal(await page.getByRole("button", { name: "Load more" }).isVisible(), false);
    assert.match(await page.locator(".count").textContent(), /27 keys shown/);
  });

  test("sign out forgets the token", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Admin token").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("keygate.admin_token")), null);
  });
});
