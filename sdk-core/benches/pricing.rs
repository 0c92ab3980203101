//! Pricing one call (name resolution + exact arithmetic), as `Client::track` does per event.
//! Compare the lines of one run: exact key, provider-prefixed name, alias, and pricing an event.

use std::hint::black_box;

use agenttally::pricing::{PriceBook, ServiceTier, Usage};
use agenttally::ProviderEvent;
use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};

fn pricing(c: &mut Criterion) {
    let book = PriceBook::builtin();
    let at = Utc
        .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let usage = Usage {
        input_tokens: 1200,
        cached_input_tokens: 800,
        output_tokens: 450,
        reasoning_tokens: 100,
        requests: 1,
        ..Usage::default()
    };
    let mut g = c.benchmark_group("price_one_call");
    for name in [
        "gpt-4o",
        "openai/gpt-4o",
        "claude-sonnet-4-5-20250929",
        "github_copilot",
        "unknown-model",
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                book.cost(
                    black_box(name),
                    black_box(&usage),
                    ServiceTier::Standard,
                    at,
                )
            })
        });
    }
    // Baselines in the same run (the machine may be shared): a std (SipHash) map lookup of a
    // model name, and the bare arithmetic of four buckets plus the price_version allocation.
    let std_map: std::collections::HashMap<String, usize> = book
        .model_keys()
        .enumerate()
        .map(|(i, k)| (k.to_string(), i))
        .collect();
    g.bench_function("baseline/std_hashmap_get", |b| {
        b.iter(|| std_map.get(black_box("gpt-4o")).copied())
    });
    let rates = [
        rust_decimal::Decimal::new(25, 7),
        rust_decimal::Decimal::new(125, 8),
        rust_decimal::Decimal::new(1, 5),
        rust_decimal::Decimal::new(1, 5),
    ];
    let qty = [1200u64, 800, 350, 100];
    g.bench_function("baseline/arithmetic_only", |b| {
        b.iter(|| {
            let mut total = rust_decimal::Decimal::ZERO;
            for (q, r) in black_box(qty).iter().zip(black_box(&rates)) {
                total += rust_decimal::Decimal::from(*q) * *r;
            }
            (
                total.normalize(),
                String::from(black_box("builtin@2024-05-13")),
            )
        })
    });
    g.bench_function("resolve_only/gpt-4o", |b| {
        b.iter(|| book.resolve_key(black_box("gpt-4o")))
    });
    g.bench_function("baseline/std_hashmap_get_long", |b| {
        b.iter(|| std_map.get(black_box("claude-sonnet-4-5")).copied())
    });
    g.bench_function("resolve_only/claude-sonnet-4-5", |b| {
        b.iter(|| book.resolve_key(black_box("claude-sonnet-4-5")))
    });
    g.bench_function("resolve_only/openai/gpt-4o", |b| {
        b.iter(|| book.resolve_key(black_box("openai/gpt-4o")))
    });
    let event = ProviderEvent::api_call("tenant", "openai", "openai/gpt-4o")
        .timestamp(at)
        .usage(usage)
        .build_unchecked();
    g.bench_function("price_event/openai/gpt-4o", |b| {
        b.iter_batched_ref(
            || event.clone(),
            |e| book.price_event(e),
            criterion::BatchSize::SmallInput,
        )
    });
    // The baseline of savings: every model of the book priced on the same usage.
    g.bench_function("most_expensive/builtin", |b| {
        b.iter(|| book.most_expensive(black_box(&usage), ServiceTier::Standard, at))
    });
    g.finish();

    if let Ok(text) = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/pricing/model_prices_and_context_window.json"
    )) {
        if let Ok((big, _)) = PriceBook::from_litellm_json(&text) {
            let mut g = c.benchmark_group("price_one_call_litellm_book");
            for name in ["gpt-4o", "openai/gpt-4o", "mistral-large-latest"] {
                g.bench_function(name, |b| {
                    b.iter(|| {
                        big.cost(
                            black_box(name),
                            black_box(&usage),
                            ServiceTier::Standard,
                            at,
                        )
                    })
                });
            }
            g.bench_function("most_expensive", |b| {
                b.iter(|| big.most_expensive(black_box(&usage), ServiceTier::Standard, at))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, pricing);
criterion_main!(benches);
