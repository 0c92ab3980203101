//! Pricing at ingest: the collector's price book (sdk-core's built-in book, with an optional
//! LiteLLM-format file layered over it), each tenant's negotiated prices layered over that
//! (`tenant_prices`, effective-dated, reloaded periodically), and the rule for which events it
//! prices. The prices themselves are sdk-core's (`PriceBook::price_event`): one definition of a
//! price.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use agenttally::pricing::{Baseline, Cost, PriceBook, TenantPriceBooks};
use agenttally::{AnalyticsEvent, CostStatus, EventType};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// The book events are priced with: `PriceBook::builtin()`, with the entries of the LiteLLM file
/// at `price_file` (if any) layered over it, so a file entry wins for its model while in effect.
/// A file that cannot be read or is not a JSON object is a configuration error; single entries
/// the import skips are logged.
pub fn load_book(price_file: Option<&Path>) -> Result<PriceBook> {
    let builtin = PriceBook::builtin();
    let Some(path) = price_file else {
        return Ok(builtin);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("price_file: cannot read `{}`: {e}", path.display())))?;
    let (file, report) = PriceBook::from_litellm_json(&text)
        .map_err(|e| Error::Config(format!("price_file `{}`: {e}", path.display())))?;
    if !report.skipped.is_empty() {
        tracing::warn!(
            "price file `{}`: {} entries skipped ({:?})",
            path.display(),
            report.skipped.len(),
            report.skipped_by_reason()
        );
    }
    tracing::info!(
        "price file `{}`: {} models layered over the built-in book",
        path.display(),
        file.len()
    );
    Ok(builtin.with_overrides(&file))
}

/// The books events are priced with: the collector's book, and per tenant its negotiated
/// prices layered over it. Swapped whole on reload; readers take a snapshot (an `Arc`).
#[derive(Debug)]
pub struct Prices {
    books: RwLock<Arc<TenantPriceBooks>>,
}

impl Prices {
    /// Every tenant on `base` until its overrides are loaded.
    pub fn new(base: PriceBook) -> Self {
        Prices {
            books: RwLock::new(Arc::new(TenantPriceBooks::new(base))),
        }
    }

