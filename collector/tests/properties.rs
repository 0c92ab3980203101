//! Property test of the read API: random event sets — both instrumentation patterns (itemized
//! runs whose terminal event repeats the calls' cost with `metadata.calls`, summary-only runs),
//! reported costs, costs priced at ingest, unpriced models, long-context calls, other tiers,
//! failures and timeouts, durations and queue times, timestamps over the last ten days with
//! events up to seven days late (sent after newer ones), retried batches and subsets, several
//! tenants — sent over HTTP in batches, with the closed days' daily rollups compacted into month
//! tables twice in between (`store::compact`), so late events add rows beside moved ones; then, for random ranges aligned and unaligned to hours
//! and days, every endpoint's answer equals the same answer computed over the raw rows
//! (`common/raw.rs`: plain SQL, sdk-core for savings): exact for counts, sums, decimals and
//! savings; p95 within 1%.
//!
//! `AGENTTALLY_PROP_SEED=<n>` replays a run (each case prints the seed that replays it alone
//! with `AGENTTALLY_PROP_CASES=1`); `AGENTTALLY_PROP_CASES=<n>` runs more cases.

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::collections::{BTreeMap, BTreeSet};

use agenttally::pricing::PriceBook;
use agenttally_collector::store::compact;
use agenttally_collector::Scope;
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

const BASELINES: [&str; 2] = ["most_expensive", "openai_codex"];
const BUDGET_USD: i64 = 3;
const TIERS: &str = r#"{
  "default_tier": "small",
  "tiers": [
    {"name": "small", "monthly_price_usd": "10",
     "limits": {"executions": 40, "tokens": 2000000, "cost_usd": "5"},
     "overage": {"per_execution_usd": "0.5", "per_1k_tokens_usd": "0.01", "per_cost_usd": "0.2"}},
    {"name": "big", "monthly_price_usd": "100",
     "limits": {"executions": 100000, "tokens": 1000000000, "cost_usd": "5000"}}
  ]
}"#;

/// SplitMix64: small, seedable, good enough to spread choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Roughly log-uniform in `1..=max`: latencies spread over orders of magnitude.
    fn spread(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros() as u64;
        let b = 1 + self.below(bits);
        (1 + self.below(1u64 << b)).min(max)
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn q(t: DateTime<Utc>) -> String {
    ts(t).replace('+', "%2B")
}

fn at(v: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[field].as_str().unwrap_or_else(|| panic!("{field}: {v}")))
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// Priced models of the built-in book (provider, model).
const PRICED: [(&str, &str); 6] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("gemini", "gemini-2.5-flash"),
    ("gemini", "gemini-2.5-pro"),
];
/// Models the book does not know: stored unpriced unless the sender reports a cost.
const UNPRICED: [(&str, &str); 2] = [
    ("nowhere", "no-such-model-xyz"),
    ("openai", "gpt-imaginary-9"),
];
/// Models with a long-context tier (above 200k prompt tokens) in the built-in book.
const LONG: [(&str, &str); 2] = [
    ("anthropic", "claude-sonnet-4-5"),
    ("gemini", "gemini-2.5-pro"),
];

/// One generated event and when it reaches the collector (its own time, or later when late).
struct Gen {
    event: Value,
    arrival: DateTime<Utc>,
}

/// A usage object: mostly plain prompt and output, sometimes cache and reasoning buckets, and
/// long-context prompts on a model with such a tier.
fn usage(g: &mut Rng, long: bool) -> Value {
    let input = if long {
        // Above the 200k threshold, or exactly on it (the base rate still applies).
        if g.chance(20) {
            200_000
        } else {
            g.range(200_001, 400_000)
        }
    } else {
        g.range(0, 20_000)
    };
    let output = g.range(0, 4_000);
    let mut u = json!({"input_tokens": input, "output_tokens": output});
    if g.chance(30) {
        u["reasoning_tokens"] = json!(g.range(0, output));
    }
    if g.chance(20) {
        u["cached_input_tokens"] = json!(g.range(0, 30_000));
    }
    if g.chance(10) {
        u["cache_write_tokens"] = json!(g.range(0, 5_000));
    }
    if g.chance(5) {
        u["cache_write_1h_tokens"] = json!(g.range(0, 5_000));
    }
    if g.chance(70) {
        u["requests"] = json!(1);
    }
    u
}

