//! Savings of routed tasks against a baseline policy (a named model, or the most expensive model
//! that prices the same usage), totalled and grouped by provider and task type, in exact decimals.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

use super::book::PriceBook;
use super::cost::Cost;
use super::{CostStatus, ServiceTier, Usage};

/// One completed task as routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Grouping key; the model is used when absent.
    pub provider: Option<String>,
    /// The model that ran the task (priced with the book when `actual_usd` is absent).
    pub model: String,
    pub task_type: Option<String>,
    pub usage: Usage,
    pub tier: ServiceTier,
    pub at: DateTime<Utc>,
    pub success: bool,
    /// The actual cost when known (reported); otherwise priced from the book.
    pub actual_usd: Option<Decimal>,
}

impl Task {
    /// A successful standard-tier task of `model` with no reported cost.
    pub fn new(model: impl Into<String>, usage: Usage, at: DateTime<Utc>) -> Self {
        Task {
            provider: None,
            model: model.into(),
            task_type: None,
            usage,
            tier: ServiceTier::Standard,
            at,
            success: true,
            actual_usd: None,
        }
    }
}

/// What each task is compared against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// Every task on this model.
    Model(String),
    /// Per task, the most expensive model in the book pricing that usage at that date and tier
    /// (the seed's default). Ties: the first key in book order.
    MostExpensive,
}

/// One task's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSavings {
    pub actual: Cost,
    pub baseline: Cost,
    /// The model the baseline priced the task on.
    pub baseline_model: Option<String>,
    /// `baseline − actual`, when both are priced.
    pub savings_usd: Option<Decimal>,
}

/// Totals for a group of tasks. Sums cover the tasks whose actual and baseline costs are both
/// known ("compared"); the others are counted beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavingsSummary {
    pub tasks: u64,
    pub successful_tasks: u64,
    /// Tasks in the sums.
    pub compared_tasks: u64,
    /// Tasks whose actual cost is unknown (unknown model, no reported cost).
    pub actual_unpriced: u64,
    /// Tasks the baseline could not price.
    pub baseline_unpriced: u64,
    /// Tokens of the tasks left out of the sums.
    pub unpriced_tokens: u64,
    /// Compared tasks priced with a fallback (`estimated`) on either side.
    pub estimated_tasks: u64,
    pub actual_usd: Decimal,
    pub baseline_usd: Decimal,
    /// `baseline_usd − actual_usd`; negative when routing cost more.
    pub savings_usd: Decimal,
    /// `savings / baseline × 100`, exact to 28 digits, signed; `None` when the baseline is 0.
    pub savings_percent: Option<Decimal>,
    /// Compared successful tasks only: a failed routed task saves nothing.
    pub successful_actual_usd: Decimal,
    pub successful_baseline_usd: Decimal,
    pub successful_savings_usd: Decimal,
    pub successful_savings_percent: Option<Decimal>,
    /// All compared actual cost (failures included) / compared successful tasks.
    pub cost_per_successful_task: Option<Decimal>,
}

fn percent(part: Decimal, whole: Decimal) -> Option<Decimal> {
    if whole.is_zero() {
        return None;
    }
    part.checked_mul(Decimal::ONE_HUNDRED)?
        .checked_div(whole)
        .map(|d| d.normalize())
}

/// Round for display only (half away from zero); sums and percentages stay exact.
pub fn display_round(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
}

/// What a group of tasks adds up to: the counts and sums that
/// [`SavingsSummary::from_sums`] derives the savings figures from. Groups add up with `+=`
/// (the collector sums its savings rollups into these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavingsSums {
    pub tasks: u64,
    pub successful_tasks: u64,
    /// Tasks whose actual and baseline costs are both known.
    pub compared_tasks: u64,
    /// Compared tasks that succeeded: the divisor of the cost per successful task.
    pub compared_successful_tasks: u64,
    pub actual_unpriced: u64,
    pub baseline_unpriced: u64,
    pub unpriced_tokens: u64,
    pub estimated_tasks: u64,
    /// Over the compared tasks.
    pub actual_usd: Decimal,
    pub baseline_usd: Decimal,
    /// Over the compared successful tasks.
    pub successful_actual_usd: Decimal,
    pub successful_baseline_usd: Decimal,
}

