//! Pricing invariants over random usage: costs are never negative, grow with every priced bucket,
//! the explanation's lines sum to the cost, and the adapters never panic.
#![allow(clippy::unwrap_used)]

use agenttally::pricing::{adapters, PriceBook, ServiceTier, Usage};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

const MODELS: &[&str] = &[
    "github_copilot",
    "openai_codex",
    "gpt-5",
    "gpt-4o",
    "o3",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "deepseek-chat",
];

fn tier() -> impl Strategy<Value = ServiceTier> {
    prop::sample::select(ServiceTier::ALL.to_vec())
}

fn usage() -> impl Strategy<Value = Usage> {
    // Up to 400k prompt tokens so long-context tiers are crossed.
    (
        0u64..300_000,
        0u64..100_000,
        0u64..50_000,
        0u64..50_000,
        0u64..100_000,
        0u64..=100,
        0u64..5,
    )
        .prop_map(|(i, c, w, w1, o, rpct, r)| Usage {
            input_tokens: i,
            cached_input_tokens: c,
            cache_write_tokens: w,
            cache_write_1h_tokens: w1,
            output_tokens: o,
            reasoning_tokens: o * rpct / 100,
            requests: r,
        })
}

proptest! {
    #[test]
    fn never_negative_and_lines_sum_to_cost(
        u in usage(), t in tier(), m in prop::sample::select(MODELS.to_vec()),
    ) {
        let book = PriceBook::builtin();
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let c = book.cost(m, &u, t, at);
        let usd = c.usd.unwrap();
        prop_assert!(!usd.is_sign_negative() || usd.is_zero());
        let ex = book.explain(m, &u, t, at);
        let sum: rust_decimal::Decimal = ex.lines.iter().map(|l| l.amount).sum();
        prop_assert_eq!(sum.normalize(), usd);
        prop_assert_eq!(ex.cost, c);
    }

    /// Adding tokens to any bucket but reasoning never lowers the cost. (More reasoning can
    /// lower it when the reasoning rate is below the output rate: it is a split of output.)
    /// Within one context level: crossing a threshold reprices the whole request by design.
    #[test]
    fn monotonic_in_each_bucket(
        u in usage(), t in tier(), m in prop::sample::select(MODELS.to_vec()),
        bucket in 0usize..6, extra in 1u64..10_000,
    ) {
        let book = PriceBook::builtin();
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let mut more = u;
        match bucket {
            0 => more.input_tokens += extra,
            1 => more.cached_input_tokens += extra,
            2 => more.cache_write_tokens += extra,
            3 => more.cache_write_1h_tokens += extra,
            4 => more.output_tokens += extra,
            _ => more.requests += extra,
        }
        let same_level = |a: u64, b: u64| (a > 200_000) == (b > 200_000);
        prop_assume!(same_level(u.prompt_total(), more.prompt_total()));
        let a = book.cost(m, &u, t, at).usd.unwrap();
        let b = book.cost(m, &more, t, at).usd.unwrap();
        prop_assert!(b >= a, "{m} {t} bucket {bucket}: {a} -> {b}");
    }

    /// Import never panics and every skip has a reason, whatever the field names and values.
    #[test]
    fn import_never_panics(
        entries in prop::collection::vec(
            (
                "[a-z/]{1,8}",
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "input_cost_per_token", "output_cost_per_token_batches",
                            "cache_read_input_token_cost_above_200k_tokens_priority",
                            "input_cost_per_token_above_99999999999999999999k_tokens",
                            "output_cost_per_reasoning_token", "input_cost_per_request", "mode",
                        ]),
                        prop_oneof![
                            Just("-1e-06".to_string()), Just("\"x\"".to_string()),
                            Just("1e400".to_string()), Just("null".to_string()),
                            "[0-9]{1,3}(\\.[0-9]{1,12})?(e-[0-9]{1,2})?",
                        ],
                    ),
                    0..5,
                ),
            ),
            0..6,
        ),
        garbage in ".{0,40}",
    ) {
        let body: Vec<String> = entries
            .iter()
            .map(|(k, fields)| {
                let f: Vec<String> = fields.iter().map(|(n, v)| format!("\"{n}\": {v}")).collect();
                format!("\"{k}\": {{{}}}", f.join(", "))
            })
            .collect();
        let text = format!("{{{}}}", body.join(", "));
        if let Ok((_, report)) = PriceBook::from_litellm_json(&text) {
            prop_assert!(report.skipped.iter().all(|s| !s.reason.to_string().is_empty()));
        }
        let _ = PriceBook::from_litellm_json(&garbage);
    }

    #[test]
    fn adapters_never_panic(
        a in 0u64..u64::MAX, b in 0u64..u64::MAX, c in 0u64..u64::MAX, d in 0u64..u64::MAX,
    ) {
        let v = serde_json::json!({
            "prompt_tokens": a, "completion_tokens": b,
            "prompt_tokens_details": {"cached_tokens": c},
            "completion_tokens_details": {"reasoning_tokens": d},
            "input_tokens": a, "output_tokens": b, "cache_read_input_tokens": c,
            "promptTokenCount": a, "cachedContentTokenCount": c, "candidatesTokenCount": b,
            "thoughtsTokenCount": d,
        });
        let _ = adapters::openai(&v);
        let _ = adapters::anthropic(&v);
        let _ = adapters::gemini(&v);
        if let Ok(u) = adapters::openai(&v) {
            prop_assert_eq!(u.prompt_total(), a);
            prop_assert_eq!(u.output_tokens, b);
        }
    }
}

#[test]
fn adapters_reject_bad_counts() {
    let e = adapters::openai(&serde_json::json!({"prompt_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 20}}))
    .unwrap_err();
    assert!(e.to_string().contains("cached_tokens"), "{e}");
    assert!(adapters::anthropic(&serde_json::json!({"input_tokens": -1})).is_err());
    assert!(adapters::gemini(&serde_json::json!({"promptTokenCount": "x"})).is_err());
}

/// Every model of `book` priced on `usage`, the dearest kept (first in book order on a tie):
/// the definition `most_expensive` must match, without its pruning.
fn dearest_by_brute_force(
    book: &PriceBook,
    u: &Usage,
    t: ServiceTier,
    at: chrono::DateTime<Utc>,
) -> Option<(String, rust_decimal::Decimal)> {
    let mut best: Option<(String, rust_decimal::Decimal)> = None;
    for m in book.model_keys() {
        if let Some(usd) = book.cost(m, u, t, at).usd {
            if best.as_ref().is_none_or(|(_, b)| usd > *b) {
                best = Some((m.to_string(), usd));
            }
        }
    }
    best
}

fn litellm_book() -> Option<PriceBook> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/pricing/model_prices_and_context_window.json"
    );
    let text = std::fs::read_to_string(path).ok()?;
    Some(PriceBook::from_litellm_json(&text).ok()?.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The pruned search for the dearest model equals pricing every model, on the built-in book
    /// and on the full LiteLLM book (thousands of models, long-context and per-request rates).
    #[test]
    fn most_expensive_equals_brute_force(u in usage(), t in tier(), day in 0i64..900) {
        let at = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + chrono::TimeDelta::days(day);
        let books: Vec<PriceBook> = [Some(PriceBook::builtin()), litellm_book()].into_iter().flatten().collect();
        for book in &books {
            let got = book.most_expensive(&u, t, at).map(|(m, c)| (m.to_string(), c.usd.unwrap()));
            prop_assert_eq!(got, dearest_by_brute_force(book, &u, t, at));
        }
    }
}
