// Plans in the dashboard: an owner lists, creates, edits and deletes plans
// and puts an account on one with the account bar's picker; a token confined
// to the account sees its plan but the picker is disabled and the plans page
// offers no write.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { admin, eventually, launchBrowser, newPage, shot, signIn, startKeygate, startUpstream } from "./support.js";

describe("plans", () => {
  let upstream;
  let kg;
  let browser;
  let acme;
  let confined;
  const pages = [];

  before(async () => {
    upstream = await startUpstream();
    kg = await startKeygate(upstream.url);
    browser = await launchBrowser();
    acme = await admin(kg, "POST", "/accounts", { name: "Acme Corp" });
    confined = (await admin(kg, "POST", "/admin-tokens", { name: "acme admin", role: "admin", account_id: acme.id })).secret;
  });

  after(async () => {
    for (const page of pages) assert.deepEqual(page.problems, [], "no console error, page error or alert()");
    await browser?.close();
    await kg?.stop();
    await upstream?.close();
  });

  test("an owner creates, edits and deletes a plan", async () => {
    const page = await newPage(browser);
    pages.push(page);
    await signIn(page, kg);
    await page.locator("#plans-link").click();
    await page.locator("#plans-table").waitFor();
    await page.getByText("No plans yet.").waitFor();

    await page.locator("#create-plan").click();
    await page.getByLabel("Name").fill("Free");
    await page.locator("input[name=plan_rl_requests]").fill("10");
    await page.locator("input[name=plan_rl_per]").fill("60");
    await page.locator("input[name=plan_quota_limit]").fill("10000");
    await page.getByRole("button", { name: "Create plan" }).click();
    const row = page.locator("#plans-table tbody tr", { hasText: "Free" });
    await row.getByText("10 / 60 s").waitFor();
    await row.getByText("10000 / month").waitFor();
    const [plan] = (await admin(kg, "GET", "/plans")).items;
    assert.deepEqual([plan.name, plan.rate_limit, plan.quota], ["Free", { requests: 10, per_seconds: 60 }, { limit: 10000, period: "month" }]);
    await shot(page, "plans-list.png");

    // A refused edit shows the API's reason by its field.
    await page.getByRole("button", { name: "Edit plan Free" }).click();
    await page.locator("input[name=plan_rl_requests]").fill("0");
    await page.getByRole("button", { name: "Save plan" }).click();
    await page.locator(".field-error, .form-error").filter({ hasText: "between 1 and" }).first().waitFor();
    // The refused 422 is logged by Chromium as a failed resource load.
    page.problems = page.problems.filter((p) => !p.includes("422"));
    await page.locator("input[name=plan_rl_requests]").fill("20");
    await page.locator("input[name=plan_quota_limit]").fill("");
    await page.getByRole("button", { name: "Save plan" }).click();
    await row.getByText("20 / 60 s").waitFor();
    await eventually(async () => (await admin(kg, "GET", `/plans/${plan.id}`)).quota === null);

    await page.getByRole("button", { name: "Delete plan Free" }).click();
    await page.getByRole("button", { name: "Delete plan" }).last().click();
    await page.getByText("No plans yet.").waitFor();
  });

  test("the account bar's picker puts the account on a plan; a confined token cannot change it", async () => {
    const pro = await admin(kg, "POST", "/plans", { name: "Pro", rate_limit: { requests: 100, per_seconds: 1 } });
    const page = await newPage(browser);
    pages.push(page);
    await signIn(page, kg);
    const picker = page.locator("#plan-picker");
    await picker.locator(`option[value="${pro.id}"]`).waitFor({ state: "attached" });
    assert.equal(await picker.isDisabled(), false);
    await picker.selectOption(pro.id);
    await eventually(async () => (await admin(kg, "GET", `/accounts/${acme.id}`)).plan_id === pro.id);
    await shot(page, "plans-picker.png");

    const tenant = await newPage(browser);
    pages.push(tenant);
    await signIn(tenant, kg, confined);
    const theirs = tenant.locator("#plan-picker");
    await theirs.locator(`option[value="${pro.id}"]`).waitFor({ state: "attached" });
    assert.equal(await theirs.inputValue(), pro.id, "the tenant sees its plan");
    assert.equal(await theirs.isDisabled(), true, "but cannot change it");
    assert.equal(await tenant.locator("#plans-link").count(), 0, "no plans page link for a confined token");
    await tenant.goto(kg.adminUrl + "/#/plans");
    await tenant.locator("#plans-table").getByText("Pro").waitFor();
    assert.equal(await tenant.locator("#create-plan").count(), 0);
    assert.equal(await tenant.getByRole("button", { name: "Delete plan Pro" }).count(), 0);
  });
});