fn cost(g: &mut Rng) -> String {
    format!("{}.{:06}", g.below(3), g.below(1_000_000))
}

/// The events of `tenant`: runs of both patterns and a few other events, with arrival times.
fn tenant_events(g: &mut Rng, tenant: &str, now: DateTime<Utc>) -> Vec<Gen> {
    let mut out = Vec::new();
    let runs = g.range(12, 30);
    let tasks = ["code", "review", "docs"];
    // Most tenants use a few models; the recommendation needs repeated provider/models.
    let mut favourites: Vec<(&str, &str)> = (0..3).map(|_| *g.pick(&PRICED)).collect();
    favourites.push(*g.pick(&UNPRICED));
    for run in 0..runs {
        // Ten days back at most; ten minutes clear of now.
        let mut start = now - TimeDelta::seconds(g.range(15 * 60, 10 * 86_400));
        if g.chance(8) {
            // On a bucket's edge: exactly at the hour, or the last microsecond before it.
            start = start.duration_trunc(TimeDelta::hours(1)).expect("hour");
            if g.chance(50) {
                start -= TimeDelta::microseconds(1);
            }
        }
        let corr = format!("{tenant}-run-{run}");
        let task: Option<&str> = (!g.chance(10)).then(|| *g.pick(&tasks));
        let agent = format!("agent-{}", g.below(3));
        let base = |event_type: &str, t: DateTime<Utc>| {
            let mut e = json!({
                "id": Uuid::now_v7().to_string(), "tenant_id": tenant,
                "event_type": event_type, "timestamp": ts(t), "correlation_id": corr,
                "agent_id": agent, "success": true,
            });
            if let Some(task) = task {
                e["task_type"] = json!(task);
            }
            e
        };
        let mut events = vec![base("agent.started", start)];
        let itemized = g.chance(50);
        let calls = if itemized { g.range(1, 4) } else { 0 };
        let mut sum = (0i64, 0i64);
        let mut t = start;
        for _ in 0..calls {
            t += TimeDelta::milliseconds(g.range(10, 60_000));
            let mut call = base("provider.api_call", t);
            let long = g.chance(8);
            let (provider, model) = if long {
                *g.pick(&LONG)
            } else if g.chance(75) {
                *g.pick(&favourites)
            } else if g.chance(80) {
                *g.pick(&PRICED)
            } else {
                *g.pick(&UNPRICED)
            };
            call["provider"] = json!(provider);
            call["model"] = json!(model);
            let u = usage(g, long);
            sum.0 += u["input_tokens"].as_i64().unwrap_or(0);
            sum.1 += u["output_tokens"].as_i64().unwrap_or(0);
            call["usage"] = u;
            match g.below(20) {
                0..=5 => call["cost_usd"] = json!(cost(g)),
                // Statuses the sender set are kept as sent: reported, or unpriced on a model
                // the book knows.
                6 => {
                    call["cost_usd"] = json!(cost(g));
                    call["cost_status"] = json!("reported");
                }
                7 => call["cost_status"] = json!("unpriced"),
                _ => {}
            }
            if g.chance(10) {
                call["service_tier"] = json!(*g.pick(&["priority", "flex", "batch", "standard"]));
            }
            if g.chance(85) {
                call["duration_ms"] = json!(if g.chance(3) { 0 } else { g.spread(120_000) });
            }
            call["success"] = json!(g.chance(90));
            events.push(call);
        }
        // Now and then a provider error (not a call, not spend) with a cost of its own.
        if g.chance(10) {
            let mut e = base("provider.error", t + TimeDelta::milliseconds(5));
            e["provider"] = json!("openai");
            e["model"] = json!("gpt-4o");
            e["error_code"] = json!("503_unavailable");
            e["success"] = json!(false);
            e["cost_usd"] = json!("0.5");
            events.push(e);
        }
        let (event_type, success) = match g.below(6) {
            0 => ("agent.failed", false),
            1 => ("agent.timeout", false),
            _ => ("agent.completed", true),
        };
        let end = t + TimeDelta::milliseconds(g.range(1, 9 * 60_000));
        let mut terminal = base(event_type, end);
        terminal["success"] = json!(success);
        if event_type == "agent.failed" {
            terminal["error_code"] = json!("boom");
        }
        if g.chance(90) {
            terminal["duration_ms"] = json!(if g.chance(3) { 0 } else { g.spread(3_600_000) });
        }
        if g.chance(80) {
            terminal["queue_ms"] = json!(g.spread(60_000) - 1);
        }
        if itemized {
            // sdk-core's run helper: the calls' summed cost and usage, `metadata.calls`.
            terminal["metadata"] = json!({"calls": calls});
            terminal["usage"] = json!({"input_tokens": sum.0, "output_tokens": sum.1});
            terminal["cost_usd"] = json!(cost(g));
        } else {
            // Summary-only: the cost is only here, reported, priced at ingest or unpriced.
            match g.below(4) {
                0 => {
                    terminal["cost_usd"] = json!(cost(g));
                    terminal["usage"] = usage(g, false);
                }
                1 => {
                    let (p, m) = *g.pick(&favourites);
                    terminal["provider"] = json!(p);
                    terminal["model"] = json!(m);
                    let long = g.chance(10) && LONG.contains(&(p, m));
                    terminal["usage"] = usage(g, long);
                }
                2 => {
                    // A model with no provider: grouped under the model in savings.
                    let (_, m) = *g.pick(&PRICED);
                    terminal["model"] = json!(m);
                    terminal["usage"] = usage(g, false);
                    if g.chance(50) {
                        terminal["cost_usd"] = json!(cost(g));
                    }
                }
                _ => {
                    let (p, m) = *g.pick(&UNPRICED);
                    terminal["provider"] = json!(p);
                    terminal["model"] = json!(m);
                    terminal["usage"] = usage(g, false);
                }
            }
            // No calls recorded, or a `calls` that is not a JSON integer >= 1: summary-only.
            match g.below(12) {
                0..=1 => terminal["metadata"] = json!({"calls": 0}),
                2 => terminal["metadata"] = json!({"calls": 2.0}),
                3 => terminal["metadata"] = json!({"calls": "2"}),
                4 => terminal["metadata"] = json!({"calls": 1.5}),
                5 => terminal["metadata"] = json!({"calls": -1}),
                6 => terminal["metadata"] = json!({"calls": null, "note": "x"}),
                _ => {}
            }
        }
        events.push(terminal);
        // A late run: its events arrive up to seven days after they happened (never after
        // now), behind newer ones.
        let late = g.chance(20);
        for e in events {
            let when = at(&e, "timestamp");
            let arrival = if late {
                (when + TimeDelta::seconds(g.range(3_600, 7 * 86_400))).min(now)
            } else {
                when
            };
            let mut e = e;
            if g.chance(10) {
                // The same instant written with another UTC offset.
                let offset = *g.pick(&[5 * 3600 + 1800, -8 * 3600, 14 * 3600, -12 * 3600]);
                let tz = chrono::FixedOffset::east_opt(offset).expect("offset");
                e["timestamp"] = json!(when
                    .with_timezone(&tz)
                    .to_rfc3339_opts(SecondsFormat::Micros, false));
            }
            out.push(Gen { event: e, arrival });
        }
    }
    out
}