    /// The books as they are now.
    pub fn books(&self) -> Arc<TenantPriceBooks> {
        self.books
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The shared base book.
    pub fn base(&self) -> PriceBook {
        self.books().base().clone()
    }

    /// Rebuild every tenant's overrides from `tenant_prices` (read as the collector's own user,
    /// across tenants); returns the tenants with overrides. A row that no longer imports is
    /// skipped and logged, never fatal.
    pub async fn reload(&self, client: &impl GenericClient) -> Result<usize> {
        let rows = client
            .query(
                "SELECT tenant_id, model, effective_from, entry FROM tenant_prices
                 ORDER BY tenant_id, model, effective_from",
                &[],
            )
            .await?;
        let base = self.base();
        let mut overrides: BTreeMap<String, PriceBook> = BTreeMap::new();
        for r in &rows {
            let (tenant, model, from): (String, String, DateTime<Utc>) =
                (r.get(0), r.get(1), r.get(2));
            let entry: serde_json::Value = r.get(3);
            let book = overrides
                .entry(tenant.clone())
                .or_insert_with(|| PriceBook::new(format!("tenant:{tenant}")));
            if let Err(e) = add_override(book, &model, &entry, from) {
                tracing::warn!("tenant_prices of `{tenant}`, `{model}` from {from}: {e}");
            }
        }
        let mut books = TenantPriceBooks::new(base);
        let n = overrides.len();
        for (tenant, o) in overrides {
            books.set_overrides(tenant, &o);
        }
        *self.books.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(books);
        Ok(n)
    }
}

/// Add the LiteLLM `entry` of `model`, in effect from `from`, to `book`.
fn add_override(
    book: &mut PriceBook,
    model: &str,
    entry: &serde_json::Value,
    from: DateTime<Utc>,
) -> std::result::Result<(), String> {
    let text = serde_json::json!({ model: entry }).to_string();
    let (one, report) = PriceBook::from_litellm_json(&text).map_err(|e| e.to_string())?;
    if !report.skipped.is_empty() {
        return Err(format!("not imported: {:?}", report.skipped_by_reason()));
    }
    for key in one.model_keys() {
        for e in one.entries(key) {
            let e = e.clone().effective_from(from);
            book.insert(e).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Store `tenant`'s negotiated prices: every model of the LiteLLM-format `text`, in effect from
/// `from` (replacing an earlier setting of the same model and date). The whole file is checked
/// first: an entry the import skips is an error naming it, and nothing is stored.
pub async fn set_tenant_prices(
    client: &impl GenericClient,
    tenant: &str,
    text: &str,
    from: DateTime<Utc>,
) -> Result<usize> {
    let (book, report) =
        PriceBook::from_litellm_json(text).map_err(|e| Error::Config(format!("--file: {e}")))?;
    if !report.skipped.is_empty() {
        return Err(Error::Config(format!(
            "--file: entries not imported: {:?}",
            report.skipped
        )));
    }
    let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| Error::Config(format!("--file: not a JSON object: {e}")))?;
    let mut n = 0;
    for key in book.model_keys() {
        let Some(entry) = raw.get(key) else { continue };
        client
            .execute(
                "INSERT INTO tenant_prices (tenant_id, model, effective_from, entry)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, model, effective_from)
                 DO UPDATE SET entry = EXCLUDED.entry, set_at = now()",
                &[&tenant, &key, &from, &tokio_postgres::types::Json(entry)],
            )
            .await?;
        n += 1;
    }
    Ok(n)
}

/// Price `event` if the sender did not: an event with neither `cost_usd` nor `cost_status` is
/// priced from its usage (an unknown model becomes `unpriced`, cost absent); a cost the sender
/// gave is kept (`reported` when it came without a status); a status without a cost (the sender
/// priced it and could not) is left as sent.
pub fn price_at_ingest(book: &PriceBook, event: &mut AnalyticsEvent) {
    if event.cost_usd.is_none() && event.cost_status.is_some() {
        return;
    }
    book.price_event(event);
}

/// The baseline name meaning "the most expensive model of the book that prices the usage".
pub const MOST_EXPENSIVE: &str = "most_expensive";

/// At most this many baselines are priced per spend event.
pub const MAX_BASELINES: usize = 8;

/// The baselines every spend event is priced on at ingest (`--savings-baseline`), with the book
/// that prices them (the ingest book). Savings are answered only for these: a baseline cannot
/// be summed from rollups afterwards, since long-context tiers make a cost non-linear in tokens.
#[derive(Debug, Clone)]
pub struct SavingsPricer {
    prices: Arc<Prices>,
    baselines: Vec<(String, Baseline)>,
}

/// One baseline's price of one spend event, as stored on the raw row (`events.baselines`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineCost {
    /// `priced`, `estimated` or `unpriced`.
    pub status: CostStatus,
    /// Exact USD; `None` when unpriced.
    pub usd: Option<Decimal>,
    /// The model that priced it (for `most_expensive`, the dearest one).
    pub model: Option<String>,
}

impl SavingsPricer {
    /// Baselines named `names` (`most_expensive` or a model the book prices), in order; the
    /// first is the default of the savings endpoint. Errors name the setting and the rule.
    pub fn new(prices: Arc<Prices>, names: &[String]) -> Result<Self> {
        let book = prices.base();
        if names.is_empty() || names.len() > MAX_BASELINES {
            return Err(Error::Config(format!(
                "savings_baseline: give 1 to {MAX_BASELINES} baselines, got {}",
                names.len()
            )));
        }
        let mut baselines = Vec::with_capacity(names.len());
        for name in names {
            let name = name.trim();
            let b = if name == MOST_EXPENSIVE {
                Baseline::MostExpensive
            } else if name.is_empty() {
                return Err(Error::Config(
                    "savings_baseline: a baseline name is empty".into(),
                ));
            } else if book.entries(name).is_empty() {
                return Err(Error::Config(format!(
                    "savings_baseline: `{name}` is not a model of the price book \
                     (use `{MOST_EXPENSIVE}` or a model the book prices)"
                )));
            } else {
                Baseline::Model(name.to_string())
            };
            if baselines.iter().any(|(n, _)| n == name) {
                return Err(Error::Config(format!(
                    "savings_baseline: `{name}` is given twice"
                )));
            }
            baselines.push((name.to_string(), b));
        }
        Ok(SavingsPricer { prices, baselines })
    }

    /// The raw row's `baselines` of one task: `{"<name>": {"status", "usd", "model"}}`, the
    /// amount as exact decimal text (absent when unpriced).
    pub fn to_json(&self, costs: &[BaselineCost]) -> String {
        let mut out = String::with_capacity(128);
        self.write_json(costs, &mut out);
        out
    }

    /// [`to_json`](Self::to_json) appended to `out`: JSON text written directly, since the
    /// writer stores it on every spend event (a `serde_json::Value` built and dropped per event
    /// was ~6% of the collector's CPU during ingest).
    pub fn write_json(&self, costs: &[BaselineCost], out: &mut String) {
        use std::fmt::Write as _;
        out.push('{');
        for (i, ((name, _), c)) in self.baselines.iter().zip(costs).enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, name);
            out.push_str(":{\"status\":");
            json_str(out, c.status.as_str());
            if let Some(usd) = c.usd {
                // Writing to a `String` cannot fail.
                let _ = write!(out, ",\"usd\":\"{usd}\"");
            }
            if let Some(m) = &c.model {
                out.push_str(",\"model\":");
                json_str(out, m);
            }
            out.push('}');
        }
        out.push('}');
    }

