// The docs page works for a person: it lists the API's operations and can call one.
// Needs OMEGA_URL (a running omega) and Debian's Chromium (CHROMIUM, default /usr/bin/chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = process.env.OMEGA_URL;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

const EXPECTED_PATHS = [
  "/health",
  "/health/db",
  "/businesses/{business_id}/sms/record",
  "/businesses/{business_id}/email/record",
  "/businesses/{business_id}/messages/requests/{request_id}",
  "/messages/requests/{request_id}",
  "/business/onboard",
  "/business/{business_id}/onboarding-status",
  "/admin/queues",
  "/admin/queues/{job_type}/dead",
  "/admin/queues/{job_type}/dead/replay",
  "/admin/queues/{job_type}/dead/drain",
];

test("/docs lists the operations and calls /health from the page", async () => {
  assert.ok(base, "OMEGA_URL must name a running omega");
  const browser = await chromium.launch({
    executablePath,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/docs`);
    await page.waitForSelector(".opblock-summary-path", { timeout: 30_000 });
    const paths = await page.$$eval(".opblock-summary-path", (els) =>
      els.map((e) => (e.getAttribute("data-path") ?? e.textContent).replace(/\u200b/g, "").trim()),
    );
    for (const p of EXPECTED_PATHS) {
      assert.ok(paths.includes(p), `${p} is not listed; listed: ${paths.join(", ")}`);
    }

    // Open GET /health, try it out, execute, and read the answer shown on the page.
    const health = page.locator(".opblock-get", { has: page.locator('.opblock-summary-path[data-path="/health"]') });
    await health.locator(".opblock-summary").click();
    await health.locator("button.try-out__btn").click();
    await health.locator("button.execute").click();
    const body = health.locator(".live-responses-table .response-col_description pre").first();
    await body.waitFor({ timeout: 15_000 });
    const text = await body.innerText();
    assert.match(text, /"status":\s*"ok"/);
    const status = await health.locator(".live-responses-table .response .response-col_status").first().innerText();
    assert.equal(status.trim(), "200");
    await page.screenshot({ path: process.env.SCREENSHOT ?? "/tmp/omega-docs.png", fullPage: false });
  } finally {
    await browser.close();
  }
});
