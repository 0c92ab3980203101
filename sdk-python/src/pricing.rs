//! `PriceBook`, `Cost` and savings: sdk-core's pricing with money as `decimal.Decimal`.

use std::sync::Arc;

use agenttally::pricing::{self as core, Baseline, SavingsSummary as CoreSummary, Task};
use agenttally::{ServiceTier, Usage};
use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rust_decimal::Decimal;

use crate::convert;
use crate::errors;

/// A price book (see sdk-core's `PriceBook`).
#[pyclass(module = "agenttally._native", name = "PriceBook", frozen)]
#[derive(Debug)]
pub struct PriceBook {
    pub(crate) inner: Arc<core::PriceBook>,
}

fn tier(v: &str) -> PyResult<ServiceTier> {
    v.parse().map_err(|e| match e {
        agenttally::Error::Invalid { rule, .. } => errors::invalid("service_tier", rule),
        other => errors::to_py(other),
    })
}

fn at_or_now(at: Option<&Bound<'_, PyAny>>) -> PyResult<DateTime<Utc>> {
    match at {
        Some(t) if !t.is_none() => convert::timestamp(t, "at"),
        _ => Ok(Utc::now()),
    }
}

#[pymethods]
impl PriceBook {
    /// The price book compiled into sdk-core.
    #[staticmethod]
    fn builtin() -> Self {
        PriceBook {
            inner: Arc::new(core::PriceBook::builtin()),
        }
    }

    /// Import LiteLLM's `model_prices_and_context_window.json`, given as its text or a path.
    #[staticmethod]
    fn from_litellm_json(path_or_text: &Bound<'_, PyAny>) -> PyResult<Self> {
        let text = match path_or_text.cast::<PyString>() {
            Ok(s) if s.to_cow()?.trim_start().starts_with('{') => s.to_cow()?.into_owned(),
            _ => {
                let path: std::path::PathBuf = path_or_text.extract()?;
                std::fs::read_to_string(&path).map_err(|e| {
                    errors::to_py(agenttally::Error::Pricing(format!(
                        "reading {}: {e}",
                        path.display()
                    )))
                })?
            }
        };
        let (book, _report) = core::PriceBook::from_litellm_json(&text).map_err(errors::to_py)?;
        Ok(PriceBook {
            inner: Arc::new(book),
        })
    }

    /// The book's version label.
    #[getter]
    fn version(&self) -> String {
        self.inner.version().to_string()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The cost of one call of `model` with this usage, priced at `at` (default: now).
    #[pyo3(signature = (model, *, input_tokens=0, cached_input_tokens=0, cache_write_tokens=0,
        cache_write_1h_tokens=0, output_tokens=0, reasoning_tokens=0, requests=0,
        service_tier="standard", at=None))]
    #[allow(clippy::too_many_arguments)]
    fn cost(
        &self,
        model: String,
        input_tokens: u64,
        cached_input_tokens: u64,
        cache_write_tokens: u64,
        cache_write_1h_tokens: u64,
        output_tokens: u64,
        reasoning_tokens: u64,
        requests: u64,
        service_tier: &str,
        at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Cost> {
        let usage = Usage {
            input_tokens,
            cached_input_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
            output_tokens,
            reasoning_tokens,
            requests,
        };
        let tier = tier(service_tier)?;
        let at = at_or_now(at)?;
        let cost = self.inner.cost(&model, &usage, tier, at);
        Ok(Cost {
            cost,
            book: self.inner.clone(),
            model,
            usage,
            tier,
            at,
        })
    }

    /// Savings of `tasks` against `baseline` (a model name; `None`: the most expensive model
    /// pricing each task). A task is a dict: `model`, `usage` (canonical buckets or a provider
    /// usage object), and optionally `provider`, `task_type`, `service_tier`, `at`, `success`,
    /// `actual_usd`.
    #[pyo3(signature = (tasks, *, baseline=None))]
    fn savings(
        &self,
        tasks: &Bound<'_, PyAny>,
        baseline: Option<String>,
    ) -> PyResult<SavingsReport> {
        let mut list = Vec::new();
        for (i, item) in tasks.try_iter()?.enumerate() {
            let item = item?;
            let field = format!("tasks[{i}]");
            let d = item.cast::<PyDict>().map_err(|_| {
                errors::invalid(
                    &field,
                    format!("must be a dict, got {}", convert::type_name(&item)),
                )
            })?;
            let get = |k: &str| d.get_item(k);
            let model: String = match get("model")? {
                Some(m) => m.extract()?,
                None => return Err(errors::invalid(&format!("{field}.model"), "is required")),
            };
            let provider: Option<String> = get("provider")?.map(|p| p.extract()).transpose()?;
            let usage = match get("usage")? {
                Some(u) if !u.is_none() => convert::usage(&u, provider.as_deref())?,
                _ => Usage::default(),
            };
            let mut t = Task::new(model, usage, at_or_now(get("at")?.as_ref())?);
            t.provider = provider;
            t.task_type = get("task_type")?.map(|p| p.extract()).transpose()?;
            if let Some(s) = get("service_tier")? {
                t.tier = tier(&s.extract::<String>()?)?;
            }
            if let Some(s) = get("success")? {
                t.success = s.extract()?;
            }
            if let Some(a) = get("actual_usd")? {
                if !a.is_none() {
                    t.actual_usd = Some(convert::decimal(&a, &format!("{field}.actual_usd"))?);
                }
            }
            list.push(t);
        }
        let baseline = match baseline {
            Some(m) => Baseline::Model(m),
            None => Baseline::MostExpensive,
        };
        let r = self.inner.savings(&list, &baseline);
        Ok(SavingsReport {
            total: r.total.into(),
            by_provider: r
                .by_provider
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            by_task_type: r
                .by_task_type
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
        })
    }
}