/// Sends every event in batches in arrival order (tenants mixed), retrying whole batches and
/// subsets now and then; every event must be stored once.
async fn send(env: &Env, key: &str, g: &mut Rng, mut events: Vec<Gen>, label: &str) {
    events.sort_by_key(|e| e.arrival);
    let all: Vec<Value> = events.into_iter().map(|e| e.event).collect();
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let mut accepted = 0usize;
    let mut i = 0;
    let mut last: Vec<Value> = Vec::new();
    while i < all.len() {
        let n = g.range(1, 80) as usize;
        let mut batch: Vec<Value> = all[i..(i + n).min(all.len())].to_vec();
        i += batch.len();
        // A retry: the previous batch, or part of it, sent again before (or with) this one.
        if !last.is_empty() && g.chance(25) {
            let mut again: Vec<Value> = last.iter().filter(|_| g.chance(60)).cloned().collect();
            if again.is_empty() {
                again = last.clone();
            }
            if g.chance(50) {
                batch.splice(0..0, again);
            } else {
                let (s, v) = env.post(key, &again).await;
                assert_eq!(s, 200, "{label}: {v}");
                assert_eq!(v["accepted"], 0, "{label}: a retry stores nothing: {v}");
                assert_eq!(v["duplicates"], json!(again.len()), "{label}: {v}");
            }
        }
        // The same event twice in one batch: stored once.
        if g.chance(5) {
            let e = g.pick(&batch).clone();
            batch.push(e);
        }
        let mut seen = BTreeSet::new();
        let dups = batch
            .iter()
            .filter(|e| {
                let id = e["id"].as_str().expect("id");
                !seen.insert(id.to_string()) || sent.contains(id)
            })
            .count();
        let (s, v) = env.post(key, &batch).await;
        assert_eq!(s, 200, "{label}: {v}");
        assert_eq!(v["rejected"], json!([]), "{label}: {v}");
        assert_eq!(v["duplicates"], json!(dups), "{label}: {v}");
        assert_eq!(v["accepted"], json!(batch.len() - dups), "{label}: {v}");
        accepted += batch.len() - dups;
        for e in &batch {
            sent.insert(e["id"].as_str().expect("id").to_string());
        }
        last = batch;
    }
    // A whole replay of a random slice, at the end, when everything is stored.
    let from = g.below(all.len() as u64) as usize;
    let slice = &all[from..(from + 50).min(all.len())];
    let (s, v) = env.post(key, slice).await;
    assert_eq!(
        (s, &v["duplicates"]),
        (200, &json!(slice.len())),
        "{label}: {v}"
    );
    assert_eq!(accepted, all.len(), "{label}: every event accepted once");
}

