// Screenshots of the three dashboards for the docs: `node tests/screenshots.mjs URL READ_KEY
// OUT_DIR` (a collector with seeded data; see ci.sh). Writes dashboard-{savings,usage,billing}.png.
import { argv } from "node:process";
import { chromium } from "playwright-core";

const [base, key, out] = argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
await page.goto(`${base}/#token=${encodeURIComponent(key)}`);
for (const [tab, name, tile] of [
  ["savings", "Cost Savings", "saved"],
  ["usage", "Usage", "executions"],
  ["billing", "Billing", "tier"],
]) {
  await page.getByRole("tab", { name }).click();
  await page.getByTestId(`tile-${tile}`).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('.panel[aria-busy="true"]').length === 0);
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${out}/dashboard-${tab}.png`, fullPage: tab !== "savings" });
}
await browser.close();