    /// The names of the baselines, the default first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.baselines.iter().map(|(n, _)| n.as_str())
    }

    /// Whether `e` is a savings task: a spend event (docs/metrics.md) — a `provider.api_call`,
    /// or a terminal agent event that is not itemized (its calls are the tasks then).
    pub fn is_task(e: &AnalyticsEvent) -> bool {
        e.event_type == EventType::ProviderApiCall
            || (e.event_type.is_agent_outcome() && !is_itemized(e))
    }

    /// The books baselines are priced with now (each tenant's own book).
    pub fn books(&self) -> Arc<TenantPriceBooks> {
        self.prices.books()
    }

    /// Each baseline's price of `e`'s usage at its timestamp and tier with `book` (its tenant's),
    /// in `names()` order; `None` when `e` is not a savings task. A task without usage has
    /// nothing to price on a baseline: unpriced.
    pub fn price(&self, book: &PriceBook, e: &AnalyticsEvent) -> Option<Vec<BaselineCost>> {
        if !Self::is_task(e) {
            return None;
        }
        Some(
            self.baselines
                .iter()
                .map(|(_, b)| match &e.usage {
                    Some(u) => {
                        let (model, Cost { status, usd, .. }) =
                            book.baseline_cost(b, u, e.tier(), e.timestamp);
                        BaselineCost {
                            status,
                            usd,
                            model: usd.and(model),
                        }
                    }
                    None => BaselineCost {
                        status: CostStatus::Unpriced,
                        usd: None,
                        model: None,
                    },
                })
                .collect(),
        )
    }
}

