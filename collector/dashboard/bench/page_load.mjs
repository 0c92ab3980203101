// Page load of the built-in dashboard, to every panel rendered: `node bench/page_load.mjs BASE
// READ_KEY [LOADS]` against a running collector (the query benchmark's 10M-event data set; see
// docs/dashboard.md, "Performance"). Each load is a fresh browser context (nothing cached):
// open `BASE/#token=KEY`, wait until every panel of the first dashboard has loaded (none
// `aria-busy`, none in error), then open the other two dashboards the same way. Prints p50/p95
// over LOADS (20) loads of the first dashboard and of all three, and the bundle's size gzipped.
import { readFileSync, readdirSync } from "node:fs";
import { argv, env, exit } from "node:process";
import { chromium } from "playwright-core";

const [base, key, loadsArg] = argv.slice(2);
if (!base || !key) {
  console.error("usage: node bench/page_load.mjs BASE READ_KEY [LOADS]");
  exit(2);
}
const loads = Number(loadsArg ?? 20);
const tabs = [
  ["savings", "Cost Savings"],
  ["usage", "Usage"],
  ["billing", "Billing"],
];

async function rendered(page, tab) {
  const board = page.getByTestId(`dashboard-${tab}`);
  await board.locator(".panel").first().waitFor({ timeout: 60_000 });
  await page.waitForFunction(
    (t) => {
      const b = document.querySelector(`[data-testid="dashboard-${t}"]`);
      return b && b.querySelectorAll('.panel[aria-busy="true"]').length === 0;
    },
    tab,
    { timeout: 60_000 },
  );
  const errors = await board.locator(".panel .error").allTextContents();
  if (errors.length > 0) throw new Error(`${tab}: ${errors.join("; ")}`);
}

const pct = (v, p) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * p)];
};

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
});
const first = [];
const all = [];
for (let i = 0; i < loads; i++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const t0 = performance.now();
  await page.goto(`${base}/#token=${encodeURIComponent(key)}`);
  await rendered(page, tabs[0][0]);
  first.push(performance.now() - t0);
  for (const [tab, name] of tabs.slice(1)) {
    await page.getByRole("tab", { name }).click();
    await rendered(page, tab);
  }
  all.push(performance.now() - t0);
  await context.close();
}
await browser.close();

const assets = new URL("../dist/assets/", import.meta.url);
const gz = readdirSync(assets)
  .filter((f) => f.endsWith(".gz"))
  .reduce((n, f) => n + readFileSync(new URL(f, assets)).length, 0);
const ms = (v) => `p50 ${pct(v, 0.5).toFixed(0)} ms  p95 ${pct(v, 0.95).toFixed(0)} ms  max ${pct(v, 1).toFixed(0)} ms`;
console.log(`page load, first dashboard rendered (${loads} loads): ${ms(first)}  (target p95 < 500 ms)`);
console.log(`page load, all three dashboards rendered:           ${ms(all)}`);
console.log(`bundle (assets, gzipped): ${(gz / 1024).toFixed(1)} KiB`);
