// Demo data for the browser tests and the screenshots: `node tests/seed.mjs URL INGEST_KEY
// TENANT [DAYS]` sends a deterministic month of agent runs of TENANT through POST /v1/batch,
// the runs' timestamps counted back from now. Runs use three priced providers and one model
// without a price, so unpriced spend shows; tenants other than "acme" get a smaller, distinct
// set.
import { argv, exit } from "node:process";

const TASKS = ["code", "bug_fix", "docs", "review"];
const MODELS = [
  ["openai", "gpt-4o", 3],
  ["openai", "gpt-4o-mini", 5],
  ["anthropic", "claude-sonnet-4-5", 3],
  ["google", "gemini-2.5-pro", 2],
  ["local", "llama-local-70b", 1],
];

/** A small deterministic generator (mulberry32). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function events(tenant, days = 25, now = Date.now()) {
  const rand = rng([...tenant].reduce((h, c) => h * 31 + c.charCodeAt(0), 7));
  const weighted = MODELS.flatMap((m) => Array(m[2]).fill(m));
  const perDay = tenant === "acme" ? 14 : 3;
  const out = [];
  let n = 0;
  const id = () => {
    n += 1;
    const tag = [...tenant].reduce((h, c) => (h * 33 + c.charCodeAt(0)) % 0xffff, 5);
    return `01984a1c-7e00-7000-8${tag.toString(16).padStart(3, "0").slice(-3)}-${n.toString(16).padStart(12, "0")}`;
  };
  const iso = (ms) => new Date(ms).toISOString();
  for (let d = days; d >= 1; d -= 1) {
    for (let r = 0; r < perDay; r += 1) {
      // Busier on weekdays' working hours.
      const hour = 8 + Math.floor(rand() * 10);
      const start = now - d * 86_400_000 + (hour - 12) * 3_600_000 + Math.floor(rand() * 3_600_000);
      if (start > now - 60_000) continue;
      const [provider, model] = weighted[Math.floor(rand() * weighted.length)];
      const task_type = TASKS[Math.floor(rand() * TASKS.length)];
      const run = `run-${tenant}-${d}-${r}`;
      const agent_id = `agent-${1 + Math.floor(rand() * 3)}`;
      const common = { tenant_id: tenant, correlation_id: run, agent_id, task_type, metadata: {} };
      out.push({ ...common, id: id(), event_type: "agent.started", timestamp: iso(start),
        queue_ms: 50 + Math.floor(rand() * 900), success: true });
      const calls = 1 + Math.floor(rand() * 3);
      for (let c = 0; c < calls; c += 1) {
        out.push({ ...common, id: id(), event_type: "provider.api_call",
          timestamp: iso(start + 1000 * (c + 1)), provider, model,
          duration_ms: 500 + Math.floor(rand() * 4000), success: true,
          usage: { input_tokens: 500 + Math.floor(rand() * 4000),
                   output_tokens: 100 + Math.floor(rand() * 900), requests: 1 } });
      }
      const ok = rand() < 0.85;
      const end = start + 5000 + Math.floor(rand() * 60_000);
      out.push({ ...common, id: id(), event_type: ok ? "agent.completed" : "agent.failed",
        timestamp: iso(Math.min(end, now - 1000)),
        duration_ms: end - start, success: ok, ...(ok ? {} : { error_code: "tests_failed" }) });
    }
  }
  return out;
}

export async function send(base, key, batch) {
  for (let i = 0; i < batch.length; i += 400) {
    const resp = await fetch(`${base}/v1/batch`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ batch: batch.slice(i, i + 400), sent_at: new Date().toISOString() }),
    });
    const body = await resp.json();
    if (!resp.ok || body.rejected?.length) {
      throw new Error(`ingest answered ${resp.status}: ${JSON.stringify(body).slice(0, 500)}`);
    }
  }
}

if (import.meta.url === `file://${argv[1]}`) {
  const [base, key, tenant, days] = argv.slice(2);
  if (!base || !key || !tenant) {
    console.error("usage: node tests/seed.mjs URL INGEST_KEY TENANT [DAYS]");
    exit(2);
  }
  const batch = events(tenant, days ? Number(days) : 25);
  await send(base, key, batch);
  console.log(`seeded ${batch.length} events of tenant ${tenant}`);
}
