//! `tz=` on the read API: day and month buckets, hours of day and weekdays, savings months and
//! billing periods in an IANA time zone equal plain SQL over the raw rows truncated in that zone
//! (`date_trunc(unit, ts, zone)`), across a daylight-saving change (23- and 25-hour days); names
//! that are not IANA zones, zones whose offset is not a whole number of hours, and local days
//! older than the hourly rollups are 422s naming `tz`.

mod common;

use std::collections::BTreeMap;

use agenttally_collector::Scope;
use chrono::{DateTime, DurationRound, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use common::runs::{tenant_events, ts};
use common::Env;
use serde_json::{json, Value};

/// Which raw rows a metric sums (docs/metrics.md).
const RAW: &str = "WITH e AS (
    SELECT *, event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AS outcome,
           coalesce(event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                    AND jsonb_typeof(metadata->'calls') = 'number'
                    AND (metadata->>'calls')::numeric >= 1, false) AS itemized
    FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3)
  SELECT *, event_type = 'provider.api_call' OR (outcome AND NOT itemized) AS spend FROM e";

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

fn at(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("time"))
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// The latest change of `zone`'s offset before `now` (searched hour by hour over a year).
fn last_transition(zone: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let offset = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut t = now.duration_trunc(TimeDelta::hours(1)).expect("hour");
    for _ in 0..24 * 400 {
        let before = t - TimeDelta::hours(1);
        if offset(before) != offset(t) {
            return t;
        }
        t = before;
    }
    panic!("{zone} has no offset change in a year");
}

/// `bucket -> value` by plain SQL over `[from, to)`, truncated to `unit` in `zone`.
async fn raw(
    env: &Env,
    unit: &str,
    zone: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    select: &str,
) -> BTreeMap<DateTime<Utc>, String> {
    let sql = format!(
        "SELECT date_trunc('{unit}', ts, '{zone}'), ({select})::text FROM ({RAW}) s GROUP BY 1"
    );
    env.db
        .query(&sql, &[&"acme", &from, &to])
        .await
        .expect(&sql)
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(1).map(|v| (r.get(0), v)))
        .collect()
}

