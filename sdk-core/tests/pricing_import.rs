//! LiteLLM import: exact rate conversion, validation and the report, the whole shared price map,
//! and an effective-dated book rebuilt from the shared price-change history.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use agenttally::pricing::{
    CostStatus, PriceBook, PriceEntry, RateKind, ServiceTier, SkipReason, Usage,
};
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::Value;

fn shared(name: &str) -> Option<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/pricing")
        .join(name);
    match std::fs::read_to_string(&p) {
        Ok(s) => Some(s),
        // CI always has the shared data beside the clone: missing there is a failure, not a skip.
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{} not readable under CI=true ({e})", p.display())
        }
        Err(e) => {
            println!("SKIPPED: {} not readable ({e})", p.display());
            None
        }
    }
}

const SMALL: &str = r#"{
  "sample_spec": {"input_cost_per_token": 0.0, "mode": "one of: chat, embedding"},
  "last_updated": "2026-07-24",
  "exact-model": {
    "input_cost_per_token": 1.1e-07, "output_cost_per_token": 0.0000044,
    "cache_read_input_token_cost": 2.75e-8,
    "input_cost_per_token_above_200k_tokens_priority": 3e-07,
    "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
    "output_cost_per_image": 0.04,
    "litellm_provider": "openai", "mode": "chat"
  },
  "image-model": {"output_cost_per_image": 0.04, "litellm_provider": "openai", "mode": "image_generation"},
  "negative": {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06},
  "stringy": {"input_cost_per_token": "cheap", "output_cost_per_token": 1e-06},
  "units": {"input_cost_per_token": 3.0, "output_cost_per_token": 15.0, "cache_read_input_token_cost": 4.0},
  "ds/deepseek-x": {"input_cost_per_token": 2.8e-07, "input_cost_per_token_cache_hit": 2.8e-08, "output_cost_per_token": 4.2e-07}
}"#;

#[test]
fn small_file_exact_rates_skips_and_warnings() {
    let (book, report) = PriceBook::from_litellm_json(SMALL).unwrap();
    assert_eq!(book.version(), "litellm:2026-07-24");
    assert_eq!(report.imported, 3, "{report:#?}");
    let reasons: BTreeMap<_, _> = report
        .skipped
        .iter()
        .map(|s| (s.key.as_str(), s.reason))
        .collect();
    assert_eq!(reasons["sample_spec"], SkipReason::SampleSpec);
    assert_eq!(reasons["last_updated"], SkipReason::NotAnEntry);
    assert_eq!(reasons["image-model"], SkipReason::NotTokenPriced);
    assert_eq!(reasons["negative"], SkipReason::NegativeRate);
    assert_eq!(reasons["stringy"], SkipReason::InvalidRate);
    let warned: Vec<_> = report.warnings.iter().map(|w| w.key.as_str()).collect();
    // 3.0 and 15.0 per token are unit mistakes; cache read 4.0 > input 3.0.
    assert_eq!(
        warned.iter().filter(|k| **k == "units").count(),
        4,
        "{:#?}",
        report.warnings
    );
    assert_eq!(report.ignored_fields["output_cost_per_image"], 1);

    let e = &book.entries("exact-model")[0];
    // Converted from the decimal text: 1.1e-07 is exactly 0.00000011.
    let rate = |k, t, a| e.get_rate(k, t, a).unwrap().to_string();
    assert_eq!(
        rate(RateKind::Input, ServiceTier::Standard, 0),
        "0.00000011"
    );
    assert_eq!(
        rate(RateKind::Output, ServiceTier::Standard, 0),
        "0.0000044"
    );
    assert_eq!(
        rate(RateKind::CacheRead, ServiceTier::Standard, 0),
        "0.0000000275"
    );
    assert_eq!(
        rate(RateKind::Input, ServiceTier::Priority, 200_000),
        "0.0000003"
    );
    assert_eq!(
        rate(RateKind::CacheWrite1h, ServiceTier::Standard, 200_000),
        "0.000012"
    );
    // DeepSeek's `input_cost_per_token_cache_hit` spelling is the cache-read rate.
    let u = Usage {
        cached_input_tokens: 1_000_000,
        ..Usage::default()
    };
    let c = book.cost("deepseek-x", &u, ServiceTier::Standard, Utc::now());
    assert_eq!(c.usd.unwrap().to_string(), "0.028");
    assert_eq!(c.price_version.as_deref(), Some("litellm:2026-07-24"));
    assert!(PriceBook::from_litellm_json("[1, 2]").is_err());
    assert!(PriceBook::from_litellm_json("{not json").is_err());
}

