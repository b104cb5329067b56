// Webhooks in the dashboard: an owner creates a webhook (its signing secret
// shown once), a receiver that first answers 500 then 200 gets a signed
// key.created, the deliveries page shows the failed attempt and the
// delivered one, and the owner deletes the webhook. A token confined to an
// account gets no Webhooks button.

import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { admin, eventually, launchBrowser, newPage, shot, signIn, startKeygate, startUpstream } from "./support.js";

/** A receiver that answers 500 to its first request and 200 after. */
async function startReceiver() {
  const got = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      got.push({ signature: req.headers["keygate-signature"], body: Buffer.concat(chunks) });
      res.writeHead(got.length === 1 ? 500 : 200).end("ok");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}/hooks`, got, close: () => new Promise((r) => server.close(r)) };
}

/** Checks `t=…,v1=…` with node's own HMAC over "<t>.<body>". */
function verify(secret, header, body) {
  const parts = Object.fromEntries(header.split(",").map((p) => p.split("=", 2)));
  const expected = createHmac("sha256", secret).update(`${parts.t}.`).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(parts.v1, "hex"));
}

describe("webhooks", () => {
  let upstream;
  let kg;
  let browser;
  let receiver;
  const pages = [];

  before(async () => {
    upstream = await startUpstream();
    kg = await startKeygate(upstream.url, ["webhooks:", "  poll_interval_ms: 50", "  retry_initial_ms: 300", "  retry_max_ms: 600"]);
    browser = await launchBrowser();
    receiver = await startReceiver();
  });

  after(async () => {
    for (const page of pages) assert.deepEqual(page.problems, [], "no console error, page error or alert()");
    await browser?.close();
    await kg?.stop();
    await upstream?.close();
    await receiver?.close();
  });

  test("an owner creates a webhook, reads its deliveries log and deletes it", async () => {
    const acme = await admin(kg, "POST", "/accounts", { name: "Acme Corp" });
    const page = await newPage(browser);
    pages.push(page);
    await signIn(page, kg);
    await page.locator("#webhooks-link").click();
    await page.locator("#webhooks-table").waitFor();
    await page.getByText("No webhooks yet.").waitFor();

    // A refused URL shows the API's reason by its field.
    await page.locator("#create-webhook").click();
    await page.getByLabel("Receiver URL").fill("ftp://example.com/");
    await page.getByRole("button", { name: "Create webhook" }).click();
    await page.locator(".field-error").filter({ hasText: "http://" }).first().waitFor();
    page.problems = page.problems.filter((p) => !p.includes("422"));

    await page.getByLabel("Receiver URL").fill(receiver.url);
    await page.getByRole("button", { name: "Create webhook" }).click();
    const secretInput = page.locator("input[data-secret]");
    await secretInput.waitFor();
    const secret = await secretInput.inputValue();
    assert.match(secret, /^whsec_[A-Za-z0-9]{32}$/);
    await shot(page, "webhooks-secret.png");
    await page.getByRole("button", { name: "I've saved it" }).click();
    const row = page.locator("#webhooks-table tbody tr", { hasText: receiver.url });
    await row.waitFor();
    const [hook] = (await admin(kg, "GET", "/webhooks")).items;
    assert.equal(hook.url, receiver.url);
    assert.deepEqual(hook.events, ["key.created", "key.rotated", "key.revoked", "key.leaked", "key.expiring"]);
    assert.equal(JSON.stringify(hook).includes(secret), false, "the secret is not shown again");

    const created = await admin(kg, "POST", "/keys", { account_id: acme.id, name: "reporting", permission: "read" });
    await eventually(() => receiver.got.length >= 2);
    for (const r of receiver.got) {
      assert.ok(verify(secret, r.signature, r.body), "signed with the secret shown once");
      const event = JSON.parse(r.body);
      assert.equal(event.type, "key.created");
      assert.equal(event.data.key.id, created.key.id);
      assert.equal(r.body.toString().includes(created.secret), false, "no key secret in a payload");
    }
    assert.equal(JSON.parse(receiver.got[0].body).id, JSON.parse(receiver.got[1].body).id, "the same event id on retry");

    await row.getByRole("link", { name: `Deliveries of ${receiver.url}` }).click();
    const table = page.locator("#deliveries-table");
    await table.waitFor();
    await eventually(async () => {
      await page.locator("#refresh-deliveries").click();
      return (await table.locator("tbody tr").count()) === 2 && (await table.getByText("delivered").count()) === 1;
    });
    await table.getByText("answered 500").waitFor();
    await table.locator("tbody tr", { hasText: "delivered" }).getByText("200").waitFor();
    await shot(page, "webhooks-deliveries.png");

    await page.getByRole("link", { name: "Back to webhooks" }).click();
    await page.getByRole("button", { name: `Delete webhook ${receiver.url}` }).click();
    await page.getByRole("button", { name: "Delete webhook" }).last().click();
    await page.getByText("No webhooks yet.").waitFor();
    assert.deepEqual((await admin(kg, "GET", "/webhooks")).items, []);
  });

  test("a token confined to an account gets no Webhooks button", async () => {
    const acc = await admin(kg, "POST", "/accounts", { name: "Tenant" });
    const confined = (await admin(kg, "POST", "/admin-tokens", { name: "tenant admin", role: "admin", account_id: acc.id })).secret;
    const page = await newPage(browser);
    pages.push(page);
    await signIn(page, kg, confined);
    await page.locator(".account-actions").first().waitFor();
    assert.equal(await page.locator("#webhooks-link").count(), 0);
  });
});
