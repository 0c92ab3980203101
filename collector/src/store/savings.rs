//! Savings rollups: each spend event's actual cost beside what its baselines would have cost
//! (priced at ingest, `crate::pricing::SavingsPricer`), summed by tenant x bucket x baseline x
//! provider x model x task_type x success into `rollup_savings_hourly` / `_daily` in the same
//! transaction as the raw rows — so savings from rollups equal savings recomputed per call over
//! raw rows, exactly (docs/metrics.md).

use std::collections::BTreeMap;

use agenttally::{AnalyticsEvent, CostStatus};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::GenericClient;

use super::rollups::Grain;
use super::to_i64 as i;
use crate::pricing::BaselineCost;

/// `(bucket, baseline, provider, model, task_type, success)`; absent dimensions are `""`.
pub type Key<'a> = (DateTime<Utc>, &'a str, &'a str, &'a str, &'a str, bool);

/// Sums over the tasks of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub tasks: i64,
    pub compared: i64,
    pub actual_unpriced: i64,
    pub baseline_unpriced: i64,
    pub unpriced_tokens: i64,
    pub estimated: i64,
    pub actual_usd: Decimal,
    pub baseline_usd: Decimal,
}

impl Delta {
    /// Add one task: its actual cost (`cost_usd`, as stored) and one baseline's price of it.
    fn add(&mut self, e: &AnalyticsEvent, b: &BaselineCost) {
        self.tasks += 1;
        match (e.cost_usd, b.usd) {
            (Some(a), Some(base)) => {
                self.compared += 1;
                if e.cost_status == Some(CostStatus::Estimated) || b.status == CostStatus::Estimated
                {
                    self.estimated += 1;
                }
                // Validation caps one cost at 1e9 USD, so a commit's sum cannot overflow.
                self.actual_usd = self.actual_usd.checked_add(a).unwrap_or(self.actual_usd);
                self.baseline_usd = self
                    .baseline_usd
                    .checked_add(base)
                    .unwrap_or(self.baseline_usd);
            }
            (a, base) => {
                self.actual_unpriced += i64::from(a.is_none());
                self.baseline_unpriced += i64::from(base.is_none());
                self.unpriced_tokens += e.usage.map_or(0, |u| i(u.total_tokens()));
            }
        }
    }

    /// Add another delta (of the same key).
    pub fn merge(&mut self, o: &Delta) {
        self.tasks += o.tasks;
        self.compared += o.compared;
        self.actual_unpriced += o.actual_unpriced;
        self.baseline_unpriced += o.baseline_unpriced;
        self.unpriced_tokens += o.unpriced_tokens;
        self.estimated += o.estimated;
        self.actual_usd = self
            .actual_usd
            .checked_add(o.actual_usd)
            .unwrap_or(self.actual_usd);
        self.baseline_usd = self
            .baseline_usd
            .checked_add(o.baseline_usd)
            .unwrap_or(self.baseline_usd);
    }
}

/// Deltas by key, in key order (the order rows are written in).
pub type Deltas<'a> = BTreeMap<Key<'a>, Delta>;

/// Aggregate the tasks among `events` (with their baseline prices, `None` for events that are
/// not tasks) into deltas of `grain`; `names` are the baselines in the order priced.
pub fn deltas<'a>(
    grain: Grain,
    names: &[&'a str],
    events: impl IntoIterator<Item = (&'a AnalyticsEvent, Option<&'a [BaselineCost]>)>,
) -> Deltas<'a> {
    let mut out = Deltas::new();
    for (e, costs) in events {
        let Some(costs) = costs else { continue };
        let bucket = grain.bucket(e.timestamp);
        for (name, b) in names.iter().zip(costs) {
            let key = (
                bucket,
                *name,
                e.provider.as_deref().unwrap_or(""),
                e.model.as_deref().unwrap_or(""),
                e.task_type.as_deref().unwrap_or(""),
                e.success,
            );
            out.entry(key).or_default().add(e, b);
        }
    }
    out
}

/// The daily deltas of the tasks `hourly` was made of: each hour's deltas added into its day.
pub fn daily_from_hourly<'a>(hourly: &Deltas<'a>) -> Deltas<'a> {
    let mut out = Deltas::new();
    for ((b, n, p, m, t, s), d) in hourly {
        out.entry((Grain::Daily.bucket(*b), *n, *p, *m, *t, *s))
            .or_default()
            .merge(d);
    }
    out
}

