// Usage: executions, API calls by provider, success and failure rates, duration and queue p95,
// the executions trend, and when the tenant is busiest (a day × hour heat map in the chosen
// time zone, and the API's peak hours, days and top hours).
import { useEffect, useMemo } from "preact/hooks";
import { AgentsPanel } from "./agents";
import type { Peaks, Series, Summary } from "./api";
import { Chart } from "./chart";
import { showTime, weekdayHour } from "./range";
import {
  Bar,
  Money,
  Panel,
  Table,
  Tile,
  count,
  groupName,
  ms,
  rate,
  useLoad,
  usePage,
  type Load,
} from "./ui";

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

export function UsageDashboard({ summary }: { summary: Load<Summary> }) {
  const { api, range, filters, refresh, tz, offer } = usePage();
  const rk = `${range.from}|${range.to}|${tz}|${refresh}|${api.cred.tenant}`;
  const s = summary.data;
  useEffect(() => {
    if (s) offer("provider", Object.keys(s.api_calls_by_provider));
  }, [s, offer]);

  const hours = Date.parse(range.to) - Date.parse(range.from) <= 3 * 86_400_000;
  // The API groups by one dimension at a time: task type, else agent.
  const tg = filters.task_type
    ? { by: "task_type", value: filters.task_type, label: "task type" }
    : filters.agent_id
      ? { by: "agent_id", value: filters.agent_id, label: "agent" }
      : null;
  const trendParams = {
    metric: "executions",
    interval: hours ? "hour" : "day",
    ...range,
    ...(tg ? { group_by: tg.by } : {}),
  };
  const trend = useLoad(
    () => api.get<Series>("/v1/metrics/timeseries", trendParams),
    `${rk}|${trendParams.interval}|${tg?.by ?? ""}`,
  );
  const heatParams = { metric: "executions", interval: "hour", ...range };
  const heat = useLoad(() => api.get<Series>("/v1/metrics/timeseries", heatParams), rk);
  const peaks = useLoad(() => api.get<Peaks>("/v1/metrics/peaks", { ...range }), rk);

  const trendData = useMemo(() => {
    const pts = (trend.data?.points ?? []).filter((p) => !tg || (p.group ?? "") === tg.value);
    return { x: pts.map((p) => Date.parse(p.t) / 1000), values: pts.map((p) => Number(p.value ?? 0)) };
  }, [trend.data, tg?.value]);

  const grid = useMemo(() => {
    const g = Array.from({ length: 7 }, () => new Array<number>(24).fill(0));
    let max = 0;
    for (const p of heat.data?.points ?? []) {
      const [d, h] = weekdayHour(Date.parse(p.t), tz);
      const row = g[d];
      if (!row) continue;
      row[h] = (row[h] ?? 0) + Number(p.value ?? 0);
      max = Math.max(max, row[h] ?? 0);
    }
    return { g, max };
  }, [heat.data, tz]);

  const providers = s
    ? Object.entries(s.api_calls_by_provider)
        .filter(([p]) => !filters.provider || p === filters.provider)
        .sort((a, b) => b[1] - a[1])
    : [];
  const calls = s?.api_calls ?? 0;

  return (
    <div class="grid">
      <Panel
        id="usage"
        title="Executions and API calls"
        load={summary}
        wide
        download={{
          name: "summary",
          json: s,
          csv: { path: "/v1/metrics/summary", params: { ...range } },
        }}
      >
        {s && (
          <div class="tiles">
            <Tile id="executions" label="Executions" raw={s.executions}>
              {count(s.executions)}
            </Tile>
            <Tile id="success-rate" label="Success rate" raw={s.success_rate} sub={`${count(s.successes)} succeeded`}>
              {rate(s.success_rate)}
            </Tile>
            <Tile
              id="failure-rate"
              label="Failure rate"
              raw={s.failures}
              tone={s.failures > 0 ? "bad" : undefined}
              sub={`${count(s.failures)} failed`}
            >
              {s.executions > 0 ? rate(s.failures / s.executions) : "—"}
            </Tile>
            <Tile id="api-calls" label="API calls" raw={s.api_calls}>
              {count(s.api_calls)}
            </Tile>
            <Tile id="spend" label="Spend" raw={s.cost_usd} sub={s.unpriced_events > 0 ? `${count(s.unpriced_events)} unpriced events` : undefined}>
              <Money v={s.cost_usd} unpriced={s.unpriced_events} />
            </Tile>
            <Tile id="p95-duration" label="Duration p95" raw={s.p95_duration_ms} sub={`average ${ms(s.avg_duration_ms)}`}>
              {ms(s.p95_duration_ms)}
            </Tile>
            <Tile id="p95-queue" label="Queue p95" raw={s.p95_queue_ms}>
              {ms(s.p95_queue_ms)}
            </Tile>
          </div>
        )}
      </Panel>

      <Panel
        id="calls-by-provider"
        title="API calls by provider"
        load={summary}
        download={{
          name: "summary",
          json: s?.api_calls_by_provider,
          csv: { path: "/v1/metrics/summary", params: { ...range } },
        }}
      >
        <Table
          caption="API calls by provider"
          testid="calls-table"
          head={["Provider", "Calls", "Share"]}
          rows={providers.map(([p, n]) => [
            groupName(p),
            count(n),
            <Bar part={n} whole={calls} label={`${groupName(p)}: ${count(n)} of ${count(calls)} calls`} />,
          ])}
        />
      </Panel>

      <Panel
        id="outcomes"
        title="Outcomes"
        load={summary}
        download={{
          name: "summary",
          json: s?.executions_by_type,
          csv: { path: "/v1/metrics/summary", params: { ...range } },
        }}
      >
        <Table
          caption="Executions by how they ended"
          testid="outcomes-table"
          head={["Ended as", "Executions", "Share"]}
          rows={Object.entries(s?.executions_by_type ?? {}).map(([t, n]) => [
            t,
            count(n),
            <Bar part={n} whole={s?.executions ?? 0} label={`${t}: ${count(n)}`} tone={t === "agent.completed" ? "good" : "bad"} />,
          ])}
        />
      </Panel>

      <AgentsPanel />

      <Panel
        id="executions-trend"
        title={`Executions by ${trendParams.interval}`}
        load={trend}
        wide
        note={tg ? `${tg.label}: ${groupName(tg.value)}` : undefined}
        download={{
          name: "executions",
          json: trend.data,
          csv: { path: "/v1/metrics/timeseries", params: trendParams },
        }}
      >
        {trend.data && (
          <Chart
            label={`Executions by ${trendParams.interval}`}
            x={trendData.x}
            series={[{ label: "Executions", values: trendData.values }]}
            tz={tz}
            yLabel="executions"
          />
        )}
      </Panel>

      <Panel
        id="heatmap"
        title="Busiest hours and days"
        load={heat}
        wide
        note={`Executions by day of week and hour, in ${tz}.`}
        download={{
          name: "peaks",
          json: { hourly: heat.data, peaks: peaks.data },
          csv: { path: "/v1/metrics/peaks", params: { ...range } },
        }}
      >
        <div class="heat-wrap">
          <table class="heat" data-testid="heatmap">
            <caption class="sr">Executions by day of week (rows) and hour (columns), {tz}</caption>
            <thead>
              <tr>
                <td />
                {Array.from({ length: 24 }, (_, h) => (
                  <th scope="col" key={h}>
                    {h % 3 === 0 ? String(h).padStart(2, "0") : <span class="sr">{h}</span>}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {grid.g.map((row, d) => (
                <tr key={d}>
                  <th scope="row">{DAYS[d]}</th>
                  {row.map((v, h) => (
                    <td
                      key={h}
                      title={`${DAYS[d]} ${String(h).padStart(2, "0")}:00 — ${count(v)} executions`}
                      style={{ "--heat": String(grid.max ? v / grid.max : 0) }}
                    >
                      <span class="sr">{count(v)}</span>
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {peaks.state === "error" && <p class="error">Peaks: {peaks.error.message}</p>}
        {peaks.data && (
          <>
            <p data-testid="peaks">
              Busiest hours ({peaks.data.tz}):{" "}
              <strong>
                {peaks.data.busiest_hours_of_day.map((h) => `${String(h).padStart(2, "0")}:00`).join(", ") || "—"}
              </strong>
              ; busiest days: <strong>{peaks.data.busiest_days_of_week.join(", ") || "—"}</strong>.
            </p>
            <Table
              caption="Busiest hours of the range"
              testid="top-hours"
              head={["Hour", "Executions", "Failures", "API calls", "Spend"]}
              rows={peaks.data.top_hours.map((t) => [
                showTime(t.t, tz),
                count(t.executions),
                count(t.failures),
                count(t.api_calls),
                <Money v={t.cost_usd} unpriced={t.unpriced_events} />,
              ])}
            />
          </>
        )}
      </Panel>
    </div>
  );
}
