//! Golden vectors for money: every pricing rule of docs/pricing.md checked as an exact decimal string.
#![allow(clippy::unwrap_used)]

use agenttally::pricing::{
    adapters, display_round, Baseline, CostStatus, PriceBook, PriceEntry, RateKind, ServiceTier,
    Task, Usage,
};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::json;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    at(2026, 7, 1)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn usd(book: &PriceBook, model: &str, usage: &Usage, tier: ServiceTier) -> (String, CostStatus) {
    let c = book.cost(model, usage, tier, now());
    (c.usd.map(|d| d.to_string()).unwrap_or_default(), c.status)
}

fn tokens(n: u64) -> Usage {
    Usage {
        input_tokens: n,
        requests: 1,
        ..Usage::default()
    }
}

#[test]
fn seed_calculate_task_cost_all_three_providers() {
    let book = PriceBook::builtin();
    // cost = tokens / 1000 × rate (+ 0.002 per completion for github_copilot)
    let cases = [
        ("github_copilot", "0.012"),
        ("openai_codex", "0.06"),
        ("google_code_assist", "0.04"),
    ];
    for (provider, want) in cases {
        assert_eq!(
            usd(&book, provider, &tokens(1000), ServiceTier::Standard),
            (want.to_string(), CostStatus::Priced),
            "{provider}"
        );
    }
    // The per-1k rate applies to every token, whatever its bucket.
    let mixed = Usage {
        input_tokens: 400,
        cached_input_tokens: 100,
        cache_write_tokens: 100,
        cache_write_1h_tokens: 100,
        output_tokens: 300,
        reasoning_tokens: 50,
        requests: 1,
    };
    assert_eq!(
        usd(&book, "github_copilot", &mixed, ServiceTier::Standard).0,
        "0.012"
    );
    assert_eq!(
        usd(&book, "openai_codex", &mixed, ServiceTier::Standard).0,
        "0.06"
    );
    // Two completions: two fees.
    let two = Usage {
        requests: 2,
        ..tokens(1500)
    };
    assert_eq!(
        usd(&book, "github_copilot", &two, ServiceTier::Standard).0,
        "0.019"
    );
}

#[test]
fn seed_calculate_savings_example() {
    let book = PriceBook::builtin();
    let task = |provider: &str, n: u64| Task {
        provider: Some(provider.to_string()),
        task_type: Some("code".to_string()),
        ..Task::new(provider, tokens(n), now())
    };
    let tasks = [
        task("github_copilot", 1000),
        task("google_code_assist", 2000),
        task("openai_codex", 500),
    ];
    let r = book.savings(&tasks, &Baseline::Model("openai_codex".into()));
    let t = &r.total;
    // actual 0.012 + 0.08 + 0.03; baseline all on openai_codex 0.06 + 0.12 + 0.03
    assert_eq!(t.actual_usd.to_string(), "0.122");
    assert_eq!(t.baseline_usd.to_string(), "0.21");
    assert_eq!(t.savings_usd.to_string(), "0.088");
    assert_eq!(
        t.savings_percent.unwrap().to_string(),
        "41.904761904761904761904761905"
    );
    assert_eq!(
        display_round(t.savings_percent.unwrap(), 2).to_string(),
        "41.90"
    );
    assert_eq!(
        t.cost_per_successful_task.unwrap().to_string(),
        "0.0406666666666666666666666667"
    );
    assert_eq!(t.compared_tasks, 3);
    assert_eq!(
        r.by_provider["github_copilot"].savings_usd.to_string(),
        "0.048"
    );
    assert_eq!(
        r.by_provider["google_code_assist"].savings_usd.to_string(),
        "0.04"
    );
    assert_eq!(r.by_provider["openai_codex"].savings_usd.to_string(), "0");
    assert_eq!(r.by_task_type["code"].savings_usd.to_string(), "0.088");
}

