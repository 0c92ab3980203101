//! Name resolution, explanations, per-tenant overrides, pricing events in place and savings
//! summaries from sums, through the public API only.
#![allow(clippy::unwrap_used)]

use agenttally::pricing::{
    CostStatus, PriceBook, PriceEntry, RateKind, Resolution, SavingsSummary, SavingsSums,
    ServiceTier, TenantPriceBooks, Usage,
};
use agenttally::{AgentEvent, EventType, ProviderEvent};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

#[test]
fn resolution_steps_are_deterministic() {
    let book = PriceBook::from_entries(
        "t",
        [
            PriceEntry::new("gpt-4o").rate(RateKind::Input, dec("0.000001")),
            PriceEntry::new("openai/gpt-4o").rate(RateKind::Input, dec("0.000002")),
            PriceEntry::new("zz/only-prefixed").rate(RateKind::Input, dec("0.000003")),
            PriceEntry::new("mistral/only-prefixed").rate(RateKind::Input, dec("0.000004")),
            PriceEntry::new("claude-x")
                .alias("claude-x-20250101")
                .rate(RateKind::Input, dec("0.000005")),
        ],
    )
    .unwrap();
    let r = |n: &str| book.resolve_key(n);
    // An exact key always wins, even over a prefix strip.
    assert_eq!(r("gpt-4o"), Some(("gpt-4o", Resolution::Exact)));
    assert_eq!(
        r("openai/gpt-4o"),
        Some(("openai/gpt-4o", Resolution::Exact))
    );
    assert_eq!(
        r("azure/gpt-4o"),
        Some(("gpt-4o", Resolution::ProviderPrefix))
    );
    assert_eq!(
        r("a/b/gpt-4o"),
        Some(("gpt-4o", Resolution::ProviderPrefix))
    );
    // A bare name finds a prefixed key; first-party prefixes win over resellers.
    assert_eq!(
        r("only-prefixed"),
        Some(("mistral/only-prefixed", Resolution::ProviderPrefix))
    );
    assert_eq!(
        r("claude-x-20250101"),
        Some(("claude-x", Resolution::Alias))
    );
    assert_eq!(
        r("anthropic/claude-x-20250101"),
        Some(("claude-x", Resolution::Alias))
    );
    assert_eq!(r("nope"), None);
    assert_eq!(r("GPT-4O"), None, "keys are case-sensitive");
}

#[test]
fn explain_names_entry_step_rates_and_fallbacks() {
    let book = PriceBook::builtin();
    let u = Usage {
        input_tokens: 1000,
        cached_input_tokens: 500,
        output_tokens: 800,
        reasoning_tokens: 300,
        ..Usage::default()
    };
    let ex = book.explain("openai/gpt-4o", &u, ServiceTier::Flex, now());
    println!("{ex}");
    assert_eq!(
        ex.resolved,
        Some(("gpt-4o".to_string(), Resolution::ProviderPrefix))
    );
    assert_eq!(ex.provider.as_deref(), Some("openai"));
    assert_eq!(
        ex.cost,
        book.cost("openai/gpt-4o", &u, ServiceTier::Flex, now())
    );
    assert_eq!(ex.cost.status, CostStatus::Estimated);
    let fields: Vec<_> = ex.lines.iter().map(|l| l.rate_field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "input_cost_per_token",
            "cache_read_input_token_cost",
            "output_cost_per_token"
        ]
    );
    assert!(ex.notes.iter().any(|n| n.contains("no `flex` rates")));
    assert!(ex.notes.iter().any(|n| n.contains("billed as output")));
    let sum: Decimal = ex.lines.iter().map(|l| l.amount).sum();
    assert_eq!(sum.normalize(), ex.cost.usd.unwrap());
}

