//! `tz` on the read API against plain SQL over the raw `events` rows (`date_trunc(..., ts AT
//! TIME ZONE tz)`): local day and month buckets across the latest clock changes of New York
//! and Berlin (23- and 25-hour days), a month boundary, a negative offset, savings by local
//! month, peaks by local hour and weekday, billing periods and the budget month in a zone; the
//! 422s for zones that are not IANA names and for offsets that are not whole hours; CSV equal to
//! JSON with `tz`.

mod common;

use std::collections::BTreeMap;

use agenttally_collector::query::period::{day_start, local_date, month_in, zone};
use agenttally_collector::Scope;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use common::runs::ts;
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

/// Raw rows of a tenant in `[$2, $3)`, with what each counts towards (docs/metrics.md).
const RAW: &str = "SELECT *, event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
           AS outcome,
       event_type = 'provider.api_call'
           OR event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AS spend
    FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3";

fn at(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("time: {v}")))
        .expect("rfc3339")
        .with_timezone(&Utc)
}

async fn get(env: &Env, key: &str, path: &str) -> (u16, Value) {
    let resp = env
        .http
        .get(format!("{}{path}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn get_text(env: &Env, key: &str, path: &str) -> (u16, String) {
    let resp = env
        .http
        .get(format!("{}{path}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// The latest local date before `today` in `tz` that is not 24 hours long (a clock change).
fn last_change(tz: &str, today: NaiveDate) -> NaiveDate {
    let z = zone(tz).expect("zone");
    (1..400)
        .map(|n| today - TimeDelta::days(n))
        .find(|d| {
            let next = d.succ_opt().expect("date");
            day_start(z, next) - day_start(z, *d) != TimeDelta::hours(24)
        })
        .expect("a clock change within a year")
}

/// Events every 29 minutes over `[from, to)` (clipped to the past): provider calls, completed
/// and failed runs, each with an exact cost.
fn events_between(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    n: &mut u64,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut t = from;
    let to = to.min(now - TimeDelta::minutes(1));
    while t < to {
        *n += 1;
        let k = *n;
        let (event_type, success) = match k % 3 {
            0 => ("provider.api_call", true),
            1 => ("agent.completed", true),
            _ => ("agent.failed", false),
        };
        let task = ["code", "docs"][(k % 2) as usize];
        let mut e = json!({
            "id": Uuid::now_v7().to_string(), "tenant_id": "acme",
            "event_type": event_type, "timestamp": ts(t),
            "correlation_id": format!("run-{k}"), "agent_id": "a1",
            "task_type": task,
            "provider": "openai", "model": "gpt-4o",
            "cost_usd": format!("0.{:04}", (k * 37) % 10_000),
            "cost_status": "reported",
            "usage": {"input_tokens": 10 + k % 7, "output_tokens": 3},
            "duration_ms": 100 + k % 50, "success": success,
        });
        if !success {
            e["error_code"] = json!("boom");
        }
        out.push(e);
        t += TimeDelta::minutes(29);
    }
    out
}

/// `bucket start -> (executions, cost)` by plain SQL: the raw rows of `[from, to)` grouped by
/// `date_trunc(unit, ts AT TIME ZONE tz)`, the bucket's start converted back to an instant.
async fn raw_buckets(
    env: &Env,
    unit: &str,
    tz: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<DateTime<Utc>, (i64, Decimal)> {
    let sql = format!(
        "SELECT date_trunc('{unit}', ts AT TIME ZONE $4) AT TIME ZONE $4,
                count(*) FILTER (WHERE outcome),
                coalesce(sum(cost_usd) FILTER (WHERE spend), 0)
         FROM ({RAW}) r GROUP BY 1"
    );
    env.db
        .query(&sql, &[&"acme", &from, &to, &tz])
        .await
        .expect(&sql)
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// Every point of a series equals its raw bucket (absent: zero), for executions and cost.
async fn check_series(
    env: &Env,
    key: &str,
    interval: &str,
    tz: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let q = format!(
        "/v1/metrics/timeseries?interval={interval}&tz={}&from={}&to={}",
        tz.replace('+', "%2B"),
        ts(from),
        ts(to)
    );
    let (s, execs) = get(env, key, &format!("{q}&metric=executions")).await;
    assert_eq!(s, 200, "{execs}");
    assert_eq!(execs["tz"], json!(tz), "{execs}");
    let (s, cost) = get(env, key, &format!("{q}&metric=cost_usd")).await;
    assert_eq!(s, 200, "{cost}");
    let (range_from, range_to) = (at(&execs["from"]), at(&execs["to"]));
    assert!(range_from <= from && range_to >= to, "{execs}");
    let want = raw_buckets(env, interval, tz, range_from, range_to).await;
    let points = execs["points"].as_array().expect("points");
    let starts: Vec<DateTime<Utc>> = points.iter().map(|p| at(&p["t"])).collect();
    for k in want.keys() {
        assert!(
            starts.contains(k),
            "{tz} {interval}: raw bucket {k} not among {starts:?}"
        );
    }
    for (p, c) in points
        .iter()
        .zip(cost["points"].as_array().expect("points"))
    {
        let t = at(&p["t"]);
        assert_eq!(t, at(&c["t"]));
        let (n, usd) = want.get(&t).copied().unwrap_or((0, Decimal::ZERO));
        assert_eq!(p["value"], json!(n), "{tz} {interval} executions at {t}");
        let got: Decimal = c["value"]
            .as_str()
            .expect("decimal")
            .parse()
            .expect("decimal");
        assert_eq!(got, usd, "{tz} {interval} cost at {t}");
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tz_buckets_equal_plain_sql_over_raw_events() {
    let mut env = Env::start_with(|c| {
        c.raw_retention_days = 400;
        c.hourly_retention_days = 400;
        c.monthly_budget_usd = Some(Decimal::from(100));
    })
    .await;
    let now = Utc::now();
    let today = now.date_naive();
    let ny = zone("America/New_York").expect("ny");
    let berlin = zone("Europe/Berlin").expect("berlin");
    let ny_change = last_change("America/New_York", today);
    let berlin_change = last_change("Europe/Berlin", today);
    // Events around each local midnight that matters: the clock-change days (both ends), the
    // start of this month and of the last one, in both zones and in UTC.
    let mut around: Vec<DateTime<Utc>> = vec![];
    for (z, d) in [(ny, ny_change), (berlin, berlin_change)] {
        around.push(day_start(z, d));
        around.push(day_start(z, d.succ_opt().expect("date")));
    }
    for z in [ny, berlin, chrono_tz::Tz::UTC] {
        let (start, _) = month_in(z, now);
        around.push(start);
        around.push(month_in(z, start - TimeDelta::days(1)).0);
    }
    around.sort();
    let mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = vec![];
    for t in around {
        let (a, b) = (t - TimeDelta::hours(30), t + TimeDelta::hours(30));
        match windows.last_mut() {
            Some(w) if a <= w.1 => w.1 = w.1.max(b),
            _ => windows.push((a, b)),
        }
    }
    let mut n = 0;
    let events: Vec<Value> = windows
        .iter()
        .flat_map(|(a, b)| events_between(*a, *b, now, &mut n))
        .collect();
    let ingest = env.key(Some("acme"), &[Scope::Ingest]).await;
    for chunk in events.chunks(500) {
        let (s, v) = env.post(&ingest, chunk).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["rejected"], json!([]), "{v}");
    }
    let key = env.key(Some("acme"), &[Scope::Read]).await;
    // Rollups are written by the group commit: wait until every event is in.
    for _ in 0..200 {
        if env
            .count("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
            .await
            == events.len() as i64
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Days across each clock change: local midnights, one 23- or 25-hour day.
    for (name, z, d) in [
        ("America/New_York", ny, ny_change),
        ("Europe/Berlin", berlin, berlin_change),
    ] {
        let from = day_start(z, d - TimeDelta::days(2));
        let to = day_start(z, d + TimeDelta::days(3));
        let starts = check_series(&env, &key, "day", name, from, to).await;
        assert_eq!(starts.len(), 5, "{name}: {starts:?}");
        let lengths: Vec<i64> = starts
            .windows(2)
            .map(|w| (w[1] - w[0]).num_hours())
            .collect();
        assert_eq!(lengths[0], 24);
        assert_ne!(lengths[2], 24, "{name}: the day of the change: {starts:?}");
        for s in &starts {
            assert_eq!(s.with_timezone(&z).format("%H:%M").to_string(), "00:00");
        }
    }
    // Months (a month boundary), in a negative-offset zone, a reversed-sign Etc zone and UTC.
    let month_from = month_in(ny, month_in(ny, now).0 - TimeDelta::days(1)).0;
    for name in ["America/New_York", "Europe/Berlin", "Etc/GMT+3", "UTC"] {
        let starts = check_series(&env, &key, "month", name, month_from, now).await;
        assert!(starts.len() >= 2, "{name}: {starts:?}");
        check_series(&env, &key, "day", name, now - TimeDelta::days(5), now).await;
    }
    // Etc/GMT+3 is UTC−3 (POSIX sign): its days start at 03:00 UTC.
    let (s, v) = get(
        &env,
        &key,
        "/v1/metrics/timeseries?metric=executions&tz=Etc/GMT%2B3",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(at(&v["from"]).format("%H:%M").to_string(), "03:00", "{v}");
    // Hours are UTC hours in any zone, even one off by half an hour.
    let (s, v) = get(
        &env,
        &key,
        "/v1/metrics/timeseries?metric=executions&interval=hour&tz=Asia/Kolkata",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // The default zone and an explicit UTC answer alike.
    let (_, a) = get(
        &env,
        &key,
        "/v1/metrics/timeseries?metric=cost_usd&interval=day",
    )
    .await;
    let (_, b) = get(
        &env,
        &key,
        "/v1/metrics/timeseries?metric=cost_usd&interval=day&tz=UTC",
    )
    .await;
    assert_eq!(a["points"], b["points"]);
    assert_eq!(a["tz"], json!("UTC"));

    // Savings by local month: tasks per month of New York equal the raw spend rows per month.
    let utc = chrono_tz::Tz::UTC;
    let from = day_start(utc, local_date(utc, month_from) - TimeDelta::days(2));
    let to = day_start(utc, today + TimeDelta::days(1));
    let q = format!("from={}&to={}", ts(from), ts(to));
    let mut by_month = BTreeMap::new();
    for name in ["America/New_York", "UTC"] {
        let (s, v) = get(&env, &key, &format!("/v1/metrics/savings?{q}&tz={name}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["tz"], json!(name));
        let sql = format!(
            "SELECT to_char(date_trunc('month', ts AT TIME ZONE $4), 'YYYY-MM'),
                    count(*) FILTER (WHERE spend)
             FROM ({RAW}) r GROUP BY 1"
        );
        let want: BTreeMap<String, i64> = env
            .db
            .query(&sql, &[&"acme", &at(&v["from"]), &at(&v["to"]), &name])
            .await
            .expect(&sql)
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let got: BTreeMap<String, i64> = v["by_month"]
            .as_object()
            .expect("by_month")
            .iter()
            .map(|(m, f)| (m.clone(), f["tasks"].as_i64().expect("tasks")))
            .collect();
        assert_eq!(got, want, "{name}: {v}");
        by_month.insert(name, got);
        // CSV carries the same months.
        let (s, csv) = get_text(
            &env,
            &key,
            &format!("/v1/metrics/savings?{q}&tz={name}&format=csv"),
        )
        .await;
        assert_eq!(s, 200, "{csv}");
        for (m, n) in &by_month[name] {
            assert!(
                csv.lines()
                    .any(|l| l.starts_with(&format!("month,{m},{n},"))),
                "{m} {n}: {csv}"
            );
        }
    }
    assert_ne!(
        by_month["America/New_York"], by_month["UTC"],
        "events near midnight move"
    );

    // Peaks by local hour of day and weekday.
    let (s, v) = get(&env, &key, "/v1/metrics/peaks?tz=Europe/Berlin").await;
    assert_eq!(s, 200, "{v}");
    let sql = format!(
        "SELECT extract(hour FROM ts AT TIME ZONE 'Europe/Berlin')::int,
                extract(isodow FROM ts AT TIME ZONE 'Europe/Berlin')::int,
                count(*) FILTER (WHERE outcome)
         FROM ({RAW}) r GROUP BY 1, 2"
    );
    let rows = env
        .db
        .query(&sql, &[&"acme", &at(&v["from"]), &at(&v["to"])])
        .await
        .expect(&sql);
    let (mut hours, mut days) = ([0i64; 24], [0i64; 7]);
    for r in &rows {
        let (h, d, n): (i32, i32, i64) = (r.get(0), r.get(1), r.get(2));
        hours[h as usize] += n;
        days[(d - 1) as usize] += n;
    }
    for (i, h) in v["by_hour_of_day"]
        .as_array()
        .expect("hours")
        .iter()
        .enumerate()
    {
        assert_eq!(h["executions"], json!(hours[i]), "hour {i}: {v}");
    }
    for (i, d) in v["by_day_of_week"]
        .as_array()
        .expect("days")
        .iter()
        .enumerate()
    {
        assert_eq!(d["executions"], json!(days[i]), "day {i}: {v}");
    }

    // Billing: this month of New York, and past months within the hourly retention.
    let (s, u) = get(&env, &key, "/v1/billing/usage?tz=America/New_York").await;
    assert_eq!(s, 200, "{u}");
    let (start, end) = month_in(ny, now);
    assert_eq!(
        (at(&u["period_start"]), at(&u["period_end"])),
        (start, end),
        "{u}"
    );
    assert_eq!(u["tz"], json!("America/New_York"));
    let sql = format!(
        "SELECT to_char(date_trunc('month', ts AT TIME ZONE 'America/New_York'), 'YYYY-MM'),
                count(*) FILTER (WHERE outcome),
                coalesce(sum(cost_usd) FILTER (WHERE spend), 0)
         FROM ({RAW}) r GROUP BY 1"
    );
    let want: BTreeMap<String, (i64, Decimal)> = env
        .db
        .query(&sql, &[&"acme", &at(&u["history_from"]), &end])
        .await
        .expect(&sql)
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let period = u["period"].as_str().expect("period");
    let current = want.get(period).copied().unwrap_or_default();
    let listed: Vec<&str> = u["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["period"].as_str().expect("period"))
        .collect();
    for m in want.keys().filter(|m| m.as_str() != period) {
        assert!(listed.contains(&m.as_str()), "{m} missing: {u}");
    }
    let used = |m: &str| -> Decimal {
        u["usage"]
            .as_array()
            .expect("usage")
            .iter()
            .find(|x| x["metric"] == m)
            .and_then(|x| x["used"].as_str())
            .expect("used")
            .parse()
            .expect("decimal")
    };
    assert_eq!(used("executions"), Decimal::from(current.0), "{u}");
    assert_eq!(used("cost_usd"), current.1, "{u}");
    for h in u["history"].as_array().expect("history") {
        let w = want[h["period"].as_str().expect("period")];
        assert_eq!(h["executions"], json!(w.0), "{h}");
        assert_eq!(
            h["cost_usd"]
                .as_str()
                .expect("cost")
                .parse::<Decimal>()
                .expect("d"),
            w.1
        );
    }
    assert!(!u["history"].as_array().expect("history").is_empty(), "{u}");

    // The budget month of Berlin: month-to-date spend over its local month.
    let (s, r) = get(&env, &key, "/v1/metrics/recommendations?tz=Europe/Berlin").await;
    assert_eq!(s, 200, "{r}");
    let (start, end) = month_in(berlin, now);
    let b = &r["budget"];
    assert_eq!(
        (at(&b["month_start"]), at(&b["month_end"])),
        (start, end),
        "{b}"
    );
    let spent: Decimal = env
        .db
        .query_one(
            &format!("SELECT coalesce(sum(cost_usd) FILTER (WHERE spend), 0) FROM ({RAW}) r"),
            &[&"acme", &start, &end],
        )
        .await
        .expect("spend")
        .get(0);
    let got: Decimal = b["month_to_date_usd"]
        .as_str()
        .expect("d")
        .parse()
        .expect("d");
    assert_eq!(got, spent, "{b}");

    // CSV equals JSON with tz.
    let q = "/v1/metrics/timeseries?metric=cost_usd&interval=day&tz=America/New_York";
    let (_, json_v) = get(&env, &key, q).await;
    let (s, csv) = get_text(&env, &key, &format!("{q}&format=csv")).await;
    assert_eq!(s, 200, "{csv}");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "t,group,value,unpriced_events");
    let points = json_v["points"].as_array().expect("points");
    assert_eq!(lines.len() - 1, points.len());
    for (l, p) in lines[1..].iter().zip(points) {
        let cells: Vec<&str> = l.split(',').collect();
        assert_eq!(
            DateTime::parse_from_rfc3339(cells[0]).expect("t"),
            at(&p["t"])
        );
        assert_eq!(cells[2], p["value"].as_str().expect("value"));
        assert_eq!(cells[3], p["unpriced_events"].to_string());
    }

    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_zones_and_half_hour_offsets_are_422_naming_tz() {
    let mut env = Env::start_with(|c| c.monthly_budget_usd = Some(Decimal::from(10))).await;
    let key = env.key(Some("acme"), &[Scope::Read]).await;
    let endpoints = [
        "/v1/metrics/summary?x=1",
        "/v1/metrics/timeseries?metric=executions",
        "/v1/metrics/savings?x=1",
        "/v1/metrics/peaks?x=1",
        "/v1/metrics/recommendations?x=1",
        "/v1/billing/usage?x=1",
    ];
    for e in endpoints {
        let e = e.replace("?x=1", "?");
        let sep = if e.ends_with('?') { "" } else { "&" };
        for bad in [
            "UTC%2B3",
            "EST5",
            "europe/berlin",
            "Mars/Olympus",
            "",
            "%2B05:30",
        ] {
            let (s, v) = get(&env, &key, &format!("{e}{sep}tz={bad}")).await;
            assert_eq!(s, 422, "{e} tz={bad}: {v}");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            assert!(
                msg.starts_with("tz: must be an IANA time zone name"),
                "{e} tz={bad}: {v}"
            );
        }
        let (s, v) = get(&env, &key, &format!("{e}{sep}tz=Europe/Berlin")).await;
        assert_eq!(s, 200, "{e}: {v}");
    }
    // Local days, months, hours of day and periods of a zone not a whole number of hours off UTC.
    for (e, rule) in [
        (
            "/v1/metrics/timeseries?metric=executions&tz=Asia/Kolkata",
            "tz: day and month starts must fall on whole UTC hours",
        ),
        (
            "/v1/metrics/timeseries?metric=executions&interval=month&tz=Asia/Kathmandu",
            "tz: day and month starts must fall on whole UTC hours",
        ),
        (
            "/v1/metrics/peaks?tz=Asia/Kolkata",
            "tz: hours of day need a zone a whole number of hours off UTC",
        ),
        (
            "/v1/billing/usage?tz=Asia/Kathmandu",
            "tz: day and month starts must fall on whole UTC hours",
        ),
        (
            "/v1/metrics/recommendations?tz=Asia/Kolkata",
            "tz: day and month starts must fall on whole UTC hours",
        ),
    ] {
        let (s, v) = get(&env, &key, e).await;
        assert_eq!(s, 422, "{e}: {v}");
        assert!(v.to_string().contains(rule), "{e}: {v}");
    }
    // Savings only cuts at month starts inside the range: none inside, nothing to refuse.
    let (s, v) = get(
        &env,
        &key,
        "/v1/metrics/savings?tz=Asia/Kolkata&from=2026-01-05T00:00:00Z&to=2026-01-06T00:00:00Z",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = get(
        &env,
        &key,
        "/v1/metrics/savings?tz=Asia/Kolkata&from=2026-01-05T00:00:00Z&to=2026-02-06T00:00:00Z",
    )
    .await;
    assert_eq!(s, 422, "{v}");
    env.shutdown().await;
}