#[test]
fn savings_failed_tasks_unpriced_and_most_expensive() {
    let book = PriceBook::builtin();
    let mut failed = Task::new("github_copilot", tokens(1000), now());
    failed.success = false;
    let unknown = Task::new("no-such-model", tokens(1000), now());
    let reported = Task {
        actual_usd: Some(dec("0.001")),
        ..Task::new("google_code_assist", tokens(1000), now())
    };
    let ok = Task::new("google_code_assist", tokens(1000), now());
    let r = book.savings(
        &[failed, unknown, reported, ok],
        &Baseline::Model("openai_codex".into()),
    );
    let t = &r.total;
    assert_eq!(t.tasks, 4);
    assert_eq!(t.actual_unpriced, 1);
    assert_eq!(t.unpriced_tokens, 1000);
    assert_eq!(t.compared_tasks, 3);
    assert_eq!(t.actual_usd.to_string(), "0.053"); // 0.012 + 0.001 + 0.04
    assert_eq!(t.baseline_usd.to_string(), "0.18");
    assert_eq!(t.savings_usd.to_string(), "0.127");
    // The failed copilot task saves nothing.
    assert_eq!(t.successful_savings_usd.to_string(), "0.079");
    // All compared spend over the 2 compared successful tasks.
    assert_eq!(t.cost_per_successful_task.unwrap().to_string(), "0.0265");

    // Routing costing more gives negative savings, never clamped.
    let r = book.savings(
        &[Task::new("openai_codex", tokens(1000), now())],
        &Baseline::Model("google_code_assist".into()),
    );
    assert_eq!(r.total.savings_usd.to_string(), "-0.02");
    assert_eq!(r.total.savings_percent.unwrap().to_string(), "-50");

    // The seed's default: the most expensive model pricing that usage on that date and tier.
    let u = Usage {
        input_tokens: 1000,
        output_tokens: 10_000,
        requests: 1,
        ..Usage::default()
    };
    let r = book.savings(
        &[Task::new("gpt-4o-mini", u, now())],
        &Baseline::MostExpensive,
    );
    let s = &r.tasks[0];
    // Opus 4.1: 1000 × 1.5e-5 + 10000 × 7.5e-5 (beats openai_codex's 11000 × 6e-5 = 0.66)
    assert_eq!(s.baseline_model.as_deref(), Some("claude-opus-4-1"));
    assert_eq!(s.baseline.usd.unwrap().to_string(), "0.765");
    assert_eq!(s.actual.usd.unwrap().to_string(), "0.00615");
    assert_eq!(s.savings_usd.unwrap().to_string(), "0.75885");
    // On 2025-05-01 Opus 4.1 did not exist yet (o3 at its launch price 0.41 is below 0.66).
    let r = book.savings(
        &[Task::new("gpt-4o-mini", u, at(2025, 5, 1))],
        &Baseline::MostExpensive,
    );
    assert_eq!(r.tasks[0].baseline_model.as_deref(), Some("openai_codex"));
    assert_eq!(r.tasks[0].baseline.usd.unwrap().to_string(), "0.66");
}

#[test]
fn openai_cached_usage_via_adapter() {
    let book = PriceBook::builtin();
    let u = adapters::openai(&json!({
        "prompt_tokens": 2000,
        "completion_tokens": 500,
        "total_tokens": 2500,
        "prompt_tokens_details": {"cached_tokens": 1200},
        "completion_tokens_details": {"reasoning_tokens": 0}
    }))
    .unwrap();
    assert_eq!(
        (u.input_tokens, u.cached_input_tokens, u.output_tokens),
        (800, 1200, 500)
    );
    // 800 × 2.5e-6 + 1200 × 1.25e-6 + 500 × 1e-5
    assert_eq!(
        usd(&book, "gpt-4o", &u, ServiceTier::Standard),
        ("0.0085".into(), CostStatus::Priced)
    );
    // Responses API shape, with reasoning, and the provider-prefixed name.
    let u = Usage::from_openai(&json!({
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 2000,
        "output_tokens_details": {"reasoning_tokens": 1500}
    }))
    .unwrap();
    assert_eq!(u.reasoning_tokens, 1500);
    // o3 has no reasoning rate: all 2000 output at 8e-6, plus 1000 × 2e-6.
    assert_eq!(
        usd(&book, "openai/o3", &u, ServiceTier::Standard).0,
        "0.018"
    );
}

#[test]
fn anthropic_long_context_whole_request_and_exact_threshold() {
    let book = PriceBook::builtin();
    let above = adapters::anthropic(&json!({
        "input_tokens": 150000,
        "cache_read_input_tokens": 40000,
        "cache_creation_input_tokens": 20000,
        "output_tokens": 1000
    }))
    .unwrap();
    assert_eq!(above.prompt_total(), 210_000);
    // Every bucket at its above-200k rate: 150000×6e-6 + 40000×6e-7 + 20000×7.5e-6 + 1000×2.25e-5
    assert_eq!(
        usd(&book, "claude-sonnet-4-5", &above, ServiceTier::Standard),
        ("1.0965".into(), CostStatus::Priced)
    );
    let at_threshold = Usage {
        input_tokens: 140_000,
        ..above
    };
    assert_eq!(at_threshold.prompt_total(), 200_000);
    // Not strictly above: base rates. 140000×3e-6 + 40000×3e-7 + 20000×3.75e-6 + 1000×1.5e-5
    assert_eq!(
        usd(
            &book,
            "claude-sonnet-4-5",
            &at_threshold,
            ServiceTier::Standard
        )
        .0,
        "0.522"
    );
    let ex = book.explain(
        "claude-sonnet-4-5-20250929",
        &above,
        ServiceTier::Standard,
        now(),
    );
    assert_eq!(ex.long_context_above, Some(200_000));
    assert_eq!(ex.cost.usd.unwrap().to_string(), "1.0965");
    assert!(ex
        .lines
        .iter()
        .all(|l| l.rate_field.contains("_above_200k_tokens")));
}

