// Drives the operator console in a real browser: Debian's Chromium, headless,
// through playwright-core. host/tests/console.rs starts the service and runs
// this with:
//   CONSOLE_URL     the admin listener's base URL
//   PUBLIC_URL      the public port's base URL
//   ADMIN_TOKEN     the right token
//   SECOND_HANDLER  a second handler component to push through the file picker
//   BROKEN_UPLOAD   a file the admin API must refuse (422)
//   SCREENSHOT      where to save the screenshot
// The service runs with CLIENT_KEYS=optional, so unkeyed traffic still flows.
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Prints one JSON line of what it saw; exits non-zero on the first failed check.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const consoleUrl = `${env("CONSOLE_URL")}/console/`;
const publicUrl = env("PUBLIC_URL");
const token = env("ADMIN_TOKEN");
const secondHandler = env("SECOND_HANDLER");
const secondSha256 = createHash("sha256").update(readFileSync(secondHandler)).digest("hex");
const WAIT_MS = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
});

/** A fresh tab that records every console error and uncaught exception. */
async function openTab() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1500 } });
  const page = await context.newPage();
  const seen = { consoleErrors: [], pageErrors: [], dialogs: [] };
  page.on("console", (message) => {
    if (message.type() === "error") seen.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => seen.pageErrors.push(String(error)));
  // Every destructive action asks first; the tests say yes unless told.
  page.on("dialog", (dialog) => {
    seen.dialogs.push(dialog.message());
    if (seen.refuseNext) { seen.refuseNext = false; dialog.dismiss(); } else { dialog.accept(); }
  });
  await page.goto(consoleUrl);
  return { context, page, seen };
}

async function signIn(page, withToken) {
  await page.fill("#token", withToken);
  await page.click("#login-form button[type=submit]");
}

const activeSha256 = (page) => page.getAttribute("#handler-active", "data-sha256");

async function waitForActive(page, sha256) {
  await page.waitForFunction(
    (expected) => document.querySelector("#handler-active")?.dataset.sha256 === expected,
    sha256, { timeout: WAIT_MS });
}

async function publicVersion() {
  const response = await fetch(`${publicUrl}/health`);
  return response.headers.get("x-handler-version");
}

/** Non-blank pixels in the latency chart's canvas: did uPlot draw a line? */
const drawnPixels = (page) => page.evaluate(() => {
  const canvas = document.querySelector("#chart-requests canvas");
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let drawn = 0;
  for (let index = 3; index < data.length; index += 4) if (data[index] > 0) drawn += 1;
  return drawn;
});

const seenAll = {};

// 1. A wrong token: an error, and no data on the page.
{
  const { context, page, seen } = await openTab();
  await signIn(page, "not-the-token-at-all");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("401"),
    null, { timeout: WAIT_MS });
  seenAll.wrongTokenError = await page.textContent("#login-error");
  assert.equal(await page.isVisible("#dashboard"), false, "the dashboard stays hidden");
  assert.equal(await page.textContent("#handler-active"), "", "no handler version shown");
  assert.equal(await page.locator("#handler-versions tr").count(), 0, "no version rows");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused token is not kept");
  assert.deepEqual(seen.pageErrors, [], "no script error");
  await context.close();
}