impl std::ops::AddAssign<&SavingsSums> for SavingsSums {
    fn add_assign(&mut self, o: &SavingsSums) {
        self.tasks = self.tasks.saturating_add(o.tasks);
        self.successful_tasks = self.successful_tasks.saturating_add(o.successful_tasks);
        self.compared_tasks = self.compared_tasks.saturating_add(o.compared_tasks);
        self.compared_successful_tasks = self
            .compared_successful_tasks
            .saturating_add(o.compared_successful_tasks);
        self.actual_unpriced = self.actual_unpriced.saturating_add(o.actual_unpriced);
        self.baseline_unpriced = self.baseline_unpriced.saturating_add(o.baseline_unpriced);
        self.unpriced_tokens = self.unpriced_tokens.saturating_add(o.unpriced_tokens);
        self.estimated_tasks = self.estimated_tasks.saturating_add(o.estimated_tasks);
        self.actual_usd += o.actual_usd;
        self.baseline_usd += o.baseline_usd;
        self.successful_actual_usd += o.successful_actual_usd;
        self.successful_baseline_usd += o.successful_baseline_usd;
    }
}

impl SavingsSums {
    fn add_task(&mut self, t: &Task, s: &TaskSavings) {
        self.tasks += 1;
        self.successful_tasks += u64::from(t.success);
        match (s.actual.usd, s.baseline.usd) {
            (Some(a), Some(b)) => {
                self.compared_tasks += 1;
                if s.actual.status == CostStatus::Estimated
                    || s.baseline.status == CostStatus::Estimated
                {
                    self.estimated_tasks += 1;
                }
                self.actual_usd += a;
                self.baseline_usd += b;
                if t.success {
                    self.compared_successful_tasks += 1;
                    self.successful_actual_usd += a;
                    self.successful_baseline_usd += b;
                }
            }
            (a, b) => {
                self.actual_unpriced += u64::from(a.is_none());
                self.baseline_unpriced += u64::from(b.is_none());
                self.unpriced_tokens = self.unpriced_tokens.saturating_add(t.usage.total_tokens());
            }
        }
    }
}

impl SavingsSummary {
    /// The summary of a group of tasks from what they add up to — the one definition of the
    /// derived figures: sums normalized, savings = baseline − actual (signed), percentages exact
    /// (`None` on a zero baseline), cost per successful task = all compared actual cost /
    /// compared successful tasks (`None` without any).
    pub fn from_sums(sums: &SavingsSums) -> SavingsSummary {
        let actual_usd = sums.actual_usd.normalize();
        let baseline_usd = sums.baseline_usd.normalize();
        let successful_actual_usd = sums.successful_actual_usd.normalize();
        let successful_baseline_usd = sums.successful_baseline_usd.normalize();
        let savings_usd = (baseline_usd - actual_usd).normalize();
        let successful_savings_usd = (successful_baseline_usd - successful_actual_usd).normalize();
        SavingsSummary {
            tasks: sums.tasks,
            successful_tasks: sums.successful_tasks,
            compared_tasks: sums.compared_tasks,
            actual_unpriced: sums.actual_unpriced,
            baseline_unpriced: sums.baseline_unpriced,
            unpriced_tokens: sums.unpriced_tokens,
            estimated_tasks: sums.estimated_tasks,
            actual_usd,
            baseline_usd,
            savings_usd,
            savings_percent: percent(savings_usd, baseline_usd),
            successful_actual_usd,
            successful_baseline_usd,
            successful_savings_usd,
            successful_savings_percent: percent(successful_savings_usd, successful_baseline_usd),
            cost_per_successful_task: (sums.compared_successful_tasks > 0)
                .then(|| (actual_usd / Decimal::from(sums.compared_successful_tasks)).normalize()),
        }
    }
}

/// The savings of a set of tasks against a baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavingsReport {
    pub total: SavingsSummary,
    pub by_provider: BTreeMap<String, SavingsSummary>,
    /// Tasks without a task type are grouped under `""`.
    pub by_task_type: BTreeMap<String, SavingsSummary>,
    /// Per task, in input order.
    pub tasks: Vec<TaskSavings>,
}