#[test]
fn long_context_bucket_without_tier_rate_uses_base_and_highest_threshold_wins() {
    let book = PriceBook::from_entries(
        "t",
        [PriceEntry::new("m")
            .rate(RateKind::Input, dec("0.000001"))
            .rate(RateKind::Output, dec("0.000002"))
            .rate_at(
                RateKind::Input,
                ServiceTier::Standard,
                128_000,
                dec("0.000003"),
            )
            .rate_at(
                RateKind::Input,
                ServiceTier::Standard,
                256_000,
                dec("0.000005"),
            )],
    )
    .unwrap();
    let u = |input| Usage {
        input_tokens: input,
        output_tokens: 1000,
        ..Usage::default()
    };
    // Output has no tier rate: base 2e-6 in every case.
    assert_eq!(
        usd(&book, "m", &u(128_000), ServiceTier::Standard).0,
        "0.13"
    );
    assert_eq!(
        usd(&book, "m", &u(128_001), ServiceTier::Standard).0,
        "0.386003"
    );
    assert_eq!(
        usd(&book, "m", &u(256_001), ServiceTier::Standard).0,
        "1.282005"
    );
}

#[test]
fn reasoning_with_and_without_a_separate_rate() {
    let book = PriceBook::from_entries(
        "t",
        [
            PriceEntry::new("with")
                .rate(RateKind::Input, dec("0.000001"))
                .rate(RateKind::Output, dec("0.000004"))
                .rate(RateKind::Reasoning, dec("0.000002")),
            PriceEntry::new("without")
                .rate(RateKind::Input, dec("0.000001"))
                .rate(RateKind::Output, dec("0.000004")),
        ],
    )
    .unwrap();
    let u = Usage {
        output_tokens: 1000,
        reasoning_tokens: 600,
        ..Usage::default()
    };
    // 600 × 2e-6 + 400 × 4e-6
    assert_eq!(usd(&book, "with", &u, ServiceTier::Standard).0, "0.0028");
    // all 1000 output at 4e-6
    assert_eq!(usd(&book, "without", &u, ServiceTier::Standard).0, "0.004");

    // Gemini thoughts are reported apart from candidates.
    let g = adapters::gemini(&json!({
        "promptTokenCount": 1000,
        "candidatesTokenCount": 200,
        "thoughtsTokenCount": 300,
        "totalTokenCount": 1500
    }))
    .unwrap();
    assert_eq!((g.output_tokens, g.reasoning_tokens), (500, 300));
    // 1000 × 3e-7 + 300 × 2.5e-6 (reasoning rate) + 200 × 2.5e-6
    assert_eq!(
        usd(
            &PriceBook::builtin(),
            "gemini/gemini-2.5-flash",
            &g,
            ServiceTier::Standard
        )
        .0,
        "0.00155"
    );
}

#[test]
fn one_hour_cache_writes() {
    let book = PriceBook::builtin();
    let u = Usage::from_anthropic(&json!({
        "input_tokens": 100,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "cache_read_input_tokens": 0,
        "output_tokens": 100
    }))
    .unwrap();
    assert_eq!(
        (u.cache_write_tokens, u.cache_write_1h_tokens),
        (1000, 2000)
    );
    // 100×3e-6 + 1000×3.75e-6 + 2000×6e-6 + 100×1.5e-5
    assert_eq!(
        usd(
            &book,
            "anthropic/claude-sonnet-4-5",
            &u,
            ServiceTier::Standard
        ),
        ("0.01755".into(), CostStatus::Priced)
    );
    // Missing rates: 1-hour write → 5-minute write rate → input rate; cache read → input rate.
    let book = PriceBook::from_entries(
        "t",
        [
            PriceEntry::new("w5")
                .rate(RateKind::Input, dec("0.000001"))
                .rate(RateKind::CacheWrite, dec("0.000003")),
            PriceEntry::new("plain").rate(RateKind::Input, dec("0.000001")),
        ],
    )
    .unwrap();
    let u = Usage {
        cache_write_1h_tokens: 1000,
        cached_input_tokens: 1000,
        ..Usage::default()
    };
    assert_eq!(usd(&book, "w5", &u, ServiceTier::Standard).0, "0.004");
    assert_eq!(
        usd(&book, "plain", &u, ServiceTier::Standard),
        ("0.002".into(), CostStatus::Priced)
    );
}