#[test]
fn whole_shared_price_map_imports() {
    let Some(text) = shared("model_prices_and_context_window.json") else {
        return;
    };
    let (book, report) = PriceBook::from_litellm_json(&text).unwrap();
    println!(
        "imported {} entries ({} model keys), skipped {}, warnings {}",
        report.imported,
        book.len(),
        report.skipped.len(),
        report.warnings.len()
    );
    for (reason, n) in report.skipped_by_reason() {
        println!("  skipped {n:>5}: {reason}");
    }
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &report.warnings {
        let rule = if w.message.contains("cache read") {
            "cache read above input"
        } else {
            "per-token rate above 0.001 USD"
        };
        *by_rule.entry(rule).or_default() += 1;
    }
    for (rule, n) in &by_rule {
        println!("  warned  {n:>5}: {rule}");
    }
    for w in report.warnings.iter().take(5) {
        println!("    e.g. {}: {}", w.key, w.message);
    }
    let mut ignored: Vec<_> = report.ignored_fields.iter().collect();
    ignored.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "  cost fields not priced (top 8): {:?}",
        &ignored[..ignored.len().min(8)]
    );
    assert!(report.imported > 1000);
    assert!(report
        .skipped
        .iter()
        .all(|s| !s.reason.to_string().is_empty()));
    assert!(report
        .skipped
        .iter()
        .filter(|s| matches!(s.reason, SkipReason::NegativeRate | SkipReason::InvalidRate))
        .all(|s| !s.detail.is_empty()));

    // Spot checks against the map, through every resolution step.
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    let now = Utc::now();
    let usd = |m: &str| {
        book.cost(m, &u, ServiceTier::Standard, now)
            .usd
            .map(|d| d.to_string())
    };
    assert_eq!(usd("gpt-4o").as_deref(), Some("12.5"));
    assert_eq!(usd("openai/gpt-4o").as_deref(), Some("12.5"));
    assert_eq!(usd("mistral-large-latest").as_deref(), Some("2"));
    assert_eq!(usd("deepseek/deepseek-chat").as_deref(), Some("0.7"));
    // Gemini 2.5 Pro priority has its own above-200k rates in the map.
    let big = Usage {
        input_tokens: 300_000,
        ..Usage::default()
    };
    let c = book.cost("gemini/gemini-2.5-pro", &big, ServiceTier::Priority, now);
    assert_eq!(
        (c.usd.unwrap().to_string(), c.status),
        ("0.75".into(), CostStatus::Priced)
    );
}

/// Rebuild effective-dated entries of a few models from the price-change history: walk the
/// changes backwards from the current snapshot, one entry per change date.
#[test]
fn effective_dated_book_from_price_changes() {
    let (Some(snapshot), Some(changes)) = (
        shared("model_prices_and_context_window.json"),
        shared("litellm_price_changes_2025-02_to_2026-07.json"),
    ) else {
        return;
    };
    let snapshot: serde_json::Map<String, Value> = serde_json::from_str(&snapshot).unwrap();
    let changes: Value = serde_json::from_str(&changes).unwrap();
    let rows = changes["changes"].as_array().unwrap();
    let model = "deepseek/deepseek-chat";
    let mut current = snapshot[model].as_object().unwrap().clone();
    let mut dated: Vec<(String, serde_json::Map<String, Value>)> = Vec::new();
    let mut mine: Vec<&Vec<Value>> = rows
        .iter()
        .filter_map(|r| r.as_array())
        .filter(|r| r[1] == model)
        .collect();
    mine.sort_by(|a, b| b[0].as_str().cmp(&a[0].as_str()));
    let mut date = None::<String>;
    for r in mine {
        let d = r[0].as_str().unwrap().to_string();
        if date.as_deref() != Some(&d) {
            dated.push((d.clone(), current.clone()));
            date = Some(d);
        }
        // Undo the change: the field had its old value before that date.
        let field = r[2].as_str().unwrap().to_string();
        match &r[3] {
            Value::Null => {
                current.remove(&field);
            }
            old => {
                current.insert(field, old.clone());
            }
        }
    }
    assert!(dated.len() >= 2, "{model}: expected several price changes");
    let day = |s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    };
    let mut book = PriceBook::new("litellm-history");
    let mut to = None;
    for (d, fields) in &dated {
        let json = serde_json::to_string(&serde_json::json!({ model: fields })).unwrap();
        let (one, report) = PriceBook::from_litellm_json(&json).unwrap();
        assert_eq!(report.imported, 1);
        let mut e: PriceEntry = one.entries(model)[0].clone();
        e = e.effective_from(day(d)).version(format!("litellm@{d}"));
        if let Some(t) = to {
            e = e.effective_to(t);
        }
        to = Some(day(d));
        book.insert(e).unwrap();
    }
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
    let mid = book.cost(model, &u, ServiceTier::Standard, at(2025, 6, 1));
    let late = book.cost(model, &u, ServiceTier::Standard, at(2026, 6, 1));
    println!("{model}: 2025-06-01 {mid:?}\n{model}: 2026-06-01 {late:?}");
    // 0.27 + 1.10 per 1M until the 2026-01-13 sync, 0.28 + 0.42 after.
    assert_eq!(mid.usd.unwrap().to_string(), "1.37");
    assert_eq!(late.usd.unwrap().to_string(), "0.7");
    assert_eq!(mid.price_version.as_deref(), Some("litellm@2025-02-07"));
    assert_eq!(late.price_version.as_deref(), Some("litellm@2026-01-13"));
    assert_ne!(mid.usd, late.usd);
}