/// The statement that adds deltas into one savings rollup table (`$1` tenant, then one array
/// per column).
pub fn upsert_sql(grain: Grain) -> String {
    let table = match grain {
        Grain::Hourly => "rollup_savings_hourly",
        Grain::Daily => "rollup_savings_daily",
    };
    let sums = [
        "tasks",
        "compared",
        "actual_unpriced",
        "baseline_unpriced",
        "unpriced_tokens",
        "estimated",
        "actual_usd",
        "baseline_usd",
    ]
    .iter()
    .map(|c| format!("{c} = r.{c} + EXCLUDED.{c}"))
    .collect::<Vec<_>>()
    .join(", ");
    format!(
        "INSERT INTO {table} AS r (tenant_id, bucket, baseline, provider, model, task_type, \
           success, tasks, compared, actual_unpriced, baseline_unpriced, unpriced_tokens, \
           estimated, actual_usd, baseline_usd) \
         SELECT $1, * FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], \
           $6::text[], $7::bool[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
           $12::int8[], $13::int8[], $14::numeric[], $15::numeric[]) \
         ON CONFLICT (tenant_id, bucket, baseline, provider, model, task_type, success) \
         DO UPDATE SET {sums}"
    )
}

/// Run `upsert_sql` with `deltas` of one tenant; returns the rows written.
pub async fn write(
    client: &impl GenericClient,
    sql: &tokio_postgres::Statement,
    tenant: &str,
    deltas: &Deltas<'_>,
) -> Result<u64, tokio_postgres::Error> {
    if deltas.is_empty() {
        return Ok(0);
    }
    let n = deltas.len();
    let mut bucket = Vec::with_capacity(n);
    let mut baseline = Vec::with_capacity(n);
    let mut prov = Vec::with_capacity(n);
    let mut model = Vec::with_capacity(n);
    let mut task = Vec::with_capacity(n);
    let mut success = Vec::with_capacity(n);
    let mut ints: [Vec<i64>; 6] = Default::default();
    let mut actual = Vec::with_capacity(n);
    let mut base = Vec::with_capacity(n);
    for ((b, name, p, m, k, s), d) in deltas {
        bucket.push(*b);
        baseline.push(*name);
        prov.push(*p);
        model.push(*m);
        task.push(*k);
        success.push(*s);
        let v = [
            d.tasks,
            d.compared,
            d.actual_unpriced,
            d.baseline_unpriced,
            d.unpriced_tokens,
            d.estimated,
        ];
        for (c, x) in ints.iter_mut().zip(v) {
            c.push(x);
        }
        actual.push(d.actual_usd);
        base.push(d.baseline_usd);
    }
    let [tasks, compared, au, bu, ut, est] = &ints;
    client
        .execute(
            sql,
            &[
                &tenant, &bucket, &baseline, &prov, &model, &task, &success, tasks, compared, au,
                bu, ut, est, &actual, &base,
            ],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_from_hourly_equals_daily_from_events() {
        let mut events = super::super::rollups::tests::events();
        for (i, e) in events.iter_mut().enumerate() {
            e.success = i % 5 != 0;
            if i % 7 == 0 {
                e.cost_usd = None;
            }
        }
        let costs: Vec<Vec<BaselineCost>> = (0..events.len())
            .map(|i| {
                let dear = BaselineCost {
                    status: CostStatus::Priced,
                    usd: Some(Decimal::new(3 * i as i64, 4)),
                    model: Some("dear".into()),
                };
                let named = if i % 3 == 0 {
                    BaselineCost {
                        status: CostStatus::Unpriced,
                        usd: None,
                        model: None,
                    }
                } else {
                    BaselineCost {
                        status: CostStatus::Estimated,
                        usd: Some(Decimal::new(i as i64, 3)),
                        model: Some("named".into()),
                    }
                };
                vec![dear, named]
            })
            .collect();
        let names = ["most_expensive", "named"];
        let tasks = || events.iter().zip(costs.iter().map(|c| Some(c.as_slice())));
        let hourly = deltas(Grain::Hourly, &names, tasks());
        let daily = daily_from_hourly(&hourly);
        assert!(hourly.len() > daily.len() && daily.len() > 3);
        assert_eq!(daily, deltas(Grain::Daily, &names, tasks()));
    }
}