/// A random range of a kind: `None` (the default range), unaligned instants, whole hours, or
/// whole UTC days (which read the daily rollups).
fn random_range(g: &mut Rng, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let day = now.duration_trunc(TimeDelta::days(1)).expect("day");
    let hour = now.duration_trunc(TimeDelta::hours(1)).expect("hour");
    match g.below(4) {
        0 => None,
        1 => {
            let from = now - TimeDelta::seconds(g.range(60, 11 * 86_400));
            let to = from + TimeDelta::seconds(g.range(60, 9 * 86_400));
            Some((from, to))
        }
        2 => {
            let from = hour - TimeDelta::hours(g.range(1, 11 * 24));
            let to = from + TimeDelta::hours(g.range(1, 9 * 24));
            Some((from, to))
        }
        _ => {
            let from = day - TimeDelta::days(g.range(0, 11));
            let to = from + TimeDelta::days(g.range(1, 12));
            Some((from, to))
        }
    }
}

fn range_query(r: Option<(DateTime<Utc>, DateTime<Utc>)>) -> String {
    r.map_or(String::new(), |(f, t)| {
        format!("&from={}&to={}", q(f), q(t))
    })
}

async fn get(env: &Env, key: &str, path: &str, label: &str) -> Value {
    let (s, _, body) = env.call("GET", path, Some(key), None).await;
    assert_eq!(s, 200, "{label}: GET {path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn within_one_percent(got: &Value, exact: Option<i64>, what: &str) {
    match exact {
        None => assert_eq!(*got, Value::Null, "{what}: no values, got {got}"),
        Some(e) => {
            let a = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {got} for {e}"));
            let e = e as f64;
            assert!((a - e).abs() <= 0.01 * e, "{what}: api {a}, raw p95 {e}");
        }
    }
}

/// The summary of `tenant` over `range` equals the raw figures of the range it covered.
async fn check_summary(env: &Env, key: &str, tenant: &str, range: &str, label: &str) {
    let got = get(
        env,
        key,
        &format!("/v1/metrics/summary?tenant_id={tenant}{range}"),
        label,
    )
    .await;
    let (want, p95d, p95q) = raw::summary(&env.db, tenant, at(&got, "from"), at(&got, "to")).await;
    let mut exact = got.clone();
    for f in [
        "from",
        "to",
        "granularity",
        "p95_duration_ms",
        "p95_queue_ms",
    ] {
        exact.as_object_mut().expect("object").remove(f);
    }
    raw::assert_same(&exact, &want, &format!("{label}: summary{range}"));
    within_one_percent(
        &got["p95_duration_ms"],
        p95d,
        &format!("{label}: p95 duration"),
    );
    within_one_percent(&got["p95_queue_ms"], p95q, &format!("{label}: p95 queue"));
}

const METRICS: [&str; 6] = [
    "cost_usd",
    "executions",
    "failures",
    "api_calls",
    "tokens",
    "p95_duration_ms",
];

/// Every metric × interval × grouping of `tenant` over `range` equals the raw figures per
/// bucket and group, every bucket of every group present.
async fn check_series(env: &Env, key: &str, tenant: &str, range: &str, label: &str) -> usize {
    let mut points_checked = 0;
    for interval in ["hour", "day", "month"] {
        for group in [
            None,
            Some("provider"),
            Some("model"),
            Some("task_type"),
            Some("event_type"),
            Some("agent_id"),
        ] {
            let mut raw_of: Option<raw::Series> = None;
            for metric in METRICS {
                let gq = group.map_or(String::new(), |c| format!("&group_by={c}"));
                let path = format!(
                    "/v1/metrics/timeseries?tenant_id={tenant}&metric={metric}&interval={interval}{gq}{range}"
                );
                let what = format!("{label}: {path}");
                let got = get(env, key, &path, label).await;
                let (from, to) = (at(&got, "from"), at(&got, "to"));
                if raw_of.is_none() {
                    raw_of = Some(raw::series(&env.db, tenant, from, to, interval, group).await);
                }
                let (buckets, _) = raw_of.as_ref().expect("raw");
                let groups: Vec<String> = match group {
                    None => vec![String::new()],
                    Some(_) => raw::groups_of(buckets, metric),
                };
                let points = got["points"].as_array().expect("points");
                let mut starts = Vec::new();
                let mut t = from;
                while t < to {
                    starts.push(t);
                    t = match interval {
                        "hour" => t + TimeDelta::hours(1),
                        "day" => t + TimeDelta::days(1),
                        _ => t.checked_add_months(chrono::Months::new(1)).expect("month"),
                    };
                }
                assert_eq!(points.len(), starts.len() * groups.len(), "{what}");
                let empty = raw::Bucket::default();
                for (i, p) in points.iter().enumerate() {
                    let (t, g) = (starts[i / groups.len()], &groups[i % groups.len()]);
                    assert_eq!(at(p, "t"), t, "{what}: point {i}");
                    let want_group = group.map_or(Value::Null, |_| json!(g));
                    assert_eq!(p["group"], want_group, "{what}: point {i}");
                    let b = buckets.get(&(t, g.clone())).unwrap_or(&empty);
                    let w = |v: Value| (v, format!("{what}: {p}"));
                    let (want, msg) = match metric {
                        "cost_usd" => {
                            assert_eq!(
                                p["unpriced_events"],
                                json!(b.unpriced_events),
                                "{what}: {p}"
                            );
                            w(raw::text(b.cost_usd))
                        }
                        "executions" => w(json!(b.executions)),
                        "failures" => w(json!(b.failures)),
                        "api_calls" => w(json!(b.api_calls)),
                        "tokens" => w(json!(b.tokens)),
                        _ => {
                            within_one_percent(
                                &p["value"],
                                b.p95_duration_ms,
                                &format!("{what}: {p}"),
                            );
                            continue;
                        }
                    };
                    assert_eq!(p["value"], want, "{msg}");
                    points_checked += 1;
                }
            }
        }
    }
    points_checked
}

/// Savings of `tenant` over `range` against `baseline` equal sdk-core's over the raw rows.
async fn check_savings(
    env: &Env,
    book: &PriceBook,
    key: &str,
    tenant: &str,
    range: &str,
    baseline: &str,
    label: &str,
) {
    let got = get(
        env,
        key,
        &format!("/v1/metrics/savings?tenant_id={tenant}&baseline={baseline}{range}"),
        label,
    )
    .await;
    let want = raw::savings(
        &env.db,
        book,
        tenant,
        at(&got, "from"),
        at(&got, "to"),
        baseline,
    )
    .await;
    // Without `tz` the answer is for UTC (tz itself: tests/metrics_tz.rs).
    assert_eq!(got["tz"], json!("UTC"), "{label}");
    let mut answer = got.clone();
    for f in ["tenant_id", "from", "to", "granularity", "baseline", "tz"] {
        answer.as_object_mut().expect("object").remove(f);
    }
    raw::assert_same(
        &answer,
        &want,
        &format!("{label}: savings {baseline}{range}"),
    );
}

async fn check_peaks(env: &Env, key: &str, tenant: &str, range: &str, g: &mut Rng, label: &str) {
    let metric = *g.pick(&["executions", "failures", "api_calls", "cost_usd", "tokens"]);
    let limit = g.range(1, 30) as usize;
    let got = get(
        env,
        key,
        &format!("/v1/metrics/peaks?tenant_id={tenant}&metric={metric}&limit={limit}{range}"),
        label,
    )
    .await;
    let want = raw::peaks(
        &env.db,
        tenant,
        at(&got, "from"),
        at(&got, "to"),
        metric,
        limit,
    )
    .await;
    assert_eq!(got["tz"], json!("UTC"), "{label}");
    let mut answer = got.clone();
    for f in ["tenant_id", "from", "to", "metric", "tz"] {
        answer.as_object_mut().expect("object").remove(f);
    }
    raw::assert_same(
        &answer,
        &want,
        &format!("{label}: peaks {metric} {limit}{range}"),
    );
}

async fn check_recommendations(
    env: &Env,
    key: &str,
    tenant: &str,
    range: &str,
    g: &mut Rng,
    label: &str,
) {
    let margin = Decimal::new(g.range(0, 30), 2);
    let min_tasks = g.range(1, 6);
    let before = Utc::now();
    let got = get(
        env,
        key,
        &format!(
            "/v1/metrics/recommendations?tenant_id={tenant}&margin={margin}&min_tasks={min_tasks}{range}"
        ),
        label,
    )
    .await;
    let after = Utc::now();
    let (by_type, total) = raw::recommendations(
        &env.db,
        tenant,
        at(&got, "from"),
        at(&got, "to"),
        margin,
        min_tasks,
    )
    .await;
    raw::assert_same(
        &got["by_task_type"],
        &by_type,
        &format!("{label}: recommendations{range}"),
    );
    assert_eq!(
        got["projected_monthly_saving_usd"],
        raw::text(total),
        "{label}"
    );
    assert_eq!(got["margin"], raw::text(margin));
    // The budget: this month's spend so far, exact; its projection as of the server's now.
    let b = &got["budget"];
    let (start, end) = raw::month(before);
    let usage = raw::usage_by_month(&env.db, tenant, start, end).await;
    let (_, _, spent, unpriced) = usage.values().next().cloned().unwrap_or_default();
    assert_eq!(b["month_to_date_usd"], raw::text(spent), "{label}: {b}");
    assert_eq!(b["unpriced_events"], json!(unpriced), "{label}: {b}");
    let project = |now: DateTime<Utc>| {
        raw::cents(
            spent * raw::days(start, end) / raw::days(start, now.max(start + TimeDelta::hours(1))),
        )
    };
    let p = raw::dec(&b["projected_usd"]);
    assert!(project(after) <= p && p <= project(before), "{label}: {b}");
    assert_eq!(
        b["alert"],
        json!(p > Decimal::from(BUDGET_USD)),
        "{label}: {b}"
    );
}

/// `GET /v1/billing/usage`: the current period's use and the past periods' equal the raw
/// figures by month.
async fn check_billing(env: &Env, key: &str, tenant: &str, label: &str) {
    let before = Utc::now();
    let got = get(
        env,
        key,
        &format!("/v1/billing/usage?tenant_id={tenant}"),
        label,
    )
    .await;
    let after = Utc::now();
    let (start, end) = raw::month(before);
    assert_eq!(
        raw::month(after).0,
        start,
        "the test straddles a month's end: run it again"
    );
    let history_from = start
        .checked_sub_months(chrono::Months::new(12))
        .expect("year");
    let mut months = raw::usage_by_month(&env.db, tenant, history_from, end).await;
    let period = got["period"].as_str().expect("period").to_string();
    let (executions, tokens, cost, unpriced) = months.remove(&period).unwrap_or_default();
    assert_eq!(got["unpriced_events"], json!(unpriced), "{label}: {got}");
    let limits = [
        ("executions", 40i64),
        ("tokens", 2_000_000),
        ("cost_usd", 5),
    ];
    let used = [Decimal::from(executions), Decimal::from(tokens), cost];
    for (m, ((name, limit), used)) in got["usage"]
        .as_array()
        .expect("usage")
        .iter()
        .zip(limits.iter().zip(used))
    {
        assert_eq!(m["metric"], *name, "{label}");
        assert_eq!(m["used"], raw::text(used), "{label}: {m}");
        assert_eq!(
            m["percent_used"],
            raw::text(raw::cents(
                used * Decimal::ONE_HUNDRED / Decimal::from(*limit)
            )),
            "{label}: {m}"
        );
        let project = |now: DateTime<Utc>| {
            let p = used * raw::days(start, end) / raw::days(start, now.max(start));
            if *name == "cost_usd" {
                raw::cents(p)
            } else {
                p.ceil()
            }
        };
        let p = raw::dec(&m["projected"]);
        assert!(project(after) <= p && p <= project(before), "{label}: {m}");
    }
    let history: Vec<Value> = months
        .iter()
        .map(|(period, (n, t, c, u))| {
            json!({"period": period, "executions": n, "tokens": t, "cost_usd": raw::text(*c),
                   "unpriced_events": u})
        })
        .collect();
    let got_history: Vec<Value> = got["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            let mut h = h.clone();
            h.as_object_mut().expect("object").remove("overage_usd");
            h
        })
        .collect();
    raw::assert_same(
        &json!(got_history),
        &json!(history),
        &format!("{label}: billing history"),
    );
}