fn series_values(series: &Value) -> BTreeMap<DateTime<Utc>, String> {
    series["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            let v = match &p["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (at(&p["t"]), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_in_a_time_zone_equal_plain_sql() {
    let ny: Tz = "America/New_York".parse().expect("zone");
    let now = Utc::now();
    let change = last_transition(ny, now);
    // Events back to the last daylight-saving change must be admitted and kept hourly.
    let keep = u32::try_from((now - change).num_days() + 10).expect("days");
    let mut env = Env::start_with(|c| {
        c.raw_retention_days = keep.max(30);
        c.hourly_retention_days = keep.max(90);
    })
    .await;
    let ingest = env.key(Some("acme"), &[Scope::Ingest]).await;
    // Three days of runs around the change, and three up to now.
    for (seed, end) in [(5, change + TimeDelta::days(1)), (6, now)] {
        let events = tenant_events("acme", seed, 150, end);
        let (s, v) = env.post(&ingest, &events).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["rejected"], json!([]), "{v}");
    }
    let key = env.key(Some("acme"), &[Scope::Read]).await;

    // Local days around the change: one of them is 23 or 25 hours long.
    let from = change - TimeDelta::days(3);
    let to = change + TimeDelta::days(2);
    let range = format!("&from={}&to={}", ts(from), ts(to));
    for (metric, select) in [
        ("executions", "count(*) FILTER (WHERE outcome)"),
        (
            "cost_usd",
            "coalesce(sum(cost_usd) FILTER (WHERE spend), 0)",
        ),
        (
            "api_calls",
            "count(*) FILTER (WHERE event_type = 'provider.api_call')",
        ),
    ] {
        let (s, series) = get(
            &env,
            &key,
            &format!(
                "/v1/metrics/timeseries?metric={metric}&interval=day&tz=America/New_York{range}"
            ),
        )
        .await;
        assert_eq!(s, 200, "{series}");
        let got = series_values(&series);
        let (f, t) = (at(&series["from"]), at(&series["to"]));
        // The covered range is whole local days.
        assert_eq!(f.with_timezone(&ny).format("%H:%M").to_string(), "00:00");
        assert_eq!(t.with_timezone(&ny).format("%H:%M").to_string(), "00:00");
        let lengths: Vec<i64> = got
            .keys()
            .zip(got.keys().skip(1).chain(std::iter::once(&t)))
            .map(|(a, b)| (*b - *a).num_hours())
            .collect();
        assert!(lengths.iter().any(|h| *h != 24), "{lengths:?}");
        let want = raw(&env, "day", "America/New_York", f, t, select).await;
        for (bucket, value) in &got {
            let expect = want.get(bucket).cloned().unwrap_or_else(|| "0".to_string());
            let norm = |s: &str| {
                s.parse::<rust_decimal::Decimal>()
                    .expect("decimal")
                    .normalize()
            };
            assert_eq!(norm(value), norm(&expect), "{metric} at {bucket}: {series}");
        }
        assert!(want.keys().all(|k| got.contains_key(k)), "{want:?} {got:?}");
    }

    // Months in the zone: the local month holding the change and the one before.
    let (s, series) = get(
        &env,
        &key,
        &format!(
            "/v1/metrics/timeseries?metric=executions&interval=month&tz=America/New_York{range}"
        ),
    )
    .await;
    assert_eq!(s, 200, "{series}");
    let got = series_values(&series);
    let want = raw(
        &env,
        "month",
        "America/New_York",
        at(&series["from"]),
        at(&series["to"]),
        "count(*) FILTER (WHERE outcome)",
    )
    .await;
    for (bucket, value) in &got {
        assert_eq!(
            value,
            want.get(bucket).map_or("0", String::as_str),
            "{bucket}: {series}"
        );
    }

    // Peaks: hours of day and weekdays in Berlin over the last three days.
    let (s, peaks) = get(&env, &key, "/v1/metrics/peaks?tz=Europe/Berlin").await;
    assert_eq!(s, 200, "{peaks}");
    let rows = env
        .db
        .query(
            &format!(
                "SELECT extract(hour FROM ts AT TIME ZONE 'Europe/Berlin')::int,
                        extract(isodow FROM ts AT TIME ZONE 'Europe/Berlin')::int - 1,
                        count(*) FILTER (WHERE outcome)
                 FROM ({RAW}) s GROUP BY 1, 2"
            ),
            &[&"acme", &at(&peaks["from"]), &at(&peaks["to"])],
        )
        .await
        .expect("raw peaks");
    let (mut by_hour, mut by_day) = (BTreeMap::<i64, i64>::new(), BTreeMap::<i64, i64>::new());
    for r in &rows {
        *by_hour.entry(i64::from(r.get::<_, i32>(0))).or_default() += r.get::<_, i64>(2);
        *by_day.entry(i64::from(r.get::<_, i32>(1))).or_default() += r.get::<_, i64>(2);
    }
    for h in peaks["by_hour_of_day"].as_array().expect("hours") {
        let hour = h["hour"].as_i64().expect("hour");
        assert_eq!(
            h["executions"].as_i64(),
            Some(by_hour.get(&hour).copied().unwrap_or(0)),
            "hour {hour}: {peaks}"
        );
    }
    assert_eq!(
        peaks["by_day_of_week"]
            .as_array()
            .expect("days")
            .iter()
            .map(|d| d["executions"].as_i64().expect("n"))
            .sum::<i64>(),
        by_day.values().sum::<i64>()
    );

    // Savings by month: the local months that hold spend.
    let (s, savings) = get(
        &env,
        &key,
        &format!("/v1/metrics/savings?tz=America/New_York{range}"),
    )
    .await;
    assert_eq!(s, 200, "{savings}");
    let months: Vec<String> = env
        .db
        .query(
            &format!(
                "SELECT DISTINCT to_char(ts AT TIME ZONE 'America/New_York', 'YYYY-MM')
                 FROM ({RAW}) s WHERE spend ORDER BY 1"
            ),
            &[&"acme", &at(&savings["from"]), &at(&savings["to"])],
        )
        .await
        .expect("months")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let keys: Vec<String> = savings["by_month"]
        .as_object()
        .expect("by_month")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, months, "{savings}");

    // Billing: this period is the local calendar month.
    let (s, billing) = get(&env, &key, "/v1/billing/usage?tz=America/New_York").await;
    assert_eq!(s, 200, "{billing}");
    let start = at(&billing["period_start"]).with_timezone(&ny);
    assert_eq!(
        start.format("%d %H:%M").to_string(),
        "01 00:00",
        "{billing}"
    );
    assert_eq!(billing["period"], json!(start.format("%Y-%m").to_string()));
    let executions = env
        .db
        .query_one(
            &format!("SELECT count(*) FILTER (WHERE outcome) FROM ({RAW}) s"),
            &[
                &"acme",
                &at(&billing["period_start"]),
                &at(&billing["period_end"]),
            ],
        )
        .await
        .expect("raw executions")
        .get::<_, i64>(0);
    let used = billing["usage"]
        .as_array()
        .expect("usage")
        .iter()
        .find(|u| u["metric"] == json!("executions"))
        .map(|u| u["used"].clone());
    if let Some(used) = used {
        assert_eq!(used, json!(executions.to_string()), "{billing}");
    }

    // Refused, naming tz.
    let today = now.duration_trunc(TimeDelta::days(1)).expect("day");
    let long_ago = format!(
        "&from={}&to={}",
        ts(today - TimeDelta::days(i64::from(keep) + 400)),
        ts(today - TimeDelta::days(i64::from(keep) + 300))
    );
    for path in [
        "/v1/metrics/timeseries?metric=executions&tz=Mars/Olympus".to_string(),
        "/v1/metrics/summary?tz=UTC%2B3".to_string(),
        "/v1/metrics/peaks?tz=EST".to_string(),
        "/v1/billing/usage?tz=europe/berlin".to_string(),
        "/v1/metrics/timeseries?metric=executions&interval=day&tz=Asia/Kolkata".to_string(),
        "/v1/metrics/peaks?tz=Asia/Kathmandu".to_string(),
        format!("/v1/metrics/timeseries?metric=executions&interval=day&tz=Europe/Berlin{long_ago}"),
        format!("/v1/metrics/savings?tz=Europe/Berlin{long_ago}"),
    ] {
        let (s, v) = get(&env, &key, &path).await;
        assert_eq!(s, 422, "{path}: {v}");
        let message = v["error"]["message"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(message.starts_with("tz: "), "{path}: {v}");
    }
    // UTC-hour buckets are instants: any zone, even a part-hour one, leaves them unchanged.
    let (s, v) = get(
        &env,
        &key,
        "/v1/metrics/timeseries?metric=executions&interval=hour&tz=Asia/Kolkata",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Old whole UTC days stay readable in UTC.
    let (s, v) = get(
        &env,
        &key,
        &format!("/v1/metrics/timeseries?metric=executions&interval=day&tz=UTC{long_ago}"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    env.shutdown().await;
}