// 2. The right token: versions, charts; push, refusals, rollback.
const { context, page, seen } = await openTab();
const traffic = setInterval(() => {
  fetch(`${publicUrl}/generate`, { method: "POST", body: JSON.stringify({ prompt: "console traffic" }) })
    .catch(() => {});
  const message = { max_tokens: 8, messages: [{ role: "user", content: "console traffic" }] };
  fetch(`${publicUrl}/v1/messages`, { method: "POST", body: JSON.stringify(message) }).catch(() => {});
}, 150);
try {
  await signIn(page, token);
  // The dashboard shows before its first refresh lands (the charts need
  // their size); signing in is done when the serving version is filled in.
  await page.waitForSelector("#dashboard:not([hidden])", { timeout: WAIT_MS });
  await page.waitForFunction(() => /^[0-9a-f]{64}$/.test(document.querySelector("#handler-active").dataset.sha256 ?? ""),
    null, { timeout: WAIT_MS });
  const first = await activeSha256(page);
  assert.match(first, /^[0-9a-f]{64}$/, "the serving sha256 is shown");
  assert.equal(await publicVersion(), first.slice(0, 12), "the page shows what the public port serves");
  seenAll.first = first;
  // Three reads of /stats make two points.
  await page.waitForFunction(() => Number(document.querySelector("#chart-requests").dataset.points) >= 2,
    null, { timeout: WAIT_MS });
  seenAll.chartPoints = Number(await page.getAttribute("#chart-requests", "data-points"));
  seenAll.drawnPixels = await drawnPixels(page);
  assert.ok(seenAll.drawnPixels > 0, "the requests chart drew");
  assert.notEqual(await page.textContent("#health-status"), "", "the service status is shown");
  // Each endpoint is counted on its own, the Anthropic dialect's too.
  await page.waitForFunction(() => [...document.querySelectorAll("#endpoint-rows tr")]
    .some((tr) => tr.firstChild.textContent === "/v1/messages" && Number(tr.children[1].textContent) > 0),
  null, { timeout: WAIT_MS });
  seenAll.endpoints = await page.locator("#endpoint-rows tr").count();
  assert.equal(await page.evaluate(() => location.href.includes("token")), false, "no secret in the URL");

  // Push a second handler through the file picker.
  await page.setInputFiles("#handler-file", secondHandler);
  await page.click("#push-handler");
  await waitForActive(page, secondSha256);
  assert.equal(await publicVersion(), secondSha256.slice(0, 12), "the pushed handler serves");
  seenAll.afterPush = secondSha256;
  // With a shared store, the replicas table names this replica and what it
  // serves (each replica reports every 2 s).
  await page.waitForFunction((sha) => !document.querySelector("#replicas").hidden &&
    [...document.querySelectorAll("#replica-rows tr")]
      .some((tr) => tr.textContent.includes("(this one)") && tr.textContent.includes(sha)),
  secondSha256.slice(0, 12), { timeout: WAIT_MS });
  seenAll.replicaRows = await page.locator("#replica-rows tr").count();

  // A dismissed confirmation does nothing.
  const answersBefore = await page.locator("#answers li").count();
  seen.refuseNext = true;
  await page.click(`#handler-versions button[data-sha256="${first}"]`);
  assert.equal(await page.locator("#answers li").count(), answersBefore, "nothing was called");
  assert.equal(await publicVersion(), secondSha256.slice(0, 12), "still the second version");

  // Roll back to the first version from its row.
  await page.click(`#handler-versions button[data-sha256="${first}"]`);
  await waitForActive(page, first);
  seenAll.afterRollback = await publicVersion();
  assert.equal(seenAll.afterRollback, first.slice(0, 12), "the first version serves again");

  // The second version as a 30% canary: its share shows; then drop it.
  await page.setInputFiles("#handler-file", secondHandler);
  await page.fill("#canary-percent", "30");
  await page.click("#push-canary");
  await page.waitForFunction(
    (expected) => document.querySelector("#canary-summary").dataset.sha256 === expected
      && document.querySelector("#canary-summary").textContent.includes("30%"),
    secondSha256, { timeout: WAIT_MS });
  seenAll.canary = await page.textContent("#canary-summary");
  // The screenshot shows a canary serving beside the stable version.
  await page.screenshot({ path: env("SCREENSHOT"), fullPage: true });
  assert.equal(await activeSha256(page), first, "the stable version still serves");
  await page.click("#drop-canary");
  await page.waitForFunction(() => document.querySelector("#canary-summary").textContent === "none",
    null, { timeout: WAIT_MS });

  // Clear one character's cache: the API's answer is shown.
  await page.fill("#clear-character", "peter");
  await page.click("#clear-cache");
  await page.waitForFunction(() => document.querySelector("#answers li")?.textContent.includes("cleared"),
    null, { timeout: WAIT_MS });
  seenAll.clearAnswer = await page.textContent("#answers li");
  seenAll.dialogs = seen.dialogs;
  seenAll.consoleErrors = [...seen.consoleErrors, ...seen.pageErrors];
  assert.deepEqual(seenAll.consoleErrors, [], "the browser console shows no errors");
} finally {
  clearInterval(traffic);
  await context.close();
}

