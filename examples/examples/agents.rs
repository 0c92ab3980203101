//! Example agents: three tenants run bug fixes, features and test generation, routed across
//! providers, through the SDK client and its run helper. Sends to the collector at
//! `AGENTTALLY_ENDPOINT` with `AGENTTALLY_API_KEY`; prints the client's delivery stats.
//!
//! Usage: `AGENTTALLY_ENDPOINT=http://127.0.0.1:8080 AGENTTALLY_API_KEY=at_... cargo run --example agents [RUNS_PER_TENANT]`

use std::time::Duration;

use agenttally::pricing::PriceBook;
use agenttally::{BillingEvent, Client, CustomerEvent, ProviderEvent, Usage};

/// Routing table: task type → (provider, model) choices, cheapest first. Intelligent routing
/// sends most work to the cheaper choices; the savings report compares against the most
/// expensive model in the book.
const ROUTES: &[(&str, &[(&str, &str)])] = &[
    (
        "bug_fix",
        &[
            ("github_copilot", "github_copilot"),
            ("deepseek", "deepseek-chat"),
            ("anthropic", "claude-sonnet-4-5"),
        ],
    ),
    (
        "feature",
        &[
            ("google", "gemini-2.5-flash"),
            ("openai", "gpt-4.1"),
            ("anthropic", "claude-sonnet-4-5"),
        ],
    ),
    (
        "test_generation",
        &[
            ("google_code_assist", "google_code_assist"),
            ("openai", "gpt-4o-mini"),
            ("openai_codex", "openai_codex"),
        ],
    ),
];

const TENANTS: &[(&str, &str)] = &[
    ("acme-corp", "professional"),
    ("globex", "starter"),
    ("initech", "enterprise"),
];

/// A small deterministic generator, so every demo run tells the same story.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint =
        std::env::var("AGENTTALLY_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api_key = std::env::var("AGENTTALLY_API_KEY").unwrap_or_default();
    let runs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);

    let client = Client::builder()
        .endpoint(endpoint.as_str())
        .api_key(api_key)
        .price_book(PriceBook::builtin())
        .flush_interval(Duration::from_millis(200))
        .build()?;

    let mut rng = Lcg(0x5eed);
    for (tenant, tier) in TENANTS {
        client.track(BillingEvent::subscription_created(*tenant, *tier).build()?)?;
        for u in 0..3 {
            client.track(CustomerEvent::signup(*tenant, format!("user-{u}")).build()?)?;
            client.track(CustomerEvent::login(*tenant, format!("user-{u}")).build()?)?;
        }
        for i in 0..runs {
            let (task_type, choices) = ROUTES[rng.below(ROUTES.len() as u64) as usize];
            // 60% cheapest, 30% middle, 10% premium.
            let pick = match rng.below(10) {
                0..=5 => 0,
                6..=8 => 1,
                _ => 2,
            };
            let (provider, model) = choices[pick];
            let run = client.run(*tenant, format!("{task_type}-agent-{}", i % 4), task_type);
            let calls = 1 + rng.below(3);
            for _ in 0..calls {
                if rng.below(25) == 0 {
                    run.record_call(
                        ProviderEvent::rate_limit(*tenant, provider)
                            .model(model)
                            .meta("retry_after_s", 2),
                    )?;
                }
                let usage = Usage {
                    input_tokens: 500 + rng.below(6_000),
                    cached_input_tokens: rng.below(4) * 1_000,
                    output_tokens: 100 + rng.below(1_500),
                    requests: 1,
                    ..Usage::default()
                };
                run.record_call(
                    ProviderEvent::api_call(*tenant, provider, model)
                        .usage(usage)
                        .duration_ms(300 + rng.below(4_000)),
                )?;
            }
            match rng.below(20) {
                0 => run.timeout()?,
                1 | 2 => run.fail("tests_failed")?,
                _ => run.complete()?,
            }
        }
        client.track(
            CustomerEvent::dashboard_view(*tenant, "user-0")
                .meta("dashboard", "costs")
                .build()?,
        )?;
    }
    client
        .track(BillingEvent::tier_limit_warning("globex", "agent_executions", 80, 100).build()?)?;

    client.flush(Duration::from_secs(30))?;
    let stats = client.stats();
    client.shutdown(Duration::from_secs(5))?;
    println!(
        "agents: {} events accepted, {} delivered, {} retried, {} dropped, {} rejected by the collector",
        stats.accepted,
        stats.delivered(),
        stats.retried,
        stats.dropped.total(),
        stats.rejected
    );
    Ok(())
}