/// `s` as a JSON string literal: as is between quotes when nothing needs escaping (names of
/// baselines and models), else escaped by serde_json.
fn json_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::Value::from(s).to_string());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Whether `e` is an *itemized* terminal agent event: an outcome whose cost and usage repeat
/// the sum of the run's `provider.api_call` events, which sdk-core's run helper marks with
/// `metadata.calls` (the calls it recorded) >= 1. Spend leaves these out, since their calls are
/// counted (docs/metrics.md); a key column, so the rule is exact from rollups.
pub fn is_itemized(e: &AnalyticsEvent) -> bool {
    e.event_type.is_agent_outcome()
        && e.metadata
            .get("calls")
            .and_then(serde_json::Value::as_u64)
            .is_some_and(|n| n >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agenttally::{ProviderEvent, Usage};

    fn call(model: &str) -> AnalyticsEvent {
        ProviderEvent::api_call("t", "openai", model)
            .usage(Usage {
                input_tokens: 1_000,
                output_tokens: 100,
                requests: 1,
                ..Usage::default()
            })
            .build()
            .expect("event")
    }

    #[test]
    fn a_missing_file_is_a_config_error_naming_it() {
        let e = load_book(Some(Path::new("no/such/prices.json"))).expect_err("missing");
        assert!(
            e.to_string()
                .contains("price_file: cannot read `no/such/prices.json`"),
            "{e}"
        );
    }

    #[test]
    fn a_status_without_a_cost_is_left_as_sent() {
        let book = PriceBook::builtin();
        let mut e = call("gpt-4o");
        e.cost_status = Some(CostStatus::Unpriced);
        price_at_ingest(&book, &mut e);
        assert_eq!(
            (e.cost_usd, e.cost_status),
            (None, Some(CostStatus::Unpriced))
        );
        let mut e = call("gpt-4o");
        price_at_ingest(&book, &mut e);
        assert_eq!(e.cost_status, Some(CostStatus::Priced));
        assert!(e.cost_usd.is_some() && e.price_version.is_some());
    }

    #[test]
    fn baselines_are_checked_when_configured() {
        let book = Arc::new(Prices::new(PriceBook::builtin()));
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (given, want) in [
            (names(&[]), "savings_baseline: give 1 to 8 baselines, got 0"),
            (
                names(&["no-such-model"]),
                "savings_baseline: `no-such-model` is not a model",
            ),
            (
                names(&["gpt-4o", "gpt-4o"]),
                "savings_baseline: `gpt-4o` is given twice",
            ),
            (names(&[" "]), "savings_baseline: a baseline name is empty"),
        ] {
            let e = SavingsPricer::new(book.clone(), &given).expect_err("refused");
            assert!(e.to_string().contains(want), "{e}");
        }
        let p = SavingsPricer::new(book, &names(&["openai_codex", MOST_EXPENSIVE])).expect("ok");
        assert_eq!(
            p.names().collect::<Vec<_>>(),
            ["openai_codex", MOST_EXPENSIVE]
        );
    }

    #[test]
    fn only_spend_events_are_tasks_and_no_usage_is_unpriced() {
        let builtin = PriceBook::builtin();
        let p = SavingsPricer::new(
            Arc::new(Prices::new(builtin.clone())),
            &["openai_codex".to_string(), MOST_EXPENSIVE.to_string()],
        )
        .expect("pricer");
        let costs = p
            .price(&builtin, &call("gpt-4o"))
            .expect("a call is a task");
        // 1,100 tokens on openai_codex at 0.06 per 1k.
        assert_eq!(costs[0].usd.map(|d| d.to_string()), Some("0.066".into()));
        assert_eq!(costs[0].status, CostStatus::Priced);
        assert!(costs[1].usd.is_some() && costs[1].model.is_some());
        let json: serde_json::Value = serde_json::from_str(&p.to_json(&costs)).expect("json");
        assert_eq!(json["openai_codex"]["usd"], "0.066");
        assert_eq!(json["openai_codex"]["model"], "openai_codex");

        let mut no_usage = call("gpt-4o");
        no_usage.usage = None;
        let costs = p.price(&builtin, &no_usage).expect("still a task");
        assert!(costs
            .iter()
            .all(|c| c.status == CostStatus::Unpriced && c.usd.is_none()));

        let start = agenttally::AgentEvent::started("t", "agent")
            .build()
            .expect("start");
        assert_eq!(p.price(&builtin, &start), None);
        let mut itemized = agenttally::AgentEvent::completed("t", "agent")
            .build()
            .expect("done");
        itemized.metadata.insert("calls".into(), 2.into());
        assert_eq!(
            p.price(&builtin, &itemized),
            None,
            "its calls are the tasks"
        );
        itemized.metadata.insert("calls".into(), 0.into());
        assert!(
            p.price(&builtin, &itemized).is_some(),
            "summary-only: the run is the task"
        );
    }

    #[test]
    fn json_text_escapes_what_json_must() {
        for s in [
            "plain",
            "a\"quote",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{1}\u{1f}",
            "ünï 模型",
            "",
        ] {
            let mut out = String::new();
            json_str(&mut out, s);
            let back: String = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(back, s, "{out}");
        }
    }
}
