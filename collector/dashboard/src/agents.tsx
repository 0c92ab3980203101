// By agent: each agent's executions, failures, API calls and spend over the range, from the
// time series grouped by agent (`group_by=agent_id`, the agent rollups), summed over the range.
import { useEffect, useMemo } from "preact/hooks";
import type { Series } from "./api";
import { sum } from "./dec";
import { Bar, Money, Panel, Table, count, groupName, useLoad, usePage } from "./ui";

/** The metrics of the table, in column order. */
const METRICS = ["executions", "failures", "api_calls", "cost_usd"] as const;
type Metric = (typeof METRICS)[number];

/** The range's bucket: hours for ranges up to 3 days, else days (so the sum covers exactly the
 * range, which is whole hours or whole UTC days). */
export function exactInterval(range: { from: string; to: string }): "hour" | "day" {
  return Date.parse(range.to) - Date.parse(range.from) <= 3 * 86_400_000 ? "hour" : "day";
}

interface AgentRow {
  agent: string;
  executions: number;
  failures: number;
  api_calls: number;
  cost: string;
  unpriced: number;
}

export function AgentsPanel() {
  const { api, range, filters, refresh, offer } = usePage();
  const params = (metric: Metric) => ({
    metric,
    interval: exactInterval(range),
    group_by: "agent_id",
    ...range,
  });
  const load = useLoad(
    () =>
      Promise.all(METRICS.map((m) => api.get<Series>("/v1/metrics/timeseries", params(m)))).then(
        (series) => Object.fromEntries(METRICS.map((m, i) => [m, series[i]])) as Record<Metric, Series>,
      ),
    `${range.from}|${range.to}|${refresh}|${api.cred.tenant}`,
  );

  const rows = useMemo(() => {
    const by = new Map<string, AgentRow & { costs: string[] }>();
    const row = (agent: string) => {
      let r = by.get(agent);
      if (!r) {
        r = { agent, executions: 0, failures: 0, api_calls: 0, cost: "0", costs: [], unpriced: 0 };
        by.set(agent, r);
      }
      return r;
    };
    for (const m of METRICS) {
      for (const p of load.data?.[m].points ?? []) {
        const r = row(p.group ?? "");
        if (m === "cost_usd") {
          r.costs.push(String(p.value ?? "0"));
          r.unpriced += p.unpriced_events ?? 0;
        } else {
          r[m] += Number(p.value ?? 0);
        }
      }
    }
    return [...by.values()]
      .map(({ costs, ...r }) => ({ ...r, cost: sum(costs) }))
      .sort((a, b) => b.executions - a.executions || a.agent.localeCompare(b.agent));
  }, [load.data]);
  useEffect(() => {
    offer("agent_id", rows.map((r) => r.agent).filter(Boolean));
  }, [rows, offer]);

  const shown = rows.filter((r) => !filters.agent_id || r.agent === filters.agent_id);
  const executions = rows.reduce((n, r) => n + r.executions, 0);
  return (
    <Panel
      id="agents"
      title="By agent"
      load={load}
      wide
      note="Executions, failures and API calls by the agent that sent them; spend as in the totals."
      download={{
        name: "spend-by-agent",
        json: load.data,
        csv: { path: "/v1/metrics/timeseries", params: params("cost_usd") },
      }}
    >
      <Table
        caption="Usage by agent"
        testid="agent-table"
        head={["Agent", "Executions", "Failures", "API calls", "Spend", "Share of executions"]}
        rows={shown.map((r) => [
          <span data-agent={r.agent}>{groupName(r.agent)}</span>,
          count(r.executions),
          count(r.failures),
          count(r.api_calls),
          <span data-value={r.cost}>
            <Money v={r.cost} unpriced={r.unpriced} />
          </span>,
          <Bar
            part={r.executions}
            whole={executions}
            label={`${groupName(r.agent)}: ${count(r.executions)} of ${count(executions)} executions`}
          />,
        ])}
      />
    </Panel>
  );
}