#[test]
fn tenant_overrides_layer_over_the_base() {
    let base = PriceBook::builtin();
    let acme = PriceBook::from_entries(
        "acme-contract-2026",
        [
            // Negotiated: half price on gpt-4o from 2026-01-01; named by its prefixed form.
            PriceEntry::new("openai/gpt-4o")
                .effective_from(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
                .rate(RateKind::Input, dec("0.00000125"))
                .rate(RateKind::Output, dec("0.000005")),
            // A private model only this tenant has.
            PriceEntry::new("acme-finetune").per_1k_every_token(dec("0.002")),
        ],
    )
    .unwrap();
    let mut books = TenantPriceBooks::new(base);
    books.set_overrides("acme", &acme);
    let u = usage(1000, 1000);
    let acme_book = books.for_tenant("acme");
    let c = acme_book.cost("gpt-4o", &u, ServiceTier::Standard, now());
    assert_eq!(c.usd.unwrap().to_string(), "0.00625");
    assert_eq!(c.price_version.as_deref(), Some("acme-contract-2026"));
    // Before the contract: the base price.
    let before = Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap();
    let c = acme_book.cost("gpt-4o", &u, ServiceTier::Standard, before);
    assert_eq!(c.usd.unwrap().to_string(), "0.0125");
    assert_eq!(c.price_version.as_deref(), Some("builtin@2024-05-13"));
    // Other tenants, and the base, are untouched.
    let other = books
        .for_tenant("globex")
        .cost("gpt-4o", &u, ServiceTier::Standard, now());
    assert_eq!(other.usd.unwrap().to_string(), "0.0125");
    assert_eq!(
        acme_book
            .cost("acme-finetune", &u, ServiceTier::Standard, now())
            .usd
            .unwrap()
            .to_string(),
        "0.004"
    );
    assert_eq!(
        books
            .for_tenant("globex")
            .cost("acme-finetune", &u, ServiceTier::Standard, now())
            .status,
        CostStatus::Unpriced
    );
    // Override entries without a tier variant fall back like any entry.
    let c = acme_book.cost("gpt-4o", &u, ServiceTier::Batch, now());
    assert_eq!(c.status, CostStatus::Estimated);

    let mut e = ProviderEvent::api_call("acme", "openai", "gpt-4o")
        .timestamp(now())
        .usage(u)
        .build()
        .unwrap();
    books.price_event(&mut e);
    assert_eq!(e.cost_usd.unwrap().to_string(), "0.00625");
}

#[test]
fn price_event_in_place() {
    let book = PriceBook::builtin();
    // requests == 0 on a provider.api_call counts as one completion.
    let mut e = ProviderEvent::api_call("t1", "github_copilot", "github_copilot")
        .timestamp(now())
        .usage(usage(600, 400))
        .build()
        .unwrap();
    book.price_event(&mut e);
    assert_eq!(e.cost_usd.unwrap().to_string(), "0.012");
    assert_eq!(e.cost_status, Some(CostStatus::Priced));
    assert_eq!(e.price_version.as_deref(), Some("builtin@seed"));
    assert_eq!(
        e.usage.unwrap().requests,
        0,
        "the event's usage is not rewritten"
    );
    e.validate().unwrap();

    // Not an api_call: no implicit request.
    let mut e = AgentEvent::completed("t1", "agent-1")
        .provider("github_copilot")
        .timestamp(now())
        .usage(usage(600, 400))
        .build()
        .unwrap();
    assert_eq!(e.event_type, EventType::AgentCompleted);
    book.price_event(&mut e);
    assert_eq!(
        e.cost_usd.unwrap().to_string(),
        "0.01",
        "priced by provider, no fee"
    );

    // A caller-supplied cost wins.
    let mut e = ProviderEvent::api_call("t1", "openai", "gpt-4o")
        .timestamp(now())
        .usage(usage(1000, 1000))
        .build()
        .unwrap();
    e.cost_usd = Some(dec("0.5"));
    book.price_event(&mut e);
    assert_eq!(
        (e.cost_usd, e.cost_status, e.price_version.as_deref()),
        (Some(dec("0.5")), Some(CostStatus::Reported), None)
    );

    // Unknown model: unpriced, cost absent; the event still validates.
    let mut e = ProviderEvent::api_call("t1", "acme", "acme-llm")
        .timestamp(now())
        .usage(usage(1000, 1000))
        .build()
        .unwrap();
    book.price_event(&mut e);
    assert_eq!(
        (e.cost_status, e.cost_usd),
        (Some(CostStatus::Unpriced), None)
    );
    e.validate().unwrap();

    // Service tier is taken from the event.
    let mut e = ProviderEvent::api_call("t1", "openai", "gpt-5")
        .timestamp(now())
        .service_tier(ServiceTier::Batch)
        .usage(usage(1000, 1000))
        .build()
        .unwrap();
    book.price_event(&mut e);
    assert_eq!(e.cost_status, Some(CostStatus::Estimated));
    assert_eq!(e.cost_usd.unwrap().to_string(), "0.01125");

    // An unknown model of a provider the book prices (the seed's providers): the provider.
    let mut e = ProviderEvent::api_call("t1", "openai_codex", "codex-internal-v2")
        .timestamp(now())
        .usage(usage(600, 400))
        .build()
        .unwrap();
    book.price_event(&mut e);
    assert_eq!(e.cost_usd.unwrap().to_string(), "0.06");

    // No usage: nothing to price.
    let mut e = ProviderEvent::api_call("t1", "openai", "gpt-4o")
        .build()
        .unwrap();
    book.price_event(&mut e);
    assert_eq!((e.cost_status, e.cost_usd), (None, None));
}

#[test]
fn invalid_entries_are_rejected() {
    let mut book = PriceBook::new("t");
    let err = book
        .insert(PriceEntry::new("m").rate(RateKind::Input, dec("-0.000001")))
        .unwrap_err();
    assert!(err.to_string().contains("must be >= 0"), "{err}");
    let t = now();
    let err = book
        .insert(PriceEntry::new("m").effective_from(t).effective_to(t))
        .unwrap_err();
    assert!(err.to_string().contains("effective_to"), "{err}");
    assert!(book.insert(PriceEntry::new("")).is_err());
    assert!(book.is_empty());
}

#[test]
fn a_summary_from_sums_derives_the_savings_figures() {
    let mut sums = SavingsSums {
        tasks: 5,
        successful_tasks: 3,
        compared_tasks: 4,
        compared_successful_tasks: 2,
        unpriced_tokens: 70,
        actual_usd: dec("3.00"),
        baseline_usd: dec("4.000"),
        successful_actual_usd: dec("1"),
        successful_baseline_usd: dec("0.5"),
        ..SavingsSums::default()
    };
    sums += &SavingsSums {
        tasks: 1,
        actual_unpriced: 1,
        ..SavingsSums::default()
    };
    let s = SavingsSummary::from_sums(&sums);
    assert_eq!((s.tasks, s.successful_tasks, s.compared_tasks), (6, 3, 4));
    assert_eq!((s.actual_unpriced, s.unpriced_tokens), (1, 70));
    assert_eq!(s.actual_usd.to_string(), "3");
    assert_eq!(s.savings_usd.to_string(), "1");
    assert_eq!(s.savings_percent, Some(dec("25")));
    // Routing cost more on the successful tasks: negative, never clamped.
    assert_eq!(s.successful_savings_usd.to_string(), "-0.5");
    assert_eq!(s.successful_savings_percent, Some(dec("-100")));
    assert_eq!(s.cost_per_successful_task, Some(dec("1.5")));

    let none = SavingsSummary::from_sums(&SavingsSums::default());
    assert_eq!(none.savings_percent, None);
    assert_eq!(none.cost_per_successful_task, None);
}
