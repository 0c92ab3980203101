//! The built-in book: the seed's three providers with their exact per-1k semantics, plus a
//! curated set of current models (rates from LiteLLM's price map, effective-dated).

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::book::{PriceBook, PriceEntry, RateKind};
use super::ServiceTier;

/// The built-in book's version.
pub const BUILTIN_VERSION: &str = "builtin-2026-07";

/// USD per 1M tokens `num × 10^-scale`, as USD per token.
const fn pm(num: i64, scale: u32) -> Decimal {
    Decimal::from_parts(num.unsigned_abs() as u32, 0, 0, num < 0, scale + 6)
}

fn day(s: &str) -> DateTime<Utc> {
    // Dates below are literals of this file; a typo is caught by the unit test.
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// An entry effective from `from` (until `to`), versioned `builtin@<from>`.
fn dated(key: &str, provider: &str, from: &str, to: Option<&str>) -> PriceEntry {
    let mut e = PriceEntry::new(key)
        .provider(provider)
        .mode("chat")
        .effective_from(day(from))
        .version(format!("builtin@{from}"));
    if let Some(to) = to {
        e = e.effective_to(day(to));
    }
    e
}

/// Base rates per 1M tokens: input, cache read, output.
fn io(
    e: PriceEntry,
    tier: ServiceTier,
    input: Decimal,
    read: Option<Decimal>,
    out: Decimal,
) -> PriceEntry {
    let e = e
        .rate_at(RateKind::Input, tier, 0, input)
        .rate_at(RateKind::Output, tier, 0, out);
    match read {
        Some(r) => e.rate_at(RateKind::CacheRead, tier, 0, r),
        None => e,
    }
}

fn anthropic(
    e: PriceEntry,
    input: Decimal,
    w5m: Decimal,
    w1h: Decimal,
    read: Decimal,
    out: Decimal,
) -> PriceEntry {
    io(e, ServiceTier::Standard, input, Some(read), out)
        .rate(RateKind::CacheWrite, w5m)
        .rate(RateKind::CacheWrite1h, w1h)
}

fn above(e: PriceEntry, tokens: u64, rates: &[(RateKind, Decimal)]) -> PriceEntry {
    rates.iter().fold(e, |e, &(k, r)| {
        e.rate_at(k, ServiceTier::Standard, tokens, r)
    })
}

/// Every built-in entry.
pub fn builtin_entries() -> Vec<PriceEntry> {
    use RateKind::*;
    use ServiceTier::{Batch, Flex, Priority, Standard};
    let seed = |key: &str, per_1k: Decimal| {
        PriceEntry::new(key)
            .provider(key)
            .mode("chat")
            .version("builtin@seed")
            .per_1k_every_token(per_1k)
    };
    vec![
        // The seed's providers: one per-1k rate on every token; Copilot adds 0.002 per completion.
        seed("github_copilot", Decimal::new(1, 2)).rate(Request, Decimal::new(2, 3)),
        seed("openai_codex", Decimal::new(6, 2)),
        seed("google_code_assist", Decimal::new(4, 2)),
        // OpenAI
        io(
            io(
                io(
                    dated("gpt-4o", "openai", "2024-05-13", None),
                    Standard,
                    pm(250, 2),
                    Some(pm(125, 2)),
                    pm(10, 0),
                ),
                Batch,
                pm(125, 2),
                None,
                pm(5, 0),
            ),
            Priority,
            pm(425, 2),
            Some(pm(2125, 3)),
            pm(17, 0),
        ),
        io(
            io(
                io(
                    dated("gpt-4o-mini", "openai", "2024-07-18", None),
                    Standard,
                    pm(15, 2),
                    Some(pm(75, 3)),
                    pm(60, 2),
                ),
                Batch,
                pm(75, 3),
                None,
                pm(30, 2),
            ),
            Priority,
            pm(25, 2),
            Some(pm(125, 3)),
            pm(1, 0),
        ),
        io(
            io(
                io(
                    dated("gpt-4.1", "openai", "2025-04-14", None),
                    Standard,
                    pm(2, 0),
                    Some(pm(5, 1)),
                    pm(8, 0),
                ),
                Batch,
                pm(1, 0),
                None,
                pm(4, 0),
            ),
            Priority,
            pm(35, 1),
            Some(pm(875, 3)),
            pm(14, 0),
        ),
        io(
            io(
                io(
                    dated("gpt-5", "openai", "2025-08-07", None),
                    Standard,
                    pm(125, 2),
                    Some(pm(125, 3)),
                    pm(10, 0),
                ),
                Flex,
                pm(625, 3),
                Some(pm(625, 4)),
                pm(5, 0),
            ),
            Priority,
            pm(25, 1),
            Some(pm(25, 2)),
            pm(20, 0),
        ),
        io(
            io(
                io(
                    dated("gpt-5-mini", "openai", "2025-08-07", None),
                    Standard,
                    pm(25, 2),
                    Some(pm(25, 3)),
                    pm(2, 0),
                ),
                Flex,
                pm(125, 3),
                Some(pm(125, 4)),
                pm(1, 0),
            ),
            Priority,
            pm(45, 2),
            Some(pm(45, 3)),
            pm(36, 1),
        ),
        // o3 launched at 10 / 2.50 / 40 per 1M and was cut 80% on 2025-06-10.
        io(
            dated("o3", "openai", "2025-04-16", Some("2025-06-10")),
            Standard,
            pm(10, 0),
            Some(pm(25, 1)),
            pm(40, 0),
        ),
        io(
            io(
                io(
                    dated("o3", "openai", "2025-06-10", None),
                    Standard,
                    pm(2, 0),
                    Some(pm(5, 1)),
                    pm(8, 0),
                ),
                Flex,
                pm(1, 0),
                Some(pm(25, 2)),
                pm(4, 0),
            ),
            Priority,
            pm(35, 1),
            Some(pm(875, 3)),
            pm(14, 0),
        ),
        io(
            io(
                io(
                    dated("o4-mini", "openai", "2025-04-16", None),
                    Standard,
                    pm(11, 1),
                    Some(pm(275, 3)),
                    pm(44, 1),
                ),
                Flex,
                pm(55, 2),
                Some(pm(1375, 4)),
                pm(22, 1),
            ),
            Priority,
            pm(2, 0),
            Some(pm(5, 1)),
            pm(8, 0),
        ),
        // Anthropic: input, 5-minute write, 1-hour write, read, output.
        above(
            anthropic(
                dated("claude-sonnet-4-5", "anthropic", "2025-09-29", None),
                pm(3, 0),
                pm(375, 2),
                pm(6, 0),
                pm(3, 1),
                pm(15, 0),
            ),
            200_000,
            &[
                (Input, pm(6, 0)),
                (CacheWrite, pm(75, 1)),
                (CacheWrite1h, pm(12, 0)),
                (CacheRead, pm(6, 1)),
                (Output, pm(225, 1)),
            ],
        )
        .alias("claude-sonnet-4-5-20250929"),
        above(
            anthropic(
                dated("claude-sonnet-4", "anthropic", "2025-05-22", None),
                pm(3, 0),
                pm(375, 2),
                pm(6, 0),
                pm(3, 1),
                pm(15, 0),
            ),
            200_000,
            &[
                (Input, pm(6, 0)),
                (CacheWrite, pm(75, 1)),
                (CacheRead, pm(6, 1)),
                (Output, pm(225, 1)),
            ],
        )
        .alias("claude-sonnet-4-20250514"),
        anthropic(
            dated("claude-opus-4-1", "anthropic", "2025-08-05", None),
            pm(15, 0),
            pm(1875, 2),
            pm(30, 0),
            pm(15, 1),
            pm(75, 0),
        )
        .alias("claude-opus-4-1-20250805"),
        anthropic(
            dated("claude-haiku-4-5", "anthropic", "2025-10-15", None),
            pm(1, 0),
            pm(125, 2),
            pm(2, 0),
            pm(1, 1),
            pm(5, 0),
        )
        .alias("claude-haiku-4-5-20251001"),
        // Google
        above(
            io(
                dated("gemini-2.5-pro", "gemini", "2025-06-17", None),
                Standard,
                pm(125, 2),
                Some(pm(125, 3)),
                pm(10, 0),
            ),
            200_000,
            &[
                (Input, pm(25, 1)),
                (CacheRead, pm(25, 2)),
                (Output, pm(15, 0)),
            ],
        ),
        io(
            dated("gemini-2.5-flash", "gemini", "2025-06-17", None),
            Standard,
            pm(3, 1),
            Some(pm(3, 2)),
            pm(25, 1),
        )
        .rate(Reasoning, pm(25, 1)),
        // Mistral
        io(
            dated("mistral-large-latest", "mistral", "2025-12-02", None),
            Standard,
            pm(5, 1),
            None,
            pm(15, 1),
        ),
        io(
            dated("mistral-small-latest", "mistral", "2025-06-20", None),
            Standard,
            pm(6, 2),
            None,
            pm(18, 2),
        ),
        // DeepSeek: V3.2-Exp price cut on 2025-09-29; earlier rates as LiteLLM recorded them.
        io(
            dated(
                "deepseek-chat",
                "deepseek",
                "2025-02-08",
                Some("2025-09-29"),
            ),
            Standard,
            pm(27, 2),
            Some(pm(7, 2)),
            pm(110, 2),
        ),
        io(
            dated("deepseek-chat", "deepseek", "2025-09-29", None),
            Standard,
            pm(28, 2),
            Some(pm(28, 3)),
            pm(42, 2),
        ),
        io(
            dated(
                "deepseek-reasoner",
                "deepseek",
                "2025-01-20",
                Some("2025-09-29"),
            ),
            Standard,
            pm(55, 2),
            Some(pm(14, 2)),
            pm(219, 2),
        ),
        io(
            dated("deepseek-reasoner", "deepseek", "2025-09-29", None),
            Standard,
            pm(28, 2),
            Some(pm(28, 3)),
            pm(42, 2),
        ),
    ]
}

impl PriceBook {
    /// The built-in book (version [`BUILTIN_VERSION`]; each entry records `builtin@<date>`).
    pub fn builtin() -> PriceBook {
        let mut book = PriceBook::new(BUILTIN_VERSION);
        for e in builtin_entries() {
            // Built-in entries are valid (unit test); an invalid one is left out, not a panic.
            let _ = book.insert(e);
        }
        book
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_entry_is_valid_and_clean() {
        for e in builtin_entries() {
            e.validate().expect("valid entry");
            assert!(e.lint().is_empty(), "{}: {:?}", e.key(), e.lint());
            if let (Some(from), _) = e.effective() {
                assert!(from > DateTime::<Utc>::MIN_UTC, "{}: bad date", e.key());
            }
        }
        assert_eq!(pm(250, 2).normalize().to_string(), "0.0000025");
    }
}