// 3. A refused upload: the API's error text reaches the operator.
{
  const { context, page, seen } = await openTab();
  await signIn(page, token);
  await page.waitForSelector("#dashboard:not([hidden])", { timeout: WAIT_MS });
  await page.setInputFiles("#plugin-file", env("BROKEN_UPLOAD"));
  await page.click("#push-plugin");
  await page.waitForSelector("#answers li.error", { timeout: WAIT_MS });
  seenAll.refusal = await page.textContent("#answers li.error");
  assert.match(seenAll.refusal, /: 422 \{"error":"/, "the status and the API's error text");
  assert.deepEqual(seen.pageErrors, [], "no script error");
  await context.close();
}

// 4. Client keys: made through the form (its secret shown once, and only
// there), its use today counted, revoked from its row.
{
  const { context, page, seen } = await openTab();
  await signIn(page, token);
  await page.waitForSelector("#dashboard:not([hidden])", { timeout: WAIT_MS });
  await page.waitForFunction(() => document.querySelector("#keys-mode").textContent === "optional",
    null, { timeout: WAIT_MS });
  await page.fill("#key-tenant", "team-console");
  await page.fill("#key-name", "console-bot");
  await page.fill("#key-rpm", "50");
  await page.click("#create-key");
  await page.waitForSelector("#key-secret-note:not([hidden])", { timeout: WAIT_MS }).catch(async (error) => {
    throw new Error(`${error.message}; answers: ${await page.textContent("#answers")}`);
  });
  const secret = await page.textContent("#key-secret");
  assert.match(secret, /^lls-/, "the secret is shown once");
  for (let index = 0; index < 2; index += 1) {
    const answer = await fetch(`${publicUrl}/generate`, {
      method: "POST", headers: { "x-api-key": secret }, body: JSON.stringify({ prompt: `keyed ${index}` }),
    });
    assert.equal(answer.status, 200, "the new key is admitted");
  }
  const keyRow = '#key-rows tr:has(td:text-is("console-bot"))';
  await page.waitForFunction(() => [...document.querySelectorAll("#key-rows tr")]
    .some((tr) => tr.children[0].textContent === "console-bot" && tr.children[5].textContent === "2"
      && tr.children[7].textContent !== "never"), null, { timeout: WAIT_MS });
  const cells = await page.locator(keyRow).locator("td").allTextContents();
  seenAll.keyRow = cells;
  assert.equal(cells[1], "team-console");
  assert.equal(cells[4], "50 rpm");
  const elsewhere = await page.evaluate(() => document.querySelector("#key-rows").textContent
    + document.querySelector("#answers").textContent);
  assert.ok(!elsewhere.includes(secret), "the secret is in no table and no answer");
  await page.locator(keyRow).locator("button").click();
  await page.waitForFunction(() => [...document.querySelectorAll("#key-rows tr")]
    .some((tr) => tr.children[0].textContent === "console-bot" && tr.children[8].textContent.startsWith("revoked")),
  null, { timeout: WAIT_MS });
  const refused = await fetch(`${publicUrl}/generate`, {
    method: "POST", headers: { "x-api-key": secret }, body: JSON.stringify({ prompt: "after revoke" }),
  });
  seenAll.afterRevoke = refused.status;
  seenAll.keyDialogs = seen.dialogs;
  assert.deepEqual([...seen.consoleErrors, ...seen.pageErrors], [], "no script error");
  await context.close();
}

await browser.close();
console.log(JSON.stringify(seenAll));