fn seed() -> u64 {
    match std::env::var("AGENTTALLY_PROP_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("AGENTTALLY_PROP_SEED: must be an integer, got `{s}`"))
        }
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock");
            t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

fn cases() -> u64 {
    match std::env::var("AGENTTALLY_PROP_CASES") {
        Ok(s) => s
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("AGENTTALLY_PROP_CASES: must be an integer >= 1, got `{s}`")),
        Err(_) => 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_equals_the_raw_rows_for_random_event_sets() {
    let dir = std::env::temp_dir().join(format!("agenttally-prop-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tiers = dir.join("tiers.json");
    std::fs::write(&tiers, TIERS).expect("tiers");
    let mut env = Env::start_with(|c| {
        c.savings_baselines = BASELINES.iter().map(|b| b.to_string()).collect();
        c.rate_query_per_minute = 0;
        c.monthly_budget_usd = Some(Decimal::from(BUDGET_USD));
        c.tiers_file = Some(tiers.clone());
    })
    .await;
    let ingest = env.key(None, &[Scope::Ingest]).await;
    let read = env.key(None, &[Scope::Read]).await;
    let book = PriceBook::builtin();
    let seed = seed();
    let cases = cases();
    println!("property seed {seed} ({cases} cases): replay with AGENTTALLY_PROP_SEED={seed} AGENTTALLY_PROP_CASES={cases}");
    let mut stats = BTreeMap::<&str, usize>::new();
    for case in 0..cases {
        let case_seed = seed.wrapping_add(case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let label = format!(
            "case {case} (alone: AGENTTALLY_PROP_SEED={case_seed} AGENTTALLY_PROP_CASES=1)"
        );
        println!("{label}");
        let mut g = Rng(case_seed);
        let now = Utc::now();
        let tenants: Vec<String> = (0..g.range(2, 3))
            .map(|i| format!("prop-{case_seed:016x}-{i}"))
            .collect();
        let mut events = Vec::new();
        for t in &tenants {
            events.extend(tenant_events(&mut g, t, now));
        }
        let generated = events.len() as i64;
        *stats.entry("events").or_default() += events.len();
        // In three parts by arrival, the closed days' daily rollups moved into month tables
        // between them (what a running collector does once a day): the events of the later
        // parts that are late add rows beside moved ones, in the month tables (moved again by
        // the second compaction) and in the daily tables.
        let (early, rest): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|e| e.arrival < now - TimeDelta::days(3));
        let (middle, last): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|e| e.arrival < now - TimeDelta::days(1));
        send(&env, &ingest, &mut g, early, &label).await;
        for part in [middle, last] {
            let done = compact::run_once(&mut env.db, now.date_naive())
                .await
                .expect("compact");
            *stats.entry("rows compacted").or_default() += done.moved as usize;
            send(&env, &ingest, &mut g, part, &label).await;
        }
        *stats
            .entry("late daily rows beside moved ones")
            .or_default() += env
            .count(&format!(
                "SELECT count(*) FROM ONLY rollup_daily p
                   WHERE p.tenant_id LIKE 'prop-{case_seed:016x}-%' AND EXISTS (
                     SELECT 1 FROM rollup_daily c WHERE c.tableoid <> p.tableoid
                       AND (c.tenant_id, c.bucket, c.event_type, c.provider, c.model,
                            c.task_type, c.itemized)
                         = (p.tenant_id, p.bucket, p.event_type, p.provider, p.model,
                            p.task_type, p.itemized))"
            ))
            .await as usize;
        let stored = env
            .count(&format!(
                "SELECT count(*) FROM events WHERE tenant_id LIKE 'prop-{case_seed:016x}-%'
                   AND event_type NOT LIKE 'billing.%'"
            ))
            .await;
        assert_eq!(stored, generated, "{label}: every event stored once");
        // The tier-limit watcher records its events after the commits: wait until it is done
        // (they are events of the tenant like any other), each limit and level once.
        let limit_events = format!(
            "SELECT count(*) FROM events WHERE tenant_id LIKE 'prop-{case_seed:016x}-%'
               AND event_type LIKE 'billing.tier_limit_%'"
        );
        let mut seen = -1;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let n = env.count(&limit_events).await;
            if n == seen {
                break;
            }
            seen = n;
        }
        *stats.entry("limit events").or_default() += seen as usize;
        let twice = env
            .count(&format!(
                "SELECT count(*) FROM (SELECT tenant_id, event_type, metadata->>'metric'
                   FROM events WHERE tenant_id LIKE 'prop-{case_seed:016x}-%'
                   AND event_type LIKE 'billing.tier_limit_%' GROUP BY 1, 2, 3
                   HAVING count(*) > 1) d"
            ))
            .await;
        assert_eq!(twice, 0, "{label}: a limit event recorded twice");

        for tenant in &tenants {
            // The generated data exercises the rules it is meant to.
            let n = |sql: String| {
                let db = &env.db;
                async move {
                    db.query_one(&sql, &[])
                        .await
                        .expect("count")
                        .get::<_, i64>(0)
                }
            };
            *stats.entry("unpriced").or_default() += n(format!(
                "SELECT count(*) FROM events WHERE tenant_id = '{tenant}' AND cost_status = 'unpriced'"
            ))
            .await as usize;
            *stats.entry("long-context").or_default() += n(format!(
                "SELECT count(*) FROM events WHERE tenant_id = '{tenant}' AND input_tokens > 200000"
            ))
            .await as usize;
            *stats.entry("itemized runs").or_default() += n(format!(
                "SELECT count(*) FROM events WHERE tenant_id = '{tenant}' AND metadata->>'calls' ~ '^[1-9][0-9]*$'
                   AND jsonb_typeof(metadata->'calls') = 'number'"
            ))
            .await as usize;

            let ranges: Vec<_> = (0..2).map(|_| random_range(&mut g, now)).collect();
            for r in &ranges {
                let rq = range_query(*r);
                check_summary(&env, &read, tenant, &rq, &label).await;
                for baseline in BASELINES {
                    check_savings(&env, &book, &read, tenant, &rq, baseline, &label).await;
                }
                check_peaks(&env, &read, tenant, &rq, &mut g, &label).await;
                check_recommendations(&env, &read, tenant, &rq, &mut g, &label).await;
                *stats.entry("ranges").or_default() += 1;
            }
            let rq = range_query(ranges[0]);
            *stats.entry("series points").or_default() +=
                check_series(&env, &read, tenant, &rq, &label).await;
            check_billing(&env, &read, tenant, &label).await;
        }
    }
    println!("checked: {stats:?}");
    env.shutdown().await;
}