/// The cost of one call: `usd` (`Decimal`, or `None` when unpriced), `status`, `price_version`.
#[pyclass(module = "agenttally._native", name = "Cost", frozen)]
#[derive(Debug)]
pub struct Cost {
    cost: core::Cost,
    book: Arc<core::PriceBook>,
    model: String,
    usage: Usage,
    tier: ServiceTier,
    at: DateTime<Utc>,
}

#[pymethods]
impl Cost {
    #[getter]
    fn usd(&self) -> Option<Decimal> {
        self.cost.usd
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.cost.status.as_str()
    }

    #[getter]
    fn price_version(&self) -> Option<String> {
        self.cost.price_version.clone()
    }

    /// How the cost was obtained: entry, rates per bucket, fallbacks (human-readable).
    fn explain(&self) -> String {
        self.book
            .explain(&self.model, &self.usage, self.tier, self.at)
            .to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Cost(usd={}, status='{}', price_version={})",
            self.cost
                .usd
                .map_or("None".into(), |d| format!("Decimal('{d}')")),
            self.cost.status,
            self.cost
                .price_version
                .as_ref()
                .map_or("None".into(), |v| format!("'{v}'"))
        )
    }
}

/// Totals of a group of tasks (see sdk-core's `SavingsSummary`).
#[pyclass(
    module = "agenttally._native",
    name = "SavingsSummary",
    frozen,
    get_all
)]
#[derive(Debug, Clone)]
pub struct SavingsSummary {
    tasks: u64,
    successful_tasks: u64,
    compared_tasks: u64,
    actual_unpriced: u64,
    baseline_unpriced: u64,
    estimated_tasks: u64,
    actual_usd: Decimal,
    baseline_usd: Decimal,
    savings_usd: Decimal,
    savings_percent: Option<Decimal>,
    successful_savings_usd: Decimal,
    successful_savings_percent: Option<Decimal>,
    cost_per_successful_task: Option<Decimal>,
}

impl From<CoreSummary> for SavingsSummary {
    fn from(s: CoreSummary) -> Self {
        SavingsSummary {
            tasks: s.tasks,
            successful_tasks: s.successful_tasks,
            compared_tasks: s.compared_tasks,
            actual_unpriced: s.actual_unpriced,
            baseline_unpriced: s.baseline_unpriced,
            estimated_tasks: s.estimated_tasks,
            actual_usd: s.actual_usd,
            baseline_usd: s.baseline_usd,
            savings_usd: s.savings_usd,
            savings_percent: s.savings_percent,
            successful_savings_usd: s.successful_savings_usd,
            successful_savings_percent: s.successful_savings_percent,
            cost_per_successful_task: s.cost_per_successful_task,
        }
    }
}

/// Savings totalled and grouped by provider and task type.
#[pyclass(module = "agenttally._native", name = "SavingsReport", frozen, get_all)]
#[derive(Debug)]
pub struct SavingsReport {
    total: SavingsSummary,
    by_provider: std::collections::BTreeMap<String, SavingsSummary>,
    by_task_type: std::collections::BTreeMap<String, SavingsSummary>,
}