impl PriceBook {
    /// The cheapest way to ask "what would this usage have cost on the dearest model?": every
    /// model in effect at `at` that prices the usage (priced or estimated), maximum cost. Ties:
    /// the first key in book order.
    ///
    /// Exact, and cheap on large books: each model's rates bound its cost from above (highest
    /// prompt-kind rate × prompt tokens + highest output or reasoning rate × output tokens +
    /// highest request rate × requests, in `f64` rounded up; a bucket without a rate falls back
    /// only within its kind), so only the models whose bound reaches the cost of the model with
    /// the highest bound are priced, and only the winner's `Cost` is built.
    pub fn most_expensive(
        &self,
        usage: &Usage,
        tier: ServiceTier,
        at: DateTime<Utc>,
    ) -> Option<(&str, Cost)> {
        let bounds: Vec<f64> = (0..self.len())
            .map(|i| self.model(i).bound().cost_bound(usage))
            .collect();
        // A first candidate: the highest bound that prices the usage at `at`. Its exact cost
        // is a floor for the maximum; models bounded below that floor cannot win.
        let mut order: Vec<usize> = (0..bounds.len()).collect();
        let top = order.len().min(8);
        if top > 0 && top < order.len() {
            order.select_nth_unstable_by(top - 1, |&a, &b| bounds[b].total_cmp(&bounds[a]));
        }
        order[..top].sort_unstable_by(|&a, &b| bounds[b].total_cmp(&bounds[a]));
        let mut floor = f64::NEG_INFINITY;
        for &i in &order[..top] {
            if let Some(usd) = self.usd_at_index(i, usage, tier, at) {
                use rust_decimal::prelude::ToPrimitive;
                // Rounded down a little, so a model tying with it is never skipped.
                floor = usd.to_f64().unwrap_or(0.0) * (1.0 - 1e-9);
                break;
            }
        }
        // The first of the dearest wins a tie, as before; only its `Cost` is built.
        let mut best: Option<(usize, Decimal)> = None;
        for (i, &bound) in bounds.iter().enumerate() {
            if bound < floor {
                continue;
            }
            let Some(usd) = self.usd_at_index(i, usage, tier, at) else {
                continue;
            };
            if best.is_none_or(|(_, b)| usd > b) {
                best = Some((i, usd));
            }
        }
        let (i, _) = best?;
        Some((&*self.model(i).key, self.cost_at_index(i, usage, tier, at)))
    }

    /// What `usage` would have cost on `baseline` at `at` and `tier`, and the model that priced
    /// it (`None` when no model of the book prices it): the one definition of a task's baseline,
    /// used by [`savings`](Self::savings) and by anything that prices baselines one call at a
    /// time (a collector at ingest).
    pub fn baseline_cost(
        &self,
        baseline: &Baseline,
        usage: &Usage,
        tier: ServiceTier,
        at: DateTime<Utc>,
    ) -> (Option<String>, Cost) {
        match baseline {
            Baseline::Model(m) => (Some(m.clone()), self.cost(m, usage, tier, at)),
            Baseline::MostExpensive => match self.most_expensive(usage, tier, at) {
                Some((m, c)) => (Some(m.to_string()), c),
                None => (None, Cost::UNPRICED),
            },
        }
    }

    /// Price each task's actual cost (a reported one wins) and its baseline, and sum them.
    pub fn savings(&self, tasks: &[Task], baseline: &Baseline) -> SavingsReport {
        let mut report = SavingsReport::default();
        let mut total = SavingsSums::default();
        let mut by_provider: BTreeMap<String, SavingsSums> = BTreeMap::new();
        let mut by_task_type: BTreeMap<String, SavingsSums> = BTreeMap::new();
        for t in tasks {
            let actual = match t.actual_usd {
                Some(usd) => Cost {
                    status: CostStatus::Reported,
                    usd: Some(usd),
                    price_version: None,
                },
                None => self.cost(&t.model, &t.usage, t.tier, t.at),
            };
            let (baseline_model, base) = self.baseline_cost(baseline, &t.usage, t.tier, t.at);
            let savings_usd = match (actual.usd, base.usd) {
                (Some(a), Some(b)) => Some((b - a).normalize()),
                _ => None,
            };
            let s = TaskSavings {
                actual,
                baseline: base,
                baseline_model,
                savings_usd,
            };
            let provider = t.provider.clone().unwrap_or_else(|| t.model.clone());
            let task_type = t.task_type.clone().unwrap_or_default();
            total.add_task(t, &s);
            by_provider.entry(provider).or_default().add_task(t, &s);
            by_task_type.entry(task_type).or_default().add_task(t, &s);
            report.tasks.push(s);
        }
        let summaries = |groups: BTreeMap<String, SavingsSums>| {
            groups
                .into_iter()
                .map(|(k, sums)| (k, SavingsSummary::from_sums(&sums)))
                .collect()
        };
        report.total = SavingsSummary::from_sums(&total);
        report.by_provider = summaries(by_provider);
        report.by_task_type = summaries(by_task_type);
        report
    }
}
