// Billing: this period's usage against the tier's limits, the projection and its overage, past
// periods, and the tier that would cost least. The plan is the tenant's as a whole: the filters
// and the date range do not apply.
import type { BillingUsage } from "./api";
import { cmp, pct, usd } from "./dec";
import { showDate } from "./range";
import { Bar, Money, Panel, Table, Tile, count, useLoad, usePage } from "./ui";

const METRIC: Record<string, string> = {
  executions: "Executions",
  tokens: "Tokens",
  cost_usd: "Spend",
};

const amount = (metric: string, v: string) =>
  metric === "cost_usd" ? usd(v) : count(Number(v));

export function BillingDashboard() {
  const { api, refresh, tz } = usePage();
  const load = useLoad(
    () => api.get<BillingUsage>("/v1/billing/usage", { tz }),
    `${tz}|${refresh}|${api.cred.tenant}`,
  );
  const b = load.data;
  const download = { name: "billing-usage", json: b, csv: { path: "/v1/billing/usage", params: { tz } } };
  return (
    <div class="grid">
      <Panel
        id="plan"
        title={b ? `Plan usage, ${b.period}` : "Plan usage"}
        load={load}
        wide
        download={download}
        note={
          b &&
          `Period ${showDate(b.period_start, tz)} to ${showDate(b.period_end, tz)} (a calendar month in ${b.tz}); ` +
            "the date range and filters do not apply to billing."
        }
      >
        {b && (
          <>
            {b.tier === null ? (
              <p class="alert" data-testid="no-plan" role="status">
                No plan: this tenant has no tier recorded and the collector has no default tier,
                so nothing is limited.
              </p>
            ) : null}
            <div class="tiles">
              <Tile id="tier" label="Tier" raw={b.tier} sub={b.tier ? `source: ${b.tier_source}` : undefined}>
                {b.tier ?? "none"}
              </Tile>
              <Tile id="price" label="Monthly price" raw={b.monthly_price_usd}>
                {b.monthly_price_usd === null ? "—" : usd(b.monthly_price_usd)}
              </Tile>
              <Tile
                id="overage"
                label="Projected overage"
                raw={b.projected_overage_usd}
                tone={cmp(b.projected_overage_usd, "0") > 0 ? "bad" : "good"}
              >
                {usd(b.projected_overage_usd)}
              </Tile>
              <Tile id="total" label="Projected total" raw={b.projected_total_usd}>
                {usd(b.projected_total_usd)}
              </Tile>
            </div>
            {b.unpriced_events > 0 && (
              <p class="unpriced">
                {count(b.unpriced_events)} spend events this period have no known cost: spend is
                understated by them.
              </p>
            )}
            <Table
              caption="Usage against the tier's limits"
              testid="limits-table"
              head={["Metric", "Used", "Limit", "Used %", "", "Projected", "Projected overage"]}
              rows={b.usage.map((u) => [
                METRIC[u.metric] ?? u.metric,
                amount(u.metric, u.used),
                u.limit === null ? "unlimited" : amount(u.metric, u.limit),
                u.percent_used === null ? "—" : pct(u.percent_used),
                u.limit === null ? (
                  ""
                ) : (
                  <Bar
                    part={Number(u.percent_used ?? 0)}
                    whole={100}
                    label={`${METRIC[u.metric] ?? u.metric}: ${u.percent_used ?? 0}% of the limit`}
                    tone={cmp(u.percent_used ?? "0", "100") > 0 ? "bad" : "good"}
                  />
                ),
                amount(u.metric, u.projected),
                usd(u.projected_overage_usd),
              ])}
              empty="No limited metrics."
            />
          </>
        )}
      </Panel>

      <Panel id="tiers" title="Tier recommendation" load={load} download={download}>
        {b && (
          <>
            {b.recommended_tier ? (
              <p data-testid="recommended-tier">
                Cheapest for this period's projected use: <strong>{b.recommended_tier.name}</strong>{" "}
                at {usd(b.recommended_tier.projected_total_usd)}
                {b.tier && b.recommended_tier.name === b.tier
                  ? " — the current tier."
                  : b.tier
                    ? ` instead of ${usd(b.projected_total_usd)} on ${b.tier}.`
                    : "."}
              </p>
            ) : (
              <p class="muted" data-testid="recommended-tier">
                No tiers are configured.
              </p>
            )}
            <Table
              caption="What this period would cost on each tier"
              testid="tier-table"
              head={["Tier", "Price", "Projected overage", "Projected total"]}
              rows={b.tier_costs.map((t) => [
                t.name,
                usd(t.monthly_price_usd),
                usd(t.projected_overage_usd),
                usd(t.projected_total_usd),
              ])}
            />
          </>
        )}
      </Panel>

      <Panel id="history" title="History by month" load={load} download={download}>
        {b && (
          <Table
            caption="Past periods"
            testid="history-table"
            head={["Month", "Executions", "Tokens", "Spend", "Overage"]}
            rows={b.history.map((h) => [
              h.period,
              count(h.executions),
              count(h.tokens),
              <Money v={h.cost_usd} unpriced={h.unpriced_events} />,
              usd(h.overage_usd),
            ])}
            empty="No earlier periods with data."
          />
        )}
      </Panel>
    </div>
  );
}
