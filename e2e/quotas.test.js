// Quotas in the dashboard: a key created with a quota in the form shows a
// meter on its page that fills as requests spend it, the Adjust quota dialog
// changes what remains, the keys table shows the compact meter, and an
// account on a plan with a quota shows the pooled usage in the account bar.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { admin, eventually, launchBrowser, newPage, proxyCall, shot, signIn, startKeygate, startUpstream } from "./support.js";

describe("quotas", () => {
  let upstream;
  let kg;
  let browser;
  let acme;
  const pages = [];

  before(async () => {
    upstream = await startUpstream();
    kg = await startKeygate(upstream.url);
    browser = await launchBrowser();
    acme = await admin(kg, "POST", "/accounts", { name: "Acme Corp" });
  });

  after(async () => {
    for (const page of pages) assert.deepEqual(page.problems, [], "no console error, page error or alert()");
    await browser?.close();
    await kg?.stop();
    await upstream?.close();
  });

  test("a key created with a quota shows it filling, and the dialog adjusts it", async () => {
    const page = await newPage(browser);
    pages.push(page);
    await signIn(page, kg);
    await page.goto(`${kg.adminUrl}/#/accounts/${acme.id}`);
    await page.locator("#create-key").click();
    await page.getByLabel("Name").fill("metered");
    await page.locator("summary", { hasText: "Limits and restrictions" }).click();
    await page.locator("input[name=quota_limit]").fill("5");
    await page.locator("select[name=quota_period]").selectOption("day");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = await page.locator("input[data-secret]").inputValue();
    await page.getByRole("button", { name: "I've saved it" }).click();

    const [key] = (await admin(kg, "GET", `/keys?account_id=${acme.id}`)).items;
    assert.deepEqual(key.quota, { limit: 5, period: "day" });

    // Three requests spend three units; the fourth and fifth the rest; the
    // sixth is refused.
    for (let i = 0; i < 5; i++) assert.equal((await proxyCall(kg, secret)).status, 200);
    const refused = await proxyCall(kg, secret);
    assert.deepEqual([refused.status, refused.code], [429, "quota_exceeded"]);

    await eventually(async () => (await admin(kg, "GET", `/keys/${key.id}`)).quota_usage.used === 5);
    await page.goto(`${kg.adminUrl}/#/keys/${key.id}`);
    const meter = page.locator("#key-quota");
    await meter.getByText("5 used · 0 left").waitFor();
    assert.equal(await meter.getAttribute("data-level"), "full");
    await shot(page, "key-quota.png");

    await page.locator("#detail-quota").click();
    await page.getByText("Add", { exact: true }).click();
    await page.getByLabel("Amount").fill("10");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator("#key-quota").getByText("5 used · 10 left").waitFor();
    await eventually(async () => (await proxyCall(kg, secret)).status === 200);

    // The keys table shows the compact meter.
    await page.goto(`${kg.adminUrl}/#/accounts/${acme.id}`);
    const row = page.locator(`tr[data-key-id="${key.id}"]`);
    await row.locator(".quota.compact").waitFor();
  });

  test("an account on a plan with a quota shows the pooled usage", async () => {
    const plan = await admin(kg, "POST", "/plans", { name: "Metered", quota: { limit: 100, period: "month" } });
    const other = await admin(kg, "POST", "/accounts", { name: "Pooled Ltd" });
    await admin(kg, "PATCH", `/accounts/${other.id}`, { plan_id: plan.id });
    const a = await admin(kg, "POST", "/keys", { account_id: other.id, name: "a", permission: "read" });
    const b = await admin(kg, "POST", "/keys", { account_id: other.id, name: "b", permission: "read" });
    await eventually(async () => (await proxyCall(kg, a.secret)).status === 200);
    assert.equal((await proxyCall(kg, b.secret)).status, 200);
    await eventually(async () => (await admin(kg, "GET", `/accounts/${other.id}`)).quota_usage?.used >= 2);

    const page = await newPage(browser);
    pages.push(page);
    await signIn(page, kg);
    await page.goto(`${kg.adminUrl}/#/accounts/${other.id}`);
    const meter = page.locator("#account-quota");
    await meter.waitFor();
    assert.match(await meter.textContent(), /used · 9\d left/);
  });
});
