// Cost Savings: spend against the baseline (gross and successful tasks only), the monthly
// trend, cost per task type and by provider/model, budget alert and routing recommendations.
import { useEffect, useMemo } from "preact/hooks";
import { ApiError, type Figures, type Recommendations, type Savings, type Series } from "./api";
import { Chart } from "./chart";
import { cmp, pct, ratePct, sum, usd } from "./dec";
import { lastMonths, monthIn } from "./range";
import { Money, Panel, Table, Tile, count, groupName, useLoad, usePage, type Filters } from "./ui";

/** The dimension the trend is narrowed to by the filters (the API groups by one at a time). */
export function trendGroup(f: Filters): { by: keyof Filters; value: string } | null {
  if (f.model) return { by: "model", value: f.model };
  if (f.provider) return { by: "provider", value: f.provider };
  if (f.task_type) return { by: "task_type", value: f.task_type };
  if (f.agent_id) return { by: "agent_id", value: f.agent_id };
  return null;
}

function SavingsPercent({ v }: { v: string | null }) {
  return v === null ? <span class="muted">n/a</span> : <span>{pct(v)}</span>;
}

export function SavingsDashboard() {
  const { api, range, filters, refresh, tz, offer } = usePage();
  const rk = `${range.from}|${range.to}|${tz}|${refresh}|${api.cred.tenant}`;

  const savings = useLoad(() => api.get<Savings>("/v1/metrics/savings", { ...range }), rk);
  const s = savings.data;
  useEffect(() => {
    if (!s) return;
    offer("provider", Object.keys(s.by_provider));
    offer("task_type", Object.keys(s.by_task_type));
  }, [s, offer]);

  const months = lastMonths();
  const g = trendGroup(filters);
  const trendParams = {
    metric: "cost_usd",
    interval: "month",
    ...months,
    tz,
    ...(g ? { group_by: g.by } : {}),
  };
  // Months of a zone whose months do not start at midnight UTC are cut from the hourly rollups,
  // which do not reach 12 months back (a 422): the trend then falls back to UTC months.
  const trend = useLoad(
    () =>
      api.get<Series>("/v1/metrics/timeseries", trendParams).catch((e: unknown) => {
        if (e instanceof ApiError && e.status === 422 && tz !== "UTC") {
          return api.get<Series>("/v1/metrics/timeseries", { ...trendParams, tz: "UTC" });
        }
        throw e;
      }),
    `${months.from}|${tz}|${g?.by ?? ""}|${refresh}|${api.cred.tenant}`,
  );

  const byModelParams = { metric: "cost_usd", interval: "month", group_by: "model", ...range };
  const byModel = useLoad(
    () => api.get<Series>("/v1/metrics/timeseries", byModelParams),
    rk,
  );
  const recs = useLoad(
    () => api.get<Recommendations>("/v1/metrics/recommendations", { ...range }),
    rk,
  );

  const modelTotals = useMemo(() => {
    const m = new Map<string, { cost: string[]; unpriced: number }>();
    for (const p of byModel.data?.points ?? []) {
      const k = p.group ?? "";
      const e = m.get(k) ?? { cost: [], unpriced: 0 };
      e.cost.push(String(p.value ?? "0"));
      e.unpriced += p.unpriced_events ?? 0;
      m.set(k, e);
    }
    return [...m.entries()]
      .map(([model, e]) => ({ model, cost: sum(e.cost), unpriced: e.unpriced }))
      .filter((r) => cmp(r.cost, "0") !== 0 || r.unpriced > 0)
      .sort((a, b) => cmp(b.cost, a.cost));
  }, [byModel.data]);
  useEffect(() => {
    offer("model", modelTotals.map((r) => r.model).filter(Boolean));
  }, [modelTotals, offer]);

  const trendData = useMemo(() => {
    const pts = (trend.data?.points ?? []).filter((p) => !g || (p.group ?? "") === g.value);
    const x = pts.map((p) => Date.parse(p.t) / 1000);
    return { x, values: pts.map((p) => Number(p.value ?? 0)), pts };
  }, [trend.data, g?.value]);

  const figures = (
    label: string,
    entries: [string, Figures][],
    keep: (k: string) => boolean,
    testid: string,
  ) => (
    <Table
      caption={label}
      testid={testid}
      head={[label, "Tasks", "Spend", "Baseline", "Savings", "Savings %", "Per successful task"]}
      rows={entries
        .filter(([k]) => keep(k))
        .map(([k, f]) => [
          groupName(k),
          count(f.tasks),
          <Money v={f.actual_usd} unpriced={f.actual_unpriced} />,
          <Money v={f.baseline_usd} unpriced={f.baseline_unpriced} />,
          <Money v={f.savings_usd} />,
          <SavingsPercent v={f.savings_percent} />,
          <Money v={f.cost_per_successful_task} />,
        ])}
    />
  );

  return (
    <div class="grid">
      <Panel
        id="savings"
        title="Spend vs baseline"
        load={savings}
        wide
        download={{
          name: "savings",
          json: s,
          csv: { path: "/v1/metrics/savings", params: { ...range } },
        }}
        note={
          s && (
            <>
              Baseline: <strong data-testid="baseline">{s.baseline}</strong> — what the same tasks
              would have cost there. {count(s.compared_tasks)} of {count(s.tasks)} tasks compared
              {s.estimated_tasks > 0 && <>, {count(s.estimated_tasks)} estimated</>}.
            </>
          )
        }
      >
        {s && (
          <div class="tiles">
            <Tile id="actual" label="Spend" raw={s.actual_usd}>
              <Money v={s.actual_usd} unpriced={s.actual_unpriced} />
            </Tile>
            <Tile id="baseline" label={`Baseline (${s.baseline})`} raw={s.baseline_usd}>
              <Money v={s.baseline_usd} unpriced={s.baseline_unpriced} />
            </Tile>
            <Tile
              id="saved"
              label="Saved"
              raw={s.savings_usd}
              tone={cmp(s.savings_usd, "0") >= 0 ? "good" : "bad"}
              sub={<SavingsPercent v={s.savings_percent} />}
            >
              {usd(s.savings_usd)}
            </Tile>
            <Tile
              id="saved-successful"
              label="Saved on successful tasks"
              raw={s.successful_savings_usd}
              sub={<SavingsPercent v={s.successful_savings_percent} />}
            >
              {usd(s.successful_savings_usd)}
            </Tile>
            <Tile id="per-task" label="Cost per successful task" raw={s.cost_per_successful_task}>
              <Money v={s.cost_per_successful_task} />
            </Tile>
          </div>
        )}
      </Panel>

      <Panel
        id="trend"
        title="Monthly spend (last 12 months)"
        load={trend}
        wide
        note={
          (g
            ? `${g.by === "agent_id" ? "agent" : g.by.replace("_", " ")}: ${groupName(g.value)}. `
            : "All usage. ") + `Calendar months in ${trend.data?.tz ?? tz}.`
        }
        download={{
          name: "spend-by-month",
          json: trend.data,
          csv: { path: "/v1/metrics/timeseries", params: { ...trendParams, tz: trend.data?.tz ?? tz } },
        }}
      >
        {trend.data && (
          <>
            <Chart
              label="Spend by month, US dollars"
              x={trendData.x}
              series={[{ label: "Spend (USD)", values: trendData.values }]}
              bars
              tz={tz}
              yLabel="USD"
            />
            <Table
              caption="Spend by month"
              testid="trend-table"
              head={["Month", "Spend"]}
              rows={trendData.pts
                .filter((p) => String(p.value) !== "0" || (p.unpriced_events ?? 0) > 0)
                .map((p) => [monthIn(p.t, trend.data?.tz ?? "UTC"), <Money v={p.value === null ? null : String(p.value)} unpriced={p.unpriced_events ?? 0} />])}
              empty="No spend in the last 12 months."
            />
          </>
        )}
      </Panel>

      <Panel
        id="task-types"
        title="Cost per task type"
        load={savings}
        wide
        download={{
          name: "savings-by-task-type",
          json: s?.by_task_type,
          csv: { path: "/v1/metrics/savings", params: { ...range } },
        }}
      >
        {s &&
          figures(
            "Task type",
            Object.entries(s.by_task_type),
            (k) => !filters.task_type || k === filters.task_type,
            "task-type-table",
          )}
      </Panel>

      <Panel
        id="providers"
        title="Cost by provider"
        load={savings}
        wide
        download={{
          name: "savings-by-provider",
          json: s?.by_provider,
          csv: { path: "/v1/metrics/savings", params: { ...range } },
        }}
      >
        {s &&
          figures(
            "Provider",
            Object.entries(s.by_provider),
            (k) => !filters.provider || k === filters.provider,
            "provider-table",
          )}
      </Panel>

      <Panel
        id="models"
        title="Cost by model"
        load={byModel}
        download={{
          name: "spend-by-model",
          json: byModel.data,
          csv: { path: "/v1/metrics/timeseries", params: byModelParams },
        }}
      >
        <Table
          caption="Spend by model"
          testid="model-table"
          head={["Model", "Spend"]}
          rows={modelTotals
            .filter((r) => !filters.model || r.model === filters.model)
            .map((r) => [groupName(r.model), <Money v={r.cost} unpriced={r.unpriced} />])}
        />
      </Panel>

      <Panel
        id="recommendations"
        title="Budget and routing recommendations"
        load={recs}
        wide
        download={{
          name: "recommendations",
          json: recs.data,
          csv: { path: "/v1/metrics/recommendations", params: { ...range } },
        }}
      >
        {recs.data && <RecommendationsView r={recs.data} filters={filters} />}
      </Panel>
    </div>
  );
}