#[test]
fn every_service_tier_and_a_missing_variant() {
    let book = PriceBook::builtin();
    let u = Usage {
        input_tokens: 1000,
        cached_input_tokens: 1000,
        output_tokens: 1000,
        ..Usage::default()
    };
    let cases = [
        (ServiceTier::Standard, "0.011375", CostStatus::Priced),
        (ServiceTier::Flex, "0.0056875", CostStatus::Priced),
        (ServiceTier::Priority, "0.02275", CostStatus::Priced),
        // gpt-5 has no batch rates: standard rates, marked estimated.
        (ServiceTier::Batch, "0.011375", CostStatus::Estimated),
    ];
    for (tier, want, status) in cases {
        assert_eq!(
            usd(&book, "gpt-5", &u, tier),
            (want.into(), status),
            "{tier}"
        );
    }
    let no_cache = Usage {
        cached_input_tokens: 0,
        ..u
    };
    // gpt-4o batch: 1000 × 1.25e-6 + 1000 × 5e-6
    assert_eq!(
        usd(&book, "gpt-4o", &no_cache, ServiceTier::Batch),
        ("0.00625".into(), CostStatus::Priced)
    );
    // gpt-4o batch has no cache-read variant: that bucket falls back to standard, estimated.
    assert_eq!(
        usd(&book, "gpt-4o", &u, ServiceTier::Batch),
        ("0.0075".into(), CostStatus::Estimated)
    );
    let ex = book.explain("gpt-4o", &u, ServiceTier::Batch, now());
    assert!(ex.notes.iter().any(|n| n.contains("estimated")), "{ex}");
}

#[test]
fn per_request_fees() {
    let book = PriceBook::builtin();
    let u = Usage {
        requests: 3,
        ..Usage::default()
    };
    assert_eq!(
        usd(&book, "github_copilot", &u, ServiceTier::Standard).0,
        "0.006"
    );
    // No fee in the book: requests cost nothing.
    assert_eq!(usd(&book, "openai_codex", &u, ServiceTier::Standard).0, "0");
    let (book, report) = PriceBook::from_litellm_json(
        r#"{"search-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
            "input_cost_per_request": 0.005, "litellm_provider": "perplexity", "mode": "chat"}}"#,
    )
    .unwrap();
    assert_eq!(report.imported, 1);
    let u = Usage {
        input_tokens: 1000,
        output_tokens: 500,
        requests: 2,
        ..Usage::default()
    };
    assert_eq!(
        usd(&book, "perplexity/search-model", &u, ServiceTier::Standard).0,
        "0.012"
    );
}

#[test]
fn unknown_model_is_unpriced_never_zero() {
    let book = PriceBook::builtin();
    let c = book.cost("acme-llm-9000", &tokens(1000), ServiceTier::Standard, now());
    assert_eq!(c.status, CostStatus::Unpriced);
    assert_eq!(c.usd, None);
    assert_eq!(c.price_version, None);
    let ex = book.explain("acme-llm-9000", &tokens(1000), ServiceTier::Standard, now());
    assert_eq!(ex.resolved, None);
    assert!(!ex.notes.is_empty());
}

#[test]
fn price_change_between_two_dates() {
    let book = PriceBook::builtin();
    let u = Usage {
        input_tokens: 1000,
        output_tokens: 1000,
        ..Usage::default()
    };
    let old = book.cost("o3", &u, ServiceTier::Standard, at(2025, 5, 1));
    let new = book.cost("o3", &u, ServiceTier::Standard, at(2025, 7, 1));
    assert_eq!(old.usd.unwrap().to_string(), "0.05");
    assert_eq!(new.usd.unwrap().to_string(), "0.01");
    assert_eq!(old.price_version.as_deref(), Some("builtin@2025-04-16"));
    assert_eq!(new.price_version.as_deref(), Some("builtin@2025-06-10"));
    // The boundary instant belongs to the new entry (effective_to is exclusive).
    let boundary = Utc.with_ymd_and_hms(2025, 6, 10, 0, 0, 0).unwrap();
    assert_eq!(
        book.cost("o3", &u, ServiceTier::Standard, boundary)
            .usd
            .unwrap()
            .to_string(),
        "0.01"
    );
    // Before the model existed: unpriced.
    let before = book.cost("o3", &u, ServiceTier::Standard, at(2025, 1, 1));
    assert_eq!((before.status, before.usd), (CostStatus::Unpriced, None));
}
