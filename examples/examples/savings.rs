//! Prices a few provider calls from their raw `usage` objects and prints what routing saved
//! against two baselines. Run: `cargo run -p agenttally-examples --example savings`.

use agenttally::event::now_micros;
use agenttally::pricing::{
    adapters, display_round, Baseline, PriceBook, SavingsSummary, ServiceTier, Task, Usage,
};
use rust_decimal::Decimal;
use serde_json::json;

fn task(provider: &str, model: &str, task_type: &str, usage: Usage, success: bool) -> Task {
    Task {
        provider: Some(provider.into()),
        task_type: Some(task_type.into()),
        success,
        ..Task::new(model, usage, now_micros())
    }
}

fn usd(d: Decimal) -> String {
    format!("{:.6}", display_round(d, 6))
}

fn pct(p: Option<Decimal>) -> String {
    p.map_or("-".into(), |p| format!("{}%", display_round(p, 2)))
}

fn row(name: &str, s: &SavingsSummary) {
    println!(
        "{name:<22} {:>5} {:>12} {:>12} {:>12} {:>9} {:>12} {:>9}",
        s.tasks,
        usd(s.actual_usd),
        usd(s.baseline_usd),
        usd(s.savings_usd),
        pct(s.savings_percent),
        usd(s.successful_savings_usd),
        s.actual_unpriced + s.baseline_unpriced,
    );
}

fn main() -> Result<(), agenttally::Error> {
    let book = PriceBook::builtin();
    let now = now_micros();

    let openai = adapters::openai(&json!({
        "prompt_tokens": 12000, "completion_tokens": 900,
        "prompt_tokens_details": {"cached_tokens": 8000},
        "completion_tokens_details": {"reasoning_tokens": 0}
    }))?;
    let anthropic = adapters::anthropic(&json!({
        "input_tokens": 3000, "cache_read_input_tokens": 20000,
        "cache_creation_input_tokens": 4000, "output_tokens": 1500
    }))?;
    let gemini = adapters::gemini(&json!({
        "promptTokenCount": 5000, "candidatesTokenCount": 700, "thoughtsTokenCount": 1200
    }))?;
    let seed = Usage {
        input_tokens: 1500,
        output_tokens: 500,
        requests: 1,
        ..Usage::default()
    };

    println!("One call each:");
    for (model, u) in [
        ("gpt-4o-mini", openai),
        ("anthropic/claude-haiku-4-5", anthropic),
        ("gemini-2.5-flash", gemini),
        ("github_copilot", seed),
        ("some-new-model", seed),
    ] {
        let c = book.cost(model, &u, ServiceTier::Standard, now);
        println!(
            "  {model:<28} {:>12} {:<9} {}",
            c.usd.map_or("-".into(), usd),
            c.status.to_string(),
            c.price_version.as_deref().unwrap_or("-")
        );
    }
    println!(
        "\n{}",
        book.explain(
            "anthropic/claude-haiku-4-5",
            &anthropic,
            ServiceTier::Standard,
            now
        )
    );

    let tasks = [
        task("openai", "gpt-4o-mini", "summarise", openai, true),
        task(
            "anthropic",
            "claude-haiku-4-5",
            "code-review",
            anthropic,
            true,
        ),
        task("google", "gemini-2.5-flash", "summarise", gemini, false),
        task(
            "github_copilot",
            "github_copilot",
            "code-complete",
            seed,
            true,
        ),
        task("acme", "some-new-model", "summarise", seed, true),
    ];
    for baseline in [Baseline::Model("gpt-4.1".into()), Baseline::MostExpensive] {
        let r = book.savings(&tasks, &baseline);
        println!("\nSavings against {baseline:?}:");
        println!(
            "{:<22} {:>5} {:>12} {:>12} {:>12} {:>9} {:>12} {:>9}",
            "group", "tasks", "actual", "baseline", "savings", "%", "saved (ok)", "unpriced"
        );
        row("TOTAL", &r.total);
        for (k, s) in &r.by_provider {
            row(&format!("provider {k}"), s);
        }
        for (k, s) in &r.by_task_type {
            row(&format!("type {k}"), s);
        }
        if let Some(c) = r.total.cost_per_successful_task {
            println!("cost per successful task: {}", usd(c));
        }
    }
    Ok(())
}