function RecommendationsView({ r, filters }: { r: Recommendations; filters: Filters }) {
  const b = r.budget;
  const advice = r.by_task_type.filter(
    (a) => !filters.task_type || a.task_type === filters.task_type,
  );
  return (
    <>
      {b ? (
        <div class={b.alert ? "alert bad" : "alert good"} role={b.alert ? "alert" : "status"} data-testid="budget">
          {b.alert ? "Over budget: " : "Within budget: "}
          {b.month} projected <Money v={b.projected_usd} unpriced={b.unpriced_events} /> of{" "}
          {usd(b.monthly_budget_usd)} ({pct(b.projected_percent_of_budget)}); spent so far{" "}
          <Money v={b.month_to_date_usd} />.
        </div>
      ) : (
        <p class="muted" data-testid="budget">
          No monthly budget is set on this collector.
        </p>
      )}
      <p>
        Projected saving from the recommendations:{" "}
        <strong data-testid="projected-saving" data-value={r.projected_monthly_saving_usd}>
          {usd(r.projected_monthly_saving_usd)} a month
        </strong>{" "}
        <span class="muted">
          (candidates need {count(r.min_tasks)} tasks and a success rate within{" "}
          {ratePct(r.margin)} of the best)
        </span>
      </p>
      <Table
        caption="Routing recommendations by task type"
        testid="recommendation-table"
        head={["Task type", "Tasks", "Average cost now", "Recommended", "Its success rate", "Its average cost", "Saving a month"]}
        rows={advice.map((a) => [
          groupName(a.task_type),
          count(a.tasks),
          <Money v={a.current_avg_cost_usd} />,
          a.recommended ? (
            `${a.recommended.provider} / ${a.recommended.model}`
          ) : (
            <span class="muted">{a.reason ?? "none"}</span>
          ),
          a.recommended ? ratePct(a.recommended.success_rate) : "—",
          a.recommended ? <Money v={a.recommended.avg_cost_usd} /> : "—",
          a.projected_monthly_saving_usd === null ? "—" : usd(a.projected_monthly_saving_usd),
        ])}
        empty="No task types ran in this range."
      />
    </>
  );
}
